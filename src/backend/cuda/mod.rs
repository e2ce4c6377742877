//! The CUDA backend: one device, one stream, a caching pool of device memory, pinned staging for transfers, and
//! NVRTC-compiled kernels for every op (matmuls through cuBLASLt, matmul.rs).
//!
//! Everything is loaded at run time (cudarc with dynamic loading): the crate builds without a CUDA toolkit, and on a
//! machine without a driver, device or library [`CudaBackend::new`] is an `Err` with the reason, never a panic.
//!
//! Errors found by kernels (an embedding id out of range, an i64 id that does not fit u32) cannot stop the kernel:
//! the kernel clamps, records the first such value in a device flag, and the next [`Backend::synchronize`] or
//! [`Backend::download`] returns the error.

pub(crate) mod attention;
mod buffer;
pub mod compile;
pub mod device;
mod elementwise;
mod embedding;
mod fused_gemm;
mod launch;
mod layout;
mod linear;
pub mod matmul;
mod norm;
mod record;
mod reduce;
mod transfer;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys, DriverError};

pub use buffer::{CudaBuffer, DeviceMem};
pub use compile::{KernelSource, LoadEvent};
pub use device::{Device, DeviceInfo};
pub use fused_gemm::ErfGeluPath;
pub use transfer::PinnedMem;

use crate::backend::{Backend, OpCall};
use crate::error::{Error, Result};
use crate::graph::{Op, TensorDesc};
use crate::pool::{Pool, PoolConfig, PoolStats};
use crate::tensor::{DType, HostVec, Tensor};

/// Every kernel source of the backend (the compile test checks each `.cu` file is listed here).
pub fn kernel_sources() -> [&'static KernelSource; 8] {
    [
        &elementwise::SOURCE,
        &norm::SOURCE,
        &reduce::SOURCE,
        &layout::SOURCE,
        &embedding::SOURCE,
        &attention::SOURCE,
        &attention::SOURCE_WGMMA,
        &fused_gemm::SOURCE,
    ]
}

pub(crate) fn launch_err(what: &'static str) -> impl FnOnce(DriverError) -> Error {
    move |e| Error::Gpu(format!("launching the {what} kernel: {e}"))
}

/// One NVIDIA GPU.
pub struct CudaBackend {
    dev: Device,
    pool: Arc<Pool<DeviceMem>>,
    staging: transfer::Staging,
    kernels: compile::Kernels,
    /// Two u64 on the device: error code and offending value (see the module docs).
    flag: CudaBuffer,
    flag_armed: AtomicBool,
    gemm: linear::GemmSlot,
    tf32: AtomicBool,
    /// [`ErfGeluPath`] as a u8 (see [`CudaBackend::set_erf_gelu_path`]).
    erf_gelu_path: AtomicU8,
    /// The path [`ErfGeluPath::Auto`] chose per shape.
    erf_gelu_choices: fused_gemm::ErfGeluChoices,
    gate: record::Gate,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.dev.info.name)
    }
}

impl CudaBackend {
    /// `Ok` when a GPU can be opened; otherwise why not ("no libcuda", "no CUDA device", "libcublasLt not
    /// found", ...). Never panics.
    pub fn is_available() -> std::result::Result<(), String> {
        device::check_libraries()?;
        let count = device::no_panic("CUDA driver start", || {
            result::init().map_err(|e| Error::GpuUnavailable(format!("cuInit failed: {e}")))?;
            result::device::get_count().map_err(|e| Error::GpuUnavailable(format!("cuDeviceGetCount failed: {e}")))
        });
        match count {
            Ok(0) => Err("no CUDA device".into()),
            Ok(_) => Ok(()),
            Err(Error::GpuUnavailable(m)) if m.contains("CUDA_ERROR_NO_DEVICE") => Err("no CUDA device".into()),
            Err(Error::GpuUnavailable(m)) => Err(m),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Opens GPU `ordinal` with the default pool settings.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        Self::with_pool_config(ordinal, PoolConfig::default())
    }

    /// Opens GPU `ordinal` with the given device-pool settings.
    pub fn with_pool_config(ordinal: usize, config: PoolConfig) -> Result<CudaBackend> {
        let dev = Device::open(ordinal)?;
        device::no_panic("CUDA backend start", move || {
            let pool = Pool::new(DeviceMem { ctx: dev.ctx.clone() }, config);
            let pinned = Pool::new(PinnedMem { ctx: dev.ctx.clone() }, PoolConfig { cache_limit_bytes: 256 << 20 });
            let kernels = compile::Kernels::new(dev.ctx.clone(), dev.info.arch());
            let flag = CudaBuffer { mem: pool.alloc(16)?, len: 16 };
            // SAFETY: 16 bytes of the flag buffer just allocated.
            unsafe { result::memset_d8_async(flag.device_ptr(), 0, 16, dev.stream.cu_stream()) }
                .map_err(device::drv("clearing the error flag"))?;
            Ok(CudaBackend {
                staging: transfer::Staging::new(pinned),
                dev,
                pool,
                kernels,
                flag,
                flag_armed: AtomicBool::new(false),
                gemm: Mutex::new(None),
                tf32: AtomicBool::new(false),
                erf_gelu_path: AtomicU8::new(ErfGeluPath::Auto.to_u8()),
                erf_gelu_choices: Mutex::new(Default::default()),
                gate: record::Gate::default(),
            })
        })
    }

    /// Lets f32 matmuls use TF32 tensor cores (about 10 mantissa bits per operand, several times faster). Off by
    /// default: f32 matmuls are exact f32 unless this is turned on.
    pub fn set_tf32(&self, on: bool) {
        self.tf32.store(on, Ordering::Relaxed);
    }

    /// Whether f32 matmuls may use TF32 (see [`CudaBackend::set_tf32`]).
    pub fn tf32(&self) -> bool {
        self.tf32.load(Ordering::Relaxed)
    }

    /// The device's properties.
    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    /// The device (context and stream), e.g. for libraries that queue work on the same stream.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// How each kernel module was obtained so far (compile or disk cache, and the time it took).
    pub fn kernel_loads(&self) -> Vec<LoadEvent> {
        self.kernels.load_events()
    }

    /// Compiles (or loads from the disk cache) every kernel source now; `use_disk_cache: false` forces NVRTC.
    /// Returns the seconds each took.
    pub fn preload_kernels(&self, use_disk_cache: bool) -> Result<Vec<(&'static str, f64)>> {
        self.dev.bind()?;
        kernel_sources()
            .iter()
            .map(|s| {
                let t = std::time::Instant::now();
                self.kernels.load(s, use_disk_cache).map(|_| (s.name, t.elapsed().as_secs_f64()))
            })
            .collect()
    }

    /// Counters of the pinned staging pool.
    pub fn pinned_pool_statistics(&self) -> PoolStats {
        self.staging.pool().statistics()
    }

    pub(crate) fn flag_ptr(&self) -> u64 {
        self.flag.device_ptr()
    }

    pub(crate) fn arm_flag(&self) {
        self.flag_armed.store(true, Ordering::Release);
    }

    /// Reads and clears the kernels' error flag if a kernel that can set it ran since the last check.
    fn check_flag(&self) -> Result<()> {
        if !self.flag_armed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut word = [0u64; 2];
        let s = self.dev.stream.cu_stream();
        // SAFETY: 16 bytes from the flag buffer into a local array, then the stream is synchronized before the
        // array is read; the reset is queued after the read.
        unsafe {
            result::memcpy_dtoh_async(&mut word[..], self.flag.device_ptr(), s)
                .map_err(device::drv("reading the error flag"))?;
            result::stream::synchronize(s).map_err(device::drv("stream synchronize"))?;
            if word[0] != 0 {
                result::memset_d8_async(self.flag.device_ptr(), 0, 16, s)
                    .map_err(device::drv("clearing the error flag"))?;
            }
        }
        match word[0] {
            0 => Ok(()),
            1 => Err(Error::arg(
                "Embedding",
                format!("token id {} is outside the table (the id was clamped on the GPU; check the tokenizer and vocabulary size)", word[1] as i64),
            )),
            2 => Err(Error::arg("Cast", format!("id {} does not fit u32", word[1] as i64))),
            c => Err(Error::Gpu(format!("unknown kernel error code {c}"))),
        }
    }

    fn buffer(&self, bytes: usize) -> Result<CudaBuffer> {
        Ok(CudaBuffer { mem: self.pool.alloc(bytes)?, len: bytes })
    }
}

fn check_len(what: &str, buf: &CudaBuffer, desc: &TensorDesc) -> Result<()> {
    if buf.len < desc.bytes() {
        return Err(Error::arg(
            "cuda execute",
            format!("{what} buffer has {} bytes, {} {} needs {}", buf.len, desc.dtype, desc.shape, desc.bytes()),
        ));
    }
    Ok(())
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.dev.info.name.clone()
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<CudaBuffer> {
        self.dev.bind()?;
        self.buffer(desc.bytes())
    }

    fn upload(&self, tensor: &Tensor) -> Result<CudaBuffer> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        let bytes = tensor.as_bytes();
        let buf = self.buffer(bytes.len())?;
        self.staging.upload(&self.dev.stream, bytes, buf.device_ptr())?;
        Ok(buf)
    }

    fn download(&self, buf: &CudaBuffer, desc: &TensorDesc) -> Result<Tensor> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        check_len("download", buf, desc)?;
        let mut hv = HostVec::zeros(desc.dtype, desc.shape.numel());
        self.staging.download(&self.dev.stream, buf.device_ptr(), hv.as_bytes_mut())?;
        self.check_flag()?;
        Tensor::from_host_vec(hv, desc.shape.clone())
    }

    fn poison(&self, buf: &mut CudaBuffer, desc: &TensorDesc) -> Result<()> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        check_len("poison", buf, desc)?;
        let n = desc.shape.numel();
        let (p, s) = (buf.device_ptr(), self.dev.stream.cu_stream());
        // SAFETY: n elements of the buffer's dtype fit in it (checked above).
        let r = unsafe {
            match desc.dtype {
                DType::F32 => sys::cuMemsetD32Async(p, 0x7fc0_0000, n, s).result(),
                DType::F16 => sys::cuMemsetD16Async(p, 0x7e00, n, s).result(),
                DType::BF16 => sys::cuMemsetD16Async(p, 0x7fc0, n, s).result(),
                DType::I64 | DType::U32 => result::memset_d8_async(p, 0xff, desc.bytes(), s),
            }
        };
        r.map_err(device::drv("poisoning a buffer"))
    }

    fn execute(&self, call: &OpCall<'_>, inputs: &[&CudaBuffer], out: &mut CudaBuffer) -> Result<()> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        if inputs.len() != call.inputs.len() {
            return Err(Error::Graph(format!(
                "{}: {} input buffers for {} descriptors",
                call.op.name(),
                inputs.len(),
                call.inputs.len()
            )));
        }
        for (b, d) in inputs.iter().zip(call.inputs) {
            check_len("input", b, d)?;
        }
        check_len("output", out, call.output)?;
        let ins = call.inputs;
        let o = call.output;
        match call.op {
            Op::Input { .. } | Op::Constant { .. } => {
                Err(Error::Graph(format!("{} nodes are not executed by a backend", call.op.name())))
            }
            Op::Binary(op) => self.binary(*op, ins, o, inputs[0], inputs[1], out),
            Op::Gelu(kind) => self.unary(Self::gelu_kernel(*kind), o, inputs[0], out),
            Op::Silu => self.unary("silu", o, inputs[0], out),
            Op::Cast { to } => self.cast(&ins[0], *to, inputs[0], out),
            Op::LayerNorm { eps } => {
                self.rowwise(norm::RowOp::LayerNorm, *eps, o, inputs[0], Some(inputs[1]), Some(inputs[2]), out)
            }
            Op::RmsNorm { eps } => self.rowwise(norm::RowOp::RmsNorm, *eps, o, inputs[0], Some(inputs[1]), None, out),
            Op::Softmax => self.rowwise(norm::RowOp::Softmax, 0.0, o, inputs[0], None, None, out),
            Op::Reduce { kind, axis, .. } => self.reduce(*kind, *axis, &ins[0], inputs[0], out),
            Op::Reshape { .. } => {
                transfer::copy_d2d(&self.dev.stream, inputs[0].device_ptr(), out.device_ptr(), o.bytes())
            }
            Op::Transpose { perm } => self.transpose(perm, &ins[0], inputs[0], out),
            Op::Slice { axis, start, .. } => self.slice(*axis, *start, &ins[0], o, inputs[0], out),
            Op::Concat { axis } => self.concat(*axis, ins, o, inputs, out),
            Op::Embedding => self.embedding(&ins[0], &ins[1], inputs[0], inputs[1], out),
            Op::Attention { .. } => attention::launch(self, call, inputs, out),
            Op::PackedAttention { .. } => attention::launch_packed(self, call, inputs, out),
            Op::MatMul { transpose_a, transpose_b } => {
                self.matmul(*transpose_a, *transpose_b, ins, o, inputs[0], inputs[1], out)
            }
            Op::FusedLinearAdd { transpose_b } => {
                self.fused_linear(*transpose_b, None, ins, o, inputs[0], inputs[1], inputs[2], out)
            }
            Op::FusedLinearAddGelu { transpose_b, gelu } => {
                self.fused_linear(*transpose_b, Some(*gelu), ins, o, inputs[0], inputs[1], inputs[2], out)
            }
            Op::FusedLinearAddResidual { transpose_b } => {
                self.fused_linear_residual(*transpose_b, ins, o, inputs[0], inputs[1], inputs[2], inputs[3], out)
            }
        }
    }

    fn synchronize(&self) -> Result<()> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        self.dev.synchronize()?;
        self.check_flag()
    }

    fn pool_statistics(&self) -> Option<PoolStats> {
        Some(self.pool.statistics())
    }

    fn release_cache(&self) {
        self.pool.clear_cache();
        self.staging.pool().clear_cache();
    }

    fn write(&self, buf: &mut CudaBuffer, tensor: &Tensor) -> Result<()> {
        let _pass = self.gate.pass()?;
        self.dev.bind()?;
        let bytes = tensor.as_bytes();
        if buf.len < bytes.len() {
            return Err(Error::arg("cuda write", format!("{} bytes into a buffer of {}", bytes.len(), buf.len)));
        }
        self.staging.upload(&self.dev.stream, bytes, buf.device_ptr())
    }

    fn supports_recording(&self) -> bool {
        true
    }

    fn begin_recording(&self) -> Result<bool> {
        self.gate.close()?;
        let started = self.dev.bind().and_then(|()| {
            self.dev.stream.begin_capture(record::MODE).map_err(device::drv("starting a CUDA graph capture"))
        });
        if started.is_err() {
            self.gate.open();
        }
        started.map(|()| true)
    }

    fn end_recording(&self) -> Result<Box<dyn crate::backend::Replay>> {
        let ended = self.dev.bind().and_then(|()| {
            self.dev
                .stream
                .end_capture(sys::CUgraphInstantiate_flags(0))
                .map_err(device::drv("ending the CUDA graph capture"))
        });
        self.gate.open();
        match ended? {
            Some(g) => Ok(Box::new(record::CudaReplay::new(g))),
            None => {
                Err(Error::Gpu("the CUDA graph capture was invalidated (a call not allowed while capturing)".into()))
            }
        }
    }
}
