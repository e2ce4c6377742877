// Tensor-core GEMM with a fused bias + activation epilogue: C[m, n] = act(A[m, k] · B[n, k]^T + bias[n]).
// f16 / bf16 in, f32 accumulation, C rounded once. A row-major, B stored [n, k] (PyTorch Linear weight).
// Used by FusedLinearAddGelu (erf form), for which cuBLASLt has no epilogue (src/backend/cuda/fused_gemm.rs).
//
// Preconditions (the launcher checks them, else it takes the cuBLASLt path): k a multiple of 8, A and B 16-byte
// aligned (every 8-element chunk of a row is one 16-byte cp.async, zero-filled past m, n or k). Any m and n: rows
// and columns past the edge are zero-filled on load and not stored. The TMA form also needs n a multiple of 8 (its
// output rows are TMA stores, 16-byte strides); the launcher takes the mma.sync form for other n.
//
// Two forms:
// - gemm_bias_act (the plain entry points, sm_80+): block tile BM x BN, k-tile BK, STAGES-deep cp.async pipeline
//   into XOR-swizzled shared memory, ldmatrix + mma.sync m16n8k16. Epilogue: bias and activation on the f32
//   accumulators, rounded once into shared memory (the pipeline buffers, padded rows), then written out in
//   coalesced 16-byte stores. Its WG = true variant (wgmma from the same cp.async pipeline) has no entry point any
//   more; tools/gemm/harness.cu still measures it against the TMA form.
// - gemm_tma_bias_act (the `_tma` entry points, sm_90a): persistent and warp-specialised, TMA loads, wgmma, the
//   epilogue in registers and TMA stores; see the comment above it.
//
// Activations (ACT): 0 none, 1 GELU erf form (its fit depends on the output type: ge_gelu_erf_bf16),
// 2 GELU tanh form, 3 GELU erf form through libdevice erff/erfcf (the elementwise kernel's formula; kept for
// measurements only).

// The 128-byte CUtensorMap the launcher builds with cuTensorMapEncodeTiled (opaque here; a `_tma` entry parameter).
struct __align__(64) GeTmaMap {
    unsigned long long v[16];
};

// Everything but the entry points needs sm_80 (cp.async, bf16 mma); older GPUs get empty entry points, which the
// launcher never calls (it requires compute capability 8.0).

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define GE_NONE 0
#define GE_GELU_ERF 1
#define GE_GELU_TANH 2
#define GE_GELU_ERF_LIB 3

template <typename T> struct ge_is_bf16 {
    static const bool value = false;
};
template <> struct ge_is_bf16<__nv_bfloat16> {
    static const bool value = true;
};

__device__ __forceinline__ float ge_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// 1 / x for x in [1, inf] (the tanh form's denominator): one MUFU.RCP. __fdividef(1, x) is the same MUFU.RCP plus
// four instructions of range handling (for |x| > 2^126, where both give 0 here; nvdisasm, sm_90a; session 5).
__device__ __forceinline__ float ge_rcp_ge1(float x) {
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// x * Phi(x) with one MUFU operation (ex2) a value. With u = |x| and v = min(u / U, 1), U = 13.3:
// U Phi(-u) = 2^Q(v), Q a polynomial (N coefficients, highest degree first; log2 of U folded into it). log2 Phi(-u)
// (about -u^2 / (2 ln 2) - log2(u sqrt(2 pi)) far out) is smooth on [0, U], so no reciprocal is needed, as it is for
// erfc(z) = t exp(-z^2 + P(t)) with t = 1 / (1 + z/2), the two-MUFU form of sessions 5-8. For x >= 0,
// x Phi(x) = x - u Phi(-u) (Phi(-u) <= 1/2, no cancellation); for x < 0 it is -u Phi(-u), so very negative x keep
// their relative accuracy. Both are max(x, 0) - v 2^Q(v): one FFMA.
// v comes from one saturating multiply, on the FMA pipe (session 10: min(|x|, 13) and max(x, 0) were two FMNMX a
// value on the half-rate ALU pipe, the busiest in the epilogue). Past v = 1 the result is below f32's smallest normal
// (Q(1) = -128.9): ex2.approx.ftz gives 0, and so does every larger u. Non-finite x: NaN makes v = 0 and keeps NaN
// through max.NaN; +inf gives +inf (inf - 0); -inf gives 0, the limit, as the CPU backend's gelu_erf does.
template <int N> __device__ __forceinline__ float ge_gelu_log2phi(float x, const float (&c)[N]) {
    float v, r;
    asm("mul.sat.f32 %0, %1, 0f3D99FC26;" : "=f"(v) : "f"(fabsf(x)));  // 0f3D99FC26 = 1 / 13.3
    asm("max.NaN.f32 %0, %1, 0f00000000;" : "=f"(r) : "f"(x));
    float q = c[0];
#pragma unroll
    for (int i = 1; i < N; ++i) q = fmaf(q, v, c[i]);
    return fmaf(-v, ge_ex2(q), r);
}

// The fits: weighted least squares towards minimax on [0, 1], each coefficient rounded to f32 in turn and the lower
// ones refitted; errors from an f32 emulation of ge_gelu_log2phi against float64 (tools/gemm/fit_gelu_erf.py, session
// 11). The epilogue's time is its instruction count (about 11.5 a value for bf16): each degree is one FFMA a value.
// Q for f16 outputs (half ulp 4.9e-4): degree 8, relative error of x Phi(x) at most 1.4e-4 for x > -8 (about a
// quarter of that half ulp; f16 results below x = -6 are subnormal or 0). Degree 10 until session 11 (1.1e-5).
__device__ __forceinline__ float ge_gelu_erf(float x) {
    const float c[9] = {2.5914611816e+01f,  -1.2493893433e+02f, 2.5945474243e+02f,  -3.0653967285e+02f,
                        2.3084402466e+02f,  -1.1922638702e+02f, -8.1893402100e+01f, -1.5280906677e+01f,
                        2.7331619263e+00f};
    return ge_gelu_log2phi(x, c);
}

// Q for bf16 outputs (half ulp at least 2e-3): degree 6, fitted on |x| <= 8 with the tail (8 to 13.3) weighted 50
// times less: relative error at most 7.9e-4 for x > -8 (0.4 of that half ulp); below, where |x Phi(x)| < 5e-15, an
// absolute error under 4e-18. Degree 7 fitted on all of [0, 13.3] (5.6e-4 everywhere) was 0.25-0.55 us slower on
// [4096, 384, 1536] (session 11); a uniform degree-6 fit reaches only 2e-3.
__device__ __forceinline__ float ge_gelu_erf_bf16(float x) {
    const float c[7] = {3.4612220764e+01f,  -1.0754260254e+02f, 1.3702947998e+02f, -9.5854812622e+01f,
                        -8.4699005127e+01f, -1.5154246330e+01f, 2.7322297096e+00f};
    return ge_gelu_log2phi(x, c);
}

// T: the output type (the erf form's fit depends on it).
template <int ACT, typename T> __device__ __forceinline__ float ge_act(float x) {
    if (ACT == GE_GELU_ERF) return ge_is_bf16<T>::value ? ge_gelu_erf_bf16(x) : ge_gelu_erf(x);
    if (ACT == GE_GELU_TANH) {
        // 0.5x(1 + tanh(u)) = x / (1 + exp(-2u)): no cancellation (as elementwise.cu).
        const float u = 0.79788456080286536f * fmaf(0.044715f * x, x * x, x);
        return x * ge_rcp_ge1(1.0f + ge_ex2(-2.8853900817779268f * u));
    }
    if (ACT == GE_GELU_ERF_LIB) {
        const float z = 0.70710678118654752f * x;
        return x >= -1.0f ? 0.5f * x * (1.0f + erff(z)) : 0.5f * x * erfcf(-z);
    }
    return x;
}

__device__ __forceinline__ u32 ge_smem_addr(const void* p) { return static_cast<u32>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void ge_cp_async16(u32 dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void ge_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void ge_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ge_ldsm_x4(u32& r0, u32& r1, u32& r2, u32& r3, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}

template <typename T> __device__ __forceinline__ void ge_mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1);
template <> __device__ __forceinline__ void ge_mma<__nv_bfloat16>(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void ge_mma<__half>(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T> __device__ __forceinline__ u32 ge_pack2(float a, float b);
template <> __device__ __forceinline__ u32 ge_pack2<__nv_bfloat16>(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<u32*>(&h);
}
template <> __device__ __forceinline__ u32 ge_pack2<__half>(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<u32*>(&h);
}



// Shared-memory matrix descriptor of a K-major tile stored as 128-byte rows with the 128-byte swizzle (the layout
// ge_swz<8> writes; 8-row atoms 1024 bytes apart, atoms 1024-byte aligned): start address, leading offset (unused
// for swizzled K-major, 1 by convention), stride offset 1024 bytes, layout type 1 (128-byte swizzle).
__device__ __forceinline__ unsigned long long ge_desc_sw128(u32 saddr) {
    return (unsigned long long)((saddr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           (1ull << 62);
}

// Orders this thread's completed cp.async writes (generic proxy) before later wgmma reads (async proxy).
__device__ __forceinline__ void ge_fence_proxy_async() {
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// wgmma (sm_90a only): one BK = 64 k-tile of a 64 x N warpgroup tile in one asm block (fence, four m64nNk16 with
// the descriptors a[i], b[i] of the i-th 16-element k-step, commit, wait), so that the compiler cannot touch the
// accumulators while the asynchronous MMAs run. Accumulators d[N/2] in the m16n8 C-fragment order per warp.
#define GE_WG_REGS128 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
#define GE_WG_OUTS128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),\
    "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),\
    "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),\
    "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),\
    "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),\
    "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),\
    "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),\
    "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define GE_WG_REGS192 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, "
#define GE_WG_OUTS192 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),\
    "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),\
    "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),\
    "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),\
    "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),\
    "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),\
    "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),\
    "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),\
    "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),\
    "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),\
    "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),\
    "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
#define GE_WG_REGS256 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
#define GE_WG_OUTS256 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),\
    "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),\
    "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),\
    "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),\
    "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),\
    "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),\
    "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),\
    "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),\
    "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),\
    "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),\
    "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),\
    "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),\
    "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),\
    "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),\
    "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]),\
    "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),\
    "+f"(d[126]), "+f"(d[127])
#define GE_WG_ASM(N, TY, ND, WAIT)                                                                           \
    asm volatile("{\n.reg .pred p, q;\nsetp.ne.b32 p, %" #ND ", 0;\nsetp.eq.b32 q, 0, 0;\n"                \
                 "wgmma.fence.sync.aligned;\n"                                                                   \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " GE_WG_REGS##N "%" GE_WG_A0_##N  \
                 ", %" GE_WG_B0_##N ", p, 1, 1, 0, 0;\n"                                                           \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " GE_WG_REGS##N "%" GE_WG_A1_##N  \
                 ", %" GE_WG_B1_##N ", q, 1, 1, 0, 0;\n"                                                           \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " GE_WG_REGS##N "%" GE_WG_A2_##N  \
                 ", %" GE_WG_B2_##N ", q, 1, 1, 0, 0;\n"                                                           \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " GE_WG_REGS##N "%" GE_WG_A3_##N  \
                 ", %" GE_WG_B3_##N ", q, 1, 1, 0, 0;\n"                                                           \
                 "wgmma.commit_group.sync.aligned;\n" WAIT "}\n"                                                    \
                 : GE_WG_OUTS##N                                                                                  \
                 : "l"(a[0]), "l"(a[1]), "l"(a[2]), "l"(a[3]), "l"(b[0]), "l"(b[1]), "l"(b[2]), "l"(b[3]), "r"(acc_d) \
                 : "memory")
#define GE_WG_A0_128 "64"
#define GE_WG_B0_128 "68"
#define GE_WG_A1_128 "65"
#define GE_WG_B1_128 "69"
#define GE_WG_A2_128 "66"
#define GE_WG_B2_128 "70"
#define GE_WG_A3_128 "67"
#define GE_WG_B3_128 "71"
#define GE_WG_A0_192 "96"
#define GE_WG_B0_192 "100"
#define GE_WG_A1_192 "97"
#define GE_WG_B1_192 "101"
#define GE_WG_A2_192 "98"
#define GE_WG_B2_192 "102"
#define GE_WG_A3_192 "99"
#define GE_WG_B3_192 "103"
#define GE_WG_A0_256 "128"
#define GE_WG_B0_256 "132"
#define GE_WG_A1_256 "129"
#define GE_WG_B1_256 "133"
#define GE_WG_A2_256 "130"
#define GE_WG_B2_256 "134"
#define GE_WG_A3_256 "131"
#define GE_WG_B3_256 "135"

// WAIT = false leaves the batch in flight: the caller waits (wgmma.wait_group) and then fences the accumulators.
// acc_d = 0: the first k16 step overwrites d instead of adding to it (a tile's first k-tile).
template <typename T, int N, bool WAIT = true>
__device__ __forceinline__ void ge_wgmma_k64(float* d, const unsigned long long (&a)[4], const unsigned long long (&b)[4],
                                             int acc_d = 1) {
#ifdef __CUDA_ARCH_FEAT_SM90_ALL
    constexpr bool BF = ge_is_bf16<T>::value;
#define GE_WG_ALL(W)                                          \
    if constexpr (N == 128 && BF) GE_WG_ASM(128, "bf16", 72, W);  \
    if constexpr (N == 128 && !BF) GE_WG_ASM(128, "f16", 72, W);  \
    if constexpr (N == 192 && BF) GE_WG_ASM(192, "bf16", 104, W); \
    if constexpr (N == 192 && !BF) GE_WG_ASM(192, "f16", 104, W); \
    if constexpr (N == 256 && BF) GE_WG_ASM(256, "bf16", 136, W); \
    if constexpr (N == 256 && !BF) GE_WG_ASM(256, "f16", 136, W);
    if constexpr (WAIT) {
        GE_WG_ALL("wgmma.wait_group.sync.aligned 0;\n")
    } else {
        GE_WG_ALL("")
    }
#undef GE_WG_ALL
#endif
}

// 16-byte chunk index of (row, chunk) in a tile with CPR chunks per row, XOR-swizzled so that the 8 rows one
// ldmatrix phase reads (same logical chunk) fall in 8 different bank groups.
template <int CPR> __device__ __forceinline__ int ge_swz(int row, int chunk) {
    if (CPR == 8) return row * 8 + (chunk ^ (row & 7));
    return row * 4 + (chunk ^ ((row >> 1) & 3));  // CPR == 4: two rows per 128 bytes
}

// Shared memory bytes of one configuration: the pipeline, or the staged output tile if larger.
// WG (wgmma) adds 1024 bytes so that the stages can start 1024-byte aligned (the swizzle atoms must be).
template <typename T, int BM, int BN, int BK, int STAGES, bool WG = false> struct GeSmem {
    static const int PIPE = STAGES * (BM + BN) * BK * 2;
    static const int OUT = BM * (BN + 8) * (int)sizeof(T);
    static const int BYTES = (PIPE > OUT ? PIPE : OUT) + (WG ? 1024 : 0);
};

// One block computes C[bm0 .. bm0+BM, bn0 .. bn0+BN]; WM x WN warps, each a (BM/WM) x (BN/WN) warp tile.
// WG: wgmma instead of mma.sync (sm_90a): then WN = 1, BK = 64, and the WM / 4 warpgroups split the rows: warpgroup
// g computes rows [g * BM / (WM / 4), ...) in MI = BM / WM / 16 blocks of m64nBNk16; warp q of the group holds rows
// 16q .. 16q + 15 of each block, in the mma.sync C-fragment order, so the epilogue is shared.
template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES, int ACT, bool WG = false>
__device__ __forceinline__ void gemm_bias_act(const T* __restrict__ A, const T* __restrict__ B,
                                              const T* __restrict__ bias, T* __restrict__ C, int m, int n, int k) {
    constexpr int THREADS = WM * WN * 32;
    constexpr int WTM = BM / WM, WTN = BN / WN, MI = WTM / 16, NI = WTN / 8;
    constexpr int CPR = BK / 8;
    constexpr int A_CHUNKS = BM * CPR, B_CHUNKS = BN * CPR, STAGE_BYTES = (A_CHUNKS + B_CHUNKS) * 16;
    static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile: multiples of 16");
    static_assert(CPR == 4 || CPR == 8, "BK: 32 or 64");
    static_assert(A_CHUNKS % THREADS == 0 && B_CHUNKS % THREADS == 0, "whole chunks per thread");
    static_assert(STAGES >= 2, "at least double buffering");
    constexpr int WG_ROWS = BM / (WM >= 4 ? WM / 4 : 1);  // rows per warpgroup (WG)
    static_assert(!WG || (WN == 1 && BK == 64 && WM % 4 == 0 && WG_ROWS % 64 == 0), "wgmma tiling");

    extern __shared__ __align__(1024) unsigned char ge_smem[];
    const u32 sbase = WG ? (ge_smem_addr(ge_smem) + 1023u) & ~1023u : ge_smem_addr(ge_smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    const int bm0 = blockIdx.y * BM, bn0 = blockIdx.x * BN;
    const int KT = (k + BK - 1) / BK;

    auto load_tile = [&](int kt, int stage) {
        const int k0 = kt * BK;
        const u32 sA = sbase + stage * STAGE_BYTES;
        const u32 sB = sA + A_CHUNKS * 16;
#pragma unroll
        for (int j = 0; j < A_CHUNKS / THREADS; ++j) {
            const int i = tid + j * THREADS, r = i / CPR, c = i % CPR;
            const int gr = bm0 + r, gk = k0 + c * 8;
            const bool ok = gr < m && gk < k;
            const T* src = ok ? A + ((size_t)gr * k + gk) : A;
            ge_cp_async16(sA + ge_swz<CPR>(r, c) * 16, src, ok ? 16 : 0);
        }
#pragma unroll
        for (int j = 0; j < B_CHUNKS / THREADS; ++j) {
            const int i = tid + j * THREADS, r = i / CPR, c = i % CPR;
            const int gr = bn0 + r, gk = k0 + c * 8;
            const bool ok = gr < n && gk < k;
            const T* src = ok ? B + ((size_t)gr * k + gk) : B;
            ge_cp_async16(sB + ge_swz<CPR>(r, c) * 16, src, ok ? 16 : 0);
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_tile(s, s);
        ge_cp_async_commit();
    }
    for (int kt = 0; kt < KT; ++kt) {
        // Tile kt has landed (for every thread, after the barrier), and every warp is done with tile kt - 1,
        // whose stage is refilled next.
        ge_cp_async_wait<STAGES - 2>();
        if (WG) ge_fence_proxy_async();
        __syncthreads();
        {
            const int nk = kt + STAGES - 1;
            if (nk < KT) load_tile(nk, nk % STAGES);
            ge_cp_async_commit();
        }
        const u32 sA = sbase + (kt % STAGES) * STAGE_BYTES;
        const u32 sB = sA + A_CHUNKS * 16;
        if constexpr (WG) {
            // Each k-step of 16 elements is 32 bytes further along the (swizzled) 128-byte rows.
            const unsigned long long db = ge_desc_sw128(sB);
            const unsigned long long b[4] = {db, db + 2, db + 4, db + 6};
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {
                const unsigned long long da = ge_desc_sw128(sA + ((warp >> 2) * WG_ROWS + mi * 64) * 128);
                const unsigned long long a[4] = {da, da + 2, da + 4, da + 6};
                ge_wgmma_k64<T, BN>(&acc[mi][0][0], a, b);
            }
        } else {
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                u32 af[MI][4], bf[NI][2];
#pragma unroll
                for (int mi = 0; mi < MI; ++mi) {
                    const int row = wm * WTM + mi * 16 + (lane & 15), chunk = kk * 2 + (lane >> 4);
                    ge_ldsm_x4(af[mi][0], af[mi][1], af[mi][2], af[mi][3], sA + ge_swz<CPR>(row, chunk) * 16);
                }
#pragma unroll
                for (int nj = 0; nj < NI / 2; ++nj) {
                    const int row = wn * WTN + nj * 16 + ((lane >> 4) << 3) + (lane & 7);
                    const int chunk = kk * 2 + ((lane >> 3) & 1);
                    ge_ldsm_x4(bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0], bf[2 * nj + 1][1],
                               sB + ge_swz<CPR>(row, chunk) * 16);
                }
#pragma unroll
                for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                    for (int ni = 0; ni < NI; ++ni) ge_mma<T>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
            }
        }
    }
    ge_cp_async_wait<0>();
    __syncthreads();  // the pipeline buffers become the output tile

    constexpr int LDC = BN + 8;  // padded: the fragment stores below hit 32 distinct banks
    T* sC = reinterpret_cast<T*>(ge_smem);
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int c = wn * WTN + ni * 8 + 2 * (lane & 3);
        const float b0 = bn0 + c < n ? to_f(bias[bn0 + c]) : 0.0f;
        const float b1 = bn0 + c + 1 < n ? to_f(bias[bn0 + c + 1]) : 0.0f;
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = (WG ? (warp >> 2) * WG_ROWS + mi * 64 + (warp & 3) * 16 : wm * WTM + mi * 16) +
                              (lane >> 2) + h * 8;
                const u32 v = ge_pack2<T>(ge_act<ACT, T>(acc[mi][ni][2 * h] + b0),
                                          ge_act<ACT, T>(acc[mi][ni][2 * h + 1] + b1));
                *reinterpret_cast<u32*>(&sC[r * LDC + c]) = v;
            }
    }
    __syncthreads();

    constexpr int CCPR = BN / 8;
    const bool vec = (n & 7) == 0;  // every row of C starts 16-byte aligned (C itself is)
#pragma unroll 4
    for (int i = tid; i < BM * CCPR; i += THREADS) {
        const int r = i / CCPR, c = (i % CCPR) * 8;
        const int gr = bm0 + r, gc = bn0 + c;
        if (gr >= m || gc >= n) continue;
        const T* s = &sC[r * LDC + c];
        T* d = C + ((size_t)gr * n + gc);
        if (vec) {
            *reinterpret_cast<uint4*>(d) = *reinterpret_cast<const uint4*>(s);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (gc + j < n) d[j] = s[j];
        }
    }
}

#ifdef __CUDA_ARCH_FEAT_SM90_ALL
// ---- Hopper: persistent, warp-specialised form (the `_tma` entry points) ----
// Three warpgroups. Warpgroup 0 is the producer: one thread walks the block's tiles (t = blockIdx.x, + gridDim.x,
// ...) and their 64-wide k-tiles, and loads each (A: rows x 64, B: BN x 64) with TMA into a STAGES-deep ring of
// 128-byte-swizzled stages, signalling `full[s]` with the byte count. Warpgroups 1 and 2 are consumers taking the
// block's tiles in turn ("ping-pong"; splitting every tile's rows between them instead measured slower): while one
// runs its epilogue, the other's wgmmas keep the tensor cores busy, and the producer is already loading ahead.
// A consumer keeps one k-tile's wgmmas in flight and releases the stage before it (`empty[s]`, one arrival per
// warp). Ring slot and phase follow from the k-tile's running index g in the block (slot g % STAGES, phase
// (g / STAGES) & 1), which both sides compute; the consumer of the block's j-th tile starts at g = j * KT.
// Epilogue (session 10): bias and activation on the accumulators in registers (no round trip through shared
// memory before the math), bf16/f16 pairs written with stmatrix into a 128-byte-swizzled staging box per m64 block,
// then TMA stores issued by one thread; its 128 threads issue no global stores and no bounds checks.
// Edges: TMA zero-fills rows past m or n and columns past k on load and clips the stores to [m, n].
// The producer warpgroup gives registers to the consumers (setmaxnreg 40 / 232): 128 accumulators a thread.

__device__ __forceinline__ void ge_mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void ge_mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void ge_mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void ge_mbar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}
// 2-D TMA load of the box at (c0 = column, c1 = row) into shared memory, completing `bytes` on the barrier.
__device__ __forceinline__ void ge_tma_load(u32 dst, const GeTmaMap* map, int c0, int c1, u32 bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"(map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}

// 2-D TMA store of the box at (c0 = column, c1 = row) from shared memory (clipped to the tensor's bounds), in the
// current bulk group.
__device__ __forceinline__ void ge_tma_store(const GeTmaMap* map, u32 src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(map),
                 "r"(src), "r"(c0), "r"(c1)
                 : "memory");
}

// Four 8 x 8 matrices of 16-bit values from registers to shared memory: register i holds matrix i in the mma
// C-fragment order (lane l: row l / 4, columns 2 (l % 4) and + 1), lane l gives the address of row l % 8 of matrix
// l / 8.
__device__ __forceinline__ void ge_stsm_x4(u32 addr, u32 r0, u32 r1, u32 r2, u32 r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
                 "r"(r2), "r"(r3)
                 : "memory");
}

template <typename T> __device__ __forceinline__ float2 ge_unpack2(u32 v);
template <> __device__ __forceinline__ float2 ge_unpack2<__nv_bfloat16>(u32 v) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
}
template <> __device__ __forceinline__ float2 ge_unpack2<__half>(u32 v) {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
}

// Bias, activation, packing and stmatrix of one m64 block's accumulators x (C-fragment order: x[nj * 4 + 2 h + e] is
// row 16 wq + 8 h + lane / 4, column nj * 8 + 2 (lane % 4) + e; bv[nj] the bias of those two columns) into its
// staging: BN / 64 boxes of 64 rows x 128 bytes, 16-byte chunks swizzled as TMA's 128-byte swizzle has them (chunk c
// of row r at c ^ (r % 8): conflict-free).
template <typename T, int ACT, int BN>
__device__ __forceinline__ void ge_tma_stage_both(const float (&x)[BN / 2], const float2 (&bv)[BN / 8], u32 dst, int wq,
                                                  int lane) {
    u32 pk[BN / 4];
#pragma unroll
    for (int e = 0; e < BN / 4; ++e)
        pk[e] = ge_pack2<T>(ge_act<ACT, T>(x[2 * e] + bv[e >> 1].x), ge_act<ACT, T>(x[2 * e + 1] + bv[e >> 1].y));
    // Matrices (rows + 0 / + 8) x (column chunks 2 q, 2 q + 1).
    const int r = wq * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
    for (int q = 0; q < BN / 16; ++q) {
        const int nj = 2 * q + (lane >> 4);
        ge_stsm_x4(dst + (nj >> 3) * 8192 + r * 128 + (((nj & 7) ^ (r & 7)) << 4), pk[4 * q], pk[4 * q + 1],
                   pk[4 * q + 2], pk[4 * q + 3]);
    }
}
// Stores one staged m64 block (rows row0 .., columns n0 ..) with TMA, issued by consumer thread 0 once the
// consumer's 128 threads have staged it (named barrier 1 + c). The stores read shared memory through the async
// proxy (hence the fence). Before the barrier the issuing thread waits until the previous block's stores have read
// their staging, so the barrier also frees that staging for the block after this one.
template <int BN>
__device__ __forceinline__ void ge_tma_store_block(const GeTmaMap* tc, u32 src, int n0, int row0, int cons, int wt) {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    if (wt == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cons) : "memory");
    if (wt == 0) {
#pragma unroll
        for (int x = 0; x < BN / 64; ++x) ge_tma_store(tc, src + x * 8192, n0 + x * 64, row0);
        asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
    }
}

// One tile's k-loop on the consumer's two m64 blocks: one k-tile's wgmmas in flight, the stage before it released
// to the producer (`empty[s]`, one arrival per warp). g: the tile's first running k-tile index. `hand`: arrive on
// the hand-over barrier once the last k-tile has landed.
template <typename T, int BN, int STAGES>
__device__ __forceinline__ void ge_tma_mma(float (&acc)[2][BN / 2], u32 sbase, u32 bars, int g, int KT, u32 a_bytes,
                                           u32 stage_bytes, int lane, bool hand, u32 bar_hand) {
    for (int kt = 0; kt < KT; ++kt, ++g) {
        const int s = g % STAGES;
        ge_mbar_wait(bars + 8 * s, (g / STAGES) & 1);
        if (hand && kt == KT - 1) ge_mbar_arrive(bar_hand);
        const u32 sA = sbase + s * stage_bytes;
        const unsigned long long db = ge_desc_sw128(sA + a_bytes);
        const unsigned long long b[4] = {db, db + 2, db + 4, db + 6};
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
            const unsigned long long da = ge_desc_sw128(sA + mi * 64 * 128);
            const unsigned long long a[4] = {da, da + 2, da + 4, da + 6};
            ge_wgmma_k64<T, BN, false>(acc[mi], a, b, kt > 0);
        }
        // The previous k-tile's batches are complete once at most this k-tile's two are in flight.
        if (kt > 0) {
            asm volatile("wgmma.wait_group.sync.aligned 2;\n" ::: "memory");
            __syncwarp();
            if (lane == 0) ge_mbar_arrive(bars + 8 * (STAGES + (g - 1) % STAGES));
        }
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int e = 0; e < BN / 2; ++e) asm volatile("" : "+f"(acc[mi][e])::"memory");
    __syncwarp();
    if (lane == 0) ge_mbar_arrive(bars + 8 * (STAGES + (g - 1) % STAGES));
}

template <typename T, int BM, int BN, int STAGES, int ACT>
__device__ __forceinline__ void gemm_tma_bias_act(const GeTmaMap& ta, const GeTmaMap& tb, const GeTmaMap& tc,
                                                  const T* __restrict__ bias, int m, int n, int k) {
    constexpr u32 A_BYTES = BM * 128, STAGE = (BM + BN) * 128;
    static_assert(BM == 128 && BN % 64 == 0 && BN <= 128, "consumer tile: two m64 blocks, at most 128 columns");
    // An m64 block's output staging: BN / 64 boxes of 64 rows x 64 columns (128 bytes a row, 128-byte swizzle, as
    // the output tensor map stores them), one per (consumer, block): 4 x 16 KiB for BN = 128.
    constexpr u32 BOX = 64 * 128, OUT = (BN / 64) * BOX;
    extern __shared__ __align__(1024) unsigned char ge_smem[];
    const u32 sbase = (ge_smem_addr(ge_smem) + 1023u) & ~1023u;
    // After the stages: the output staging, then the barriers: full[s] at bars + 8 s, empty[s] at
    // bars + 8 (STAGES + s), then the hand-over barrier.
    const u32 out_stage = sbase + STAGES * STAGE, bars = out_stage + 4 * OUT, bar_hand = bars + 16 * STAGES;
    const int tid = threadIdx.x, wg = tid >> 7;
    const int tiles_n = (n + BN - 1) / BN, tiles = ((m + BM - 1) / BM) * tiles_n, KT = (k + 63) / 64;
    if (tid == 0) {
        // The tensor maps' first use would fetch them: start that now, under the setup (0.2-0.3 us of the
        // [4096, 384, 1536] launch, session 10).
        asm volatile("prefetch.tensormap [%0];\nprefetch.tensormap [%1];\nprefetch.tensormap [%2];\n" ::"l"(&ta),
                     "l"(&tb), "l"(&tc)
                     : "memory");
        for (int s = 0; s < STAGES; ++s) {
            ge_mbar_init(bars + 8 * s, 1);
            ge_mbar_init(bars + 8 * (STAGES + s), 4);
        }
        ge_mbar_init(bar_hand, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (tid == 0) {
            int g = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
                const int m0 = (t / tiles_n) * BM, n0 = (t % tiles_n) * BN;
                for (int kt = 0; kt < KT; ++kt, ++g) {
                    const int s = g % STAGES;
                    ge_mbar_wait(bars + 8 * (STAGES + s), ((g / STAGES) & 1) ^ 1);
                    const u32 full_bar = bars + 8 * s, dst = sbase + s * STAGE;
                    ge_mbar_expect_tx(full_bar, STAGE);
                    ge_tma_load(dst, &ta, kt * 64, m0, full_bar);
                    ge_tma_load(dst + A_BYTES, &tb, kt * 64, n0, full_bar);
                }
            }
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    // Named barrier 1 + c: consumer c's block is staged (over its 128 threads).
    const int cons = wg - 1, lane = tid & 31, wq = (tid >> 5) & 3, wt = tid & 127;
    float acc[2][BN / 2];
    // Ping-pong: consumer c takes the block's tiles j = c, c + 2, ...
    int j = cons;
    for (int t = blockIdx.x + j * gridDim.x; t < tiles; t += 2 * gridDim.x, j += 2) {
        const int m0 = (t / tiles_n) * BM, n0 = (t % tiles_n) * BN;
        // The bias of this thread's columns (nj * 8 + 2 (lane % 4), + 1 of the C fragments), loaded now so that its
        // latency hides under the MMAs. n is a multiple of 8, so a pair is inside n or past it; pairs past it read
        // the last pair and are not stored (a load under a branch here made ptxas serialise the wgmmas).
        u32 braw[BN / 8];
#pragma unroll
        for (int nj = 0; nj < BN / 8; ++nj)
            braw[nj] = *reinterpret_cast<const u32*>(bias + min(n0 + nj * 8 + 2 * (lane & 3), n - 2));
        // A parity wait only tells the current phase from the one before it, so this tile's waits may start only
        // once every earlier k-tile has landed: the previous tile's consumer signals that on the hand-over barrier,
        // whose phase j - 1 is the hand-over of tile j - 1 (phase j - 2 completed before this consumer's own tile
        // j - 2 began, so the parity is unambiguous). Named barriers did this before session 10, and a per-block
        // clock64 trace showed them passing before the arrival.
        if (j > 0) ge_mbar_wait(bar_hand, (j - 1) & 1);
        ge_tma_mma<T, BN, STAGES>(acc, sbase, bars, j * KT, KT, A_BYTES, STAGE, lane,
                                  wt == 0 && t + (int)gridDim.x < tiles, bar_hand);
        // Unpacked only now (the empty asm pins the raw words here): converted next to the loads, as ptxas placed
        // them, every tile's start waited for the loads' L2 latency (0.4k cycles of the first tile; session 11).
        float2 bv[BN / 8];
#pragma unroll
        for (int nj = 0; nj < BN / 8; ++nj) {
            asm volatile("" : "+r"(braw[nj]));
            bv[nj] = ge_unpack2<T>(braw[nj]);
        }
        // Epilogue, one m64 block at a time, in registers: bias and activation on the accumulators, packed,
        // stmatrix into the block's staging, one TMA store per 64-column box. Unrolled: a loop over the blocks
        // must move block 1 into block 0's registers (64 moves, and ptxas added as many around the wgmmas).
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
            const u32 dst = out_stage + (2 * cons + mi) * OUT;
            ge_tma_stage_both<T, ACT, BN>(acc[mi], bv, dst, wq, lane);
            ge_tma_store_block<BN>(&tc, dst, n0, m0 + mi * 64, cons, wt);
        }
    }
    // Shared memory must outlive the stores' reads (only those: the writes complete with the grid).
    if (wt == 0) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
#define GE_BODY_TMA(T, ACT) gemm_tma_bias_act<T, GE_TMA, ACT>(ta, tb, tc, bias, m, n, k);
#else
#define GE_BODY_TMA(T, ACT)
#endif

#define GE_BODY(T, ACT) gemm_bias_act<T, GE_LARGE, ACT>(A, B, bias, C, m, n, k);
#else
#define GE_BODY(T, ACT)
#define GE_BODY_TMA(T, ACT)
#define GE_NONE 0
#define GE_GELU_ERF 1
#define GE_GELU_TANH 2
#endif

// The configurations the launcher uses (fused_gemm.rs mirrors the tile sizes, thread counts and shared memory).
// mma.sync (sm_80+): 128 x 128 x 64, 8 warps (2 x 4, warp tile 64 x 32), 3 stages, 96 KiB: two blocks per SM.
#define GE_LARGE 128, 128, 64, 2, 4, 3
#define GE_ENTRY(SUF, T, ACTNAME, ACT)                                                                          \
    extern "C" __global__ void __launch_bounds__(256, 2)                                                       \
        gemm_bias_##ACTNAME##_##SUF(const T* A, const T* B, const T* bias, T* C, int m, int n, int k) {        \
        GE_BODY(T, ACT)                                                                                          \
    }
// TMA form (sm_90a, the `_tma` entry points; empty elsewhere and never launched there): a consumer warpgroup's
// tile is 128 x 128 (m64n128k16), 4 stages of (128 + 128) x 64 x 2 bytes = 128 KiB, 4 x 64 x 128 x 2 bytes of
// output staging, 1 KiB alignment, barriers (193 KiB); 384 threads (producer + two consumers), one block per SM,
// persistent grid. Fastest of the configurations measured for [4096, 384, 1536] (tools/gemm/README.md): with the
// register epilogue 128 x 192 tiles (256 of them: 2 waves) lost to 128 x 128 (384: 3 waves, a smaller last tile).
#define GE_TMA 128, 128, 4
#define GE_ENTRY_TMA(SUF, T, ACTNAME, ACT)                                                                     \
    extern "C" __global__ void __launch_bounds__(384, 1)                                                       \
        gemm_bias_##ACTNAME##_##SUF##_tma(const __grid_constant__ GeTmaMap ta, const __grid_constant__ GeTmaMap tb, \
                                          const __grid_constant__ GeTmaMap tc, const T* bias, int m, int n, int k) { \
        GE_BODY_TMA(T, ACT)                                                                                      \
    }
#define GE_ENTRIES(SUF, T) \
    GE_ENTRY(SUF, T, none, GE_NONE) GE_ENTRY(SUF, T, gelu_erf, GE_GELU_ERF) GE_ENTRY(SUF, T, gelu_tanh, GE_GELU_TANH) \
    GE_ENTRY_TMA(SUF, T, none, GE_NONE) GE_ENTRY_TMA(SUF, T, gelu_erf, GE_GELU_ERF)                              \
    GE_ENTRY_TMA(SUF, T, gelu_tanh, GE_GELU_TANH)
GE_ENTRIES(f16, __half)
GE_ENTRIES(bf16, __nv_bfloat16)
