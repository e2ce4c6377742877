//! Launcher of attention.cu (first, simple version: one warp per query row; the ABI is in
//! notes/ATTENTION_ABI.md and the attention helper replaces both files).

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::elementwise::suffix;
use super::launch::cfg;
use super::{CudaBackend, CudaBuffer};
use crate::backend::OpCall;
use crate::error::{Error, Result};
use crate::graph::Op;

/// The source.
pub(crate) static SOURCE: KernelSource =
    KernelSource { name: "attention.cu", text: include_str!("kernels/attention.cu"), common: false };

/// Largest head size of this version (32 lanes x 8 values).
const MAX_HEAD_DIM: usize = 256;

/// Runs `Op::Attention`: inputs q, k, v and an optional additive mask.
pub(crate) fn launch(dev: &CudaBackend, call: &OpCall<'_>, inputs: &[&CudaBuffer], out: &mut CudaBuffer) -> Result<()> {
    let Op::Attention { scale, causal } = call.op else {
        return Err(Error::Graph("attention::launch called for another op".into()));
    };
    let (q, k, v) = (&call.inputs[0], &call.inputs[1], &call.inputs[2]);
    let (qd, kd, vd) = (q.shape.dims(), k.shape.dims(), v.shape.dims());
    let (batch, hq, sq, d) = (qd[0], qd[1], qd[2], qd[3]);
    let (hkv, skv, dv) = (kd[1], kd[2], vd[3]);
    if d > MAX_HEAD_DIM || dv > MAX_HEAD_DIM {
        return Err(Error::Unsupported { backend: "cuda", what: format!("attention head size over {MAX_HEAD_DIM}") });
    }
    let rows = batch * hq * sq;
    if rows == 0 || dv == 0 {
        return Ok(());
    }
    // Mask strides: broadcast the mask's shape (right-aligned, up to 4-D) to [b, hq, sq, skv].
    let (pm, ms) = match (call.inputs.get(3), inputs.get(3)) {
        (Some(md), Some(mb)) => {
            let full = crate::tensor::Shape::new([batch, hq, sq, skv]);
            let s = md.shape.broadcast_strides(&full);
            (mb.device_ptr(), [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64])
        }
        _ => (0u64, [0i64; 4]),
    };
    let f = dev.kernels.function(&SOURCE, &format!("attention_{}", suffix(q.dtype)?))?;
    let ints: [i32; 7] = [batch as i32, hq as i32, hkv as i32, sq as i32, skv as i32, d as i32, dv as i32];
    let (pq, pk, pv, po) = (inputs[0].device_ptr(), inputs[1].device_ptr(), inputs[2].device_ptr(), out.device_ptr());
    let c = *causal as i32;
    let warps = 4;
    let grid = rows.div_ceil(warps) as u32;
    let mut l = dev.dev.stream.launch_builder(&f);
    l.arg(&pq).arg(&pk).arg(&pv).arg(&pm).arg(&po);
    for x in &ints {
        l.arg(x);
    }
    for x in &ms {
        l.arg(x);
    }
    l.arg(scale).arg(&c);
    // SAFETY: q, k, v, out are contiguous with the shapes in `call`; mask strides come from its broadcast shape.
    unsafe { l.launch(cfg(grid, 32 * warps as u32)) }.map(drop).map_err(super::launch_err("attention"))
}
