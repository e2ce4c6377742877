//! Building graphs with every shape and dtype checked as nodes are added.

use super::infer::{infer, TensorDesc};
use super::op::{BinaryOp, GeluKind, Op, ReduceKind};
use super::{Graph, Node, NodeId};
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};

/// Builds a [`Graph`]. Each method checks its operands and returns `Err` (naming the shapes) instead of adding a
/// bad node, so a builder never holds an invalid graph.
#[derive(Default, Debug)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    outputs: Vec<NodeId>,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The descriptor of a node already added.
    pub fn desc(&self, id: NodeId) -> Result<&TensorDesc> {
        self.nodes.get(id.0).map(|n| &n.out).ok_or_else(|| Error::Graph(format!("unknown node id {}", id.0)))
    }

    /// Declares a run-time input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        self.push_leaf(Op::Input { name: name.to_string() }, TensorDesc::new(dtype, shape))
    }

    /// Adds a constant (weights).
    pub fn constant(&mut self, tensor: Tensor) -> NodeId {
        let out = TensorDesc::new(tensor.dtype(), tensor.shape().clone());
        self.push_leaf(Op::Constant { tensor }, out)
    }

    fn push_leaf(&mut self, op: Op, out: TensorDesc) -> NodeId {
        self.nodes.push(Node { op, inputs: vec![], out });
        NodeId(self.nodes.len() - 1)
    }

    /// Adds any op after checking it; the general form behind the named helpers.
    pub fn op(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let descs = inputs.iter().map(|&i| self.desc(i).cloned()).collect::<Result<Vec<_>>>()?;
        let out = infer(&op, &descs)?;
        self.nodes.push(Node { op, inputs: inputs.to_vec(), out });
        Ok(NodeId(self.nodes.len() - 1))
    }

    /// Batched matrix product (see [`Op::MatMul`]).
    pub fn matmul(&mut self, a: NodeId, b: NodeId, transpose_a: bool, transpose_b: bool) -> Result<NodeId> {
        self.op(Op::MatMul { transpose_a, transpose_b }, &[a, b])
    }

    /// a + b, broadcasting.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary(BinaryOp::Add), &[a, b])
    }

    /// a - b, broadcasting.
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary(BinaryOp::Sub), &[a, b])
    }

    /// a * b, broadcasting.
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary(BinaryOp::Mul), &[a, b])
    }

    /// a / b, broadcasting.
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.op(Op::Binary(BinaryOp::Div), &[a, b])
    }

    /// GELU of the given kind.
    pub fn gelu(&mut self, x: NodeId, kind: GeluKind) -> Result<NodeId> {
        self.op(Op::Gelu(kind), &[x])
    }

    /// SiLU.
    pub fn silu(&mut self, x: NodeId) -> Result<NodeId> {
        self.op(Op::Silu, &[x])
    }

    /// LayerNorm over the last axis.
    pub fn layer_norm(&mut self, x: NodeId, weight: NodeId, bias: NodeId, eps: f32) -> Result<NodeId> {
        self.op(Op::LayerNorm { eps }, &[x, weight, bias])
    }

    /// RMSNorm over the last axis.
    pub fn rms_norm(&mut self, x: NodeId, weight: NodeId, eps: f32) -> Result<NodeId> {
        self.op(Op::RmsNorm { eps }, &[x, weight])
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: NodeId) -> Result<NodeId> {
        self.op(Op::Softmax, &[x])
    }

    /// Scaled dot-product attention (see [`Op::Attention`]); `scale` defaults to 1/√head_dim.
    pub fn attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        mask: Option<NodeId>,
        scale: Option<f32>,
        causal: bool,
    ) -> Result<NodeId> {
        let d = self.desc(q)?.shape.last_dim();
        let scale = scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt());
        let mut ins = vec![q, k, v];
        ins.extend(mask);
        self.op(Op::Attention { scale, causal }, &ins)
    }

    /// Self-attention over a packed QKV projection (see [`Op::PackedAttention`]); `scale` defaults to
    /// 1/√head_dim.
    pub fn packed_attention(
        &mut self,
        qkv: NodeId,
        mask: Option<NodeId>,
        heads: usize,
        kv_heads: usize,
        scale: Option<f32>,
        causal: bool,
    ) -> Result<NodeId> {
        let w = self.desc(qkv)?.shape.last_dim();
        let d = w / (heads + 2 * kv_heads).max(1);
        let scale = scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt());
        let mut ins = vec![qkv];
        ins.extend(mask);
        self.op(Op::PackedAttention { scale, causal, heads, kv_heads }, &ins)
    }

    /// Row gather from `table` by `ids`.
    pub fn embedding(&mut self, table: NodeId, ids: NodeId) -> Result<NodeId> {
        self.op(Op::Embedding, &[table, ids])
    }

    /// Reshape.
    pub fn reshape(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        self.op(Op::Reshape { shape: shape.into() }, &[x])
    }

    /// Axis permutation.
    pub fn transpose(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        self.op(Op::Transpose { perm: perm.to_vec() }, &[x])
    }

    /// `start..end` along `axis`.
    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, end: usize) -> Result<NodeId> {
        self.op(Op::Slice { axis, start, end }, &[x])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        self.op(Op::Concat { axis }, xs)
    }

    /// Reduction over `axis`.
    pub fn reduce(&mut self, x: NodeId, kind: ReduceKind, axis: usize, keep_dim: bool) -> Result<NodeId> {
        self.op(Op::Reduce { kind, axis, keep_dim }, &[x])
    }

    /// dtype conversion.
    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        self.op(Op::Cast { to }, &[x])
    }

    /// x·W(ᵀ) + b as one op (users normally write MatMul + Add and let fusion do this).
    pub fn linear(&mut self, x: NodeId, w: NodeId, b: NodeId, transpose_b: bool) -> Result<NodeId> {
        self.op(Op::FusedLinearAdd { transpose_b }, &[x, w, b])
    }

    /// Marks a node as a graph output.
    pub fn output(&mut self, id: NodeId) -> Result<()> {
        self.desc(id)?;
        self.outputs.push(id);
        Ok(())
    }

    /// Finishes the graph; `Err` if it has no outputs or two inputs share a name.
    pub fn build(self) -> Result<Graph> {
        if self.outputs.is_empty() {
            return Err(Error::Graph("graph has no outputs; mark at least one with output()".into()));
        }
        let mut names = std::collections::HashSet::new();
        for n in &self.nodes {
            if let Op::Input { name } = &n.op {
                if !names.insert(name.as_str()) {
                    return Err(Error::Graph(format!("two inputs are named '{name}'")));
                }
            }
        }
        Ok(Graph::from_parts(self.nodes, self.outputs))
    }
}
