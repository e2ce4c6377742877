//! Our own tensor-core GEMM with the bias + GELU epilogue fused (kernels/gemm_epilogue.cu), for
//! `FusedLinearAddGelu` with the erf form in f16/bf16: cuBLASLt's GELU epilogue computes the tanh form only, and
//! its plain product followed by the in-place `bias_gelu_erf` kernel costs a second pass over the output plus an
//! expensive erf per element. On the H100, bf16 [4096, 384, 1536]: 12.3-12.6 us fused (TMA form) against 35.7-36.4
//! us for that pair and 11.4-11.8 us for cuBLASLt's plain product (tools/gemm/README.md, session 11).
//!
//! The kernel needs f16/bf16, W stored [n, k] (transpose_b; W stored [k, n] is not supported), k a multiple of 8,
//! 16-byte aligned x, W, bias and output, compute capability 8.0 or newer, and m that fits its grid. On compute
//! capability 9.0 the module is compiled for sm_90a and, for n a multiple of 8, the TMA entry points run
//! (persistent, warp-specialised, wgmma, TMA stores; the launcher encodes the three tensor maps per call);
//! elsewhere the mma.sync ones.
//! `CudaBackend::erf_gelu_linear` is the one place that picks between it and cuBLASLt + `bias_gelu_erf` (see
//! [`ErfGeluPath`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use cudarc::driver::sys::{self, CUevent_flags, CUfunction_attribute as FnAttr, CUstreamCaptureStatus};
use cudarc::driver::{DeviceRepr, DriverError, LaunchConfig, PushKernelArg};

use super::compile::KernelSource;
use super::elementwise::suffix;
use super::matmul::{GemmSpec, AUTOTUNE_MIN_FLOPS};
use super::{CudaBackend, CudaBuffer, DeviceInfo};
use crate::error::{Error, Result};
use crate::graph::{GeluKind, TensorDesc};
use crate::tensor::DType;

pub(crate) static SOURCE: KernelSource = KernelSource {
    name: "gemm_epilogue.cu",
    text: include_str!("kernels/gemm_epilogue.cu"),
    common: true,
    arch_specific: true,
};

/// Tile (rows, columns), dynamic shared memory bytes and threads of one set of entry points (gemm_epilogue.cu).
struct Tile {
    bm: usize,
    bn: usize,
    shared: u32,
    threads: u32,
}

/// `GE_LARGE`, the mma.sync entry points: 128 x 128, 3 stages of (128 + 128) rows x 64 k-elements x 2 bytes.
const TILE_MMA: Tile = Tile { bm: 128, bn: 128, shared: 3 * (128 + 128) * 64 * 2, threads: 256 };
/// `GE_TMA`, the `_tma` entry points: a consumer warpgroup's tile is 128 x 128; 4 stages of (128 + 128) rows x 64
/// x 2 bytes, four output stagings (two consumers, two m64 blocks) of 64 x 128 x 2 bytes, 1 KiB to align the stages
/// to 1024 bytes, 2 x 4 + 1 barriers of 8 bytes.
const TILE_TMA: Tile = Tile {
    bm: 128,
    bn: 128,
    shared: 4 * (128 + 128) * 64 * 2 + 4 * 64 * 128 * 2 + 1024 + (2 * 4 + 1) * 8,
    threads: 384,
};

/// A `CUtensorMap` as the `_tma` entry points take it (by value, 64-byte aligned, 128 bytes).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct TmaMap(sys::CUtensorMap);

// SAFETY: a plain 128-byte value with the layout of the driver's CUtensorMap, which the kernel parameter is.
unsafe impl DeviceRepr for TmaMap {}

/// The tensor map of a row-major [rows, k] f16/bf16 matrix at `ptr`, in boxes of `box_rows` x 64 elements with the
/// 128-byte swizzle: the layout the kernel's wgmma descriptors expect of x and W, and the one its epilogue stages the
/// output in. Out-of-range rows and columns read as zeros and are not written. Needs k a multiple of 8 and ptr
/// 16-byte aligned (`supported`, [`tma_form`]).
fn tma_map(ptr: u64, rows: usize, k: usize, box_rows: usize, dtype: DType) -> Result<TmaMap> {
    use sys::{
        CUtensorMapDataType as Dt, CUtensorMapFloatOOBfill as Fill, CUtensorMapInterleave as Il,
        CUtensorMapL2promotion as L2, CUtensorMapSwizzle as Sw,
    };
    let dt =
        if dtype == DType::BF16 { Dt::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 } else { Dt::CU_TENSOR_MAP_DATA_TYPE_FLOAT16 };
    let dims = [k as u64, rows as u64];
    let strides = [(k * dtype.size()) as u64];
    let boxes = [64u32, box_rows as u32];
    let elem_strides = [1u32, 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::uninit();
    // SAFETY: every array has the length the rank (2) asks for, `map` is writable for one CUtensorMap, and the
    // function only encodes the description (it does not touch the memory at `ptr`).
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            dt,
            2,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            elem_strides.as_ptr(),
            Il::CU_TENSOR_MAP_INTERLEAVE_NONE,
            Sw::CU_TENSOR_MAP_SWIZZLE_128B,
            L2::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            Fill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(Error::Gpu(format!(
            "encoding the fused GEMM's tensor map of a [{rows}, {k}] operand failed: {r:?}"
        )));
    }
    // SAFETY: cuTensorMapEncodeTiled succeeded, so it wrote the whole map.
    Ok(TmaMap(unsafe { map.assume_init() }))
}

/// Which implementation runs `FusedLinearAddGelu` with the erf form in f16/bf16 (set with
/// [`CudaBackend::set_erf_gelu_path`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ErfGeluPath {
    /// The default: products of at least [`AUTOTUNE_MIN_FLOPS`] time both paths once per shape on first use and
    /// keep the faster (that first call waits for the stream; inside a CUDA-graph capture the fused kernel is used
    /// without timing); smaller products use the fused kernel (one launch instead of two). Shapes the fused kernel
    /// does not support take cuBLASLt.
    #[default]
    Auto,
    /// Always the fused kernel where it supports the shape (else cuBLASLt + `bias_gelu_erf`): its TMA form on
    /// compute capability 9.0 (compiled for sm_90a), its mma.sync form elsewhere.
    Fused,
    /// The fused kernel's mma.sync form even on compute capability 9.0 (for tests and comparisons).
    FusedMmaSync,
    /// Always cuBLASLt's plain product, then the in-place `bias_gelu_erf` kernel.
    Cublas,
}

impl ErfGeluPath {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            ErfGeluPath::Auto => 0,
            ErfGeluPath::Fused => 1,
            ErfGeluPath::Cublas => 2,
            ErfGeluPath::FusedMmaSync => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> ErfGeluPath {
        match v {
            1 => ErfGeluPath::Fused,
            2 => ErfGeluPath::Cublas,
            3 => ErfGeluPath::FusedMmaSync,
            _ => ErfGeluPath::Auto,
        }
    }
}

/// The path chosen per (dtype, m, n, k) by [`ErfGeluPath::Auto`]: `true` for the fused kernel.
pub(crate) type ErfGeluChoices = Mutex<HashMap<(DType, usize, usize, usize), bool>>;

/// Device pointers of one fused linear call.
#[derive(Clone, Copy)]
pub(crate) struct LinearPtrs {
    pub x: u64,
    pub w: u64,
    pub bias: u64,
    pub out: u64,
}

/// Whether the fused kernel supports this product (see the module docs).
fn supported(spec: &GemmSpec, info: &DeviceInfo, p: &LinearPtrs) -> bool {
    matches!(spec.dtype, DType::F16 | DType::BF16)
        && spec.transpose_b
        && !spec.transpose_a
        && spec.batch == 1
        && info.compute_capability.0 >= 8
        && info.max_shared_per_block_optin >= TILE_MMA.shared
        && spec.k > 0
        && spec.k % 8 == 0
        && (p.x | p.w | p.out) % 16 == 0
        // Pool buffers are always so aligned; the kernels read the bias in pairs.
        && p.bias % 16 == 0
        && spec.m.div_ceil(TILE_MMA.bm) <= 65535
        && [spec.m, spec.n, spec.k].iter().all(|&d| d <= (i32::MAX - 256) as usize)
}

/// Whether the `_tma` form runs this product (else the mma.sync form): compute capability 9.0 with its shared
/// memory, and n a multiple of 8 (the output's rows are stored by TMA, which needs 16-byte row strides).
fn tma_form(info: &DeviceInfo, spec: &GemmSpec) -> bool {
    info.sm90a() && info.max_shared_per_block_optin >= TILE_TMA.shared && spec.n % 8 == 0
}

impl CudaBackend {
    /// Chooses the implementation of `FusedLinearAddGelu` in the erf form for f16/bf16 products (see
    /// [`CudaBackend::set_erf_gelu_path`]).
    pub fn set_erf_gelu_path(&self, path: ErfGeluPath) {
        self.erf_gelu_path.store(path.to_u8(), Ordering::Relaxed);
    }

    /// The current [`ErfGeluPath`] setting.
    pub fn erf_gelu_path(&self) -> ErfGeluPath {
        ErfGeluPath::from_u8(self.erf_gelu_path.load(Ordering::Relaxed))
    }

    /// out = gelu_erf(x · W^T + bias) for one 2-D product (k > 0): the one place that picks the fused kernel or
    /// cuBLASLt's plain product followed by the in-place `bias_gelu_erf` kernel.
    pub(crate) fn erf_gelu_linear(
        &self,
        spec: &GemmSpec,
        p: LinearPtrs,
        out_desc: &TensorDesc,
        out: &mut CudaBuffer,
        bias: &CudaBuffer,
    ) -> Result<()> {
        let fused_ok = supported(spec, &self.dev.info, &p);
        let tma = tma_form(&self.dev.info, spec);
        let kernel = match self.erf_gelu_path() {
            _ if !fused_ok => None,
            ErfGeluPath::Fused => Some(tma),
            ErfGeluPath::FusedMmaSync => Some(false),
            ErfGeluPath::Cublas => None,
            ErfGeluPath::Auto => self.auto_choice(spec, p, out_desc, out, bias)?.then_some(tma),
        };
        match kernel {
            Some(tma) => self.fused_gemm(spec, Some(GeluKind::Erf), tma, p),
            None => self.cublas_erf_gelu(spec, p, out_desc, out, bias),
        }
    }

    fn cublas_erf_gelu(
        &self,
        spec: &GemmSpec,
        p: LinearPtrs,
        out_desc: &TensorDesc,
        out: &mut CudaBuffer,
        bias: &CudaBuffer,
    ) -> Result<()> {
        self.gemm(spec, p.x, p.w, None, p.out)?;
        self.bias_act(Some(GeluKind::Erf), out_desc, out, bias, spec.n)
    }

    /// [`ErfGeluPath::Auto`]: the cached choice for this shape, or a fixed rule (small products, graph capture),
    /// or both paths timed now.
    fn auto_choice(
        &self,
        spec: &GemmSpec,
        p: LinearPtrs,
        out_desc: &TensorDesc,
        out: &mut CudaBuffer,
        bias: &CudaBuffer,
    ) -> Result<bool> {
        let key = (spec.dtype, spec.m, spec.n, spec.k);
        let lock_err = || Error::Gpu("the erf-GELU path cache was poisoned by an earlier panic".into());
        if let Some(&c) = self.erf_gelu_choices.lock().map_err(|_| lock_err())?.get(&key) {
            return Ok(c);
        }
        let flops = 2.0 * spec.m as f64 * spec.n as f64 * spec.k as f64;
        let capturing =
            !matches!(self.dev.stream.capture_status(), Ok(CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE));
        if flops < AUTOTUNE_MIN_FLOPS || capturing {
            return Ok(true);
        }
        let ev_err = |e: DriverError| Error::Gpu(format!("CUDA event for the erf-GELU path choice failed: {e:?}"));
        let ctx = self.dev.stream.context();
        let reps = if flops >= 1e10 { 3 } else { 10 };
        let mut ms = [0f32; 2];
        for (fused, t) in ms.iter_mut().enumerate() {
            let mut run = |this: &Self| -> Result<()> {
                if fused == 1 {
                    this.fused_gemm(spec, Some(GeluKind::Erf), tma_form(&this.dev.info, spec), p)
                } else {
                    this.cublas_erf_gelu(spec, p, out_desc, out, bias)
                }
            };
            // Warm-up: compiles or loads the kernels and autotunes cuBLASLt's algorithm for this spec.
            run(self)?;
            let e0 = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(ev_err)?;
            let e1 = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(ev_err)?;
            e0.record(&self.dev.stream).map_err(ev_err)?;
            for _ in 0..reps {
                run(self)?;
            }
            e1.record(&self.dev.stream).map_err(ev_err)?;
            *t = e0.elapsed_ms(&e1).map_err(ev_err)? / reps as f32;
        }
        let fused = ms[1] <= ms[0];
        self.erf_gelu_choices.lock().map_err(|_| lock_err())?.insert(key, fused);
        Ok(fused)
    }

    /// Queues the fused kernel: out = act(x · W^T + bias), W stored [n, k]; `tma` (only where [`tma_form`] holds)
    /// picks the sm_90a TMA entry point, else the mma.sync one. `supported` must hold.
    pub(crate) fn fused_gemm(&self, spec: &GemmSpec, act: Option<GeluKind>, tma: bool, p: LinearPtrs) -> Result<()> {
        if spec.m == 0 || spec.n == 0 {
            return Ok(());
        }
        let act = match act {
            None => "none",
            Some(GeluKind::Erf) => "gelu_erf",
            Some(GeluKind::Tanh) => "gelu_tanh",
        };
        let (entry, tile) = if tma { ("_tma", &TILE_TMA) } else { ("", &TILE_MMA) };
        let f = self.kernels.function(&SOURCE, &format!("gemm_bias_{act}_{}{entry}", suffix(spec.dtype)?))?;
        f.set_attribute(FnAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, tile.shared as i32)
            .map_err(super::launch_err("fused GEMM (shared-memory limit)"))?;
        let (m, n, k) = (spec.m as i32, spec.n as i32, spec.k as i32);
        let (tiles_m, tiles_n) = (spec.m.div_ceil(tile.bm), spec.n.div_ceil(tile.bn));
        // x, W and the output (64 x 64 boxes), built before the launch builder borrows them.
        let maps = if tma {
            Some([
                tma_map(p.x, spec.m, spec.k, tile.bm, spec.dtype)?,
                tma_map(p.w, spec.n, spec.k, tile.bn, spec.dtype)?,
                tma_map(p.out, spec.m, spec.n, 64, spec.dtype)?,
            ])
        } else {
            None
        };
        let mut l = self.dev.stream.launch_builder(&f);
        let grid_dim = match &maps {
            Some([a, b, c]) => {
                l.arg(a).arg(b).arg(c).arg(&p.bias);
                // Persistent: at most one block per SM, each walking the tiles blockIdx.x, + gridDim.x, ...
                ((tiles_m * tiles_n).min(self.dev.info.sm_count as usize).max(1) as u32, 1, 1)
            }
            None => {
                l.arg(&p.x).arg(&p.w).arg(&p.bias).arg(&p.out);
                (tiles_n as u32, tiles_m as u32, 1)
            }
        };
        l.arg(&m).arg(&n).arg(&k);
        let cfg = LaunchConfig { grid_dim, block_dim: (tile.threads, 1, 1), shared_mem_bytes: tile.shared };
        // SAFETY: x holds m*k elements, W n*k, bias n, out m*n (checked by `execute`); `supported` checked the
        // alignment and that m, n, k fit the kernel's ints; the tensor maps describe exactly x, W and out; the
        // kernel reads and writes only inside those bounds.
        unsafe { l.launch(cfg) }.map(drop).map_err(super::launch_err("fused GEMM"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The launcher's tiles are the kernel's configuration macros (change both together).
    #[test]
    fn tiles_match_the_kernel_source() {
        assert!(SOURCE.text.contains("#define GE_LARGE 128, 128, 64, 2, 4, 3\n"));
        assert!(SOURCE.text.contains("#define GE_TMA 128, 128, 4\n"));
        assert!(SOURCE.text.contains("__launch_bounds__(256, 2)"));
        assert!(SOURCE.text.contains("__launch_bounds__(384, 1)"));
        assert_eq!((TILE_MMA.bm, TILE_MMA.bn, TILE_MMA.threads), (128, 128, 256));
        assert_eq!((TILE_TMA.bm, TILE_TMA.bn, TILE_TMA.threads, TILE_TMA.shared), (128, 128, 384, 197_704));
        assert_eq!(std::mem::size_of::<TmaMap>(), 128);
    }
}
