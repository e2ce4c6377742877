//! Launcher of embedding.cu: row gather by u32 or i64 ids. Out-of-range ids are clamped on the device (never read
//! out of bounds) and reported as an error at the next `synchronize` or `download`.

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::launch::cfg;
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::TensorDesc;
use crate::tensor::DType;

/// The source.
pub(crate) static SOURCE: KernelSource = KernelSource {
    name: "embedding.cu",
    text: include_str!("kernels/embedding.cu"),
    common: true,
    arch_specific: false,
};

impl CudaBackend {
    /// out[i, :] = table[ids[i], :].
    pub(crate) fn embedding(
        &self,
        table: &TensorDesc,
        ids: &TensorDesc,
        tb: &CudaBuffer,
        ib: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let (vocab, dim) = (table.shape.dims()[0], table.shape.dims()[1]);
        let count = ids.shape.numel();
        if count == 0 || dim == 0 {
            return Ok(());
        }
        if vocab == 0 {
            return Err(Error::arg("Embedding", "the table has no rows"));
        }
        let i = match ids.dtype {
            DType::U32 => "u32",
            DType::I64 => "i64",
            d => return Err(Error::DTypeMismatch { op: "Embedding", expected: "u32 or i64 ids".into(), got: d }),
        };
        let w = match table.dtype.size() {
            2 => "b2",
            4 => "b4",
            _ => "b8",
        };
        let f = self.kernels.function(&SOURCE, &format!("embedding_{i}_{w}"))?;
        let (pt, pi, po, flag) = (tb.device_ptr(), ib.device_ptr(), out.device_ptr(), self.flag_ptr());
        let (c64, v64, d64) = (count as i64, vocab as i64, dim as i64);
        let grid = count.min(65535 * 16) as u32;
        let block = if dim >= 512 { 128 } else { 64 };
        let mut l = self.dev.stream.launch_builder(&f);
        l.arg(&pt).arg(&pi).arg(&po).arg(&c64).arg(&v64).arg(&d64).arg(&flag);
        // SAFETY: table holds vocab*dim elements, ids count, out count*dim; ids are clamped to [0, vocab).
        unsafe { l.launch(cfg(grid, block)) }.map_err(super::launch_err("embedding"))?;
        // Armed after queueing: a check that sees the flag armed reads it after this kernel in stream order.
        self.arm_flag();
        Ok(())
    }
}
