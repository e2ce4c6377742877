//! Launchers of elementwise.cu: binary ops with broadcasting, GELU, SiLU, casts.

use cudarc::driver::PushKernelArg;

use super::compile::KernelSource;
use super::launch::{cfg, collapse, contiguous, grid_cover, grid_stride, Dims, BLOCK};
use super::{CudaBackend, CudaBuffer};
use crate::error::{Error, Result};
use crate::graph::{BinaryOp, GeluKind, TensorDesc};
use crate::tensor::DType;

/// The source.
pub(crate) static SOURCE: KernelSource = KernelSource {
    name: "elementwise.cu",
    text: include_str!("kernels/elementwise.cu"),
    common: true,
    arch_specific: false,
};

/// 16-byte packs each thread handles per loop iteration in the streaming kernels (`UNROLL` in elementwise.cu).
const UNROLL: usize = 4;

/// Kernel-name suffix of a float dtype.
pub(crate) fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        d => Err(Error::DTypeMismatch { op: "cuda kernel", expected: "f32, f16 or bf16".into(), got: d }),
    }
}

fn op_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
    }
}

/// How the second operand (after merging dimensions) relates to a contiguous first one.
enum Layout {
    /// Both contiguous and of the output's size.
    Same,
    /// The other operand repeats with this period (a trailing block, bias style); `swap` when it is `a`.
    Periodic { p: usize, swap: bool },
    /// Anything else.
    Strided,
}

/// Whether `s` is "zeros, then row-major strides of the trailing dims" over `shape`; returns the period.
fn period(shape: &[usize], s: &[usize]) -> Option<usize> {
    let c = contiguous(shape);
    let k = s.iter().position(|&x| x != 0).unwrap_or(s.len());
    if s[k..] == c[k..] {
        Some(shape[k..].iter().product())
    } else {
        None
    }
}

fn classify(shape: &[usize], a: &[usize], b: &[usize]) -> Layout {
    let c = contiguous(shape);
    match (a == c.as_slice(), b == c.as_slice()) {
        (true, true) => Layout::Same,
        (true, false) => period(shape, b).map_or(Layout::Strided, |p| Layout::Periodic { p, swap: false }),
        (false, true) => period(shape, a).map_or(Layout::Strided, |p| Layout::Periodic { p, swap: true }),
        _ => Layout::Strided,
    }
}

impl CudaBackend {
    /// out = a op b with numpy broadcasting.
    pub(crate) fn binary(
        &self,
        op: BinaryOp,
        ins: &[TensorDesc],
        out_desc: &TensorDesc,
        a: &CudaBuffer,
        b: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let n = out_desc.shape.numel();
        if n == 0 {
            return Ok(());
        }
        let sfx = suffix(out_desc.dtype)?;
        let sa = ins[0].shape.broadcast_strides(&out_desc.shape);
        let sb = ins[1].shape.broadcast_strides(&out_desc.shape);
        let (shape, st) = collapse(out_desc.shape.dims(), &[sa, sb]);
        let (pa, pb, po) = (a.device_ptr(), b.device_ptr(), out.device_ptr());
        let n64 = n as i64;
        let info = &self.dev.info;
        let stream = &self.dev.stream;
        match classify(&shape, &st[0], &st[1]) {
            Layout::Same => {
                let f = self.kernels.function(&SOURCE, &format!("binary_same_{}_{sfx}", op_name(op)))?;
                let grid = grid_cover(n.div_ceil(UNROLL * 16 / out_desc.dtype.size()), BLOCK);
                let mut l = stream.launch_builder(&f);
                l.arg(&pa).arg(&pb).arg(&po).arg(&n64);
                // SAFETY: a, b and out hold n elements of the kernel's dtype (checked by `execute`).
                unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("binary"))?;
            }
            Layout::Periodic { p, swap } => {
                let f = self.kernels.function(&SOURCE, &format!("binary_periodic_{}_{sfx}", op_name(op)))?;
                let (full, rep) = if swap { (pb, pa) } else { (pa, pb) };
                let (p64, sw) = (p as i64, swap as i32);
                let grid = grid_stride(info, n.div_ceil(16 / out_desc.dtype.size()), BLOCK);
                let mut l = stream.launch_builder(&f);
                l.arg(&full).arg(&rep).arg(&po).arg(&n64).arg(&p64).arg(&sw);
                // SAFETY: `full` and out hold n elements, `rep` holds p (its broadcast shape's trailing block).
                unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("binary"))?;
            }
            Layout::Strided => {
                let d = Dims::new(op.name(), &shape, &st[0], &st[1])?;
                let f = self.kernels.function(&SOURCE, &format!("binary_strided_{}_{sfx}", op_name(op)))?;
                let grid = grid_stride(info, n, BLOCK);
                let mut l = stream.launch_builder(&f);
                l.arg(&pa).arg(&pb).arg(&po).arg(&n64).arg(&d);
                // SAFETY: the strides address only elements inside a and b (derived from their shapes).
                unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err("binary"))?;
            }
        }
        Ok(())
    }

    /// GELU (either form) or SiLU, elementwise.
    pub(crate) fn unary(
        &self,
        kernel: &'static str,
        desc: &TensorDesc,
        x: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        let n = desc.shape.numel();
        if n == 0 {
            return Ok(());
        }
        let f = self.kernels.function(&SOURCE, &format!("{kernel}_{}", suffix(desc.dtype)?))?;
        let (px, po, n64) = (x.device_ptr(), out.device_ptr(), n as i64);
        let grid = grid_cover(n.div_ceil(UNROLL * 16 / desc.dtype.size()), BLOCK);
        let mut l = self.dev.stream.launch_builder(&f);
        l.arg(&px).arg(&po).arg(&n64);
        // SAFETY: x and out hold n elements.
        unsafe { l.launch(cfg(grid, BLOCK)) }.map(drop).map_err(super::launch_err(kernel))
    }

    /// Kernel name of a GELU form.
    pub(crate) fn gelu_kernel(kind: GeluKind) -> &'static str {
        match kind {
            GeluKind::Erf => "gelu_erf",
            GeluKind::Tanh => "gelu_tanh",
        }
    }

    /// Element type conversion.
    pub(crate) fn cast(&self, from: &TensorDesc, to: DType, x: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
        let n = from.shape.numel();
        if n == 0 {
            return Ok(());
        }
        if from.dtype == to {
            return super::transfer::copy_d2d(&self.dev.stream, x.device_ptr(), out.device_ptr(), from.bytes());
        }
        let name = match (from.dtype, to) {
            (DType::U32, DType::I64) => "cast_u32_i64".to_string(),
            (DType::I64, DType::U32) => "cast_i64_u32".to_string(),
            (a, b) if a.is_float() && b.is_float() => format!("cast_{}_{}", suffix(a)?, suffix(b)?),
            (a, b) => return Err(Error::arg("Cast", format!("cannot cast {a} to {b}"))),
        };
        let f = self.kernels.function(&SOURCE, &name)?;
        let (px, po, n64) = (x.device_ptr(), out.device_ptr(), n as i64);
        let flag = self.flag_ptr();
        let grid = grid_stride(&self.dev.info, n, BLOCK);
        let mut l = self.dev.stream.launch_builder(&f);
        l.arg(&px).arg(&po).arg(&n64);
        let checks = name == "cast_i64_u32";
        if checks {
            l.arg(&flag);
        }
        // SAFETY: x and out hold n elements of their dtypes; the flag is the backend's 16-byte error word.
        unsafe { l.launch(cfg(grid, BLOCK)) }.map_err(super::launch_err("cast"))?;
        if checks {
            self.arm_flag();
        }
        Ok(())
    }
}
