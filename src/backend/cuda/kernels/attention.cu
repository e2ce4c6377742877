// Scaled dot-product attention, first simple version (the attention helper replaces this file; ABI in
// notes/ATTENTION_ABI.md). One warp per query row, keys visited one at a time with an online softmax; lane l holds
// elements l, l+32, ... of q and of the output accumulator. Any head size up to 32 * MAXD.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ float att_f(float x) { return x; }
__device__ __forceinline__ float att_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float att_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void att_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void att_store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void att_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

#define ATT_MAXD 8  // head dims up to 256 (the launcher checks)

template <typename T>
__device__ void attention_warp(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                               const T* __restrict__ mask, T* __restrict__ out, int batch, int hq, int hkv, int sq,
                               int skv, int d, int dv, long long msb, long long msh, long long msq, long long msk,
                               float scale, int causal) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const long long nrows = (long long)batch * hq * sq;
    if (row >= nrows) return;  // whole warp leaves together
    const int i = (int)(row % sq);
    const int h = (int)((row / sq) % hq);
    const int b = (int)(row / ((long long)sq * hq));
    const int hk = h / (hq / hkv);
    const T* qr = q + row * d;
    const T* kb = k + ((long long)b * hkv + hk) * (long long)skv * d;
    const T* vb = v + ((long long)b * hkv + hk) * (long long)skv * dv;
    float qv[ATT_MAXD], acc[ATT_MAXD];
#pragma unroll
    for (int j = 0; j < ATT_MAXD; ++j) {
        const int e = lane + 32 * j;
        qv[j] = e < d ? att_f(qr[e]) : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -__int_as_float(0x7f800000), l = 0.0f;
    const int last = causal ? i + (skv - sq) : skv - 1;  // keys j <= last are visible
    for (int jk = 0; jk < skv && jk <= last; ++jk) {
        const T* kr = kb + (long long)jk * d;
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < ATT_MAXD; ++j) {
            const int e = lane + 32 * j;
            if (e < d) dot += qv[j] * att_f(kr[e]);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        float s = dot * scale;
        if (mask) s += att_f(mask[b * msb + h * msh + i * msq + jk * msk]);
        if (s == -__int_as_float(0x7f800000)) continue;  // a masked key adds nothing (and must not make NaN)
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn);
        const float p = expf(s - mn);
        l = l * corr + p;
        const T* vr = vb + (long long)jk * dv;
#pragma unroll
        for (int j = 0; j < ATT_MAXD; ++j) {
            const int e = lane + 32 * j;
            acc[j] = acc[j] * corr + (e < dv ? p * att_f(vr[e]) : 0.0f);
        }
        m = mn;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // fully masked row: zeros
    T* orow = out + row * dv;
#pragma unroll
    for (int j = 0; j < ATT_MAXD; ++j) {
        const int e = lane + 32 * j;
        if (e < dv) att_store(orow + e, acc[j] * inv);
    }
}

#define ATTENTION(SUF, T)                                                                                        \
    extern "C" __global__ void attention_##SUF(const T* q, const T* k, const T* v, const T* mask, T* out,        \
                                               int batch, int hq, int hkv, int sq, int skv, int d, int dv,       \
                                               long long msb, long long msh, long long msq, long long msk,       \
                                               float scale, int causal) {                                        \
        attention_warp<T>(q, k, v, mask, out, batch, hq, hkv, sq, skv, d, dv, msb, msh, msq, msk, scale, causal); \
    }
ATTENTION(f32, float)
ATTENTION(f16, __half)
ATTENTION(bf16, __nv_bfloat16)
