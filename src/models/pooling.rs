//! Sentence-transformers' pipeline after the encoder: pooling (1_Pooling/config.json) and L2 normalisation
//! (a `Normalize` module in modules.json). Pooling runs inside the graph in f32, so the GPU returns `[batch,
//! hidden]` instead of every token's state; normalisation runs on the host.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::graph::{GraphBuilder, NodeId};
use crate::tensor::{DType, Tensor};

/// How token states become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over the tokens the attention mask keeps (all-MiniLM-L6-v2).
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
}

/// The sentence-transformers modules after the encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentencePipeline {
    /// The pooling.
    pub pooling: PoolingMode,
    /// Whether the pooled vector is scaled to unit L2 norm.
    pub normalize: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl SentencePipeline {
    /// Reads `modules.json` and the pooling module's `config.json` from a sentence-transformers folder. A folder
    /// without modules.json (a plain transformers model) gets mean pooling and normalisation, the
    /// sentence-transformers default for BERT encoders.
    pub fn from_dir(dir: &Path) -> Result<SentencePipeline> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(SentencePipeline { pooling: PoolingMode::Mean, normalize: true });
        }
        let text = std::fs::read_to_string(&modules_path).map_err(|e| Error::io(&modules_path, e))?;
        let modules: Vec<ModuleEntry> = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&modules_path, format!("not a valid modules.json: {e}")))?;
        let mut pooling = None;
        let mut normalize = false;
        for (i, m) in modules.iter().enumerate() {
            let short = m.kind.rsplit('.').next().unwrap_or(&m.kind);
            match short {
                "Transformer" if i == 0 => {}
                "Pooling" if pooling.is_none() => pooling = Some(read_pooling(&dir.join(&m.path).join("config.json"))?),
                "Normalize" => normalize = true,
                _ => {
                    return Err(Error::bad_file(
                        &modules_path,
                        format!(
                            "module {i} '{}' is not supported here (supported: Transformer first, then Pooling and \
                             Normalize)",
                            m.kind
                        ),
                    ))
                }
            }
        }
        let pooling = pooling.ok_or_else(|| Error::bad_file(&modules_path, "no Pooling module listed"))?;
        Ok(SentencePipeline { pooling, normalize })
    }
}

fn read_pooling(path: &Path) -> Result<PoolingMode> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let p: PoolingFile =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not a valid pooling config: {e}")))?;
    let modes = [
        (p.pooling_mode_mean_tokens, "mean_tokens"),
        (p.pooling_mode_cls_token, "cls_token"),
        (p.pooling_mode_max_tokens, "max_tokens"),
        (p.pooling_mode_mean_sqrt_len_tokens, "mean_sqrt_len_tokens"),
        (p.pooling_mode_weightedmean_tokens, "weightedmean_tokens"),
        (p.pooling_mode_lasttoken, "lasttoken"),
    ];
    let on: Vec<&str> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
    match on[..] {
        ["mean_tokens"] => Ok(PoolingMode::Mean),
        ["cls_token"] => Ok(PoolingMode::Cls),
        _ => Err(Error::bad_file(
            path,
            format!("pooling modes {on:?} are not supported (exactly one of mean_tokens, cls_token)"),
        )),
    }
}

/// Adds pooling to a graph: `hidden` `[batch, seq, dim]` (any float dtype) becomes f32 `[batch, dim]`. Returns
/// (the `pool_weights` input node, the output). `pool_weights` is f32 `[batch, 1, seq]`, made by
/// [`pool_weights`]: mean pooling is then one batched matmul of the weights with the states.
pub fn add_pooling(g: &mut GraphBuilder, hidden: NodeId, mode: PoolingMode) -> Result<(NodeId, NodeId)> {
    let dims = g.desc(hidden)?.shape.dims().to_vec();
    let [batch, seq, dim] = dims[..] else {
        return Err(Error::arg("add_pooling", format!("hidden states must be [batch, seq, dim], got {dims:?}")));
    };
    let weights = g.input("pool_weights", DType::F32, [batch, 1, seq]);
    let h = if g.desc(hidden)?.dtype == DType::F32 { hidden } else { g.cast(hidden, DType::F32)? };
    let pooled = match mode {
        PoolingMode::Mean => g.matmul(weights, h, false, false)?,
        PoolingMode::Cls => g.slice(h, 1, 0, 1)?,
    };
    Ok((weights, g.reshape(pooled, [batch, dim])?))
}

/// The `pool_weights` input for sequences of the given lengths padded to `seq`: 1/len on kept tokens, 0 on padding.
pub fn pool_weights(lengths: &[usize], seq: usize) -> Result<Tensor> {
    let mut v = Vec::with_capacity(lengths.len() * seq);
    for &len in lengths {
        // sentence-transformers clamps the token count at 1e-9; a real sequence always has [CLS] and [SEP].
        let w = 1.0 / len.max(1) as f32;
        v.extend((0..seq).map(|j| if j < len { w } else { 0.0 }));
    }
    Tensor::from_vec(v, [lengths.len(), 1, seq])
}

/// Scales `v` to unit L2 norm as `torch.nn.functional.normalize` does (norm clamped at 1e-12).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12);
    for x in v {
        *x = (*x as f64 / norm) as f32;
    }
}
