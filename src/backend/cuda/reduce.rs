//! Launcher of reduce.cu: sum, mean or max over one axis.

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::elementwise::suffix;
use super::launch::{cfg, grid_stride, BLOCK};
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::{ReduceKind, TensorDesc};

/// The source.
pub(crate) static SOURCE: KernelSource =
    KernelSource { name: "reduce.cu", text: include_str!("kernels/reduce.cu"), common: true, arch_specific: false };

impl CudaBackend {
    /// Reduces `axis` of `desc`.
    pub(crate) fn reduce(
        &self,
        kind: ReduceKind,
        axis: usize,
        desc: &TensorDesc,
        x: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let d = desc.shape.dims();
        let outer: usize = d[..axis].iter().product();
        let r = d[axis];
        let inner: usize = d[axis + 1..].iter().product();
        if outer * inner == 0 {
            return Ok(());
        }
        let k = match kind {
            ReduceKind::Sum => "sum",
            ReduceKind::Mean => "mean",
            ReduceKind::Max => "max",
        };
        let sfx = suffix(desc.dtype)?;
        let (px, po) = (x.device_ptr(), out.device_ptr());
        let (o64, r64, i64_) = (outer as i64, r as i64, inner as i64);
        if outer > i32::MAX as usize {
            return Err(Error::Unsupported { backend: "cuda", what: "Reduce over more than 2^31 rows".into() });
        }
        let stream = &self.dev.stream;
        if inner == 1 {
            // Few long rows: a block per row; many rows: a warp per row.
            let (g, block) =
                if outer < 4 * self.dev.info.sm_count as usize && r > 1024 { (1024, 1024) } else { (32, 256) };
            let grid = outer.div_ceil(block / g);
            let f = self.kernels.function(&SOURCE, &format!("reduce_rows_{k}_{sfx}"))?;
            let g32 = g as i32;
            let mut l = stream.launch_builder(&f);
            l.arg(&px).arg(&po).arg(&o64).arg(&r64).arg(&g32);
            // SAFETY: x holds outer*r elements, out holds outer.
            unsafe { l.launch(cfg(grid as u32, block as u32)) }.map(drop).map_err(super::launch_err("reduce"))
        } else {
            let f = self.kernels.function(&SOURCE, &format!("reduce_cols_{k}_{sfx}"))?;
            let grid = grid_stride(&self.dev.info, outer * inner, BLOCK);
            let mut l = stream.launch_builder(&f);
            l.arg(&px).arg(&po).arg(&o64).arg(&r64).arg(&i64_);
            // SAFETY: x holds outer*r*inner elements, out holds outer*inner.
            unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("reduce"))
        }
    }
}
