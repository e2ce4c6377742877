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
        // exp and the running sum in one pass, 32 lanes of accumulators so it stays vectorised.
        const U: usize = 32;
        let mut acc = [0f32; U];
        let mut xc = x.chunks_exact(U);
        let mut oc = out.chunks_exact_mut(U);
        for (xs, os) in (&mut xc).zip(&mut oc) {
            for i in 0..U {
                let e = math::exp_neg(xs[i] - m);
                os[i] = e;
                acc[i] += e;
            }
        }
        let mut total = 0.0;
        for (o, v) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
            *o = math::exp_neg(v - m);
            total += *o;
        }
        let inv = 1.0 / (math::sum(&acc) + total);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}
