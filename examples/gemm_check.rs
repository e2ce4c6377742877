//! GPU check and benchmark of the cuBLASLt matmul (`src/backend/cuda/matmul.rs`), standalone: it makes its own
//! CUDA context and stream with cudarc, so it runs before the CUDA backend is wired in.
//!
//! 1. Correctness: hundreds of random cases (m, n, k from {1, 3, 17, 64, 127, 384, 1000}; batch 1 and 3, packed,
//!    padded and broadcast (stride 0) batches; both transposes; f32, f32+TF32, f16, bf16; every epilogue; with and
//!    without an addend matrix (`GemmSpec::accumulate`, beta = 1); misaligned pointers) against a float64 CPU reference, outputs poisoned with NaN (and a NaN guard region
//!    after C that must stay untouched).
//! 2. Which GELU the cuBLASLt GELU epilogue computes: max and RMS error against erf- and tanh-GELU in f64.
//! 3. Benchmarks (median of many event-timed repetitions, random inputs), written as JSON for
//!    `tools/torch_matmul_bench.py`, which times PyTorch on the same machine and prints the ratios.
//!
//! Usage: `gemm_check [--json PATH] [--skip-bench]`. Exit code 1 if any check failed.

#[cfg(all(feature = "cuda", target_os = "linux"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    check::main()
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
fn main() {
    println!("SKIPPED: built without the `cuda` feature (Linux only)");
}

#[cfg(all(feature = "cuda", target_os = "linux"))]
mod check {
    use std::sync::Arc;

    use cudarc::driver::sys::CUevent_flags;
    use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
    use half::{bf16, f16};
    use mlx_native::backend::cuda::matmul::{Epilogue, Gemm, GemmSpec};
    use mlx_native::{DType, Error, GeluKind};
    use rayon::prelude::*;

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    const DIMS: [usize; 7] = [1, 3, 17, 64, 127, 384, 1000];

    /// splitmix64: fast, seedable, good enough for test data.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[(self.next_u64() % v.len() as u64) as usize]
        }
    }

    fn round_to(dtype: DType, x: f64) -> f64 {
        match dtype {
            DType::F16 => f16::from_f64(x).to_f64(),
            DType::BF16 => bf16::from_f64(x).to_f64(),
            _ => x as f32 as f64,
        }
    }

    fn to_bytes(dtype: DType, v: &[f64]) -> Vec<u8> {
        match dtype {
            DType::F16 => v.iter().flat_map(|&x| f16::from_f64(x).to_le_bytes()).collect(),
            DType::BF16 => v.iter().flat_map(|&x| bf16::from_f64(x).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        }
    }

    fn from_bytes(dtype: DType, b: &[u8]) -> Vec<f64> {
        match dtype {
            DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            _ => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        }
    }

    fn random_vec(rng: &mut Rng, dtype: DType, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| round_to(dtype, rng.uniform() * scale)).collect()
    }

    fn gelu_erf(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    fn gelu_tanh(x: f64) -> f64 {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    }

    /// erf to about 1e-16 (series for small |x|, continued fraction for large), enough for a float64 reference.
    fn erf(x: f64) -> f64 {
        let a = x.abs();
        let r = if a < 2.5 {
            // Maclaurin series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
            let (mut term, mut sum, x2) = (a, a, a * a);
            for n in 1..200 {
                term *= -x2 / n as f64;
                let t = term / (2 * n + 1) as f64;
                sum += t;
                if t.abs() < 1e-18 * sum.abs() {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz-free backward evaluation)
            let mut f = a;
            for n in (1..120).rev() {
                f = a + (n as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        r.copysign(x)
    }

    struct Gpu {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        gemm: Gemm,
    }

    impl Gpu {
        fn upload(&self, bytes: &[u8]) -> Res<CudaSlice<u8>> {
            Ok(self.stream.clone_htod(bytes)?)
        }
        fn ptr(&self, s: &CudaSlice<u8>) -> u64 {
            s.device_ptr(&self.stream).0
        }
        fn download(&self, s: &CudaSlice<u8>) -> Res<Vec<u8>> {
            Ok(self.stream.clone_dtoh(s)?)
        }
    }

    /// How the batches are laid out in memory.
    #[derive(Clone, Copy, Debug)]
    enum Batching {
        Single,
        Packed,
        Padded,
        BroadcastA,
        BroadcastB,
    }

    #[derive(Clone, Copy, Debug)]
    struct Case {
        spec: GemmSpec,
        /// Elements by which every pointer is moved off its allocation's (256-byte) alignment.
        offset: usize,
    }

    struct Outcome {
        max_norm_err: f64,
        rel_norm: f64,
        ok: bool,
        msg: String,
    }

    /// Accumulation tolerance (relative to sum |a·b| + |bias|), unit roundoff of the output, relative-norm limit.
    fn tolerances(spec: &GemmSpec) -> (f64, f64, f64) {
        let gelu = matches!(spec.epilogue, Epilogue::BiasGelu(_));
        let (acc, u, rel): (f64, f64, f64) = match spec.dtype {
            DType::F32 if spec.tf32 => (2e-3, 2f64.powi(-24), 2e-3),
            DType::F32 => (1e-5, 2f64.powi(-24), 1e-5),
            DType::F16 => (2e-5, 2f64.powi(-11), 2e-3),
            _ => (2e-5, 2f64.powi(-8), 1.5e-2),
        };
        (acc, u, if gelu { rel.max(1e-3) } else { rel })
    }

    fn elems_used(batch: usize, stride: usize, one: usize) -> usize {
        if batch <= 1 || stride == 0 {
            one
        } else {
            (batch - 1) * stride + one
        }
    }

    /// float64 reference: (pre-activation, output, sum |a·b| + |bias|) per element of C.
    fn reference(spec: &GemmSpec, a: &[f64], b: &[f64], bias: &[f64]) -> Vec<(f64, f64, f64)> {
        let (m, n, k) = (spec.m, spec.n, spec.k);
        let rows: Vec<(usize, usize)> = (0..spec.batch).flat_map(|bt| (0..m).map(move |i| (bt, i))).collect();
        rows.par_iter()
            .flat_map_iter(|&(bt, i)| {
                let (oa, ob) = (bt * spec.stride_a, bt * spec.stride_b);
                (0..n).map(move |j| {
                    let (mut s, mut sa) = (0.0f64, 0.0f64);
                    for p in 0..k {
                        let x = a[oa + if spec.transpose_a { p * m + i } else { i * k + p }];
                        let y = b[ob + if spec.transpose_b { j * k + p } else { p * n + j }];
                        s += x * y;
                        sa += (x * y).abs();
                    }
                    let bj = if bias.is_empty() { 0.0 } else { bias[j] };
                    let pre = s + bj;
                    let out = match spec.epilogue {
                        Epilogue::None | Epilogue::Bias => pre,
                        Epilogue::BiasGelu(GeluKind::Tanh) => gelu_tanh(pre),
                        Epilogue::BiasGelu(GeluKind::Erf) => gelu_erf(pre),
                    };
                    (pre, out, sa + bj.abs())
                })
            })
            .collect()
    }

    const GUARD: usize = 16;

    /// Runs one case on the GPU and compares it with the reference.
    fn check_case(gpu: &Gpu, rng: &mut Rng, case: &Case) -> Res<Outcome> {
        let s = &case.spec;
        let dt = s.dtype;
        let es = dt.size();
        let a_len = elems_used(s.batch, s.stride_a, s.m * s.k);
        let b_len = elems_used(s.batch, s.stride_b, s.k * s.n);
        let c_len = s.batch * s.m * s.n;
        let a = random_vec(rng, dt, a_len, 1.0);
        let b = random_vec(rng, dt, b_len, 1.0);
        let with_bias = !matches!(s.epilogue, Epilogue::None);
        // Bias drawn larger so GELU sees its whole curved range.
        let bias = if with_bias { random_vec(rng, dt, s.n, 2.0) } else { vec![] };
        let off = case.offset;
        let pad = |v: &[f64]| -> Vec<u8> {
            let mut full = vec![0.5; off];
            full.extend_from_slice(v);
            to_bytes(dt, &full)
        };
        let da = gpu.upload(&pad(&a))?;
        let db = gpu.upload(&pad(&b))?;
        let dbias = gpu.upload(&pad(if with_bias { &bias } else { &[0.0] }))?;
        let dc = gpu.upload(&to_bytes(dt, &vec![f64::NAN; off + c_len + GUARD]))?;
        let o = (off * es) as u64;
        let bias_ptr = if with_bias { Some(gpu.ptr(&dbias) + o) } else { None };
        // The addend is drawn larger than a product term so that a lost or doubled addend is far off.
        let addend = if s.accumulate { random_vec(rng, dt, c_len, 2.0) } else { vec![] };
        if s.accumulate {
            let dr = gpu.upload(&pad(&addend))?;
            gpu.gemm.run_accumulate(
                s,
                gpu.ptr(&da) + o,
                gpu.ptr(&db) + o,
                bias_ptr,
                gpu.ptr(&dr) + o,
                gpu.ptr(&dc) + o,
            )?;
        } else {
            gpu.gemm.run(s, gpu.ptr(&da) + o, gpu.ptr(&db) + o, bias_ptr, gpu.ptr(&dc) + o)?;
        }
        let got = from_bytes(dt, &gpu.download(&dc)?);
        if got[..off].iter().chain(&got[off + c_len..]).any(|v| !v.is_nan()) {
            return Ok(Outcome {
                max_norm_err: f64::INFINITY,
                rel_norm: 0.0,
                ok: false,
                msg: "wrote outside C".into(),
            });
        }
        let got = &got[off..off + c_len];
        let mut refs = reference(s, &a, &b, &bias);
        // D = A·B + addend + bias (no GELU with an addend: see make_cases).
        for (r, &add) in refs.iter_mut().zip(&addend) {
            *r = (r.0 + add, r.1 + add, r.2 + add.abs());
        }
        let (acc, u, rel) = tolerances(s);
        let gelu = matches!(s.epilogue, Epilogue::BiasGelu(_));
        // cuBLASLt's f16/bf16 epilogues round the product (and the biased value) to the output type before the next
        // step: up to two extra roundings of values bounded by sum |a·b| + |bias|, times GELU's slope (<= 1.13).
        let half_epilogue =
            matches!(dt, DType::F16 | DType::BF16) && (!matches!(s.epilogue, Epilogue::None) || s.accumulate);
        // Half of f16's smallest subnormal: outputs that small round to a fixed grid.
        let floor = if dt == DType::F16 { 2f64.powi(-25) } else { 1e-30 };
        let (mut worst, mut num, mut den, mut bad) = (0.0f64, 0.0f64, 0.0f64, None);
        for (idx, (&g, &(pre, r, sa))) in got.iter().zip(&refs).enumerate() {
            let allowed = acc * sa * if gelu { 1.2 } else { 1.0 }
                + 1.01 * u * r.abs()
                + if half_epilogue { 2.5 * u * sa } else { 0.0 }
                + if gelu { 4e-4 * pre.abs() } else { 0.0 }
                + floor;
            let err = (g - r).abs();
            if err.is_nan() || err > allowed {
                bad.get_or_insert((idx, g, r, allowed));
            }
            worst = worst.max(if err.is_nan() { f64::INFINITY } else { err / (sa + 1e-30) });
            num += (g - r) * (g - r);
            den += r * r;
        }
        let rel_norm = (num / den.max(1e-300)).sqrt();
        let mut ok = bad.is_none() && rel_norm <= rel;
        let mut msg = String::new();
        if let Some((i, g, r, al)) = bad {
            msg = format!("element {i}: got {g:e}, want {r:e} (allowed error {al:e})");
        } else if !ok {
            msg = format!("relative norm error {rel_norm:e} > {rel:e}");
        }
        if rel_norm.is_nan() {
            ok = false;
        }
        Ok(Outcome { max_norm_err: worst, rel_norm, ok, msg })
    }

    fn make_cases(rng: &mut Rng) -> Vec<Case> {
        let mut cases = vec![];
        let dtypes = [(DType::F32, false), (DType::F32, true), (DType::F16, false), (DType::BF16, false)];
        let epis = [Epilogue::None, Epilogue::Bias, Epilogue::BiasGelu(GeluKind::Tanh)];
        let batchings =
            [Batching::Single, Batching::Packed, Batching::Padded, Batching::BroadcastA, Batching::BroadcastB];
        let mut counter = 0usize;
        for &(dtype, tf32) in &dtypes {
            for &epilogue in &epis {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    for _ in 0..5 {
                        counter += 1;
                        let batching = batchings[counter % batchings.len()];
                        let batch = if matches!(batching, Batching::Single) { 1 } else { 3 };
                        // Keep the CPU reference affordable: redraw shapes over ~1.2e8 multiply-adds.
                        let (m, n, k) = loop {
                            let (m, n, k) = (rng.pick(&DIMS), rng.pick(&DIMS), rng.pick(&DIMS));
                            if m * n * k * batch <= 120_000_000 {
                                break (m, n, k);
                            }
                        };
                        let (pa, pb) = if matches!(batching, Batching::Padded) { (7, 5) } else { (0, 0) };
                        let stride_a = if matches!(batching, Batching::BroadcastA) { 0 } else { m * k + pa };
                        let stride_b = if matches!(batching, Batching::BroadcastB) { 0 } else { k * n + pb };
                        let spec = GemmSpec {
                            dtype,
                            batch,
                            m,
                            n,
                            k,
                            transpose_a: ta,
                            transpose_b: tb,
                            stride_a,
                            stride_b,
                            epilogue,
                            tf32,
                            // An addend (residual) on every third case without GELU (our ops never combine them).
                            accumulate: counter % 3 == 1 && !matches!(epilogue, Epilogue::BiasGelu(_)),
                        };
                        cases.push(Case { spec, offset: if counter % 7 == 3 { 1 } else { 0 } });
                    }
                }
            }
        }
        // The awkward corners, always present: all-ones, a 1000-cube, large k with tiny m and n.
        for &(dtype, tf32) in &dtypes {
            for (m, n, k) in [(1, 1, 1), (1000, 1000, 100), (3, 1, 1000), (1000, 17, 1)] {
                let mut spec = GemmSpec::new(dtype, m, n, k);
                spec.tf32 = tf32;
                spec.epilogue = Epilogue::Bias;
                cases.push(Case { spec, offset: 0 });
                // The residual linear layer's shape class: bias epilogue plus an addend.
                cases.push(Case { spec: GemmSpec { accumulate: true, ..spec }, offset: 0 });
            }
        }
        cases
    }

    /// The GELU form measurement: f32 exact, pre-activations spread over about [-8, 8].
    fn measure_gelu_form(gpu: &Gpu, rng: &mut Rng) -> Res<(f64, f64, f64, f64)> {
        let mut spec = GemmSpec::new(DType::F32, 512, 512, 64);
        spec.epilogue = Epilogue::BiasGelu(GeluKind::Tanh);
        let a = random_vec(rng, DType::F32, 512 * 64, 1.0);
        let b = random_vec(rng, DType::F32, 64 * 512, 1.0);
        let bias = random_vec(rng, DType::F32, 512, 2.0);
        let (da, db, dbias) = (gpu.upload(&to_bytes(DType::F32, &a))?, gpu.upload(&to_bytes(DType::F32, &b))?, {
            gpu.upload(&to_bytes(DType::F32, &bias))?
        });
        let dc = gpu.upload(&to_bytes(DType::F32, &vec![f64::NAN; 512 * 512]))?;
        gpu.gemm.run(&spec, gpu.ptr(&da), gpu.ptr(&db), Some(gpu.ptr(&dbias)), gpu.ptr(&dc))?;
        let got = from_bytes(DType::F32, &gpu.download(&dc)?);
        let refs = reference(&GemmSpec { epilogue: Epilogue::Bias, ..spec }, &a, &b, &bias);
        let (mut me, mut mt, mut se, mut st) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (&g, &(pre, _, _)) in got.iter().zip(&refs) {
            let (de, dt) = ((g - gelu_erf(pre)).abs(), (g - gelu_tanh(pre)).abs());
            me = me.max(if de.is_nan() { f64::INFINITY } else { de });
            mt = mt.max(if dt.is_nan() { f64::INFINITY } else { dt });
            se += de * de;
            st += dt * dt;
        }
        let n = got.len() as f64;
        Ok((me, (se / n).sqrt(), mt, (st / n).sqrt()))
    }

    // ---------------------------------------------------------------- benchmarks

    /// In-place erf-GELU over bf16, 8 elements (16 bytes) per thread per step, for the "Bias + separate erf-GELU
    /// kernel" variant of the fused linear op. Compiled by NVRTC with no headers.
    const GELU_ERF_BF16: &str = r#"
struct alignas(16) U4 { unsigned int x, y, z, w; };
__device__ __forceinline__ float g(float v) { return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); }
__device__ __forceinline__ unsigned int f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}
__device__ __forceinline__ unsigned int pair(unsigned int w) {
    float lo = g(__uint_as_float(w << 16)), hi = g(__uint_as_float(w & 0xffff0000u));
    return (f2bf(hi) << 16) | f2bf(lo);
}
extern "C" __global__ void gelu_erf_bf16(unsigned short* x, unsigned long long n) {
    unsigned long long n8 = n / 8, stride = (unsigned long long)gridDim.x * blockDim.x;
    U4* v = reinterpret_cast<U4*>(x);
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
        U4 t = v[i];
        t.x = pair(t.x); t.y = pair(t.y); t.z = pair(t.z); t.w = pair(t.w);
        v[i] = t;
    }
    for (unsigned long long i = n8 * 8 + (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = (unsigned short)(pair((unsigned int)x[i]) & 0xffffu);
}
"#;

    struct BenchRow {
        key: &'static str,
        label: String,
        ms: f64,
        tflops: f64,
    }

    /// Median milliseconds per call of `f`, from `samples` event-timed groups of `reps` calls after warm-up.
    fn time_ms(gpu: &Gpu, reps: usize, samples: usize, f: &mut dyn FnMut() -> Res<()>) -> Res<f64> {
        for _ in 0..3 {
            f()?;
        }
        gpu.stream.synchronize()?;
        let mut v = vec![];
        for _ in 0..samples {
            let e0 = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            let e1 = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            e0.record(&gpu.stream)?;
            for _ in 0..reps {
                f()?;
            }
            e1.record(&gpu.stream)?;
            v.push(e0.elapsed_ms(&e1)? as f64 / reps as f64);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Ok(v[v.len() / 2])
    }

    fn fast_random_bytes(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
        let chunk = 1 << 20;
        let parts: Vec<Vec<u8>> = (0..n.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut rng = Rng(seed ^ (c as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let len = chunk.min(n - c * chunk);
                to_bytes(dtype, &(0..len).map(|_| rng.uniform()).collect::<Vec<_>>())
            })
            .collect();
        parts.concat()
    }

    fn bench(gpu: &Gpu, heuristic: &Gemm) -> Res<(Vec<BenchRow>, Vec<String>)> {
        let mut rows = vec![];
        let mut notes = vec![];
        let keys_h: [&'static str; 8] = [
            "matmul_bf16_8192_heuristic",
            "matmul_f32_4096_heuristic",
            "matmul_tf32_4096_heuristic",
            "matmul_bf16_4096x384x1536_heuristic",
            "matmul_bf16_4096x384x1536_tb_heuristic",
            "linear_bias_bf16_heuristic",
            "linear_bias_gelu_tanh_bf16_heuristic",
            "linear_bias_gelu_erf_bf16_heuristic",
        ];
        let mut ki = 0usize;
        // Large squares.
        for (key, dtype, size, tf32, reps, samples) in [
            ("matmul_bf16_8192", DType::BF16, 8192usize, false, 10, 15),
            ("matmul_f32_4096", DType::F32, 4096, false, 5, 11),
            ("matmul_tf32_4096", DType::F32, 4096, true, 10, 15),
        ] {
            let mut spec = GemmSpec::new(dtype, size, size, size);
            spec.tf32 = tf32;
            let a = gpu.upload(&fast_random_bytes(dtype, size * size, 1))?;
            let b = gpu.upload(&fast_random_bytes(dtype, size * size, 2))?;
            let c = gpu.upload(&vec![0u8; size * size * dtype.size()])?;
            let (pa, pb, pc) = (gpu.ptr(&a), gpu.ptr(&b), gpu.ptr(&c));
            let flops = 2.0 * (size as f64).powi(3);
            for (g, k, tag) in [(&gpu.gemm, key, "autotuned"), (heuristic, keys_h[ki], "heuristic")] {
                let ms = time_ms(gpu, reps, samples, &mut || Ok(g.run(&spec, pa, pb, None, pc)?))?;
                let label = format!("MatMul {dtype:?}{} [{size},{size},{size}] {tag}", if tf32 { " tf32" } else { "" });
                println!("  {label}: {ms:.4} ms, {:.1} TFLOP/s", flops / ms / 1e9);
                rows.push(BenchRow { key: k, label, ms, tflops: flops / ms / 1e9 });
            }
            ki += 1;
        }

        // The fused linear shape: x [4096, 384], W [384, 1536] or [1536, 384], bias [1536].
        let (m, k, n) = (4096usize, 384usize, 1536usize);
        let dt = DType::BF16;
        let mut rng = Rng(99);
        let x = random_vec(&mut rng, dt, m * k, 1.0);
        let w = random_vec(&mut rng, dt, n * k, 1.0); // read as [n, k] (tb) or [k, n]
        let bias = random_vec(&mut rng, dt, n, 1.0);
        let (dx, dw, dbias) =
            (gpu.upload(&to_bytes(dt, &x))?, gpu.upload(&to_bytes(dt, &w))?, { gpu.upload(&to_bytes(dt, &bias))? });
        let nan_c = to_bytes(dt, &vec![f64::NAN; m * n]);
        let mut dc = gpu.upload(&nan_c)?;
        let (px, pw, pbias, pc) = (gpu.ptr(&dx), gpu.ptr(&dw), gpu.ptr(&dbias), gpu.ptr(&dc));
        let opts = cudarc::nvrtc::CompileOptions { arch: Some("sm_90"), ..Default::default() };
        let gelu_fn = match cudarc::nvrtc::compile_ptx_with_opts(GELU_ERF_BF16, opts) {
            Ok(ptx) => Some(gpu.ctx.load_module(ptx)?.load_function("gelu_erf_bf16")?),
            Err(e) => {
                notes.push(format!("erf-GELU kernel did not compile, variant skipped: {e:?} FAIL"));
                None
            }
        };
        let total = (m * n) as u64;
        let blocks = (total.div_ceil(8).div_ceil(256) as u32).clamp(1, 132 * 16);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let flops = 2.0 * (m * k * n) as f64;
        let variants: [(&'static str, &str, bool, Epilogue, bool); 5] = [
            ("matmul_bf16_4096x384x1536", "MatMul bf16 [4096,384,1536]", false, Epilogue::None, false),
            ("matmul_bf16_4096x384x1536_tb", "MatMul bf16 [4096,384,1536] W^T", true, Epilogue::None, false),
            ("linear_bias_bf16", "Linear+bias bf16 W^T (BIAS epilogue)", true, Epilogue::Bias, false),
            (
                "linear_bias_gelu_tanh_bf16",
                "Linear+bias+GELU(tanh) bf16 W^T (GELU_BIAS epilogue)",
                true,
                Epilogue::BiasGelu(GeluKind::Tanh),
                false,
            ),
            (
                "linear_bias_gelu_erf_bf16",
                "Linear+bias+GELU(erf) bf16 W^T (BIAS + erf kernel)",
                true,
                Epilogue::Bias,
                true,
            ),
        ];
        let check_rows = [0usize, 1, 777, 2048, 4095];
        for (key, label, tb, epilogue, erf_kernel) in variants {
            if erf_kernel && gelu_fn.is_none() {
                continue;
            }
            let spec = GemmSpec { transpose_b: tb, stride_b: k * n, epilogue, ..GemmSpec::new(dt, m, n, k) };
            let bias_ptr = if matches!(epilogue, Epilogue::None) { None } else { Some(pbias) };
            for (g, row_key, tag) in [(&gpu.gemm, key, "autotuned"), (heuristic, keys_h[ki], "heuristic")] {
                let mut call = || -> Res<()> {
                    g.run(&spec, px, pw, bias_ptr, pc)?;
                    if let (true, Some(gelu_fn)) = (erf_kernel, gelu_fn.as_ref()) {
                        let mut launch = gpu.stream.launch_builder(gelu_fn);
                        launch.arg(&pc).arg(&total);
                        // SAFETY: `pc` addresses m·n bf16 elements, the kernel touches exactly `total` of them.
                        unsafe { launch.launch(cfg) }?;
                    }
                    Ok(())
                };
                // Correctness of the benchmarked output itself (a few rows against float64).
                gpu.stream.memcpy_htod(&nan_c, &mut dc)?;
                call()?;
                let got = from_bytes(dt, &gpu.download(&dc)?);
                let mut worst = 0.0f64;
                for &i in &check_rows {
                    for j in 0..n {
                        let mut s = 0.0;
                        for p in 0..k {
                            s += x[i * k + p] * if tb { w[j * k + p] } else { w[p * n + j] };
                        }
                        let pre = s + if matches!(epilogue, Epilogue::None) { 0.0 } else { bias[j] };
                        let want = match (epilogue, erf_kernel) {
                            (Epilogue::BiasGelu(_), _) => gelu_tanh(pre),
                            (_, true) => gelu_erf(pre),
                            _ => pre,
                        };
                        let e = (got[i * n + j] - want).abs() / (1.0 + want.abs());
                        worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
                    }
                }
                notes
                    .push(format!("{label} {tag}: max |err|/(1+|ref|) on 5 rows = {worst:.2e} {}", pass(worst < 2e-2)));
                let ms = time_ms(gpu, 100, 21, &mut call)?;
                println!("  {label} {tag}: {ms:.4} ms, {:.1} TFLOP/s", flops / ms / 1e9);
                rows.push(BenchRow { key: row_key, label: format!("{label} {tag}"), ms, tflops: flops / ms / 1e9 });
            }
            ki += 1;
        }
        Ok((rows, notes))
    }

    fn pass(ok: bool) -> &'static str {
        if ok {
            "PASS"
        } else {
            "FAIL"
        }
    }

    pub fn main() -> Res<()> {
        let args: Vec<String> = std::env::args().collect();
        let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
        let skip_bench = args.iter().any(|a| a == "--skip-bench");
        // SAFETY: only tries to dlopen libcuda.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            println!("SKIPPED: no libcuda on this machine");
            return Ok(());
        }
        let ctx = match CudaContext::new(0) {
            Ok(c) => c,
            Err(e) => {
                println!("SKIPPED: no CUDA device ({e:?})");
                return Ok(());
            }
        };
        let stream = ctx.new_stream()?;
        let t0 = std::time::Instant::now();
        let gemm = Gemm::new(stream.clone())?;
        println!("Gemm::new: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let gpu = Gpu { ctx, stream, gemm };
        let mut failures = 0usize;

        // 1. correctness
        let mut rng = Rng(0x5eed_1234);
        let cases = make_cases(&mut rng);
        let mut summary: std::collections::BTreeMap<String, (usize, usize, f64, f64)> = Default::default();
        let t0 = std::time::Instant::now();
        for case in &cases {
            let s = &case.spec;
            let group = format!(
                "{:?}{} {:?}{}",
                s.dtype,
                if s.tf32 { "+tf32" } else { "" },
                match s.epilogue {
                    Epilogue::None => "None".to_string(),
                    e => format!("{e:?}"),
                },
                if s.accumulate { " +addend" } else { "" }
            );
            let o = match check_case(&gpu, &mut rng, case) {
                Ok(o) => o,
                Err(e) => {
                    Outcome { max_norm_err: f64::INFINITY, rel_norm: f64::NAN, ok: false, msg: format!("error: {e}") }
                }
            };
            let entry = summary.entry(group).or_insert((0, 0, 0.0, 0.0));
            entry.0 += 1;
            entry.2 = entry.2.max(o.max_norm_err);
            entry.3 = entry.3.max(o.rel_norm);
            if !o.ok {
                entry.1 += 1;
                failures += 1;
                println!("FAIL {:?} offset {}: {}", case.spec, case.offset, o.msg);
            }
        }
        println!(
            "\ncorrectness: {} cases, {} failed ({:.1} s, {} cached plans)",
            cases.len(),
            failures,
            t0.elapsed().as_secs_f64(),
            gpu.gemm.cached_plans()
        );
        println!("{:<34} {:>6} {:>6} {:>14} {:>12}", "group", "cases", "failed", "max err/sum|ab|", "max relnorm");
        for (g, (n, f, e, r)) in &summary {
            println!("{g:<34} {n:>6} {f:>6} {e:>14.2e} {r:>12.2e}");
        }

        // The erf epilogue must be refused, and C left untouched.
        {
            let spec = GemmSpec { epilogue: Epilogue::BiasGelu(GeluKind::Erf), ..GemmSpec::new(DType::BF16, 8, 8, 8) };
            let buf = gpu.upload(&to_bytes(DType::BF16, &vec![f64::NAN; 64]))?;
            let p = gpu.ptr(&buf);
            let r = gpu.gemm.run(&spec, p, p, Some(p), p);
            let ok = matches!(r, Err(Error::Unsupported { .. }));
            println!("BiasGelu(Erf) refused with Unsupported: {} ({r:?})", pass(ok));
            failures += usize::from(!ok);
            // Missing bias and a null pointer are argument errors.
            let r = gpu.gemm.run(&GemmSpec { epilogue: Epilogue::Bias, ..spec }, p, p, None, p);
            let r2 = gpu.gemm.run(&GemmSpec::new(DType::BF16, 8, 8, 8), 0, p, None, p);
            let ok =
                matches!(r, Err(Error::InvalidArgument { .. })) && matches!(r2, Err(Error::InvalidArgument { .. }));
            println!("missing bias / null pointer rejected: {}", pass(ok));
            failures += usize::from(!ok);
            // An addend must be passed exactly with `accumulate`, and must not overlap C (autotuning reruns).
            let acc = GemmSpec { accumulate: true, ..GemmSpec::new(DType::BF16, 8, 8, 8) };
            let other = gpu.upload(&to_bytes(DType::BF16, &vec![0.0; 64]))?;
            let q = gpu.ptr(&other);
            let r = gpu.gemm.run(&acc, q, q, None, p);
            let r2 = gpu.gemm.run_accumulate(&acc, q, q, None, p + 16, p);
            let r3 = gpu.gemm.run_accumulate(&GemmSpec::new(DType::BF16, 8, 8, 8), q, q, None, q, p);
            let ok = [r, r2, r3].iter().all(|r| matches!(r, Err(Error::InvalidArgument { .. })));
            println!("missing / overlapping / unexpected addend rejected: {}", pass(ok));
            failures += usize::from(!ok);
        }

        // 2. GELU form
        let (me, re, mt, rt) = measure_gelu_form(&gpu, &mut rng)?;
        let form = if mt < me / 4.0 {
            "tanh"
        } else if me < mt / 4.0 {
            "erf"
        } else {
            "unclear"
        };
        println!(
            "\nGELU_BIAS epilogue (f32, 512x512x64, |x| up to ~8): vs erf-GELU max {me:.3e} rms {re:.3e}; \
         vs tanh-GELU max {mt:.3e} rms {rt:.3e} => computes the {form} form"
        );
        if form != "tanh" {
            println!("FAIL: the code maps GeluKind::Tanh to this epilogue but it is not the tanh form");
            failures += 1;
        }

        // 3. benchmarks
        if !skip_bench {
            let heuristic = Gemm::new(gpu.stream.clone())?;
            heuristic.set_autotune(false);
            let bench_result = bench(&gpu, &heuristic);
            println!("\nplans used by the benchmarks:");
            for g in [&gpu.gemm, &heuristic] {
                for line in g.plan_summaries() {
                    if line.contains("m: 4096") || line.contains("m: 8192") {
                        println!("  {line}");
                    }
                }
            }
            let (rows, notes) = match bench_result {
                Ok(r) => r,
                Err(e) => {
                    println!("FAIL: benchmark error: {e}");
                    (vec![], vec!["benchmark aborted FAIL".to_string()])
                }
            };
            for n in &notes {
                println!("{n}");
                failures += usize::from(n.ends_with("FAIL"));
            }
            println!("\n{:<58} {:>10} {:>9}", "benchmark (median)", "ms", "TFLOP/s");
            for r in &rows {
                println!("{:<58} {:>10.4} {:>9.1}", r.label, r.ms, r.tflops);
            }
            if let Some(path) = json_path {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| serde_json::json!({"key": r.key, "label": r.label, "ms": r.ms, "tflops": r.tflops}))
                    .collect();
                std::fs::write(&path, serde_json::to_string_pretty(&v)?)?;
                println!("wrote {path}");
            }
        }
        println!(
            "\ngemm_check: {}",
            if failures == 0 { "ALL PASS".to_string() } else { format!("{failures} FAILURES") }
        );
        if failures > 0 {
            std::process::exit(1);
        }
        Ok(())
    }
}
