//! Static memory plan: which intermediates share a buffer, from each value's first and last use.
//! The one place memory-reuse decisions are made.

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

/// Buffer assignment for one graph. Graph inputs, constants and outputs have no slot: inputs and constants live
/// in their own buffers and outputs are handed to the caller.
#[derive(Clone, Debug, Default)]
pub struct MemoryPlan {
    /// The slot of each node's value, if it has one.
    pub slot_of: Vec<Option<usize>>,
    /// All slots.
    pub slots: Vec<Slot>,
    /// For each node, the values whose life ends once it has run: its inputs read for the last time, and itself
    /// when nothing reads it (each listed once).
    pub dying_after: Vec<Vec<NodeId>>,
}

impl MemoryPlan {
    /// Plans `graph`: walks nodes in order, gives each intermediate the smallest free slot of its dtype that holds
    /// it without wasting half or more, else grows the largest free slot, else opens a new one; a value's slot is
    /// freed after its last reader runs.
    pub fn new(graph: &Graph) -> MemoryPlan {
        let nodes = graph.nodes();
        let last = graph.last_uses();
        let is_output: Vec<bool> = (0..nodes.len()).map(|i| graph.outputs().contains(&NodeId(i))).collect();
        let mut plan =
            MemoryPlan { slot_of: vec![None; nodes.len()], slots: vec![], dying_after: vec![vec![]; nodes.len()] };
        let mut free: Vec<usize> = vec![];
        for (i, node) in nodes.iter().enumerate() {
            let mut ins = node.inputs.clone();
            ins.sort();
            ins.dedup();
            for inp in ins {
                if last[inp.0] == Some(i) && !is_output[inp.0] {
                    plan.dying_after[i].push(inp);
                }
            }
            let needs_slot = !node.op.is_leaf() && !is_output[i] && !matches!(node.op, Op::Input { .. });
            if needs_slot {
                let s = plan.pick_slot(&mut free, node.out.dtype, node.out.shape.numel());
                plan.slot_of[i] = Some(s);
            }
            if last[i].is_none() && !is_output[i] && !node.op.is_leaf() {
                // Nobody reads it: its buffer is free again right away.
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
