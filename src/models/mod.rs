//! Models: build a graph for a model family from a Hugging Face folder (config.json + model.safetensors),
//! tokenise, pool. The BERT family (sentence embeddings, e.g. all-MiniLM-L6-v2) first.
//!
//! ```no_run
//! use mlx_native::models::{EmbedOptions, Embedder};
//!
//! let embedder = Embedder::load(".cache/models/all-MiniLM-L6-v2", EmbedOptions::default())?;
//! let vecs = embedder.embed(&["The cat sits on the mat.", "A feline rests on a rug."])?;
//! let cosine: f32 = vecs[0].iter().zip(&vecs[1]).map(|(a, b)| a * b).sum();
//! # Ok::<(), mlx_native::Error>(())
//! ```

pub mod bert;
pub mod config;
pub mod embedder;
pub mod pooling;
pub mod tokenize;
pub mod weights;

pub use bert::{attention_bias, mask_value, BertModel, BertNodes};
pub use config::BertConfig;
pub use embedder::{EmbedOptions, Embedder};
pub use pooling::{PoolingMode, SentencePipeline};
pub use tokenize::TextTokenizer;
pub use weights::Weights;
