//! The CPU backend: every op, multithreaded with rayon. It is the fallback when no GPU is present and the
//! reference every GPU kernel is tested against.

use crate::backend::{Backend, OpCall};
use crate::error::{Error, Result};
use crate::graph::TensorDesc;
use crate::tensor::{HostVec, Tensor};

/// A buffer in host memory: an owned vector, or a shared tensor (inputs and weights are not copied).
#[derive(Debug)]
pub enum CpuBuffer {
    /// Memory the backend owns and may write.
    Owned(HostVec),
    /// A caller's tensor, read only.
    Shared(Tensor),
}

/// The CPU device.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend (uses rayon's global thread pool).
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    type Buffer = CpuBuffer;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<CpuBuffer> {
        Ok(CpuBuffer::Owned(HostVec::zeros(desc.dtype, desc.shape.numel())))
    }

    fn upload(&self, tensor: &Tensor) -> Result<CpuBuffer> {
        Ok(CpuBuffer::Shared(tensor.clone()))
    }

    fn download(&self, _buf: &CpuBuffer, _desc: &TensorDesc) -> Result<Tensor> {
        Err(Error::Unsupported { backend: "cpu", what: "download (not yet written)".into() })
    }

    fn poison(&self, _buf: &mut CpuBuffer, _desc: &TensorDesc) -> Result<()> {
        Err(Error::Unsupported { backend: "cpu", what: "poison (not yet written)".into() })
    }

    fn execute(&self, call: &OpCall<'_>, _inputs: &[&CpuBuffer], _out: &mut CpuBuffer) -> Result<()> {
        Err(Error::Unsupported { backend: "cpu", what: call.op.name().to_string() })
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
