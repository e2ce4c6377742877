//! Tokenisation with a folder's `tokenizer.json`, set up as sentence-transformers sets it up: the file's own
//! padding is turned off (all-MiniLM-L6-v2's pads every text to 128) and truncation is at `max_seq_length` from
//! sentence_bert_config.json (256 there, not the file's 128).

use std::path::Path;

use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// A tokenizer that turns texts into token ids, special tokens included, at most `max_len` ids each.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    lowercase: bool,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer(max_len {})", self.max_len)
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// `max_seq_length` and `do_lower_case` of a folder's sentence_bert_config.json (`None`, false when absent).
pub fn sentence_bert_config(dir: &Path) -> Result<(Option<usize>, bool)> {
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok((None, false));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let c: SentenceBertConfig = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&path, format!("not a valid sentence_bert_config.json: {e}")))?;
    Ok((c.max_seq_length, c.do_lower_case))
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, with no padding and truncation at `max_len` ids (special tokens included);
    /// `lowercase` lowercases texts first (sentence_bert_config.json's `do_lower_case`).
    pub fn from_file(path: &Path, max_len: usize, lowercase: bool) -> Result<TextTokenizer> {
        if !path.exists() {
            return Err(Error::bad_file(path, "tokenizer.json does not exist"));
        }
        if max_len < 3 {
            return Err(Error::arg("TextTokenizer", format!("max_len {max_len} leaves no room for any token")));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| Error::bad_file(path, format!("cannot read: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::bad_file(path, format!("cannot set truncation to {max_len}: {e}")))?;
        Ok(TextTokenizer { inner, max_len, lowercase })
    }

    /// The most ids one text becomes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The ids of each text. Texts are stripped of surrounding whitespace first (and lowercased if asked), as
    /// sentence-transformers does.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<String> =
            texts.iter().map(|t| if self.lowercase { t.trim().to_lowercase() } else { t.trim().to_string() }).collect();
        let enc = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::arg("tokenize", format!("tokenizer failed: {e}")))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The id of a token of the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}
