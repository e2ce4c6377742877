// Standalone check + benchmark of src/backend/cuda/kernels/attention.cu (mlx-native's CUDA attention kernel).
// See README.md beside this file.
//
//   nvcc -O3 -arch=sm_90 -std=c++17 harness.cu -o h && ./h            # correctness + timing
//   ./h --small                                                      # small correctness cases only (sanitizers)
//   ./h --check / ./h --time                                         # full correctness only / timing only
//
// Every launch picks its geometry with `geometry()` below, which mirrors src/backend/cuda/attention.rs.
// Outputs are poisoned with NaN (0xFF bytes) before every launch; the reference is float64 on the CPU over the
// same (rounded) inputs. Cases run on contiguous [b, h, s, d] operands or on the packed QKV layout (q/k/v views of
// one [b, s, (hq + 2 hkv) d] buffer, out [b, s, hq dv] with poisoned guards between rows that must stay poisoned). Timings: CUDA events, warm-up, median of repetitions; written to attn_times.txt so
// sdpa_bench.py can print ratios against PyTorch's scaled_dot_product_attention.
#ifndef ATTN_SRC
#define ATTN_SRC "../../src/backend/cuda/kernels/attention.cu"
#endif
#include ATTN_SRC

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#define CK(x)                                                                                     \
    do {                                                                                          \
        cudaError_t e_ = (x);                                                                     \
        if (e_ != cudaSuccess) {                                                                  \
            std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                         __LINE__, #x);                                                           \
            std::exit(2);                                                                         \
        }                                                                                         \
    } while (0)

// ------------------------------------------------------------------------------------------------------------
// dtype glue
enum DType { F32 = 0, F16 = 1, BF16 = 2 };
static const char* dname(DType t) { return t == F32 ? "f32" : t == F16 ? "f16" : "bf16"; }

template <typename T> struct HT;
template <> struct HT<float> {
    static constexpr DType dt = F32;
    static float from(float x) { return x; }
    static float to(float x) { return x; }
};
template <> struct HT<__half> {
    static constexpr DType dt = F16;
    static __half from(float x) { return __float2half_rn(x); }
    static float to(__half x) { return __half2float(x); }
};
template <> struct HT<__nv_bfloat16> {
    static constexpr DType dt = BF16;
    static __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
    static float to(__nv_bfloat16 x) { return __bfloat162float(x); }
};

// ------------------------------------------------------------------------------------------------------------
// launch geometry: the same rules as the Rust launcher
struct Geo {
    unsigned gx, gy;
    unsigned block;
    size_t smem;
    const char* path;
    int f32d;   // f32 register-tiled path: head size of its entry point attention_f32_d<f32d>; 0: attention_f32
};

static int gen_smem_floats_h(int d, int dv, int tk) {
    int dpad = ((d + 3) & ~3) + 4;
    int dvp = (dv + 3) & ~3;
    int dvo = dvp + 4;
    return 32 * dpad + tk * dpad + tk * dvp + 32 * (tk + 1) + 32 * dvo;
}
static int gen_tk_h(int d, int dv) {
    for (int tk = 32; tk >= 4; tk >>= 1)
        if (gen_smem_floats_h(d, dv, tk) * 4 <= 48 * 1024) return tk;
    return 4;
}

static int g_cc_major = 9;   // set from the device in main()

// 0: f32 takes the generic path everywhere (the baseline of the f32 register-tiled path).
#ifndef MLXN_ATTN_F32_TILED
#define MLXN_ATTN_F32_TILED 1
#endif

template <int D, int TM, int TN> static void f32_tile_geo(Geo& g, int& rows) {
    using Tl = mlxn_attn::F32Tile<D, TM, TN>;
    rows = Tl::BR;
    g.smem = Tl::SMEM_BYTES;
    g.f32d = D;
    g.path = D == 32 ? "f32t32" : D == 64 ? "f32t64" : "f32t128";
}

// aligned16: every q/k/v row start 16-byte aligned (pointers and strides); out_pairs: out 4-byte aligned with even
// strides (the tensor-core path's stores).
static Geo geometry(DType dt, int batch, int hq, int sq, int d, int dv, bool aligned16, bool out_pairs) {
    Geo g;
    g.block = 128;
    g.f32d = 0;
    int rows;
    bool f32t = dt == F32 && MLXN_ATTN_F32_TILED && d == dv && aligned16 && g_cc_major >= 8 &&
                (d == 32 || d == 64 || d == 128);
    bool tc_d = d == 64 || d == 128 || (d == 32 && MLXN_ATTN_D32_VARIANT >= 0);
    if (dt != F32 && d == dv && aligned16 && out_pairs && g_cc_major >= 8 && tc_d) {
        int mt = d == 32 ? mlxn_attn::D32_MT : d == 64 ? mlxn_attn::D64_MT : mlxn_attn::D128_MT;
        int bc = d == 32 ? mlxn_attn::D32_BC : d == 64 ? mlxn_attn::D64_BC : mlxn_attn::D128_BC;
        bool qreg = d == 32 ? mlxn_attn::D32_QREG : d == 64 ? mlxn_attn::D64_QREG : mlxn_attn::D128_QREG;
        rows = 64 * mt;
        bool alias = qreg && rows == 2 * bc;
        g.smem = (size_t)(alias ? 0 : rows * d * 2) + (size_t)4 * bc * d * 2 + (size_t)2 * bc * 2;   // + mask rows
        g.path = d == 32 ? "mma32" : d == 64 ? "mma64" : "mma128";
    } else if (f32t) {
        using namespace mlxn_attn;
        if (d == 32) f32_tile_geo<32, F32_D32_TM, F32_D32_TN>(g, rows);
        if (d == 64) f32_tile_geo<64, F32_D64_TM, F32_D64_TN>(g, rows);
        if (d == 128) f32_tile_geo<128, F32_D128_TM, F32_D128_TN>(g, rows);
    } else {
        rows = 32;
        g.smem = (size_t)gen_smem_floats_h(d, dv, gen_tk_h(d, dv)) * 4;
        g.path = "generic";
    }
    g.gx = (unsigned)((sq + rows - 1) / rows);
    g.gy = (unsigned)(batch * hq);
    return g;
}

// The kernel the launcher picks: the dtype's entry point for the generic path, the path's own for tensor cores
// (a kernel source older than those entry points, as ATTN_SRC for a baseline, has only the dtype's).
#ifndef MLXN_ATTN_TC_ENTRY
#define attention_f16_d32 attention_f16
#define attention_f16_d64 attention_f16
#define attention_f16_d128 attention_f16
#define attention_bf16_d32 attention_bf16
#define attention_bf16_d64 attention_bf16
#define attention_bf16_d128 attention_bf16
#endif
template <typename T> struct Kern;
template <> struct Kern<float> {
    static auto fn(const Geo& g) {
        return g.f32d == 32 ? attention_f32_d32 : g.f32d == 64 ? attention_f32_d64
                                               : g.f32d == 128 ? attention_f32_d128 : attention_f32;
    }
};
template <> struct Kern<__half> {
    static auto fn(const Geo& g) {
        const std::string p = g.path;
        return p == "mma32" ? attention_f16_d32 : p == "mma64" ? attention_f16_d64
                                              : p == "mma128" ? attention_f16_d128 : attention_f16;
    }
};
template <> struct Kern<__nv_bfloat16> {
    static auto fn(const Geo& g) {
        const std::string p = g.path;
        return p == "mma32" ? attention_bf16_d32 : p == "mma64" ? attention_bf16_d64
                                               : p == "mma128" ? attention_bf16_d128 : attention_bf16;
    }
};

struct Shape {
    int b, hq, hkv, sq, skv, d, dv;
    long long msb, msh, msq, msk;
    float scale;
    int causal;
    mlxn_attn::Strides st;   // q, k, v, out strides (set by the layout)
};

template <typename T>
static Geo launch(const Shape& s, const T* q, const T* k, const T* v, const T* mask, T* out) {
    const mlxn_attn::Strides& t = s.st;
    const long long e = 16 / sizeof(T);
    bool al = ((reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v)) &
               15) == 0 &&
              ((t.qsb | t.qsh | t.qss | t.ksb | t.ksh | t.kss | t.vsb | t.vsh | t.vss) % e) == 0;
    bool op = (reinterpret_cast<uintptr_t>(out) & 3) == 0 && ((t.osb | t.osh | t.oss) & 1) == 0;
    Geo g = geometry(HT<T>::dt, s.b, s.hq, s.sq, s.d, s.dv, al, op);
    if (g.gx == 0 || g.gy == 0) return g;
    auto fn = Kern<T>::fn(g);
    if (g.smem > 48 * 1024) CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g.smem));
    fn<<<dim3(g.gx, g.gy), g.block, g.smem>>>(q, k, v, mask, out, s.b, s.hq, s.hkv, s.sq, s.skv, s.d, s.dv, s.msb,
                                              s.msh, s.msq, s.msk, t.qsb, t.qsh, t.qss, t.ksb, t.ksh, t.kss, t.vsb,
                                              t.vsh, t.vss, t.osb, t.osh, t.oss, s.scale, s.causal);
    CK(cudaGetLastError());
    return g;
}

// ------------------------------------------------------------------------------------------------------------
// reference
struct HostData {
    std::vector<float> q, k, v, mask;   // values after rounding to T
};

static void ref_row(const Shape& s, const HostData& h, int b, int hh, int i, double* out, double* sc) {
    int hk = hh / (s.hq / s.hkv);
    const float* qr = &h.q[(((size_t)b * s.hq + hh) * s.sq + i) * s.d];
    double m = -INFINITY;
    for (int j = 0; j < s.skv; ++j) {
        bool dead = s.causal && j > i + (s.skv - s.sq);
        double x = -INFINITY;
        if (!dead) {
            const float* kr = &h.k[(((size_t)b * s.hkv + hk) * s.skv + j) * s.d];
            double dot = 0;
            for (int c = 0; c < s.d; ++c) dot += (double)qr[c] * kr[c];
            x = dot * s.scale;
            if (!h.mask.empty()) x += h.mask[b * s.msb + hh * s.msh + i * s.msq + j * s.msk];
        }
        sc[j] = x;
        m = std::max(m, x);
    }
    for (int c = 0; c < s.dv; ++c) out[c] = 0;
    if (m == -INFINITY) return;
    double l = 0;
    for (int j = 0; j < s.skv; ++j) {
        double p = std::exp(sc[j] - m);
        if (p == 0) continue;
        l += p;
        const float* vr = &h.v[(((size_t)b * s.hkv + hk) * s.skv + j) * s.dv];
        for (int c = 0; c < s.dv; ++c) out[c] += p * vr[c];
    }
    for (int c = 0; c < s.dv; ++c) out[c] /= l;
}

// rows: list of (b, h, i); empty = all rows. Returns max abs error; counts NaN/unwritten outputs.
template <typename T>
static double check_rows(const Shape& s, const HostData& h, const std::vector<T>& got,
                         const std::vector<std::array<int, 3>>& rows, long long* nan_count) {
    std::vector<std::array<int, 3>> all = rows;
    if (all.empty())
        for (int b = 0; b < s.b; ++b)
            for (int hh = 0; hh < s.hq; ++hh)
                for (int i = 0; i < s.sq; ++i) all.push_back({b, hh, i});
    unsigned nth = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<double> err(nth, 0.0);
    std::vector<long long> nans(nth, 0);
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nth; ++t)
        th.emplace_back([&, t] {
            std::vector<double> o(s.dv), sc(s.skv);
            for (size_t r = t; r < all.size(); r += nth) {
                auto [b, hh, i] = all[r];
                ref_row(s, h, b, hh, i, o.data(), sc.data());
                const T* g = &got[(((size_t)b * s.hq + hh) * s.sq + i) * s.dv];
                for (int c = 0; c < s.dv; ++c) {
                    double x = HT<T>::to(g[c]);
                    if (!std::isfinite(x)) {
                        nans[t]++;
                        continue;
                    }
                    err[t] = std::max(err[t], std::fabs(x - o[c]));
                }
            }
        });
    for (auto& x : th) x.join();
    *nan_count = 0;
    for (auto n : nans) *nan_count += n;
    return *std::max_element(err.begin(), err.end());
}

// ------------------------------------------------------------------------------------------------------------
// one case: random inputs, poison, launch, compare
enum MaskKind { M_NONE = 0, M_FULL, M_11SK, M_B11K, M_FULL_DEADROW, M_B11K_DEADB };
static const char* mname(int m) {
    switch (m) {
    case M_NONE: return "none";
    case M_FULL: return "[b,h,sq,skv]";
    case M_11SK: return "[1,1,sq,skv]";
    case M_B11K: return "[b,1,1,skv]";
    case M_B11K_DEADB: return "[b,1,1,skv]+deadb0";
    default: return "[b,h,sq,skv]+deadrow";
    }
}

struct Case {
    int b, hq, hkv, sq, skv, d, dv, mask, causal;
    float scale;     // 0: 1/sqrt(d)
    int misalign;    // offset q by one element
    int packed;      // 1: q, k, v views of one [b, s, (hq + 2 hkv) d + ipad] buffer, out [b, s, hq dv + oguard]
    int ipad;        // packed: elements after each input row (not a multiple of 16 bytes: generic path)
    int oguard;      // packed: poisoned elements after each output row (odd: no tensor-core stores)
};

static std::mt19937_64 rng(12345);

template <typename T> struct DevBuf {
    T* p = nullptr;
    size_t n = 0;
    explicit DevBuf(size_t n_) : n(n_) { CK(cudaMalloc(&p, std::max<size_t>(1, n + 16) * sizeof(T))); }
    ~DevBuf() { cudaFree(p); }
};

template <typename T>
static void fill(std::vector<float>& f, std::vector<T>& t, size_t n, float lo, float hi, double ninf_frac) {
    std::uniform_real_distribution<float> u(lo, hi), u01(0.f, 1.f);
    f.resize(n);
    t.resize(n);
    for (size_t i = 0; i < n; ++i) {
        float x = u(rng);
        if (ninf_frac > 0 && u01(rng) < ninf_frac) x = -INFINITY;
        t[i] = HT<T>::from(x);
        f[i] = HT<T>::to(t[i]);
    }
}

static int g_fail = 0;
static std::vector<std::string> g_table;

template <typename T> static double tol() {
    return HT<T>::dt == F32 ? 1e-4 : HT<T>::dt == F16 ? 4e-3 : 2.5e-2;
}

// Builds the additive mask of kind `c.mask` (10 % -inf entries, the rest in [-2, 0]) and sets its strides
// in `s`; returns its element count (0: no mask).
template <typename T>
static size_t make_mask(const Case& c, Shape& s, HostData& h, std::vector<T>& tm) {
    size_t nm = 0;
    switch (c.mask) {
    case M_FULL:
    case M_FULL_DEADROW:
        nm = (size_t)c.b * c.hq * c.sq * c.skv;
        s.msb = (long long)c.hq * c.sq * c.skv;
        s.msh = (long long)c.sq * c.skv;
        s.msq = c.skv;
        s.msk = 1;
        break;
    case M_11SK:
        nm = (size_t)c.sq * c.skv;
        s.msq = c.skv;
        s.msk = 1;
        break;
    case M_B11K:
    case M_B11K_DEADB:
        nm = (size_t)c.b * c.skv;
        s.msb = c.skv;
        s.msk = 1;
        break;
    default: break;
    }
    if (nm) {
        fill(h.mask, tm, nm, -2.f, 0.f, 0.1);
        if (c.mask == M_FULL_DEADROW) {
            // every (b, h) gets query row 3 (if present) fully masked, plus row sq-1 for head 0
            for (int b = 0; b < c.b; ++b)
                for (int hh = 0; hh < c.hq; ++hh)
                    for (int i = 0; i < c.sq; ++i)
                        if (i == 3 || (hh == 0 && i == c.sq - 1))
                            for (int j = 0; j < c.skv; ++j) {
                                size_t idx = b * s.msb + hh * s.msh + i * s.msq + j;
                                tm[idx] = HT<T>::from(-INFINITY);
                                h.mask[idx] = -INFINITY;
                            }
        }
        if (c.mask == M_B11K_DEADB) {
            // batch 0 masks every key: all its rows, in every head, are fully masked
            for (int j = 0; j < c.skv; ++j) {
                tm[j] = HT<T>::from(-INFINITY);
                h.mask[j] = -INFINITY;
            }
        }
    }
    return nm;
}

// Device operands of one case in its layout: contiguous [b, h, s, d] buffers (q shifted by `misalign` elements) or
// the packed QKV layout; the output image is poisoned, and `covered` marks its elements the kernel must write.
template <typename T> struct Operands {
    std::unique_ptr<DevBuf<T>> bq, bk, bv, bout;
    const T *q = nullptr, *k = nullptr, *v = nullptr;
    T* out = nullptr;
    size_t nout = 0;
    std::vector<unsigned char> covered;
};

// dst[b*sb + h*sh + i*ss + c] = src[b, h, i, c] of a contiguous [B, H, S, D] tensor (and the reverse).
template <typename T>
static void scatter(T* dst, long long sb, long long sh, long long ss, const T* src, int B, int H, int S, int D,
                    bool reverse = false) {
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < S; ++i) {
                T* x = dst + b * sb + h * sh + i * ss;
                const T* y = src + (((size_t)b * H + h) * S + i) * D;
                if (reverse)
                    std::memcpy(const_cast<T*>(y), x, D * sizeof(T));
                else
                    std::memcpy(x, y, D * sizeof(T));
            }
}

template <typename T>
static void make_operands(Operands<T>& o, const Case& c, Shape& s, const std::vector<T>& tq, const std::vector<T>& tk,
                          const std::vector<T>& tv) {
    mlxn_attn::Strides& t = s.st;
    if (!c.packed) {
        size_t nq = tq.size(), nk = tk.size(), nv = tv.size();
        t = {(long long)c.hq * c.sq * c.d, (long long)c.sq * c.d, c.d,
             (long long)c.hkv * c.skv * c.d, (long long)c.skv * c.d, c.d,
             (long long)c.hkv * c.skv * c.dv, (long long)c.skv * c.dv, c.dv,
             (long long)c.hq * c.sq * c.dv, (long long)c.sq * c.dv, c.dv};
        o.bq.reset(new DevBuf<T>(nq));
        o.bk.reset(new DevBuf<T>(nk));
        o.bv.reset(new DevBuf<T>(nv));
        T* qptr = o.bq->p + (c.misalign ? 1 : 0);
        CK(cudaMemcpy(qptr, tq.data(), nq * sizeof(T), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(o.bk->p, tk.data(), nk * sizeof(T), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(o.bv->p, tv.data(), nv * sizeof(T), cudaMemcpyHostToDevice));
        o.q = qptr;
        o.k = o.bk->p;
        o.v = o.bv->p;
        o.nout = (size_t)c.b * c.hq * c.sq * c.dv;
    } else {
        // packed QKV projection: needs sq == skv (one sequence) and d == dv
        if (c.sq != c.skv || c.d != c.dv) {
            std::fprintf(stderr, "packed case needs sq == skv and d == dv\n");
            std::exit(2);
        }
        const long long w = (long long)(c.hq + 2 * c.hkv) * c.d + c.ipad;   // input row
        const long long ow = (long long)c.hq * c.dv + c.oguard;             // output row
        t = {c.sq * w, c.d, w, c.sq * w, c.d, w, c.sq * w, c.d, w, c.sq * ow, c.dv, ow};
        size_t nin = (size_t)c.b * c.sq * w;
        std::vector<T> img(nin, HT<T>::from(0.f));
        const size_t ko = (size_t)c.hq * c.d, vo = (size_t)(c.hq + c.hkv) * c.d;
        scatter(img.data(), t.qsb, t.qsh, t.qss, tq.data(), c.b, c.hq, c.sq, c.d);
        scatter(img.data() + ko, t.ksb, t.ksh, t.kss, tk.data(), c.b, c.hkv, c.skv, c.d);
        scatter(img.data() + vo, t.vsb, t.vsh, t.vss, tv.data(), c.b, c.hkv, c.skv, c.dv);
        o.bq.reset(new DevBuf<T>(nin));
        CK(cudaMemcpy(o.bq->p, img.data(), nin * sizeof(T), cudaMemcpyHostToDevice));
        o.q = o.bq->p;
        o.k = o.bq->p + ko;
        o.v = o.bq->p + vo;
        o.nout = (size_t)c.b * c.sq * ow;
    }
    o.bout.reset(new DevBuf<T>(o.nout));
    o.out = o.bout->p;
    o.covered.assign(o.nout, 0);
    for (int b = 0; b < c.b; ++b)
        for (int h = 0; h < c.hq; ++h)
            for (int i = 0; i < c.sq; ++i)
                std::memset(&o.covered[b * t.osb + h * t.osh + i * t.oss], 1, c.dv);
}

// Copies the output back into contiguous [b, hq, sq, dv]; returns the number of elements outside the output's
// rows (guards) that lost their poison.
template <typename T>
static long long fetch_out(const Operands<T>& o, const Case& c, const Shape& s, std::vector<T>& got) {
    std::vector<T> img(o.nout);
    CK(cudaMemcpy(img.data(), o.out, o.nout * sizeof(T), cudaMemcpyDeviceToHost));
    got.resize((size_t)c.b * c.hq * c.sq * c.dv);
    scatter(img.data(), s.st.osb, s.st.osh, s.st.oss, got.data(), c.b, c.hq, c.sq, c.dv, true);
    long long bad = 0;
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(img.data());
    for (size_t i = 0; i < o.nout; ++i)
        if (!o.covered[i])
            for (size_t k = 0; k < sizeof(T); ++k) bad += bytes[i * sizeof(T) + k] != 0xFF;
    return bad;
}

template <typename T> static void run_case(const Case& c) {
    Shape s{c.b, c.hq, c.hkv, c.sq, c.skv, c.d, c.dv, 0, 0, 0, 0,
            c.scale > 0 ? c.scale : 1.f / std::sqrt((float)c.d), c.causal, {}};
    HostData h;
    std::vector<T> tq, tk, tv, tm;
    size_t nq = (size_t)c.b * c.hq * c.sq * c.d, nk = (size_t)c.b * c.hkv * c.skv * c.d,
           nv = (size_t)c.b * c.hkv * c.skv * c.dv;
    fill(h.q, tq, nq, -1.f, 1.f, 0);
    fill(h.k, tk, nk, -1.f, 1.f, 0);
    fill(h.v, tv, nv, -1.f, 1.f, 0);
    size_t nm = make_mask<T>(c, s, h, tm);
    Operands<T> o;
    make_operands(o, c, s, tq, tk, tv);
    DevBuf<T> dm(nm);
    if (nm) CK(cudaMemcpy(dm.p, tm.data(), nm * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemset(o.out, 0xFF, o.nout * sizeof(T)));   // NaN poison for f32/f16/bf16
    Geo g = launch<T>(s, o.q, o.k, o.v, nm ? dm.p : nullptr, o.out);
    CK(cudaDeviceSynchronize());
    std::vector<T> got;
    long long guard = fetch_out(o, c, s, got);
    long long nans = 0;
    double err = check_rows<T>(s, h, got, {}, &nans);
    // An input row stride that is not a multiple of 16 bytes must take the generic path.
    bool path_ok = !(c.packed && (c.ipad * sizeof(T)) % 16 != 0) || std::string(g.path) == "generic";
    bool ok = nans == 0 && guard == 0 && path_ok && err <= tol<T>();
    if (!ok) g_fail++;
    char lay[64] = "";
    if (c.packed) std::snprintf(lay, sizeof lay, " packed(ipad %d, oguard %d)", c.ipad, c.oguard);
    char line[480];
    std::snprintf(line, sizeof line,
                  "%-4s b=%d hq=%d hkv=%d sq=%-4d skv=%-4d d=%-3d dv=%-3d mask=%-21s causal=%d scale=%-6.3g%s%s "
                  "path=%-7s maxerr=%.3e nan=%lld guard=%lld %s",
                  dname(HT<T>::dt), c.b, c.hq, c.hkv, c.sq, c.skv, c.d, c.dv, mname(c.mask), c.causal, s.scale,
                  c.misalign ? " misaligned" : "", lay, g.path, err, nans, guard, ok ? "ok" : "FAIL");
    std::printf("%s\n", line);
    std::fflush(stdout);
}

// ------------------------------------------------------------------------------------------------------------
// timing
static FILE* g_times = nullptr;

// `mask`: M_NONE or a mask kind of make_mask (the same mask in every timed launch).
// ATTN_TIME=name,name,...: time only these cases (all when unset).
static bool selected(const char* name) {
    const char* sel = std::getenv("ATTN_TIME");
    if (!sel || !*sel) return true;
    std::string list = std::string(",") + sel + ",";
    return list.find(std::string(",") + name + ",") != std::string::npos;
}

// packed: q, k, v read from one [b, s, 3 hh d] buffer, out written as [b, s, hh d] (no guard).
template <typename T>
static void time_case(const char* name, int b, int hh, int sl, int d, int causal, int reps, int mask = M_NONE,
                      int packed = 0) {
    if (!selected(name)) return;
    Shape s{b, hh, hh, sl, sl, d, d, 0, 0, 0, 0, 1.f / std::sqrt((float)d), causal, {}};
    HostData h;
    std::vector<T> tq, tk, tv, tm;
    size_t n = (size_t)b * hh * sl * d;
    fill(h.q, tq, n, -1.f, 1.f, 0);
    fill(h.k, tk, n, -1.f, 1.f, 0);
    fill(h.v, tv, n, -1.f, 1.f, 0);
    Case c{b, hh, hh, sl, sl, d, d, mask, causal, 0, 0, packed, 0, 0};
    size_t nm = make_mask<T>(c, s, h, tm);
    Operands<T> o;
    make_operands(o, c, s, tq, tk, tv);
    DevBuf<T> dm(nm);
    if (nm) CK(cudaMemcpy(dm.p, tm.data(), nm * sizeof(T), cudaMemcpyHostToDevice));
    const T* mp = nm ? dm.p : nullptr;
    CK(cudaMemset(o.out, 0xFF, o.nout * sizeof(T)));
    Geo g = launch<T>(s, o.q, o.k, o.v, mp, o.out);
    CK(cudaDeviceSynchronize());
    // verify a sample of rows of the timed shape
    std::vector<T> got;
    fetch_out(o, c, s, got);
    std::vector<std::array<int, 3>> rows;
    std::uniform_int_distribution<int> ub(0, b - 1), uh(0, hh - 1), ui(0, sl - 1);
    for (int r = 0; r < 256; ++r) rows.push_back({ub(rng), uh(rng), ui(rng)});
    rows.push_back({b - 1, hh - 1, sl - 1});
    rows.push_back({0, 0, 0});
    long long nans = 0;
    double err = check_rows<T>(s, h, got, rows, &nans);
    bool ok = nans == 0 && err <= tol<T>();
    if (!ok) g_fail++;

    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) launch<T>(s, o.q, o.k, o.v, mp, o.out);
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
        CK(cudaEventRecord(e0));
        launch<T>(s, o.q, o.k, o.v, mp, o.out);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    float med = ms[ms.size() / 2];
    double flops = 4.0 * b * hh * (double)sl * sl * d * (causal ? 0.5 : 1.0);
    std::printf("TIME %-28s path=%-7s median %.4f ms  min %.4f ms  %.1f TFLOP/s  (sampled maxerr %.3e nan=%lld %s)\n",
                name, g.path, med, ms[0], flops / (med * 1e-3) / 1e12, err, nans, ok ? "ok" : "FAIL");
    if (g_times) std::fprintf(g_times, "%s %.6f\n", name, med);
    std::fflush(stdout);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

template <typename T> static void run_all(const std::vector<Case>& cs) {
    for (auto& c : cs) run_case<T>(c);
}

int main(int argc, char** argv) {
    bool small = argc > 1 && std::strcmp(argv[1], "--small") == 0;
    bool f32_only = argc > 1 && std::strcmp(argv[1], "--time-f32") == 0;   // f32 timing only (tile variants)
    bool time_only = f32_only || (argc > 1 && std::strcmp(argv[1], "--time") == 0);
    bool check_only = argc > 1 && std::strcmp(argv[1], "--check") == 0;   // full correctness, no timing
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    g_cc_major = prop.major;
    std::printf("device: %s, %d SMs, source %s, d32: variant %d MT %d BC %d, d64: MT %d BC %d QREG %d, d128: MT %d "
                "BC %d QREG %d\n",
                prop.name, prop.multiProcessorCount, ATTN_SRC, MLXN_ATTN_D32_VARIANT, mlxn_attn::D32_MT,
                mlxn_attn::D32_BC, mlxn_attn::D64_MT, mlxn_attn::D64_BC, (int)mlxn_attn::D64_QREG,
                mlxn_attn::D128_MT, mlxn_attn::D128_BC, (int)mlxn_attn::D128_QREG);
    std::printf("f32 tiled %d: d32 TM %d TN %d minb %d, d64 TM %d TN %d minb %d, d128 TM %d TN %d minb %d\n",
                MLXN_ATTN_F32_TILED, mlxn_attn::F32_D32_TM, mlxn_attn::F32_D32_TN, mlxn_attn::F32_D32_MINB,
                mlxn_attn::F32_D64_TM, mlxn_attn::F32_D64_TN, mlxn_attn::F32_D64_MINB, mlxn_attn::F32_D128_TM,
                mlxn_attn::F32_D128_TN, mlxn_attn::F32_D128_MINB);

    // b, hq, hkv, sq, skv, d, dv, mask, causal, scale, misalign
    std::vector<Case> small_cases = {
        {1, 1, 1, 1, 1, 64, 64, M_NONE, 0, 0, 0},
        {2, 4, 2, 17, 129, 64, 64, M_FULL, 0, 0, 0},
        {1, 8, 1, 129, 17, 128, 128, M_NONE, 1, 0, 0},     // causal with sq > skv: fully masked rows
        {1, 4, 2, 1, 129, 64, 64, M_NONE, 1, 0, 0},        // decode
        {2, 2, 1, 129, 129, 32, 32, M_11SK, 1, 0, 0},
        {1, 2, 2, 17, 17, 1, 1, M_NONE, 0, 0, 0},
        {1, 3, 1, 17, 33, 7, 7, M_B11K, 0, 0, 0},
        {2, 4, 4, 129, 129, 128, 128, M_FULL_DEADROW, 1, 0, 0},
        {1, 2, 2, 65, 65, 64, 64, M_FULL_DEADROW, 0, 0, 1},  // misaligned q -> generic
        {1, 2, 2, 33, 70, 80, 80, M_NONE, 1, 0, 0},
        // d = 32 (all-MiniLM-L6-v2: 12 heads, padding mask [b,1,1,skv])
        {1, 1, 1, 1, 1, 32, 32, M_NONE, 0, 0, 0},
        {3, 12, 12, 17, 17, 32, 32, M_B11K, 0, 0, 0},
        {2, 4, 2, 128, 128, 32, 32, M_B11K_DEADB, 1, 0, 0},
        {1, 2, 2, 129, 129, 32, 32, M_FULL_DEADROW, 0, 0, 0},
        // f32 register-tiled path (d = dv in {32, 64, 128}); the cases above reach it too
        {2, 2, 1, 17, 1, 32, 32, M_FULL, 1, 0, 0},            // skv = 1, causal sq > skv, grouped heads
        {2, 3, 1, 1, 17, 128, 128, M_B11K_DEADB, 0, 0, 0},    // decode, batch 0 fully masked
        {2, 4, 2, 33, 65, 64, 64, M_B11K, 1, 0, 0},
        {1, 2, 2, 65, 65, 32, 32, M_FULL, 0, 0, 1},           // misaligned q -> generic
        // [b,1,1,skv] masks through shared memory: skv = 72 (every (b, h) row 16-byte aligned, a tile ends early)
        {2, 4, 4, 72, 72, 64, 64, M_B11K, 0, 0, 0},
        // packed QKV layout [b, s, (hq + 2 hkv) d], out [b, s, hq d] with guards between rows
        {2, 4, 4, 129, 129, 32, 32, M_B11K, 0, 0, 0, 1, 0, 8},
        {2, 2, 1, 33, 33, 128, 128, M_B11K_DEADB, 1, 0, 0, 1, 0, 8},
        {2, 3, 3, 40, 40, 32, 32, M_B11K, 0, 0, 0, 1, 1, 8},      // odd input row stride -> generic
        {2, 3, 3, 40, 40, 64, 64, M_NONE, 1, 0, 0, 1, 0, 1},      // odd out stride: no tensor-core stores
    };
    std::vector<Case> big_cases = {
        {3, 2, 2, 1000, 1000, 64, 64, M_NONE, 1, 0, 0},
        {1, 4, 2, 1, 1000, 64, 64, M_NONE, 0, 0, 0},        // decode
        {1, 4, 2, 1, 1000, 128, 128, M_B11K, 0, 0, 0},
        {1, 2, 2, 129, 1000, 80, 80, M_FULL, 1, 0, 0},
        {2, 2, 2, 1000, 129, 128, 128, M_11SK, 0, 0, 0},
        {1, 2, 1, 257, 257, 64, 32, M_NONE, 1, 0, 0},       // d != dv
        {2, 4, 4, 200, 200, 128, 128, M_FULL_DEADROW, 1, 0, 0},
        {1, 1, 1, 1000, 1000, 128, 128, M_NONE, 0, 1.0f, 0},  // peaky softmax
        {1, 8, 1, 1000, 1000, 64, 64, M_FULL, 0, 0, 0},
        {2, 8, 2, 517, 1000, 128, 128, M_NONE, 1, 0, 0},
        {1, 2, 2, 1000, 1000, 32, 32, M_NONE, 1, 0, 0},
        {3, 2, 1, 17, 17, 200, 136, M_FULL, 1, 0, 0},
        // d = 32
        {3, 12, 12, 128, 128, 32, 32, M_B11K, 0, 0, 0},       // MiniLM layer
        {2, 12, 12, 256, 256, 32, 32, M_B11K_DEADB, 0, 0, 0},
        {3, 4, 2, 129, 129, 32, 32, M_B11K, 1, 0, 0},
        {1, 4, 4, 256, 256, 32, 32, M_FULL_DEADROW, 1, 0, 0},
        {2, 4, 1, 1, 256, 32, 32, M_B11K, 0, 0, 0},           // decode
        {2, 4, 1, 1, 17, 32, 32, M_B11K_DEADB, 1, 0, 0},      // decode, causal
        {1, 2, 2, 17, 256, 32, 32, M_FULL, 1, 0, 0},
        {1, 2, 2, 256, 17, 32, 32, M_B11K, 1, 0, 0},          // sq > skv: causal leaves rows empty
        {2, 3, 3, 129, 129, 32, 32, M_11SK, 0, 0, 0},
        {1, 2, 2, 128, 128, 32, 32, M_B11K, 0, 1.0f, 0},      // peaky softmax
        {2, 2, 2, 129, 129, 32, 32, M_B11K, 0, 0, 1},         // misaligned q -> generic
        // f32 register-tiled path
        {2, 6, 2, 1000, 1000, 32, 32, M_B11K_DEADB, 0, 0, 0},
        {1, 4, 1, 1000, 17, 64, 64, M_FULL_DEADROW, 1, 0, 0},  // causal sq > skv: empty rows; dead rows
        {2, 3, 1, 17, 1000, 128, 128, M_B11K, 1, 0, 0},
        {3, 4, 4, 129, 1000, 32, 32, M_11SK, 1, 0, 0},
        {1, 2, 1, 1000, 1000, 64, 64, M_B11K, 0, 1.0f, 0},    // peaky softmax
        // packed QKV layout
        {3, 12, 12, 128, 128, 32, 32, M_B11K_DEADB, 0, 0, 0, 1, 0, 8},   // MiniLM layer
        {2, 4, 2, 65, 65, 64, 64, M_NONE, 1, 0, 0, 1, 0, 8},
        {2, 2, 2, 70, 70, 64, 64, M_B11K, 0, 0, 0, 1, 8, 8},             // padded rows, still aligned
        {1, 2, 2, 200, 200, 128, 128, M_FULL, 0, 0, 0, 1, 0, 8},
        {2, 4, 1, 300, 300, 128, 128, M_B11K, 1, 0, 0, 1, 0, 8},
        {2, 2, 2, 129, 129, 64, 64, M_FULL_DEADROW, 0, 0, 0, 1, 3, 8},   // odd input row stride -> generic
        {1, 3, 3, 256, 256, 32, 32, M_B11K, 1, 0, 0, 1, 0, 1},           // odd out stride
    };
    if (!time_only) {
        std::printf("== correctness (%s) ==\n", small ? "small" : "full");
        run_all<float>(small_cases);
        run_all<__half>(small_cases);
        run_all<__nv_bfloat16>(small_cases);
        if (!small) {
            run_all<float>(big_cases);
            run_all<__half>(big_cases);
            run_all<__nv_bfloat16>(big_cases);
        }
    }
    if (!small && !check_only) {
        g_times = std::fopen("attn_times.txt", "w");
        std::printf("== timing ==\n");
        if (!f32_only) {
            time_case<__nv_bfloat16>("bf16_8x16x2048x64", 8, 16, 2048, 64, 0, 20);
            time_case<__nv_bfloat16>("bf16_8x16x2048x64_causal", 8, 16, 2048, 64, 1, 20);
            time_case<__half>("f16_8x16x2048x64", 8, 16, 2048, 64, 0, 20);
            time_case<__half>("f16_8x16x2048x64_causal", 8, 16, 2048, 64, 1, 20);
            time_case<__nv_bfloat16>("bf16_8x16x2048x128", 8, 16, 2048, 128, 0, 20);
            time_case<__nv_bfloat16>("bf16_8x16x2048x128_causal", 8, 16, 2048, 128, 1, 20);
            time_case<__half>("f16_256x12x128x32_mask", 256, 12, 128, 32, 0, 50, M_B11K);
            time_case<__nv_bfloat16>("bf16_256x12x128x32_mask", 256, 12, 128, 32, 0, 50, M_B11K);
            time_case<__half>("f16_256x12x128x32", 256, 12, 128, 32, 0, 50);
            time_case<__nv_bfloat16>("bf16_256x12x128x32", 256, 12, 128, 32, 0, 50);
            time_case<__half>("f16_256x12x128x32_mask_packed", 256, 12, 128, 32, 0, 50, M_B11K, 1);
            time_case<__nv_bfloat16>("bf16_256x12x128x32_mask_packed", 256, 12, 128, 32, 0, 50, M_B11K, 1);
            time_case<__half>("f16_256x12x128x32_packed", 256, 12, 128, 32, 0, 50, M_NONE, 1);
            time_case<__nv_bfloat16>("bf16_256x12x128x32_packed", 256, 12, 128, 32, 0, 50, M_NONE, 1);
            time_case<__half>("f16_8x16x2048x32", 8, 16, 2048, 32, 0, 20);
        }
        time_case<float>("f32_256x12x128x32_mask", 256, 12, 128, 32, 0, 50, M_B11K);
        time_case<float>("f32_256x12x128x32", 256, 12, 128, 32, 0, 50);
        time_case<float>("f32_256x12x128x32_mask_packed", 256, 12, 128, 32, 0, 50, M_B11K, 1);
        time_case<float>("f32_2x8x1024x64", 2, 8, 1024, 64, 0, 20);
        time_case<float>("f32_8x16x2048x64", 8, 16, 2048, 64, 0, 20);
        time_case<float>("f32_8x16x2048x64_causal", 8, 16, 2048, 64, 1, 20);
        time_case<float>("f32_8x16x2048x32", 8, 16, 2048, 32, 0, 20);
        time_case<float>("f32_8x16x2048x128", 8, 16, 2048, 128, 0, 10);
        std::fclose(g_times);
    }
    std::printf("RESULT: %s (%d failures)\n", g_fail ? "FAIL" : "PASS", g_fail);
    return g_fail ? 1 : 0;
}
