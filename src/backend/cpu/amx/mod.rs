//! f32 matrix products on Intel AMX: each operand split into three bf16 parts (pack.rs), six of the nine part
//! products summed in f32 by `tdpbf16ps` (micro.rs), so the result keeps f32 accuracy while the tile unit does 16
//! times the multiply-adds per cycle of AVX-512 FMA. `matmul::gemm_f32` offers every product here first; the FMA
//! kernels (the `gemm` crate) run whatever [`try_gemm`] declines.
//!
//! On wherever the CPU has AMX and Linux grants the tile state; `MLX_NATIVE_AMX=0` turns it off. On the one AMX
//! machine measured (a shared Xeon VM, 2 threads) the products take about 1.4x the tile unit's own time and half
//! the FMA kernels', and the MiniLM forward runs 1.3x faster (BENCHMARKS.md, session 6). Constant weights are packed
//! once and kept with their tensor (1.5x the f32 weight's memory).

mod detect;
mod gemm;
mod micro;
mod pack;

use super::matmul::{Epilogue, Operands};

/// Products smaller than this many multiply-adds stay on the FMA kernels: packing and tile setup would cost more
/// than the tile unit saves.
const MIN_WORK: usize = 1 << 20;

/// Whether this process runs large f32 products on AMX (the CPU has it, Linux granted it, `MLX_NATIVE_AMX=0` did not
/// turn it off).
pub fn enabled() -> bool {
    detect::available()
}

/// Whether `MLX_NATIVE_AMX=0` turned the AMX products off.
pub fn turned_off() -> bool {
    detect::turned_off()
}

/// Whether the CPU has AMX-BF16 (whether or not it is used).
pub fn present() -> bool {
    detect::present()
}

/// Runs out[m×n] = a·b (or += when `accumulate`) on the tile unit when this machine has one, it was not turned off
/// and the product is large enough, then runs `epilogue` on every row segment as it is written; returns false (nothing
/// written) otherwise. The views and lengths were checked by the caller.
pub(crate) fn try_gemm(
    ops: &Operands,
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
    epilogue: Option<&Epilogue>,
) -> bool {
    let [m, k, n] = ops.dims;
    if m < 16 || n < 16 || k < 16 || m * n * k < MIN_WORK {
        return false;
    }
    if !detect::available() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(amx) = micro::Amx::new() {
        gemm::gemm(&amx, gemm::Blocking::for_depth(k), ops, out, parallel, accumulate, epilogue);
        return true;
    }
    let _ = (out, parallel, accumulate, epilogue);
    false
}
