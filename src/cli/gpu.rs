//! The GPU side of the CLI. Until the CUDA backend is wired in, every GPU request reports that it is missing.

use indicatif::ProgressBar;
use mlx_native::bench::{BenchCase, BenchRow, Budget};
use mlx_native::{Error, Result};

/// The GPU backend used by the CLI.
pub struct Gpu;

/// Opens the first GPU, or says why there is none.
pub fn backend() -> Result<Gpu> {
    Err(Error::GpuUnavailable("this build has no GPU backend yet".into()))
}

/// Benchmarks the suite on the GPU.
pub fn run_suite(_gpu: &Gpu, _cases: &[BenchCase], _budget: Budget, _bar: &ProgressBar) -> Result<Vec<BenchRow>> {
    Ok(vec![])
}

/// Lines describing the GPUs for `info`.
pub fn gpu_lines() -> Vec<String> {
    vec![format!("GPU: none ({})", backend().err().map(|e| e.to_string()).unwrap_or_default())]
}
