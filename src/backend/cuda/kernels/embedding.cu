// Row gather: out[i, :] = table[ids[i], :]. Ids outside [0, vocab) are clamped (no out-of-bounds read) and the
// first one is reported through the error flag, which the backend checks at the next synchronize/download.

#define ERR_EMBEDDING_RANGE 1ull

template <typename I, typename E>
__device__ void gather(const E* __restrict__ table, const I* __restrict__ ids, E* __restrict__ out, i64 count,
                       i64 vocab, i64 dim, unsigned long long* flag) {
    const int V = 16 / sizeof(E);
    const bool vec = dim % V == 0 &&
                     ((reinterpret_cast<unsigned long long>(table) | reinterpret_cast<unsigned long long>(out)) & 15) == 0;
    for (i64 row = blockIdx.x; row < count; row += gridDim.x) {
        i64 id = (i64)ids[row];
        if (id < 0 || id >= vocab) {
            if (threadIdx.x == 0 && atomicCAS(flag, 0ull, ERR_EMBEDDING_RANGE) == 0ull) flag[1] = (unsigned long long)id;
            id = id < 0 ? 0 : vocab - 1;
        }
        const E* src = table + id * dim;
        E* dst = out + row * dim;
        if (vec) {
            for (i64 c = threadIdx.x; c < dim / V; c += blockDim.x)
                reinterpret_cast<uint4*>(dst)[c] = reinterpret_cast<const uint4*>(src)[c];
        } else {
            for (i64 c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = src[c];
        }
    }
}

#define GATHER(IS, I, ES, E)                                                                                     \
    extern "C" __global__ void embedding_##IS##_##ES(const E* table, const I* ids, E* out, i64 count, i64 vocab, \
                                                      i64 dim, unsigned long long* flag) {                       \
        gather<I, E>(table, ids, out, count, vocab, dim, flag);                                                  \
    }
GATHER(u32, u32, b2, unsigned short)
GATHER(u32, u32, b4, unsigned int)
GATHER(i64, i64, b2, unsigned short)
GATHER(i64, i64, b4, unsigned int)
GATHER(u32, u32, b8, unsigned long long)
GATHER(i64, i64, b8, unsigned long long)
