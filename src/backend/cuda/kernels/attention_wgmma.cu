// Hopper (sm_90a) flash-attention forward for head size 64, f16 / bf16, on wgmma: the path the launcher
// (src/backend/cuda/attention.rs, `plan`) takes on compute capability 9.0 for d == dv == 64 without a mask. Compiled
// for sm_90a (an architecture-specific module); on other targets the entry points are empty and never launched.
// Standalone check and benchmark: tools/attention/wgmma_harness.cu.
//
// ABI: attention.cu's (T = __half or __nv_bfloat16, d == dv == 64): q, k, v, mask, out, batch, hq, hkv, sq, skv, d,
// dv, the mask strides msb, msh, msq, msk, the operand strides qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb,
// osh, oss (elements; batch, head, row), scale, causal. Every q/k/v row start must be 16-byte aligned (pointers
// and strides), out 4-byte aligned with even strides. Query head h reads kv head h / (hq / hkv). Causal: query i
// sees key j only if j <= i + (skv - sq). A row whose keys are all masked produces 0. f32 accumulation, one
// rounding on store. Masks work (read per score after Q K^T) but are slow here; the launcher sends masked calls to
// attention.cu's mma.sync path, which streams a padding mask through shared memory.
//
// Launch: grid (ceil(sq / BR), batch * hq), block 128 * NWG threads, dynamic shared memory wg::smem_bytes<...>
// (above 48 KiB: raise cudaFuncAttributeMaxDynamicSharedMemorySize); BR = 64 * NWG query rows per block.
//
// Technique: each warpgroup (128 threads) owns 64 query rows. Q (once) and the K / V tiles of BC keys stream through
// cp.async into 128-byte-swizzled shared memory (16-byte chunk c of row r at r * 128 + ((c ^ (r & 7)) * 16), 8-row
// atoms of 1024 bytes, 1024-byte aligned). S = Q K^T is one wgmma m64nBCk16 chain (A = Q, B = K, both K-major
// from shared memory); its accumulators are in the mma.sync m16n8 C-fragment order, so the online softmax (exp2
// domain, quad shuffles) is the mma.sync kernel's with one 16-row slice per warp. P is packed to T in registers,
// which is exactly the A-fragment layout of wgmma's register-A form: O += P V is wgmma m64n64k16 with A from
// registers and B = V [key][d] read MN-major (transpose-B, 128-byte swizzle: 8 keys = one 1024-byte atom).
// OVL (FlashAttention-3's intra-warpgroup overlap): S_{j} = Q K_j^T and O += P_{j-1} V_{j-1} are issued together,
// the softmax of S_j runs while P_{j-1} V_{j-1} is in flight, and O is rescaled after it; V then needs 3 stages.

#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace wg {

// Element strides of q, k, v and out: batch, head, sequence row (the ABI's qsb ... oss).
struct Strides {
    long long qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb, osh, oss;
};

constexpr float LOG2E = 1.4426950408889634f;

template <typename T> struct Conv;
template <> struct Conv<__half> {
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ float2 to_f2(const __half* p) {
        return __half22float2(*reinterpret_cast<const __half2*>(p));
    }
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
    static __device__ __forceinline__ unsigned pack(float a, float b) {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<unsigned*>(&h);
    }
};

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait0() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Orders this thread's completed cp.async writes (generic proxy) before later wgmma reads (async proxy).
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of wgmma operand registers across the (asynchronous) issue / wait.
template <int N> __device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void fence_regs(unsigned (&r)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(r[i][e])::"memory");
}

// K-major tile of 128-byte rows, 128-byte swizzle (8-row atoms 1024 bytes apart): start, LBO 16 (unused), SBO 1024.
__device__ __forceinline__ unsigned long long desc_kmajor(unsigned saddr) {
    return (unsigned long long)((saddr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}
// MN-major tile (V [key][d], d = 64 = one 128-byte swizzle atom wide): 8 keys per 1024-byte atom. For MN-major
// swizzled layouts the stride byte offset steps along K (8-key groups) and the leading byte offset steps between
// 64-element MN blocks (unused with N = 64). VD selects variants for the harness: 0 both 1024, 1 LBO 16 / SBO 1024,
// 2 LBO 1024 / SBO 16.
template <int VD> __device__ __forceinline__ unsigned long long desc_mnmajor(unsigned saddr) {
    constexpr unsigned long long lbo = VD == 1 ? 1 : 64, sbo = VD == 2 ? 1 : 64;
    return (unsigned long long)((saddr & 0x3FFFF) >> 4) | (lbo << 16) | (sbo << 32) | (1ull << 62);
}

// The wgmma chains, one per (dtype TY, shape): Q K^T from shared memory (qk) or with Q in registers (qkr), P V with
// P in registers (pv, 4 or 8 k-steps of 16 keys); each fences, issues and commits one group.
#define WG_QK64(TY) \
__device__ __forceinline__ void wg_qk_##TY##_64(float (&d)[32], const unsigned long long (&a)[4], const unsigned long long (&b)[4]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %36, 0, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %33, %37, 1, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %34, %38, 1, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %35, %39, 1, 1, 1, 0, 0;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
        : "l"(a[0]), "l"(a[1]), "l"(a[2]), "l"(a[3]), "l"(b[0]), "l"(b[1]), "l"(b[2]), "l"(b[3]) \
        : "memory"); \
}
WG_QK64(f16)
WG_QK64(bf16)
#define WG_QK128(TY) \
__device__ __forceinline__ void wg_qk_##TY##_128(float (&d)[64], const unsigned long long (&a)[4], const unsigned long long (&b)[4]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %68, 0, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %65, %69, 1, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %66, %70, 1, 1, 1, 0, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %67, %71, 1, 1, 1, 0, 0;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
        : "l"(a[0]), "l"(a[1]), "l"(a[2]), "l"(a[3]), "l"(b[0]), "l"(b[1]), "l"(b[2]), "l"(b[3]) \
        : "memory"); \
}
WG_QK128(f16)
WG_QK128(bf16)
#define WG_PV4(TY) \
__device__ __forceinline__ void wg_pv_##TY##_4(float (&d)[32], const unsigned (&p)[4][4], const unsigned long long (&v)[4]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %48, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %49, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%40, %41, %42, %43}, %50, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%44, %45, %46, %47}, %51, 1, 1, 1, 1;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
        : "r"(p[0][0]), "r"(p[0][1]), "r"(p[0][2]), "r"(p[0][3]), "r"(p[1][0]), "r"(p[1][1]), "r"(p[1][2]), "r"(p[1][3]), "r"(p[2][0]), "r"(p[2][1]), "r"(p[2][2]), "r"(p[2][3]), "r"(p[3][0]), "r"(p[3][1]), "r"(p[3][2]), "r"(p[3][3]), \
          "l"(v[0]), "l"(v[1]), "l"(v[2]), "l"(v[3]) \
        : "memory"); \
}
WG_PV4(f16)
WG_PV4(bf16)
#define WG_PV8(TY) \
__device__ __forceinline__ void wg_pv_##TY##_8(float (&d)[32], const unsigned (&p)[8][4], const unsigned long long (&v)[8]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %64, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %65, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%40, %41, %42, %43}, %66, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%44, %45, %46, %47}, %67, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%48, %49, %50, %51}, %68, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%52, %53, %54, %55}, %69, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%56, %57, %58, %59}, %70, 1, 1, 1, 1;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%60, %61, %62, %63}, %71, 1, 1, 1, 1;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
        : "r"(p[0][0]), "r"(p[0][1]), "r"(p[0][2]), "r"(p[0][3]), "r"(p[1][0]), "r"(p[1][1]), "r"(p[1][2]), "r"(p[1][3]), "r"(p[2][0]), "r"(p[2][1]), "r"(p[2][2]), "r"(p[2][3]), "r"(p[3][0]), "r"(p[3][1]), "r"(p[3][2]), "r"(p[3][3]), "r"(p[4][0]), "r"(p[4][1]), "r"(p[4][2]), "r"(p[4][3]), "r"(p[5][0]), "r"(p[5][1]), "r"(p[5][2]), "r"(p[5][3]), "r"(p[6][0]), "r"(p[6][1]), "r"(p[6][2]), "r"(p[6][3]), "r"(p[7][0]), "r"(p[7][1]), "r"(p[7][2]), "r"(p[7][3]), \
          "l"(v[0]), "l"(v[1]), "l"(v[2]), "l"(v[3]), "l"(v[4]), "l"(v[5]), "l"(v[6]), "l"(v[7]) \
        : "memory"); \
}
WG_PV8(f16)
WG_PV8(bf16)
#define WG_QKR64(TY) \
__device__ __forceinline__ void wg_qkr_##TY##_64(float (&d)[32], const unsigned (&qf)[4][4], const unsigned long long (&b)[4]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %48, 0, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %49, 1, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%40, %41, %42, %43}, %50, 1, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%44, %45, %46, %47}, %51, 1, 1, 1, 0;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
        : "r"(qf[0][0]), "r"(qf[0][1]), "r"(qf[0][2]), "r"(qf[0][3]), "r"(qf[1][0]), "r"(qf[1][1]), "r"(qf[1][2]), "r"(qf[1][3]), "r"(qf[2][0]), "r"(qf[2][1]), "r"(qf[2][2]), "r"(qf[2][3]), "r"(qf[3][0]), "r"(qf[3][1]), "r"(qf[3][2]), "r"(qf[3][3]), \
          "l"(b[0]), "l"(b[1]), "l"(b[2]), "l"(b[3]) \
        : "memory"); \
}
WG_QKR64(f16)
WG_QKR64(bf16)
#define WG_QKR128(TY) \
__device__ __forceinline__ void wg_qkr_##TY##_128(float (&d)[64], const unsigned (&qf)[4][4], const unsigned long long (&b)[4]) { \
    asm volatile("wgmma.fence.sync.aligned;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %80, 0, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%68, %69, %70, %71}, %81, 1, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%72, %73, %74, %75}, %82, 1, 1, 1, 0;\n" \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%76, %77, %78, %79}, %83, 1, 1, 1, 0;\n" \
        "wgmma.commit_group.sync.aligned;\n" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
        : "r"(qf[0][0]), "r"(qf[0][1]), "r"(qf[0][2]), "r"(qf[0][3]), "r"(qf[1][0]), "r"(qf[1][1]), "r"(qf[1][2]), "r"(qf[1][3]), "r"(qf[2][0]), "r"(qf[2][1]), "r"(qf[2][2]), "r"(qf[2][3]), "r"(qf[3][0]), "r"(qf[3][1]), "r"(qf[3][2]), "r"(qf[3][3]), \
          "l"(b[0]), "l"(b[1]), "l"(b[2]), "l"(b[3]) \
        : "memory"); \
}
WG_QKR128(f16)
WG_QKR128(bf16)

template <int N> struct IC {   // compile-time int for the generic lambdas (NVRTC has no <type_traits>)
    static constexpr int value = N;
};

template <typename T> struct Wg;
template <> struct Wg<__half> {
    static __device__ __forceinline__ void qk(float (&d)[64], const unsigned (&qf)[4][4],
                                              const unsigned long long (&b)[4]) {
        wg_qkr_f16_128(d, qf, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[32], const unsigned (&qf)[4][4],
                                              const unsigned long long (&b)[4]) {
        wg_qkr_f16_64(d, qf, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[64], const unsigned long long (&a)[4],
                                              const unsigned long long (&b)[4]) {
        wg_qk_f16_128(d, a, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[32], const unsigned long long (&a)[4],
                                              const unsigned long long (&b)[4]) {
        wg_qk_f16_64(d, a, b);
    }
    static __device__ __forceinline__ void pv(float (&d)[32], const unsigned (&p)[8][4],
                                              const unsigned long long (&v)[8]) {
        wg_pv_f16_8(d, p, v);
    }
    static __device__ __forceinline__ void pv(float (&d)[32], const unsigned (&p)[4][4],
                                              const unsigned long long (&v)[4]) {
        wg_pv_f16_4(d, p, v);
    }
};
template <> struct Wg<__nv_bfloat16> {
    static __device__ __forceinline__ void qk(float (&d)[64], const unsigned (&qf)[4][4],
                                              const unsigned long long (&b)[4]) {
        wg_qkr_bf16_128(d, qf, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[32], const unsigned (&qf)[4][4],
                                              const unsigned long long (&b)[4]) {
        wg_qkr_bf16_64(d, qf, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[64], const unsigned long long (&a)[4],
                                              const unsigned long long (&b)[4]) {
        wg_qk_bf16_128(d, a, b);
    }
    static __device__ __forceinline__ void qk(float (&d)[32], const unsigned long long (&a)[4],
                                              const unsigned long long (&b)[4]) {
        wg_qk_bf16_64(d, a, b);
    }
    static __device__ __forceinline__ void pv(float (&d)[32], const unsigned (&p)[8][4],
                                              const unsigned long long (&v)[8]) {
        wg_pv_bf16_8(d, p, v);
    }
    static __device__ __forceinline__ void pv(float (&d)[32], const unsigned (&p)[4][4],
                                              const unsigned long long (&v)[4]) {
        wg_pv_bf16_4(d, p, v);
    }
};

// Shared memory of one configuration: Q (BR rows), 2 K stages, 2 (3 with OVL) V stages of BC rows, 128 bytes a row,
// plus 1024 bytes so that the tiles can start 1024-byte aligned.
template <int NWG, int BC, bool OVL> constexpr int smem_bytes() {
    return (64 * NWG + 2 * BC + (OVL ? 3 : 2) * BC) * 128 + 1024;
}

// Copies rows [row0, row0 + R) of a [nrows, 64] matrix (rows `ld` elements apart) into a 128-byte-swizzled tile at
// shared address dst, zero-filling rows past nrows.
template <typename T, int R, int NTH>
__device__ __forceinline__ void load_tile(unsigned dst, const T* g, long long ld, int row0, int nrows, int tid) {
#pragma unroll
    for (int it = 0; it < (R * 8 + NTH - 1) / NTH; ++it) {
        const int idx = tid + it * NTH;
        if ((R * 8) % NTH != 0 && idx >= R * 8) break;
        const int r = idx >> 3, c = idx & 7;
        const int gr = row0 + r;
        const bool valid = gr < nrows;
        const T* src = valid ? g + gr * ld + c * 8 : g;
        cp_async16(dst + r * 128 + ((c ^ (r & 7)) << 4), src, valid);
    }
}

template <typename T, int NWG, int BC, bool OVL, int VD, bool QREG, bool SPLIT = false>
__device__ __forceinline__ void attn_wg(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                        const T* __restrict__ mask, T* __restrict__ out, int hq, int hkv, int sq,
                                        int skv, long long msb, long long msh, long long msq, long long msk,
                                        const Strides& st, float scale, int causal) {
    constexpr int NTH = 128 * NWG;
    constexpr int BR = 64 * NWG;
    constexpr int NT = BC / 8;    // n-tiles of S per warp
    constexpr int KS = BC / 16;   // 16-key steps of P V
    constexpr int NV = OVL ? 3 : 2;
    constexpr int TILE = BC * 128;   // bytes of one K or V tile

    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const unsigned sbase = (smem_u32(smem_raw) + 1023u) & ~1023u;
    const unsigned sQ = sbase;
    const unsigned sK0 = sQ + BR * 128;
    const unsigned sV0 = sK0 + 2 * TILE;

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int g = lane >> 2;
    const int tq = lane & 3;

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
    if (causal) kend = min(skv, max(0, q0 + BR + off));
    const int nkb = (kend + BC - 1) / BC;
    const bool mpair = mp != nullptr && msk == 1 && (msq & 1) == 0 &&
                       (reinterpret_cast<unsigned long long>(mp) & 3ull) == 0;

    load_tile<T, BR, NTH>(sQ, qp, st.qss, q0, sq, tid);
    if (nkb > 0) {
        load_tile<T, BC, NTH>(sK0, kp, st.kss, 0, skv, tid);
        load_tile<T, BC, NTH>(sV0, vp, st.vss, 0, skv, tid);
    }
    cp_async_commit();

    float o[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = 0.f;
    float s[BC / 2];
#pragma unroll
    for (int i = 0; i < BC / 2; ++i) s[i] = 0.f;
    float m_run[2] = {neg_inf(), neg_inf()};
    float l_run[2] = {0.f, 0.f};
    const float sl2 = scale * LOG2E;
    const int wrow0 = q0 + warp * 16;   // first query row of this warp (warpgroup wg: rows q0 + 64 wg + 16 (warp & 3))

    // A operand of Q K^T. !QREG: descriptors of this warpgroup's 64 Q rows in shared memory (each 16-element
    // k-step is 32 bytes = 2 units along the row). QREG: A from registers, the warp's 16 rows as fragments in the
    // mma.sync A layout (which is wgmma's register-A layout), re-read with 4 ldmatrix before every Q K^T. Loading
    // them once does not work: ptxas (CUDA 13.0) treats the registers of a register-A wgmma operand as free after
    // the instruction and reused them for P (BC = 64: wrong scores from the second key tile on; the PTX kept them
    // live across the loop).
    const unsigned long long dq = desc_kmajor(sQ + (warp >> 2) * 64 * 128);
    const unsigned long long qa[4] = {dq, dq + 2, dq + 4, dq + 6};
    unsigned qf[4][4];
    auto load_qf = [&]() {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const int row = warp * 16 + (lane & 15), chunk = kk * 2 + (lane >> 4);
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(qf[kk][0]), "=r"(qf[kk][1]), "=r"(qf[kk][2]), "=r"(qf[kk][3])
                         : "r"(sQ + row * 128 + ((chunk ^ (row & 7)) << 4))
                         : "memory");
        }
    };

    // Waits for tile j (every thread's copies, then the barrier: every warp is also done with the stages that are
    // refilled next) and starts the copies of tile j + 1.
    auto sync_load = [&](int j) {
        cp_async_wait0();
        fence_proxy_async();
        __syncthreads();
        if (j + 1 < nkb) {
            load_tile<T, BC, NTH>(sK0 + ((j + 1) & 1) * TILE, kp, st.kss, (j + 1) * BC, skv, tid);
            load_tile<T, BC, NTH>(sV0 + ((j + 1) % NV) * TILE, vp, st.vss, (j + 1) * BC, skv, tid);
        }
        cp_async_commit();
    };
    auto issue_s = [&](int j) {
        const unsigned long long dk = desc_kmajor(sK0 + (j & 1) * TILE);
        const unsigned long long kb[4] = {dk, dk + 2, dk + 4, dk + 6};
        fence_regs(s);
        if (QREG) {
            load_qf();
            Wg<T>::qk(s, qf, kb);
        } else {
            Wg<T>::qk(s, qa, kb);
        }
    };
    auto issue_pv = [&](const unsigned (&p)[KS][4], int j) {
        unsigned long long vd[KS];
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) vd[kk] = desc_mnmajor<VD>(sV0 + (j % NV) * TILE + kk * 2048);
        fence_regs(o);
        Wg<T>::pv(o, p, vd);
    };
    // Online softmax of tile j: scores into the log2 domain (masked / edge tiles), running maxima, P = exp2(x - m)
    // in place in s (f32), row sums; returns in alpha the factor O must be scaled by.
    auto softmax_part = [&](int j, auto lo_c, auto hi_c, float (&alpha)[2]) {
        constexpr int LO = decltype(lo_c)::value, HI = decltype(hi_c)::value;   // n-tiles of this part
        const int kbase = j * BC;
        const bool edge = (kbase + HI * 8 > skv) || (causal && kbase + HI * 8 - 1 > wrow0 + off);
        // Interior tiles keep raw scores (f = sl2 is applied in the exp2's FFMA); masked or edge tiles are scaled
        // here (f = 1), as in attention.cu's attn_mma.
        float f = sl2;
        if (mp != nullptr || edge || !(sl2 > 0.f)) {
            f = 1.f;
#pragma unroll
            for (int nt = LO; nt < HI; ++nt)
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) {
                    const int row = wrow0 + g + hh * 8;
                    const int key0 = kbase + nt * 8 + tq * 2;
                    float2 mv = make_float2(0.f, 0.f);
                    if (mp != nullptr && row < sq) {
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
                        const float x = fmaf(e ? mv.y : mv.x, LOG2E, s[nt * 4 + 2 * hh + e] * sl2);
                        s[nt * 4 + 2 * hh + e] = dead ? neg_inf() : x;
                    }
                }
        }
        float mus[2], sum[2];
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float mx = fmaxf(s[LO * 4 + 2 * hh], s[LO * 4 + 2 * hh + 1]);
#pragma unroll
            for (int nt = LO + 1; nt < HI; ++nt) mx = fmaxf(mx, fmaxf(s[nt * 4 + 2 * hh], s[nt * 4 + 2 * hh + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx = fmaxf(m_run[hh], mx * f);
            const float mu = mx == neg_inf() ? 0.f : mx;
            alpha[hh] = fast_exp2(m_run[hh] - mu);
            m_run[hh] = mx;
            mus[hh] = -mu;
            sum[hh] = 0.f;
        }
#pragma unroll
        for (int nt = LO; nt < HI; ++nt)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const float p0 = fast_exp2(fmaf(s[nt * 4 + 2 * hh], f, mus[hh]));
                const float p1 = fast_exp2(fmaf(s[nt * 4 + 2 * hh + 1], f, mus[hh]));
                sum[hh] += p0 + p1;
                s[nt * 4 + 2 * hh] = p0;
                s[nt * 4 + 2 * hh + 1] = p1;
            }
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) l_run[hh] = l_run[hh] * alpha[hh] + sum[hh];
    };
    auto softmax = [&](int j, float (&alpha)[2]) {
        softmax_part(j, IC<0>(), IC<NT>(), alpha);
    };
    // P (f32 in s) packed to T: the C fragment of n-tiles 2kk, 2kk+1 is the A fragment of 16-key step kk.
    auto pack = [&](unsigned (&p)[KS][4]) {
#pragma unroll
        for (int kk = 0; kk < KS; ++kk)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int nt = 2 * kk + half;
                    p[kk][half * 2 + hh] = Conv<T>::pack(s[nt * 4 + 2 * hh], s[nt * 4 + 2 * hh + 1]);
                }
    };
    // Once the running maxima settle, most tiles leave every alpha at 1: the rescale is skipped then.
    auto rescale_o = [&](const float (&alpha)[2]) {
        if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                o[nt * 4 + 0] *= alpha[0];
                o[nt * 4 + 1] *= alpha[0];
                o[nt * 4 + 2] *= alpha[1];
                o[nt * 4 + 3] *= alpha[1];
            }
        }
    };

    static_assert(!SPLIT || (BC == 128 && !OVL), "SPLIT: BC = 128 without OVL");
    if constexpr (SPLIT) {
        // BC = 128 as two halves of 64 keys, each its own online-softmax step: S_a and S_b are issued together; the
        // softmax of S_a runs while S_b is computed, and the exponentials of S_b (f32, in place) while P_a V_a runs.
        using I0 = IC<0>;
        using IH = IC<NT / 2>;
        using IN = IC<NT>;
        for (int j = 0; j < nkb; ++j) {
            sync_load(j);
            const unsigned long long dk = desc_kmajor(sK0 + (j & 1) * TILE);
            float (&sa)[BC / 4] = *reinterpret_cast<float(*)[BC / 4]>(&s[0]);
            float (&sb)[BC / 4] = *reinterpret_cast<float(*)[BC / 4]>(&s[BC / 4]);
            fence_regs(s);
            if (QREG) {
                load_qf();
                Wg<T>::qk(sa, qf, {dk, dk + 2, dk + 4, dk + 6});
                Wg<T>::qk(sb, qf, {dk + 512, dk + 514, dk + 516, dk + 518});
            } else {
                Wg<T>::qk(sa, qa, {dk, dk + 2, dk + 4, dk + 6});
                Wg<T>::qk(sb, qa, {dk + 512, dk + 514, dk + 516, dk + 518});
            }
            wg_wait<1>();
            fence_regs(sa);
            float alpha[2];
            softmax_part(j, I0(), IH(), alpha);
            unsigned pa[KS / 2][4];
#pragma unroll
            for (int kk = 0; kk < KS / 2; ++kk)
#pragma unroll
                for (int hh = 0; hh < 2; ++hh)
#pragma unroll
                    for (int half = 0; half < 2; ++half) {
                        const int nt = 2 * kk + half;
                        pa[kk][half * 2 + hh] = Conv<T>::pack(s[nt * 4 + 2 * hh], s[nt * 4 + 2 * hh + 1]);
                    }
            rescale_o(alpha);
            {
                const unsigned long long vb = desc_mnmajor<VD>(sV0 + (j % NV) * TILE);
                unsigned long long vd[KS / 2];
#pragma unroll
                for (int kk = 0; kk < KS / 2; ++kk) vd[kk] = vb + kk * 128;
                fence_regs(o);
                Wg<T>::pv(o, pa, vd);
            }
            wg_wait<1>();
            fence_regs(sb);
            softmax_part(j, IH(), IN(), alpha);
            wg_wait<0>();
            fence_regs(o);
            fence_regs(pa);
            unsigned pb[KS / 2][4];
#pragma unroll
            for (int kk = 0; kk < KS / 2; ++kk)
#pragma unroll
                for (int hh = 0; hh < 2; ++hh)
#pragma unroll
                    for (int half = 0; half < 2; ++half) {
                        const int nt = NT / 2 + 2 * kk + half;
                        pb[kk][half * 2 + hh] = Conv<T>::pack(s[nt * 4 + 2 * hh], s[nt * 4 + 2 * hh + 1]);
                    }
            rescale_o(alpha);
            {
                const unsigned long long vb = desc_mnmajor<VD>(sV0 + (j % NV) * TILE) + (KS / 2) * 128;
                unsigned long long vd[KS / 2];
#pragma unroll
                for (int kk = 0; kk < KS / 2; ++kk) vd[kk] = vb + kk * 128;
                fence_regs(o);
                Wg<T>::pv(o, pb, vd);
            }
            wg_wait<0>();
            fence_regs(o);
            fence_regs(pb);
        }
    } else if (!OVL) {
        for (int j = 0; j < nkb; ++j) {
            sync_load(j);
            issue_s(j);
            wg_wait<0>();
            fence_regs(s);
            float alpha[2];
            softmax(j, alpha);
            unsigned p[KS][4];
            pack(p);
            rescale_o(alpha);
            issue_pv(p, j);
            wg_wait<0>();
            fence_regs(o);
            fence_regs(p);
        }
    } else if (nkb > 0) {
        // FlashAttention-3's intra-warpgroup overlap: P_{j-1} V_{j-1} is issued right behind S_j, the softmax of
        // S_j (exponentials in f32, in place) runs while it is in flight, and O is rescaled and P_j packed only
        // after it completes (a wgmma input register defined inside the pipeline stage makes ptxas serialize).
        unsigned p[KS][4];
        float alpha[2];
        sync_load(0);
        issue_s(0);
        wg_wait<0>();
        fence_regs(s);
        softmax(0, alpha);
        pack(p);
        for (int j = 1; j < nkb; ++j) {
            sync_load(j);
            issue_s(j);
            issue_pv(p, j - 1);
            wg_wait<1>();
            fence_regs(s);
            softmax(j, alpha);
            wg_wait<0>();
            fence_regs(o);
            fence_regs(p);
            rescale_o(alpha);
            pack(p);
        }
        issue_pv(p, nkb - 1);
        wg_wait<0>();
        fence_regs(o);
        fence_regs(p);
    }
    cp_async_wait0();

    // epilogue: normalise and store (rows g and g + 8 of this warp's 16, two adjacent columns per n-tile)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
        float l = l_run[hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.f ? 1.f / l : 0.f;
        const int row = wrow0 + g + hh * 8;
        if (row < sq) {
            T* orow = op + row * st.oss;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                const unsigned pk = Conv<T>::pack(o[nt * 4 + 2 * hh] * inv, o[nt * 4 + 2 * hh + 1] * inv);
                *reinterpret_cast<unsigned*>(orow + nt * 8 + tq * 2) = pk;
            }
        }
    }
}

}  // namespace wg

// The ABI's parameter list (attention.cu's MLXN_ATTN_PARAMS) and the strides gathered from it.
#define WG_PARAMS(T)                                                                                               \
    const T *q, const T *k, const T *v, const T *mask, T *out, int batch, int hq, int hkv, int sq, int skv, int d,   \
        int dv, long long msb, long long msh, long long msq, long long msk, long long qsb, long long qsh,           \
        long long qss, long long ksb, long long ksh, long long kss, long long vsb, long long vsh, long long vss,    \
        long long osb, long long osh, long long oss, float scale, int causal
#define WG_STRIDES wg::Strides{qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb, osh, oss}

// Variant kernels for the harness: NWG warpgroups (64 rows each), BC keys per tile, OVL overlap, VD V-descriptor
// variant, MINB blocks per SM for the register budget.
template <typename T, int NWG, int BC, bool OVL, int VD, int MINB, bool QREG = false, bool SPLIT = false>
__global__ void __launch_bounds__(128 * NWG, MINB) attention_d64_wg(WG_PARAMS(T)) {
    (void)batch;
    (void)d;
    (void)dv;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    wg::attn_wg<T, NWG, BC, OVL, VD, QREG, SPLIT>(q, k, v, mask, out, hq, hkv, sq, skv, msb, msh, msq, msk, WG_STRIDES,
                                                  scale, causal);
#endif
}

// The configuration the launcher uses (tools/attention/README.md, session 3): NWG warpgroups of 64 query rows per
// block, BC keys per tile, Q fragments in registers or not, MINB blocks per SM for the register budget.
#ifndef WG_D64_NWG
#define WG_D64_NWG 1
#define WG_D64_BC 128
#define WG_D64_QREG false
#define WG_D64_MINB 3
#endif
namespace wg {
constexpr int D64_ROWS = 64 * WG_D64_NWG;                                  // query rows per block
constexpr int D64_THREADS = 128 * WG_D64_NWG;                              // block size
constexpr int D64_SMEM = smem_bytes<WG_D64_NWG, WG_D64_BC, false>();       // dynamic shared memory, bytes
}  // namespace wg
#define WG_D64_ENTRY(NAME, T)                                                                                     \
    extern "C" __global__ void __launch_bounds__(128 * WG_D64_NWG, WG_D64_MINB) NAME(WG_PARAMS(T)) {             \
        (void)batch;                                                                                               \
        (void)d;                                                                                                   \
        (void)dv;                                                                                                  \
        WG_D64_BODY(T)                                                                                             \
    }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_D64_BODY(T)                                                                                           \
    wg::attn_wg<T, WG_D64_NWG, WG_D64_BC, false, 0, WG_D64_QREG>(q, k, v, mask, out, hq, hkv, sq, skv, msb, msh, \
                                                                 msq, msk, WG_STRIDES, scale, causal);
#else
#define WG_D64_BODY(T)
#endif
// sm_90a tensor-core entry points of head size 64 (empty on other targets; launch only on sm_90a).
WG_D64_ENTRY(attention_f16_d64_wg, __half)
WG_D64_ENTRY(attention_bf16_d64_wg, __nv_bfloat16)
