//! The CUDA backend (placeholder until the backend lands: reports that no GPU is available).

pub mod matmul;

pub use crate::exec::NoGpu as CudaBackend;

impl CudaBackend {
    /// Always unavailable in this placeholder.
    pub fn new(_ordinal: usize) -> crate::Result<CudaBackend> {
        Err(crate::Error::GpuUnavailable("the CUDA backend is not built in yet".into()))
    }
}
