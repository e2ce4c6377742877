//! The backend contract: the small trait every device implements. Backends know nothing of graphs; the executor
//! drives them one node at a time.

pub mod cpu;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda;

use crate::error::Result;
use crate::graph::{Op, TensorDesc};
use crate::tensor::Tensor;

/// One node to run: the op with its operands' and result's descriptors.
#[derive(Clone, Copy, Debug)]
pub struct OpCall<'a> {
    /// The operation.
    pub op: &'a Op,
    /// Descriptors of the inputs, in the op's order.
    pub inputs: &'a [TensorDesc],
    /// Descriptor of the output.
    pub output: &'a TensorDesc,
}

/// A device that can hold tensors and run ops on them.
///
/// A buffer may be larger than the descriptor it is used with (the memory planner reuses buffers); backends read
/// and write only the first `desc.shape.numel()` elements. Work may be queued asynchronously: `download` and
/// `synchronize` wait for it.
pub trait Backend: Send + Sync {
    /// Memory owned by this device.
    type Buffer: Send + Sync;

    /// Short name ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// The device's own name, used to key cached calibration ("cpu", "NVIDIA H100 80GB HBM3", ...).
    fn device_name(&self) -> String {
        self.name().to_string()
    }

    /// A buffer able to hold `desc` (contents unspecified).
    fn alloc(&self, desc: &TensorDesc) -> Result<Self::Buffer>;

    /// Copies a host tensor to the device (the CPU may share it without copying).
    fn upload(&self, tensor: &Tensor) -> Result<Self::Buffer>;

    /// Copies a buffer back to a host tensor of `desc`.
    fn download(&self, buf: &Self::Buffer, desc: &TensorDesc) -> Result<Tensor>;

    /// Turns a buffer that is no longer needed into a host tensor (the CPU moves instead of copying).
    // Named for what happens to the buffer (it is consumed), not to `self`.
    #[allow(clippy::wrong_self_convention)]
    fn into_tensor(&self, buf: Self::Buffer, desc: &TensorDesc) -> Result<Tensor> {
        self.download(&buf, desc)
    }

    /// Fills a buffer with NaN (floats) or all-ones bits (integers), so tests see elements a kernel did not write.
    fn poison(&self, buf: &mut Self::Buffer, desc: &TensorDesc) -> Result<()>;

    /// Runs one op: reads `inputs`, writes `out`.
    fn execute(&self, call: &OpCall<'_>, inputs: &[&Self::Buffer], out: &mut Self::Buffer) -> Result<()>;

    /// Waits until all queued work is done.
    fn synchronize(&self) -> Result<()>;

    /// The buffer pool's counters, for devices whose memory comes from a [`crate::pool::Pool`].
    fn pool_statistics(&self) -> Option<crate::pool::PoolStats> {
        None
    }

    /// Returns cached device memory to the device (the executor calls it before retrying after running out).
    fn release_cache(&self) {}

    /// Copies a host tensor into an existing buffer that holds at least its elements (replay reuses input
    /// buffers, whose addresses a recording has baked in).
    fn write(&self, buf: &mut Self::Buffer, tensor: &Tensor) -> Result<()> {
        let _ = (buf, tensor);
        Err(crate::Error::Unsupported { backend: self.name(), what: "writing into an existing buffer".into() })
    }

    /// Whether [`Backend::begin_recording`] can work on this device (checked before buffers are set up for it).
    fn supports_recording(&self) -> bool {
        false
    }

    /// Starts recording queued work instead of running it (a CUDA graph capture). `Ok(false)`: this device cannot
    /// record, and nothing changed. Work that other threads queue meanwhile must not land in the recording: the
    /// backend makes them wait until [`Backend::end_recording`] (the CUDA backend does so with a gate).
    fn begin_recording(&self) -> Result<bool> {
        Ok(false)
    }

    /// Ends the recording started by [`Backend::begin_recording`] and returns it, ready to replay. Nothing recorded
    /// has run yet.
    fn end_recording(&self) -> Result<Box<dyn Replay>> {
        Err(crate::Error::Unsupported { backend: self.name(), what: "recording".into() })
    }
}

/// Recorded device work that can be run again with one call, reading and writing the same buffers.
pub trait Replay: Send + Sync {
    /// Queues the recorded work once more.
    fn replay(&self) -> Result<()>;
}
