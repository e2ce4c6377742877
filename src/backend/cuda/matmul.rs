//! Matrix products on the GPU through cuBLASLt: plain, batched, broadcast, with fused bias and GELU epilogues and
//! an optional addend matrix (cuBLASLt's `beta·C` term with beta = 1, for residual connections).
//!
//! Everything here works on raw device pointers (`u64`, a `CUdeviceptr`) so the backend can hand in pool buffers
//! and views without this module knowing about them. Work is queued on the stream given to [`Gemm::new`]; nothing
//! here synchronises.
//!
//! Layout: all matrices are row-major and dense. cuBLASLt is column-major, so `C = A·B` is computed as
//! `Cᵀ = Bᵀ·Aᵀ`: a row-major `[r, c]` matrix is the column-major `[c, r]` one with the same memory, so no data
//! moves and the transpose flags pass straight through (our B becomes cuBLASLt's A and vice versa).
//!
//! Precision: f32 computes in exact f32 (`CUBLAS_COMPUTE_32F`) unless [`GemmSpec::tf32`] asks for TF32 tensor
//! cores (`CUBLAS_COMPUTE_32F_FAST_TF32`). f16 and bf16 use tensor cores with f32 accumulation and f32 `alpha`
//! and `beta` (`CUBLAS_COMPUTE_32F`).
//!
//! GELU: `CUBLASLT_EPILOGUE_GELU_BIAS` was measured on an H100 (CUDA 13.0, `examples/gemm_check.rs`, f32,
//! 512x512x64, pre-activations over about [-8, 8]) to compute the tanh form,
//! 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))): max error 7.5e-6 against the float64 tanh-GELU, 4.75e-4 against the
//! float64 erf-GELU. So [`Epilogue::BiasGelu`]`(GeluKind::Tanh)` uses it, and `BiasGelu(GeluKind::Erf)` is refused
//! with [`Error::Unsupported`]: run [`Epilogue::Bias`] and then a separate erf-GELU kernel instead.
//!
//! Rounding: with f16/bf16 outputs the bias and GELU epilogues round intermediate values to the output type, so
//! results can be up to about two output ulps of (|A·B| + |bias|) off, not one (plus |addend| with an addend).
//!
//! Addend: with [`GemmSpec::accumulate`], cuBLASLt computes `D = A·B + 1·C (+ bias)` with C (the addend) and D
//! (the output) separate buffers of one layout ([`Gemm::run_accumulate`]). The bias epilogue is applied after the
//! `beta·C` term, which for a plain bias is the same sum. C must not overlap D: autotuning runs a product several
//! times, which in place would add C more than once.
//!
//! Algorithm choice: cuBLASLt's heuristic offers up to 16 algorithms per spec; by default products of at least
//! [`AUTOTUNE_MIN_FLOPS`] are timed once on first use and the fastest is kept (see [`Gemm::set_autotune`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::result::{self as lt, CublasError};
use cudarc::cublaslt::sys;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DriverError};

use crate::error::{Error, Result};
use crate::graph::GeluKind;
use crate::tensor::DType;

/// Workspace cuBLASLt may use per call: NVIDIA recommends 32 MiB on Hopper, 4 MiB before it.
const WORKSPACE_HOPPER: usize = 32 << 20;
const WORKSPACE_OLDER: usize = 4 << 20;

/// The largest pointer alignment cuBLASLt's heuristic asks about (its default assumption).
const MAX_ALIGN: u32 = 256;

/// How many algorithms to ask the heuristic for (tried in its order; timed when autotuning).
const MAX_CANDIDATES: usize = 16;

/// Products of at least this many flops (2·m·n·k·batch) are autotuned on first use when autotuning is on.
pub const AUTOTUNE_MIN_FLOPS: f64 = 1e8;

/// A candidate must beat the heuristic's first choice by this factor to replace it (timing noise).
const AUTOTUNE_MARGIN: f32 = 0.98;

/// What happens to the product before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `C = A·B`. No bias pointer may be passed.
    None,
    /// `C = A·B + bias`, bias `[n]` broadcast over the rows (and batches). A bias pointer must be passed.
    Bias,
    /// `C = GELU(A·B + bias)`. Only [`GeluKind::Tanh`] is supported (it is what cuBLASLt computes);
    /// [`GeluKind::Erf`] returns [`Error::Unsupported`].
    BiasGelu(GeluKind),
}

/// One (batched) matrix product: `C[i] = op(A[i]) · op(B[i])` for `i < batch`, with `op(A)` of shape `[m, k]`,
/// `op(B)` of shape `[k, n]` and `C[i]` of shape `[m, n]`, all row-major and dense.
///
/// A, B, C, the bias and the addend all have [`GemmSpec::dtype`]. Batches of C (and of the addend) are packed
/// (`m·n` elements apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmSpec {
    /// F32, F16 or BF16 (others return [`Error::Unsupported`]).
    pub dtype: DType,
    /// Number of products.
    pub batch: usize,
    /// Rows of `op(A)` and C.
    pub m: usize,
    /// Columns of `op(B)` and C.
    pub n: usize,
    /// The contracted dimension (must be at least 1).
    pub k: usize,
    /// A is stored `[k, m]` (read as its transpose); otherwise `[m, k]`.
    pub transpose_a: bool,
    /// B is stored `[n, k]` (PyTorch's Linear weight layout); otherwise `[k, n]`.
    pub transpose_b: bool,
    /// Elements between consecutive A matrices; 0 reuses one A for every batch (broadcast).
    pub stride_a: usize,
    /// Elements between consecutive B matrices; 0 reuses one B for every batch (broadcast).
    pub stride_b: usize,
    /// Bias and activation fused into the product.
    pub epilogue: Epilogue,
    /// f32 only: use TF32 tensor cores (about 10 mantissa bits per operand). Ignored for f16 and bf16.
    pub tf32: bool,
    /// Adds an addend matrix of C's shape (cuBLASLt's C with beta = 1): run with [`Gemm::run_accumulate`].
    pub accumulate: bool,
}

impl GemmSpec {
    /// A single `[m, k] x [k, n]` product of `dtype`, no transposes, no epilogue, exact f32.
    pub fn new(dtype: DType, m: usize, n: usize, k: usize) -> GemmSpec {
        GemmSpec {
            dtype,
            batch: 1,
            m,
            n,
            k,
            transpose_a: false,
            transpose_b: false,
            stride_a: m * k,
            stride_b: k * n,
            epilogue: Epilogue::None,
            tf32: false,
            accumulate: false,
        }
    }

    /// Checks what can be checked without the pointers.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(unsupported(format!("matmul in {:?} (only f32, f16 and bf16)", self.dtype)));
        }
        if self.k == 0 {
            return Err(Error::arg("matmul", "k = 0: the contracted dimension must be at least 1"));
        }
        let too_big = |v: usize| i64::try_from(v).is_err();
        if too_big(self.m) || too_big(self.n) || too_big(self.k) || i32::try_from(self.batch).is_err() {
            return Err(Error::arg("matmul", format!("dimensions out of range: {self:?}")));
        }
        let (sa, sb, sc) = (self.stride_a, self.stride_b, self.m.checked_mul(self.n));
        if too_big(sa) || too_big(sb) || sc.map_or(true, too_big) {
            return Err(Error::arg("matmul", format!("batch strides out of range: {self:?}")));
        }
        if let Epilogue::BiasGelu(GeluKind::Erf) = self.epilogue {
            return Err(unsupported(
                "the erf GELU epilogue (cuBLASLt's GELU epilogue computes the tanh form): run the matmul with \
                 Epilogue::Bias and then a separate erf-GELU kernel"
                    .into(),
            ));
        }
        Ok(())
    }

    fn elem_bytes(&self) -> usize {
        self.dtype.size()
    }
}

/// The cuBLASLt engine for one stream: a handle, a workspace and a cache of ready-made plans (descriptors,
/// layouts and the heuristic's algorithm) per [`GemmSpec`] and pointer alignment.
///
/// Calls are serialised by a mutex; create one `Gemm` per stream.
pub struct Gemm {
    stream: Arc<CudaStream>,
    inner: Mutex<Inner>,
    autotune: AtomicBool,
    // Freed (asynchronously, on the stream) after `inner` destroyed the handle.
    _workspace: CudaSlice<u8>,
    workspace_ptr: u64,
    workspace_size: usize,
}

struct Inner {
    handle: sys::cublasLtHandle_t,
    plans: HashMap<PlanKey, Plan>,
}

// SAFETY: the handle and the plans' descriptors are host objects owned by this value alone and only used while
// the `Gemm` mutex is held, so moving them between threads is sound.
unsafe impl Send for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        self.plans.clear();
        if !self.handle.is_null() {
            // SAFETY: the handle came from cublasLtCreate and is destroyed once; errors at teardown are ignored.
            let _ = unsafe { lt::destroy_handle(self.handle) };
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    spec: GemmSpec,
    /// Alignment in bytes (power of two, at most 256) of the A, B, C, bias and addend pointers (256 without a
    /// bias; C's without an addend).
    align: [u32; 5],
}

/// One algorithm the heuristic offered, with the workspace it needs.
struct Candidate {
    algo: sys::cublasLtMatmulAlgo_t,
    workspace: usize,
}

/// Descriptors for one spec. The cuBLASLt names: `a_lt` is our B, `b_lt` our A, `c_lt` our C, which is
/// cuBLASLt's D and, with one layout, its C (our addend, or our C again with beta = 0).
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a_lt: sys::cublasLtMatrixLayout_t,
    b_lt: sys::cublasLtMatrixLayout_t,
    c_lt: sys::cublasLtMatrixLayout_t,
    /// The heuristic's algorithms, best guess first.
    candidates: Vec<Candidate>,
    /// The one in use, once one has been run successfully (and timed against the others when autotuned).
    chosen: Option<usize>,
    /// Milliseconds per call of each candidate when autotuned (NaN: not supported for these pointers).
    tuned_ms: Vec<f32>,
    /// cuBLASLt's beta: 1 with an addend, else 0.
    beta: f32,
}

/// The operand pointers of one call.
#[derive(Clone, Copy)]
struct Operands {
    a: u64,
    b: u64,
    c: u64,
    /// cuBLASLt's C: the addend, or `c` itself (not read: beta = 0) without one.
    addend: u64,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each handle is null or was created by the matching cuBLASLt create call and is destroyed once.
        unsafe {
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
            for l in [self.a_lt, self.b_lt, self.c_lt] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
        }
    }
}

/// A preference descriptor destroyed on every exit path.
struct Pref(sys::cublasLtMatmulPreference_t);

impl Drop for Pref {
    fn drop(&mut self) {
        // SAFETY: created by cublasLtMatmulPreferenceCreate, destroyed once.
        let _ = unsafe { lt::destroy_matmul_pref(self.0) };
    }
}

impl Gemm {
    /// Creates the cuBLASLt handle and the workspace on `stream`'s device.
    ///
    /// Returns [`Error::GpuUnavailable`] when libcublasLt cannot be loaded.
    pub fn new(stream: Arc<CudaStream>) -> Result<Gemm> {
        // SAFETY: only tries to dlopen the library by its usual names.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::GpuUnavailable(
                "libcublasLt not found: install the CUDA toolkit's cuBLAS libraries or add them to \
                 LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let ctx = stream.context();
        ctx.bind_to_thread().map_err(|e| Error::Gpu(format!("binding the CUDA context failed: {e:?}")))?;
        let major = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(|e| Error::Gpu(format!("reading the compute capability failed: {e:?}")))?;
        let workspace_size = if major >= 9 { WORKSPACE_HOPPER } else { WORKSPACE_OLDER };
        let workspace = stream.alloc_zeros::<u8>(workspace_size).map_err(|e| {
            Error::Gpu(format!("allocating the {workspace_size}-byte cuBLASLt workspace failed: {e:?}"))
        })?;
        let workspace_ptr = {
            let (ptr, _sync) = workspace.device_ptr(&stream);
            ptr
        };
        // The dynamic loader panics on a missing symbol (a too-old library); turn that into an error.
        let handle = std::panic::catch_unwind(lt::create_handle)
            .map_err(|_| Error::GpuUnavailable("libcublasLt lacks cublasLtCreate (too old a CUDA?)".into()))?
            .map_err(|e| lt_err("cublasLtCreate", e, "check that the GPU and driver work (nvidia-smi)"))?;
        Ok(Gemm {
            stream,
            inner: Mutex::new(Inner { handle, plans: HashMap::new() }),
            autotune: AtomicBool::new(true),
            _workspace: workspace,
            workspace_ptr,
            workspace_size,
        })
    }

    /// The stream the products are queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Number of cached plans (one per distinct spec and pointer alignment seen).
    pub fn cached_plans(&self) -> usize {
        self.inner.lock().map(|g| g.plans.len()).unwrap_or(0)
    }

    /// Turns autotuning on (the default) or off for specs not seen yet. When on, the first call of a spec of at
    /// least [`AUTOTUNE_MIN_FLOPS`] times each algorithm the heuristic offers (up to 16, a few runs each, writing
    /// C) and keeps the fastest; that first call waits for the stream (it reads CUDA events). When off, or for
    /// smaller products, the heuristic's first algorithm that the pointers allow is used.
    pub fn set_autotune(&self, on: bool) {
        self.autotune.store(on, Ordering::Relaxed);
    }

    /// One line per cached plan: the spec, pointer alignments, the algorithm in use and, if autotuned, each
    /// candidate's time. For diagnostics and benchmark reports.
    pub fn plan_summaries(&self) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else { return vec![] };
        inner
            .plans
            .iter()
            .map(|(key, plan)| {
                let tuned = if plan.tuned_ms.is_empty() {
                    String::from("heuristic order")
                } else {
                    let us: Vec<String> = plan.tuned_ms.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
                    format!("autotuned, us per candidate [{}]", us.join(", "))
                };
                format!(
                    "{:?} align {:?}: algorithm {:?} of {} ({tuned})",
                    key.spec,
                    key.align,
                    plan.chosen,
                    plan.candidates.len()
                )
            })
            .collect()
    }

    /// Queues row-major `C[i] = op(A[i]) · op(B[i]) (+ bias) (then GELU)` for every batch `i` on the stream.
    ///
    /// `a`, `b`, `c` and `bias` are device pointers to dense data of `spec.dtype`, at least element-aligned
    /// (256-byte alignment gets the fastest kernels). A holds `(batch-1)·stride_a + m·k` elements, B
    /// `(batch-1)·stride_b + k·n`, C `batch·m·n`, bias `n`. C must not overlap the inputs; it is written, never
    /// read. `bias` must be `Some` exactly when the epilogue has a bias. m, n or batch of 0 is a no-op.
    ///
    /// The first call for a spec (and pointer alignments) asks cuBLASLt's heuristic for up to 16 algorithms and
    /// caches the plan; it then runs the first algorithm the pointers allow or, when autotuning applies (see
    /// [`Gemm::set_autotune`]), times them all and keeps the fastest. That autotuning call waits for the stream, so
    /// make the first call of a spec outside CUDA-graph capture (or turn autotuning off). Later calls only queue
    /// one `cublasLtMatmul`.
    pub fn run(&self, spec: &GemmSpec, a: u64, b: u64, bias: Option<u64>, c: u64) -> Result<()> {
        self.run_inner(spec, a, b, bias, None, c)
    }

    /// As [`Gemm::run`] with [`GemmSpec::accumulate`]: `C[i] = op(A[i]) · op(B[i]) + addend[i] (+ bias)`. The addend
    /// has C's shape and dtype (`batch·m·n` dense elements) and must not overlap C.
    pub fn run_accumulate(
        &self,
        spec: &GemmSpec,
        a: u64,
        b: u64,
        bias: Option<u64>,
        addend: u64,
        c: u64,
    ) -> Result<()> {
        self.run_inner(spec, a, b, bias, Some(addend), c)
    }

    fn run_inner(&self, spec: &GemmSpec, a: u64, b: u64, bias: Option<u64>, addend: Option<u64>, c: u64) -> Result<()> {
        spec.validate()?;
        if spec.accumulate != addend.is_some() {
            let what = if spec.accumulate { "needs an addend: call run_accumulate" } else { "takes no addend" };
            return Err(Error::arg("matmul", format!("a spec with accumulate = {} {what}", spec.accumulate)));
        }
        let wants_bias = !matches!(spec.epilogue, Epilogue::None);
        if wants_bias != bias.is_some() {
            return Err(Error::arg(
                "matmul",
                format!(
                    "epilogue {:?} {} a bias pointer",
                    spec.epilogue,
                    if wants_bias { "needs" } else { "takes no" }
                ),
            ));
        }
        if spec.m == 0 || spec.n == 0 || spec.batch == 0 {
            return Ok(());
        }
        let elem = spec.elem_bytes() as u64;
        for (name, p) in [("A", Some(a)), ("B", Some(b)), ("C", Some(c)), ("bias", bias), ("addend", addend)] {
            if let Some(p) = p {
                if p == 0 || p % elem != 0 {
                    return Err(Error::arg(
                        "matmul",
                        format!("{name} pointer {p:#x} is null or not aligned to its {elem}-byte elements"),
                    ));
                }
            }
        }
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| Error::Gpu(format!("binding the CUDA context failed: {e:?}")))?;
        if let Some(r) = addend {
            // Both spans are batch·m·n elements.
            let bytes = (spec.batch as u64).saturating_mul((spec.m * spec.n) as u64).saturating_mul(elem);
            if r < c.saturating_add(bytes) && c < r.saturating_add(bytes) {
                return Err(Error::arg("matmul", "the addend overlaps the output: pass a separate buffer"));
            }
        }
        let align =
            [align_of(a), align_of(b), align_of(c), bias.map_or(MAX_ALIGN, align_of), align_of(addend.unwrap_or(c))];
        let key = PlanKey { spec: *spec, align };
        let mut inner = self.inner.lock().map_err(|_| {
            Error::Gpu("the matmul plan cache was poisoned by an earlier panic; recreate the device".into())
        })?;
        let handle = inner.handle;
        let plan = match inner.plans.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(Plan::new(handle, spec, align, bias, self.workspace_size)?),
        };
        if let Some(bias) = bias {
            set_desc(plan.desc, sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias)
                .map_err(|e| lt_err("cublasLtMatmulDescSetAttribute(BIAS_POINTER)", e, &format!("{spec:?}")))?;
        }
        let ops = Operands { a, b, c, addend: addend.unwrap_or(c) };
        match plan.chosen {
            Some(i) => self.launch(handle, plan, i, ops).map_err(|e| lt_err("cublasLtMatmul", e, &format!("{key:?}"))),
            None => self.choose(handle, plan, &key, ops),
        }
    }

    /// First call of a plan: picks the algorithm (autotuned or the first the pointers allow) and runs it.
    fn choose(&self, handle: sys::cublasLtHandle_t, plan: &mut Plan, key: &PlanKey, ops: Operands) -> Result<()> {
        let spec = &key.spec;
        let flops = 2.0 * spec.m as f64 * spec.n as f64 * spec.k as f64 * spec.batch as f64;
        let tune = self.autotune.load(Ordering::Relaxed) && flops >= AUTOTUNE_MIN_FLOPS && plan.candidates.len() > 1;
        let call_err = |e: CublasError| lt_err("cublasLtMatmul", e, &format!("{key:?}"));
        let none_runs = || {
            unsupported(format!(
                "this matmul in cuBLASLt: none of its {} algorithms accepts these pointers ({key:?}); align the \
                 buffers to 16 bytes or run it on the CPU",
                plan.candidates.len()
            ))
        };
        if !tune {
            for i in 0..plan.candidates.len() {
                match self.launch(handle, plan, i, ops) {
                    Ok(()) => {
                        plan.chosen = Some(i);
                        return Ok(());
                    }
                    // Refused at call time (e.g. an unaligned bias the heuristic cannot see): try the next.
                    Err(CublasError(sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => continue,
                    Err(e) => return Err(call_err(e)),
                }
            }
            return Err(none_runs());
        }
        let reps = if flops >= 1e10 { 3 } else { 10 };
        let ev_err = |e: DriverError| Error::Gpu(format!("CUDA event for matmul autotuning failed: {e:?}"));
        let ctx = self.stream.context();
        let mut times = vec![f32::NAN; plan.candidates.len()];
        let mut best: Option<(usize, f32)> = None;
        for (i, time) in times.iter_mut().enumerate() {
            // The warm-up run doubles as the check that this algorithm accepts the pointers.
            match self.launch(handle, plan, i, ops) {
                Ok(()) => {}
                Err(CublasError(sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => continue,
                Err(e) => return Err(call_err(e)),
            }
            let e0 = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(ev_err)?;
            let e1 = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(ev_err)?;
            e0.record(&self.stream).map_err(ev_err)?;
            for _ in 0..reps {
                self.launch(handle, plan, i, ops).map_err(call_err)?;
            }
            e1.record(&self.stream).map_err(ev_err)?;
            let ms = e0.elapsed_ms(&e1).map_err(ev_err)? / reps as f32;
            *time = ms;
            let better = match best {
                None => true,
                Some((_, b)) => ms < b * AUTOTUNE_MARGIN,
            };
            if better {
                best = Some((i, ms));
            }
        }
        plan.tuned_ms = times;
        let Some((i, _)) = best else { return Err(none_runs()) };
        plan.chosen = Some(i);
        // C now holds the last candidate's result; write the chosen one's so later calls round identically.
        self.launch(handle, plan, i, ops).map_err(call_err)
    }

    /// Queues one cublasLtMatmul with candidate `i`.
    fn launch(
        &self,
        handle: sys::cublasLtHandle_t,
        plan: &Plan,
        i: usize,
        ops: Operands,
    ) -> std::result::Result<(), CublasError> {
        let cand = &plan.candidates[i];
        let (alpha, beta) = (1.0f32, plan.beta);
        // SAFETY: the descriptors are live (owned by the plan, used under the mutex); the caller guarantees the
        // pointers address enough device memory for the spec (documented on `run`); the workspace is ours and at
        // least `cand.workspace` bytes; alpha and beta are f32 host values as the f32 scale type requires (for
        // every dtype: the desc's scale type is CUDA_R_32F) and are read during the call. cuBLASLt's A is our B
        // and its B is our A (row-major trick); its C is our addend (beta = 1) or our C (beta = 0, not read).
        unsafe {
            lt::matmul(
                handle,
                plan.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                ops.b as *const c_void,
                plan.a_lt,
                ops.a as *const c_void,
                plan.b_lt,
                ops.addend as *const c_void,
                plan.c_lt,
                ops.c as *mut c_void,
                plan.c_lt,
                &cand.algo,
                self.workspace_ptr as *mut c_void,
                cand.workspace,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        }
    }
}

impl Plan {
    fn new(
        handle: sys::cublasLtHandle_t,
        spec: &GemmSpec,
        align: [u32; 5],
        bias: Option<u64>,
        max_workspace: usize,
    ) -> Result<Plan> {
        use sys::cublasComputeType_t::*;
        use sys::cudaDataType_t::*;
        let ctx = format!("{spec:?}");
        let fail = |call: &str, e: CublasError| lt_err(call, e, &ctx);
        let (data, compute) = match (spec.dtype, spec.tf32) {
            (DType::F32, false) => (CUDA_R_32F, CUBLAS_COMPUTE_32F),
            (DType::F32, true) => (CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32),
            (DType::F16, _) => (CUDA_R_16F, CUBLAS_COMPUTE_32F),
            (DType::BF16, _) => (CUDA_R_16BF, CUBLAS_COMPUTE_32F),
            (d, _) => return Err(unsupported(format!("matmul in {d:?}"))),
        };
        let mut plan = Plan {
            desc: std::ptr::null_mut(),
            a_lt: std::ptr::null_mut(),
            b_lt: std::ptr::null_mut(),
            c_lt: std::ptr::null_mut(),
            candidates: vec![],
            chosen: None,
            tuned_ms: vec![],
            beta: if spec.accumulate { 1.0 } else { 0.0 },
        };
        plan.desc = lt::create_matmul_desc(compute, CUDA_R_32F).map_err(|e| fail("cublasLtMatmulDescCreate", e))?;
        use sys::cublasLtMatmulDescAttributes_t::*;
        let op = |t: bool| -> i32 { i32::from(t) }; // CUBLAS_OP_N = 0, CUBLAS_OP_T = 1
        set_desc(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op(spec.transpose_b)).map_err(|e| fail("set TRANSA", e))?;
        set_desc(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op(spec.transpose_a)).map_err(|e| fail("set TRANSB", e))?;
        let epi = match spec.epilogue {
            Epilogue::None => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::BiasGelu(GeluKind::Tanh) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
            Epilogue::BiasGelu(GeluKind::Erf) => return Err(unsupported("the erf GELU epilogue".into())),
        };
        set_desc(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi).map_err(|e| fail("set EPILOGUE", e))?;
        if !matches!(spec.epilogue, Epilogue::None) {
            // One bias vector shared by every batch.
            set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &0i64)
                .map_err(|e| fail("set BIAS_BATCH_STRIDE", e))?;
        }
        if let Some(bias) = bias {
            // Set before the heuristic so that it sees the real bias pointer.
            set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias).map_err(|e| fail("set BIAS_POINTER", e))?;
        }

        let (m, n, k) = (spec.m as u64, spec.n as u64, spec.k as u64);
        // Our B, column-major view: [k, n] row-major is n x k (ld n); stored [n, k] it is k x n (ld k), transposed.
        let (ar, ac) = if spec.transpose_b { (k, n) } else { (n, k) };
        // Our A: [m, k] row-major is k x m (ld k); stored [k, m] it is m x k (ld m), transposed.
        let (br, bc) = if spec.transpose_a { (m, k) } else { (k, m) };
        plan.a_lt = lt::create_matrix_layout(data, ar, ac, ar as i64).map_err(|e| fail("create layout A", e))?;
        plan.b_lt = lt::create_matrix_layout(data, br, bc, br as i64).map_err(|e| fail("create layout B", e))?;
        plan.c_lt = lt::create_matrix_layout(data, n, m, n as i64).map_err(|e| fail("create layout C", e))?;
        if spec.batch > 1 {
            let count = spec.batch as i32;
            let strides = [(plan.a_lt, spec.stride_b), (plan.b_lt, spec.stride_a), (plan.c_lt, spec.m * spec.n)];
            for (layout, stride) in strides {
                use sys::cublasLtMatrixLayoutAttribute_t::*;
                set_layout(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count)
                    .map_err(|e| fail("set BATCH_COUNT", e))?;
                set_layout(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &(stride as i64))
                    .map_err(|e| fail("set STRIDED_BATCH_OFFSET", e))?;
            }
        }

        let pref = Pref(lt::create_matmul_pref().map_err(|e| fail("cublasLtMatmulPreferenceCreate", e))?);
        {
            use sys::cublasLtMatmulPreferenceAttributes_t::*;
            set_pref(pref.0, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &(max_workspace as u64))
                .map_err(|e| fail("set MAX_WORKSPACE_BYTES", e))?;
            let [al_a, al_b, al_c, _, al_addend] = align;
            for (attr, al) in [
                (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_b),
                (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_a),
                (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_addend),
                (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_c),
            ] {
                set_pref(pref.0, attr, &al).map_err(|e| fail("set MIN_ALIGNMENT", e))?;
            }
        }
        let empty = sys::cublasLtMatmulHeuristicResult_t {
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
            workspaceSize: 0,
            state: sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED,
            wavesCount: 0.0,
            reserved: [0; 4],
        };
        let mut results = [empty; MAX_CANDIDATES];
        let mut count: i32 = 0;
        // SAFETY: every descriptor is live; `results` has room for MAX_CANDIDATES entries and `count` is a valid
        // out-pointer. C and D share one layout (the addend has the output's shape; without one C aliases D).
        let status = unsafe {
            sys::cublasLtMatmulAlgoGetHeuristic(
                handle,
                plan.desc,
                plan.a_lt,
                plan.b_lt,
                plan.c_lt,
                plan.c_lt,
                pref.0,
                MAX_CANDIDATES as i32,
                results.as_mut_ptr(),
                &mut count,
            )
        };
        match status.result() {
            Ok(()) | Err(CublasError(sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => {}
            Err(e) => return Err(fail("cublasLtMatmulAlgoGetHeuristic", e)),
        }
        let count = usize::try_from(count).unwrap_or(0).min(MAX_CANDIDATES);
        plan.candidates = results[..count]
            .iter()
            .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS && r.workspaceSize <= max_workspace)
            .map(|r| Candidate { algo: r.algo, workspace: r.workspaceSize })
            .collect();
        if plan.candidates.is_empty() {
            return Err(unsupported(format!(
                "this matmul in cuBLASLt (no algorithm for {ctx}, pointer alignments {align:?} bytes); align the \
                 buffers to 16 bytes or run it on the CPU"
            )));
        }
        Ok(plan)
    }
}

/// Largest power of two dividing `p`, capped at 256 bytes.
fn align_of(p: u64) -> u32 {
    if p == 0 {
        MAX_ALIGN
    } else {
        (1u32 << p.trailing_zeros().min(8)).min(MAX_ALIGN)
    }
}

fn unsupported(what: String) -> Error {
    Error::Unsupported { backend: "cuda", what }
}

fn lt_err(call: &str, e: CublasError, context: &str) -> Error {
    Error::Gpu(format!("cuBLASLt {call} failed: {:?}; {context}", e.0))
}

fn set_desc<T>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &T,
) -> std::result::Result<(), CublasError> {
    // SAFETY: `desc` is live and `value` is a readable `T` of the size the attribute expects (callers pass the
    // documented type: i32 for transposes, the epilogue enum (u32), i64 strides, u64 pointers).
    unsafe { lt::set_matmul_desc_attribute(desc, attr, value as *const T as *const c_void, size_of::<T>()) }
}

fn set_layout<T>(
    layout: sys::cublasLtMatrixLayout_t,
    attr: sys::cublasLtMatrixLayoutAttribute_t,
    value: &T,
) -> std::result::Result<(), CublasError> {
    // SAFETY: `layout` is live and `value` has the attribute's type (i32 batch count, i64 stride).
    unsafe { lt::set_matrix_layout_attribute(layout, attr, value as *const T as *const c_void, size_of::<T>()) }
}

fn set_pref<T>(
    pref: sys::cublasLtMatmulPreference_t,
    attr: sys::cublasLtMatmulPreferenceAttributes_t,
    value: &T,
) -> std::result::Result<(), CublasError> {
    // SAFETY: `pref` is live and `value` has the attribute's type (u64 workspace bytes, u32 alignments).
    unsafe { lt::set_matmul_pref_attribute(pref, attr, value as *const T as *const c_void, size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_the_largest_power_of_two_up_to_256() {
        assert_eq!(align_of(0x1000), 256);
        assert_eq!(align_of(0x1002), 2);
        assert_eq!(align_of(0x1010), 16);
        assert_eq!(align_of(0x1180), 128);
    }

    #[test]
    fn specs_are_validated_without_a_gpu() {
        let s = GemmSpec::new(DType::BF16, 4, 5, 6);
        assert!(s.validate().is_ok());
        assert!(matches!(GemmSpec { k: 0, ..s }.validate(), Err(Error::InvalidArgument { .. })));
        assert!(matches!(GemmSpec { dtype: DType::I64, ..s }.validate(), Err(Error::Unsupported { .. })));
        let erf = GemmSpec { epilogue: Epilogue::BiasGelu(GeluKind::Erf), ..s };
        assert!(matches!(erf.validate(), Err(Error::Unsupported { .. })));
        let tanh = GemmSpec { epilogue: Epilogue::BiasGelu(GeluKind::Tanh), ..s };
        assert!(tanh.validate().is_ok());
    }
}
