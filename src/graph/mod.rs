//! The compute graph: nodes in topological order, a checked builder, and optimisation passes.

mod builder;
mod infer;
mod op;
mod passes;

pub use builder::GraphBuilder;
pub use infer::{infer, matmul_shape, TensorDesc};
pub use op::{BinaryOp, GeluKind, Op, ReduceKind};
pub use passes::{eliminate_dead_nodes, fuse_linear, optimize};

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One node: an op, its inputs (earlier nodes) and its checked output descriptor.
#[derive(Clone, Debug)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Its operands, all earlier in the graph.
    pub inputs: Vec<NodeId>,
    /// Output dtype and shape.
    pub out: TensorDesc,
}

/// A checked DAG of nodes in topological order with a list of outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    outputs: Vec<NodeId>,
}

impl Graph {
    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// The output nodes, in the order they were declared.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// The input nodes, in declaration order, with their names.
    pub fn inputs(&self) -> Vec<(NodeId, &str)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Input { name } => Some((NodeId(i), name.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many times each node is read (by other nodes; outputs not counted).
    pub fn consumer_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                c[i.0] += 1;
            }
        }
        c
    }

    /// Index of the last node that reads each node (`None` if nothing does). Outputs live to the end.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in &n.inputs {
                last[inp.0] = Some(i);
            }
        }
        last
    }

    pub(crate) fn from_parts(nodes: Vec<Node>, outputs: Vec<NodeId>) -> Graph {
        Graph { nodes, outputs }
    }

    /// Short multi-line description, one node a line.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let ins: Vec<String> = n.inputs.iter().map(|x| format!("%{}", x.0)).collect();
            let mark = if self.outputs.contains(&NodeId(i)) { " (output)" } else { "" };
            s.push_str(&format!(
                "%{i} = {}({}) -> {} {}{mark}\n",
                n.op.name(),
                ins.join(", "),
                n.out.dtype,
                n.out.shape
            ));
        }
        s
    }
}
