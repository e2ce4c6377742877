//! The GPU side of the CLI: opening the CUDA device, its `info` lines, and its part of `bench` (the op suite plus
//! device start, kernel compile cold/warm, cached pool allocation and pinned transfer rows).

use indicatif::ProgressBar;
use mlx_native::bench::{BenchCase, BenchRow, Budget};
use mlx_native::Result;

#[cfg(all(feature = "cuda", target_os = "linux"))]
mod imp {
    use std::time::Instant;

    use indicatif::ProgressBar;
    use mlx_native::backend::cuda::CudaBackend;
    use mlx_native::backend::Backend;
    use mlx_native::bench::{BenchCase, BenchRow, Budget};
    use mlx_native::util::random;
    use mlx_native::{DType, Result, TensorDesc};

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// The GPU used by the CLI, with how long it took to open.
    pub struct Gpu {
        pub backend: CudaBackend,
        pub start_seconds: f64,
    }

    pub fn backend() -> Result<Gpu> {
        let t = Instant::now();
        let backend = CudaBackend::new(0)?;
        Ok(Gpu { backend, start_seconds: t.elapsed().as_secs_f64() })
    }

    fn row(op: &str, shape: Vec<usize>, dtype: &str, us: f64, gbps: Option<f64>) -> BenchRow {
        BenchRow { op: op.into(), shape, dtype: dtype.into(), device: "cuda".into(), median_us: us, gflops: None, gbps }
    }

    /// Device start, kernel compile (cold: NVRTC; warm: disk cache), a cached pool allocation, pinned transfers.
    fn device_rows(gpu: &Gpu) -> Result<Vec<BenchRow>> {
        let g = &gpu.backend;
        let mut rows = vec![row("DeviceStart", vec![1], "-", gpu.start_seconds * 1e6, None)];
        let cold = g.preload_kernels(false)?;
        let warm = g.preload_kernels(true)?;
        let first = |v: &[(&str, f64)]| v.first().map_or(0.0, |x| x.1);
        let total = |v: &[(&str, f64)]| v.iter().map(|x| x.1).sum::<f64>();
        rows.push(row("KernelCompileFirst", vec![1], "cold", first(&cold) * 1e6, None));
        rows.push(row("KernelCompileFirst", vec![1], "warm", first(&warm) * 1e6, None));
        rows.push(row("KernelCompileAll", vec![cold.len()], "cold", total(&cold) * 1e6, None));
        rows.push(row("KernelCompileAll", vec![warm.len()], "warm", total(&warm) * 1e6, None));
        // A cached allocation: alloc + drop of a 1 MiB buffer after the first (served from the pool's cache).
        let d = TensorDesc::new(DType::F32, [1 << 18]);
        drop(g.alloc(&d)?);
        let mut samples = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            for _ in 0..1000 {
                drop(g.alloc(&d)?);
            }
            samples.push(t.elapsed().as_secs_f64() * 1e3); // us per alloc+free
        }
        rows.push(row("PoolAllocCached", vec![1 << 20], "-", median(&mut samples), None));
        // Pinned transfers of 256 MiB through the staging pipeline (host copy + DMA).
        let n = 64 << 20;
        let t = random::uniform(DType::F32, [n], 1.0, 3);
        let desc = TensorDesc::new(DType::F32, [n]);
        let bytes = (n * 4) as f64;
        let buf = g.upload(&t)?;
        let (mut up, mut down) = (vec![], vec![]);
        for _ in 0..5 {
            let s = Instant::now();
            let b = g.upload(&t)?;
            up.push(s.elapsed().as_secs_f64());
            drop(b);
            let s = Instant::now();
            let _ = g.download(&buf, &desc)?;
            down.push(s.elapsed().as_secs_f64());
        }
        let (u, dn) = (median(&mut up), median(&mut down));
        rows.push(row("UploadPinnedStaged", vec![n], "f32", u * 1e6, Some(bytes / u / 1e9)));
        rows.push(row("DownloadPinnedStaged", vec![n], "f32", dn * 1e6, Some(bytes / dn / 1e9)));
        Ok(rows)
    }

    pub fn run_suite(gpu: &Gpu, cases: &[BenchCase], budget: Budget, bar: &ProgressBar) -> Result<Vec<BenchRow>> {
        let mut rows = device_rows(gpu)?;
        rows.extend(super::super::bench::run_device(&gpu.backend, cases, budget, bar)?);
        Ok(rows)
    }

    pub fn gpu_lines() -> Vec<String> {
        if let Err(why) = CudaBackend::is_available() {
            return vec![format!("GPU: none ({why})")];
        }
        match backend() {
            Err(e) => vec![format!("GPU: none ({e})")],
            Ok(g) => {
                let i = g.backend.info();
                vec![
                    format!("GPU 0: {}", i.name),
                    format!("  memory: {:.1} GiB", i.total_memory as f64 / (1u64 << 30) as f64),
                    format!(
                        "  compute capability: {}.{} (kernels built for {})",
                        i.compute_capability.0,
                        i.compute_capability.1,
                        i.arch()
                    ),
                    format!("  SMs: {}, L2: {} MiB", i.sm_count, i.l2_bytes >> 20),
                    format!(
                        "  driver {} (supports CUDA {}.{})",
                        i.driver_version.as_deref().unwrap_or("version unknown"),
                        i.driver_cuda_version.0,
                        i.driver_cuda_version.1
                    ),
                    format!(
                        "  NVRTC: {}",
                        i.nvrtc_version.map_or("not found".to_string(), |(a, b)| format!("{a}.{b}"))
                    ),
                    format!("  opened in {:.0} ms", g.start_seconds * 1e3),
                ]
            }
        }
    }
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
mod imp {
    use indicatif::ProgressBar;
    use mlx_native::bench::{BenchCase, BenchRow, Budget};
    use mlx_native::{Error, Result};

    /// No GPU backend in this build.
    pub enum Gpu {}

    // Keeps `drop(gpu)` in bench.rs meaningful in both builds (the CUDA `Gpu` owns device memory).
    impl Drop for Gpu {
        fn drop(&mut self) {
            match *self {}
        }
    }

    pub fn backend() -> Result<Gpu> {
        Err(Error::GpuUnavailable("built without the `cuda` feature".into()))
    }

    pub fn run_suite(gpu: &Gpu, _cases: &[BenchCase], _budget: Budget, _bar: &ProgressBar) -> Result<Vec<BenchRow>> {
        match *gpu {}
    }

    pub fn gpu_lines() -> Vec<String> {
        vec!["GPU: none (built without the `cuda` feature)".into()]
    }
}

/// The GPU used by the CLI.
pub use imp::Gpu;

/// Opens the first GPU, or says why there is none.
pub fn backend() -> Result<Gpu> {
    imp::backend()
}

/// Benchmarks the suite on the GPU (plus device start, compile, pool and transfer rows).
pub fn run_suite(gpu: &Gpu, cases: &[BenchCase], budget: Budget, bar: &ProgressBar) -> Result<Vec<BenchRow>> {
    imp::run_suite(gpu, cases, budget, bar)
}

/// Lines describing the GPUs for `info`.
pub fn gpu_lines() -> Vec<String> {
    imp::gpu_lines()
}
