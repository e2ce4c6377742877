//! Sentence embeddings end to end: tokenise, batch with padding, run the encoder + pooling graph, normalise.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::bert::{attention_bias, BertModel};
use super::config::BertConfig;
use super::pooling::{add_pooling, l2_normalize, pool_weights, SentencePipeline};
use super::tokenize::{sentence_bert_config, TextTokenizer};
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::exec::{CompiledGraph, ExecOptions, Executor, PlacementPolicy};
use crate::graph::{Graph, GraphBuilder};
use crate::tensor::{DType, Tensor};

/// How an [`Embedder`] runs.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Device placement (Auto: the cost model; ForceCpu; ForceGpu, an error without a GPU).
    pub policy: PlacementPolicy,
    /// Compute dtype of the encoder: weights are converted at load; pooling and normalisation stay in f32.
    pub dtype: DType,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { policy: PlacementPolicy::Auto, dtype: DType::F32, batch_size: 32 }
    }
}

/// Compiled graphs kept per (batch, seq) shape; a few, since sequence lengths vary from batch to batch.
const GRAPH_CACHE: usize = 6;

/// Sequence lengths are padded up to a multiple of this, so texts of similar length share a compiled graph.
/// Padding is masked out exactly, so it does not change any result.
const SEQ_ROUND: usize = 8;

/// A compiled graph and its (batch, seq, masked) key.
type CacheEntry = ((usize, usize, bool), Arc<CompiledGraph>);

/// A sentence-embedding model (BERT + pooling + normalisation) ready to embed texts. `Send + Sync`.
pub struct Embedder {
    model: BertModel,
    pipeline: SentencePipeline,
    tokenizer: TextTokenizer,
    exec: Executor,
    options: EmbedOptions,
    /// Most recently used first.
    cache: Mutex<Vec<CacheEntry>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("config", self.model.config())
            .field("pipeline", &self.pipeline)
            .field("options", &self.options)
            .finish()
    }
}

impl Embedder {
    /// Loads a sentence-transformers folder: `config.json` (BERT family), `model.safetensors`, `tokenizer.json`,
    /// and, when present, `modules.json`, `1_Pooling/config.json` and `sentence_bert_config.json`. A missing
    /// required file, a corrupt one or an unsupported architecture is an `Err` naming the file.
    pub fn load(dir: impl AsRef<Path>, options: EmbedOptions) -> Result<Embedder> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::bad_file(
                dir,
                "model folder not found (run scripts/fetch-minilm.sh for all-MiniLM-L6-v2)",
            ));
        }
        if options.batch_size == 0 {
            return Err(Error::arg("Embedder::load", "batch_size must be at least 1"));
        }
        if !options.dtype.is_float() {
            return Err(Error::arg("Embedder::load", format!("dtype must be f32, f16 or bf16, got {}", options.dtype)));
        }
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(Error::bad_file(
                &config_path,
                "config.json does not exist; is this a Hugging Face model folder?",
            ));
        }
        let config = BertConfig::from_file(&config_path)?;
        let pipeline = SentencePipeline::from_dir(dir)?;
        let (max_seq, lowercase) = sentence_bert_config(dir)?;
        let max_len = max_seq.unwrap_or(config.max_position_embeddings).min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len, lowercase)?;
        let weights = Weights::load(dir.join("model.safetensors"), "bert.")?;
        let model = BertModel::from_weights(config, &weights, options.dtype)?;
        let exec = Executor::new(ExecOptions { policy: options.policy, ..Default::default() })?;
        Ok(Embedder { model, pipeline, tokenizer, exec, options, cache: Mutex::new(Vec::new()) })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// The most tokens a text is truncated to (special tokens included).
    pub fn max_seq_length(&self) -> usize {
        self.tokenizer.max_len()
    }

    /// The options the embedder was loaded with.
    pub fn options(&self) -> &EmbedOptions {
        &self.options
    }

    /// The executor (to see whether a GPU is used, and why not).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// The encoder.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// The token ids of each text, as the model sees them.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        self.tokenizer.encode(texts)
    }

    /// One embedding per text, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_with_progress(texts, &mut |_| {})
    }

    /// As [`Embedder::embed`], calling `progress(n)` after each batch with the number of texts it held.
    pub fn embed_with_progress(&self, texts: &[&str], progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts)?;
        self.embed_ids_with_progress(&ids, progress)
    }

    /// Embeddings of already tokenised texts (ids with special tokens, at most `max_seq_length` each).
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        self.embed_ids_with_progress(ids, &mut |_| {})
    }

    fn embed_ids_with_progress(&self, ids: &[Vec<u32>], progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<f32>>> {
        let vocab = self.model.config().vocab_size as u32;
        for (i, seq) in ids.iter().enumerate() {
            if seq.is_empty() || seq.len() > self.model.config().max_position_embeddings {
                return Err(Error::arg(
                    "Embedder::embed_ids",
                    format!(
                        "text {i} has {} ids; 1..={} allowed",
                        seq.len(),
                        self.model.config().max_position_embeddings
                    ),
                ));
            }
            if let Some(&bad) = seq.iter().find(|&&t| t >= vocab) {
                return Err(Error::arg("Embedder::embed_ids", format!("text {i} has id {bad} >= vocab size {vocab}")));
            }
        }
        // Longest first, so each batch holds texts of similar length and little padding.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(self.options.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let vecs = self.run_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
            progress(chunk.len());
        }
        Ok(out)
    }

    /// Runs one padded batch.
    fn run_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let max_pos = self.model.config().max_position_embeddings;
        let longest = batch.iter().map(|s| s.len()).max().unwrap_or(1);
        let seq = longest.div_ceil(SEQ_ROUND).saturating_mul(SEQ_ROUND).clamp(longest, max_pos.max(longest));
        let pad = self.model.config().pad_token_id;
        let mut flat = Vec::with_capacity(batch.len() * seq);
        for s in batch {
            flat.extend_from_slice(s);
            flat.extend(std::iter::repeat(pad).take(seq - s.len()));
        }
        let lengths: Vec<usize> = batch.iter().map(|s| s.len()).collect();
        // With no padding every key is visible: the graph without a mask skips the attention's mask reads (as
        // transformers drops an all-ones mask).
        let masked = lengths.iter().any(|&l| l < seq);
        let mut inputs = vec![Tensor::from_vec(flat, [batch.len(), seq])?];
        if masked {
            inputs.push(attention_bias(&lengths, seq, self.model.dtype())?);
        }
        inputs.push(pool_weights(&lengths, seq)?);
        let compiled = self.compiled(batch.len(), seq, masked)?;
        let outs = compiled.run(&inputs)?;
        let pooled =
            outs.first().ok_or_else(|| Error::Graph("the embedding graph returned no output".into()))?.to_f32_vec();
        let dim = self.dim();
        Ok(pooled
            .chunks(dim)
            .map(|c| {
                let mut v = c.to_vec();
                if self.pipeline.normalize {
                    l2_normalize(&mut v);
                }
                v
            })
            .collect())
    }

    /// The graph for one (batch, seq) shape, with or without the padding mask: from the cache, or built and compiled
    /// (evicting the least recently used one when the cache is full).
    fn compiled(&self, batch: usize, seq: usize, masked: bool) -> Result<Arc<CompiledGraph>> {
        let key = (batch, seq, masked);
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = cache.iter().position(|(k, _)| *k == key) {
                let entry = cache.remove(pos);
                let g = entry.1.clone();
                cache.insert(0, entry);
                return Ok(g);
            }
        }
        // Compile outside the lock: another thread may embed with a cached shape meanwhile.
        let compiled = Arc::new(self.exec.compile(&self.build_graph(batch, seq, masked)?)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(0, (key, compiled.clone()));
        cache.truncate(GRAPH_CACHE);
        Ok(compiled)
    }

    /// The whole embedding graph for one shape: inputs `input_ids`, `attention_bias`, `pool_weights`; output the
    /// pooled f32 `[batch, hidden]` (not yet normalised).
    pub fn graph(&self, batch: usize, seq: usize) -> Result<Graph> {
        self.build_graph(batch, seq, true)
    }

    /// [`Embedder::graph`], without the `attention_bias` input when `masked` is false (no position padded).
    fn build_graph(&self, batch: usize, seq: usize, masked: bool) -> Result<Graph> {
        let mut g = GraphBuilder::new();
        let ids = g.input("input_ids", DType::U32, [batch, seq]);
        let bias = masked.then(|| g.input("attention_bias", self.model.dtype(), [batch, 1, 1, seq]));
        let nodes = self.model.encoder(&mut g, ids, bias)?;
        let (_, pooled) = add_pooling(&mut g, nodes.last_hidden_state(), self.pipeline.pooling)?;
        g.output(pooled)?;
        g.build()
    }
}
