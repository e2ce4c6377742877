//! Launchers of layout.cu: Transpose, Slice and Concat as strided copies (Reshape is a plain device copy).

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::launch::{cfg, collapse, contiguous, grid_stride, Dims, BLOCK};
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::TensorDesc;

/// The source.
pub(crate) static SOURCE: KernelSource =
    KernelSource { name: "layout.cu", text: include_str!("kernels/layout.cu"), common: true, arch_specific: false };

fn width(desc: &TensorDesc) -> Result<&'static str> {
    match desc.dtype.size() {
        2 => Ok("b2"),
        4 => Ok("b4"),
        8 => Ok("b8"),
        s => Err(Error::Unsupported { backend: "cuda", what: format!("copies of {s}-byte elements") }),
    }
}

impl CudaBackend {
    /// Copies `shape` elements from `src` (strides `ss`) to `dst` (strides `ds`); offsets are in elements.
    fn copy_strided(
        &self,
        desc: &TensorDesc,
        shape: &[usize],
        src: u64,
        ss: Vec<usize>,
        dst: u64,
        ds: Vec<usize>,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(());
        }
        let w = width(desc)?;
        let (shape, st) = collapse(shape, &[ss, ds]);
        let (src_s, dst_s) = (&st[0], &st[1]);
        let stream = &self.dev.stream;
        // Rows of contiguous elements on both sides (slices, concats, most reshapes): a pitched row copy.
        if shape.len() <= 2 && src_s.last() == Some(&1) && dst_s.last() == Some(&1) {
            let cols = *shape.last().unwrap_or(&1);
            let rows = if shape.len() == 2 { shape[0] } else { 1 };
            let (sp, dp) = if shape.len() == 2 { (src_s[0] as i64, dst_s[0] as i64) } else { (0, 0) };
            let f = self.kernels.function(&SOURCE, &format!("copy_rows_{w}"))?;
            let (r64, c64) = (rows as i64, cols as i64);
            let grid = grid_stride(&self.dev.info, n.div_ceil(4), BLOCK);
            let mut l = stream.launch_builder(&f);
            l.arg(&src).arg(&dst).arg(&r64).arg(&c64).arg(&sp).arg(&dp);
            // SAFETY: the pitches and extents come from the tensors' shapes; every address is inside src / dst.
            return unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("copy"));
        }
        // The last axis contiguous on both sides: whole rows, vectorised, placed by their outer index.
        if src_s.last() == Some(&1) && dst_s.last() == Some(&1) {
            let k = shape.len() - 1;
            let d = Dims::new("copy", &shape[..k], &src_s[..k], &dst_s[..k])?;
            let f = self.kernels.function(&SOURCE, &format!("copy_nd_rows_{w}"))?;
            let (r64, c64) = ((n / shape[k]) as i64, shape[k] as i64);
            let grid = grid_stride(&self.dev.info, n.div_ceil(4), BLOCK);
            let mut l = stream.launch_builder(&f);
            l.arg(&src).arg(&dst).arg(&r64).arg(&c64).arg(&d);
            // SAFETY: rows x cols elements at the offsets the strides give, all inside src / dst by construction.
            return unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("copy"));
        }
        let d = Dims::new("copy", &shape, src_s, dst_s)?;
        let f = self.kernels.function(&SOURCE, &format!("copy_nd_{w}"))?;
        let n64 = n as i64;
        let grid = grid_stride(&self.dev.info, n, BLOCK);
        let mut l = stream.launch_builder(&f);
        l.arg(&src).arg(&dst).arg(&n64).arg(&d);
        // SAFETY: as above.
        unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("copy"))
    }

    /// out axis i = input axis perm[i].
    pub(crate) fn transpose(
        &self,
        perm: &[usize],
        x: &TensorDesc,
        xb: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let d = x.shape.dims();
        let xs = contiguous(d);
        let shape: Vec<usize> = perm.iter().map(|&p| d[p]).collect();
        let src: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        let dst = contiguous(&shape);
        self.copy_strided(x, &shape, xb.device_ptr(), src, out.device_ptr(), dst)
    }

    /// start..end along axis.
    pub(crate) fn slice(
        &self,
        axis: usize,
        start: usize,
        x: &TensorDesc,
        out_desc: &TensorDesc,
        xb: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let xs = contiguous(x.shape.dims());
        let base = xb.device_ptr() + (start * xs[axis] * x.dtype.size()) as u64;
        let shape = out_desc.shape.dims().to_vec();
        let dst = contiguous(&shape);
        self.copy_strided(x, &shape, base, xs, out.device_ptr(), dst)
    }

    /// Joins inputs along axis.
    pub(crate) fn concat(
        &self,
        axis: usize,
        ins: &[TensorDesc],
        out_desc: &TensorDesc,
        bufs: &[&CudaBuffer],
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let os = contiguous(out_desc.shape.dims());
        let mut offset = 0;
        for (d, b) in ins.iter().zip(bufs) {
            let shape = d.shape.dims().to_vec();
            let dst = out.device_ptr() + (offset * os[axis] * d.dtype.size()) as u64;
            self.copy_strided(d, &shape, b.device_ptr(), contiguous(&shape), dst, os.clone())?;
            offset += shape[axis];
        }
        Ok(())
    }
}
