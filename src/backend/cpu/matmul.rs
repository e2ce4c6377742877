//! Batched matrix products: on Intel AMX where it is turned on (amx/), else through the `gemm` crate. Operands are
//! read through strides, so transposed sides cost no copy; broadcast batch dimensions are strides of zero matrices.

use gemm::Parallelism;
use rayon::prelude::*;

use super::buffer::{f32_input, write_f32};
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::{matmul_shape, TensorDesc};
use crate::tensor::{HostVec, Shape};

/// A row-major matrix view: element (i, j) is at `off + i * rs + j * cs` of its slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Mat {
    /// The view of a matrix stored `[.., cols]` at `off` (read transposed when `t`).
    pub(crate) fn dense(off: usize, cols: usize, t: bool) -> Mat {
        // Read as its transpose, element (i, j) is stored element (j, i).
        if t {
            Mat { off, rs: 1, cs: cols }
        } else {
            Mat { off, rs: cols, cs: 1 }
        }
    }

    fn last(&self, rows: usize, cols: usize) -> usize {
        self.off + (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// The operands of one product out[m×n] = a[m×k] · b[k×n], as views.
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    /// [m, k, n].
    pub dims: [usize; 3],
    /// The left operand's storage.
    pub a: &'a [f32],
    /// Its [m, k] view.
    pub am: Mat,
    /// The right operand's storage.
    pub b: &'a [f32],
    /// Its [k, n] view.
    pub bm: Mat,
}

/// Products below this many multiply-adds run single-threaded inside a parallel loop over the batch.
const SMALL: usize = 64 * 64 * 64;

/// out[m×n] = a[m×k] · b[k×n] (row-major with `n` columns), or out += a·b when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    dims: [usize; 3],
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
) -> Result<()> {
    let [m, k, n] = dims;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if out.len() < m * n {
        return Err(Error::Graph(format!("matmul output holds {} elements, {} needed", out.len(), m * n)));
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return Ok(());
    }
    if am.last(m, k) >= a.len() || bm.last(k, n) >= b.len() {
        return Err(Error::Graph(format!("matmul operands too short for [{m}, {k}] x [{k}, {n}]")));
    }
    if super::amx::try_gemm(&Operands { dims, a, am, b, bm }, out, parallel, accumulate) {
        return Ok(());
    }
    let par = if parallel && m * n * k > 32 * 32 * 32 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the last element each view reaches was checked to lie inside its slice above (and every other
    // element lies before it, strides being non-negative); `out` holds m×n elements with row stride n and does
    // not alias `a` or `b` (a mutable borrow). gemm computes out = 1·out + 1·a·b, reading out only when
    // `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr().add(am.off),
            am.cs as isize,
            am.rs as isize,
            b.as_ptr().add(bm.off),
            bm.cs as isize,
            bm.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Batched product with broadcast batch dimensions and optional transposes (see `Op::MatMul`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &CpuBuffer,
    ad: &TensorDesc,
    b: &CpuBuffer,
    bd: &TensorDesc,
    ta: bool,
    tb: bool,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let (_, [m, k, n]) = matmul_shape("MatMul", &ad.shape, &bd.shape, ta, tb)?;
    let (av, bv) = (f32_input(a, ad)?, f32_input(b, bd)?);
    let batch_of = |s: &Shape| Shape::new(&s.dims()[..s.rank() - 2]);
    let (a_batch, b_batch, o_batch) = (batch_of(&ad.shape), batch_of(&bd.shape), batch_of(&od.shape));
    let nb = o_batch.numel();
    let a_str: Vec<usize> = a_batch.broadcast_strides(&o_batch).iter().map(|s| s * m * k).collect();
    let b_str: Vec<usize> = b_batch.broadcast_strides(&o_batch).iter().map(|s| s * k * n).collect();
    let offsets = |mut i: usize| {
        let (mut oa, mut ob) = (0, 0);
        for d in (0..o_batch.rank()).rev() {
            let dim = o_batch.dims()[d];
            oa += (i % dim) * a_str[d];
            ob += (i % dim) * b_str[d];
            i /= dim;
        }
        (oa, ob)
    };
    let a_cols = if ta { m } else { k };
    let b_cols = if tb { k } else { n };
    write_f32(out, od.shape.numel(), |o| {
        if nb == 0 || m * n == 0 {
            return Ok(());
        }
        if !ta && b_batch.numel() == 1 && a_batch.numel() == nb {
            // Every batch shares b: one tall product.
            let am = Mat::dense(0, k, false);
            return gemm_f32([nb * m, k, n], &av, am, &bv, Mat::dense(0, b_cols, tb), o, true, false);
        }
        let mat = |i: usize| {
            let (oa, ob) = offsets(i);
            (Mat::dense(oa, a_cols, ta), Mat::dense(ob, b_cols, tb))
        };
        if nb * m * n * k <= SMALL {
            // Too little work to be worth waking other threads.
            return o.chunks_mut(m * n).enumerate().try_for_each(|(i, oc)| {
                let (am, bm) = mat(i);
                gemm_f32([m, k, n], &av, am, &bv, bm, oc, false, false)
            });
        }
        if nb > 1 && m * n * k <= SMALL {
            o.par_chunks_mut(m * n).enumerate().try_for_each(|(i, oc)| {
                let (am, bm) = mat(i);
                gemm_f32([m, k, n], &av, am, &bv, bm, oc, false, false)
            })
        } else {
            o.chunks_mut(m * n).enumerate().try_for_each(|(i, oc)| {
                let (am, bm) = mat(i);
                gemm_f32([m, k, n], &av, am, &bv, bm, oc, true, false)
            })
        }
    })
}
