//! Batched matrix products: on Intel AMX where the CPU has it (amx/), else through the `gemm` crate. Operands are
//! read through strides, so transposed sides cost no copy; broadcast batch dimensions are strides of zero matrices.

use gemm::Parallelism;
use rayon::prelude::*;

use super::buffer::{f32_input, write_f32, CHUNK};
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::{matmul_shape, TensorDesc};
use crate::tensor::{HostVec, Shape, Tensor};

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
    /// The tensor `b` is (a widened copy of) when it is a constant, such as a weight: forms derived from it (AMX's
    /// packed panels) are kept with it instead of made again for every product.
    pub b_const: Option<&'a Tensor>,
}

impl<'a> Operands<'a> {
    /// The product of two views, neither of them known to be constant.
    pub(crate) fn new(dims: [usize; 3], a: &'a [f32], am: Mat, b: &'a [f32], bm: Mat) -> Self {
        Operands { dims, a, am, b, bm, b_const: None }
    }

    /// The same, with `b` read from the constant `t` when one is given (see [`Operands::b_const`]).
    pub(crate) fn with_const_b(self, t: Option<&'a Tensor>) -> Self {
        Operands { b_const: t, ..self }
    }
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
    gemm_ops(&Operands::new(dims, a, am, b, bm), out, parallel, accumulate)
}

/// What runs on each row segment of a product's output once the product is complete: `(segment, row, first
/// column)`. It must give the same values however the rows are cut into segments.
pub(crate) type Epilogue<'e> = dyn Fn(&mut [f32], usize, usize) + Sync + 'e;

/// [`gemm_f32`] of an [`Operands`] view (which may name `b`'s constant tensor).
pub(crate) fn gemm_ops(ops: &Operands, out: &mut [f32], parallel: bool, accumulate: bool) -> Result<()> {
    product(ops, out, parallel, accumulate, None)
}

/// out = a·b, then `epilogue` over every row segment of out: on the AMX path as each block is written (while it is
/// in cache), else over the output's rows in parallel after the product.
pub(crate) fn gemm_ops_then(ops: &Operands, out: &mut [f32], parallel: bool, epilogue: &Epilogue) -> Result<()> {
    product(ops, out, parallel, false, Some(epilogue))
}

fn product(
    ops: &Operands,
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
    epilogue: Option<&Epilogue>,
) -> Result<()> {
    let Operands { dims, a, am, b, bm, .. } = *ops;
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
        rows_then(&mut out[..m * n], n, parallel, epilogue);
        return Ok(());
    }
    if am.last(m, k) >= a.len() || bm.last(k, n) >= b.len() {
        return Err(Error::Graph(format!("matmul operands too short for [{m}, {k}] x [{k}, {n}]")));
    }
    if super::amx::try_gemm(ops, out, parallel, accumulate, epilogue) {
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
    rows_then(&mut out[..m * n], n, parallel, epilogue);
    Ok(())
}

/// `epilogue` over every row of `out` (rows of `n`), in parallel blocks of rows when `parallel`.
fn rows_then(out: &mut [f32], n: usize, parallel: bool, epilogue: Option<&Epilogue>) {
    let Some(epi) = epilogue else { return };
    let rows = (CHUNK / n).max(1);
    let run = |(i, block): (usize, &mut [f32])| {
        for (r, row) in block.chunks_mut(n).enumerate() {
            epi(row, i * rows + r, 0);
        }
    };
    if parallel {
        out.par_chunks_mut(rows * n).enumerate().for_each(run);
    } else {
        out.chunks_mut(rows * n).enumerate().for_each(run);
    }
}

/// The tensor a buffer shares when it is a caller's (a constant or an input), not the backend's own memory.
pub(crate) fn const_tensor(buf: &CpuBuffer) -> Option<&Tensor> {
    match buf {
        CpuBuffer::Shared(t) => Some(t),
        CpuBuffer::Owned(_) => None,
    }
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
            let ops = Operands::new([nb * m, k, n], &av, Mat::dense(0, k, false), &bv, Mat::dense(0, b_cols, tb));
            return gemm_ops(&ops.with_const_b(const_tensor(b)), o, true, false);
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
