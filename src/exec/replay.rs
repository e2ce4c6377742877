//! Replay: a plan that runs wholly on the GPU is recorded once (a CUDA graph) into fixed buffers and then replayed
//! with one call per run, so the host cost of a run no longer grows with the number of nodes.
//!
//! The first run takes the ordinary path (it compiles kernels and picks matmul algorithms, which must not happen
//! while recording). The second run records and replays; every later run writes the inputs into the recorded input
//! buffers, replays and reads the outputs back. A run that finds the recording busy (another thread) takes the
//! ordinary path, so concurrent runs stay correct.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};

use super::memory_plan::MemoryPlan;
use crate::backend::{Backend, OpCall, Replay};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op, TensorDesc};
use crate::tensor::Tensor;

/// The fixed buffers a recording reads and writes, and the recording itself.
struct Recorded<Buf> {
    /// Per node: the buffer holding its value on the GPU (inputs, intermediates by slot, outputs), `None` for
    /// constants (they live in the runner) and for values that share a slot (looked up through `slot_of`).
    own: Vec<Option<Buf>>,
    /// One buffer per slot of the GPU memory plan.
    slots: Vec<Option<Buf>>,
    replay: Option<Box<dyn Replay>>,
}

/// Replay state of one runner.
pub(super) struct Replayer<Buf> {
    eligible: bool,
    disabled: AtomicBool,
    ordinary_runs: AtomicU64,
    state: Mutex<Option<Recorded<Buf>>>,
    /// Recordings made.
    pub(super) captures: AtomicU64,
    /// Runs served by replaying a recording.
    pub(super) replays: AtomicU64,
    /// Host nanoseconds spent queuing replays (writing inputs and launching the recording; not the GPU's own
    /// execution, not reading outputs back).
    pub(super) host_ns: AtomicU64,
}

impl<Buf> Replayer<Buf> {
    /// `eligible`: every computing node runs on the GPU and nothing but the outputs goes back to the host.
    pub(super) fn new(eligible: bool) -> Self {
        Replayer {
            eligible,
            disabled: AtomicBool::new(false),
            ordinary_runs: AtomicU64::new(0),
            state: Mutex::new(None),
            captures: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            host_ns: AtomicU64::new(0),
        }
    }

    /// Counts a run that took the ordinary path.
    pub(super) fn ordinary_run_done(&self) {
        self.ordinary_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Frees the recorded buffers (after an out-of-memory error, so nothing stays held).
    pub(super) fn forget(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = None;
        }
    }
}

/// What the replayer needs to know about the plan.
pub(super) struct PlanView<'a, Buf> {
    pub graph: &'a Graph,
    pub plan: &'a MemoryPlan,
    pub consts: &'a [Option<std::sync::Arc<Buf>>],
    pub input_descs: &'a [Vec<TensorDesc>],
    /// The slot buffers the ordinary path keeps between runs: the recording takes them over instead of allocating
    /// a second set.
    pub kept_slots: &'a Mutex<Vec<Option<Buf>>>,
}

impl<Buf: Send + Sync> Replayer<Buf> {
    /// Runs by replay when possible. `Ok(None)`: not possible now (not eligible, first run, unsupported, or busy);
    /// the caller takes the ordinary path.
    pub(super) fn try_run<G: Backend<Buffer = Buf>>(
        &self,
        gpu: &G,
        view: &PlanView<'_, Buf>,
        inputs: &[Tensor],
    ) -> Result<Option<Vec<Tensor>>> {
        if !self.eligible
            || !gpu.supports_recording()
            || self.disabled.load(Ordering::Relaxed)
            || self.ordinary_runs.load(Ordering::Relaxed) == 0
        {
            return Ok(None);
        }
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Poisoned(_)) => return Ok(None),
        };
        let queued = std::time::Instant::now();
        match guard.as_mut() {
            Some(rec) => write_inputs(gpu, view.graph, rec, inputs)?,
            None => {
                let mut rec = allocate(gpu, view, inputs)?;
                write_inputs(gpu, view.graph, &mut rec, inputs)?;
                if !gpu.begin_recording()? {
                    self.disabled.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                let queue_result = queue_all(gpu, view, &mut rec);
                let recording = gpu.end_recording();
                let replay = match (queue_result, recording) {
                    (Ok(()), Ok(r)) => r,
                    (Err(_), _) | (Ok(()), Err(_)) => {
                        // Nothing recorded has run, and the buffers are the plan's own: a plan that cannot be
                        // recorded (a kernel that synchronises, say) keeps the ordinary path for good, and this run
                        // takes it too.
                        self.disabled.store(true, Ordering::Relaxed);
                        return Ok(None);
                    }
                };
                self.captures.fetch_add(1, Ordering::Relaxed);
                rec.replay = Some(replay);
                *guard = Some(rec);
            }
        }
        let rec = guard.as_ref().ok_or_else(|| Error::Graph("replay state vanished".into()))?;
        rec.replay.as_ref().ok_or_else(|| Error::Graph("no recording to replay".into()))?.replay()?;
        self.host_ns.fetch_add(queued.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.replays.fetch_add(1, Ordering::Relaxed);
        let outs = view
            .graph
            .outputs()
            .iter()
            .map(|o| gpu.download(buffer_of(view, rec, *o)?, &view.graph.node(*o).out))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(outs))
    }
}

fn allocate<G: Backend>(gpu: &G, view: &PlanView<'_, G::Buffer>, inputs: &[Tensor]) -> Result<Recorded<G::Buffer>> {
    let nodes = view.graph.nodes();
    let mut own: Vec<Option<G::Buffer>> = (0..nodes.len()).map(|_| None).collect();
    let mut next_input = 0;
    for (i, n) in nodes.iter().enumerate() {
        match n.op {
            Op::Input { .. } => {
                own[i] = Some(gpu.upload(&inputs[next_input])?);
                next_input += 1;
            }
            Op::Constant { .. } => {}
            _ if view.plan.alias_of[i].is_some() => {}
            _ if view.plan.slot_of[i].is_none() => own[i] = Some(gpu.alloc(&n.out)?),
            _ => {}
        }
    }
    let mut kept = view.kept_slots.lock().map(|mut k| std::mem::take(&mut *k)).unwrap_or_default();
    kept.resize_with(view.plan.slots.len(), || None);
    let slots = kept
        .into_iter()
        .zip(&view.plan.slots)
        .map(|(k, s)| match k {
            Some(b) => Ok(Some(b)),
            None => gpu.alloc(&s.desc()).map(Some),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Recorded { own, slots, replay: None })
}

fn write_inputs<G: Backend>(gpu: &G, graph: &Graph, rec: &mut Recorded<G::Buffer>, inputs: &[Tensor]) -> Result<()> {
    for ((id, _), t) in graph.inputs().iter().zip(inputs) {
        let buf = rec.own[id.0].as_mut().ok_or_else(|| Error::Graph(format!("input %{} has no buffer", id.0)))?;
        gpu.write(buf, t)?;
    }
    Ok(())
}

fn buffer_of<'r, Buf>(view: &'r PlanView<'_, Buf>, rec: &'r Recorded<Buf>, id: NodeId) -> Result<&'r Buf> {
    if let Some(root) = view.plan.alias_of[id.0] {
        return buffer_of(view, rec, root);
    }
    let found = match (&view.graph.node(id).op, view.plan.slot_of[id.0]) {
        (Op::Constant { .. }, _) => view.consts[id.0].as_deref(),
        (_, Some(s)) => rec.slots[s].as_ref(),
        _ => rec.own[id.0].as_ref(),
    };
    found.ok_or_else(|| Error::Graph(format!("%{} has no buffer in the recording", id.0)))
}

/// Queues every computing node into the fixed buffers (recorded, not run).
fn queue_all<G: Backend>(gpu: &G, view: &PlanView<'_, G::Buffer>, rec: &mut Recorded<G::Buffer>) -> Result<()> {
    for (i, node) in view.graph.nodes().iter().enumerate() {
        if node.op.is_leaf() || view.plan.alias_of[i].is_some() {
            continue;
        }
        // The memory plan never gives a node the slot of one of its own inputs, so the output can be taken out
        // while the inputs are borrowed.
        let mut out = match view.plan.slot_of[i] {
            Some(s) => rec.slots[s].take(),
            None => rec.own[i].take(),
        }
        .ok_or_else(|| Error::Graph(format!("%{i} has no output buffer in the recording")))?;
        let call = OpCall { op: &node.op, inputs: &view.input_descs[i], output: &node.out };
        let res = node
            .inputs
            .iter()
            .map(|x| buffer_of(view, rec, *x))
            .collect::<Result<Vec<_>>>()
            .and_then(|ins| gpu.execute(&call, &ins, &mut out));
        match view.plan.slot_of[i] {
            Some(s) => rec.slots[s] = Some(out),
            None => rec.own[i] = Some(out),
        }
        res?;
    }
    Ok(())
}
