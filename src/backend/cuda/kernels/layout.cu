// Data movement that does not look at values: strided copies (Transpose, Slice, Concat), by element size.
// Dims.a holds the source strides, Dims.b the destination strides, both in elements, over the copied shape.

template <typename E> __device__ void copy_nd(const E* __restrict__ src, E* __restrict__ dst, i64 n, Dims d) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        i64 os, od;
        offsets(d, i, os, od);
        dst[od] = src[os];
    }
}

// Rows of `cols` contiguous elements copied between pitched layouts, 16 bytes at a time when everything is aligned.
template <typename E>
__device__ void copy_rows(const E* __restrict__ src, E* __restrict__ dst, i64 rows, i64 cols, i64 spitch,
                          i64 dpitch) {
    const int V = 16 / sizeof(E);
    const bool vec = cols % V == 0 && spitch % V == 0 && dpitch % V == 0 &&
                     ((reinterpret_cast<unsigned long long>(src) | reinterpret_cast<unsigned long long>(dst)) & 15) == 0;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if (vec) {
        const i64 cv = cols / V;
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cv; i += stride) {
            const i64 r = i / cv, c = i - r * cv;
            *reinterpret_cast<uint4*>(dst + r * dpitch + c * V) = *reinterpret_cast<const uint4*>(src + r * spitch + c * V);
        }
    } else {
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cols; i += stride) {
            const i64 r = i / cols, c = i - r * cols;
            dst[r * dpitch + c] = src[r * spitch + c];
        }
    }
}

// Rows of `cols` elements contiguous on both sides, placed by an N-d outer index (a transpose that keeps the last
// axis, as [b, s, h, d] -> [b, h, s, d] in attention): one offset computation per 16-byte vector, not per element.
template <typename E>
__device__ void copy_nd_rows(const E* __restrict__ src, E* __restrict__ dst, i64 rows, i64 cols, Dims d) {
    const int V = 16 / sizeof(E);
    bool vec = cols % V == 0 &&
               ((reinterpret_cast<unsigned long long>(src) | reinterpret_cast<unsigned long long>(dst)) & 15) == 0;
    for (int k = 0; k < d.rank; ++k) vec = vec && d.a[k] % V == 0 && d.b[k] % V == 0;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if (vec) {
        const i64 cv = cols / V;
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cv; i += stride) {
            const i64 r = i / cv, c = i - r * cv;
            i64 os, od;
            offsets(d, r, os, od);
            *reinterpret_cast<uint4*>(dst + od + c * V) = *reinterpret_cast<const uint4*>(src + os + c * V);
        }
    } else {
        for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cols; i += stride) {
            const i64 r = i / cols, c = i - r * cols;
            i64 os, od;
            offsets(d, r, os, od);
            dst[od + c] = src[os + c];
        }
    }
}

#define LAYOUT(SUF, E)                                                                                           \
    extern "C" __global__ void copy_nd_##SUF(const E* src, E* dst, i64 n, Dims d) { copy_nd<E>(src, dst, n, d); } \
    extern "C" __global__ void copy_rows_##SUF(const E* src, E* dst, i64 rows, i64 cols, i64 spitch, i64 dpitch) { \
        copy_rows<E>(src, dst, rows, cols, spitch, dpitch);                                                      \
    }                                                                                                            \
    extern "C" __global__ void copy_nd_rows_##SUF(const E* src, E* dst, i64 rows, i64 cols, Dims d) {            \
        copy_nd_rows<E>(src, dst, rows, cols, d);                                                                \
    }
LAYOUT(b2, unsigned short)
LAYOUT(b4, unsigned int)
LAYOUT(b8, unsigned long long)
