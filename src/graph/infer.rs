//! Output shape and dtype of each op, checked against its inputs. The one place these rules live.

use super::op::Op;
use crate::error::{Error, Result};
use crate::tensor::{DType, Shape};

/// An operand's dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Shape,
}

impl TensorDesc {
    /// A descriptor.
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> Self {
        TensorDesc { dtype, shape: shape.into() }
    }

    /// Size of the data in bytes.
    pub fn bytes(&self) -> usize {
        self.shape.numel() * self.dtype.size()
    }
}

fn arity(op: &Op, ins: &[TensorDesc], allowed: &[usize]) -> Result<()> {
    if allowed.contains(&ins.len()) {
        Ok(())
    } else {
        Err(Error::Graph(format!("{} takes {:?} inputs, got {}", op.name(), allowed, ins.len())))
    }
}

fn float(op: &'static str, d: &TensorDesc) -> Result<()> {
    if d.dtype.is_float() {
        Ok(())
    } else {
        Err(Error::DTypeMismatch { op, expected: "a float dtype (f32, f16, bf16)".into(), got: d.dtype })
    }
}

fn same_dtype(op: &'static str, a: &TensorDesc, b: &TensorDesc) -> Result<()> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(Error::DTypeMismatch { op, expected: a.dtype.to_string(), got: b.dtype })
    }
}

fn axis_ok(op: &'static str, axis: usize, rank: usize) -> Result<()> {
    if axis < rank {
        Ok(())
    } else {
        Err(Error::arg(op, format!("axis {axis} out of range for rank {rank}")))
    }
}

/// The result of a batched matmul of `a` and `b` (see [`Op::MatMul`]), with `(m, k, n)`.
pub fn matmul_shape(op: &'static str, a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<(Shape, [usize; 3])> {
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::shape_hint(op, a, b, "both operands need rank >= 2"));
    }
    let (ad, bd) = (a.dims(), b.dims());
    let (m, ka) = if ta { (ad[ad.len() - 1], ad[ad.len() - 2]) } else { (ad[ad.len() - 2], ad[ad.len() - 1]) };
    let (kb, n) = if tb { (bd[bd.len() - 1], bd[bd.len() - 2]) } else { (bd[bd.len() - 2], bd[bd.len() - 1]) };
    if ka != kb {
        return Err(Error::shape_hint(op, a, b, format!("inner dimensions differ ({ka} vs {kb})")));
    }
    let batch = Shape::broadcast(op, &Shape::new(&ad[..ad.len() - 2]), &Shape::new(&bd[..bd.len() - 2]))
        .map_err(|_| Error::shape_hint(op, a, b, "batch dimensions do not broadcast"))?;
    let mut out = batch.dims().to_vec();
    out.extend([m, n]);
    Ok((Shape::new(out), [m, ka, n]))
}

/// Checks `ins` against `op` and returns the output's descriptor.
pub fn infer(op: &Op, ins: &[TensorDesc]) -> Result<TensorDesc> {
    match op {
        Op::Input { .. } | Op::Constant { .. } => {
            Err(Error::Graph(format!("{} nodes are made with the builder's input/constant", op.name())))
        }
        Op::MatMul { transpose_a, transpose_b } => {
            arity(op, ins, &[2])?;
            float("MatMul", &ins[0])?;
            same_dtype("MatMul", &ins[0], &ins[1])?;
            let (shape, _) = matmul_shape("MatMul", &ins[0].shape, &ins[1].shape, *transpose_a, *transpose_b)?;
            Ok(TensorDesc::new(ins[0].dtype, shape))
        }
        Op::Binary(b) => {
            arity(op, ins, &[2])?;
            float(b.name(), &ins[0])?;
            same_dtype(b.name(), &ins[0], &ins[1])?;
            Ok(TensorDesc::new(ins[0].dtype, Shape::broadcast(b.name(), &ins[0].shape, &ins[1].shape)?))
        }
        Op::Gelu(_) | Op::Silu | Op::Softmax => {
            arity(op, ins, &[1])?;
            float(op.name(), &ins[0])?;
            Ok(ins[0].clone())
        }
        Op::LayerNorm { eps } | Op::RmsNorm { eps } => {
            let params = if matches!(op, Op::LayerNorm { .. }) { 2 } else { 1 };
            arity(op, ins, &[1 + params])?;
            float(op.name(), &ins[0])?;
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(Error::arg(op.name(), format!("eps must be finite and >= 0, got {eps}")));
            }
            let n = ins[0].shape.last_dim();
            for p in &ins[1..] {
                same_dtype(op.name(), &ins[0], p)?;
                if p.shape.dims() != [n] {
                    return Err(Error::shape_hint(
                        op.name(),
                        &ins[0].shape,
                        &p.shape,
                        format!("weight/bias must be [{n}]"),
                    ));
                }
            }
            Ok(ins[0].clone())
        }
        Op::Attention { scale, .. } => {
            arity(op, ins, &[3, 4])?;
            let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
            float("Attention", q)?;
            same_dtype("Attention", q, k)?;
            same_dtype("Attention", q, v)?;
            if !scale.is_finite() {
                return Err(Error::arg("Attention", format!("scale must be finite, got {scale}")));
            }
            for t in [q, k, v] {
                if t.shape.rank() != 4 {
                    return Err(Error::shape_hint(
                        "Attention",
                        &q.shape,
                        &t.shape,
                        "q, k, v must be [batch, heads, seq, head_dim]",
                    ));
                }
            }
            let (qd, kd, vd) = (q.shape.dims(), k.shape.dims(), v.shape.dims());
            if qd[0] != kd[0] || kd[0] != vd[0] {
                return Err(Error::shape_hint("Attention", &q.shape, &k.shape, "batch sizes differ"));
            }
            if kd[1] != vd[1] || kd[2] != vd[2] {
                return Err(Error::shape_hint(
                    "Attention",
                    &k.shape,
                    &v.shape,
                    "k and v need the same heads and sequence length",
                ));
            }
            if qd[3] != kd[3] {
                return Err(Error::shape_hint("Attention", &q.shape, &k.shape, "q and k head_dim differ"));
            }
            if kd[1] == 0 || qd[1] % kd[1] != 0 {
                return Err(Error::shape_hint(
                    "Attention",
                    &q.shape,
                    &k.shape,
                    "query heads must be a multiple of kv heads",
                ));
            }
            if let Some(m) = ins.get(3) {
                same_dtype("Attention", q, m)?;
                let full = Shape::new([qd[0], qd[1], qd[2], kd[2]]);
                let b = Shape::broadcast("Attention", &m.shape, &full).map_err(|_| {
                    Error::shape_hint("Attention", &m.shape, &full, "mask must broadcast to [b, hq, sq, skv]")
                })?;
                if b != full || m.shape.rank() > 4 {
                    return Err(Error::shape_hint(
                        "Attention",
                        &m.shape,
                        &full,
                        "mask must broadcast to [b, hq, sq, skv]",
                    ));
                }
            }
            Ok(TensorDesc::new(q.dtype, [qd[0], qd[1], qd[2], vd[3]]))
        }
        Op::PackedAttention { scale, heads, kv_heads, .. } => {
            arity(op, ins, &[1, 2])?;
            let qkv = &ins[0];
            float("PackedAttention", qkv)?;
            if !scale.is_finite() {
                return Err(Error::arg("PackedAttention", format!("scale must be finite, got {scale}")));
            }
            if *kv_heads == 0 || heads % kv_heads != 0 {
                return Err(Error::arg(
                    "PackedAttention",
                    format!("{heads} query heads are not a multiple of {kv_heads} kv heads"),
                ));
            }
            let [b, s, w] = qkv.shape.dims()[..] else {
                return Err(Error::arg(
                    "PackedAttention",
                    format!("qkv must be [batch, seq, (heads + 2 kv_heads) * head_dim], got {}", qkv.shape),
                ));
            };
            let per_pos = heads + 2 * kv_heads;
            if w % per_pos != 0 {
                return Err(Error::arg(
                    "PackedAttention",
                    format!("qkv rows of {w} values do not split into {per_pos} heads ({heads} + 2 x {kv_heads})"),
                ));
            }
            let d = w / per_pos;
            if let Some(m) = ins.get(1) {
                same_dtype("PackedAttention", qkv, m)?;
                let full = Shape::new([b, *heads, s, s]);
                let ok = m.shape.rank() <= 4
                    && Shape::broadcast("PackedAttention", &m.shape, &full).is_ok_and(|x| x == full);
                if !ok {
                    return Err(Error::shape_hint(
                        "PackedAttention",
                        &m.shape,
                        &full,
                        "mask must broadcast to [b, heads, seq, seq]",
                    ));
                }
            }
            Ok(TensorDesc::new(qkv.dtype, [b, s, heads * d]))
        }
        Op::Embedding => {
            arity(op, ins, &[2])?;
            let (table, ids) = (&ins[0], &ins[1]);
            if table.shape.rank() != 2 {
                return Err(Error::shape_hint("Embedding", &table.shape, &ids.shape, "table must be [vocab, dim]"));
            }
            if !matches!(ids.dtype, DType::U32 | DType::I64) {
                return Err(Error::DTypeMismatch {
                    op: "Embedding",
                    expected: "u32 or i64 ids".into(),
                    got: ids.dtype,
                });
            }
            let mut out = ids.shape.dims().to_vec();
            out.push(table.shape.dims()[1]);
            Ok(TensorDesc::new(table.dtype, out))
        }
        Op::Reshape { shape } => {
            arity(op, ins, &[1])?;
            if shape.numel() != ins[0].shape.numel() {
                return Err(Error::shape_hint("Reshape", &ins[0].shape, shape, "element counts differ"));
            }
            Ok(TensorDesc::new(ins[0].dtype, shape.clone()))
        }
        Op::Transpose { perm } => {
            arity(op, ins, &[1])?;
            let r = ins[0].shape.rank();
            let mut seen = vec![false; r];
            if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
                return Err(Error::arg("Transpose", format!("{perm:?} is not a permutation of 0..{r}")));
            }
            let d = ins[0].shape.dims();
            Ok(TensorDesc::new(ins[0].dtype, perm.iter().map(|&p| d[p]).collect::<Vec<_>>()))
        }
        Op::Slice { axis, start, end } => {
            arity(op, ins, &[1])?;
            axis_ok("Slice", *axis, ins[0].shape.rank())?;
            let len = ins[0].shape.dims()[*axis];
            if start > end || *end > len {
                return Err(Error::arg("Slice", format!("range {start}..{end} invalid for axis {axis} of size {len}")));
            }
            let mut d = ins[0].shape.dims().to_vec();
            d[*axis] = end - start;
            Ok(TensorDesc::new(ins[0].dtype, d))
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err(Error::Graph("Concat needs at least one input".into()));
            }
            let first = &ins[0];
            axis_ok("Concat", *axis, first.shape.rank())?;
            let mut total = 0;
            for t in ins {
                same_dtype("Concat", first, t)?;
                let ok = t.shape.rank() == first.shape.rank()
                    && t.shape
                        .dims()
                        .iter()
                        .zip(first.shape.dims())
                        .enumerate()
                        .all(|(i, (a, b))| i == *axis || a == b);
                if !ok {
                    return Err(Error::shape_hint(
                        "Concat",
                        &first.shape,
                        &t.shape,
                        format!("dimensions other than axis {axis} must agree"),
                    ));
                }
                total += t.shape.dims()[*axis];
            }
            let mut d = first.shape.dims().to_vec();
            d[*axis] = total;
            Ok(TensorDesc::new(first.dtype, d))
        }
        Op::Reduce { axis, keep_dim, .. } => {
            arity(op, ins, &[1])?;
            float("Reduce", &ins[0])?;
            axis_ok("Reduce", *axis, ins[0].shape.rank())?;
            let mut d = ins[0].shape.dims().to_vec();
            if *keep_dim {
                d[*axis] = 1;
            } else {
                d.remove(*axis);
            }
            Ok(TensorDesc::new(ins[0].dtype, d))
        }
        Op::Cast { to } => {
            arity(op, ins, &[1])?;
            if ins[0].dtype.is_float() != to.is_float() {
                return Err(Error::arg("Cast", format!("cannot cast {} to {to}", ins[0].dtype)));
            }
            Ok(TensorDesc::new(*to, ins[0].shape.clone()))
        }
        Op::FusedLinearAdd { transpose_b }
        | Op::FusedLinearAddGelu { transpose_b, .. }
        | Op::FusedLinearAddResidual { transpose_b } => {
            let residual = matches!(op, Op::FusedLinearAddResidual { .. });
            arity(op, ins, &[if residual { 4 } else { 3 }])?;
            let (x, w, b) = (&ins[0], &ins[1], &ins[2]);
            float(op.name(), x)?;
            same_dtype(op.name(), x, w)?;
            same_dtype(op.name(), x, b)?;
            if w.shape.rank() != 2 {
                return Err(Error::shape_hint(op.name(), &x.shape, &w.shape, "weight must be 2-D"));
            }
            let (shape, [_, _, n]) = matmul_shape(op.name(), &x.shape, &w.shape, false, *transpose_b)?;
            if b.shape.dims() != [n] {
                return Err(Error::shape_hint(op.name(), &shape, &b.shape, format!("bias must be [{n}]")));
            }
            if let Some(r) = ins.get(3) {
                same_dtype(op.name(), x, r)?;
                if r.shape != shape {
                    let hint = format!("the residual must have the output's shape {shape} (no broadcasting)");
                    return Err(Error::shape_hint(op.name(), &shape, &r.shape, hint));
                }
            }
            Ok(TensorDesc::new(x.dtype, shape))
        }
    }
}
