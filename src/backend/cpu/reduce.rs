//! Sum, mean and max over one axis. The tensor is viewed as [outer, axis, inner]: with inner = 1 each output is
//! a row reduction; otherwise whole inner rows are accumulated, which vectorises along inner.

use rayon::prelude::*;

use super::buffer::{f32_input, write_f32, CHUNK};
use super::math;
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::Result;
use crate::graph::{ReduceKind, TensorDesc};
use crate::tensor::HostVec;

/// Reduces `axis` of `x`.
pub(crate) fn reduce(
    kind: ReduceKind,
    axis: usize,
    x: &CpuBuffer,
    xd: &TensorDesc,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let xv = f32_input(x, xd)?;
    let dims = xd.shape.dims();
    let len = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    write_f32(out, od.shape.numel(), |o| {
        if o.is_empty() {
            return Ok(());
        }
        if len == 0 {
            o.fill(if kind == ReduceKind::Sum { 0.0 } else { f32::NAN });
            return Ok(());
        }
        if inner == 1 {
            let per_task = (CHUNK / len).max(1);
            o.par_chunks_mut(per_task).zip(xv.par_chunks(per_task * len)).for_each(|(o, x)| {
                for (o, row) in o.iter_mut().zip(x.chunks(len)) {
                    *o = reduce_row(kind, row);
                }
            });
        } else {
            o.par_chunks_mut(inner).zip(xv.par_chunks(len * inner)).for_each(|(o, x)| reduce_cols(kind, x, o));
        }
        Ok(())
    })
}

multiversion! {
    fn reduce_row(kind: ReduceKind, row: &[f32]) -> f32 {
        match kind {
            ReduceKind::Sum => math::sum(row),
            ReduceKind::Mean => math::sum(row) / row.len() as f32,
            ReduceKind::Max => row.iter().fold(f32::NEG_INFINITY, |m, v| if *v > m || v.is_nan() { *v } else { m }),
        }
    }
}

multiversion! {
    /// `x` is [len, inner]; `out` gets the reduction of each column.
    fn reduce_cols(kind: ReduceKind, x: &[f32], out: &mut [f32]) {
        let inner = out.len();
        out.copy_from_slice(&x[..inner]);
        for row in x.chunks_exact(inner).skip(1) {
            match kind {
                ReduceKind::Max => {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = if *v > *o || v.is_nan() { *v } else { *o };
                    }
                }
                _ => {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o += v;
                    }
                }
            }
        }
        if kind == ReduceKind::Mean {
            let inv = 1.0 / (x.len() / inner) as f32;
            for o in out.iter_mut() {
                *o *= inv;
            }
        }
    }
}
