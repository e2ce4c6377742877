//! Run-time kernel compilation: NVRTC compiles each `.cu` source for the device's own architecture (a CUBIN, so
//! the driver does no JIT) at first use. Results are cached in memory and on disk, keyed by a hash of the source,
//! the architecture, the options and the NVRTC version. A corrupt or unloadable cache entry is recompiled.
//!
//! Cache folder: `$MLX_NATIVE_KERNEL_CACHE`, else `~/.cache/mlx-native/kernels`. Include folder for the CUDA
//! headers: `$MLX_NATIVE_CUDA_INCLUDE`, else `/usr/local/cuda/include`.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{sys as nv, Ptx};

use super::device::{drv, no_panic, nvrtc_version};
use crate::error::{Error, Result};

/// Helpers every kernel source but attention's starts with.
const COMMON: &str = include_str!("kernels/common.cuh");

/// One `.cu` file of the backend.
#[derive(Debug)]
pub struct KernelSource {
    /// File name ("elementwise.cu").
    pub name: &'static str,
    /// The file's text.
    pub text: &'static str,
    /// Whether `common.cuh` is prepended.
    pub common: bool,
    /// Whether the source has architecture-specific code (wgmma): on compute capability 9.0 it is compiled for
    /// `sm_90a` instead of `sm_90` (such code runs on 9.0 devices only, which is where it is then loaded).
    pub arch_specific: bool,
}

impl KernelSource {
    /// The architecture this source is compiled for on a device of architecture `arch` ("sm_90" becomes "sm_90a"
    /// for an architecture-specific source).
    pub fn target_arch(&self, arch: &str) -> String {
        if self.arch_specific && arch == "sm_90" {
            "sm_90a".into()
        } else {
            arch.into()
        }
    }

    /// The text NVRTC compiles.
    pub fn full_text(&self) -> String {
        if self.common {
            format!("{COMMON}\n#line 1 \"{}\"\n{}", self.name, self.text)
        } else {
            self.text.to_string()
        }
    }
}

/// The folder with `cuda_fp16.h` and friends.
pub fn include_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MLX_NATIVE_CUDA_INCLUDE") {
        return PathBuf::from(p);
    }
    for p in ["/usr/local/cuda/include", "/usr/local/cuda/targets/x86_64-linux/include", "/usr/include"] {
        if Path::new(p).join("cuda_fp16.h").exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("/usr/local/cuda/include")
}

/// Where compiled kernels are kept between runs.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MLX_NATIVE_KERNEL_CACHE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mlx-native/kernels"))
}

/// NVRTC options for `arch` ("sm_90").
pub fn options(arch: &str, include: &Path) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        format!("-I{}", include.display()),
        "--device-as-default-execution-space".into(),
    ]
}

/// Whether NVRTC can be loaded on this machine.
pub fn nvrtc_available() -> bool {
    nvrtc_version().is_some()
}

fn nvrtc_log(prog: nv::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: `prog` is a live program; the log buffer has the size NVRTC reported.
    unsafe {
        if nv::nvrtcGetProgramLogSize(prog, &mut size).result().is_err() || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if nv::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char).result().is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).trim_end_matches('\0').to_string()
    }
}

/// Compiles one source to a CUBIN for a device of architecture `arch` (for [`KernelSource::target_arch`]; no cache,
/// no GPU needed: CI uses this).
pub fn compile_cubin(src: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    let arch = src.target_arch(arch);
    let arch = arch.as_str();
    if !nvrtc_available() {
        return Err(Error::GpuUnavailable("libnvrtc not found".into()));
    }
    let text = CString::new(src.full_text()).map_err(|_| Error::Gpu(format!("{}: NUL byte in source", src.name)))?;
    let name = CString::new(src.name).map_err(|_| Error::Gpu("bad kernel file name".into()))?;
    let include = include_dir();
    let opts: Vec<CString> = options(arch, &include).into_iter().filter_map(|o| CString::new(o).ok()).collect();
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    no_panic("NVRTC", || {
        let mut prog: nv::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: `text` and `name` outlive the program, which is destroyed at the end of this block.
        unsafe {
            nv::nvrtcCreateProgram(&mut prog, text.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null())
                .result()
                .map_err(|e| Error::Gpu(format!("nvrtcCreateProgram: {e:?}")))?;
            let compiled = nv::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr()).result();
            let out = match compiled {
                Err(e) => Err(Error::Gpu(format!(
                    "compiling {} for {arch} failed ({e:?}; headers from {}, set MLX_NATIVE_CUDA_INCLUDE to \
                     change):\n{}",
                    src.name,
                    include.display(),
                    nvrtc_log(prog)
                ))),
                Ok(()) => {
                    let mut size = 0usize;
                    nv::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| Error::Gpu(format!("{e:?}")))?;
                    let mut cubin = vec![0u8; size];
                    nv::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut c_char)
                        .result()
                        .map_err(|e| Error::Gpu(format!("nvrtcGetCUBIN: {e:?}")))?;
                    Ok(cubin)
                }
            };
            let _ = nv::nvrtcDestroyProgram(&mut prog);
            out
        }
    })
}

/// 64-bit FNV-1a, seeded: stable across builds and Rust versions (the disk cache outlives the binary).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const MAGIC: &[u8; 8] = b"MLXKRN01";

fn cache_key(text: &str, arch: &str, opts: &[String]) -> String {
    let v = format!("{:?}", nvrtc_version());
    let o = opts.join(" ");
    let parts: [&[u8]; 4] = [text.as_bytes(), arch.as_bytes(), o.as_bytes(), v.as_bytes()];
    format!("{:016x}{:016x}", fnv(1, &parts), fnv(2, &parts))
}

fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    if data.len() < 24 || &data[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(data[8..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(data[16..24].try_into().ok()?);
    let body = &data[24..];
    (body.len() == len && fnv(3, &[body]) == sum).then(|| body.to_vec())
}

fn write_entry(path: &Path, cubin: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let mut data = Vec::with_capacity(cubin.len() + 24);
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&(cubin.len() as u64).to_le_bytes());
    data.extend_from_slice(&fnv(3, &[cubin]).to_le_bytes());
    data.extend_from_slice(cubin);
    // Write then rename, so a reader never sees half an entry (an unwritable cache only costs a recompile).
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, &data).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// How a module was obtained (for `bench` and `info`).
#[derive(Clone, Debug)]
pub struct LoadEvent {
    /// Source file.
    pub source: &'static str,
    /// Seconds spent (compile or cache read, plus module load).
    pub seconds: f64,
    /// Whether the disk cache had it.
    pub from_disk_cache: bool,
}

/// Compiled modules and functions of one context.
pub struct Kernels {
    ctx: Arc<CudaContext>,
    arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    events: Mutex<Vec<LoadEvent>>,
}

impl Kernels {
    /// An empty cache for `ctx`, compiling for `arch`.
    pub fn new(ctx: Arc<CudaContext>, arch: String) -> Kernels {
        Kernels {
            ctx,
            arch,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            events: Mutex::new(vec![]),
        }
    }

    /// The modules loaded so far and how.
    pub fn load_events(&self) -> Vec<LoadEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Loads (compiling if needed) `src` now; `use_disk_cache: false` forces a compile.
    pub fn load(&self, src: &'static KernelSource, use_disk_cache: bool) -> Result<Arc<CudaModule>> {
        let t = Instant::now();
        let text = src.full_text();
        let arch = src.target_arch(&self.arch);
        let opts = options(&arch, &include_dir());
        let path = cache_dir().map(|d| d.join(format!("{}-{}.cubin", src.name, cache_key(&text, &arch, &opts))));
        let cached = if use_disk_cache { path.as_deref().and_then(read_entry) } else { None };
        let from_disk = cached.is_some();
        let module = match cached.map(|c| self.ctx.load_module(Ptx::from_binary(c))) {
            Some(Ok(m)) => m,
            _ => {
                // Missing, corrupt or unloadable entry: compile and replace it.
                let cubin = compile_cubin(src, &self.arch)?;
                if let Some(p) = &path {
                    write_entry(p, &cubin);
                }
                self.ctx.load_module(Ptx::from_binary(cubin)).map_err(drv("loading a compiled kernel module"))?
            }
        };
        if let Ok(mut e) = self.events.lock() {
            e.push(LoadEvent { source: src.name, seconds: t.elapsed().as_secs_f64(), from_disk_cache: from_disk });
        }
        Ok(module)
    }

    fn module(&self, src: &'static KernelSource) -> Result<Arc<CudaModule>> {
        let mut mods = self.modules.lock().map_err(|_| Error::Gpu("kernel cache lock poisoned".into()))?;
        if let Some(m) = mods.get(src.name) {
            return Ok(m.clone());
        }
        let m = self.load(src, true)?;
        mods.insert(src.name, m.clone());
        Ok(m)
    }

    /// The kernel `name` of `src`.
    pub fn function(&self, src: &'static KernelSource, name: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().ok().and_then(|f| f.get(name).cloned()) {
            return Ok(f);
        }
        let m = self.module(src)?;
        let f =
            m.load_function(name).map_err(|e| Error::Gpu(format!("kernel {name} not found in {}: {e}", src.name)))?;
        if let Ok(mut fs) = self.functions.lock() {
            fs.insert(name.to_string(), f.clone());
        }
        Ok(f)
    }
}
