//! The executor: optimises a graph, places it on a device, plans its memory and runs it.

mod calibrate;
mod memory_plan;
mod placement;
mod runner;

pub use calibrate::{cached as cached_rates, measure_device, measure_link};
pub use memory_plan::{MemoryPlan, Slot};
pub use placement::{
    compute_us, graph_us, node_work, place, Device, DeviceRates, LinkRates, MachineRates, PlacementPolicy,
};
pub use runner::DeviceRunner;

use crate::backend::cpu::CpuBackend;
use crate::error::Result;
use crate::graph::{optimize, Graph};
use crate::tensor::Tensor;

/// Where the executor may run nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Use the GPU when one is available, else the CPU.
    #[default]
    Auto,
    /// Everything on the CPU.
    ForceCpu,
    /// Everything on the GPU; `Err` when there is none.
    ForceGpu,
}

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Device selection.
    pub policy: DevicePolicy,
    /// Run the fusion and dead-node passes before planning.
    pub optimize: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions { policy: DevicePolicy::Auto, optimize: true }
    }
}

/// Runs graphs. Holds the devices; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Executor {
    options: ExecOptions,
    cpu: CpuBackend,
}

/// A graph compiled for one executor: optimised, placed and planned. Run it many times.
pub struct CompiledGraph {
    runner: DeviceRunner<CpuBackend>,
    cpu: CpuBackend,
}

impl Executor {
    /// An executor with the given options.
    pub fn new(options: ExecOptions) -> Result<Executor> {
        if options.policy == DevicePolicy::ForceGpu {
            return Err(crate::error::Error::GpuUnavailable(
                "this build's executor runs graphs on the CPU only (GPU placement is not finished)".into(),
            ));
        }
        Ok(Executor { options, cpu: CpuBackend::new() })
    }

    /// An executor that runs everything on the CPU.
    pub fn cpu() -> Executor {
        Executor { options: ExecOptions { policy: DevicePolicy::ForceCpu, optimize: true }, cpu: CpuBackend::new() }
    }

    /// The options in force.
    pub fn options(&self) -> &ExecOptions {
        &self.options
    }

    /// Optimises and plans `graph` for repeated runs.
    pub fn compile(&self, graph: &Graph) -> Result<CompiledGraph> {
        let g = if self.options.optimize { optimize(graph) } else { graph.clone() };
        Ok(CompiledGraph { runner: DeviceRunner::new(&self.cpu, g)?, cpu: self.cpu.clone() })
    }

    /// Compiles and runs `graph` once. Inputs are given in the order they were declared.
    pub fn run(&self, graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.compile(graph)?.run(inputs)
    }
}

impl CompiledGraph {
    /// Runs with `inputs` in declaration order; returns the outputs in declaration order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.runner.run(&self.cpu, inputs)
    }

    /// The optimised graph that runs.
    pub fn graph(&self) -> &Graph {
        self.runner.graph()
    }

    /// The memory plan.
    pub fn memory_plan(&self) -> &MemoryPlan {
        self.runner.plan()
    }
}
