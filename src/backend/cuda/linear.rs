//! MatMul and the fused linear ops: shapes and batch broadcasting here, the products through the cuBLASLt
//! [`Gemm`] of matmul.rs (exact f32 by default, TF32 only after [`CudaBackend::set_tf32`]; f16/bf16 on tensor
//! cores with f32 accumulation).
//!
//! Epilogues: `FusedLinearAdd` uses cuBLASLt's bias epilogue; `FusedLinearAddGelu` with the tanh form uses its
//! GELU-bias epilogue (measured to compute the tanh form, see matmul.rs). cuBLASLt has no erf-GELU epilogue: in
//! f16/bf16 the erf form runs our own tensor-core GEMM with the bias + erf-GELU epilogue fused (fused_gemm.rs,
//! kernels/gemm_epilogue.cu), or cuBLASLt's plain product followed by one in-place `bias_gelu_erf` kernel
//! (elementwise.cu), whichever [`super::ErfGeluPath`] picks (by default: timed once per shape); f32 and shapes the
//! fused kernel does not support take the second way. Both are exact to the definition within the output dtype's
//! precision. `FusedLinearAddResidual` uses the bias epilogue with the residual as cuBLASLt's C (beta = 1), see
//! [`CudaBackend::fused_linear_residual`].

use std::sync::{Arc, Mutex};

use cudarc::driver::PushKernelArg;

use super::elementwise::{suffix, SOURCE as EW};
use super::fused_gemm::LinearPtrs;
use super::launch::collapse;
use super::matmul::{Epilogue, Gemm, GemmSpec};
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::{matmul_shape, GeluKind, TensorDesc};
use crate::tensor::{DType, Shape};

/// The lazily created cuBLASLt engine of a backend.
pub(crate) type GemmSlot = Mutex<Option<Arc<Gemm>>>;

impl CudaBackend {
    fn gemm_engine(&self) -> Result<Arc<Gemm>> {
        let mut slot = self.gemm.lock().map_err(|_| Error::Gpu("matmul engine lock poisoned".into()))?;
        if let Some(g) = slot.as_ref() {
            return Ok(g.clone());
        }
        let g = Arc::new(super::device::no_panic("cuBLASLt start", || Gemm::new(self.dev.stream.clone()))?);
        *slot = Some(g.clone());
        Ok(g)
    }

    /// One (strided-batched) product; k = 0 gives zeros (plus the bias).
    pub(super) fn gemm(&self, spec: &GemmSpec, a: u64, b: u64, bias: Option<u64>, c: u64) -> Result<()> {
        if spec.k == 0 {
            let bytes = spec.batch * spec.m * spec.n * spec.dtype.size();
            // SAFETY: C holds batch*m*n elements (checked by `execute`).
            unsafe { cudarc::driver::result::memset_d8_async(c, 0, bytes, self.dev.stream.cu_stream()) }
                .map_err(super::device::drv("zeroing a matmul output"))?;
            return Ok(());
        }
        let spec = GemmSpec { tf32: self.tf32(), ..*spec };
        self.gemm_engine()?.run(&spec, a, b, bias, c)
    }

    /// Batched matmul with broadcast batch dimensions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn matmul(
        &self,
        ta: bool,
        tb: bool,
        ins: &[TensorDesc],
        out_desc: &TensorDesc,
        a: &CudaBuffer,
        b: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let (_, [m, k, n]) = matmul_shape("MatMul", &ins[0].shape, &ins[1].shape, ta, tb)?;
        let od = out_desc.shape.dims();
        let batch_shape = Shape::new(&od[..od.len() - 2]);
        let batch_of = |d: &TensorDesc| Shape::new(&d.shape.dims()[..d.shape.rank() - 2]);
        let sa = batch_of(&ins[0]).broadcast_strides(&batch_shape);
        let sb = batch_of(&ins[1]).broadcast_strides(&batch_shape);
        let sc = super::launch::contiguous(batch_shape.dims());
        let (shape, st) = collapse(batch_shape.dims(), &[sa, sb, sc]);
        let es = out_desc.dtype.size() as u64;
        let (mk, kn, mn) = (m * k, k * n, m * n);
        // The innermost batch dimension is one strided call; outer ones are a loop.
        let (inner, outer_shape) = match shape.split_last() {
            Some((&last, rest)) => (last, rest.to_vec()),
            None => (1, vec![]),
        };
        let r = shape.len();
        let (ia, ib, ic) = if r > 0 { (st[0][r - 1], st[1][r - 1], st[2][r - 1]) } else { (0, 0, 0) };
        let outer: usize = outer_shape.iter().product();
        for o in 0..outer.max(1) {
            let (mut oa, mut ob, mut oc, mut rem) = (0, 0, 0, o);
            for d in (0..outer_shape.len()).rev() {
                let idx = rem % outer_shape[d];
                rem /= outer_shape[d];
                oa += idx * st[0][d];
                ob += idx * st[1][d];
                oc += idx * st[2][d];
            }
            debug_assert!(inner <= 1 || ic == 1, "output batches are packed");
            let spec = GemmSpec {
                batch: inner,
                transpose_a: ta,
                transpose_b: tb,
                stride_a: ia * mk,
                stride_b: ib * kn,
                ..GemmSpec::new(out_desc.dtype, m, n, k)
            };
            let (pa, pb) = (a.device_ptr() + (oa * mk) as u64 * es, b.device_ptr() + (ob * kn) as u64 * es);
            self.gemm(&spec, pa, pb, None, out.device_ptr() + (oc * mn) as u64 * es)?;
        }
        Ok(())
    }

    /// x·W (+ bias, then GELU when asked) with W 2-D, stored [n, k] when `tb`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fused_linear(
        &self,
        tb: bool,
        gelu: Option<GeluKind>,
        ins: &[TensorDesc],
        out_desc: &TensorDesc,
        x: &CudaBuffer,
        w: &CudaBuffer,
        bias: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let (_, [_, k, n]) = matmul_shape("FusedLinearAdd", &ins[0].shape, &ins[1].shape, false, tb)?;
        let m = ins[0].shape.rows();
        let base = GemmSpec { transpose_b: tb, ..GemmSpec::new(out_desc.dtype, m, n, k) };
        let (px, pw, pb, po) = (x.device_ptr(), w.device_ptr(), bias.device_ptr(), out.device_ptr());
        match gelu {
            _ if k == 0 => {
                self.gemm(&base, px, pw, None, po)?;
                self.bias_act(gelu, out_desc, out, bias, n)
            }
            None => self.gemm(&GemmSpec { epilogue: Epilogue::Bias, ..base }, px, pw, Some(pb), po),
            Some(GeluKind::Tanh) => {
                self.gemm(&GemmSpec { epilogue: Epilogue::BiasGelu(GeluKind::Tanh), ..base }, px, pw, Some(pb), po)
            }
            Some(GeluKind::Erf) => {
                let ptrs = LinearPtrs { x: px, w: pw, bias: pb, out: po };
                self.erf_gelu_linear(&base, ptrs, out_desc, out, bias)
            }
        }
    }

    /// x·W + bias + residual (W 2-D, stored [n, k] when `tb`; the residual of the output's shape). This is the one
    /// place that decides how: one cuBLASLt product with the bias epilogue and the residual as its C (beta = 1)
    /// when k > 0 and cuBLASLt has an algorithm for it; otherwise (k = 0, or [`Error::Unsupported`] from cuBLASLt,
    /// which is returned before anything is written) FusedLinearAdd's way and then an in-place add of the residual.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fused_linear_residual(
        &self,
        tb: bool,
        ins: &[TensorDesc],
        out_desc: &TensorDesc,
        x: &CudaBuffer,
        w: &CudaBuffer,
        bias: &CudaBuffer,
        residual: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let name = "FusedLinearAddResidual";
        let (shape, [_, k, n]) = matmul_shape(name, &ins[0].shape, &ins[1].shape, false, tb)?;
        if ins.len() != 4 || ins[3].shape != shape || ins[3].dtype != out_desc.dtype || out_desc.shape != shape {
            let got = ins.get(3).map_or_else(|| Shape::new([]), |d| d.shape.clone());
            return Err(Error::shape_hint(name, &shape, &got, "the residual must have the output's shape and dtype"));
        }
        let m = ins[0].shape.rows();
        if k > 0 {
            let spec = GemmSpec {
                transpose_b: tb,
                epilogue: Epilogue::Bias,
                accumulate: true,
                tf32: self.tf32(),
                ..GemmSpec::new(out_desc.dtype, m, n, k)
            };
            let (px, pw, pb, pr, po) =
                (x.device_ptr(), w.device_ptr(), bias.device_ptr(), residual.device_ptr(), out.device_ptr());
            match self.gemm_engine()?.run_accumulate(&spec, px, pw, Some(pb), pr, po) {
                Err(Error::Unsupported { .. }) => {}
                done => return done,
            }
        }
        self.fused_linear(tb, None, &ins[..3], out_desc, x, w, bias, out)?;
        // y += residual as a bias_act over one-row slices (the bias being the residual): at most 2^22 elements per
        // launch keeps every column inside the kernel's grid.
        let (total, es) = (out_desc.shape.numel(), out_desc.dtype.size());
        const SLICE: usize = 1 << 22;
        for start in (0..total).step_by(SLICE) {
            let len = SLICE.min(total - start);
            let off = (start * es) as u64;
            self.bias_act_ptrs(None, out_desc.dtype, out.device_ptr() + off, residual.device_ptr() + off, 1, len)?;
        }
        Ok(())
    }

    /// y = act(y + bias) in place, bias repeating every `n` elements.
    pub(crate) fn bias_act(
        &self,
        gelu: Option<GeluKind>,
        desc: &TensorDesc,
        y: &mut CudaBuffer,
        bias: &CudaBuffer,
        n: usize,
    ) -> Result<()> {
        let total = desc.shape.numel();
        if total == 0 || n == 0 {
            return Ok(());
        }
        self.bias_act_ptrs(gelu, desc.dtype, y.device_ptr(), bias.device_ptr(), total / n, n)
    }

    /// [`CudaBackend::bias_act`] on pointers: `y` holds rows·n elements of `dtype`, `bias` n (not overlapping y).
    fn bias_act_ptrs(
        &self,
        gelu: Option<GeluKind>,
        dtype: DType,
        py: u64,
        pb: u64,
        rows: usize,
        n: usize,
    ) -> Result<()> {
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let act = match gelu {
            None => "none",
            Some(GeluKind::Erf) => "gelu_erf",
            Some(GeluKind::Tanh) => "gelu_tanh",
        };
        let f = self.kernels.function(&EW, &format!("bias_{act}_{}", suffix(dtype)?))?;
        let v = 16 / dtype.size();
        let cols = if n % v == 0 { n / v } else { n };
        let block = if cols >= 256 { 256 } else { cols.div_ceil(32) * 32 } as u32;
        let gx = cols.div_ceil(block as usize).min(65535);
        let resident = (self.dev.info.sm_count * (self.dev.info.max_threads_per_sm / block).max(1)) as usize;
        // Four rows per block step (bias_act's ROWS), at least two waves of blocks.
        let gy = rows.div_ceil(4).min(65535).min(resident.div_ceil(gx) * 2).max(1);
        let (r64, n64) = (rows as i64, n as i64);
        let mut l = self.dev.stream.launch_builder(&f);
        l.arg(&py).arg(&pb).arg(&r64).arg(&n64);
        let c = cudarc::driver::LaunchConfig {
            grid_dim: (gx as u32, gy as u32, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: y holds rows*n elements, bias holds n (callers' contract); every index is inside [0, rows) x
        // [0, n).
        unsafe { l.launch(c) }.map(drop).map_err(super::launch_err("bias"))
    }
}
