// Shared helpers prepended to every kernel source of the CUDA backend (except attention.cu, which stands alone).
// NVRTC: device headers only.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef long long i64;
typedef unsigned int u32;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16 bytes of elements: the unit of vectorised loads and stores.
template <typename T> struct alignas(16) Pack {
    static const int N = 16 / sizeof(T);
    T v[16 / sizeof(T)];
};

template <typename T> __device__ __forceinline__ Pack<T> load_pack(const T* p) {
    return *reinterpret_cast<const Pack<T>*>(p);
}
template <typename T> __device__ __forceinline__ void store_pack(T* p, const Pack<T>& v) {
    *reinterpret_cast<Pack<T>*>(p) = v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Maximum rank of the strided kernels (the launchers merge contiguous dimensions first).
#define MAX_DIMS 8

struct Dims {
    int rank;
    i64 shape[MAX_DIMS];
    i64 a[MAX_DIMS];  // strides of the first operand, in elements
    i64 b[MAX_DIMS];  // strides of the second operand, in elements
};

// Offsets into a and b of the element with row-major index i of `shape`.
__device__ __forceinline__ void offsets(const Dims& d, i64 i, i64& oa, i64& ob) {
    oa = 0;
    ob = 0;
    for (int k = d.rank - 1; k >= 0; --k) {
        i64 s = d.shape[k];
        i64 q = i / s;
        i64 r = i - q * s;
        oa += r * d.a[k];
        ob += r * d.b[k];
        i = q;
    }
}

#define FOR_FLOAT_TYPES(X) X(f32, float) X(f16, __half) X(bf16, __nv_bfloat16)
