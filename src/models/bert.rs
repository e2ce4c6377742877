//! The BERT encoder as a graph: embeddings (word + token type 0 + position) and LayerNorm, then per layer
//! self-attention with an additive padding mask (one stacked QKV projection feeding PackedAttention), output
//! projection + residual + LayerNorm, and a GELU feed-forward block + residual + LayerNorm. Written with plain
//! MatMul + Add (+ Gelu) so the fusion pass turns every projection into FusedLinearAdd / FusedLinearAddGelu.

use std::path::Path;

use super::config::BertConfig;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphBuilder, NodeId};
use crate::tensor::{DType, HostVec, Tensor};

/// A linear layer in PyTorch's layout: weight `[out, in]`, bias `[out]`.
#[derive(Clone, Debug)]
struct Linear {
    w: Tensor,
    b: Tensor,
}

/// LayerNorm parameters.
#[derive(Clone, Debug)]
struct Norm {
    w: Tensor,
    b: Tensor,
}

#[derive(Clone, Debug)]
struct Layer {
    /// Query, key and value projections stacked into one `[3 · hidden, hidden]` layer: one product instead of
    /// three, and its output feeds [`crate::graph::Op::PackedAttention`] without layout copies.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    intermediate: Linear,
    output: Linear,
    out_norm: Norm,
}

/// A BERT encoder with its weights, in one compute dtype.
#[derive(Clone, Debug)]
pub struct BertModel {
    config: BertConfig,
    dtype: DType,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

/// The nodes a BERT graph produces.
#[derive(Clone, Debug)]
pub struct BertNodes {
    /// The embedding block's output (after its LayerNorm), `[batch, seq, hidden]`.
    pub embeddings: NodeId,
    /// Each layer's output, `[batch, seq, hidden]`; the last one is `last_hidden_state`.
    pub layers: Vec<NodeId>,
}

impl BertNodes {
    /// The last layer's output.
    pub fn last_hidden_state(&self) -> NodeId {
        *self.layers.last().unwrap_or(&self.embeddings)
    }
}

/// The additive attention mask value for a padded key position: large enough that its softmax weight is exactly 0
/// in f32, small enough not to overflow the dtype when a score is added to it (f16 ends at 65504).
pub fn mask_value(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => -1.0e4,
        _ => -1.0e9,
    }
}

impl BertModel {
    /// Loads a BERT folder's `config.json` and `model.safetensors`, converting the weights to `dtype` (f32 weights
    /// stay memory-mapped when `dtype` is f32).
    pub fn load(dir: impl AsRef<Path>, dtype: DType) -> Result<BertModel> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::load(dir.join("model.safetensors"), "bert.")?;
        Self::from_weights(config, &weights, dtype)
    }

    /// Builds the model from a config and its weights.
    pub fn from_weights(config: BertConfig, w: &Weights, dtype: DType) -> Result<BertModel> {
        if !dtype.is_float() {
            return Err(Error::arg("BertModel", format!("compute dtype must be f32, f16 or bf16, got {dtype}")));
        }
        let h = config.hidden_size;
        let ff = config.intermediate_size;
        let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                w: w.get(&format!("{name}.weight"), &[out, inp], dtype)?,
                b: w.get(&format!("{name}.bias"), &[out], dtype)?,
            })
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                w: w.get(&format!("{name}.weight"), &[h], dtype)?,
                b: w.get(&format!("{name}.bias"), &[h], dtype)?,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                qkv: stack(&[
                    linear(&format!("{p}.attention.self.query"), h, h)?,
                    linear(&format!("{p}.attention.self.key"), h, h)?,
                    linear(&format!("{p}.attention.self.value"), h, h)?,
                ])?,
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"), ff, h)?,
                output: linear(&format!("{p}.output.dense"), h, ff)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(BertModel {
            word: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, h], dtype)?,
            position: w.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h], dtype)?,
            token_type: w.get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h], dtype)?,
            emb_norm: norm("embeddings.LayerNorm")?,
            layers,
            config,
            dtype,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Adds the encoder to `g`. `ids`: u32 or i64 `[batch, seq]`; `bias`: the additive attention mask
    /// `[batch, 1, 1, seq]` in the compute dtype (0 for tokens, [`mask_value`] for padding), or `None` when no
    /// position is padded. Token type ids are all 0 (single-segment input, as sentence embedding uses).
    pub fn encoder(&self, g: &mut GraphBuilder, ids: NodeId, bias: Option<NodeId>) -> Result<BertNodes> {
        let c = &self.config;
        let dims = g.desc(ids)?.shape.dims().to_vec();
        let [_, seq] = dims[..] else {
            return Err(Error::arg("BertModel::encoder", format!("ids must be [batch, seq], got {dims:?}")));
        };
        if seq == 0 || seq > c.max_position_embeddings {
            return Err(Error::arg(
                "BertModel::encoder",
                format!("sequence length {seq} must be in 1..={}", c.max_position_embeddings),
            ));
        }
        let heads = c.num_attention_heads;

        let word = g.constant(self.word.clone());
        // The rows used are cut on the host when the graph is built, so no Slice runs per call.
        let tt = g.constant(leading_rows(&self.token_type, 1)?);
        let pos = g.constant(leading_rows(&self.position, seq)?);
        let x = g.embedding(word, ids)?;
        // Same order as transformers: (word + token_type) + position.
        let x = g.add(x, tt)?;
        let x = g.add(x, pos)?;
        let mut x = self.norm(g, x, &self.emb_norm)?;
        let embeddings = x;

        let mut outs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let qkv = self.linear(g, x, &layer.qkv)?;
            let a = g.packed_attention(qkv, bias, heads, heads, None, false)?;
            let a = self.linear(g, a, &layer.attn_out)?;
            let a = g.add(a, x)?;
            let a = self.norm(g, a, &layer.attn_norm)?;

            let f = self.linear(g, a, &layer.intermediate)?;
            let f = g.gelu(f, c.hidden_act)?;
            let f = self.linear(g, f, &layer.output)?;
            let f = g.add(f, a)?;
            x = self.norm(g, f, &layer.out_norm)?;
            outs.push(x);
        }
        Ok(BertNodes { embeddings, layers: outs })
    }

    /// A graph with inputs `input_ids` (u32 `[batch, seq]`) and `attention_bias` (`[batch, 1, 1, seq]`, compute
    /// dtype) and output `last_hidden_state`; with `layer_outputs`, the outputs are the embedding output followed
    /// by every layer's output (the last of them is `last_hidden_state`), as transformers' `hidden_states`.
    pub fn graph(&self, batch: usize, seq: usize, layer_outputs: bool) -> Result<Graph> {
        let mut g = GraphBuilder::new();
        let ids = g.input("input_ids", DType::U32, [batch, seq]);
        let bias = g.input("attention_bias", self.dtype, [batch, 1, 1, seq]);
        let nodes = self.encoder(&mut g, ids, Some(bias))?;
        if layer_outputs {
            g.output(nodes.embeddings)?;
            for &l in &nodes.layers {
                g.output(l)?;
            }
        } else {
            g.output(nodes.last_hidden_state())?;
        }
        g.build()
    }

    /// x·Wᵀ + b as MatMul + Add, which the fusion pass turns into one FusedLinearAdd (or, followed by a Gelu,
    /// FusedLinearAddGelu).
    fn linear(&self, g: &mut GraphBuilder, x: NodeId, l: &Linear) -> Result<NodeId> {
        let w = g.constant(l.w.clone());
        let b = g.constant(l.b.clone());
        let y = g.matmul(x, w, false, true)?;
        g.add(y, b)
    }

    fn norm(&self, g: &mut GraphBuilder, x: NodeId, n: &Norm) -> Result<NodeId> {
        let w = g.constant(n.w.clone());
        let b = g.constant(n.b.clone());
        g.layer_norm(x, w, b, self.config.layer_norm_eps)
    }
}

/// Linear layers with the same input stacked into one: weights joined along the output rows, biases likewise.
fn stack(parts: &[Linear]) -> Result<Linear> {
    let join = |ts: Vec<&Tensor>| -> Result<Tensor> {
        let dtype = ts[0].dtype();
        let mut dims = ts[0].shape().dims().to_vec();
        dims[0] = ts.iter().map(|t| t.shape().dims()[0]).sum();
        let bytes: Vec<u8> = ts.iter().flat_map(|t| t.as_bytes().iter().copied()).collect();
        Tensor::from_host_vec(HostVec::from_bytes(dtype, &bytes)?, dims)
    };
    Ok(Linear { w: join(parts.iter().map(|l| &l.w).collect())?, b: join(parts.iter().map(|l| &l.b).collect())? })
}

/// The first `rows` rows of a 2-D table, as a new tensor.
fn leading_rows(table: &Tensor, rows: usize) -> Result<Tensor> {
    let cols = table.shape().dims()[1];
    let bytes = &table.as_bytes()[..rows * cols * table.dtype().size()];
    Tensor::from_host_vec(HostVec::from_bytes(table.dtype(), bytes)?, [rows, cols])
}

/// The additive attention mask `[batch, 1, 1, seq]` in `dtype` for sequences of the given lengths padded to `seq`.
pub fn attention_bias(lengths: &[usize], seq: usize, dtype: DType) -> Result<Tensor> {
    let neg = mask_value(dtype);
    let mut v = Vec::with_capacity(lengths.len() * seq);
    for &len in lengths {
        v.extend((0..seq).map(|j| if j < len { 0.0f32 } else { neg }));
    }
    Tensor::from_vec(v, [lengths.len(), 1, 1, seq])?.to_dtype(dtype)
}
