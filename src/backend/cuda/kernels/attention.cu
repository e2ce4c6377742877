// Fused attention forward (flash-attention style) for mlx-native.
//
// ABI, every entry point (T = float, __half or __nv_bfloat16):
//   (const T* q      element (b,h,i,c) of [batch, hq,  sq,  d ] at q[b*qsb + h*qsh + i*qss + c],
//    const T* k      element (b,g,j,c) of [batch, hkv, skv, d ] at k[b*ksb + g*ksh + j*kss + c],
//    const T* v      element (b,g,j,c) of [batch, hkv, skv, dv] at v[b*vsb + g*vsh + j*vss + c],
//    const T* mask   additive, or nullptr; element (b,h,i,j) at mask[b*msb + h*msh + i*msq + j*msk],
//    T* out          element (b,h,i,c) of [batch, hq, sq, dv] at out[b*osb + h*osh + i*oss + c],
//    int batch, int hq, int hkv, int sq, int skv, int d, int dv,
//    long long msb, long long msh, long long msq, long long msk,   mask strides in elements (0 = broadcast)
//    long long qsb, long long qsh, long long qss,   q strides in elements: batch, head, sequence row
//    long long ksb, long long ksh, long long kss,   k strides (kv head)
//    long long vsb, long long vsh, long long vss,   v strides (kv head)
//    long long osb, long long osh, long long oss,   out strides (query head)
//    float scale,    multiplies q.k
//    int causal)     1: query i sees key j only if j <= i + (skv - sq) (aligned to the end)
// The last dimension of q, k, v and out is contiguous; contiguous [b, h, s, d] is qsb = h*s*d, qsh = s*d, qss = d.
// A packed QKV projection [b, s, (hq + 2*hkv) * d] is q at offset 0, k at hq*d, v at (hq+hkv)*d with row stride
// (hq+2*hkv)*d, head stride d, batch stride s*(hq+2*hkv)*d. out must not overlap q, k, v or mask.
// Query head h reads kv head h / (hq / hkv). Accumulation in f32, one rounding to T on store.
//
// Entry points: attention_f32 / attention_f16 / attention_bf16 run the generic path; the fast paths have one
// entry point per (dtype, head size), attention_{f16,bf16}_d{32,64,128} (tensor cores) and
// attention_f32_d{32,64,128} (register-tiled exact f32), so each gets its own register allocation. The launcher
// (src/backend/cuda/attention.rs, `plan`) picks the entry point and the launch geometry; on compute capability 9.0
// it sends unmasked f16/bf16 calls with d = dv = 64 to attention_wgmma.cu (same ABI) instead. Compiles under NVRTC
// (no host headers) and nvcc. Standalone check and benchmark: tools/attention/.
//
// Fast paths need every row start 16-byte aligned: q, k, v 16-byte aligned and each of qsb, qsh, qss, ksb, ksh, kss,
// vsb, vsh, vss a multiple of 16 / sizeof(T) elements ("q/k/v 16-byte aligned" below). The tensor-core path also
// stores out 4 bytes at a time: out 4-byte aligned and osb, osh, oss even ("out pairs"). The f32 path stores float4
// where out and its strides allow it, else scalars (no rule on out). Whatever misses a rule takes the generic path
// (the launcher decides; a fast entry point called outside its rules returns without writing).
//
//  * Tensor-core path (f16/bf16, d == dv in {32, 64, 128}, q/k/v 16-byte aligned, out pairs, sm_80+): 4 warps,
//    every warp owns 16 * MT query rows, K/V tiles stream through a 2-stage cp.async pipeline into XOR-swizzled
//    shared memory, S = Q K^T and O += P V with mma.sync m16n8k16 (ldmatrix fragments, f32 accumulate), online
//    softmax in the exp2 domain, P kept in registers; the exponentials of a tile share one instruction block with
//    its P V products, so the MUFU and tensor pipes work together.
//      d = 32:  MT = 2, BR = 128 query rows per block, BC = 64 keys per tile, Q fragments in registers (loaded
//               once); the Q tile is staged in the second K/V stage, so shared memory is 16 KiB + 256 bytes
//      d = 64:  MT = 2, BR = 128, BC = 64, Q fragments in registers, Q staged in the second stage: 32 KiB + 256
//      d = 128: MT = 2, BR = 128, BC = 32, Q fragments re-read from shared memory every tile;
//               shared memory 64 KiB + 128 (the launcher raises the function's dynamic shared-memory limit)
//    The extra 2 * BC elements are a mask row per stage: a mask that is the same for every query row (msq == 0,
//    e.g. [b,1,1,skv] padding), contiguous along keys (msk == 1) and whose (b, h) row start is 16-byte aligned
//    streams its tile's BC values through the cp.async pipeline with K and V; other masks are read from global
//    memory after Q K^T (two adjacent keys per 32-bit load where the mask allows it).
//  * Register-tiled f32 path (f32, d == dv in {32, 64, 128}, q/k/v 16-byte aligned, sm_80+): exact FP32 FMA, see
//    attn_f32_tiled.
//  * Generic FMA path (every dtype, any d/dv): 128 threads, 32 query rows per block, TK keys per tile
//    (largest of 32/16/8/4 whose shared-memory need fits 48 KiB, else 4 with the limit raised), all math in f32
//    in shared memory.
//
// Grid for every path: x = ceil(sq / rows_per_block), y = batch * hq; block = 128 threads. Causal launches map
// blockIdx.x in reverse so the longest query blocks start first.
//
// Semantics: out[b,h,i,:] = softmax_j(scale * q.k_j + mask[b,h,i,j]) v_j, with key j visible to query i only if
// j <= i + (skv - sq) when causal. A row whose keys are all masked produces 0.
//
// The MLXN_ATTN_* macros select tile variants for the standalone harness's comparisons (tools/attention); the
// launcher knows only the defaults, which were the fastest measured on an H100 (tools/attention/README.md).

#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace mlxn_attn {

constexpr int NTHREADS = 128;

// Tile shapes of the tensor-core path. Defaults: d = 32 variant 0, d = 64 variant 0, d = 128 variant 1, NSPLIT 1.
// d = 64 variants: 0 MT=2/BC=64/Q in registers, 1 MT=2/BC=32/Q in registers, 2 MT=1/BC=64, 3 MT=2/BC=64 with Q
// re-read from shared memory every tile (the default before 2026-11-25).
// MLXN_ATTN_D32_VARIANT = -1 leaves d = 32 to the generic path (the harness's baseline).
#ifndef MLXN_ATTN_D32_VARIANT
#define MLXN_ATTN_D32_VARIANT 0
#endif
#if MLXN_ATTN_D32_VARIANT == 1
constexpr int D32_MT = 1, D32_BC = 64;
#elif MLXN_ATTN_D32_VARIANT == 2
constexpr int D32_MT = 1, D32_BC = 128;
#else
constexpr int D32_MT = 2, D32_BC = 64;
#endif
constexpr bool D32_QREG = true;   // 2 k-steps: Q's fragments cost only 8 * MT registers
#ifndef MLXN_ATTN_D64_VARIANT
#define MLXN_ATTN_D64_VARIANT 0
#endif
#if MLXN_ATTN_D64_VARIANT == 1
constexpr int D64_MT = 2, D64_BC = 32;
constexpr bool D64_QREG = true;
#elif MLXN_ATTN_D64_VARIANT == 2
constexpr int D64_MT = 1, D64_BC = 64;
constexpr bool D64_QREG = true;
#elif MLXN_ATTN_D64_VARIANT == 3
constexpr int D64_MT = 2, D64_BC = 64;
constexpr bool D64_QREG = false;
#else
constexpr int D64_MT = 2, D64_BC = 64;
constexpr bool D64_QREG = true;
#endif
#ifndef MLXN_ATTN_NSPLIT
#define MLXN_ATTN_NSPLIT 1
#endif
constexpr int NSPLIT = MLXN_ATTN_NSPLIT;
constexpr int NSPLIT128 = NSPLIT > 2 ? 2 : NSPLIT;   // d = 128 tiles have only 2 steps of 16 keys
constexpr int NSPLIT32 = NSPLIT > D32_BC / 16 ? D32_BC / 16 : NSPLIT;
#ifndef MLXN_ATTN_D128_VARIANT
#define MLXN_ATTN_D128_VARIANT 1
#endif
#if MLXN_ATTN_D128_VARIANT == 1
constexpr int D128_MT = 2, D128_BC = 32;
constexpr bool D128_QREG = false;
#elif MLXN_ATTN_D128_VARIANT == 2
constexpr int D128_MT = 1, D128_BC = 64;
constexpr bool D128_QREG = true;
#else
constexpr int D128_MT = 1, D128_BC = 32;
constexpr bool D128_QREG = true;
#endif
constexpr float LOG2E = 1.4426950408889634f;
constexpr int GEN_ROWS = 32;

// Element strides of q, k, v and out: batch, head, sequence row (the ABI's qsb ... oss).
struct Strides {
    long long qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb, osh, oss;
};

// ---------------------------------------------------------------------------------------------------------------
// small helpers

template <typename T> struct Conv;
template <> struct Conv<float> {
    static __device__ __forceinline__ float to_f(float x) { return x; }
    static __device__ __forceinline__ float from_f(float x) { return x; }
};
template <> struct Conv<__half> {
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ float2 to_f2(const __half* p) {
        return __half22float2(*reinterpret_cast<const __half2*>(p));
    }
    static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ unsigned pack(float a, float b) {
        __half2 h = __floats2half2_rn(a, b);
        return *reinterpret_cast<unsigned*>(&h);
    }
};
template <> struct Conv<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ float2 to_f2(const __nv_bfloat16* p) {
        return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
    static __device__ __forceinline__ unsigned pack(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<unsigned*>(&h);
    }
};

// Pure arithmetic asm (ex2, mma) is not volatile unless MLXN_ATTN_VOLATILE is set, so the compiler may
// interleave the softmax of one sub-tile with the matrix products of the next.
#ifndef MLXN_ATTN_VOLATILE
#define MLXN_ATTN_VOLATILE 0
#endif
#if MLXN_ATTN_VOLATILE
#define MLXN_ASM_MATH asm volatile
#else
#define MLXN_ASM_MATH asm
#endif

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    MLXN_ASM_MATH("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Number of keys per tile of the generic path; the launcher computes the same value.
__device__ __forceinline__ int gen_smem_floats(int d, int dv, int tk) {
    int dpad = ((d + 3) & ~3) + 4;
    int dvp = (dv + 3) & ~3;
    int dvo = dvp + 4;
    return GEN_ROWS * dpad + tk * dpad + tk * dvp + GEN_ROWS * (tk + 1) + GEN_ROWS * dvo;
}
__device__ __forceinline__ int gen_tk(int d, int dv) {
    for (int tk = 32; tk >= 4; tk >>= 1)
        if (gen_smem_floats(d, dv, tk) * 4 <= 48 * 1024) return tk;
    return 4;
}

// The tensor-core path needs sm_80+ (cp.async, ldmatrix, bf16 mma); older architectures get the generic path
// only, and the launcher knows it.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define MLXN_ATTN_TC 1
#else
#define MLXN_ATTN_TC 0
#endif

#if MLXN_ATTN_TC
// ---------------------------------------------------------------------------------------------------------------
// tensor-core primitives

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        MLXN_ASM_MATH(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};
template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
        MLXN_ASM_MATH(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// Element offset of (row, 16-byte chunk) in a swizzled tile whose rows hold D 16-bit elements (D/8 chunks);
// XOR of the chunk with the row's low 3 bits keeps ldmatrix's 8 row reads on distinct banks. Rows of D = 32 are
// 64 bytes (4 chunks), two to a 128-byte bank line: there the row's bits 1-2 pick the XOR, which stays inside
// the row and again spreads 8 consecutive rows over all 8 chunk positions of the line.
template <int D> __device__ __forceinline__ int swz(int row, int chunk) {
    if constexpr (D == 32)
        return row * D + ((chunk ^ ((row >> 1) & 3)) << 3);
    else
        return row * D + ((chunk ^ (row & 7)) << 3);
}

// Copies rows [row0, row0 + R) of a [nrows, D] matrix (rows `ld` elements apart) into a swizzled tile,
// zero-filling rows past nrows.
template <typename T, int D, int R>
__device__ __forceinline__ void load_tile(T* tile, const T* g, long long ld, int row0, int nrows, int tid) {
    constexpr int CH = D / 8;
    constexpr int TOTAL = R * CH;
    static_assert(TOTAL % NTHREADS == 0, "tile must split evenly over the block");
    // A thread copies the same chunk c of rows r0, r0 + RS, r0 + 2 RS, ...: one 64-bit product per tile, then
    // additions of a block-uniform step.
    constexpr int RS = NTHREADS / CH;
    static_assert(NTHREADS % CH == 0, "whole rows per pass");
    const int r0 = tid / CH;
    const int c = tid % CH;
    const T* src0 = g + (long long)(row0 + r0) * ld + c * 8;
    const long long step = RS * ld;
#pragma unroll
    for (int it = 0; it < TOTAL / NTHREADS; ++it) {
        const int r = r0 + it * RS;
        const bool valid = row0 + r < nrows;
        cp_async16(smem_u32(tile + swz<D>(r, c)), valid ? src0 + it * step : g, valid);
    }
}

// Copies the BC mask values of keys [key0, key0 + BC) into `sm` (BC / 8 chunks of 16 bytes), zero-filling keys
// past skv (cp.async reads only the bytes below skv). `mp` is the (b, h) mask row, 16-byte aligned, msk == 1.
template <typename T, int BC>
__device__ __forceinline__ void load_mask_row(T* sm, const T* mp, int key0, int skv, int tid) {
    static_assert(BC % 8 == 0 && BC / 8 <= NTHREADS, "mask row in 16-byte chunks");
    if (tid < BC / 8) {
        const int key = key0 + tid * 8;
        const int n = min(max(skv - key, 0), 8);
        const T* src = n > 0 ? mp + key : mp;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(sm + tid * 8)), "l"(src),
                     "r"(n * (int)sizeof(T)));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// tensor-core path

template <typename T, int D, int MT, int BC, bool QREG, int NSPLIT>
__device__ __forceinline__ void attn_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                         const T* __restrict__ mask, T* __restrict__ out, int hq, int hkv, int sq,
                                         int skv, long long msb, long long msh, long long msq, long long msk,
                                         const Strides& st, float scale, int causal, unsigned char* smem) {
    constexpr int BR = 4 * 16 * MT;
    constexpr int KT = D / 16;   // k-steps of Q K^T
    constexpr int NT = BC / 8;   // n-tiles of S
    constexpr int DT = D / 8;    // n-tiles of O
    constexpr int NT_ST = NT / NSPLIT;        // n-tiles of S per sub-tile
    constexpr int NP_ST = BC / 16 / NSPLIT;   // 16-key steps per sub-tile
    static_assert(NP_ST >= 1 && NP_ST * 16 * NSPLIT == BC, "sub-tiles must be whole 16-key steps");
    // Q aliases stage 1 when its fragments live in registers and it is exactly one K+V stage in size.
    constexpr bool ALIAS = QREG && (BR == 2 * BC);

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int g = lane >> 2;   // row within an 8-row group
    const int tq = lane & 3;   // column pair within an n-tile

    int qb = blockIdx.x;
    if (causal) qb = gridDim.x - 1 - qb;
    const int bh = blockIdx.y;
    const int b = bh / hq;
    const int h = bh - b * hq;
    const int hk = h / (hq / hkv);
    const T* qp = q + b * st.qsb + h * st.qsh;
    const T* kp = k + b * st.ksb + hk * st.ksh;
    const T* vp = v + b * st.vsb + hk * st.vsh;
    T* op = out + b * st.osb + h * st.osh;
    const T* mp = mask ? mask + (long long)b * msb + (long long)h * msh : nullptr;

    const int q0 = qb * BR;
    const int off = skv - sq;
    int kend = skv;
    if (causal) kend = min(skv, max(0, q0 + BR + off));   // keys visible to the block's last row
    const int nkb = (kend + BC - 1) / BC;
    // A thread's two scores of a row are adjacent keys (even first): a mask contiguous along keys whose rows
    // start 4-byte aligned gives both in one 32-bit load.
    const bool mpair = mp != nullptr && msk == 1 && (msq & 1) == 0 &&
                       (reinterpret_cast<unsigned long long>(mp) & 3ull) == 0;
    // One mask row for every query, contiguous and 16-byte aligned: it streams through shared memory (msm).
    const bool msm =
        mp != nullptr && msq == 0 && msk == 1 && (reinterpret_cast<unsigned long long>(mp) & 15ull) == 0;

    // QREG: Q fragments live in registers (loaded once); otherwise they are re-read by ldmatrix every key tile.
    T* sQ = reinterpret_cast<T*>(smem);
    T* sK0 = ALIAS ? sQ : sQ + BR * D;
    T* sV0 = sK0 + BC * D;
    T* sK1 = sV0 + BC * D;
    T* sV1 = sK1 + BC * D;
    T* sM0 = sV1 + BC * D;   // mask row of stage 0, then of stage 1 (msm)
    T* sM1 = sM0 + BC;
    if (ALIAS) sQ = sK1;

    load_tile<T, D, BR>(sQ, qp, st.qss, q0, sq, tid);
    load_tile<T, D, BC>(sK0, kp, st.kss, 0, skv, tid);
    load_tile<T, D, BC>(sV0, vp, st.vss, 0, skv, tid);
    if (msm) load_mask_row<T, BC>(sM0, mp, 0, skv, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    unsigned qf[MT][QREG ? KT : 1][4];
    if (QREG) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int kk = 0; kk < KT; ++kk) {
                int row = warp * 16 * MT + mt * 16 + (lane & 15);
                ldsm_x4(qf[mt][QREG ? kk : 0], smem_u32(sQ + swz<D>(row, kk * 2 + (lane >> 4))));
            }
        __syncthreads();
    }

    float o[MT][DT][4];
    float m_run[MT][2], l_run[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < DT; ++nt)
#pragma unroll
            for (int c = 0; c < 4; ++c) o[mt][nt][c] = 0.f;
        m_run[mt][0] = m_run[mt][1] = neg_inf();
        l_run[mt][0] = l_run[mt][1] = 0.f;
    }
    const float sl2 = scale * LOG2E;
    const int wrow0 = q0 + warp * 16 * MT;   // first query row of this warp

    for (int j = 0; j < nkb; ++j) {
        const int buf = j & 1;
        T* sK = buf ? sK1 : sK0;
        T* sV = buf ? sV1 : sV0;
        const T* sM = buf ? sM1 : sM0;
        // Tile j has landed for every thread, and every warp has finished tile j - 1, whose stage is refilled
        // next: one barrier per tile.
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < nkb) {
            load_tile<T, D, BC>(buf ? sK0 : sK1, kp, st.kss, (j + 1) * BC, skv, tid);
            load_tile<T, D, BC>(buf ? sV0 : sV1, vp, st.vss, (j + 1) * BC, skv, tid);
            if (msm) load_mask_row<T, BC>(buf ? sM0 : sM1, mp, (j + 1) * BC, skv, tid);
        }
        cp_async_commit();
        const int kbase = j * BC;

        // S = Q K^T, sub-tile by sub-tile (NSPLIT sub-tiles of BC / NSPLIT keys), so that the softmax of one
        // sub-tile can issue while the tensor cores still work on the next one's products.
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[mt][nt][c] = 0.f;
#pragma unroll
        for (int st = 0; st < NSPLIT; ++st) {
#pragma unroll
            for (int kk = 0; kk < KT; ++kk) {
                const int qk = QREG ? kk : 0;
                if (!QREG) {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        int row = warp * 16 * MT + mt * 16 + (lane & 15);
                        ldsm_x4(qf[mt][0], smem_u32(sQ + swz<D>(row, kk * 2 + (lane >> 4))));
                    }
                }
#pragma unroll
                for (int np = st * NP_ST; np < (st + 1) * NP_ST; ++np) {
                    unsigned kf[4];
                    int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldsm_x4(kf, smem_u32(sK + swz<D>(key, kk * 2 + ((lane >> 3) & 1))));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        Mma<T>::run(s[mt][2 * np], qf[mt][qk], kf[0], kf[1]);
                        Mma<T>::run(s[mt][2 * np + 1], qf[mt][qk], kf[2], kf[3]);
                    }
                }
            }
        }

        // Into the log2 domain: x = s * f (+ mask * log2 e). Interior tiles with a positive scale keep the raw
        // scores (f = sl2 is applied inside the exp2's FFMA); masked or edge tiles are scaled here (f = 1).
        const bool edge = (kbase + BC > skv) || (causal && kbase + BC - 1 > wrow0 + off);
        float f = sl2;
        if (mp != nullptr || edge || !(sl2 > 0.f)) {
            f = 1.f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                // msm: the two keys' mask values, shared by every row (zero past skv, where keys die anyway)
                const float2 mcol = msm ? Conv<T>::to_f2(sM + nt * 8 + tq * 2) : make_float2(0.f, 0.f);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int hh = 0; hh < 2; ++hh) {
                        const int row = wrow0 + mt * 16 + g + hh * 8;
                        const int key0 = kbase + nt * 8 + tq * 2;
                        float2 mv = mcol;
                        if (mp != nullptr && !msm && row < sq) {
                            const T* mr = mp + (long long)row * msq;
                            if (mpair && key0 + 1 < skv) {
                                mv = Conv<T>::to_f2(mr + key0);
                            } else {
                                if (key0 < skv) mv.x = Conv<T>::to_f(mr[(long long)key0 * msk]);
                                if (key0 + 1 < skv) mv.y = Conv<T>::to_f(mr[(long long)(key0 + 1) * msk]);
                            }
                        }
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int key = key0 + e;
                            const bool dead = key >= skv || (causal && key > row + off) || row >= sq;
                            const float x = fmaf(e ? mv.y : mv.x, LOG2E, s[mt][nt][2 * hh + e] * sl2);
                            s[mt][nt][2 * hh + e] = dead ? neg_inf() : x;
                        }
                    }
            }
        }

#pragma unroll
        for (int st = 0; st < NSPLIT; ++st) {
            // online softmax over this sub-tile's keys (f > 0, so max(raw) * f is the max of x): the running
            // maxima and the O rescale first, so that the exponentials below share one instruction block with
            // the P V products (MUFU and tensor pipes busy together).
            float alpha[MT][2], mus[MT][2], sum[MT][2];
            bool rescale = false;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) {
                    float mx = fmaxf(s[mt][st * NT_ST][2 * hh], s[mt][st * NT_ST][2 * hh + 1]);
#pragma unroll
                    for (int nt = st * NT_ST + 1; nt < (st + 1) * NT_ST; ++nt)
                        mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hh], s[mt][nt][2 * hh + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    mx = fmaxf(m_run[mt][hh], mx * f);
                    const float mu = mx == neg_inf() ? 0.f : mx;
                    alpha[mt][hh] = fast_exp2(m_run[mt][hh] - mu);
                    rescale |= alpha[mt][hh] != 1.f;
                    m_run[mt][hh] = mx;
                    mus[mt][hh] = -mu;
                    sum[mt][hh] = 0.f;
                }
            }
            // Once the running maxima settle, most sub-tiles leave every alpha at 1: skip the O rescale then.
            if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int nt = 0; nt < DT; ++nt) {
                        o[mt][nt][0] *= alpha[mt][0];
                        o[mt][nt][1] *= alpha[mt][0];
                        o[mt][nt][2] *= alpha[mt][1];
                        o[mt][nt][3] *= alpha[mt][1];
                    }
            }

            // P = exp2(x - m), packed to T, and O += P V over this sub-tile's keys, 16 keys at a time
#pragma unroll
            for (int kk = st * NP_ST; kk < (st + 1) * NP_ST; ++kk) {
                unsigned pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int hh = 0; hh < 2; ++hh)
#pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            const int nt = 2 * kk + half;
                            const float p0 = fast_exp2(fmaf(s[mt][nt][2 * hh], f, mus[mt][hh]));
                            const float p1 = fast_exp2(fmaf(s[mt][nt][2 * hh + 1], f, mus[mt][hh]));
                            sum[mt][hh] += p0 + p1;
                            pa[mt][half * 2 + hh] = Conv<T>::pack(p0, p1);
                        }
#pragma unroll
                for (int dp = 0; dp < DT / 2; ++dp) {
                    unsigned vf[4];
                    int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
                    ldsm_x4_t(vf, smem_u32(sV + swz<D>(key, dp * 2 + (lane >> 4))));
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        Mma<T>::run(o[mt][2 * dp], pa[mt], vf[0], vf[1]);
                        Mma<T>::run(o[mt][2 * dp + 1], pa[mt], vf[2], vf[3]);
                    }
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) l_run[mt][hh] = l_run[mt][hh] * alpha[mt][hh] + sum[mt][hh];
        }
    }
    cp_async_wait<0>();

    // epilogue: normalise and store
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float l = l_run[mt][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = wrow0 + mt * 16 + g + hh * 8;
            if (row < sq) {
                T* orow = op + row * st.oss;
#pragma unroll
                for (int nt = 0; nt < DT; ++nt) {
                    unsigned pk = Conv<T>::pack(o[mt][nt][2 * hh] * inv, o[mt][nt][2 * hh + 1] * inv);
                    *reinterpret_cast<unsigned*>(orow + nt * 8 + tq * 2) = pk;
                }
            }
        }
    }
}

#endif  // MLXN_ATTN_TC

// ---------------------------------------------------------------------------------------------------------------
// generic FMA path: any dtype, any d / dv

template <typename T>
__device__ __forceinline__ void attn_generic(const T* __restrict__ q, const T* __restrict__ k,
                                             const T* __restrict__ v, const T* __restrict__ mask,
                                             T* __restrict__ out, int hq, int hkv, int sq, int skv, int d, int dv,
                                             long long msb, long long msh, long long msq, long long msk,
                                             const Strides& st, float scale, int causal, float* smem) {
    const int TK = gen_tk(d, dv);
    const int dp = (d + 3) & ~3;
    const int dpad = dp + 4;
    const int dvp = (dv + 3) & ~3;
    const int dvo = dvp + 4;
    float* sQ = smem;                      // [GEN_ROWS][dpad]  q * scale * log2(e)
    float* sK = sQ + GEN_ROWS * dpad;      // [TK][dpad]
    float* sV = sK + TK * dpad;            // [TK][dvp]
    float* sP = sV + TK * dvp;             // [GEN_ROWS][TK + 1]
    float* sO = sP + GEN_ROWS * (TK + 1);  // [GEN_ROWS][dvo]   unnormalised output

    const int tid = threadIdx.x;
    int qb = blockIdx.x;
    if (causal) qb = gridDim.x - 1 - qb;
    const int bh = blockIdx.y;
    const int b = bh / hq;
    const int h = bh - b * hq;
    const int hk = h / (hq / hkv);
    const T* qp = q + b * st.qsb + h * st.qsh;
    const T* kp = k + b * st.ksb + hk * st.ksh;
    const T* vp = v + b * st.vsb + hk * st.vsh;
    T* op = out + b * st.osb + h * st.osh;
    const T* mp = mask ? mask + (long long)b * msb + (long long)h * msh : nullptr;

    const int q0 = qb * GEN_ROWS;
    const int off = skv - sq;
    int kend = skv;
    if (causal) kend = min(skv, max(0, q0 + GEN_ROWS + off));
    const float sl2 = scale * LOG2E;

    for (int i = tid; i < GEN_ROWS * dp; i += NTHREADS) {
        int r = i / dp, c = i - r * dp;
        float x = 0.f;
        if (q0 + r < sq && c < d) x = Conv<T>::to_f(qp[(q0 + r) * st.qss + c]) * sl2;
        sQ[r * dpad + c] = x;
    }
    for (int i = tid; i < GEN_ROWS * dvo; i += NTHREADS) sO[i] = 0.f;

    const int r = tid >> 2;   // query row within the block (4 threads per row)
    const int qd = tid & 3;
    const int row = q0 + r;
    float m_run = neg_inf(), l_run = 0.f;
    const int nk = TK >> 2;   // keys per thread per tile

    for (int kt = 0; kt < kend; kt += TK) {
        __syncthreads();
        for (int i = tid; i < TK * dp; i += NTHREADS) {
            int kr = i / dp, c = i - kr * dp;
            float x = 0.f;
            if (kt + kr < skv && c < d) x = Conv<T>::to_f(kp[(kt + kr) * st.kss + c]);
            sK[kr * dpad + c] = x;
        }
        for (int i = tid; i < TK * dvp; i += NTHREADS) {
            int kr = i / dvp, c = i - kr * dvp;
            float x = 0.f;
            if (kt + kr < skv && c < dv) x = Conv<T>::to_f(vp[(kt + kr) * st.vss + c]);
            sV[kr * dvp + c] = x;
        }
        __syncthreads();

        float acc[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = 0.f;
        for (int c = 0; c < dp; c += 4) {
            float4 qv = *reinterpret_cast<const float4*>(sQ + r * dpad + c);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                if (i < nk) {
                    float4 kv = *reinterpret_cast<const float4*>(sK + (qd + 4 * i) * dpad + c);
                    acc[i] = fmaf(qv.x, kv.x, acc[i]);
                    acc[i] = fmaf(qv.y, kv.y, acc[i]);
                    acc[i] = fmaf(qv.z, kv.z, acc[i]);
                    acc[i] = fmaf(qv.w, kv.w, acc[i]);
                }
            }
        }
        float mx = m_run;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (i < nk) {
                int key = kt + qd + 4 * i;
                bool dead = key >= skv || row >= sq || (causal && key > row + off);
                float x = acc[i];
                if (!dead && mp) x += Conv<T>::to_f(mp[(long long)row * msq + (long long)key * msk]) * LOG2E;
                acc[i] = dead ? neg_inf() : x;
                mx = fmaxf(mx, acc[i]);
            }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mu = mx == neg_inf() ? 0.f : mx;
        const float alpha = fast_exp2(m_run - mu);
        m_run = mx;
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (i < nk) {
                float p = fast_exp2(acc[i] - mu);
                sum += p;
                sP[r * (TK + 1) + qd + 4 * i] = p;
            }
        }
        l_run = l_run * alpha + sum;
        __syncwarp();   // a row's P is written and read by the same 4 lanes of one warp

        for (int c0 = 0; c0 < dvp; c0 += 64) {
            float4 ov[4];
#pragma unroll
            for (int gi = 0; gi < 4; ++gi) {
                int col = c0 + 4 * (qd + 4 * gi);
                if (col < dvp) {
                    ov[gi] = *reinterpret_cast<const float4*>(sO + r * dvo + col);
                    ov[gi].x *= alpha;
                    ov[gi].y *= alpha;
                    ov[gi].z *= alpha;
                    ov[gi].w *= alpha;
                }
            }
            for (int jj = 0; jj < TK; ++jj) {
                float p = sP[r * (TK + 1) + jj];
#pragma unroll
                for (int gi = 0; gi < 4; ++gi) {
                    int col = c0 + 4 * (qd + 4 * gi);
                    if (col < dvp) {
                        float4 vv = *reinterpret_cast<const float4*>(sV + jj * dvp + col);
                        ov[gi].x = fmaf(p, vv.x, ov[gi].x);
                        ov[gi].y = fmaf(p, vv.y, ov[gi].y);
                        ov[gi].z = fmaf(p, vv.z, ov[gi].z);
                        ov[gi].w = fmaf(p, vv.w, ov[gi].w);
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < 4; ++gi) {
                int col = c0 + 4 * (qd + 4 * gi);
                if (col < dvp) *reinterpret_cast<float4*>(sO + r * dvo + col) = ov[gi];
            }
        }
    }

    float l = l_run;
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    __syncthreads();   // sO was zeroed by other threads; with no key tile nothing else ordered that
    if (row < sq) {
        for (int c = qd; c < dv; c += 4) op[row * st.oss + c] = Conv<T>::from_f(sO[r * dvo + c] * inv);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// register-tiled f32 path: f32, d == dv in {32, 64, 128}, q/k/v 16-byte aligned, sm_80+ (cp.async). Exact FP32
// FMA (no TF32). 128 threads = 16 row groups x 8 key/column groups; warp w holds row groups 4w..4w+3, lane bits
// 0-2 pick the key/column group. A thread owns TM consecutive query rows, TN keys of each tile (strided by 8, so
// the 8 groups read 8 different K rows of one bank line) and D / 8 output columns (4 consecutive, strided by 32).
//   S = Q K^T: Q (pre-scaled by scale * log2(e)) is stored transposed once per block ([D][BR]); K tiles stream
//              through a 2-stage cp.async pipeline ([BC][D + 4], padded so the 8 key groups hit distinct banks).
//   softmax:   online, exp2 domain, row maxima over the 8 lanes of a row by shuffles; row sums stay per thread
//              until the end.
//   O += P V:  P goes through shared memory private to the warp (the warp holds every key of its rows and every
//              output column of them), so one block barrier per key tile suffices.
// Mask: a mask that is the same for every query row (msq == 0, e.g. [b,1,1,skv] padding) is read once per key and
// tile, before Q K^T; other masks are read per score after it.
// MLXN_ATTN_F32_D32 / _D64 / _D128 pick (TM, TN) for the harness's comparisons (d = 32: 0 = 8x4, the default,
// 1 = 4x4, 2 = 4x8, 3 = 8x8; d = 64: 0 = 4x4, the default, 1 = 4x8, 2 = 8x4; d = 128: 0 = 4x4, the default,
// 1 = 4x8), MLXN_ATTN_F32_MINB32 / 64 / 128 the entry points' minimum blocks per SM (3 / 1 / 1);
// the harness's MLXN_ATTN_F32_TILED = 0 sends f32 back to the generic path (the old baseline).

#ifndef MLXN_ATTN_F32_D32
#define MLXN_ATTN_F32_D32 0
#endif
#ifndef MLXN_ATTN_F32_D64
#define MLXN_ATTN_F32_D64 0
#endif
#ifndef MLXN_ATTN_F32_D128
#define MLXN_ATTN_F32_D128 0
#endif
#if MLXN_ATTN_F32_D32 == 1
constexpr int F32_D32_TM = 4, F32_D32_TN = 4;
#elif MLXN_ATTN_F32_D32 == 2
constexpr int F32_D32_TM = 4, F32_D32_TN = 8;
#elif MLXN_ATTN_F32_D32 == 3
constexpr int F32_D32_TM = 8, F32_D32_TN = 8;
#else
constexpr int F32_D32_TM = 8, F32_D32_TN = 4;
#endif
#if MLXN_ATTN_F32_D64 == 1
constexpr int F32_D64_TM = 4, F32_D64_TN = 8;
#elif MLXN_ATTN_F32_D64 == 2
constexpr int F32_D64_TM = 8, F32_D64_TN = 4;
#else
constexpr int F32_D64_TM = 4, F32_D64_TN = 4;
#endif
#if MLXN_ATTN_F32_D128 == 1
constexpr int F32_D128_TM = 4, F32_D128_TN = 8;
#else
constexpr int F32_D128_TM = 4, F32_D128_TN = 4;
#endif

// Minimum resident blocks per SM the entry points ask of the register allocator (caps registers at 64K / 128 / N).
#ifndef MLXN_ATTN_F32_MINB32
#define MLXN_ATTN_F32_MINB32 3
#endif
#ifndef MLXN_ATTN_F32_MINB64
#define MLXN_ATTN_F32_MINB64 1
#endif
#ifndef MLXN_ATTN_F32_MINB128
#define MLXN_ATTN_F32_MINB128 1
#endif
constexpr int F32_D32_MINB = MLXN_ATTN_F32_MINB32, F32_D64_MINB = MLXN_ATTN_F32_MINB64,
              F32_D128_MINB = MLXN_ATTN_F32_MINB128;

// Tile geometry of the f32 path; the launcher (attention.rs, `f32_tile`) computes the same sizes.
template <int D, int TM, int TN> struct F32Tile {
    static constexpr int BR = 16 * TM;       // query rows per block
    static constexpr int BC = 8 * TN;        // keys per tile
    static constexpr int DP = D + 4;         // K row pitch (floats)
    static constexpr int PW = 4 * TM + 4;    // P pitch: the warp's 4 * TM rows, padded
    static constexpr int Q_FLOATS = D * BR;
    static constexpr int K_FLOATS = BC * DP;
    static constexpr int V_FLOATS = BC * D;
    static constexpr int P_FLOATS = 4 * BC * PW;
    static constexpr int SMEM_BYTES = 4 * (Q_FLOATS + 2 * (K_FLOATS + V_FLOATS) + P_FLOATS);
};

#if MLXN_ATTN_TC
// Rows [kt, kt + BC) of K and V into one stage, zero-filling rows past skv; kp and vp point at row kt.
template <int D, int BC>
__device__ __forceinline__ void f32_load_kv(float* sK, float* sV, const float* kp, const float* vp, long long kss,
                                            long long vss, int kt, int skv, int tid) {
    constexpr int CH = D / 4;   // 16-byte chunks per row
    constexpr int TOTAL = BC * CH;
    static_assert(TOTAL % NTHREADS == 0, "K/V tile must split evenly over the block");
#pragma unroll
    for (int it = 0; it < TOTAL / NTHREADS; ++it) {
        const int idx = tid + it * NTHREADS;
        const int r = idx / CH;
        const int c = idx - r * CH;
        const bool valid = kt + r < skv;
        const float* ks = kp + r * kss + c * 4;
        const float* vs = vp + r * vss + c * 4;
        cp_async16(smem_u32(sK + r * (D + 4) + c * 4), valid ? ks : kp, valid);
        cp_async16(smem_u32(sV + r * D + c * 4), valid ? vs : vp, valid);
    }
}

template <int D, int TM, int TN, bool HAS_MASK>
__device__ __forceinline__ void attn_f32_tiled(const float* __restrict__ q, const float* __restrict__ k,
                                               const float* __restrict__ v, const float* __restrict__ mask,
                                               float* __restrict__ out, int hq, int hkv, int sq, int skv,
                                               long long msb, long long msh, long long msq, long long msk,
                                               const Strides& st, float scale, int causal, float* smem) {
    using Tl = F32Tile<D, TM, TN>;
    constexpr int BR = Tl::BR, BC = Tl::BC, DP = Tl::DP, PW = Tl::PW;
    constexpr int NU = D / 32;   // groups of 4 output columns per thread
    static_assert(TM % 4 == 0 && D % 32 == 0, "tile shape");

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int tx = lane & 7;            // key / column group
    const int tyl = lane >> 3;          // row group within the warp
    const int rloc = (warp * 4 + tyl) * TM;   // first of the thread's rows within the block

    int qb = blockIdx.x;
    if (causal) qb = gridDim.x - 1 - qb;
    const int bh = blockIdx.y;
    const int b = bh / hq;
    const int h = bh - b * hq;
    const int hk = h / (hq / hkv);
    const float* qp = q + b * st.qsb + h * st.qsh;
    const float* kp = k + b * st.ksb + hk * st.ksh;
    const float* vp = v + b * st.vsb + hk * st.vsh;
    float* op = out + b * st.osb + h * st.osh;
    const float* mp = HAS_MASK ? mask + (long long)b * msb + (long long)h * msh : nullptr;
    const bool mrow = HAS_MASK && msq == 0;   // the same mask row for every query

    const int q0 = qb * BR;
    const int off = skv - sq;
    int kend = skv;
    if (causal) kend = min(skv, max(0, q0 + BR + off));
    const int nkb = (kend + BC - 1) / BC;

    float* sQ = smem;
    float* sK0 = sQ + Tl::Q_FLOATS;
    float* sV0 = sK0 + Tl::K_FLOATS;
    float* sK1 = sV0 + Tl::V_FLOATS;
    float* sV1 = sK1 + Tl::K_FLOATS;
    float* sP = sV1 + Tl::V_FLOATS + warp * BC * PW;   // this warp's P, [BC][PW]

    if (nkb > 0) f32_load_kv<D, BC>(sK0, sV0, kp, vp, st.kss, st.vss, 0, skv, tid);
    cp_async_commit();

    // Q tile, transposed to [D][BR] and pre-scaled; consecutive lanes take consecutive rows (conflict-free stores).
    const float sl2 = scale * LOG2E;
    for (int idx = tid; idx < BR * (D / 4); idx += NTHREADS) {
        const int r = idx % BR;
        const int c = (idx / BR) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (q0 + r < sq) x = *reinterpret_cast<const float4*>(qp + (q0 + r) * st.qss + c);
        sQ[(c + 0) * BR + r] = x.x * sl2;
        sQ[(c + 1) * BR + r] = x.y * sl2;
        sQ[(c + 2) * BR + r] = x.z * sl2;
        sQ[(c + 3) * BR + r] = x.w * sl2;
    }

    float o[TM][4 * NU];
    float m_run[TM], l_run[TM];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int c = 0; c < 4 * NU; ++c) o[i][c] = 0.f;
        m_run[i] = neg_inf();
        l_run[i] = 0.f;
    }

    for (int j = 0; j < nkb; ++j) {
        const int kt = j * BC;
        const float* sK = (j & 1) ? sK1 : sK0;
        const float* sV = (j & 1) ? sV1 : sV0;
        // Tile j has landed for every thread and every warp is done with tile j - 1 (its stage and its P).
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < nkb)
            f32_load_kv<D, BC>((j & 1) ? sK0 : sK1, (j & 1) ? sV0 : sV1, kp + (kt + BC) * st.kss,
                               vp + (kt + BC) * st.vss, st.kss, st.vss, kt + BC, skv, tid);
        cp_async_commit();

        float mk[TN];
        if (mrow) {
#pragma unroll
            for (int jj = 0; jj < TN; ++jj) {
                const int key = kt + tx + 8 * jj;
                mk[jj] = key < skv ? mp[(long long)key * msk] : 0.f;
            }
        }

        // S = Q K^T
        float s[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int jj = 0; jj < TN; ++jj) s[i][jj] = 0.f;
#pragma unroll
        for (int c = 0; c < D; c += 4) {
            float4 kf[TN];
#pragma unroll
            for (int jj = 0; jj < TN; ++jj) kf[jj] = *reinterpret_cast<const float4*>(sK + (tx + 8 * jj) * DP + c);
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                float qf[TM];
#pragma unroll
                for (int i4 = 0; i4 < TM / 4; ++i4) {
                    const float4 t = *reinterpret_cast<const float4*>(sQ + (c + u) * BR + rloc + 4 * i4);
                    qf[4 * i4 + 0] = t.x;
                    qf[4 * i4 + 1] = t.y;
                    qf[4 * i4 + 2] = t.z;
                    qf[4 * i4 + 3] = t.w;
                }
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int jj = 0; jj < TN; ++jj) {
                        const float kv = u == 0 ? kf[jj].x : u == 1 ? kf[jj].y : u == 2 ? kf[jj].z : kf[jj].w;
                        s[i][jj] = fmaf(qf[i], kv, s[i][jj]);
                    }
            }
        }

        // mask, bounds, causal; online softmax
        float alpha[TM];
        bool rescale = false;
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int row = q0 + rloc + i;
            float mx = neg_inf();
#pragma unroll
            for (int jj = 0; jj < TN; ++jj) {
                const int key = kt + tx + 8 * jj;
                const bool dead = key >= skv || row >= sq || (causal && key > row + off);
                float x = s[i][jj];
                if (HAS_MASK && !dead)
                    x = fmaf(mrow ? mk[jj] : mp[(long long)row * msq + (long long)key * msk], LOG2E, x);
                x = dead ? neg_inf() : x;
                s[i][jj] = x;
                mx = fmaxf(mx, x);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
            const float m_new = fmaxf(m_run[i], mx);
            const float mu = m_new == neg_inf() ? 0.f : m_new;
            alpha[i] = fast_exp2(m_run[i] - mu);
            rescale |= alpha[i] != 1.f;
            m_run[i] = m_new;
            float sum = 0.f;
#pragma unroll
            for (int jj = 0; jj < TN; ++jj) {
                const float p = fast_exp2(s[i][jj] - mu);
                s[i][jj] = p;
                sum += p;
            }
            l_run[i] = l_run[i] * alpha[i] + sum;
        }
        // P to the warp's shared memory, transposed ([key][row]) so the P V loop reads 4 rows at once.
#pragma unroll
        for (int jj = 0; jj < TN; ++jj)
#pragma unroll
            for (int i4 = 0; i4 < TM / 4; ++i4)
                *reinterpret_cast<float4*>(sP + (tx + 8 * jj) * PW + tyl * TM + 4 * i4) =
                    make_float4(s[4 * i4][jj], s[4 * i4 + 1][jj], s[4 * i4 + 2][jj], s[4 * i4 + 3][jj]);
        if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int c = 0; c < 4 * NU; ++c) o[i][c] *= alpha[i];
        }
        __syncwarp();

        // O += P V
#pragma unroll 8
        for (int kk = 0; kk < BC; ++kk) {
            float pr[TM];
#pragma unroll
            for (int i4 = 0; i4 < TM / 4; ++i4) {
                const float4 t = *reinterpret_cast<const float4*>(sP + kk * PW + tyl * TM + 4 * i4);
                pr[4 * i4 + 0] = t.x;
                pr[4 * i4 + 1] = t.y;
                pr[4 * i4 + 2] = t.z;
                pr[4 * i4 + 3] = t.w;
            }
#pragma unroll
            for (int u = 0; u < NU; ++u) {
                const float4 vv = *reinterpret_cast<const float4*>(sV + kk * D + 32 * u + 4 * tx);
#pragma unroll
                for (int i = 0; i < TM; ++i) {
                    o[i][4 * u + 0] = fmaf(pr[i], vv.x, o[i][4 * u + 0]);
                    o[i][4 * u + 1] = fmaf(pr[i], vv.y, o[i][4 * u + 1]);
                    o[i][4 * u + 2] = fmaf(pr[i], vv.z, o[i][4 * u + 2]);
                    o[i][4 * u + 3] = fmaf(pr[i], vv.w, o[i][4 * u + 3]);
                }
            }
        }
    }
    cp_async_wait<0>();

    // epilogue: row sums over the 8 lanes of a row, normalise, store (float4 where every row start of out is
    // 16-byte aligned)
    const bool out16 =
        ((reinterpret_cast<unsigned long long>(out) & 15ull) | ((st.osb | st.osh | st.oss) & 3ll)) == 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        float l = l_run[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        l += __shfl_xor_sync(0xffffffffu, l, 4);
        const float inv = l > 0.f ? 1.f / l : 0.f;
        const int row = q0 + rloc + i;
        if (row < sq) {
            float* orow = op + row * st.oss;
#pragma unroll
            for (int u = 0; u < NU; ++u) {
                const float4 x = make_float4(o[i][4 * u] * inv, o[i][4 * u + 1] * inv, o[i][4 * u + 2] * inv,
                                             o[i][4 * u + 3] * inv);
                float* dst = orow + 32 * u + 4 * tx;
                if (out16) {
                    *reinterpret_cast<float4*>(dst) = x;
                } else {
                    dst[0] = x.x;
                    dst[1] = x.y;
                    dst[2] = x.z;
                    dst[3] = x.w;
                }
            }
        }
    }
}

#endif  // MLXN_ATTN_TC

// Whether every row start of q, k and v is 16-byte aligned: the fast paths' rule (the launcher checks the same).
template <typename T>
__device__ __forceinline__ bool rows_aligned16(const T* q, const T* k, const T* v, const Strides& st) {
    constexpr long long E = 16 / sizeof(T);
    const unsigned long long p = reinterpret_cast<unsigned long long>(q) | reinterpret_cast<unsigned long long>(k) |
                                 reinterpret_cast<unsigned long long>(v);
    const long long s = st.qsb | st.qsh | st.qss | st.ksb | st.ksh | st.kss | st.vsb | st.vsh | st.vss;
    return (p & 15ull) == 0 && (s & (E - 1)) == 0;
}

// Whether out takes the tensor-core path's 4-byte stores: out 4-byte aligned, its strides even.
template <typename T> __device__ __forceinline__ bool out_pairs(const T* out, const Strides& st) {
    return (reinterpret_cast<unsigned long long>(out) & 3ull) == 0 && ((st.osb | st.osh | st.oss) & 1) == 0;
}

#if MLXN_ATTN_TC
// Body of the entry points attention_f32_d32/_d64/_d128 (one per head size, so each gets its own register
// allocation). The launcher calls them only for d == dv == D with q/k/v rows 16-byte aligned on sm_80+; anything
// else returns without writing (the launcher's tests would see the unwritten output).
template <int D, int TM, int TN>
__device__ __forceinline__ void attn_f32_entry(const float* q, const float* k, const float* v, const float* mask,
                                               float* out, int hq, int hkv, int sq, int skv, int d, int dv,
                                               long long msb, long long msh, long long msq, long long msk,
                                               const Strides& st, float scale, int causal) {
    extern __shared__ __align__(16) unsigned char smem[];
    if (d != D || dv != D || !rows_aligned16(q, k, v, st)) return;
    float* sm = reinterpret_cast<float*>(smem);
    if (mask)
        attn_f32_tiled<D, TM, TN, true>(q, k, v, mask, out, hq, hkv, sq, skv, msb, msh, msq, msk, st, scale, causal,
                                        sm);
    else
        attn_f32_tiled<D, TM, TN, false>(q, k, v, mask, out, hq, hkv, sq, skv, msb, msh, msq, msk, st, scale, causal,
                                         sm);
}
#endif  // MLXN_ATTN_TC

// The f16/bf16 generic path. The launcher sends tensor-core shapes to their own entry points
// (attention_<dtype>_d<d>), so these carry only the generic code: about half the NVRTC time of the module and far
// fewer registers than an entry point that also holds the tensor-core paths.
template <typename T>
__device__ __forceinline__ void attn_half_entry(const T* q, const T* k, const T* v, const T* mask, T* out, int hq,
                                                int hkv, int sq, int skv, int d, int dv, long long msb, long long msh,
                                                long long msq, long long msk, const Strides& st, float scale,
                                                int causal) {
    extern __shared__ __align__(16) unsigned char smem[];
    attn_generic<T>(q, k, v, mask, out, hq, hkv, sq, skv, d, dv, msb, msh, msq, msk, st, scale, causal,
                    reinterpret_cast<float*>(smem));
}

}  // namespace mlxn_attn

// The ABI's parameter list (see the header) and the strides gathered from it.
#define MLXN_ATTN_PARAMS(T)                                                                                     \
    const T *q, const T *k, const T *v, const T *mask, T *out, int batch, int hq, int hkv, int sq, int skv,    \
        int d, int dv, long long msb, long long msh, long long msq, long long msk, long long qsb, long long qsh, \
        long long qss, long long ksb, long long ksh, long long kss, long long vsb, long long vsh, long long vss, \
        long long osb, long long osh, long long oss, float scale, int causal
#define MLXN_ATTN_STRIDES mlxn_attn::Strides{qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb, osh, oss}

extern "C" __global__ void __launch_bounds__(128) attention_f32(MLXN_ATTN_PARAMS(float)) {
    extern __shared__ __align__(16) unsigned char smem_f32[];
    (void)batch;
    mlxn_attn::attn_generic<float>(q, k, v, mask, out, hq, hkv, sq, skv, d, dv, msb, msh, msq, msk,
                                   MLXN_ATTN_STRIDES, scale, causal, reinterpret_cast<float*>(smem_f32));
}

// f32, d == dv == D, q/k/v rows 16-byte aligned, sm_80+: the register-tiled path (see attn_f32_tiled).
#if MLXN_ATTN_TC
#define MLXN_ATTN_F32_ENTRY(D)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128, mlxn_attn::F32_D##D##_MINB)                               \
        attention_f32_d##D(MLXN_ATTN_PARAMS(float)) {                                                            \
        (void)batch;                                                                                              \
        using namespace mlxn_attn;                                                                                \
        attn_f32_entry<D, F32_D##D##_TM, F32_D##D##_TN>(q, k, v, mask, out, hq, hkv, sq, skv, d, dv, msb, msh,   \
                                                        msq, msk, MLXN_ATTN_STRIDES, scale, causal);             \
    }
#else
#define MLXN_ATTN_F32_ENTRY(D)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) attention_f32_d##D(MLXN_ATTN_PARAMS(float)) {}
#endif
MLXN_ATTN_F32_ENTRY(32)
MLXN_ATTN_F32_ENTRY(64)
MLXN_ATTN_F32_ENTRY(128)

extern "C" __global__ void __launch_bounds__(128) attention_f16(MLXN_ATTN_PARAMS(__half)) {
    (void)batch;
    mlxn_attn::attn_half_entry<__half>(q, k, v, mask, out, hq, hkv, sq, skv, d, dv, msb, msh, msq, msk,
                                       MLXN_ATTN_STRIDES, scale, causal);
}

extern "C" __global__ void __launch_bounds__(128) attention_bf16(MLXN_ATTN_PARAMS(__nv_bfloat16)) {
    (void)batch;
    mlxn_attn::attn_half_entry<__nv_bfloat16>(q, k, v, mask, out, hq, hkv, sq, skv, d, dv, msb, msh, msq, msk,
                                              MLXN_ATTN_STRIDES, scale, causal);
}

// Tensor-core entry points, one per (dtype, head size), with the ABI's parameters: for d == dv == D, q/k/v rows
// 16-byte aligned, out pairs, sm_80+, launched with the tensor-core geometry of the launcher's `plan`; anything
// else returns without writing.
#if MLXN_ATTN_TC
#define MLXN_ATTN_TC_ENTRY(NAME, T, D, MT, BC, QREG, NS)                                                       \
    extern "C" __global__ void __launch_bounds__(128) NAME(MLXN_ATTN_PARAMS(T)) {                              \
        extern __shared__ __align__(16) unsigned char smem_tc[];                                               \
        (void)batch;                                                                                           \
        const mlxn_attn::Strides st = MLXN_ATTN_STRIDES;                                                       \
        if (d != D || dv != D || !mlxn_attn::rows_aligned16(q, k, v, st) || !mlxn_attn::out_pairs(out, st))    \
            return;                                                                                            \
        mlxn_attn::attn_mma<T, D, MT, BC, QREG, NS>(q, k, v, mask, out, hq, hkv, sq, skv, msb, msh, msq, msk,  \
                                                    st, scale, causal, smem_tc);                               \
    }
#define MLXN_ATTN_TC_ENTRIES(SUF, T)                                                                           \
    MLXN_ATTN_TC_ENTRY(attention_##SUF##_d32, T, 32, mlxn_attn::D32_MT, mlxn_attn::D32_BC, mlxn_attn::D32_QREG, \
                       mlxn_attn::NSPLIT32)                                                                    \
    MLXN_ATTN_TC_ENTRY(attention_##SUF##_d64, T, 64, mlxn_attn::D64_MT, mlxn_attn::D64_BC, mlxn_attn::D64_QREG, \
                       mlxn_attn::NSPLIT)                                                                      \
    MLXN_ATTN_TC_ENTRY(attention_##SUF##_d128, T, 128, mlxn_attn::D128_MT, mlxn_attn::D128_BC,                 \
                       mlxn_attn::D128_QREG, mlxn_attn::NSPLIT128)
MLXN_ATTN_TC_ENTRIES(f16, __half)
MLXN_ATTN_TC_ENTRIES(bf16, __nv_bfloat16)
#endif
