//! Runs a planned graph on one backend.

use std::sync::Mutex;

use super::memory_plan::MemoryPlan;
use crate::backend::{Backend, OpCall};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, TensorDesc};
use crate::tensor::Tensor;

/// A graph planned for one backend, with its constants uploaded and its slot buffers kept between runs, so a
/// second run with the same shapes allocates nothing but its outputs.
pub struct DeviceRunner<B: Backend> {
    graph: Graph,
    plan: MemoryPlan,
    constants: Vec<Option<B::Buffer>>,
    slots: Mutex<Vec<Option<B::Buffer>>>,
}

enum Value<'a, Buf> {
    Own(Buf),
    Borrowed(&'a Buf),
}

impl<Buf> Value<'_, Buf> {
    fn get(&self) -> &Buf {
        match self {
            Value::Own(b) => b,
            Value::Borrowed(b) => b,
        }
    }
}

impl<B: Backend> DeviceRunner<B> {
    /// Plans `graph` (already optimised) and uploads its constants to `backend`.
    pub fn new(backend: &B, graph: Graph) -> Result<Self> {
        let plan = MemoryPlan::new(&graph);
        let constants = graph
            .nodes()
            .iter()
            .map(|n| match &n.op {
                Op::Constant { tensor } => backend.upload(tensor).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let slots = Mutex::new((0..plan.slots.len()).map(|_| None).collect());
        Ok(DeviceRunner { graph, plan, constants, slots })
    }

    /// The graph this runner runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The memory plan.
    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// Runs the graph on `backend` with `inputs` in declaration order; returns the outputs in declaration order.
    pub fn run(&self, backend: &B, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
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
        // Buffers taken from the slots are put back on every path, error or not.
        let mut slots = std::mem::take(&mut *self.slots.lock().map_err(|_| Error::Graph("runner poisoned".into()))?);
        let result = self.run_inner(backend, inputs, &mut slots);
        *self.slots.lock().map_err(|_| Error::Graph("runner poisoned".into()))? = slots;
        result
    }

    fn run_inner(&self, backend: &B, inputs: &[Tensor], slots: &mut [Option<B::Buffer>]) -> Result<Vec<Tensor>> {
        let nodes = self.graph.nodes();
        let mut values: Vec<Option<Value<'_, B::Buffer>>> = (0..nodes.len()).map(|_| None).collect();
        let mut next_input = 0;
        let mut in_descs: Vec<TensorDesc> = Vec::with_capacity(4);
        for (i, node) in nodes.iter().enumerate() {
            let value = match &node.op {
                Op::Input { .. } => {
                    next_input += 1;
                    Value::Own(backend.upload(&inputs[next_input - 1])?)
                }
                Op::Constant { .. } => match &self.constants[i] {
                    Some(b) => Value::Borrowed(b),
                    None => return Err(Error::Graph(format!("constant %{i} was not uploaded"))),
                },
                op => {
                    let mut out = match self.plan.slot_of[i] {
                        Some(s) => match slots[s].take() {
                            Some(b) => b,
                            None => backend.alloc(&self.plan.slots[s].desc())?,
                        },
                        None => backend.alloc(&node.out)?,
                    };
                    in_descs.clear();
                    in_descs.extend(node.inputs.iter().map(|x| nodes[x.0].out.clone()));
                    let bufs: Vec<&B::Buffer> = node
                        .inputs
                        .iter()
                        .map(|x| {
                            values[x.0]
                                .as_ref()
                                .map(Value::get)
                                .ok_or_else(|| Error::Graph(format!("%{} read before it was computed", x.0)))
                        })
                        .collect::<Result<_>>()?;
                    let call = OpCall { op, inputs: &in_descs, output: &node.out };
                    let res = backend.execute(&call, &bufs, &mut out);
                    if let Err(e) = res {
                        if let Some(s) = self.plan.slot_of[i] {
                            slots[s] = Some(out);
                        }
                        return Err(e);
                    }
                    Value::Own(out)
                }
            };
            values[i] = Some(value);
            for d in &self.plan.dying_after[i] {
                if let (Some(s), Some(Value::Own(b))) = (self.plan.slot_of[d.0], values[d.0].take()) {
                    slots[s] = Some(b);
                }
            }
        }
        let mut outs = Vec::with_capacity(self.graph.outputs().len());
        let outputs = self.graph.outputs();
        for (k, o) in outputs.iter().enumerate() {
            let desc = &nodes[o.0].out;
            // An output listed twice, or an output that is also a leaf, is copied rather than moved.
            let repeated = outputs[k + 1..].contains(o);
            let t = match values[o.0].take() {
                Some(Value::Own(b)) if !repeated => backend.into_tensor(b, desc)?,
                Some(v) => {
                    let t = backend.download(v.get(), desc)?;
                    values[o.0] = Some(v);
                    t
                }
                None => return Err(Error::Graph(format!("output %{} was not computed", o.0))),
            };
            outs.push(t);
        }
        // Slot buffers still held by values (none after a full run) go back before returning.
        for (i, v) in values.into_iter().enumerate() {
            if let (Some(s), Some(Value::Own(b))) = (self.plan.slot_of[i], v) {
                slots[s] = Some(b);
            }
        }
        Ok(outs)
    }
}
