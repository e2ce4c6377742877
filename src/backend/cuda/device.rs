//! The CUDA device: library checks, context, the backend's one stream, and the properties kernels and `info` use.

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{sys, CudaContext, CudaStream, DriverError};

use crate::error::{Error, Result};

/// Facts about the device, read once at start.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Ordinal of the device.
    pub ordinal: usize,
    /// Marketing name ("NVIDIA H100 80GB HBM3").
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory: usize,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Number of streaming multiprocessors.
    pub sm_count: u32,
    /// Largest resident thread count per SM.
    pub max_threads_per_sm: u32,
    /// Shared memory a block may opt in to, in bytes.
    pub max_shared_per_block_optin: u32,
    /// L2 cache size in bytes.
    pub l2_bytes: u32,
    /// CUDA version the driver supports, as (major, minor).
    pub driver_cuda_version: (i32, i32),
    /// The kernel driver's version ("580.65.06"), from /proc/driver/nvidia/version when readable.
    pub driver_version: Option<String>,
    /// NVRTC version, as (major, minor), or None when NVRTC is missing.
    pub nvrtc_version: Option<(i32, i32)>,
}

impl DeviceInfo {
    /// The NVRTC target for this device ("sm_90").
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.compute_capability.0, self.compute_capability.1)
    }

    /// Whether the Hopper-only kernels run here (wgmma, TMA): modules with architecture-specific code are compiled
    /// for `sm_90a` on compute capability 9.0, and such code runs there only.
    pub fn sm90a(&self) -> bool {
        self.compute_capability == (9, 0)
    }
}

/// Context and stream of one GPU.
pub struct Device {
    /// The primary context.
    pub ctx: Arc<CudaContext>,
    /// The stream every kernel, copy and matmul of the backend is queued on (so the pool reuses in stream order).
    pub stream: Arc<CudaStream>,
    /// Properties.
    pub info: DeviceInfo,
}

/// Maps a driver error to the crate's error with what was being done.
pub(crate) fn drv(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Gpu(format!("{what}: {e}"))
}

/// Checks that the driver and the libraries the backend loads are present; `Err(reason)` otherwise.
/// Never panics: cudarc's loaders panic when a library is missing, so presence is checked first.
pub fn check_libraries() -> std::result::Result<(), String> {
    // SAFETY: the presence checks only try to open the shared libraries by name; they touch no CUDA state.
    let (cuda, nvrtc, cublaslt) = unsafe {
        (sys::is_culib_present(), cudarc::nvrtc::sys::is_culib_present(), cudarc::cublaslt::sys::is_culib_present())
    };
    if !cuda {
        return Err("no libcuda (the NVIDIA driver is not installed or not on the library path)".into());
    }
    if !nvrtc {
        return Err(
            "libnvrtc not found (install the CUDA 13 runtime compiler, e.g. the nvidia-cuda-nvrtc wheel)".into()
        );
    }
    if !cublaslt {
        return Err("libcublasLt not found (install the CUDA 13 cuBLAS libraries)".into());
    }
    Ok(())
}

/// Runs `f`, turning a panic of the loader or the driver bindings into `Err`.
pub(crate) fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::GpuUnavailable(format!("{what} failed: {msg}")))
        }
    }
}

fn attr(ctx: &CudaContext, a: Attr) -> Result<i32> {
    ctx.attribute(a).map_err(drv("reading a device attribute"))
}

/// The NVRTC version, or None when the library is missing.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    // SAFETY: presence is checked before the first call into the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: nvrtcVersion writes two ints through valid pointers.
    let r = std::panic::catch_unwind(move || unsafe {
        cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor);
        (major, minor)
    });
    r.ok()
}

/// "580.65.06" from the first line of /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX ... Kernel Module
/// 580.65.06 ..."): the driver API only tells the CUDA version it supports.
fn kernel_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().next()?;
    let after = line.split("Module").nth(1)?;
    after.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit())).map(str::to_string)
}

impl Device {
    /// Opens device `ordinal`: context, a non-blocking stream, properties.
    pub fn open(ordinal: usize) -> Result<Device> {
        check_libraries().map_err(Error::GpuUnavailable)?;
        no_panic("CUDA device start", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| {
                if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE {
                    Error::GpuUnavailable("no CUDA device".into())
                } else if e.0 == sys::CUresult::CUDA_ERROR_INVALID_DEVICE {
                    Error::GpuUnavailable(format!("no CUDA device with ordinal {ordinal}"))
                } else {
                    Error::GpuUnavailable(format!("CUDA context creation failed: {e}"))
                }
            })?;
            // SAFETY: the backend passes raw device pointers only (no CudaSlice), so cudarc's per-slice event
            // tracking has nothing to track; ordering is given by the backend's single stream.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(drv("creating a stream"))?;
            let mut driver = 0;
            // SAFETY: writes one int through a valid pointer.
            unsafe { sys::cuDriverGetVersion(&mut driver) }.result().map_err(drv("cuDriverGetVersion"))?;
            let info = DeviceInfo {
                ordinal,
                name: ctx.name().map_err(drv("reading the device name"))?,
                total_memory: ctx.total_mem().map_err(drv("reading the memory size"))?,
                compute_capability: ctx.compute_capability().map_err(drv("reading the compute capability"))?,
                sm_count: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
                max_threads_per_sm: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR)? as u32,
                max_shared_per_block_optin: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
                    as u32,
                l2_bytes: attr(&ctx, Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u32,
                driver_cuda_version: (driver / 1000, (driver % 1000) / 10),
                driver_version: kernel_driver_version(),
                nvrtc_version: nvrtc_version(),
            };
            Ok(Device { ctx, stream, info })
        })
    }

    /// Makes the context current on the calling thread (every entry point calls this: the executor may use the
    /// backend from any thread).
    pub fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(drv("binding the CUDA context"))
    }

    /// Waits for everything queued on the stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(drv("stream synchronize"))
    }
}
