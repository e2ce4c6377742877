//! MatMul and the fused linear ops: shapes and batch broadcasting here, the product itself in one `gemm` call per
//! strided batch. Bias and GELU are applied in place by `bias_*` kernels of elementwise.cu (exact erf or tanh GELU,
//! as the op asks).
//!
//! The product currently goes through cuBLAS (`cublasGemmStridedBatchedEx`, f32 accumulation, exact f32 for f32:
//! no TF32), until the cuBLASLt `Gemm` of matmul.rs takes over.

use std::sync::Mutex;

use cudarc::cublas::{result as blas, sys as bsys};
use cudarc::driver::PushKernelArg;

use super::device::no_panic;
use super::elementwise::{suffix, SOURCE as EW};
use super::launch::{cfg, collapse, grid_stride, BLOCK};
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::{matmul_shape, GeluKind, TensorDesc};
use crate::tensor::{DType, Shape};

/// One strided batch of row-major products C[i] = op(A[i]) · op(B[i]); strides and offsets in elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmCall {
    pub dtype: DType,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ta: bool,
    pub tb: bool,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

/// A cuBLAS handle bound to the backend's stream.
pub(crate) struct Blas(bsys::cublasHandle_t);

// SAFETY: the handle is used under the backend's mutex only, one thread at a time.
unsafe impl Send for Blas {}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: created by `create_handle`, destroyed once.
        let _ = unsafe { blas::destroy_handle(self.0) };
    }
}

/// Lazily created cuBLAS state.
pub(crate) type BlasSlot = Mutex<Option<Blas>>;

fn data_type(d: DType) -> Result<bsys::cudaDataType> {
    Ok(match d {
        DType::F32 => bsys::cudaDataType::CUDA_R_32F,
        DType::F16 => bsys::cudaDataType::CUDA_R_16F,
        DType::BF16 => bsys::cudaDataType::CUDA_R_16BF,
        other => return Err(Error::DTypeMismatch { op: "MatMul", expected: "a float dtype".into(), got: other }),
    })
}

impl CudaBackend {
    fn gemm(&self, g: &GemmCall) -> Result<()> {
        if g.batch == 0 || g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let too_big = |x: usize| x > i32::MAX as usize;
        if [g.batch, g.m, g.n, g.k].iter().any(|&x| too_big(x)) {
            return Err(Error::Unsupported { backend: "cuda", what: format!("matmul dimensions over 2^31: {g:?}") });
        }
        let mut slot = self.blas.lock().map_err(|_| Error::Gpu("cuBLAS lock poisoned".into()))?;
        if slot.is_none() {
            let h = no_panic("cuBLAS start", || {
                blas::create_handle().map_err(|e| Error::Gpu(format!("cublasCreate: {e:?}")))
            })?;
            let b = Blas(h);
            // SAFETY: a live handle and the backend's live stream.
            unsafe { blas::set_stream(b.0, self.dev.stream.cu_stream() as _) }
                .map_err(|e| Error::Gpu(format!("cublasSetStream: {e:?}")))?;
            *slot = Some(b);
        }
        let h = slot.as_ref().map(|b| b.0).ok_or_else(|| Error::Gpu("no cuBLAS handle".into()))?;
        let t = data_type(g.dtype)?;
        let op = |t: bool| if t { bsys::cublasOperation_t::CUBLAS_OP_T } else { bsys::cublasOperation_t::CUBLAS_OP_N };
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: swap the operands.
        let lda = if g.tb { g.k } else { g.n };
        let ldb = if g.ta { g.m } else { g.k };
        let (alpha, beta) = (1.0f32, 0.0f32);
        no_panic("cuBLAS gemm", || {
            // SAFETY: pointers and strides describe the caller's live buffers; alpha/beta are host f32 as
            // CUBLAS_COMPUTE_32F expects.
            unsafe {
                blas::gemm_strided_batched_ex(
                    h,
                    op(g.tb),
                    op(g.ta),
                    g.n as i32,
                    g.m as i32,
                    g.k as i32,
                    &alpha as *const f32 as *const _,
                    g.b as *const _,
                    t,
                    lda as i32,
                    g.stride_b as i64,
                    g.a as *const _,
                    t,
                    ldb as i32,
                    g.stride_a as i64,
                    &beta as *const f32 as *const _,
                    g.c as *mut _,
                    t,
                    g.n as i32,
                    g.stride_c as i64,
                    g.batch as i32,
                    bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| Error::Gpu(format!("cublasGemmStridedBatchedEx {g:?}: {e:?}")))
        })?;
        Ok(())
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
            self.gemm(&GemmCall {
                dtype: out_desc.dtype,
                batch: inner,
                m,
                n,
                k,
                ta,
                tb,
                a: a.device_ptr() + (oa * mk) as u64 * es,
                b: b.device_ptr() + (ob * kn) as u64 * es,
                c: out.device_ptr() + (oc * mn) as u64 * es,
                stride_a: ia * mk,
                stride_b: ib * kn,
                stride_c: ic * mn,
            })?;
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
        self.gemm(&GemmCall {
            dtype: out_desc.dtype,
            batch: 1,
            m,
            n,
            k,
            ta: false,
            tb,
            a: x.device_ptr(),
            b: w.device_ptr(),
            c: out.device_ptr(),
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        })?;
        self.bias_act(gelu, out_desc, out, bias, n)
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
        let act = match gelu {
            None => "none",
            Some(GeluKind::Erf) => "gelu_erf",
            Some(GeluKind::Tanh) => "gelu_tanh",
        };
        let f = self.kernels.function(&EW, &format!("bias_{act}_{}", suffix(desc.dtype)?))?;
        let (py, pb, t64, n64) = (y.device_ptr(), bias.device_ptr(), total as i64, n as i64);
        let grid = grid_stride(&self.dev.info, total.div_ceil(16 / desc.dtype.size()), BLOCK);
        let mut l = self.dev.stream.launch_builder(&f);
        l.arg(&py).arg(&pb).arg(&t64).arg(&n64);
        // SAFETY: y holds `total` elements, bias holds n.
        unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("bias"))
    }
}
