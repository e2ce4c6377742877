//! A built-in pre-norm transformer block graph (attention + MLP) with random weights, for placement benchmarks,
//! `bench --explain` and executor tests.

use crate::error::Result;
use crate::graph::{GeluKind, Graph, GraphBuilder, NodeId};
use crate::tensor::DType;
use crate::util::random;

struct Weights<'a> {
    g: &'a mut GraphBuilder,
    seed: u64,
    dtype: DType,
}

impl Weights<'_> {
    fn tensor(&mut self, dims: &[usize], scale: f32) -> NodeId {
        self.seed += 1;
        self.g.constant(random::uniform(self.dtype, dims.to_vec(), scale, self.seed))
    }

    /// x W^T + b in PyTorch's Linear layout (fused by the optimiser).
    fn linear(&mut self, x: NodeId, inp: usize, out: usize) -> Result<NodeId> {
        let w = self.tensor(&[out, inp], 1.0 / (inp as f32).sqrt());
        let b = self.tensor(&[out], 0.1);
        let y = self.g.matmul(x, w, false, true)?;
        self.g.add(y, b)
    }

    fn layer_norm(&mut self, x: NodeId, n: usize) -> Result<NodeId> {
        let w = self.tensor(&[n], 1.0);
        let b = self.tensor(&[n], 0.1);
        self.g.layer_norm(x, w, b, 1e-5)
    }
}

/// One block over `tokens` tokens of width `hidden` (heads of 64, MLP 4x), input "x" `[tokens, hidden]`.
pub fn transformer_block(tokens: usize, hidden: usize, dtype: DType, seed: u64) -> Result<Graph> {
    let heads = (hidden / 64).max(1);
    let d = hidden / heads;
    let mut g = GraphBuilder::new();
    let x = g.input("x", dtype, [tokens, hidden]);
    let mut w = Weights { g: &mut g, seed, dtype };
    let h = w.layer_norm(x, hidden)?;
    let mut qkv = vec![];
    for _ in 0..3 {
        let p = w.linear(h, hidden, hidden)?;
        let p = w.g.reshape(p, [1, tokens, heads, d])?;
        qkv.push(w.g.transpose(p, &[0, 2, 1, 3])?);
    }
    let a = w.g.attention(qkv[0], qkv[1], qkv[2], None, None, false)?;
    let a = w.g.transpose(a, &[0, 2, 1, 3])?;
    let a = w.g.reshape(a, [tokens, hidden])?;
    let a = w.linear(a, hidden, hidden)?;
    let x = w.g.add(x, a)?;
    let h = w.layer_norm(x, hidden)?;
    let m = w.linear(h, hidden, 4 * hidden)?;
    let m = w.g.gelu(m, GeluKind::Erf)?;
    let m = w.linear(m, 4 * hidden, hidden)?;
    let y = w.g.add(x, m)?;
    g.output(y)?;
    g.build()
}
