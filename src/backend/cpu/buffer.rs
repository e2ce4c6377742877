//! Typed views of CPU buffers: inputs as slices (widened to f32 where an op computes in f32), outputs as
//! mutable slices of exactly the descriptor's length.

use std::borrow::Cow;

use half::{bf16, f16, slice::HalfFloatSliceExt};
use rayon::prelude::*;

use super::CpuBuffer;
use crate::error::{Error, Result};
use crate::graph::TensorDesc;
use crate::tensor::{DType, Element, HostVec};

/// Elements per rayon task for conversions and copies: large enough that scheduling is noise, small enough that
/// both cores get work on mid-sized tensors.
pub(crate) const CHUNK: usize = 1 << 15;

/// The buffer's dtype.
pub(crate) fn dtype(buf: &CpuBuffer) -> DType {
    match buf {
        CpuBuffer::Owned(hv) => hv.dtype(),
        CpuBuffer::Shared(t) => t.dtype(),
    }
}

/// The buffer's raw bytes (all of them, possibly more than a descriptor needs).
pub(crate) fn bytes(buf: &CpuBuffer) -> &[u8] {
    match buf {
        CpuBuffer::Owned(hv) => hv.as_bytes(),
        CpuBuffer::Shared(t) => t.as_bytes(),
    }
}

/// `Err` unless `buf` holds at least `desc`'s elements of `desc`'s dtype.
pub(crate) fn check(buf: &CpuBuffer, desc: &TensorDesc, op: &str) -> Result<()> {
    let dt = dtype(buf);
    let have = bytes(buf).len() / dt.size();
    if dt != desc.dtype || have < desc.shape.numel() {
        return Err(Error::Graph(format!(
            "{op}: buffer holds {have} {dt} elements, the operand needs {} {} elements (shape {})",
            desc.shape.numel(),
            desc.dtype,
            desc.shape
        )));
    }
    Ok(())
}

/// The first `desc.numel()` elements as `T` (the dtype was checked by [`check`]).
pub(crate) fn typed<'a, T: Element>(buf: &'a CpuBuffer, desc: &TensorDesc) -> Result<&'a [T]> {
    let n = desc.shape.numel();
    let s: &[T] = bytemuck::try_cast_slice(bytes(buf))
        .map_err(|e| Error::Graph(format!("buffer is not a {} array: {e:?}", T::DTYPE)))?;
    s.get(..n).ok_or_else(|| Error::Graph(format!("buffer holds {} elements, {n} needed", s.len())))
}

/// The first `desc.numel()` elements as f32: borrowed for f32, widened (in parallel) for half types.
pub(crate) fn f32_input<'a>(buf: &'a CpuBuffer, desc: &TensorDesc) -> Result<Cow<'a, [f32]>> {
    Ok(match desc.dtype {
        DType::F32 => Cow::Borrowed(typed::<f32>(buf, desc)?),
        DType::F16 => Cow::Owned(widen(typed::<f16>(buf, desc)?)),
        DType::BF16 => Cow::Owned(widen(typed::<bf16>(buf, desc)?)),
        other => return Err(Error::DTypeMismatch { op: "cpu kernel", expected: "a float dtype".into(), got: other }),
    })
}

fn widen<H: HalfToF32>(src: &[H]) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| H::widen(s, o));
    out
}

/// Half types that convert slices to and from f32.
pub(crate) trait HalfToF32: Sized + Copy + Send + Sync {
    fn widen(src: &[Self], dst: &mut [f32]);
    fn narrow(src: &[f32], dst: &mut [Self]);
}

impl HalfToF32 for f16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn narrow(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
}

impl HalfToF32 for bf16 {
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn narrow(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
}

/// The output vector for `desc`: the buffer itself when it is owned, of the right dtype and long enough; a new
/// vector otherwise (a shared buffer is never written).
pub(crate) fn output<'a>(buf: &'a mut CpuBuffer, desc: &TensorDesc) -> &'a mut HostVec {
    let n = desc.shape.numel();
    let fits = matches!(buf, CpuBuffer::Owned(hv) if hv.dtype() == desc.dtype && hv.len() >= n);
    if !fits {
        *buf = CpuBuffer::Owned(HostVec::zeros(desc.dtype, n));
    }
    match buf {
        CpuBuffer::Owned(hv) => hv,
        CpuBuffer::Shared(_) => unreachable!("replaced by an owned buffer above"),
    }
}

/// The first `n` elements of `hv` as `T`.
pub(crate) fn typed_mut<T: Element>(hv: &mut HostVec, n: usize) -> Result<&mut [T]> {
    let dt = hv.dtype();
    hv.as_mut_slice::<T>()
        .and_then(|s| s.get_mut(..n))
        .ok_or_else(|| Error::Graph(format!("output buffer is {dt}, not {} of {n} elements", T::DTYPE)))
}

/// Runs `f` on an f32 view of the first `n` output elements: the buffer itself for f32, a scratch vector
/// rounded once into the buffer for half types.
pub(crate) fn write_f32(hv: &mut HostVec, n: usize, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    match hv {
        HostVec::F32(v) => f(&mut v[..n]),
        HostVec::F16(v) => narrow_into(&mut v[..n], f),
        HostVec::BF16(v) => narrow_into(&mut v[..n], f),
        other => Err(Error::DTypeMismatch { op: "cpu kernel", expected: "a float output".into(), got: other.dtype() }),
    }
}

fn narrow_into<H: HalfToF32>(dst: &mut [H], f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    let mut tmp = vec![0f32; dst.len()];
    f(&mut tmp)?;
    dst.par_chunks_mut(CHUNK).zip(tmp.par_chunks(CHUNK)).for_each(|(d, s)| H::narrow(s, d));
    Ok(())
}

/// out = f(x) elementwise over the first `desc.numel()` elements, in parallel chunks. Half types are widened and
/// narrowed one chunk at a time, so no tensor-sized f32 copy is made; f32 runs in place of the buffers.
pub(crate) fn map_chunks(
    x: &CpuBuffer,
    xd: &TensorDesc,
    out: &mut HostVec,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Result<()> {
    let n = xd.shape.numel();
    match (xd.dtype, out.dtype()) {
        (DType::F32, DType::F32) => {
            let (src, dst) = (typed::<f32>(x, xd)?, typed_mut::<f32>(out, n)?);
            dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| f(s, o));
            Ok(())
        }
        (DType::F16, DType::F16) => half_chunks(typed::<f16>(x, xd)?, typed_mut::<f16>(out, n)?, f),
        (DType::BF16, DType::BF16) => half_chunks(typed::<bf16>(x, xd)?, typed_mut::<bf16>(out, n)?, f),
        _ => {
            let xv = f32_input(x, xd)?;
            write_f32(out, n, |o| {
                o.par_chunks_mut(CHUNK).zip(xv.par_chunks(CHUNK)).for_each(|(o, s)| f(s, o));
                Ok(())
            })
        }
    }
}

fn half_chunks<H: HalfToF32>(src: &[H], dst: &mut [H], f: impl Fn(&[f32], &mut [f32]) + Sync) -> Result<()> {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
        let mut wide = vec![0f32; 2 * s.len()];
        let (a, b) = wide.split_at_mut(s.len());
        H::widen(s, a);
        f(a, b);
        H::narrow(b, d);
    });
    Ok(())
}
