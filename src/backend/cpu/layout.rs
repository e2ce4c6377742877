//! Data movement: Reshape (a copy), Transpose, Slice and Concat. They only move elements, so they work on raw
//! elements of the dtype's size and serve every dtype with one code path.

use bytemuck::Pod;
use rayon::prelude::*;

use super::buffer::{bytes, CHUNK};
use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::TensorDesc;
use crate::tensor::{DType, HostVec};

/// Runs `$body` with `$T` bound to the unsigned integer type of `$dt`'s size.
macro_rules! by_size {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt.size() {
            2 => {
                type $T = u16;
                $body
            }
            4 => {
                type $T = u32;
                $body
            }
            _ => {
                type $T = u64;
                $body
            }
        }
    };
}
pub(crate) use by_size;

/// The first `desc.numel()` elements of `buf` as raw `T`s.
pub(crate) fn raw_in<'a, T: Pod>(buf: &'a CpuBuffer, desc: &TensorDesc) -> Result<&'a [T]> {
    let n = desc.shape.numel();
    bytemuck::try_cast_slice::<u8, T>(bytes(buf))
        .ok()
        .and_then(|s| s.get(..n))
        .ok_or_else(|| Error::Graph(format!("buffer does not hold {n} {} elements", desc.dtype)))
}

/// The first `n` elements of `out` as raw `T`s.
pub(crate) fn raw_out<T: Pod>(out: &mut HostVec, n: usize) -> Result<&mut [T]> {
    let dt: DType = out.dtype();
    bytemuck::try_cast_slice_mut::<u8, T>(out.as_bytes_mut())
        .ok()
        .and_then(|s| s.get_mut(..n))
        .ok_or_else(|| Error::Graph(format!("output buffer does not hold {n} {dt} elements")))
}

/// Copies `src` into `dst` (same length) on all cores.
pub(crate) fn par_copy<T: Pod + Send + Sync>(src: &[T], dst: &mut [T]) {
    let chunk = (CHUNK * 4 / std::mem::size_of::<T>()).max(1);
    dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
}

/// Same elements into the output (Reshape; also Cast to the same dtype).
pub(crate) fn copy(x: &CpuBuffer, xd: &TensorDesc, out: &mut HostVec, od: &TensorDesc) -> Result<()> {
    by_size!(xd.dtype, T => {
        let src = raw_in::<T>(x, xd)?;
        par_copy(src, raw_out::<T>(out, od.shape.numel())?);
    });
    Ok(())
}

/// Axis permutation: output axis i is input axis `perm[i]`.
pub(crate) fn transpose(
    x: &CpuBuffer,
    xd: &TensorDesc,
    perm: &[usize],
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let n = od.shape.numel();
    if n == 0 {
        return Ok(());
    }
    let in_strides = xd.shape.strides();
    let dims = od.shape.dims().to_vec();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    // Trailing output axes that stay contiguous and in order in the input move as one run.
    let r = dims.len();
    let mut split = r;
    let mut run = 1;
    while split > 0 && strides[split - 1] == run {
        run *= dims[split - 1];
        split -= 1;
    }
    // Otherwise the innermost output axis is gathered with its input stride.
    let (len, step) = if run > 1 || split == 0 { (run, 1) } else { (dims[r - 1], strides[r - 1]) };
    let outer = if run > 1 || split == 0 { split } else { r - 1 };
    let (odims, ostrides) = (&dims[..outer], &strides[..outer]);
    let offset = |mut row: usize| {
        let mut off = 0;
        for d in (0..odims.len()).rev() {
            off += (row % odims[d]) * ostrides[d];
            row /= odims[d];
        }
        off
    };
    by_size!(xd.dtype, T => {
        let src = raw_in::<T>(x, xd)?;
        let dst = raw_out::<T>(out, n)?;
        let rows_per_task = (CHUNK / len).max(1);
        dst.par_chunks_mut(rows_per_task * len).enumerate().for_each(|(t, block)| {
            for (k, o) in block.chunks_mut(len).enumerate() {
                let base = offset(t * rows_per_task + k);
                if step == 1 {
                    o.copy_from_slice(&src[base..base + len]);
                } else {
                    for (j, v) in o.iter_mut().enumerate() {
                        *v = src[base + j * step];
                    }
                }
            }
        });
    });
    Ok(())
}

/// `start..end` along `axis`.
pub(crate) fn slice(
    x: &CpuBuffer,
    xd: &TensorDesc,
    axis: usize,
    start: usize,
    end: usize,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let dims = xd.shape.dims();
    let inner: usize = dims[axis + 1..].iter().product();
    let in_row = dims[axis] * inner;
    let out_row = (end - start) * inner;
    let n = od.shape.numel();
    if n == 0 {
        return Ok(());
    }
    by_size!(xd.dtype, T => {
        let src = raw_in::<T>(x, xd)?;
        let dst = raw_out::<T>(out, n)?;
        if n == out_row {
            par_copy(&src[start * inner..start * inner + out_row], dst);
        } else {
            let rows_per_task = (CHUNK / out_row).max(1);
            dst.par_chunks_mut(rows_per_task * out_row).enumerate().for_each(|(t, block)| {
                for (k, o) in block.chunks_mut(out_row).enumerate() {
                    let base = (t * rows_per_task + k) * in_row + start * inner;
                    o.copy_from_slice(&src[base..base + out_row]);
                }
            });
        }
    });
    Ok(())
}

/// Joins the inputs along `axis`.
pub(crate) fn concat(
    xs: &[&CpuBuffer],
    xds: &[TensorDesc],
    axis: usize,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let n = od.shape.numel();
    if n == 0 {
        return Ok(());
    }
    let inner: usize = od.shape.dims()[axis + 1..].iter().product();
    let out_row = od.shape.dims()[axis] * inner;
    by_size!(od.dtype, T => {
        let srcs = xs.iter().zip(xds).map(|(x, d)| raw_in::<T>(x, d)).collect::<Result<Vec<_>>>()?;
        let rows: Vec<usize> = xds.iter().map(|d| d.shape.dims()[axis] * inner).collect();
        let dst = raw_out::<T>(out, n)?;
        dst.par_chunks_mut(out_row).enumerate().for_each(|(o, row)| {
            let mut at = 0;
            for (s, &len) in srcs.iter().zip(&rows) {
                row[at..at + len].copy_from_slice(&s[o * len..(o + 1) * len]);
                at += len;
            }
        });
    });
    Ok(())
}
