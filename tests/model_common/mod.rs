//! Helpers shared by the model tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlx_native::exec::PlacementPolicy;
use mlx_native::models::{EmbedOptions, Embedder};
use mlx_native::{DType, Error};

/// The repository root: where the tests were built, or the working directory when the test binary runs on
/// another machine (the GPU machine gets prebuilt test binaries and runs them from its copy of the repository).
pub fn root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if built.join("tests/fixtures").is_dir() {
        built
    } else {
        std::env::current_dir().unwrap_or(built)
    }
}

/// The tiny BERT fixture folder (a copy of the shared fixture plus sentence-transformers files).
pub fn tiny_dir() -> PathBuf {
    root().join("tests/fixtures/tiny_bert")
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of numbers as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

/// A JSON array of arrays of numbers.
pub fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array().expect("array").iter().map(floats).collect()
}

/// Largest |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The MiniLM folder: $MLX_NATIVE_MINILM_DIR, else where scripts/fetch-minilm.sh puts it. `None` (after printing
/// the SKIPPED line) when it is not there.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MLX_NATIVE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").exists() && dir.join("tokenizer.json").exists() {
        Some(dir)
    } else {
        mlx_native::util::skipped("SKIPPED: MiniLM not fetched (run scripts/fetch-minilm.sh)");
        None
    }
}

/// Loads an embedder; `None` (after printing SKIPPED) when a GPU was asked for and there is none.
pub fn load(dir: &Path, policy: PlacementPolicy, dtype: DType, batch_size: usize) -> Option<Embedder> {
    match Embedder::load(dir, EmbedOptions { policy, dtype, batch_size }) {
        Ok(e) => Some(e),
        Err(Error::GpuUnavailable(why)) if policy == PlacementPolicy::ForceGpu => {
            mlx_native::util::skipped(&format!("SKIPPED: no GPU ({why})"));
            None
        }
        Err(e) => panic!("loading {}: {e}", dir.display()),
    }
}
