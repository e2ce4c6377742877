//! Numerically stable softmax over the last axis: subtract the row maximum, exponentiate, normalise.

use super::buffer::{f32_input, write_f32};
use super::math;
use super::norm::par_rows;
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::Result;
use crate::graph::TensorDesc;
use crate::tensor::HostVec;

/// Softmax of each row. A row that is all -inf gives NaN, as the definition does (0/0).
pub(crate) fn softmax(x: &CpuBuffer, xd: &TensorDesc, out: &mut HostVec, od: &TensorDesc) -> Result<()> {
    let xv = f32_input(x, xd)?;
    let n = xd.shape.last_dim();
    write_f32(out, od.shape.numel(), |o| {
        par_rows(&xv, o, n, softmax_row);
        Ok(())
    })
}

multiversion! {
    fn softmax_row(x: &[f32], out: &mut [f32]) {
        let m = math::max(x);
        for (o, v) in out.iter_mut().zip(x) {
            *o = math::exp(v - m);
        }
        let inv = 1.0 / math::sum(out);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}
