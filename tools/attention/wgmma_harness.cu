// Check + benchmark of the sm_90a wgmma attention kernel (src/backend/cuda/kernels/attention_wgmma.cu: the launcher's
// entry points and the variants of its template) against a float64 CPU reference, next to the mma.sync kernel of
// attention.cu (entry point attention_{f16,bf16}_d64) in the same binary. See README.md beside this file.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 wgmma_harness.cu -o /tmp/wh && /tmp/wh          # correctness + timing
//   /tmp/wh --small      small correctness cases only (sanitizers)
//   /tmp/wh --info       registers / occupancy of the variants;  /tmp/wh --prof   one launch each (for ncu);  /tmp/wh --check      correctness only;   /tmp/wh --time   timing only (sampled rows still checked)
//   WG_ONLY=name,name    restricts the variants (names below; "old" = today's kernel)
//
// Outputs are poisoned with NaN (0xFF bytes) before every launch; the reference is float64 over the same (rounded)
// inputs. Timing: CUDA events, 5 warm-up launches, median (and min) of 30, three rounds interleaving the kernels.
#ifndef WG_HOST_CHECK
#include "../../src/backend/cuda/kernels/attention.cu"
#include "../../src/backend/cuda/kernels/attention_wgmma.cu"
#else
// g++ syntax check of the host code (no CUDA compiler on the dev machine)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
template <typename T, int NWG, int BC, bool OVL, int VD, int MINB, bool QREG = false, bool SPLIT = false>
void attention_d64_wg(const T*, const T*, const T*, const T*, T*, int, int, int, int, int, int, int, long long,
                      long long, long long, long long, long long, long long, long long, long long, long long, long long,
                      long long, long long, long long, long long, long long, long long, float, int) {}
namespace wg {
template <int NWG, int BC, bool OVL> constexpr int smem_bytes() {
    return (64 * NWG + 2 * BC + (OVL ? 3 : 2) * BC) * 128 + 1024;
}
constexpr int D64_ROWS = 64, D64_THREADS = 128, D64_SMEM = smem_bytes<1, 128, false>();
}  // namespace wg
#define OLDK(NAME, T)                                                                                          \
    void NAME(const T*, const T*, const T*, const T*, T*, int, int, int, int, int, int, int, long long, long long, \
              long long, long long, long long, long long, long long, long long, long long, long long, long long,   \
              long long, long long, long long, long long, long long, float, int) {}
OLDK(attention_bf16_d64, __nv_bfloat16)
OLDK(attention_f16_d64, __half)
OLDK(attention_bf16_d64_wg, __nv_bfloat16)
OLDK(attention_f16_d64_wg, __half)
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#define CK(x)                                                                                     \
    do {                                                                                          \
        cudaError_t e_ = (x);                                                                     \
        if (e_ != cudaSuccess) {                                                                  \
            std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                         __LINE__, #x);                                                           \
            std::exit(2);                                                                         \
        }                                                                                         \
    } while (0)

template <typename T> struct HT;
template <> struct HT<__half> {
    static const char* name() { return "f16"; }
    static __half from(float x) { return __float2half_rn(x); }
    static float to(__half x) { return __half2float(x); }
    static double tol() { return 4e-3; }
};
template <> struct HT<__nv_bfloat16> {
    static const char* name() { return "bf16"; }
    static __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
    static float to(__nv_bfloat16 x) { return __bfloat162float(x); }
    static double tol() { return 2.5e-2; }
};

// ------------------------------------------------------------------------------------------------------------
// kernels under test
struct Variant {
    const char* name;
    const void* f16;
    const void* bf16;
    int rows;   // query rows per block
    int threads;
    int smem;
};

#define WGV(NAME, NWG, BC, OVL, VD, MINB, QREG, ...)                                                              \
    Variant {                                                                                                   \
        NAME, (const void*)attention_d64_wg<__half, NWG, BC, OVL, VD, MINB, QREG, ##__VA_ARGS__>,               \
            (const void*)attention_d64_wg<__nv_bfloat16, NWG, BC, OVL, VD, MINB, QREG, ##__VA_ARGS__>, 64 * NWG, \
            128 * NWG,                                                                                          \
            wg::smem_bytes<NWG, BC, OVL>()                                                                      \
    }
static std::vector<Variant> all_variants() {
    return {
        // attention.cu's mma.sync kernel: 4 warps, 128 rows, BC 64, Q staged in the second stage, a mask row per
        // stage (32 KiB + 256 bytes)
        Variant{"old", (const void*)attention_f16_d64, (const void*)attention_bf16_d64, 128, 128, 32768 + 256},
        // the extern "C" entry points attention_{f16,bf16}_d64_wg (configuration WG_D64_*)
        Variant{"entry", (const void*)attention_f16_d64_wg, (const void*)attention_bf16_d64_wg, wg::D64_ROWS,
                wg::D64_THREADS, wg::D64_SMEM},
        WGV("wg1_bc128", 1, 128, false, 0, 3, false),
        WGV("wg1_bc128_q", 1, 128, false, 0, 3, true),
        WGV("wg1_bc64_q", 1, 64, false, 0, 4, true),
        WGV("wg1_bc64_q5", 1, 64, false, 0, 5, true),
        WGV("wg1_bc64_ovl", 1, 64, true, 0, 3, false),
        WGV("wg2_bc64", 2, 64, false, 0, 2, false),
        WGV("wg2_bc64_q", 2, 64, false, 0, 2, true),
        WGV("wg2_bc128", 2, 128, false, 0, 2, false),
        // SPLIT: BC = 128 as two 64-key softmax steps (S_b beside the softmax of S_a, P_a V_a beside that of S_b)
        WGV("wg1_bc128_s", 1, 128, false, 0, 3, false, true),
        WGV("wg1_bc128_qs", 1, 128, false, 0, 3, true, true),
        WGV("wg2_bc128_s", 2, 128, false, 0, 2, false, true),
        WGV("wg3_bc128_q", 3, 128, false, 0, 1, true),
        WGV("wg4_bc64_q", 4, 64, false, 0, 1, true),
    };
}

static bool wanted(const char* name) {
    const char* sel = std::getenv("WG_ONLY");
    if (!sel || !*sel) return true;
    std::string list = std::string(",") + sel + ",";
    return list.find(std::string(",") + name + ",") != std::string::npos;
}

struct Shape {
    int b, hq, hkv, sq, skv;
    long long msb, msh, msq, msk;
    float scale;
    int causal;
};

template <typename T>
static void launch(const Variant& var, const Shape& s, const T* q, const T* k, const T* v, const T* mask, T* out) {
    const void* fn = std::is_same<T, __half>::value ? var.f16 : var.bf16;
    const unsigned gx = (unsigned)((s.sq + var.rows - 1) / var.rows), gy = (unsigned)(s.b * s.hq);
    if (gx == 0 || gy == 0) return;
    if (var.smem > 48 * 1024)
        CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, var.smem));
    int batch = s.b, hq = s.hq, hkv = s.hkv, sq = s.sq, skv = s.skv, d = 64, dv = 64, causal = s.causal;
    long long msb = s.msb, msh = s.msh, msq = s.msq, msk = s.msk;
    float scale = s.scale;
    // Contiguous [b, h, s, 64] operands.
    long long qsb = (long long)hq * sq * 64, qsh = (long long)sq * 64, qss = 64;
    long long ksb = (long long)hkv * skv * 64, ksh = (long long)skv * 64, kss = 64;
    long long vsb = ksb, vsh = ksh, vss = 64, osb = qsb, osh = qsh, oss = 64;
    void* args[] = {(void*)&q,   (void*)&k,   (void*)&v,   (void*)&mask, (void*)&out, (void*)&batch, (void*)&hq,
                    (void*)&hkv, (void*)&sq,  (void*)&skv, (void*)&d,    (void*)&dv,  (void*)&msb,   (void*)&msh,
                    (void*)&msq, (void*)&msk, (void*)&qsb, (void*)&qsh,  (void*)&qss, (void*)&ksb,   (void*)&ksh,
                    (void*)&kss, (void*)&vsb, (void*)&vsh, (void*)&vss,  (void*)&osb, (void*)&osh,   (void*)&oss,
                    (void*)&scale, (void*)&causal};
    CK(cudaLaunchKernel(fn, dim3(gx, gy), dim3(var.threads), args, (size_t)var.smem, 0));
    CK(cudaGetLastError());
}

// ------------------------------------------------------------------------------------------------------------
// reference
struct HostData {
    std::vector<float> q, k, v, mask;   // values after rounding to T
};

static void ref_row(const Shape& s, const HostData& h, int b, int hh, int i, double* out, double* sc) {
    int hk = hh / (s.hq / s.hkv);
    const float* qr = &h.q[(((size_t)b * s.hq + hh) * s.sq + i) * 64];
    double m = -INFINITY;
    for (int j = 0; j < s.skv; ++j) {
        bool dead = s.causal && j > i + (s.skv - s.sq);
        double x = -INFINITY;
        if (!dead) {
            const float* kr = &h.k[(((size_t)b * s.hkv + hk) * s.skv + j) * 64];
            double dot = 0;
            for (int c = 0; c < 64; ++c) dot += (double)qr[c] * kr[c];
            x = dot * s.scale;
            if (!h.mask.empty()) x += h.mask[b * s.msb + hh * s.msh + i * s.msq + j * s.msk];
        }
        sc[j] = x;
        m = std::max(m, x);
    }
    for (int c = 0; c < 64; ++c) out[c] = 0;
    if (m == -INFINITY) return;
    double l = 0;
    for (int j = 0; j < s.skv; ++j) {
        double p = std::exp(sc[j] - m);
        if (p == 0) continue;
        l += p;
        const float* vr = &h.v[(((size_t)b * s.hkv + hk) * s.skv + j) * 64];
        for (int c = 0; c < 64; ++c) out[c] += p * vr[c];
    }
    for (int c = 0; c < 64; ++c) out[c] /= l;
}

// Reference of the given rows (b, h, i) (all rows when empty), 64 values each.
static std::vector<double> reference(const Shape& s, const HostData& h, std::vector<std::array<int, 3>>& rows) {
    if (rows.empty())
        for (int b = 0; b < s.b; ++b)
            for (int hh = 0; hh < s.hq; ++hh)
                for (int i = 0; i < s.sq; ++i) rows.push_back({b, hh, i});
    std::vector<double> ref(rows.size() * 64);
    unsigned nth = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nth; ++t)
        th.emplace_back([&, t] {
            std::vector<double> sc(s.skv);
            for (size_t r = t; r < rows.size(); r += nth)
                ref_row(s, h, rows[r][0], rows[r][1], rows[r][2], &ref[r * 64], sc.data());
        });
    for (auto& x : th) x.join();
    return ref;
}

template <typename T>
static double compare(const Shape& s, const std::vector<std::array<int, 3>>& rows, const std::vector<double>& ref,
                      const std::vector<T>& got, long long* bad) {
    double err = 0;
    *bad = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
        auto [b, hh, i] = rows[r];
        const T* g = &got[(((size_t)b * s.hq + hh) * s.sq + i) * 64];
        for (int c = 0; c < 64; ++c) {
            double x = HT<T>::to(g[c]);
            if (!std::isfinite(x)) {
                (*bad)++;
                continue;
            }
            err = std::max(err, std::fabs(x - ref[r * 64 + c]));
        }
    }
    return err;
}

// ------------------------------------------------------------------------------------------------------------
enum MaskKind { M_NONE = 0, M_FULL, M_B11K, M_FULL_DEADROW, M_B11K_DEADB };
static const char* mname(int m) {
    switch (m) {
    case M_NONE: return "none";
    case M_FULL: return "[b,h,sq,skv]";
    case M_B11K: return "[b,1,1,skv]";
    case M_B11K_DEADB: return "[b,1,1,skv]+deadb0";
    default: return "[b,h,sq,skv]+deadrow";
    }
}

struct Case {
    int b, hq, hkv, sq, skv, mask, causal;
    float scale;   // 0: 1/8
};

static std::mt19937_64 rng(12345);

template <typename T> struct DevBuf {
    T* p = nullptr;
    explicit DevBuf(size_t n) { CK(cudaMalloc(&p, std::max<size_t>(1, n + 16) * sizeof(T))); }
    ~DevBuf() { cudaFree(p); }
};

template <typename T>
static void fill(std::vector<float>& f, std::vector<T>& t, size_t n, float lo, float hi, double ninf_frac) {
    std::uniform_real_distribution<float> u(lo, hi), u01(0.f, 1.f);
    f.resize(n);
    t.resize(n);
    for (size_t i = 0; i < n; ++i) {
        float x = u(rng);
        if (ninf_frac > 0 && u01(rng) < ninf_frac) x = -INFINITY;
        t[i] = HT<T>::from(x);
        f[i] = HT<T>::to(t[i]);
    }
}

template <typename T> static size_t make_mask(const Case& c, Shape& s, HostData& h, std::vector<T>& tm) {
    size_t nm = 0;
    if (c.mask == M_FULL || c.mask == M_FULL_DEADROW) {
        nm = (size_t)c.b * c.hq * c.sq * c.skv;
        s.msb = (long long)c.hq * c.sq * c.skv;
        s.msh = (long long)c.sq * c.skv;
        s.msq = c.skv;
        s.msk = 1;
    } else if (c.mask == M_B11K || c.mask == M_B11K_DEADB) {
        nm = (size_t)c.b * c.skv;
        s.msb = c.skv;
        s.msk = 1;
    }
    if (nm) {
        fill(h.mask, tm, nm, -2.f, 0.f, 0.1);
        if (c.mask == M_FULL_DEADROW)
            for (int b = 0; b < c.b; ++b)
                for (int hh = 0; hh < c.hq; ++hh)
                    for (int i = 0; i < c.sq; ++i)
                        if (i == 3 || (hh == 0 && i == c.sq - 1))
                            for (int j = 0; j < c.skv; ++j) {
                                size_t idx = b * s.msb + hh * s.msh + i * s.msq + j;
                                tm[idx] = HT<T>::from(-INFINITY);
                                h.mask[idx] = -INFINITY;
                            }
        if (c.mask == M_B11K_DEADB)
            for (int j = 0; j < c.skv; ++j) {
                tm[j] = HT<T>::from(-INFINITY);
                h.mask[j] = -INFINITY;
            }
    }
    return nm;
}

struct Inputs {
    size_t nq, nk, no, nm;
};

template <typename T> struct Problem {
    Shape s;
    HostData h;
    std::vector<T> tq, tk, tv, tm;
    Inputs n;
    DevBuf<T>*dq, *dk, *dv, *dout, *dm;
    explicit Problem(const Case& c) {
        s = Shape{c.b, c.hq, c.hkv, c.sq, c.skv, 0, 0, 0, 0, c.scale > 0 ? c.scale : 0.125f, c.causal};
        n.nq = (size_t)c.b * c.hq * c.sq * 64;
        n.nk = (size_t)c.b * c.hkv * c.skv * 64;
        n.no = n.nq;
        fill(h.q, tq, n.nq, -1.f, 1.f, 0);
        fill(h.k, tk, n.nk, -1.f, 1.f, 0);
        fill(h.v, tv, n.nk, -1.f, 1.f, 0);
        n.nm = make_mask<T>(c, s, h, tm);
        dq = new DevBuf<T>(n.nq);
        dk = new DevBuf<T>(n.nk);
        dv = new DevBuf<T>(n.nk);
        dout = new DevBuf<T>(n.no);
        dm = new DevBuf<T>(n.nm);
        CK(cudaMemcpy(dq->p, tq.data(), n.nq * sizeof(T), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dk->p, tk.data(), n.nk * sizeof(T), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dv->p, tv.data(), n.nk * sizeof(T), cudaMemcpyHostToDevice));
        if (n.nm) CK(cudaMemcpy(dm->p, tm.data(), n.nm * sizeof(T), cudaMemcpyHostToDevice));
    }
    ~Problem() {
        delete dq;
        delete dk;
        delete dv;
        delete dout;
        delete dm;
    }
    const T* mask() const { return n.nm ? dm->p : nullptr; }
    void run(const Variant& var) { launch<T>(var, s, dq->p, dk->p, dv->p, mask(), dout->p); }
    // poison, launch, fetch
    std::vector<T> result(const Variant& var) {
        CK(cudaMemset(dout->p, 0xFF, n.no * sizeof(T)));
        run(var);
        CK(cudaDeviceSynchronize());
        std::vector<T> got(n.no);
        CK(cudaMemcpy(got.data(), dout->p, n.no * sizeof(T), cudaMemcpyDeviceToHost));
        return got;
    }
};

static int g_fail = 0, g_pass = 0;

template <typename T> static void check_case(const Case& c, const std::vector<Variant>& vars) {
    Problem<T> p(c);
    std::vector<std::array<int, 3>> rows;
    std::vector<double> ref = reference(p.s, p.h, rows);
    for (auto& var : vars) {
        std::vector<T> got = p.result(var);
        long long bad = 0;
        double err = compare<T>(p.s, rows, ref, got, &bad);
        bool ok = bad == 0 && err <= HT<T>::tol();
        ok ? g_pass++ : g_fail++;
        std::printf("%-4s %-14s b=%d hq=%d hkv=%d sq=%-4d skv=%-4d mask=%-20s causal=%d scale=%-6.3g maxerr=%.3e "
                    "nan=%lld %s\n",
                    HT<T>::name(), var.name, c.b, c.hq, c.hkv, c.sq, c.skv, mname(c.mask), c.causal, p.s.scale, err,
                    bad, ok ? "ok" : "FAIL");
    }
    std::fflush(stdout);
}

template <typename T>
static void time_case(const char* name, int b, int hh, int sl, int causal, int mask, const std::vector<Variant>& vars,
                      int rounds) {
    Case c{b, hh, hh, sl, sl, mask, causal, 0.f};
    Problem<T> p(c);
    // sampled rows of the timed shape are checked for every kernel
    std::vector<std::array<int, 3>> rows;
    std::uniform_int_distribution<int> ub(0, b - 1), uh(0, hh - 1), ui(0, sl - 1);
    for (int r = 0; r < 256; ++r) rows.push_back({ub(rng), uh(rng), ui(rng)});
    rows.push_back({b - 1, hh - 1, sl - 1});
    rows.push_back({0, 0, 0});
    std::vector<double> ref = reference(p.s, p.h, rows);
    std::vector<std::vector<float>> med(vars.size()), mins(vars.size());
    std::vector<std::string> status(vars.size());
    for (size_t v = 0; v < vars.size(); ++v) {
        std::vector<T> got = p.result(vars[v]);
        long long bad = 0;
        double err = compare<T>(p.s, rows, ref, got, &bad);
        bool ok = bad == 0 && err <= HT<T>::tol();
        ok ? g_pass++ : g_fail++;
        char buf[96];
        std::snprintf(buf, sizeof buf, "sampled maxerr %.2e nan %lld %s", err, bad, ok ? "ok" : "FAIL");
        status[v] = buf;
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int r = 0; r < rounds; ++r)
        for (size_t v = 0; v < vars.size(); ++v) {
            for (int i = 0; i < 5; ++i) p.run(vars[v]);
            std::vector<float> ms;
            for (int i = 0; i < 30; ++i) {
                CK(cudaEventRecord(e0));
                p.run(vars[v]);
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float t;
                CK(cudaEventElapsedTime(&t, e0, e1));
                ms.push_back(t);
            }
            std::sort(ms.begin(), ms.end());
            med[v].push_back(ms[ms.size() / 2]);
            mins[v].push_back(ms[0]);
        }
    double flops = 4.0 * b * hh * (double)sl * sl * 64 * (causal ? 0.5 : 1.0);
    for (size_t v = 0; v < vars.size(); ++v) {
        std::vector<float> m = med[v];
        std::sort(m.begin(), m.end());
        std::printf("TIME %-26s %-14s median/round", name, vars[v].name);
        for (float x : med[v]) std::printf(" %.4f", x);
        std::printf("  min %.4f ms  %.1f TFLOP/s (median of rounds)  vs old %.3fx  (%s)\n",
                    *std::min_element(mins[v].begin(), mins[v].end()), flops / (m[m.size() / 2] * 1e-3) / 1e12,
                    [&] {
                        std::vector<float> o = med[0];
                        std::sort(o.begin(), o.end());
                        return (double)o[o.size() / 2] / m[m.size() / 2];
                    }(),
                    status[v].c_str());
    }
    std::fflush(stdout);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

int main(int argc, char** argv) {
    bool small = argc > 1 && std::strcmp(argv[1], "--small") == 0;
    bool time_only = argc > 1 && std::strcmp(argv[1], "--time") == 0;
    bool check_only = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    bool info = argc > 1 && std::strcmp(argv[1], "--info") == 0;   // variants' registers and occupancy only
    bool prof = argc > 1 && std::strcmp(argv[1], "--prof") == 0;   // one bf16 [8,16,2048,64] launch per variant (ncu)
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, cc %d.%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
    std::vector<Variant> vars;
    for (auto& v : all_variants())
        if (wanted(v.name)) {
            vars.push_back(v);
            cudaFuncAttributes fa;
            CK(cudaFuncGetAttributes(&fa, v.bf16));
            int nb = 0;
            if (v.smem > 48 * 1024)
                CK(cudaFuncSetAttribute(v.bf16, cudaFuncAttributeMaxDynamicSharedMemorySize, v.smem));
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, v.bf16, v.threads, v.smem));
            std::printf("variant %-14s rows %3d threads %3d smem %6d  bf16: %d regs, %zu local bytes, %d blocks/SM\n",
                        v.name, v.rows, v.threads, v.smem, fa.numRegs, (size_t)fa.localSizeBytes, nb);
        }

    if (info) return 0;
    if (prof) {
        Problem<__nv_bfloat16> p(Case{8, 16, 16, 2048, 2048, M_NONE, 0, 0.f});
        for (auto& v : vars) p.run(v);
        CK(cudaDeviceSynchronize());
        return 0;
    }

    // b, hq, hkv, sq, skv, mask, causal, scale
    std::vector<Case> small_cases = {
        {1, 1, 1, 1, 1, M_NONE, 0, 0},
        {2, 4, 2, 17, 129, M_FULL, 0, 0},
        {1, 4, 2, 1, 129, M_NONE, 1, 0},       // decode, causal
        {2, 3, 3, 17, 17, M_B11K, 1, 0},
        {2, 2, 1, 129, 17, M_NONE, 1, 0},      // causal with sq > skv: fully masked rows
        {1, 2, 2, 65, 65, M_FULL_DEADROW, 0, 0},
        {2, 4, 2, 128, 128, M_B11K_DEADB, 1, 0},
        {1, 2, 2, 200, 300, M_NONE, 0, 0},
    };
    std::vector<Case> big_cases = {
        {3, 2, 2, 1000, 1000, M_NONE, 1, 0},
        {1, 4, 2, 1, 1000, M_NONE, 0, 0},      // decode
        {2, 3, 3, 129, 129, M_B11K, 0, 0},
        {1, 2, 2, 2048, 2048, M_NONE, 0, 0},
        {1, 3, 1, 2048, 2048, M_NONE, 1, 0},
        {2, 4, 2, 1000, 1000, M_B11K, 1, 0},
        {1, 8, 1, 1000, 1000, M_FULL, 0, 0},
        {1, 2, 1, 1000, 1000, M_B11K, 0, 1.0f},   // peaky softmax
        {3, 1, 1, 129, 1000, M_FULL_DEADROW, 1, 0},
        {1, 4, 2, 1000, 129, M_NONE, 1, 0},
        {3, 4, 2, 517, 2048, M_B11K_DEADB, 0, 0},
    };
    if (!time_only) {
        std::printf("== correctness (%s) ==\n", small ? "small" : "full");
        for (auto& c : small_cases) {
            check_case<__nv_bfloat16>(c, vars);
            check_case<__half>(c, vars);
        }
        if (!small)
            for (auto& c : big_cases) {
                check_case<__nv_bfloat16>(c, vars);
                check_case<__half>(c, vars);
            }
        std::printf("correctness: %d passed, %d failed\n", g_pass, g_fail);
    }
    if (!small && !check_only) {
        std::printf("== timing (ms; CUDA events, median of 30 per round) ==\n");
        time_case<__nv_bfloat16>("bf16_8x16x2048x64", 8, 16, 2048, 0, M_NONE, vars, 3);
        time_case<__nv_bfloat16>("bf16_8x16x2048x64_causal", 8, 16, 2048, 1, M_NONE, vars, 2);
        time_case<__half>("f16_8x16x2048x64", 8, 16, 2048, 0, M_NONE, vars, 2);
        time_case<__half>("f16_8x16x2048x64_causal", 8, 16, 2048, 1, M_NONE, vars, 2);
        time_case<__nv_bfloat16>("bf16_8x16x2048x64_mask", 8, 16, 2048, 0, M_B11K, vars, 1);
    }
    std::printf("RESULT: %s (%d passed, %d failed)\n", g_fail ? "FAIL" : "PASS", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
