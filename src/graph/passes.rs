//! Optimisation passes: linear-layer fusion and dead-node removal.

use super::op::{BinaryOp, Op};
use super::{Graph, Node, NodeId};

/// The standard pipeline: fusion, then dead-node removal.
pub fn optimize(graph: &Graph) -> Graph {
    eliminate_dead_nodes(&fuse_linear(graph))
}

/// What a fused root node becomes.
struct Fusion {
    op: Op,
    inputs: Vec<NodeId>,
}

/// Rewrites MatMul → Add(bias) → Gelu into FusedLinearAddGelu, MatMul → Add(bias) → Add(residual) into
/// FusedLinearAddResidual and MatMul → Add(bias) into FusedLinearAdd, where every intermediate has exactly one
/// consumer and is not a graph output, the MatMul's left side is not transposed, its right side is 2-D, the bias is
/// 1-D of the output's last dimension and the residual has exactly the output's shape and dtype (no broadcast).
///
/// For a residual Add both of whose operands are linear layers (`Add(x·W1 + b1, y·W2 + b2)`), the first operand
/// takes the residual and the second becomes a FusedLinearAdd of its own.
pub fn fuse_linear(graph: &Graph) -> Graph {
    let nodes = graph.nodes();
    let consumers = graph.consumer_counts();
    let is_output: Vec<bool> = (0..nodes.len()).map(|i| graph.outputs().contains(&NodeId(i))).collect();
    let private = |id: NodeId| consumers[id.0] == 1 && !is_output[id.0];

    // For an Add node, the (matmul, x, w, bias, transpose_b) it can absorb.
    let linear_of = |add: &Node| -> Option<(NodeId, [NodeId; 3], bool)> {
        if !matches!(add.op, Op::Binary(BinaryOp::Add)) {
            return None;
        }
        for (mm, bias) in [(add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])] {
            let m = &nodes[mm.0];
            let Op::MatMul { transpose_a: false, transpose_b } = m.op else {
                continue;
            };
            let w = &nodes[m.inputs[1].0];
            let b = &nodes[bias.0];
            let n = m.out.shape.last_dim();
            if private(mm) && w.out.shape.rank() == 2 && b.out.shape.dims() == [n] && add.out == m.out {
                return Some((mm, [m.inputs[0], m.inputs[1], bias], transpose_b));
            }
        }
        None
    };

    let mut absorbed = vec![false; nodes.len()];
    let mut fused: Vec<Option<Fusion>> = (0..nodes.len()).map(|_| None).collect();
    // Gelu roots first, so an Add under a Gelu is taken whole rather than as a plain FusedLinearAdd.
    for (i, node) in nodes.iter().enumerate() {
        let Op::Gelu(gelu) = node.op else { continue };
        let add_id = node.inputs[0];
        if !private(add_id) {
            continue;
        }
        if let Some((mm, inputs, transpose_b)) = linear_of(&nodes[add_id.0]) {
            absorbed[mm.0] = true;
            absorbed[add_id.0] = true;
            fused[i] = Some(Fusion { op: Op::FusedLinearAddGelu { transpose_b, gelu }, inputs: inputs.to_vec() });
        }
    }
    // Residual roots next, so the linear layer under a residual Add is taken whole rather than as a plain
    // FusedLinearAdd. The first operand is tried as the linear layer first, so the choice is deterministic.
    for (i, node) in nodes.iter().enumerate() {
        if absorbed[i] || !matches!(node.op, Op::Binary(BinaryOp::Add)) {
            continue;
        }
        for (inner, residual) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            let lin = &nodes[inner.0];
            if absorbed[inner.0] || !private(inner) || lin.out != node.out || nodes[residual.0].out != node.out {
                continue;
            }
            let Some((mm, [x, w, b], transpose_b)) = linear_of(lin) else { continue };
            if absorbed[mm.0] {
                continue;
            }
            absorbed[mm.0] = true;
            absorbed[inner.0] = true;
            fused[i] = Some(Fusion { op: Op::FusedLinearAddResidual { transpose_b }, inputs: vec![x, w, b, residual] });
            break;
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        if absorbed[i] || fused[i].is_some() {
            continue;
        }
        if let Some((mm, inputs, transpose_b)) = linear_of(node) {
            if !absorbed[mm.0] {
                absorbed[mm.0] = true;
                fused[i] = Some(Fusion { op: Op::FusedLinearAdd { transpose_b }, inputs: inputs.to_vec() });
            }
        }
    }
    rebuild(graph, |i| !absorbed[i], |i| fused[i].take())
}

/// Removes nodes that no output depends on. Inputs are always kept, so run-time input order does not change.
pub fn eliminate_dead_nodes(graph: &Graph) -> Graph {
    let nodes = graph.nodes();
    let mut live = vec![false; nodes.len()];
    for o in graph.outputs() {
        live[o.0] = true;
    }
    for i in (0..nodes.len()).rev() {
        if live[i] {
            for inp in &nodes[i].inputs {
                live[inp.0] = true;
            }
        }
        if matches!(nodes[i].op, Op::Input { .. }) {
            live[i] = true;
        }
    }
    rebuild(graph, |i| live[i], |_| None)
}

/// Copies the nodes that `keep` accepts, replacing some by `replace`, and renumbers every reference.
fn rebuild(graph: &Graph, keep: impl Fn(usize) -> bool, mut replace: impl FnMut(usize) -> Option<Fusion>) -> Graph {
    let mut map: Vec<Option<NodeId>> = vec![None; graph.len()];
    let mut out_nodes = Vec::with_capacity(graph.len());
    let remap = |map: &[Option<NodeId>], id: NodeId| map[id.0].expect("pass kept a node whose input it removed");
    for (i, node) in graph.nodes().iter().enumerate() {
        if !keep(i) {
            continue;
        }
        let new = match replace(i) {
            Some(f) => {
                Node { op: f.op, inputs: f.inputs.iter().map(|&x| remap(&map, x)).collect(), out: node.out.clone() }
            }
            None => Node {
                op: node.op.clone(),
                inputs: node.inputs.iter().map(|&x| remap(&map, x)).collect(),
                out: node.out.clone(),
            },
        };
        map[i] = Some(NodeId(out_nodes.len()));
        out_nodes.push(new);
    }
    let outputs = graph.outputs().iter().map(|&o| remap(&map, o)).collect();
    Graph::from_parts(out_nodes, outputs)
}
