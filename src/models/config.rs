//! The Hugging Face `config.json` of the BERT family, checked so that a model this engine cannot run is a clear
//! error at load time rather than wrong numbers later.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::graph::GeluKind;

/// The hyper-parameters of a BERT encoder (`BertModel` and the heads built on it).
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`hidden_size` must be a multiple).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// The feed-forward activation.
    pub hidden_act: GeluKind,
    /// Rows of the position-embedding table: the longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// The id used to pad sequences (0 when the config does not say).
    pub pad_token_id: u32,
}

/// The fields of config.json this engine reads; everything else is ignored.
#[derive(Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    position_embedding_type: Option<String>,
    is_decoder: Option<bool>,
}

/// Model types (config.json `model_type`) that share BERT's encoder layout and weight names.
const BERT_MODEL_TYPES: &[&str] = &["bert"];

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<BertConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|msg| Error::bad_file(path, msg))
    }

    /// Parses and checks the text of a config.json; `Err` holds what was wrong.
    pub fn from_json(text: &str) -> std::result::Result<BertConfig, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| format!("not a valid config.json: {e}"))?;
        let archs = raw.architectures.clone().unwrap_or_default();
        let model_type = raw.model_type.clone().unwrap_or_default();
        if !BERT_MODEL_TYPES.contains(&model_type.as_str()) {
            let arch = if archs.is_empty() { "(none given)".to_string() } else { archs.join(", ") };
            return Err(format!(
                "unsupported architecture {arch} (model_type '{model_type}'); this engine runs the BERT family \
                 (model_type 'bert', e.g. BertModel as in all-MiniLM-L6-v2)"
            ));
        }
        if let Some(bad) = archs.iter().find(|a| !a.starts_with("Bert")) {
            return Err(format!("unsupported architecture {bad} (model_type '{model_type}'); expected a Bert* model"));
        }
        if raw.is_decoder == Some(true) {
            return Err("is_decoder is true: decoder BERT models are not supported".into());
        }
        if let Some(p) = raw.position_embedding_type.as_deref() {
            if p != "absolute" {
                return Err(format!("position_embedding_type '{p}' is not supported (only 'absolute')"));
            }
        }
        let need = |v: Option<usize>, name: &str| -> std::result::Result<usize, String> {
            match v {
                Some(0) => Err(format!("{name} is 0")),
                Some(n) => Ok(n),
                None => Err(format!("{name} is missing")),
            }
        };
        let act = raw.hidden_act.as_deref().unwrap_or("gelu");
        let hidden_act = match act {
            "gelu" => GeluKind::Erf,
            "gelu_new" | "gelu_pytorch_tanh" => GeluKind::Tanh,
            other => return Err(format!("hidden_act '{other}' is not supported (gelu, gelu_new, gelu_pytorch_tanh)")),
        };
        let cfg = BertConfig {
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size: need(raw.hidden_size, "hidden_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: need(raw.num_attention_heads, "num_attention_heads")?,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            hidden_act,
            max_position_embeddings: need(raw.max_position_embeddings, "max_position_embeddings")?,
            type_vocab_size: need(raw.type_vocab_size.or(Some(2)), "type_vocab_size")?,
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12) as f32,
            pad_token_id: raw.pad_token_id.unwrap_or(0),
        };
        if cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            ));
        }
        Ok(cfg)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"architectures": ["BertModel"], "model_type": "bert", "vocab_size": 30522,
        "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}"#;

    #[test]
    fn reads_minilm_config() {
        let c = BertConfig::from_json(MINI).unwrap();
        assert_eq!((c.hidden_size, c.num_hidden_layers, c.head_dim()), (384, 6, 32));
        assert_eq!(c.hidden_act, GeluKind::Erf);
    }

    #[test]
    fn other_architecture_is_named() {
        let e = BertConfig::from_json(r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}"#).unwrap_err();
        assert!(e.contains("GPT2LMHeadModel") && e.contains("gpt2"), "{e}");
        let e = BertConfig::from_json(&MINI.replace("\"gelu\"", "\"relu\"")).unwrap_err();
        assert!(e.contains("relu"), "{e}");
    }
}
