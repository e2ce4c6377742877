//! Elementwise ops: broadcasting binary arithmetic, GELU, SiLU and dtype casts. Parallel over chunks; the inner
//! loops are plain slice loops that vectorise.

use rayon::prelude::*;

use super::buffer::{f32_input, map_chunks, typed, typed_mut, write_f32, CHUNK};
use super::math;
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::{BinaryOp, GeluKind, TensorDesc};
use crate::tensor::{DType, HostVec};

/// a ∘ b with numpy broadcasting.
pub(crate) fn binary(
    op: BinaryOp,
    a: &CpuBuffer,
    ad: &TensorDesc,
    b: &CpuBuffer,
    bd: &TensorDesc,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let (av, bv) = (f32_input(a, ad)?, f32_input(b, bd)?);
    let plan = BroadcastPlan::new(&ad.shape, &bd.shape, &od.shape);
    write_f32(out, od.shape.numel(), |o| {
        plan.run(op, &av, &bv, o);
        Ok(())
    })
}

/// How to walk a broadcast: the output is rows of `len` elements over which each operand is either contiguous
/// (step 1) or a single repeated value (step 0); the outer dimensions give each row's operand offsets.
struct BroadcastPlan {
    len: usize,
    step: [usize; 2],
    outer_dims: Vec<usize>,
    outer_strides: [Vec<usize>; 2],
}

impl BroadcastPlan {
    fn new(a: &crate::tensor::Shape, b: &crate::tensor::Shape, out: &crate::tensor::Shape) -> BroadcastPlan {
        let strides = [a.broadcast_strides(out), b.broadcast_strides(out)];
        let dims = out.dims();
        // The longest suffix of dimensions along which each operand keeps one kind of step (size-1 dims fit any).
        let mut kind: [Option<bool>; 2] = [None, None];
        let mut split = dims.len();
        let mut len = 1;
        while split > 0 {
            let d = split - 1;
            if dims[d] != 1 {
                let k = [strides[0][d] != 0, strides[1][d] != 0];
                if kind.iter().zip(k).any(|(have, new)| have.is_some_and(|h| h != new)) {
                    break;
                }
                kind = [Some(k[0]), Some(k[1])];
            }
            len *= dims[d];
            split = d;
        }
        let step = [kind[0].unwrap_or(true) as usize, kind[1].unwrap_or(true) as usize];
        BroadcastPlan {
            len,
            step,
            outer_dims: dims[..split].to_vec(),
            outer_strides: [strides[0][..split].to_vec(), strides[1][..split].to_vec()],
        }
    }

    fn offsets(&self, mut row: usize) -> [usize; 2] {
        let mut off = [0, 0];
        for d in (0..self.outer_dims.len()).rev() {
            let i = row % self.outer_dims[d];
            row /= self.outer_dims[d];
            off[0] += i * self.outer_strides[0][d];
            off[1] += i * self.outer_strides[1][d];
        }
        off
    }

    fn run(&self, op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
        let len = self.len;
        if len == 0 || out.is_empty() {
            return;
        }
        let [sa, sb] = self.step;
        if len >= CHUNK / 4 {
            // Long rows: split each row.
            for (r, row) in out.chunks_mut(len).enumerate() {
                let [oa, ob] = self.offsets(r);
                row.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
                    let (ia, ib) = (oa + c * CHUNK * sa, ob + c * CHUNK * sb);
                    binary_row(op, part(a, ia, o.len(), sa), part(b, ib, o.len(), sb), o, sa, sb);
                });
            }
        } else {
            let rows_per_task = (CHUNK / len).max(1);
            out.par_chunks_mut(rows_per_task * len).enumerate().for_each(|(t, block)| {
                for (k, o) in block.chunks_mut(len).enumerate() {
                    let [ia, ib] = self.offsets(t * rows_per_task + k);
                    binary_row(op, part(a, ia, o.len(), sa), part(b, ib, o.len(), sb), o, sa, sb);
                }
            });
        }
    }
}

multiversion! {
    /// One row: `a` and `b` are the row's elements (step 1) or its single repeated value (step 0).
    fn binary_row(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32], sa: usize, sb: usize) {
        match op {
            BinaryOp::Add => row_kernel(a, b, out, sa, sb, |x, y| x + y),
            BinaryOp::Sub => row_kernel(a, b, out, sa, sb, |x, y| x - y),
            BinaryOp::Mul => row_kernel(a, b, out, sa, sb, |x, y| x * y),
            BinaryOp::Div => row_kernel(a, b, out, sa, sb, |x, y| x / y),
        }
    }
}

#[inline(always)]
fn row_kernel(a: &[f32], b: &[f32], out: &mut [f32], sa: usize, sb: usize, f: impl Fn(f32, f32) -> f32) {
    match (sa, sb) {
        (1, 1) => {
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = f(*x, *y);
            }
        }
        (1, _) => {
            let y = b[0];
            for (o, x) in out.iter_mut().zip(a) {
                *o = f(*x, y);
            }
        }
        (_, 1) => {
            let x = a[0];
            for (o, y) in out.iter_mut().zip(b) {
                *o = f(x, *y);
            }
        }
        _ => out.fill(f(a[0], b[0])),
    }
}

multiversion! {
    fn gelu_erf_slice(x: &[f32], out: &mut [f32]) {
        math::map(x, out, math::gelu_erf);
    }
}

multiversion! {
    fn gelu_tanh_slice(x: &[f32], out: &mut [f32]) {
        math::map(x, out, math::gelu_tanh);
    }
}

multiversion! {
    fn silu_slice(x: &[f32], out: &mut [f32]) {
        math::map(x, out, math::silu);
    }
}

/// Applies GELU of `kind` to a slice in place of `out` (used by the fused linear kernels too).
pub(crate) fn gelu_into(kind: GeluKind, x: &[f32], out: &mut [f32]) {
    match kind {
        GeluKind::Erf => gelu_erf_slice(x, out),
        GeluKind::Tanh => gelu_tanh_slice(x, out),
    }
}

/// GELU.
pub(crate) fn gelu(kind: GeluKind, x: &CpuBuffer, xd: &TensorDesc, out: &mut HostVec, _od: &TensorDesc) -> Result<()> {
    map_chunks(x, xd, out, |x, o| gelu_into(kind, x, o))
}

/// SiLU.
pub(crate) fn silu(x: &CpuBuffer, xd: &TensorDesc, out: &mut HostVec, _od: &TensorDesc) -> Result<()> {
    map_chunks(x, xd, out, silu_slice)
}

/// dtype conversion: floats through f32 (rounding once), ids by value (`Err` for an i64 that does not fit u32).
pub(crate) fn cast(x: &CpuBuffer, xd: &TensorDesc, out: &mut HostVec, od: &TensorDesc) -> Result<()> {
    let n = xd.shape.numel();
    if xd.dtype == od.dtype {
        return super::layout::copy(x, xd, out, od);
    }
    match (xd.dtype, od.dtype) {
        (DType::U32, DType::I64) => {
            let src = typed::<u32>(x, xd)?;
            let dst = typed_mut::<i64>(out, n)?;
            dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
                for (d, s) in d.iter_mut().zip(s) {
                    *d = *s as i64;
                }
            });
            Ok(())
        }
        (DType::I64, DType::U32) => {
            let src = typed::<i64>(x, xd)?;
            if let Some(bad) = src.par_iter().find_any(|v| u32::try_from(**v).is_err()) {
                return Err(Error::arg("Cast", format!("value {bad} does not fit u32")));
            }
            let dst = typed_mut::<u32>(out, n)?;
            dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
                for (d, s) in d.iter_mut().zip(s) {
                    *d = *s as u32;
                }
            });
            Ok(())
        }
        (from, to) if from.is_float() && to.is_float() => map_chunks(x, xd, out, |s, o| o.copy_from_slice(s)),
        (from, to) => Err(Error::arg("Cast", format!("cannot cast {from} to {to}"))),
    }
}

/// The operand elements for an output run of `n` starting at `off`: `n` of them, or the one repeated value.
fn part(x: &[f32], off: usize, n: usize, step: usize) -> &[f32] {
    &x[off..off + if step == 1 { n } else { 1 }]
}
