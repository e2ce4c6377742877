//! FusedLinearAdd, FusedLinearAddGelu and FusedLinearAddResidual: one product into the output whose epilogue adds
//! the bias (and the residual) and applies GELU: on the AMX path to each block as it is written, otherwise in one
//! pass over the rows after the product.

use half::{bf16, f16};

use super::buffer::{f32_input, typed, write_f32, HalfToF32};
use super::math;
use super::matmul::{const_tensor, gemm_ops_then, Mat, Operands};
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::{matmul_shape, GeluKind, TensorDesc};
use crate::tensor::{DType, HostVec};

/// x·W(ᵀ) + b, then GELU when `gelu` is given. Inputs: x `[.., m, k]`, w `[k, n]` (`[n, k]` if `tb`), bias `[n]`.
pub(crate) fn linear(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    tb: bool,
    gelu: Option<GeluKind>,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    product_then(xs, ds, tb, out, od, |seg, _, bias| match gelu {
        None => bias_row(seg, bias),
        Some(GeluKind::Erf) => bias_gelu_erf_row(seg, bias),
        Some(GeluKind::Tanh) => bias_gelu_tanh_row(seg, bias),
    })
}

/// x·W(ᵀ) + b + residual: inputs as [`linear`], then the residual with the output's shape. The residual is added
/// in the bias pass, computed as `(x·W + b) + r` in f32 like the unfused Add after FusedLinearAdd; half-type
/// residuals are widened a few values at a time.
pub(crate) fn linear_residual(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    tb: bool,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let (rb, rd) = (xs[3], &ds[3]);
    if rd.shape != od.shape {
        return Err(Error::shape_hint(
            "FusedLinearAddResidual",
            &od.shape,
            &rd.shape,
            "the residual must have the output's shape",
        ));
    }
    match rd.dtype {
        DType::F32 => {
            let r = typed::<f32>(rb, rd)?;
            product_then(xs, ds, tb, out, od, |seg, at, bias| bias_residual_row(seg, bias, &r[at..at + seg.len()]))
        }
        DType::F16 => residual_half(xs, ds, tb, out, od, typed::<f16>(rb, rd)?),
        DType::BF16 => residual_half(xs, ds, tb, out, od, typed::<bf16>(rb, rd)?),
        other => {
            Err(Error::DTypeMismatch { op: "FusedLinearAddResidual", expected: "a float dtype".into(), got: other })
        }
    }
}

fn residual_half<H: HalfToF32>(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    tb: bool,
    out: &mut HostVec,
    od: &TensorDesc,
    r: &[H],
) -> Result<()> {
    product_then(xs, ds, tb, out, od, |seg, at, bias| {
        let mut wide = [0f32; 64];
        for (j, s) in seg.chunks_mut(wide.len()).enumerate() {
            let j0 = j * wide.len();
            let w = &mut wide[..s.len()];
            H::widen(&r[at + j0..at + j0 + s.len()], w);
            bias_residual_row(s, &bias[j0..j0 + s.len()], w);
        }
    })
}

/// The product into the output, then `epilogue(segment, index of its first element, bias of its columns)` over
/// row segments of it: on the AMX path each block's rows as they are written (still in L1), otherwise over the
/// output's rows in parallel after the product.
fn product_then(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    tb: bool,
    out: &mut HostVec,
    od: &TensorDesc,
    epilogue: impl Fn(&mut [f32], usize, &[f32]) + Sync,
) -> Result<()> {
    let (_, [_, k, n]) = matmul_shape("FusedLinearAdd", &ds[0].shape, &ds[1].shape, false, tb)?;
    let x = f32_input(xs[0], &ds[0])?;
    let w = f32_input(xs[1], &ds[1])?;
    let bias = f32_input(xs[2], &ds[2])?;
    let rows = od.shape.rows();
    write_f32(out, od.shape.numel(), |o| {
        let ops =
            Operands::new([rows, k, n], &x, Mat::dense(0, k, false), &w, Mat::dense(0, if tb { k } else { n }, tb));
        let segment =
            |seg: &mut [f32], row: usize, col: usize| epilogue(seg, row * n + col, &bias[col..col + seg.len()]);
        gemm_ops_then(&ops.with_const_b(const_tensor(xs[1])), o, true, &segment)
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
    fn bias_residual_row(row: &mut [f32], bias: &[f32], residual: &[f32]) {
        for ((v, b), r) in row.iter_mut().zip(bias).zip(residual) {
            *v = (*v + b) + r;
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
