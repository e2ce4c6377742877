// Reductions over one axis of x viewed as [outer, r, inner]. KIND 0: sum, 1: mean, 2: max. Accumulates in f32.

#define NEG_INF (-__int_as_float(0x7f800000))

template <int KIND> __device__ __forceinline__ float racc(float acc, float v) {
    return KIND == 2 ? fmaxf(acc, v) : acc + v;
}

// inner == 1: each row of r contiguous elements reduces to one value; G threads per row (32, or the whole block).
template <typename T, int KIND>
__device__ void reduce_rows(const T* __restrict__ x, T* __restrict__ y, i64 outer, i64 r, int G) {
    __shared__ float sh[32];
    const int t = threadIdx.x % G;
    const i64 row = (i64)blockIdx.x * (blockDim.x / G) + threadIdx.x / G;
    const float init = KIND == 2 ? NEG_INF : 0.0f;
    float acc = init;
    if (row < outer) {
        const T* xr = x + row * r;
        for (i64 e = t; e < r; e += G) acc = racc<KIND>(acc, to_f(xr[e]));
    }
    acc = KIND == 2 ? warp_max(acc) : warp_sum(acc);
    if (G > 32) {
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        if (lane == 0) sh[warp] = acc;
        __syncthreads();
        acc = lane < (G >> 5) ? sh[lane] : init;
        acc = KIND == 2 ? warp_max(acc) : warp_sum(acc);
    }
    if (t == 0 && row < outer) y[row] = from_f<T>(KIND == 1 ? acc / (float)r : acc);
}

// inner > 1: one thread per output, walking the reduced axis with stride inner (coalesced across threads).
template <typename T, int KIND>
__device__ void reduce_cols(const T* __restrict__ x, T* __restrict__ y, i64 outer, i64 r, i64 inner) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < outer * inner; i += stride) {
        const i64 o = i / inner, c = i - o * inner;
        const T* p = x + o * r * inner + c;
        float acc = KIND == 2 ? NEG_INF : 0.0f;
        for (i64 j = 0; j < r; ++j) acc = racc<KIND>(acc, to_f(p[j * inner]));
        y[i] = from_f<T>(KIND == 1 ? acc / (float)r : acc);
    }
}

#define REDUCE(NAME, KIND, SUF, T)                                                                               \
    extern "C" __global__ void reduce_rows_##NAME##_##SUF(const T* x, T* y, i64 outer, i64 r, int G) {          \
        reduce_rows<T, KIND>(x, y, outer, r, G);                                                                 \
    }                                                                                                            \
    extern "C" __global__ void reduce_cols_##NAME##_##SUF(const T* x, T* y, i64 outer, i64 r, i64 inner) {      \
        reduce_cols<T, KIND>(x, y, outer, r, inner);                                                             \
    }
#define REDUCE_ALL(SUF, T) REDUCE(sum, 0, SUF, T) REDUCE(mean, 1, SUF, T) REDUCE(max, 2, SUF, T)
FOR_FLOAT_TYPES(REDUCE_ALL)
