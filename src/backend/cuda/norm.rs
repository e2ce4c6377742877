//! Launcher of norm.cu: LayerNorm, RmsNorm and Softmax over the last axis.
//!
//! Width n picks the shape of the work: n <= 256 a warp per row holding 8 values a lane; n <= 1024 a warp per row
//! holding 32; n <= 8192 a block per row holding 8 a thread; n <= 32768 a block per row holding 32; wider rows
//! stream through memory. 16-byte loads when n is a multiple of the vector width.

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::elementwise::suffix;
use super::launch::cfg;
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::TensorDesc;

/// The source.
pub(crate) static SOURCE: KernelSource =
    KernelSource { name: "norm.cu", text: include_str!("kernels/norm.cu"), common: true, arch_specific: false };

/// Which row-wise op.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RowOp {
    LayerNorm,
    RmsNorm,
    Softmax,
}

impl CudaBackend {
    /// Runs a row-wise op. `w`/`b` are the weight and bias (unused ones may be any buffer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rowwise(
        &self,
        op: RowOp,
        eps: f32,
        desc: &TensorDesc,
        x: &CudaBuffer,
        w: Option<&CudaBuffer>,
        b: Option<&CudaBuffer>,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let n = desc.shape.last_dim();
        let rows = desc.shape.rows();
        if n == 0 || rows == 0 {
            return Ok(());
        }
        let name = match op {
            RowOp::LayerNorm => "layernorm",
            RowOp::RmsNorm => "rmsnorm",
            RowOp::Softmax => "softmax",
        };
        let sfx = suffix(desc.dtype)?;
        let vec = n % (16 / desc.dtype.size()) == 0;
        let v = if vec { "v" } else { "s" };
        let (px, po) = (x.device_ptr(), out.device_ptr());
        let pw = w.map_or(px, |w| w.device_ptr());
        let pb = b.map_or(px, |b| b.device_ptr());
        let (rows64, n32) = (rows as i64, n as i32);
        // (kernel tag, threads per row, threads per block)
        let round32 = |t: usize| t.div_ceil(32) * 32;
        let plan = if n <= 256 {
            Some(("r8", 32, 256))
        } else if n <= 1024 {
            Some(("r32", 32, 128))
        } else if n <= 8192 {
            let g = round32(n.div_ceil(8));
            Some(("r8", g, g))
        } else if n <= 32768 {
            let g = round32(n.div_ceil(32));
            Some(("r32", g, g))
        } else {
            None
        };
        if rows > i32::MAX as usize {
            return Err(Error::Unsupported { backend: "cuda", what: format!("{name} over more than 2^31 rows") });
        }
        let stream = &self.dev.stream;
        match plan {
            Some((tag, g, block)) => {
                let f = self.kernels.function(&SOURCE, &format!("{name}_{sfx}_{tag}{v}"))?;
                let rows_per_block = block / g;
                let grid = rows.div_ceil(rows_per_block);
                let g32 = g as i32;
                let mut l = stream.launch_builder(&f);
                l.arg(&px).arg(&pw).arg(&pb).arg(&po).arg(&rows64).arg(&n32).arg(&eps).arg(&g32);
                // SAFETY: x and out hold rows*n elements, w and b hold n (checked by `execute`); each group reads
                // and writes only its own row.
                unsafe { l.launch(cfg(grid as u32, block as u32)) }.map(drop).map_err(super::launch_err(name))
            }
            None => {
                let f = self.kernels.function(&SOURCE, &format!("{name}_{sfx}_stream"))?;
                let mut l = stream.launch_builder(&f);
                l.arg(&px).arg(&pw).arg(&pb).arg(&po).arg(&rows64).arg(&n32).arg(&eps);
                // SAFETY: as above; one block per row.
                unsafe { l.launch(cfg(rows as u32, 1024)) }.map(drop).map_err(super::launch_err(name))
            }
        }
    }
}
