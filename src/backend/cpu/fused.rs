//! FusedLinearAdd and FusedLinearAddGelu: one product into the output, then one pass over it that adds the bias
//! and applies GELU while each row is still in cache.

use rayon::prelude::*;

use super::buffer::{f32_input, write_f32, CHUNK};
use super::math;
use super::matmul::{gemm_f32, Mat};
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::Result;
use crate::graph::{matmul_shape, GeluKind, TensorDesc};
use crate::tensor::HostVec;

/// x·W(ᵀ) + b, then GELU when `gelu` is given. Inputs: x `[.., m, k]`, w `[k, n]` (`[n, k]` if `tb`), bias `[n]`.
pub(crate) fn linear(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    tb: bool,
    gelu: Option<GeluKind>,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let (_, [_, k, n]) = matmul_shape("FusedLinearAdd", &ds[0].shape, &ds[1].shape, false, tb)?;
    let x = f32_input(xs[0], &ds[0])?;
    let w = f32_input(xs[1], &ds[1])?;
    let bias = f32_input(xs[2], &ds[2])?;
    let rows = od.shape.rows();
    write_f32(out, od.shape.numel(), |o| {
        gemm_f32(
            [rows, k, n],
            &x,
            Mat::dense(0, k, false),
            &w,
            Mat::dense(0, if tb { k } else { n }, tb),
            o,
            true,
            false,
        )?;
        if n == 0 {
            return Ok(());
        }
        let rows_per_task = (CHUNK / n).max(1);
        o.par_chunks_mut(rows_per_task * n).for_each(|block| {
            for row in block.chunks_mut(n) {
                match gelu {
                    None => bias_row(row, &bias),
                    Some(GeluKind::Erf) => bias_gelu_erf_row(row, &bias),
                    Some(GeluKind::Tanh) => bias_gelu_tanh_row(row, &bias),
                }
            }
        });
        Ok(())
    })
}

multiversion! {
    fn bias_row(row: &mut [f32], bias: &[f32]) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

multiversion! {
    fn bias_gelu_erf_row(row: &mut [f32], bias: &[f32]) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = math::gelu_erf(*v + b);
        }
    }
}

multiversion! {
    fn bias_gelu_tanh_row(row: &mut [f32], bias: &[f32]) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = math::gelu_tanh(*v + b);
        }
    }
}
