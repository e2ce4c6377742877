//! The operation set.

use crate::tensor::{DType, Shape, Tensor};

/// Elementwise binary operations; operands broadcast numpy-style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

impl BinaryOp {
    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
        }
    }

    /// Applies the op to two f32 values.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Which definition of GELU to compute. Both are computed exactly to their definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluKind {
    /// x · Φ(x) = 0.5 x (1 + erf(x / √2)): BERT's `gelu`.
    Erf,
    /// 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))): GPT-2's `gelu_new`.
    Tanh,
}

/// Reductions over one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
}

/// One operation of the graph. Input order is fixed per op and documented on each variant.
#[derive(Clone, Debug)]
pub enum Op {
    /// A value supplied at run time, in the order inputs were declared.
    Input {
        /// The input's name (for error messages and lookup).
        name: String,
    },
    /// A value fixed at build time (weights). Uploaded once per device and kept there.
    Constant {
        /// The value.
        tensor: Tensor,
    },
    /// Batched matrix product. Inputs: a `[.., m, k]` (`[.., k, m]` if transposed), b `[.., k, n]`
    /// (`[.., n, k]` if transposed). Batch dimensions broadcast.
    MatMul {
        /// Read a as its transpose.
        transpose_a: bool,
        /// Read b as its transpose.
        transpose_b: bool,
    },
    /// Elementwise binary op. Inputs: a, b (broadcast).
    Binary(BinaryOp),
    /// GELU. Input: x.
    Gelu(GeluKind),
    /// x · sigmoid(x). Input: x.
    Silu,
    /// Layer normalisation over the last axis. Inputs: x `[.., n]`, weight `[n]`, bias `[n]`.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// RMS normalisation over the last axis. Inputs: x `[.., n]`, weight `[n]`.
    RmsNorm {
        /// Added to the mean square.
        eps: f32,
    },
    /// Softmax over the last axis. Input: x.
    Softmax,
    /// Scaled dot-product attention. Inputs: q `[b, hq, sq, d]`, k `[b, hkv, skv, d]`, v `[b, hkv, skv, dv]`,
    /// optional additive mask broadcastable to `[b, hq, sq, skv]`. `hq` must be a multiple of `hkv`
    /// (grouped-query heads: query head h reads kv head h / (hq / hkv)). Output `[b, hq, sq, dv]`.
    Attention {
        /// Multiplies q·kᵀ (usually 1/√d).
        scale: f32,
        /// Query i sees keys j ≤ i + (skv − sq) only (aligned to the end, as in decoding).
        causal: bool,
    },
    /// Self-attention over one packed QKV projection, without layout copies. Inputs: qkv `[b, s, (heads + 2 ·
    /// kv_heads) · d]`, each row holding the query heads, then the key heads, then the value heads (`d` values
    /// each, as one linear layer with the three weights stacked produces them), and an optional additive mask
    /// broadcastable to `[b, heads, s, s]`. Output `[b, s, heads · d]`, the heads side by side as the output
    /// projection reads them. Equal to splitting the heads into `[b, h, s, d]`, [`Op::Attention`], and merging the
    /// heads back.
    PackedAttention {
        /// Multiplies q·kᵀ (usually 1/√d).
        scale: f32,
        /// Query i sees keys j ≤ i only.
        causal: bool,
        /// Query heads.
        heads: usize,
        /// Key/value heads (`heads` must be a multiple).
        kv_heads: usize,
    },
    /// Row gather. Inputs: table `[vocab, dim]`, ids (u32 or i64) of any shape. Output `ids.shape + [dim]`.
    Embedding,
    /// Same elements, new shape. Input: x.
    Reshape {
        /// The new shape (same element count).
        shape: Shape,
    },
    /// Axis permutation: output axis i is input axis `perm[i]`. Input: x.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// `start..end` along `axis`. Input: x.
    Slice {
        /// The axis.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Joins all inputs along `axis`; other dimensions must agree.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Reduces one axis. Input: x.
    Reduce {
        /// Sum, mean or max.
        kind: ReduceKind,
        /// The axis reduced.
        axis: usize,
        /// Keep the axis with size 1 instead of removing it.
        keep_dim: bool,
    },
    /// Element type conversion. Input: x.
    Cast {
        /// The target dtype.
        to: DType,
    },
    /// x·W + b in one kernel (W read transposed when `transpose_b`). Inputs: x `[.., m, k]`, w `[k, n]`
    /// (`[n, k]` if transposed), bias `[n]`. Made by the fusion pass from MatMul → Add.
    FusedLinearAdd {
        /// W is stored `[n, k]` (PyTorch's Linear layout).
        transpose_b: bool,
    },
    /// GELU(x·W + b) in one kernel. Inputs as [`Op::FusedLinearAdd`]. Made by the fusion pass from
    /// MatMul → Add → Gelu.
    FusedLinearAddGelu {
        /// W is stored `[n, k]`.
        transpose_b: bool,
        /// Which GELU.
        gelu: GeluKind,
    },
    /// x·W + b + residual in one kernel (the residual added in the GEMM's epilogue). Inputs as
    /// [`Op::FusedLinearAdd`], then the residual with exactly the output's shape and dtype. Made by the fusion pass
    /// from MatMul → Add(bias) → Add(residual).
    FusedLinearAddResidual {
        /// W is stored `[n, k]`.
        transpose_b: bool,
    },
}

impl Op {
    /// The op's name as used in benchmarks and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Constant { .. } => "Constant",
            Op::MatMul { .. } => "MatMul",
            Op::Binary(b) => b.name(),
            Op::Gelu(_) => "Gelu",
            Op::Silu => "Silu",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::RmsNorm { .. } => "RmsNorm",
            Op::Softmax => "Softmax",
            Op::Attention { .. } => "Attention",
            Op::PackedAttention { .. } => "PackedAttention",
            Op::Embedding => "Embedding",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Reduce { .. } => "Reduce",
            Op::Cast { .. } => "Cast",
            Op::FusedLinearAdd { .. } => "FusedLinearAdd",
            Op::FusedLinearAddGelu { .. } => "FusedLinearAddGelu",
            Op::FusedLinearAddResidual { .. } => "FusedLinearAddResidual",
        }
    }

    /// Whether the op is a graph leaf (no computation).
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Constant { .. })
    }
}
