//! The benchmark cases. Shapes follow the JSON convention: `[m, k, n]` for MatMul and the fused linear ops,
//! `[batch, heads, seq, head_dim]` for Attention, the tensor's shape otherwise.

use crate::graph::{infer, BinaryOp, GeluKind, Op, TensorDesc};
use crate::tensor::{DType, Shape, Tensor};
use crate::util::random;

/// Quick (a CPU-sized smoke run, under a minute) or full (the exact large shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Small and medium sizes, short timing budget.
    Quick,
    /// Everything, including the large GPU shapes.
    Full,
}

/// One benchmark: an op on fixed inputs.
#[derive(Clone, Debug)]
pub struct BenchCase {
    /// Name in the table and JSON ("MatMul", "Copy", ...).
    pub name: &'static str,
    /// The op that runs.
    pub op: Op,
    /// Shape as reported.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Input descriptors in op order.
    pub inputs: Vec<TensorDesc>,
    /// Output descriptor.
    pub output: TensorDesc,
    /// Floating-point operations of one run (None for memory-bound ops).
    pub flops: Option<f64>,
    /// Bytes read and written by one run (None for compute-bound ops).
    pub bytes: Option<f64>,
}

impl BenchCase {
    fn new(name: &'static str, op: Op, shape: Vec<usize>, inputs: Vec<TensorDesc>) -> BenchCase {
        let output = infer(&op, &inputs).expect("benchmark cases are well-formed");
        let dtype = inputs[0].dtype;
        let moved = (inputs.iter().map(TensorDesc::bytes).sum::<usize>() + output.bytes()) as f64;
        BenchCase { name, op, shape, dtype, inputs, output, flops: None, bytes: Some(moved) }
    }

    /// A case for any op from its input descriptors (the output is inferred).
    pub fn for_op(op: Op, inputs: Vec<TensorDesc>) -> BenchCase {
        let shape = inputs[0].shape.dims().to_vec();
        BenchCase::new(op.name(), op, shape, inputs)
    }

    fn compute(mut self, flops: f64) -> BenchCase {
        self.flops = Some(flops);
        self.bytes = None;
        self
    }

    /// Random inputs for the case (never zeros), seeded so every device sees the same data.
    pub fn make_inputs(&self) -> Vec<Tensor> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(i, d)| random::uniform(d.dtype, d.shape.clone(), 1.0, 7 + i as u64))
            .collect()
    }
}

fn desc(dtype: DType, dims: &[usize]) -> TensorDesc {
    TensorDesc::new(dtype, Shape::new(dims.to_vec()))
}

/// Device-to-device copy (the bandwidth ceiling): a Reshape to the same shape copies on every backend.
pub fn copy(n: usize) -> BenchCase {
    BenchCase::new("Copy", Op::Reshape { shape: Shape::new([n]) }, vec![n], vec![desc(DType::F32, &[n])])
}

/// Plain matmul [m, k] x [k, n].
pub fn matmul(dtype: DType, m: usize, k: usize, n: usize) -> BenchCase {
    let op = Op::MatMul { transpose_a: false, transpose_b: false };
    BenchCase::new("MatMul", op, vec![m, k, n], vec![desc(dtype, &[m, k]), desc(dtype, &[k, n])])
        .compute(2.0 * (m * k * n) as f64)
}

/// GELU(x W^T + b) with PyTorch's Linear layout.
pub fn fused_linear_gelu(dtype: DType, m: usize, k: usize, n: usize) -> BenchCase {
    let op = Op::FusedLinearAddGelu { transpose_b: true, gelu: GeluKind::Erf };
    let ins = vec![desc(dtype, &[m, k]), desc(dtype, &[n, k]), desc(dtype, &[n])];
    BenchCase::new("FusedLinearAddGelu", op, vec![m, k, n], ins).compute(2.0 * (m * k * n) as f64)
}

/// x W^T + b + residual with PyTorch's Linear layout (a BERT output projection with its residual connection).
pub fn fused_linear_residual(dtype: DType, m: usize, k: usize, n: usize) -> BenchCase {
    let op = Op::FusedLinearAddResidual { transpose_b: true };
    let ins = vec![desc(dtype, &[m, k]), desc(dtype, &[n, k]), desc(dtype, &[n]), desc(dtype, &[m, n])];
    BenchCase::new("FusedLinearAddResidual", op, vec![m, k, n], ins).compute(2.0 * (m * k * n) as f64)
}

fn elementwise(name: &'static str, op: Op, dtype: DType, n: usize, arity: usize) -> BenchCase {
    BenchCase::new(name, op, vec![n], vec![desc(dtype, &[n]); arity])
}

fn rowwise(name: &'static str, op: Op, dtype: DType, rows: usize, cols: usize) -> BenchCase {
    let mut ins = vec![desc(dtype, &[rows, cols])];
    if matches!(op, Op::LayerNorm { .. }) {
        ins.push(desc(dtype, &[cols]));
        ins.push(desc(dtype, &[cols]));
    }
    BenchCase::new(name, op, vec![rows, cols], ins)
}

/// Attention over [batch, heads, seq, head_dim], no mask.
pub fn attention(dtype: DType, b: usize, h: usize, s: usize, d: usize) -> BenchCase {
    let op = Op::Attention { scale: 1.0 / (d as f32).sqrt(), causal: false };
    let ins = vec![desc(dtype, &[b, h, s, d]); 3];
    BenchCase::new("Attention", op, vec![b, h, s, d], ins).compute(4.0 * (b * h * s * s * d) as f64)
}

/// The cases of one mode, cheapest first.
pub fn suite(mode: Mode) -> Vec<BenchCase> {
    use DType::*;
    let add = Op::Binary(BinaryOp::Add);
    let gelu = Op::Gelu(GeluKind::Erf);
    let ln = Op::LayerNorm { eps: 1e-5 };
    let mut v = vec![
        copy(1 << 24),
        elementwise("Add", add.clone(), F32, 1 << 24, 2),
        elementwise("Gelu", gelu.clone(), F32, 1 << 24, 1),
        rowwise("LayerNorm", ln.clone(), F32, 4096, 1024),
        rowwise("Softmax", Op::Softmax, F32, 4096, 1024),
        matmul(F32, 256, 256, 256),
        matmul(F32, 1024, 1024, 1024),
        matmul(F32, 2048, 2048, 2048),
        matmul(BF16, 512, 512, 512),
        fused_linear_gelu(F32, 512, 384, 1536),
        fused_linear_residual(F32, 512, 1536, 384),
        attention(F32, 1, 4, 128, 64),
        attention(F32, 2, 8, 1024, 64),
    ];
    if mode == Mode::Full {
        v.extend([
            copy(268_435_456),
            elementwise("Add", add, F32, 67_108_864, 2),
            elementwise("Gelu", gelu, F32, 67_108_864, 1),
            rowwise("LayerNorm", ln, F32, 16384, 4096),
            rowwise("Softmax", Op::Softmax, F32, 16384, 4096),
            matmul(BF16, 4096, 384, 1536),
            fused_linear_gelu(BF16, 4096, 384, 1536),
            fused_linear_residual(F16, 32768, 1536, 384),
            matmul(F32, 4096, 4096, 4096),
            attention(BF16, 8, 16, 2048, 64),
            matmul(BF16, 8192, 8192, 8192),
        ]);
    }
    v
}
