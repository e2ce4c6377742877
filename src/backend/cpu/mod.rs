//! The CPU backend: every op, multithreaded with rayon. It is the fallback when no GPU is present and the
//! reference every GPU kernel is tested against.
//!
//! Half types (f16, bf16) are widened to f32, computed in f32 and rounded once on output. Buffers may be longer
//! than the descriptor they are used with (the memory planner reuses them): kernels touch only the first
//! `numel` elements.

mod amx;
mod attention;
mod buffer;
mod elementwise;
mod embedding;
mod fused;
mod layout;
mod math;
mod matmul;
mod norm;
pub mod op_times;
mod reduce;
mod simd;
mod softmax;

use crate::backend::{Backend, OpCall};
use crate::error::{Error, Result};
use crate::graph::{Op, TensorDesc};
use crate::tensor::{HostVec, Tensor};

pub use amx::{enabled as amx_enabled, present as amx_present, turned_off as amx_turned_off};
pub use math::{gelu_erf, gelu_tanh};

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

    fn download(&self, buf: &CpuBuffer, desc: &TensorDesc) -> Result<Tensor> {
        buffer::check(buf, desc, "download")?;
        let n = desc.shape.numel();
        match buf {
            CpuBuffer::Shared(t) if t.numel() == n => t.reshape(desc.shape.clone()),
            _ => {
                let bytes = &buffer::bytes(buf)[..n * desc.dtype.size()];
                Tensor::from_host_vec(HostVec::from_bytes(desc.dtype, bytes)?, desc.shape.clone())
            }
        }
    }

    fn into_tensor(&self, buf: CpuBuffer, desc: &TensorDesc) -> Result<Tensor> {
        buffer::check(&buf, desc, "into_tensor")?;
        let n = desc.shape.numel();
        match buf {
            CpuBuffer::Owned(mut hv) => {
                // A reused, larger buffer gives back what the output does not need.
                crate::with_host_vec!(&mut hv, v => {
                    v.truncate(n);
                    if v.capacity() > 2 * n {
                        v.shrink_to_fit();
                    }
                });
                Tensor::from_host_vec(hv, desc.shape.clone())
            }
            shared => self.download(&shared, desc),
        }
    }

    fn poison(&self, buf: &mut CpuBuffer, desc: &TensorDesc) -> Result<()> {
        let hv = buffer::output(buf, desc);
        match hv {
            HostVec::F32(v) => v.fill(f32::NAN),
            HostVec::F16(v) => v.fill(half::f16::NAN),
            HostVec::BF16(v) => v.fill(half::bf16::NAN),
            HostVec::I64(v) => v.fill(-1),
            HostVec::U32(v) => v.fill(u32::MAX),
        }
        Ok(())
    }

    fn execute(&self, call: &OpCall<'_>, inputs: &[&CpuBuffer], out: &mut CpuBuffer) -> Result<()> {
        let name = call.op.name();
        if inputs.len() != call.inputs.len() {
            return Err(Error::Graph(format!(
                "{name}: {} buffers given for {} input descriptors",
                inputs.len(),
                call.inputs.len()
            )));
        }
        for (b, d) in inputs.iter().zip(call.inputs) {
            buffer::check(b, d, name)?;
        }
        let ins = call.inputs;
        let od = call.output;
        let hv = buffer::output(out, od);
        let started = op_times::enabled().then(std::time::Instant::now);
        let result = match call.op {
            Op::Input { .. } | Op::Constant { .. } => {
                Err(Error::Graph(format!("{name} nodes are not executed; the executor binds their buffers")))
            }
            Op::MatMul { transpose_a, transpose_b } => {
                matmul::matmul(inputs[0], &ins[0], inputs[1], &ins[1], *transpose_a, *transpose_b, hv, od)
            }
            Op::Binary(op) => elementwise::binary(*op, inputs[0], &ins[0], inputs[1], &ins[1], hv, od),
            Op::Gelu(kind) => elementwise::gelu(*kind, inputs[0], &ins[0], hv, od),
            Op::Silu => elementwise::silu(inputs[0], &ins[0], hv, od),
            Op::Cast { .. } => elementwise::cast(inputs[0], &ins[0], hv, od),
            Op::LayerNorm { eps } => norm::layer_norm(inputs, ins, *eps, hv, od),
            Op::RmsNorm { eps } => norm::rms_norm(inputs, ins, *eps, hv, od),
            Op::Softmax => softmax::softmax(inputs[0], &ins[0], hv, od),
            Op::Attention { scale, causal } => attention::attention(inputs, ins, *scale, *causal, hv, od),
            Op::PackedAttention { scale, causal, heads, kv_heads } => {
                attention::packed_attention(inputs, ins, *scale, *causal, *heads, *kv_heads, hv, od)
            }
            Op::Embedding => embedding::embedding(inputs[0], &ins[0], inputs[1], &ins[1], hv, od),
            Op::Reshape { .. } => layout::copy(inputs[0], &ins[0], hv, od),
            Op::Transpose { perm } => layout::transpose(inputs[0], &ins[0], perm, hv, od),
            Op::Slice { axis, start, end } => layout::slice(inputs[0], &ins[0], *axis, *start, *end, hv, od),
            Op::Concat { axis } => layout::concat(inputs, ins, *axis, hv, od),
            Op::Reduce { kind, axis, .. } => reduce::reduce(*kind, *axis, inputs[0], &ins[0], hv, od),
            Op::FusedLinearAdd { transpose_b } => fused::linear(inputs, ins, *transpose_b, None, hv, od),
            Op::FusedLinearAddGelu { transpose_b, gelu } => {
                fused::linear(inputs, ins, *transpose_b, Some(*gelu), hv, od)
            }
            Op::FusedLinearAddResidual { transpose_b } => fused::linear_residual(inputs, ins, *transpose_b, hv, od),
        };
        if let Some(t) = started {
            op_times::record(format!("{name} {}", od.shape), t.elapsed());
        }
        result
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
