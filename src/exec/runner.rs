//! Runs a placed and planned graph on the CPU and, for nodes placed there, a second device.

use std::sync::{Arc, Mutex};

use super::weights::WeightCache;

use super::memory_plan::MemoryPlan;
use super::placement::{node_work, Device};
use super::replay::{PlanView, Replayer};
use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::{Backend, OpCall};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op, TensorDesc};
use crate::tensor::Tensor;

/// Graphs placed wholly on the CPU with at least this many flops run on a rayon worker thread. Measured on the
/// 2-core dev machine with 2 threads: MiniLM, one 16-token text (340 MFLOP), 10.9 -> 7.7 ms; a transformer block
/// of 64 tokens (226 MFLOP) 2.62 -> 2.15 ms; but a 1-token block (about 4 MFLOP) 83 -> 122 us and a chain of 100
/// tiny nodes 19 -> 39 us, where the move to the worker costs more than it saves.
const WORKER_MIN_FLOPS: f64 = 32e6;

/// A graph placed on the CPU and a device `G`, with constants uploaded where they are read and slot buffers kept
/// between runs, so a second run with the same shapes allocates nothing but its outputs and transfers.
///
/// A value produced on one device and read on the other is copied once, right after it is produced.
pub struct Runner<G: Backend> {
    graph: Graph,
    placement: Vec<Device>,
    plans: [MemoryPlan; 2],
    /// Whether a node's value is read on the device it was not produced on.
    copy_after: Vec<bool>,
    cpu_consts: Vec<Option<CpuBuffer>>,
    gpu_consts: Vec<Option<Arc<G::Buffer>>>,
    cpu_slots: Mutex<Vec<Option<CpuBuffer>>>,
    gpu_slots: Mutex<Vec<Option<G::Buffer>>>,
    input_descs: Vec<Vec<TensorDesc>>,
    replayer: Replayer<G::Buffer>,
    oom_retries: std::sync::atomic::AtomicU64,
    /// No node runs on the GPU and the graph has enough work for parallel loops: a run goes onto a rayon worker
    /// thread (see `run`).
    cpu_on_worker: bool,
}

enum Value<'a, Buf> {
    Own(Buf),
    Borrowed(&'a Buf),
    /// A Reshape placed on this device: the value of that node, read with the Reshape's shape.
    View(usize),
}

/// The per-run state of one device: its values and its slot buffers.
struct Side<'a, Buf> {
    values: Vec<Option<Value<'a, Buf>>>,
    slots: Vec<Option<Buf>>,
}

impl<Buf> Side<'_, Buf> {
    fn release(&mut self, plan: &MemoryPlan, id: NodeId) {
        if let (Some(s), Some(Value::Own(b))) = (plan.slot_of[id.0], self.values[id.0].take()) {
            self.slots[s] = Some(b);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Graph("a previous run panicked while holding the runner's buffers".into()))
}

impl<G: Backend> Runner<G> {
    /// Plans `graph` (already optimised) under `placement` and uploads its constants to the devices that read
    /// them. `gpu` must be present when any node is placed on [`Device::Gpu`].
    pub fn new(
        cpu: &CpuBackend,
        gpu: Option<&G>,
        weights: &WeightCache<G::Buffer>,
        graph: Graph,
        placement: Vec<Device>,
    ) -> Result<Self> {
        let nodes = graph.nodes();
        if placement.len() != nodes.len() {
            return Err(Error::Graph(format!("{} placements for {} nodes", placement.len(), nodes.len())));
        }
        let home = |i: usize| if matches!(nodes[i].op, Op::Input { .. }) { Device::Cpu } else { placement[i] };
        let mut read_on = vec![[false; 2]; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            if !n.op.is_leaf() {
                for inp in &n.inputs {
                    read_on[inp.0][placement[i] as usize] = true;
                }
            }
        }
        if gpu.is_none() && (0..nodes.len()).any(|i| home(i) == Device::Gpu || read_on[i][Device::Gpu as usize]) {
            return Err(Error::GpuUnavailable("nodes were placed on the GPU but no GPU backend was given".into()));
        }
        let mut cpu_consts = Vec::with_capacity(nodes.len());
        let mut gpu_consts = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let (c, g) = match (&n.op, gpu) {
                (Op::Constant { tensor }, g) => {
                    let c = if read_on[i][0] || graph.outputs().contains(&NodeId(i)) {
                        Some(cpu.upload(tensor)?)
                    } else {
                        None
                    };
                    let g = match g {
                        Some(g) if read_on[i][1] => Some(weights.get(g, tensor)?),
                        _ => None,
                    };
                    (c, g)
                }
                _ => (None, None),
            };
            cpu_consts.push(c);
            gpu_consts.push(g);
        }
        let copy_after = (0..nodes.len())
            .map(|i| {
                let other = if home(i) == Device::Cpu { Device::Gpu } else { Device::Cpu };
                !matches!(nodes[i].op, Op::Constant { .. }) && read_on[i][other as usize]
            })
            .collect();
        let plans = [
            MemoryPlan::for_device(&graph, &placement, Device::Cpu),
            MemoryPlan::for_device(&graph, &placement, Device::Gpu),
        ];
        let cpu_slots = Mutex::new((0..plans[0].slots.len()).map(|_| None).collect());
        let gpu_slots = Mutex::new((0..plans[1].slots.len()).map(|_| None).collect());
        let input_descs = nodes.iter().map(|n| n.inputs.iter().map(|x| nodes[x.0].out.clone()).collect()).collect();
        let all_on_gpu = gpu.is_some()
            && nodes.iter().zip(&placement).all(|(n, d)| n.op.is_leaf() || *d == Device::Gpu)
            && graph.outputs().iter().all(|o| !nodes[o.0].op.is_leaf());
        let cpu_on_worker = placement.iter().all(|d| *d == Device::Cpu)
            && graph.nodes().iter().map(|n| node_work(&graph, n).0).sum::<f64>() >= WORKER_MIN_FLOPS;
        Ok(Runner {
            graph,
            plans,
            copy_after,
            cpu_consts,
            gpu_consts,
            cpu_slots,
            gpu_slots,
            input_descs,
            replayer: Replayer::new(all_on_gpu),
            oom_retries: Default::default(),
            cpu_on_worker,
            placement,
        })
    }

    /// The graph this runner runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Where each node runs.
    pub fn placement(&self) -> &[Device] {
        &self.placement
    }

    /// The memory plan of one device.
    pub fn plan(&self, dev: Device) -> &MemoryPlan {
        &self.plans[dev as usize]
    }

    /// Counters: (recordings made, runs served by replay, host nanoseconds spent queuing replays, retries after
    /// running out of GPU memory).
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = &self.replayer;
        (r.captures.load(Relaxed), r.replays.load(Relaxed), r.host_ns.load(Relaxed), self.oom_retries.load(Relaxed))
    }

    /// Runs the graph with `inputs` in declaration order; returns the outputs in declaration order.
    ///
    /// When the GPU runs out of memory, the runner drops the GPU buffers it keeps between runs, asks the device to
    /// release its cache and tries once more; a second failure is returned, with nothing of this runner left
    /// holding GPU memory.
    pub fn run(&self, cpu: &CpuBackend, gpu: Option<&G>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.check_inputs(inputs)?;
        if self.cpu_on_worker && rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
            // From outside the pool, every parallel loop of every op injects a job and puts the caller to sleep
            // until it is done: a futex round trip per loop, and a node has several (gemm parallelises each
            // block). Run from a worker (rayon::scope moves the closure onto one), the loops are work-stealing
            // joins. The move itself is one such round trip, hence the work threshold.
            return rayon::scope(|_| self.run_once(cpu, None, inputs));
        }
        match self.run_once(cpu, gpu, inputs) {
            Err(Error::OutOfMemory { .. }) if gpu.is_some() => {
                self.oom_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.drop_gpu_buffers(gpu);
                let second = self.run_once(cpu, gpu, inputs);
                if second.is_err() {
                    self.drop_gpu_buffers(gpu);
                }
                second
            }
            other => other,
        }
    }

    fn drop_gpu_buffers(&self, gpu: Option<&G>) {
        self.replayer.forget();
        if let Ok(mut slots) = self.gpu_slots.lock() {
            slots.iter_mut().for_each(|s| *s = None);
        }
        if let Some(g) = gpu {
            g.release_cache();
        }
    }

    fn run_once(&self, cpu: &CpuBackend, gpu: Option<&G>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if let Some(g) = gpu {
            let view = PlanView {
                graph: &self.graph,
                plan: &self.plans[Device::Gpu as usize],
                consts: &self.gpu_consts,
                input_descs: &self.input_descs,
                kept_slots: &self.gpu_slots,
            };
            if let Some(outs) = self.replayer.try_run(g, &view, inputs)? {
                return Ok(outs);
            }
        }
        // Slot buffers go back on every path, error or not. Concurrent runs find the slots taken and allocate.
        let cs = take_slots(&self.cpu_slots, self.plans[0].slots.len())?;
        let gs = take_slots(&self.gpu_slots, self.plans[1].slots.len())?;
        let n = self.graph.len();
        let mut c = Side { values: (0..n).map(|_| None).collect(), slots: cs };
        let mut g = Side { values: (0..n).map(|_| None).collect(), slots: gs };
        let result = self.run_nodes(cpu, gpu, inputs, &mut c, &mut g);
        let result = result.and_then(|()| self.collect_outputs(cpu, gpu, &mut c, &mut g));
        for i in 0..n {
            c.release(&self.plans[0], NodeId(i));
            g.release(&self.plans[1], NodeId(i));
        }
        *lock(&self.cpu_slots)? = c.slots;
        *lock(&self.gpu_slots)? = g.slots;
        if result.is_ok() {
            self.replayer.ordinary_run_done();
        }
        result
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        let declared = self.graph.inputs();
        if declared.len() != inputs.len() {
            return Err(Error::Graph(format!("graph takes {} inputs, {} given", declared.len(), inputs.len())));
        }
        for ((id, name), t) in declared.iter().zip(inputs) {
            let want = &self.graph.node(*id).out;
            if want.dtype != t.dtype() || &want.shape != t.shape() {
                return Err(Error::Graph(format!(
                    "input '{name}' must be {} {}, got {} {}",
                    want.dtype,
                    want.shape,
                    t.dtype(),
                    t.shape()
                )));
            }
        }
        Ok(())
    }

    fn run_nodes<'s>(
        &'s self,
        cpu: &CpuBackend,
        gpu: Option<&G>,
        inputs: &[Tensor],
        c: &mut Side<'s, CpuBuffer>,
        g: &mut Side<'s, G::Buffer>,
    ) -> Result<()> {
        let nodes = self.graph.nodes();
        let mut next_input = 0;
        for (i, node) in nodes.iter().enumerate() {
            let dev = self.placement[i];
            match &node.op {
                Op::Input { .. } => {
                    c.values[i] = Some(Value::Own(cpu.upload(&inputs[next_input])?));
                    next_input += 1;
                }
                Op::Constant { .. } => {
                    c.values[i] = self.cpu_consts[i].as_ref().map(Value::Borrowed);
                    g.values[i] = self.gpu_consts[i].as_deref().map(Value::Borrowed);
                }
                Op::Reshape { .. } if self.plans[dev as usize].alias_of[i].is_some() => {
                    let root = self.plans[dev as usize].alias_of[i].map_or(i, |r| r.0);
                    let present = match dev {
                        Device::Cpu => c.values[root].is_some(),
                        Device::Gpu => g.values[root].is_some(),
                    };
                    if !present {
                        return Err(Error::Graph(format!("%{i} reshapes %{root}, which is not on {dev:?}")));
                    }
                    match dev {
                        Device::Cpu => c.values[i] = Some(Value::View(root)),
                        Device::Gpu => g.values[i] = Some(Value::View(root)),
                    }
                }
                op => {
                    let call = OpCall { op, inputs: &self.input_descs[i], output: &node.out };
                    match dev {
                        Device::Cpu => exec_on(cpu, &call, node.inputs.as_slice(), i, &self.plans[0], c)?,
                        Device::Gpu => exec_on(need(gpu)?, &call, node.inputs.as_slice(), i, &self.plans[1], g)?,
                    }
                }
            }
            let home = if matches!(node.op, Op::Input { .. }) { Device::Cpu } else { dev };
            if self.copy_after[i] {
                match home {
                    Device::Cpu => {
                        let t = cpu.download(get(&c.values, i)?, &node.out)?;
                        g.values[i] = Some(Value::Own(need(gpu)?.upload(&t)?));
                    }
                    Device::Gpu => {
                        let t = need(gpu)?.download(get(&g.values, i)?, &node.out)?;
                        c.values[i] = Some(Value::Own(cpu.upload(&t)?));
                    }
                }
            }
            for d in &self.plans[0].dying_after[i] {
                c.release(&self.plans[0], *d);
            }
            for d in &self.plans[1].dying_after[i] {
                g.release(&self.plans[1], *d);
            }
        }
        Ok(())
    }

    fn collect_outputs(
        &self,
        cpu: &CpuBackend,
        gpu: Option<&G>,
        c: &mut Side<'_, CpuBuffer>,
        g: &mut Side<'_, G::Buffer>,
    ) -> Result<Vec<Tensor>> {
        let nodes = self.graph.nodes();
        let outputs = self.graph.outputs();
        let mut outs = Vec::with_capacity(outputs.len());
        for (k, o) in outputs.iter().enumerate() {
            let desc = &nodes[o.0].out;
            let repeated = outputs[k + 1..].contains(o);
            // Prefer the host copy when there is one; move the buffer out unless the output is listed again.
            let t = if c.values[o.0].is_some() {
                take_or_copy(cpu, &mut c.values, o.0, desc, repeated)?
            } else {
                take_or_copy(need(gpu)?, &mut g.values, o.0, desc, repeated)?
            };
            outs.push(t);
        }
        Ok(outs)
    }
}

/// The kept slot buffers, or empty slots of the right count when another run holds them.
fn take_slots<Buf>(m: &Mutex<Vec<Option<Buf>>>, n: usize) -> Result<Vec<Option<Buf>>> {
    let mut v = std::mem::take(&mut *lock(m)?);
    v.resize_with(n, || None);
    Ok(v)
}

fn need<G>(gpu: Option<&G>) -> Result<&G> {
    gpu.ok_or_else(|| Error::GpuUnavailable("a node is placed on the GPU but the executor has none".into()))
}

fn get<'v, Buf>(values: &'v [Option<Value<'_, Buf>>], i: usize) -> Result<&'v Buf> {
    match &values[i] {
        Some(Value::Own(b)) => Ok(b),
        Some(Value::Borrowed(b)) => Ok(b),
        // A view's root is never a view itself (the plan follows chains to the end).
        Some(Value::View(root)) if *root != i => get(values, *root),
        _ => Err(Error::Graph(format!("%{i} read before it was computed"))),
    }
}

fn take_or_copy<B: Backend>(
    b: &B,
    values: &mut [Option<Value<'_, B::Buffer>>],
    i: usize,
    desc: &TensorDesc,
    keep: bool,
) -> Result<Tensor> {
    match values[i].take() {
        Some(Value::Own(buf)) if !keep => b.into_tensor(buf, desc),
        Some(v) => {
            values[i] = Some(v);
            b.download(get(values, i)?, desc)
        }
        None => Err(Error::Graph(format!("output %{i} was not computed"))),
    }
}

fn exec_on<'s, B: Backend>(
    b: &B,
    call: &OpCall<'_>,
    inputs: &[NodeId],
    i: usize,
    plan: &MemoryPlan,
    side: &mut Side<'s, B::Buffer>,
) -> Result<()> {
    let mut out = match plan.slot_of[i] {
        Some(s) => match side.slots[s].take() {
            Some(buf) => buf,
            None => b.alloc(&plan.slots[s].desc())?,
        },
        None => b.alloc(call.output)?,
    };
    let res = {
        let bufs = inputs.iter().map(|x| get(&side.values, x.0)).collect::<Result<Vec<_>>>();
        bufs.and_then(|bufs| b.execute(call, &bufs, &mut out))
    };
    match res {
        Ok(()) => {
            side.values[i] = Some(Value::Own(out));
            Ok(())
        }
        Err(e) => {
            if let Some(s) = plan.slot_of[i] {
                side.slots[s] = Some(out);
            }
            Err(e)
        }
    }
}
