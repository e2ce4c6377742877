// Row-wise kernels over the last axis: LayerNorm (0), RmsNorm (1), Softmax (2).
// A group of G threads owns one row (G = 32: a warp per row, several rows per block; G = blockDim.x: a block per
// row). Each thread keeps its share of the row in registers (MAXV floats), so memory is read once and written once.
// Rows wider than G * MAXV use the streaming kernel further down (reads the row two or three times).

#define NEG_INF (-__int_as_float(0x7f800000))

// Sum (or max) over the G threads of a group. In block mode uses `sh` (32 floats) and two barriers.
template <bool MAX>
__device__ __forceinline__ float group_reduce(float v, int G, float* sh) {
    v = MAX ? warp_max(v) : warp_sum(v);
    if (G == 32) return v;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = G >> 5;
    __syncthreads();  // the previous reduction's readers are done with sh
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : (MAX ? NEG_INF : 0.0f);
    return MAX ? warp_max(r) : warp_sum(r);
}

template <int OP, typename T, int MAXV, bool VEC>
__device__ void rowwise(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                        T* __restrict__ y, i64 rows, int n, float eps, int G) {
    __shared__ float sh[32];
    const int V = VEC ? Pack<T>::N : 1;
    const int t = threadIdx.x % G;
    const i64 row = (i64)blockIdx.x * (blockDim.x / G) + threadIdx.x / G;
    const bool active = row < rows;  // uniform per group (in block mode a block holds one row)
    const T* xr = x + row * n;
    T* yr = y + row * n;
    float v[MAXV];
    // Element j*V + k of this thread is row element (t + j * G) * V + k.
#pragma unroll
    for (int j = 0; j < MAXV / V; ++j) {
        const int e = (t + j * G) * V;
        if (active && e < n) {
            if (VEC) {
                Pack<T> p = load_pack(xr + e);
#pragma unroll
                for (int k = 0; k < V; ++k) v[j * V + k] = to_f(p.v[k]);
            } else {
                v[j * V] = to_f(xr[e]);
            }
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) v[j * V + k] = OP == 2 ? NEG_INF : 0.0f;
        }
    }
    float a = 0.0f, s = 1.0f;  // y = (v - a) * s, then the op's own finish
    if (OP == 0) {
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < MAXV; ++i) sum += v[i];
        const float mean = group_reduce<false>(sum, G, sh) / n;
        float sq = 0.0f;
#pragma unroll
        for (int j = 0; j < MAXV / V; ++j) {
            if ((t + j * G) * V < n) {
#pragma unroll
                for (int k = 0; k < V; ++k) {
                    const float d = v[j * V + k] - mean;
                    sq += d * d;
                }
            }
        }
        const float var = group_reduce<false>(sq, G, sh) / n;
        a = mean;
        s = rsqrtf(var + eps);
    } else if (OP == 1) {
        float sq = 0.0f;
#pragma unroll
        for (int i = 0; i < MAXV; ++i) sq += v[i] * v[i];
        s = rsqrtf(group_reduce<false>(sq, G, sh) / n + eps);
    } else {
        float m = NEG_INF;
#pragma unroll
        for (int i = 0; i < MAXV; ++i) m = fmaxf(m, v[i]);
        m = group_reduce<true>(m, G, sh);
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < MAXV; ++i) {
            v[i] = expf(v[i] - m);
            sum += v[i];
        }
        s = 1.0f / group_reduce<false>(sum, G, sh);
    }
    if (!active) return;
#pragma unroll
    for (int j = 0; j < MAXV / V; ++j) {
        const int e = (t + j * G) * V;
        if (e < n) {
            float o[V];
#pragma unroll
            for (int k = 0; k < V; ++k) o[k] = (v[j * V + k] - a) * s;
            if (OP != 2) {
                if (VEC) {
                    Pack<T> wp = load_pack(w + e);
#pragma unroll
                    for (int k = 0; k < V; ++k) o[k] *= to_f(wp.v[k]);
                    if (OP == 0) {
                        Pack<T> bp = load_pack(bias + e);
#pragma unroll
                        for (int k = 0; k < V; ++k) o[k] += to_f(bp.v[k]);
                    }
                } else {
                    o[0] *= to_f(w[e]);
                    if (OP == 0) o[0] += to_f(bias[e]);
                }
            }
            if (VEC) {
                Pack<T> q;
#pragma unroll
                for (int k = 0; k < V; ++k) q.v[k] = from_f<T>(o[k]);
                store_pack(yr + e, q);
            } else {
                yr[e] = from_f<T>(o[0]);
            }
        }
    }
}

// Rows of any width: a block per row, the row read in a loop (two passes for RmsNorm/Softmax, three for LayerNorm).
template <int OP, typename T>
__device__ void rowwise_stream(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                               T* __restrict__ y, i64 rows, int n, float eps) {
    __shared__ float sh[32];
    const int G = blockDim.x;
    const i64 row = blockIdx.x;
    if (row >= rows) return;
    const T* xr = x + row * n;
    T* yr = y + row * n;
    float a = 0.0f, s = 1.0f, m = 0.0f;
    if (OP == 0) {
        float sum = 0.0f;
        for (int e = threadIdx.x; e < n; e += G) sum += to_f(xr[e]);
        a = group_reduce<false>(sum, G, sh) / n;
        float sq = 0.0f;
        for (int e = threadIdx.x; e < n; e += G) {
            const float d = to_f(xr[e]) - a;
            sq += d * d;
        }
        s = rsqrtf(group_reduce<false>(sq, G, sh) / n + eps);
    } else if (OP == 1) {
        float sq = 0.0f;
        for (int e = threadIdx.x; e < n; e += G) {
            const float d = to_f(xr[e]);
            sq += d * d;
        }
        s = rsqrtf(group_reduce<false>(sq, G, sh) / n + eps);
    } else {
        // Online max and sum per thread, then combined across the block.
        float lm = NEG_INF, ls = 0.0f;
        for (int e = threadIdx.x; e < n; e += G) {
            const float v = to_f(xr[e]);
            if (v > lm) {
                ls = ls * expf(lm - v) + 1.0f;
                lm = v;
            } else {
                ls += expf(v - lm);
            }
        }
        m = group_reduce<true>(lm, G, sh);
        const float scaled = lm == NEG_INF ? 0.0f : ls * expf(lm - m);
        s = 1.0f / group_reduce<false>(scaled, G, sh);
    }
    for (int e = threadIdx.x; e < n; e += G) {
        const float v = to_f(xr[e]);
        float o;
        if (OP == 2) {
            o = expf(v - m) * s;
        } else {
            o = (v - a) * s * to_f(w[e]);
            if (OP == 0) o += to_f(bias[e]);
        }
        yr[e] = from_f<T>(o);
    }
}

#define ROW_VARIANT(NAME, OPID, SUF, T, MAXV, VEC, TAG)                                                          \
    extern "C" __global__ void NAME##_##SUF##_##TAG(const T* x, const T* w, const T* b, T* y, i64 rows, int n,  \
                                                    float eps, int G) {                                          \
        rowwise<OPID, T, MAXV, VEC>(x, w, b, y, rows, n, eps, G);                                                \
    }
#define ROW_OP(NAME, OPID, SUF, T)                                                                               \
    ROW_VARIANT(NAME, OPID, SUF, T, 8, false, r8s)                                                               \
    ROW_VARIANT(NAME, OPID, SUF, T, 8, true, r8v)                                                                \
    ROW_VARIANT(NAME, OPID, SUF, T, 32, false, r32s)                                                             \
    ROW_VARIANT(NAME, OPID, SUF, T, 32, true, r32v)                                                              \
    extern "C" __global__ void NAME##_##SUF##_stream(const T* x, const T* w, const T* b, T* y, i64 rows, int n, \
                                                     float eps) {                                                \
        rowwise_stream<OPID, T>(x, w, b, y, rows, n, eps);                                                       \
    }
#define ROW_ALL(SUF, T) ROW_OP(layernorm, 0, SUF, T) ROW_OP(rmsnorm, 1, SUF, T) ROW_OP(softmax, 2, SUF, T)
FOR_FLOAT_TYPES(ROW_ALL)
