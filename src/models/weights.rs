//! Named weights of a model folder's `model.safetensors`, memory-mapped, with the checks a model needs: a missing
//! tensor or one of the wrong shape is an error naming the tensor and the file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tensor::{load_safetensors, DType, SafeTensors, Tensor};

/// The tensors of one safetensors file. Names are looked up bare (`encoder.layer.0...`) and with the prefix that
/// checkpoints saved from a model with a head carry (`bert.encoder.layer.0...`).
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    tensors: SafeTensors,
    prefix: &'static str,
}

impl Weights {
    /// Memory-maps `path`; tensors in f32 are used in place (zero-copy). `prefix` is the head-model prefix
    /// (`"bert."`) tried when a bare name is absent.
    pub fn load(path: impl AsRef<Path>, prefix: &'static str) -> Result<Weights> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::bad_file(path, "the weights file does not exist (expected model.safetensors)"));
        }
        let tensors = load_safetensors(path)?;
        Ok(Weights { path: path.to_path_buf(), tensors, prefix })
    }

    /// The file the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor `name`, checked to have `shape`, converted to `dtype` (a copy only when the dtype differs).
    pub fn get(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let prefixed = format!("{}{name}", self.prefix);
        let t = if self.tensors.contains(name) {
            self.tensors.get(name)?
        } else if self.tensors.contains(&prefixed) {
            self.tensors.get(&prefixed)?
        } else {
            return Err(Error::bad_file(
                &self.path,
                format!(
                    "tensor '{name}' (or '{prefixed}') is missing ({} tensors present); is this the right model?",
                    self.tensors.len()
                ),
            ));
        };
        if t.shape().dims() != shape {
            return Err(Error::bad_file(
                &self.path,
                format!("tensor '{name}' has shape {} but the config implies {shape:?}", t.shape()),
            ));
        }
        if !t.dtype().is_float() {
            return Err(Error::bad_file(
                &self.path,
                format!("tensor '{name}' has dtype {}, expected a float", t.dtype()),
            ));
        }
        t.to_dtype(dtype)
    }
}
