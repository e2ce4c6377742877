//! Resident weights: each constant tensor is uploaded to the GPU once per executor and shared by every graph
//! compiled from it (a model compiles one graph per input shape; they all read the same weights).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// Identity of a tensor's data: tensors cloned from one another share it. A live entry keeps its compiled graph
/// alive, which keeps the tensor alive, so an address is never reused while its entry can still be upgraded.
type Key = (usize, usize, DType);

/// Device copies of constants, held weakly: a copy lives as long as some compiled graph uses it.
pub struct WeightCache<Buf> {
    entries: Mutex<HashMap<Key, Weak<Buf>>>,
}

impl<Buf> Default for WeightCache<Buf> {
    fn default() -> Self {
        WeightCache { entries: Mutex::new(HashMap::new()) }
    }
}

impl<Buf> WeightCache<Buf> {
    /// The device copy of `tensor`, uploaded now unless a live copy exists.
    pub fn get<G: Backend<Buffer = Buf>>(&self, gpu: &G, tensor: &Tensor) -> Result<Arc<Buf>> {
        let bytes = tensor.as_bytes();
        let key = (bytes.as_ptr() as usize, bytes.len(), tensor.dtype());
        if let Some(buf) = self.entries.lock().ok().and_then(|e| e.get(&key).and_then(Weak::upgrade)) {
            return Ok(buf);
        }
        let buf = Arc::new(gpu.upload(tensor)?);
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|_, w| w.strong_count() > 0);
            e.insert(key, Arc::downgrade(&buf));
        }
        Ok(buf)
    }
}
