//! Reading and writing `.safetensors` files. Reading memory-maps the file and hands out zero-copy tensors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{DType, Shape, Tensor};
use crate::error::{Error, Result};

/// The tensors of one safetensors file, by name. Tensors borrow the file's memory map, which stays open while any
/// of them lives.
#[derive(Debug, Clone, Default)]
pub struct SafeTensors {
    tensors: BTreeMap<String, Tensor>,
}

impl SafeTensors {
    /// The tensor called `name`; `Err` naming the file's closest content when it is missing.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::Graph(format!("tensor '{name}' not found in the weights ({} tensors present)", self.tensors.len()))
        })
    }

    /// Whether a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Consumes the collection into its map.
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }
}

fn dtype_from_st(path: &Path, name: &str, d: safetensors::Dtype) -> Result<DType> {
    Ok(match d {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::U32 => DType::U32,
        other => {
            return Err(Error::bad_file(
                path,
                format!("tensor '{name}' has dtype {other:?}; supported: F32, F16, BF16, I64, U32"),
            ))
        }
    })
}

fn dtype_to_st(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::I64 => safetensors::Dtype::I64,
        DType::U32 => safetensors::Dtype::U32,
    }
}

/// Memory-maps and validates a safetensors file. Truncated files, headers that lie about offsets or sizes, and
/// unsupported dtypes are `Err`s naming the file.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<SafeTensors> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; a file changed underneath us by another process is outside what we promise,
    // as with every mmap-based model loader.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let map = Arc::new(map);
    let st = safetensors::SafeTensors::deserialize(&map[..]).map_err(|e| Error::bad_file(path, format!("{e}")))?;
    let base = map.as_ptr() as usize;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = dtype_from_st(path, &name, view.dtype())?;
        let shape = Shape::new(view.shape().to_vec());
        let data = view.data();
        let start = data.as_ptr() as usize - base;
        let t = Tensor::from_mapped(map.clone(), start, data.len(), dtype, shape)
            .map_err(|e| Error::bad_file(path, format!("tensor '{name}': {e}")))?;
        tensors.insert(name, t);
    }
    Ok(SafeTensors { tensors })
}

/// Writes tensors to a safetensors file.
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<()> {
    let path = path.as_ref();
    let views: Vec<(String, safetensors::tensor::TensorView<'a>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            safetensors::tensor::TensorView::new(dtype_to_st(t.dtype()), t.shape().dims().to_vec(), t.as_bytes())
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::arg("save_safetensors", format!("tensor '{name}': {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| Error::bad_file(path, format!("write failed: {e}")))
}
