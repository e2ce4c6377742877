//! The executor: optimises a graph, places each node on a device, plans memory and runs it.

mod calibrate;
mod memory_plan;
mod no_gpu;
mod placement;
mod replay;
mod runner;
mod weights;

pub use calibrate::{cached as cached_rates, measure_device, measure_link};
pub use memory_plan::{MemoryPlan, Slot};
pub use no_gpu::NoGpu;
pub use placement::{
    compute_us, graph_us, node_work, place, Device, DeviceRates, LinkRates, MachineRates, PlacementPolicy,
};
pub use runner::Runner;
pub use weights::WeightCache;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{optimize, Graph};
use crate::tensor::Tensor;

/// The GPU backend of this build.
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub type GpuBackend = crate::backend::cuda::CudaBackend;
/// The GPU backend of this build: none (built without the `cuda` feature).
#[cfg(not(all(feature = "cuda", target_os = "linux")))]
pub type GpuBackend = NoGpu;

/// Former name of [`PlacementPolicy`].
pub type DevicePolicy = PlacementPolicy;

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// How nodes are placed on devices.
    pub policy: PlacementPolicy,
    /// Run the fusion and dead-node passes before planning.
    pub optimize: bool,
    /// Device rates for the cost model; `None` measures them once (cached on disk).
    pub rates: Option<MachineRates>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { policy: PlacementPolicy::Auto, optimize: true, rates: None }
    }
}

/// Runs graphs on the CPU and, when there is one, the GPU. `Send + Sync`: share it between threads.
pub struct Executor<G: Backend = GpuBackend> {
    options: ExecOptions,
    cpu: CpuBackend,
    gpu: Option<Arc<G>>,
    gpu_unavailable: Option<String>,
    rates: std::sync::OnceLock<MachineRates>,
    /// GPU copies of constants, shared by every graph this executor (and its `with_policy` twins) compiles.
    weights: Arc<WeightCache<G::Buffer>>,
}

/// A graph compiled by an executor: optimised, placed and planned. Run it many times, from any thread.
pub struct CompiledGraph<G: Backend = GpuBackend> {
    runner: Runner<G>,
    cpu: CpuBackend,
    gpu: Option<Arc<G>>,
    policy: PlacementPolicy,
    /// The same graph all on the CPU, made the first time `Auto` has to leave a GPU that is out of memory.
    cpu_fallback: std::sync::OnceLock<Runner<G>>,
    runs: AtomicU64,
    fallbacks: AtomicU64,
}

/// Counters of one compiled graph, see [`CompiledGraph::statistics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Runs that returned outputs.
    pub runs: u64,
    /// CUDA graphs recorded (at most one per compiled graph, on its second run, when it runs wholly on the GPU).
    pub captures: u64,
    /// Runs served by replaying the recording.
    pub replays: u64,
    /// Host nanoseconds spent queuing those replays (writing inputs, launching the recording), without the GPU's
    /// own execution and the reading back of outputs.
    pub replay_host_ns: u64,
    /// Runs retried after the GPU ran out of memory (the pool's cache released first).
    pub oom_retries: u64,
    /// Runs that `Auto` moved to the CPU because the GPU stayed out of memory.
    pub cpu_fallbacks: u64,
}

impl Executor<GpuBackend> {
    /// An executor with the given options. Opens the GPU unless the policy is `ForceCpu`; with no GPU everything
    /// runs on the CPU, except under `ForceGpu`, which is then an `Err` saying why there is no GPU.
    pub fn new(options: ExecOptions) -> Result<Executor> {
        let (gpu, why) = if options.policy == PlacementPolicy::ForceCpu {
            (None, Some("the policy is ForceCpu".to_string()))
        } else {
            match open_gpu() {
                Ok(g) => (Some(Arc::new(g)), None),
                Err(Error::GpuUnavailable(why)) => (None, Some(why)),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        if options.policy == PlacementPolicy::ForceGpu && gpu.is_none() {
            return Err(Error::GpuUnavailable(why.unwrap_or_default()));
        }
        Ok(Executor {
            options,
            cpu: CpuBackend::new(),
            gpu,
            gpu_unavailable: why,
            rates: Default::default(),
            weights: Default::default(),
        })
    }

    /// An executor that runs everything on the CPU.
    pub fn cpu() -> Executor {
        let options = ExecOptions { policy: PlacementPolicy::ForceCpu, ..Default::default() };
        Executor {
            options,
            cpu: CpuBackend::new(),
            gpu: None,
            gpu_unavailable: Some("the policy is ForceCpu".into()),
            rates: Default::default(),
            weights: Default::default(),
        }
    }
}

#[cfg(all(feature = "cuda", target_os = "linux"))]
fn open_gpu() -> Result<GpuBackend> {
    crate::backend::cuda::CudaBackend::new(0)
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
fn open_gpu() -> Result<GpuBackend> {
    Err(Error::GpuUnavailable("built without the `cuda` feature".into()))
}

impl<G: Backend> Executor<G> {
    /// An executor over a given second device (tests use a second CPU backend as a stand-in GPU).
    pub fn with_gpu(gpu: G, options: ExecOptions) -> Executor<G> {
        Executor {
            options,
            cpu: CpuBackend::new(),
            gpu: Some(Arc::new(gpu)),
            gpu_unavailable: None,
            rates: Default::default(),
            weights: Default::default(),
        }
    }

    /// The same devices under another placement policy (shares the GPU and the measured rates).
    pub fn with_policy(&self, policy: PlacementPolicy) -> Executor<G> {
        let rates = std::sync::OnceLock::new();
        if let Some(r) = self.rates.get() {
            let _ = rates.set(r.clone());
        }
        Executor {
            options: ExecOptions { policy, ..self.options.clone() },
            cpu: self.cpu.clone(),
            gpu: self.gpu.clone(),
            gpu_unavailable: self.gpu_unavailable.clone(),
            rates,
            weights: self.weights.clone(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ExecOptions {
        &self.options
    }

    /// The GPU in use, if any.
    pub fn gpu(&self) -> Option<&G> {
        self.gpu.as_deref()
    }

    /// Why no GPU is used, when none is.
    pub fn gpu_unavailable_reason(&self) -> Option<&str> {
        self.gpu_unavailable.as_deref()
    }

    /// The rates the cost model uses: given in the options, or measured once per device and cached on disk.
    pub fn rates(&self) -> Result<&MachineRates> {
        if let Some(r) = &self.options.rates {
            return Ok(r);
        }
        if let Some(r) = self.rates.get() {
            return Ok(r);
        }
        let cpu = calibrate::cached(&format!("cpu-{}", cpu_name()), || measure_device(&self.cpu))?;
        let gpu = match &self.gpu {
            Some(g) => Some(calibrate::cached(&g.device_name(), || Ok((measure_device(&**g)?, measure_link(&**g)?)))?),
            None => None,
        };
        Ok(self.rates.get_or_init(|| MachineRates { cpu, gpu }))
    }

    /// Optimises, places and plans `graph` for repeated runs.
    pub fn compile(&self, graph: &Graph) -> Result<CompiledGraph<G>> {
        let g = if self.options.optimize { optimize(graph) } else { graph.clone() };
        let placement = match (&self.gpu, self.options.policy) {
            (None, _) | (_, PlacementPolicy::ForceCpu) => vec![Device::Cpu; g.len()],
            (Some(_), PlacementPolicy::Auto) => place(&g, PlacementPolicy::Auto, self.rates()?),
            (Some(_), policy) => {
                let rates = MachineRates {
                    cpu: placeholder_rates(),
                    gpu: Some((placeholder_rates(), LinkRates { latency_us: 1.0, gbps: 1.0, download_gbps: 1.0 })),
                };
                place(&g, policy, &rates)
            }
        };
        let runner = Runner::new(&self.cpu, self.gpu.as_deref(), &self.weights, g, placement)?;
        Ok(CompiledGraph {
            runner,
            cpu: self.cpu.clone(),
            gpu: self.gpu.clone(),
            policy: self.options.policy,
            cpu_fallback: Default::default(),
            runs: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// Compiles and runs `graph` once. Inputs are given in the order they were declared.
    pub fn run(&self, graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.compile(graph)?.run(inputs)
    }
}

/// Rates for policies that do not consult the cost model.
fn placeholder_rates() -> DeviceRates {
    DeviceRates { launch_us: 1.0, gflops_f32: 1.0, gflops_half: 1.0, gbps: 1.0, replay_launch_us: None }
}

fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model}-{}threads", rayon::current_num_threads())
}

impl<G: Backend> CompiledGraph<G> {
    /// Runs with `inputs` in declaration order; returns the outputs in declaration order.
    ///
    /// Out of GPU memory: the run is retried once after the pool's cache is released; if the GPU is still out of
    /// memory, `Auto` runs the graph on the CPU instead (counted in [`ExecStats::cpu_fallbacks`]) and every other
    /// policy returns [`Error::OutOfMemory`]. Either way this graph keeps no GPU memory from the failed run.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let out = match self.runner.run(&self.cpu, self.gpu.as_deref(), inputs) {
            Err(Error::OutOfMemory { .. }) if self.policy == PlacementPolicy::Auto => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                let cpu_runner = match self.cpu_fallback.get() {
                    Some(r) => r,
                    None => {
                        let g = self.runner.graph().clone();
                        let n = g.len();
                        let r = Runner::new(&self.cpu, None, &WeightCache::default(), g, vec![Device::Cpu; n])?;
                        self.cpu_fallback.get_or_init(|| r)
                    }
                };
                cpu_runner.run(&self.cpu, None, inputs)
            }
            other => other,
        }?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Runs, recordings, replays, out-of-memory retries and CPU fallbacks so far.
    pub fn statistics(&self) -> ExecStats {
        let (captures, replays, replay_host_ns, oom_retries) = self.runner.counters();
        ExecStats {
            runs: self.runs.load(Ordering::Relaxed),
            captures,
            replays,
            replay_host_ns,
            oom_retries,
            cpu_fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The optimised graph that runs.
    pub fn graph(&self) -> &Graph {
        self.runner.graph()
    }

    /// Where each node of [`CompiledGraph::graph`] runs.
    pub fn placement(&self) -> &[Device] {
        self.runner.placement()
    }

    /// The memory plan of one device.
    pub fn memory_plan(&self, dev: Device) -> &MemoryPlan {
        self.runner.plan(dev)
    }
}
