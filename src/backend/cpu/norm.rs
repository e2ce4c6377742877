//! LayerNorm and RmsNorm over the last axis: one row per step, two passes over a row that stays in cache.

use rayon::prelude::*;

use super::buffer::{f32_input, write_f32, CHUNK};
use super::math;
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::Result;
use crate::graph::TensorDesc;
use crate::tensor::HostVec;

/// Runs `f(x_row, out_row)` over all rows in parallel, about `CHUNK` elements per task (fewer tasks would
/// leave a core idle, smaller ones cost more to hand over than they take).
pub(crate) fn par_rows(x: &[f32], out: &mut [f32], n: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if n == 0 || out.is_empty() {
        return;
    }
    let rows_per_task = (CHUNK / n).max(1);
    out.par_chunks_mut(rows_per_task * n).zip(x.par_chunks(rows_per_task * n)).for_each(|(o, x)| {
        for (o, x) in o.chunks_mut(n).zip(x.chunks(n)) {
            f(x, o);
        }
    });
}

/// (x - mean) / √(var + eps) · weight + bias.
pub(crate) fn layer_norm(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    eps: f32,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let x = f32_input(xs[0], &ds[0])?;
    let w = f32_input(xs[1], &ds[1])?;
    let b = f32_input(xs[2], &ds[2])?;
    let n = ds[0].shape.last_dim();
    write_f32(out, od.shape.numel(), |o| {
        par_rows(&x, o, n, |x, o| layer_norm_row(x, &w, &b, eps, o));
        Ok(())
    })
}

multiversion! {
    fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = math::sum(x) / n;
        let var = math::sum_sq_dev(x, mean) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, v), w), b) in out.iter_mut().zip(x).zip(w).zip(b) {
            *o = ((v - mean) * inv).mul_add(*w, *b);
        }
    }
}

/// x / √(mean(x²) + eps) · weight.
pub(crate) fn rms_norm(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    eps: f32,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let x = f32_input(xs[0], &ds[0])?;
    let w = f32_input(xs[1], &ds[1])?;
    let n = ds[0].shape.last_dim();
    write_f32(out, od.shape.numel(), |o| {
        par_rows(&x, o, n, |x, o| rms_norm_row(x, &w, eps, o));
        Ok(())
    })
}

multiversion! {
    fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        let ms = math::sum_sq_dev(x, 0.0) / x.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
            *o = v * inv * w;
        }
    }
}
