// Elementwise kernels: binary ops with broadcasting, GELU (erf and tanh), SiLU, casts.
// Fast paths use 16-byte loads and stores in a grid-stride loop; the tail (and unaligned data) goes element-wise.

// Error flag layout (shared with embedding.cu): flag[0] = error code (first one wins), flag[1] = offending value.
#define ERR_CAST_RANGE 2ull

// Packs per thread per iteration of the streaming kernels: all loads are issued before the first use.
#define UNROLL 4

template <int OP> __device__ __forceinline__ float bop(float a, float b) {
    if (OP == 0) return a + b;
    if (OP == 1) return a - b;
    if (OP == 2) return a * b;
    return a / b;
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<unsigned long long>(p) & 15) == 0; }

// out[i] = a[i] op b[i]
template <typename T, int OP>
__device__ void binary_same(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, i64 n) {
    const int V = Pack<T>::N;
    const i64 nv = (aligned16(a) && aligned16(b) && aligned16(out)) ? n / V : 0;
    const i64 step = (i64)gridDim.x * blockDim.x * UNROLL;
    for (i64 base = (i64)blockIdx.x * blockDim.x * UNROLL + threadIdx.x; base < nv; base += step) {
        Pack<T> x[UNROLL], y[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const i64 i = base + (i64)u * blockDim.x;
            if (i < nv) {
                x[u] = load_pack(a + i * V);
                y[u] = load_pack(b + i * V);
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const i64 i = base + (i64)u * blockDim.x;
            if (i < nv) {
                Pack<T> z;
#pragma unroll
                for (int k = 0; k < V; ++k) z.v[k] = from_f<T>(bop<OP>(to_f(x[u].v[k]), to_f(y[u].v[k])));
                store_pack(out + i * V, z);
            }
        }
    }
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = nv * V + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = from_f<T>(bop<OP>(to_f(a[i]), to_f(b[i])));
}

// out[i] = a[i] op b[i % p]  (or b[i % p] op a[i] when swap): bias-style broadcast of a trailing block.
template <typename T, int OP>
__device__ void binary_periodic(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, i64 n, i64 p,
                                int swap) {
    const int V = Pack<T>::N;
    const i64 start = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 nv = (p % V == 0 && aligned16(a) && aligned16(b) && aligned16(out)) ? n / V : 0;
    for (i64 i = start; i < nv; i += stride) {
        Pack<T> x = load_pack(a + i * V), y = load_pack(b + (i * V) % p), z;
        if (swap) {
#pragma unroll
            for (int k = 0; k < V; ++k) z.v[k] = from_f<T>(bop<OP>(to_f(y.v[k]), to_f(x.v[k])));
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) z.v[k] = from_f<T>(bop<OP>(to_f(x.v[k]), to_f(y.v[k])));
        }
        store_pack(out + i * V, z);
    }
    for (i64 i = nv * V + start; i < n; i += stride) {
        float x = to_f(a[i]), y = to_f(b[i % p]);
        out[i] = from_f<T>(swap ? bop<OP>(y, x) : bop<OP>(x, y));
    }
}

// General numpy broadcasting: per-operand strides (0 on stretched dimensions) over the output's shape.
template <typename T, int OP>
__device__ void binary_strided(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, i64 n, Dims d) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        i64 oa, ob;
        offsets(d, i, oa, ob);
        out[i] = from_f<T>(bop<OP>(to_f(a[oa]), to_f(b[ob])));
    }
}

#define BINARY(OPNAME, OPID, SUF, T)                                                                              \
    extern "C" __global__ void binary_same_##OPNAME##_##SUF(const T* a, const T* b, T* out, i64 n) {             \
        binary_same<T, OPID>(a, b, out, n);                                                                       \
    }                                                                                                             \
    extern "C" __global__ void binary_periodic_##OPNAME##_##SUF(const T* a, const T* b, T* out, i64 n, i64 p,     \
                                                                int swap) {                                       \
        binary_periodic<T, OPID>(a, b, out, n, p, swap);                                                          \
    }                                                                                                             \
    extern "C" __global__ void binary_strided_##OPNAME##_##SUF(const T* a, const T* b, T* out, i64 n, Dims d) {   \
        binary_strided<T, OPID>(a, b, out, n, d);                                                                 \
    }
#define BINARY_ALL(SUF, T) BINARY(add, 0, SUF, T) BINARY(sub, 1, SUF, T) BINARY(mul, 2, SUF, T) BINARY(div, 3, SUF, T)
FOR_FLOAT_TYPES(BINARY_ALL)

// Unary ops. 0: GELU erf form, 1: GELU tanh form, 2: SiLU.
// Both GELUs are written so that no step cancels. 0.5x(1 + erf(x/sqrt2)) loses every digit for x < -3 in f32
// (1 + erf(z) with erf(z) near -1), so below x = -1 the erf form uses erfc: 0.5x * erfc(-x/sqrt2) = x * Phi(x)
// (erfc is slower; above -1, 1 + erf >= 0.31 and the cheaper erf is as accurate). The tanh form uses
// 1 + tanh(u) = 2 / (1 + exp(-2u)). Accurate to a few f32 ulps over the whole range.
template <int OP> __device__ __forceinline__ float uop(float x) {
    if (OP == 0) {
        const float z = 0.70710678118654752f * x;
        return x >= -1.0f ? 0.5f * x * (1.0f + erff(z)) : 0.5f * x * erfcf(-z);
    }
    if (OP == 1) {
        const float c = 0.79788456080286536f;  // sqrt(2/pi)
        const float u = c * (x + 0.044715f * x * x * x);
        return x / (1.0f + expf(-2.0f * u));
    }
    return x / (1.0f + expf(-x));
}

template <typename T, int OP> __device__ void unary(const T* __restrict__ x, T* __restrict__ y, i64 n) {
    const int V = Pack<T>::N;
    const i64 nv = (aligned16(x) && aligned16(y)) ? n / V : 0;
    const i64 step = (i64)gridDim.x * blockDim.x * UNROLL;
    for (i64 base = (i64)blockIdx.x * blockDim.x * UNROLL + threadIdx.x; base < nv; base += step) {
        Pack<T> p[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const i64 i = base + (i64)u * blockDim.x;
            if (i < nv) p[u] = load_pack(x + i * V);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const i64 i = base + (i64)u * blockDim.x;
            if (i < nv) {
                Pack<T> q;
#pragma unroll
                for (int k = 0; k < V; ++k) q.v[k] = from_f<T>(uop<OP>(to_f(p[u].v[k])));
                store_pack(y + i * V, q);
            }
        }
    }
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = nv * V + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = from_f<T>(uop<OP>(to_f(x[i])));
}

#define UNARY(SUF, T)                                                                                             \
    extern "C" __global__ void gelu_erf_##SUF(const T* x, T* y, i64 n) { unary<T, 0>(x, y, n); }                \
    extern "C" __global__ void gelu_tanh_##SUF(const T* x, T* y, i64 n) { unary<T, 1>(x, y, n); }               \
    extern "C" __global__ void silu_##SUF(const T* x, T* y, i64 n) { unary<T, 2>(x, y, n); }
FOR_FLOAT_TYPES(UNARY)

// Float casts go through f32 (exact for every source type, so each result is rounded once).
template <typename S, typename D> __device__ void cast_float(const S* __restrict__ x, D* __restrict__ y, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = from_f<D>(to_f(x[i]));
}

#define CAST_TO(SS, S, DS, D)                                                                                     \
    extern "C" __global__ void cast_##SS##_##DS(const S* x, D* y, i64 n) { cast_float<S, D>(x, y, n); }
#define CAST_FROM(SS, S) CAST_TO(SS, S, f32, float) CAST_TO(SS, S, f16, __half) CAST_TO(SS, S, bf16, __nv_bfloat16)
FOR_FLOAT_TYPES(CAST_FROM)

extern "C" __global__ void cast_u32_i64(const u32* x, i64* y, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = (i64)x[i];
}

// Ids that do not fit u32 are clamped and reported through the error flag.
extern "C" __global__ void cast_i64_u32(const i64* x, u32* y, i64 n, unsigned long long* flag) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        i64 v = x[i];
        if (v < 0 || v > 0xffffffffll) {
            if (atomicCAS(flag, 0ull, ERR_CAST_RANGE) == 0ull) flag[1] = (unsigned long long)v;
            v = v < 0 ? 0 : 0xffffffffll;
        }
        y[i] = (u32)v;
    }
}

// In place after a matmul: y[r, c] = act(y[r, c] + bias[c]) over [rows, n]. ACT 0: none, 1: GELU erf, 2: GELU tanh.
template <typename T, int ACT> __device__ __forceinline__ float bias_act_one(float v) {
    return ACT == 0 ? v : uop<ACT - 1>(v);
}

// Threads own columns (16-byte packs when n allows) and walk rows, so the bias is loaded once per thread and no
// index needs a 64-bit division. grid.x covers the columns, grid.y strides over the rows.
template <typename T, int ACT> __device__ void bias_act(T* y, const T* __restrict__ bias, i64 rows, i64 n) {
    const int V = Pack<T>::N;
    const i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (n % V == 0 && aligned16(y) && aligned16(bias)) {
        if (c * V >= n) return;
        const Pack<T> b = load_pack(bias + c * V);
        // ROWS rows per step, all loaded before the first is used.
        const int ROWS = 4;
        for (i64 r0 = (i64)blockIdx.y * ROWS; r0 < rows; r0 += (i64)gridDim.y * ROWS) {
            Pack<T> v[ROWS];
#pragma unroll
            for (int j = 0; j < ROWS; ++j)
                if (r0 + j < rows) v[j] = load_pack(y + (r0 + j) * n + c * V);
#pragma unroll
            for (int j = 0; j < ROWS; ++j) {
                if (r0 + j < rows) {
#pragma unroll
                    for (int k = 0; k < V; ++k)
                        v[j].v[k] = from_f<T>(bias_act_one<T, ACT>(to_f(v[j].v[k]) + to_f(b.v[k])));
                    store_pack(y + (r0 + j) * n + c * V, v[j]);
                }
            }
        }
    } else {
        // Scalar: each thread handles columns c, c + (threads along x), ...
        for (i64 col = c; col < n; col += (i64)gridDim.x * blockDim.x) {
            const float b = to_f(bias[col]);
            for (i64 r = blockIdx.y; r < rows; r += gridDim.y) y[r * n + col] = from_f<T>(bias_act_one<T, ACT>(to_f(y[r * n + col]) + b));
        }
    }
}

#define BIAS_ACT(SUF, T)                                                                                          \
    extern "C" __global__ void bias_none_##SUF(T* y, const T* b, i64 rows, i64 n) { bias_act<T, 0>(y, b, rows, n); } \
    extern "C" __global__ void bias_gelu_erf_##SUF(T* y, const T* b, i64 rows, i64 n) { bias_act<T, 1>(y, b, rows, n); } \
    extern "C" __global__ void bias_gelu_tanh_##SUF(T* y, const T* b, i64 rows, i64 n) { bias_act<T, 2>(y, b, rows, n); }
FOR_FLOAT_TYPES(BIAS_ACT)
