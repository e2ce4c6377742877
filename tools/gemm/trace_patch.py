# Adds a per-block clock64/globaltimer trace (-DGE_TRACE) to a staged copy of the TMA kernel and a `--trace` mode to
# its harness: per 3-tile block, when each tile's MMAs start and end and its epilogue ends (median over blocks, mean of
# 5 launches). It patches exact strings and fails loudly when the kernel has changed (update it then). Usage:
#   bash tools/gemm/stage.sh /work/main/.gpu/t && python3 tools/gemm/trace_patch.py /work/main/.gpu/t
#   (on the GPU) cd .gpu/t/tools/gemm && nvcc -O3 -arch=sm_90a -std=c++17 -DGE_TRACE harness.cu -lcublasLt -lcuda -o /tmp/ht && /tmp/ht --trace
import sys
root = sys.argv[1]
p = root + '/src/backend/cuda/kernels/gemm_epilogue.cu'
s = open(p).read()
def rep(old, new):
    global s
    assert s.count(old) == 1, old
    s = s.replace(old, new)
rep('struct __align__(64) GeTmaMap {', '''#ifdef GE_TRACE
__device__ long long ge_trace[1024 * 16];
#define GE_T(slot) do { ge_trace[blockIdx.x * 16 + (slot)] = clock64(); } while (0)
__device__ __forceinline__ long long ge_gt() { long long t; asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t)); return t; }
#else
#define GE_T(slot) do {} while (0)
#endif
struct __align__(64) GeTmaMap {''')
rep('''    __syncthreads();

    if (wg == 0) {''', '''    __syncthreads();
#ifdef GE_TRACE
    if (tid == 0) { GE_T(0); ge_trace[blockIdx.x * 16 + 11] = ge_gt(); }
#endif
    if (wg == 0) {''')
rep('''        if (j > 0) ge_mbar_wait(bar_hand, (j - 1) & 1);
''', '''        if (j > 0) ge_mbar_wait(bar_hand, (j - 1) & 1);
        if (wt == 0 && j < 3) GE_T(1 + 3 * j);
''')
rep('''        // Unpacked only now''', '''        if (wt == 0 && j < 3) GE_T(2 + 3 * j);
        // Unpacked only now''')
rep('''        }
    }
    // Shared memory must outlive''', '''        }
        if (wt == 0 && j < 3) GE_T(3 + 3 * j);
#ifdef GE_TRACE
        if (wt == 0) ge_trace[blockIdx.x * 16 + 12 + cons] = ge_gt();
#endif
    }
    // Shared memory must outlive''')
open(p, 'w').write(s)
p = root + '/tools/gemm/harness.cu'
h = open(p).read()
old = '''    if (argc > 1 && std::string(argv[1]) == "--profile") {'''
new = '''#ifdef GE_TRACE
    if (argc > 1 && std::string(argv[1]) == "--trace") {
        const int M = 4096;
        Problem<__nv_bfloat16> p(M, 1536, 384, 5);
        const char* names[10] = {"start", "j0 start", "j0 mma end", "j0 epi end", "j1 start", "j1 mma end", "j1 epi end",
                                 "j2 start", "j2 mma end", "j2 epi end"};
        for (auto& v : variants<__nv_bfloat16>(false)) {
            if (v.name.find("tma") == std::string::npos || v.name.find("s4") == std::string::npos) continue;
            if (v.act == GE_GELU_TANH) continue;
            std::vector<double> acc(10, 0.0), cntv(10, 0.0);
            double span = 0, startspread = 0, endspread = 0;
            const int reps = 5;
            for (int rep = 0; rep < reps; ++rep) {
                for (int r = 0; r < 20; ++r) v.fn(p.da, p.db, p.dbias, p.dc, M, 1536, 384, 0);
                CK(cudaDeviceSynchronize());
                std::vector<long long> tr(1024 * 16, 0);
                CK(cudaMemcpyToSymbol(ge_trace, tr.data(), tr.size() * 8));
                v.fn(p.da, p.db, p.dbias, p.dc, M, 1536, 384, 0);
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpyFromSymbol(tr.data(), ge_trace, tr.size() * 8));
                for (int e = 1; e < 10; ++e) {
                    std::vector<double> d;
                    for (int b = 0; b < 132; ++b) {
                        const long long* t = &tr[b * 16];
                        if (t[0] == 0 || t[9] == 0 || t[e] == 0) continue;
                        d.push_back((double)(t[e] - t[0]));
                    }
                    if (d.empty()) continue;
                    std::sort(d.begin(), d.end());
                    acc[e] += d[d.size() / 2];
                    cntv[e] += 1;
                }
                long long s0 = 1LL << 62, s1 = 0, e0 = 1LL << 62, e1 = 0;
                for (int b = 0; b < 132; ++b) {
                    const long long* t = &tr[b * 16];
                    if (!t[11]) continue;
                    s0 = std::min(s0, t[11]); s1 = std::max(s1, t[11]);
                    const long long te = std::max(t[12], t[13]);
                    if (te) { e0 = std::min(e0, te); e1 = std::max(e1, te); }
                }
                span += (e1 - s0) * 1e-3; startspread += (s1 - s0) * 1e-3; endspread += (e1 - e0) * 1e-3;
            }
            std::printf("trace %s act%d (median over 3-tile blocks, mean of %d launches, cycles from block start):\\n", v.name.c_str(), v.act, reps);
            for (int e = 1; e < 10; ++e)
                if (cntv[e] > 0) std::printf("  %-12s %7.0f\\n", names[e], acc[e] / cntv[e]);
            std::printf("  globaltimer: first start to last end %.2f us, start spread %.2f us, end spread %.2f us\\n", span / reps, startspread / reps, endspread / reps);
        }
        return 0;
    }
#endif
    if (argc > 1 && std::string(argv[1]) == "--profile") {'''
assert old in h
h = h.replace(old, new, 1)
open(p, 'w').write(h)
