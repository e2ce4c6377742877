//! Launcher of `kernels/attention.cu`, the fused attention kernel (its header comment has the ABI).
//!
//! [`run`] launches the kernel on strided operands ([`AttnOperands`], e.g. q/k/v read straight out of a packed QKV
//! projection) after checking them; [`launch`] runs `Op::Attention` (contiguous operands) through it. [`plan`]
//! picks the code path from the dtype, the head sizes, the operands' alignment (pointers and strides) and the
//! architecture, and with it the kernel's entry point, the grid and the dynamic shared memory:
//! - tensor cores (f16/bf16, `d == dv` in {32, 64, 128}, every q/k/v row start 16-byte aligned, out 4-byte aligned
//!   with even strides, sm_80+): 128 query rows per block, 16 KiB (d = 32), 32 KiB (d = 64) or 64 KiB (d = 128)
//!   of shared memory plus a mask row per stage; launched through the kernel's
//!   entry point of that path, `attention_<dtype>_d<d>`, so each path gets its own register allocation;
//! - register-tiled f32 path (f32, `d == dv` in {32, 64, 128}, q/k/v rows 16-byte aligned, sm_80+): exact FP32 FMA
//!   flash attention, likewise through its own entry point per head size (`attention_f32_d32`/`_d64`/`_d128`);
//!   128 (d = 32) or 64 query rows per block, 32 keys per tile, 51 KiB (d = 32), 59 KiB (d = 64) or 107 KiB
//!   (d = 128) of shared memory (see [`f32_tile`]);
//! - generic FMA path (everything else): 32 query rows per block, shared memory from the head sizes.
//!
//! Grid: (query blocks, batch × query heads); 128 threads per block. The standalone check and benchmark of the
//! kernel (same geometry rules) live in tools/attention/.

use cudarc::driver::sys::CUfunction_attribute_enum as FnAttr;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::compile::KernelSource;
use super::elementwise::suffix;
use super::{CudaBackend, CudaBuffer};
use crate::backend::OpCall;
use crate::error::{Error, Result};
use crate::graph::Op;
use crate::tensor::DType;

/// The source.
pub(crate) static SOURCE: KernelSource = KernelSource {
    name: "attention.cu",
    text: include_str!("kernels/attention.cu"),
    common: false,
    arch_specific: false,
};

/// The sm_90a (wgmma) kernel for head size 64: compiled for `sm_90a` on compute capability 9.0 and used only there.
pub(crate) static SOURCE_WGMMA: KernelSource = KernelSource {
    name: "attention_wgmma.cu",
    text: include_str!("kernels/attention_wgmma.cu"),
    common: false,
    arch_specific: true,
};

/// Query rows per block and dynamic shared memory of the wgmma path (`wg::D64_ROWS`, `wg::D64_SMEM`: Q, two K and
/// two V stages of 128 keys, 128 bytes a row, plus 1 KiB for 1024-byte alignment).
const WGMMA_ROWS: usize = 64;
const WGMMA_SHARED: usize = (64 + 4 * 128) * 128 + 1024;

/// Threads per block of every path.
const THREADS: u32 = 128;
/// Dynamic shared memory a block gets without raising the function's limit.
const DEFAULT_SHARED: usize = 48 * 1024;
/// Query rows per block of the generic path (`GEN_ROWS` in the kernel).
const GEN_ROWS: usize = 32;

/// The kernel's code paths (each fast path has one entry point per head size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// f16/bf16 with head size 64 on Hopper's wgmma, no mask: `attention_<dtype>_d64_wg` (attention_wgmma.cu).
    Wgmma,
    /// f16/bf16 on tensor cores (mma.sync): `attention_<dtype>_d<d>`.
    TensorCores,
    /// Exact f32, register-tiled: `attention_f32_d<d>`.
    F32Tiled,
    /// Everything else: `attention_<dtype>`.
    Generic,
}

/// Launch geometry of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The kernel's path (and with it the entry point).
    pub path: Path,
    /// Query rows per block.
    pub rows: usize,
    /// Dynamic shared memory per block, in bytes.
    pub shared: usize,
}

/// Floats of shared memory the generic path needs with `tk` keys per tile (`gen_smem_floats` in the kernel).
fn generic_floats(d: usize, dv: usize, tk: usize) -> usize {
    let dpad = d.div_ceil(4) * 4 + 4;
    let dvp = dv.div_ceil(4) * 4;
    GEN_ROWS * dpad + tk * dpad + tk * dvp + GEN_ROWS * (tk + 1) + GEN_ROWS * (dvp + 4)
}

/// Keys per tile of the generic path (`gen_tk` in the kernel): the largest of 32/16/8/4 that fits the default
/// shared memory, else 4.
fn generic_tk(d: usize, dv: usize) -> usize {
    [32, 16, 8].into_iter().find(|&tk| generic_floats(d, dv, tk) * 4 <= DEFAULT_SHARED).unwrap_or(4)
}

/// Tile of the kernel's tensor-core path for head size `d`: (query rows per block, keys per tile, whether the Q
/// tile is staged in the second K/V stage instead of memory of its own). `None`: the kernel has no such path.
fn tensor_core_tile(d: usize) -> Option<(usize, usize, bool)> {
    match d {
        // Q fragments live in registers, so the Q tile (128 x d) only passes through the second stage.
        32 | 64 => Some((128, 64, true)),
        128 => Some((128, 32, false)),
        _ => None,
    }
}

/// Tile of the f32 register-tiled path for head size `d` (`F32Tile` and the `F32_D*_TM`/`_TN` defaults in the
/// kernel): (query rows per thread, keys per thread). The block is 16 x 8 threads, so it holds 16 × rows query rows
/// and 8 × keys keys per tile. `None`: f32 with this head size takes the generic path.
fn f32_tile(d: usize) -> Option<(usize, usize)> {
    match d {
        32 => Some((8, 4)),
        64 | 128 => Some((4, 4)),
        _ => None,
    }
}

/// The f32 register-tiled path's geometry, where it applies (f32, `d == dv` with a tile, aligned, sm_80+ for
/// cp.async): query rows per block and dynamic shared memory (`F32Tile::SMEM_BYTES` in the kernel).
fn f32_tiled(dtype: DType, d: usize, dv: usize, aligned16: bool, compute_major: i32) -> Option<Plan> {
    if dtype != DType::F32 || d != dv || !aligned16 || compute_major < 8 {
        return None;
    }
    let (tm, tn) = f32_tile(d)?;
    let (rows, keys) = (16 * tm, 8 * tn);
    // Q transposed, two stages of K (rows padded by 4 floats) and V, and every warp's P ([keys][4 * tm + 4]).
    let floats = d * rows + 2 * (keys * (d + 4) + keys * d) + 4 * keys * (4 * tm + 4);
    Some(Plan { path: Path::F32Tiled, rows, shared: floats * 4 })
}

/// What decides the path besides dtype and head sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Every q/k/v row start is 16-byte aligned (pointers and strides).
    pub aligned16: bool,
    /// out is 4-byte aligned with even strides (the tensor-core paths' stores).
    pub out_pairs: bool,
    /// A mask is given.
    pub masked: bool,
    /// The device's compute capability.
    pub cc: (i32, i32),
}

/// The geometry the kernel expects for these operands (the kernel makes the same path choice on the device).
pub(crate) fn plan(dtype: DType, d: usize, dv: usize, t: Target) -> Plan {
    let (aligned16, compute_major) = (t.aligned16, t.cc.0);
    let half = matches!(dtype, DType::F16 | DType::BF16);
    // wgmma exists on 9.0 only (the module is built for sm_90a there). With a mask the mma.sync kernel is faster:
    // it streams a padding mask through shared memory, the wgmma kernel reads masks per score.
    if half && d == 64 && dv == 64 && aligned16 && t.out_pairs && !t.masked && t.cc == (9, 0) {
        return Plan { path: Path::Wgmma, rows: WGMMA_ROWS, shared: WGMMA_SHARED };
    }
    if half && d == dv && aligned16 && t.out_pairs && compute_major >= 8 {
        if let Some((rows, keys, q_in_stage)) = tensor_core_tile(d) {
            // Two stages of K and V tiles plus the Q tile, and a mask row per stage; 2-byte elements.
            let q_tile = if q_in_stage { 0 } else { rows * d };
            return Plan { path: Path::TensorCores, rows, shared: (q_tile + 4 * keys * d + 2 * keys) * 2 };
        }
    }
    if let Some(p) = f32_tiled(dtype, d, dv, aligned16, compute_major) {
        return p;
    }
    Plan { path: Path::Generic, rows: GEN_ROWS, shared: generic_floats(d, dv, generic_tk(d, dv)) * 4 }
}

/// One strided tensor operand of [`run`]: element (b, h, i, c) at `ptr` + (b·strides[0] + h·strides[1] +
/// i·strides[2] + c) elements, the last dimension contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttnOperand {
    /// Device address of element (0, 0, 0, 0).
    pub ptr: u64,
    /// Bytes readable (or, for the output, writable) from `ptr` on: [`run`] checks that every element the strides
    /// reach lies inside.
    pub bytes: usize,
    /// Element strides of batch, head and sequence row (non-negative).
    pub strides: [i64; 3],
}

impl AttnOperand {
    /// A contiguous [batch, heads, seq, dim] tensor at `ptr` of `bytes` bytes.
    pub fn contiguous(ptr: u64, bytes: usize, heads: usize, seq: usize, dim: usize) -> AttnOperand {
        let (h, s, d) = (heads as i64, seq as i64, dim as i64);
        AttnOperand { ptr, bytes, strides: [h * s * d, s * d, d] }
    }
}

/// The additive mask of [`run`]: element (b, h, i, j) of [batch, hq, sq, skv] at `ptr` + (b·strides[0] +
/// h·strides[1] + i·strides[2] + j·strides[3]) elements; stride 0 broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttnMask {
    /// Device address of element (0, 0, 0, 0).
    pub ptr: u64,
    /// Bytes readable from `ptr` on.
    pub bytes: usize,
    /// Element strides of batch, query head, query row and key (non-negative).
    pub strides: [i64; 4],
}

/// Everything one attention launch needs: `out[b,h,i,:] = softmax_j(scale · q[b,h,i,:]·k[b,g,j,:] +
/// mask[b,h,i,j]) v[b,g,j,:]` with kv head g = h / (hq / hkv), key j visible to query i only if
/// j <= i + (skv - sq) when `causal`. All operands have the element type `dtype` of [`run`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AttnOperands {
    /// Queries, [batch, hq, sq, d].
    pub q: AttnOperand,
    /// Keys, [batch, hkv, skv, d].
    pub k: AttnOperand,
    /// Values, [batch, hkv, skv, dv].
    pub v: AttnOperand,
    /// Output, [batch, hq, sq, dv]; must not overlap q, k, v or the mask.
    pub out: AttnOperand,
    /// Optional additive mask.
    pub mask: Option<AttnMask>,
    /// Batch size.
    pub batch: usize,
    /// Query heads (a multiple of `hkv`).
    pub hq: usize,
    /// Key/value heads.
    pub hkv: usize,
    /// Query rows.
    pub sq: usize,
    /// Keys.
    pub skv: usize,
    /// Head size of q and k.
    pub d: usize,
    /// Head size of v and out.
    pub dv: usize,
    /// Multiplies q·k.
    pub scale: f32,
    /// Causal masking, aligned to the end (see above).
    pub causal: bool,
}

/// Whether an operand's every row start is 16-byte aligned (`rows_aligned16` in the kernel).
fn rows_aligned16(o: &AttnOperand, elem: usize) -> bool {
    let e = (16 / elem) as i64;
    o.ptr % 16 == 0 && o.strides.iter().all(|s| s % e == 0)
}

/// Whether the output takes the tensor-core path's 4-byte stores (`out_pairs` in the kernel).
fn out_pairs(o: &AttnOperand) -> bool {
    o.ptr % 4 == 0 && o.strides.iter().all(|s| s % 2 == 0)
}

/// Checks that every element of a [dims] view with element strides `strides` (last one 1 for operands) lies in
/// `bytes` bytes from `ptr`, with `ptr` element-aligned and the strides non-negative.
fn check_view(what: &str, ptr: u64, bytes: usize, dims: &[usize], strides: &[i64], elem: usize) -> Result<()> {
    if ptr % elem as u64 != 0 {
        return Err(Error::Graph(format!("attention: {what} address {ptr:#x} is not aligned to its element size")));
    }
    if strides.iter().any(|&s| s < 0) {
        return Err(Error::Graph(format!("attention: {what} has negative strides {strides:?}")));
    }
    if dims.contains(&0) {
        return Ok(());
    }
    // Offset of the last element + 1, in u128 so that no product overflows.
    let end = dims.iter().zip(strides).map(|(&n, &s)| (n as u128 - 1) * s as u128).sum::<u128>() + 1;
    if end * elem as u128 > bytes as u128 {
        return Err(Error::Graph(format!(
            "attention: {what} of shape {dims:?} with strides {strides:?} reaches {} bytes, the buffer has {bytes}",
            end * elem as u128
        )));
    }
    Ok(())
}

/// Launches the attention kernel on strided operands (the kernel's ABI, see `kernels/attention.cu`), after
/// checking them: dtype f32/f16/bf16, `hq` a multiple of `hkv`, dimensions within the kernel's limits, every
/// element the strides reach inside its buffer. Fast paths need every q/k/v row start 16-byte aligned (and, for
/// tensor cores, even out strides); other layouts run on the generic path. Nothing is launched when the output is
/// empty.
pub(crate) fn run(dev: &CudaBackend, dtype: DType, ops: &AttnOperands) -> Result<()> {
    let &AttnOperands { batch, hq, hkv, sq, skv, d, dv, scale, causal, .. } = ops;
    let sfx = suffix(dtype)?;
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::Graph(format!("attention: unsupported dtype {dtype:?}")));
    }
    if batch * hq * sq == 0 || dv == 0 {
        return Ok(());
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(Error::Graph(format!("attention: {hq} query heads are not a multiple of {hkv} kv heads")));
    }
    let fits_i32 = [batch, hq, hkv, sq, skv, d, dv].iter().all(|&x| x <= i32::MAX as usize);
    if !fits_i32 || batch * hq > 65_535 {
        return Err(Error::Unsupported {
            backend: "cuda",
            what: format!("attention with batch x heads = {} (at most 65535) or a dimension over 2^31", batch * hq),
        });
    }
    let elem = dtype.size();
    let views = [
        ("q", &ops.q, [batch, hq, sq, d]),
        ("k", &ops.k, [batch, hkv, skv, d]),
        ("v", &ops.v, [batch, hkv, skv, dv]),
        ("out", &ops.out, [batch, hq, sq, dv]),
    ];
    for (what, o, dims) in &views {
        let st = [o.strides[0], o.strides[1], o.strides[2], 1];
        check_view(what, o.ptr, o.bytes, dims, &st, elem)?;
    }
    let (pm, ms) = match &ops.mask {
        Some(m) => {
            check_view("mask", m.ptr, m.bytes, &[batch, hq, sq, skv], &m.strides, elem)?;
            (m.ptr, m.strides)
        }
        None => (0u64, [0i64; 4]),
    };

    let info = &dev.dev.info;
    let in16 = [&ops.q, &ops.k, &ops.v].iter().all(|o| rows_aligned16(o, elem));
    let target = Target {
        aligned16: in16,
        out_pairs: out_pairs(&ops.out),
        masked: ops.mask.is_some(),
        cc: info.compute_capability,
    };
    let p = plan(dtype, d, dv, target);
    let limit = (info.max_shared_per_block_optin as usize).max(DEFAULT_SHARED);
    if p.shared > limit {
        return Err(Error::Unsupported {
            backend: "cuda",
            what: format!(
                "attention with head sizes {d}/{dv}: needs {} bytes of shared memory, the GPU has {limit}",
                p.shared
            ),
        });
    }

    let f = match p.path {
        Path::Wgmma => dev.kernels.function(&SOURCE_WGMMA, &format!("attention_{sfx}_d64_wg"))?,
        Path::TensorCores | Path::F32Tiled => dev.kernels.function(&SOURCE, &format!("attention_{sfx}_d{d}"))?,
        Path::Generic => dev.kernels.function(&SOURCE, &format!("attention_{sfx}"))?,
    };
    if p.shared > DEFAULT_SHARED {
        f.set_attribute(FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, p.shared as i32)
            .map_err(super::launch_err("attention (shared-memory limit)"))?;
    }
    let ints: [i32; 7] = [batch as i32, hq as i32, hkv as i32, sq as i32, skv as i32, d as i32, dv as i32];
    let strides: Vec<i64> = [&ops.q, &ops.k, &ops.v, &ops.out].iter().flat_map(|o| o.strides).collect();
    let c = causal as i32;
    let cfg = LaunchConfig {
        grid_dim: (sq.div_ceil(p.rows) as u32, (batch * hq) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: p.shared as u32,
    };
    let mut l = dev.dev.stream.launch_builder(&f);
    l.arg(&ops.q.ptr).arg(&ops.k.ptr).arg(&ops.v.ptr).arg(&pm).arg(&ops.out.ptr);
    for x in &ints {
        l.arg(x);
    }
    for x in &ms {
        l.arg(x);
    }
    for x in &strides {
        l.arg(x);
    }
    l.arg(&scale).arg(&c);
    // SAFETY: every element the kernel reads or writes (q, k, v, mask, out through their strides) was checked to
    // lie inside its buffer above; the grid and shared memory follow `plan`, which mirrors the kernel's own path
    // choice, and the argument list is the kernel's ABI.
    unsafe { l.launch(cfg) }.map(drop).map_err(super::launch_err("attention"))
}

/// Runs `Op::Attention`: inputs q, k, v (contiguous [batch, heads, seq, head_dim]) and an optional additive mask
/// broadcast to [batch, hq, sq, skv].
pub(crate) fn launch(dev: &CudaBackend, call: &OpCall<'_>, inputs: &[&CudaBuffer], out: &mut CudaBuffer) -> Result<()> {
    let Op::Attention { scale, causal } = call.op else {
        return Err(Error::Graph("attention::launch called for another op".into()));
    };
    if call.inputs.len() < 3 || inputs.len() < call.inputs.len() {
        return Err(Error::Graph("attention needs q, k, v (and an optional mask)".into()));
    }
    let (q, k, v) = (&call.inputs[0], &call.inputs[1], &call.inputs[2]);
    let (qd, kd, vd) = (q.shape.dims(), k.shape.dims(), v.shape.dims());
    if qd.len() != 4 || kd.len() != 4 || vd.len() != 4 {
        return Err(Error::Graph("attention operands must be [batch, heads, seq, head_dim]".into()));
    }
    let (batch, hq, sq, d) = (qd[0], qd[1], qd[2], qd[3]);
    let (hkv, skv, dv) = (kd[1], kd[2], vd[3]);
    let mask = match (call.inputs.get(3), inputs.get(3)) {
        (Some(md), Some(mb)) => {
            let full = crate::tensor::Shape::new([batch, hq, sq, skv]);
            let s = md.shape.broadcast_strides(&full);
            Some(AttnMask {
                ptr: mb.device_ptr(),
                bytes: mb.len(),
                strides: [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64],
            })
        }
        _ => None,
    };
    let ops = AttnOperands {
        q: AttnOperand::contiguous(inputs[0].device_ptr(), inputs[0].len(), hq, sq, d),
        k: AttnOperand::contiguous(inputs[1].device_ptr(), inputs[1].len(), hkv, skv, d),
        v: AttnOperand::contiguous(inputs[2].device_ptr(), inputs[2].len(), hkv, skv, dv),
        out: AttnOperand::contiguous(out.device_ptr(), out.len(), hq, sq, dv),
        mask,
        batch,
        hq,
        hkv,
        sq,
        skv,
        d,
        dv,
        scale: *scale,
        causal: *causal,
    };
    run(dev, q.dtype, &ops)
}

/// Runs `Op::PackedAttention`: input qkv `[batch, seq, (heads + 2 kv_heads) · d]` read in place (q, k and v are
/// strided views of it) and an optional mask; the output `[batch, seq, heads · d]` is written in place too.
pub(crate) fn launch_packed(
    dev: &CudaBackend,
    call: &OpCall<'_>,
    inputs: &[&CudaBuffer],
    out: &mut CudaBuffer,
) -> Result<()> {
    let Op::PackedAttention { scale, causal, heads, kv_heads } = *call.op else {
        return Err(Error::Graph("attention::launch_packed called for another op".into()));
    };
    let (Some(qkv), Some(buf)) = (call.inputs.first(), inputs.first()) else {
        return Err(Error::Graph("PackedAttention needs qkv (and an optional mask)".into()));
    };
    let [batch, seq, w] = qkv.shape.dims()[..] else {
        return Err(Error::Graph("PackedAttention: qkv must be [batch, seq, (heads + 2 kv_heads) * d]".into()));
    };
    let per_pos = heads + 2 * kv_heads;
    if kv_heads == 0 || w % per_pos != 0 {
        return Err(Error::Graph(format!("PackedAttention: rows of {w} do not split into {per_pos} heads")));
    }
    let d = w / per_pos;
    let elem = qkv.dtype.size();
    let (base, len) = (buf.device_ptr(), buf.len());
    // Head h of position i in batch b: q at (b·seq + i)·w + h·d; k and v likewise after the q and k heads.
    let strides = [(seq * w) as i64, d as i64, w as i64];
    let part = |first_head: usize| {
        let off = (first_head * d * elem).min(len);
        AttnOperand { ptr: base + off as u64, bytes: len - off, strides }
    };
    let mask = match (call.inputs.get(1), inputs.get(1)) {
        (Some(md), Some(mb)) => {
            let s = md.shape.broadcast_strides(&crate::tensor::Shape::new([batch, heads, seq, seq]));
            Some(AttnMask {
                ptr: mb.device_ptr(),
                bytes: mb.len(),
                strides: [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64],
            })
        }
        _ => None,
    };
    let row = heads * d;
    let ops = AttnOperands {
        q: part(0),
        k: part(heads),
        v: part(heads + kv_heads),
        out: AttnOperand {
            ptr: out.device_ptr(),
            bytes: out.len(),
            strides: [(seq * row) as i64, d as i64, row as i64],
        },
        mask,
        batch,
        hq: heads,
        hkv: kv_heads,
        sq: seq,
        skv: seq,
        d,
        dv: d,
        scale,
        causal,
    };
    run(dev, qkv.dtype, &ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked call (the wgmma path, unmasked only, stays out of these expectations) on compute capability major.0.
    fn tg(aligned16: bool, out_pairs: bool, major: i32) -> Target {
        Target { aligned16, out_pairs, masked: true, cc: (major, 0) }
    }

    #[test]
    fn wgmma_only_for_unmasked_head_size_64_on_hopper() {
        let t = Target { aligned16: true, out_pairs: true, masked: false, cc: (9, 0) };
        for dt in [DType::F16, DType::BF16] {
            assert_eq!(plan(dt, 64, 64, t), Plan { path: Path::Wgmma, rows: 64, shared: 74_752 });
            assert_eq!(plan(dt, 64, 64, Target { masked: true, ..t }).path, Path::TensorCores);
            assert_eq!(plan(dt, 64, 64, Target { cc: (8, 0), ..t }).path, Path::TensorCores);
            assert_eq!(plan(dt, 64, 64, Target { cc: (10, 0), ..t }).path, Path::TensorCores);
            assert_eq!(plan(dt, 64, 64, Target { aligned16: false, ..t }).path, Path::Generic);
            assert_eq!(plan(dt, 64, 64, Target { out_pairs: false, ..t }).path, Path::Generic);
            assert_eq!(plan(dt, 32, 32, t).path, Path::TensorCores);
            assert_eq!(plan(dt, 128, 128, t).path, Path::TensorCores);
        }
        assert_eq!(plan(DType::F32, 64, 64, t).path, Path::F32Tiled);
    }

    #[test]
    fn plan_picks_tensor_cores_only_where_the_kernel_does() {
        let p = plan(DType::BF16, 64, 64, tg(true, true, 9));
        assert_eq!(p, Plan { path: Path::TensorCores, rows: 128, shared: 32 * 1024 + 256 });
        let p = plan(DType::F16, 128, 128, tg(true, true, 8));
        assert_eq!(p, Plan { path: Path::TensorCores, rows: 128, shared: 64 * 1024 + 128 });
        for dt in [DType::F16, DType::BF16] {
            assert_eq!(
                plan(dt, 32, 32, tg(true, true, 9)),
                Plan { path: Path::TensorCores, rows: 128, shared: 16 * 1024 + 256 }
            );
        }
        for (dt, d, dv, al, cc) in [
            (DType::F32, 64, 64, false, 9),
            (DType::BF16, 64, 64, false, 9),
            (DType::BF16, 64, 32, true, 9),
            (DType::BF16, 80, 80, true, 9),
            (DType::F32, 32, 32, true, 7),
            (DType::F16, 32, 32, false, 9),
            (DType::BF16, 32, 32, true, 7),
            (DType::F16, 32, 64, true, 9),
            (DType::F16, 128, 128, true, 7),
        ] {
            let p = plan(dt, d, dv, tg(al, true, cc));
            assert_eq!(p.path, Path::Generic, "{dt:?} {d}/{dv} aligned {al} sm_{cc}x");
            assert_eq!(p.rows, GEN_ROWS);
        }
    }

    #[test]
    fn f32_tiled_path_matches_the_kernel_tiles() {
        // Sizes of F32Tile<D, TM, TN>::SMEM_BYTES for the kernel's defaults.
        assert_eq!(
            plan(DType::F32, 32, 32, tg(true, true, 9)),
            Plan { path: Path::F32Tiled, rows: 128, shared: 52_224 }
        );
        assert_eq!(
            plan(DType::F32, 64, 64, tg(true, true, 8)),
            Plan { path: Path::F32Tiled, rows: 64, shared: 60_416 }
        );
        assert_eq!(
            plan(DType::F32, 128, 128, tg(true, true, 9)),
            Plan { path: Path::F32Tiled, rows: 64, shared: 109_568 }
        );
        for (d, dv, al, cc) in
            [(32, 32, false, 9), (64, 32, true, 9), (80, 80, true, 9), (16, 16, true, 9), (64, 64, true, 7)]
        {
            assert_eq!(plan(DType::F32, d, dv, tg(al, true, cc)).rows, GEN_ROWS, "f32 {d}/{dv} aligned {al} sm_{cc}x");
        }
        assert!(f32_tiled(DType::BF16, 64, 64, true, 9).is_none());
    }

    #[test]
    fn generic_tiles_shrink_with_head_size() {
        assert_eq!(generic_tk(64, 64), 32);
        assert_eq!(generic_tk(128, 128), 8);
        assert_eq!(generic_tk(1, 1), 32);
        // d = 200, dv = 136 needs more than 48 KiB even with 4 keys: the launcher raises the limit.
        assert_eq!(generic_tk(200, 136), 4);
        assert!(plan(DType::F32, 200, 136, tg(true, true, 9)).shared > DEFAULT_SHARED);
        assert!(plan(DType::F32, 64, 64, tg(false, true, 9)).shared <= DEFAULT_SHARED);
    }

    #[test]
    fn tensor_cores_need_out_pairs() {
        assert_eq!(plan(DType::F16, 32, 32, tg(true, false, 9)).path, Path::Generic);
        assert_eq!(plan(DType::F16, 32, 32, tg(true, false, 9)).rows, GEN_ROWS);
        // The f32 path stores scalars where out's rows are not 16-byte aligned: no rule on out.
        assert_eq!(plan(DType::F32, 32, 32, tg(true, false, 9)).rows, 128);
    }

    #[test]
    fn packed_qkv_strides_keep_the_fast_paths() {
        // [b, s, (hq + 2 hkv) d] with hq = hkv = 12, d = 32: q at 0, k at hq d, v at 2 hq d.
        let (s, h, d) = (128i64, 12i64, 32i64);
        let row = 3 * h * d;
        let base = 0x7000_0000u64;
        let op = |off: i64| AttnOperand { ptr: base + off as u64 * 2, bytes: 0, strides: [s * row, d, row] };
        for o in [op(0), op(h * d), op(2 * h * d)] {
            assert!(rows_aligned16(&o, 2));
        }
        let out = AttnOperand { ptr: base, bytes: 0, strides: [s * h * d, d, h * d] };
        assert!(out_pairs(&out));
        // A row stride of an odd number of elements breaks both rules.
        let odd = AttnOperand { ptr: base, bytes: 0, strides: [s * (row + 1), d, row + 1] };
        assert!(!rows_aligned16(&odd, 2) && !out_pairs(&odd));
        assert!(!rows_aligned16(&AttnOperand { ptr: base + 8, ..op(0) }, 2));
        // f32 needs strides in multiples of 4 elements.
        assert!(rows_aligned16(&AttnOperand { ptr: base, bytes: 0, strides: [8, 4, 12] }, 4));
        assert!(!rows_aligned16(&AttnOperand { ptr: base, bytes: 0, strides: [8, 4, 6] }, 4));
    }

    #[test]
    fn views_must_fit_their_buffers() {
        // [2, 3, 5, 4] contiguous f16: 120 elements, 240 bytes.
        let st = [60, 20, 4, 1];
        assert!(check_view("q", 256, 240, &[2, 3, 5, 4], &st, 2).is_ok());
        assert!(check_view("q", 256, 238, &[2, 3, 5, 4], &st, 2).is_err());
        assert!(check_view("q", 257, 240, &[2, 3, 5, 4], &st, 2).is_err());
        assert!(check_view("q", 256, 240, &[2, 3, 5, 4], &[60, 20, -4, 1], 2).is_err());
        // Broadcast strides and empty views need no memory beyond one row / nothing.
        assert!(check_view("mask", 256, 8, &[2, 3, 5, 4], &[0, 0, 0, 1], 2).is_ok());
        assert!(check_view("k", 256, 0, &[2, 3, 0, 4], &st, 2).is_ok());
        // Huge strides do not overflow.
        assert!(check_view("q", 256, 240, &[2, 3, 5, 4], &[i64::MAX, 20, 4, 1], 2).is_err());
    }
}
