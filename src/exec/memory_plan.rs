//! Static memory plan: which intermediates share a buffer, from each value's first and last use on each device.
//! The one place memory-reuse decisions are made.

use super::placement::Device;
use crate::graph::{Graph, NodeId, Op, TensorDesc};
use crate::tensor::{DType, Shape};

/// A reusable buffer of one dtype, sized for the largest value placed in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Element type of every value in the slot.
    pub dtype: DType,
    /// Capacity in elements.
    pub elements: usize,
}

impl Slot {
    /// The slot as a flat descriptor, for allocation.
    pub fn desc(&self) -> TensorDesc {
        TensorDesc::new(self.dtype, Shape::new([self.elements]))
    }

    fn bytes(&self) -> usize {
        self.elements * self.dtype.size()
    }
}

/// Buffer assignment for the part of a graph that runs on one device. Values produced there get a slot unless
/// they are graph inputs, constants or outputs (inputs and constants live in their own buffers, outputs are
/// handed to the caller). Values produced on the other device and read here arrive as copies, which die after
/// their last reader here.
#[derive(Clone, Debug, Default)]
pub struct MemoryPlan {
    /// The slot of each node's value, if it has one.
    pub slot_of: Vec<Option<usize>>,
    /// All slots.
    pub slots: Vec<Slot>,
    /// For each node, the values on this device whose life ends once it has run (each listed once): values read
    /// for the last time by it, and the node itself when nothing on this device reads it.
    pub dying_after: Vec<Vec<NodeId>>,
    /// Reshapes placed on this device are views: the node whose buffer a Reshape's value is (following chains of
    /// Reshapes). A view has no slot and runs no kernel; reading it keeps that node's buffer alive.
    pub alias_of: Vec<Option<NodeId>>,
}

impl MemoryPlan {
    /// Plans a graph that runs entirely on one device.
    pub fn new(graph: &Graph) -> MemoryPlan {
        MemoryPlan::for_device(graph, &vec![Device::Cpu; graph.len()], Device::Cpu)
    }

    /// Plans the nodes of `graph` placed on `dev`: walks nodes in order, gives each intermediate the smallest free
    /// slot of its dtype that holds it without wasting half or more, else grows the largest smaller free slot, else
    /// opens a new one; a value's slot is freed after its last reader on this device runs.
    pub fn for_device(graph: &Graph, placement: &[Device], dev: Device) -> MemoryPlan {
        let nodes = graph.nodes();
        let home = |i: usize| if matches!(nodes[i].op, Op::Input { .. }) { Device::Cpu } else { placement[i] };
        let mut alias_of: Vec<Option<NodeId>> = vec![None; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            if placement[i] == dev && matches!(n.op, Op::Reshape { .. }) {
                let src = n.inputs[0];
                alias_of[i] = Some(alias_of[src.0].unwrap_or(src));
            }
        }
        // Liveness is tracked on the node that owns the buffer: reading a view reads its root.
        let root = |x: NodeId| alias_of[x.0].unwrap_or(x);
        let mut last_here: Vec<Option<usize>> = vec![None; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            if placement[i] == dev && !n.op.is_leaf() {
                for inp in &n.inputs {
                    last_here[root(*inp).0] = Some(i);
                }
            }
        }
        // Values that must still be here when the outputs are collected: outputs made here, and the roots of
        // outputs that are views here (a root may be a constant or a copy from the other device).
        let mut is_output = vec![false; nodes.len()];
        let mut root_is_output = vec![false; nodes.len()];
        for o in graph.outputs() {
            is_output[o.0] = true;
            if alias_of[o.0].is_some() || home(o.0) == dev {
                root_is_output[root(*o).0] = true;
            }
        }
        let mut plan = MemoryPlan {
            slot_of: vec![None; nodes.len()],
            slots: vec![],
            dying_after: vec![vec![]; nodes.len()],
            alias_of: alias_of.clone(),
        };
        let mut free: Vec<usize> = vec![];
        for (i, node) in nodes.iter().enumerate() {
            if placement[i] == dev && !node.op.is_leaf() {
                let mut ins: Vec<NodeId> = node.inputs.iter().map(|x| root(*x)).collect();
                ins.sort();
                ins.dedup();
                for inp in ins {
                    let keep = root_is_output[inp.0];
                    if last_here[inp.0] == Some(i) && !keep {
                        plan.dying_after[i].push(inp);
                    }
                }
            }
            let view = alias_of[i].is_some();
            if home(i) == dev && !node.op.is_leaf() && !is_output[i] && !view {
                let s = plan.pick_slot(&mut free, node.out.dtype, node.out.shape.numel());
                plan.slot_of[i] = Some(s);
            }
            if home(i) == dev
                && !view
                && last_here[i].is_none()
                && !root_is_output[i]
                && !matches!(node.op, Op::Constant { .. })
            {
                // Nothing here reads it (it may be copied to the other device first): free right after it is made.
                plan.dying_after[i].push(NodeId(i));
            }
            for d in &plan.dying_after[i] {
                if let Some(s) = plan.slot_of[d.0] {
                    free.push(s);
                }
            }
        }
        plan
    }

    fn pick_slot(&mut self, free: &mut Vec<usize>, dtype: DType, need: usize) -> usize {
        let same: Vec<usize> = free.iter().copied().filter(|&s| self.slots[s].dtype == dtype).collect();
        let fit = same
            .iter()
            .copied()
            .filter(|&s| self.slots[s].elements >= need && self.slots[s].elements < need.saturating_mul(2).max(1))
            .min_by_key(|&s| self.slots[s].elements);
        let chosen = fit.or_else(|| {
            same.iter().copied().filter(|&s| self.slots[s].elements < need).max_by_key(|&s| self.slots[s].elements)
        });
        match chosen {
            Some(s) => {
                free.retain(|&f| f != s);
                let slot = &mut self.slots[s];
                slot.elements = slot.elements.max(need);
                s
            }
            None => {
                self.slots.push(Slot { dtype, elements: need });
                self.slots.len() - 1
            }
        }
    }

    /// Bytes held by all slots together: the plan's peak for intermediates.
    pub fn peak_bytes(&self) -> usize {
        self.slots.iter().map(Slot::bytes).sum()
    }
}
