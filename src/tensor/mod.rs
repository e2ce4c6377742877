//! Tensors on the host: dtypes, shapes, storage and safetensors files.

mod derived;
mod dtype;
mod safetensors_io;
mod shape;
mod storage;

pub use dtype::{DType, Element};
pub use safetensors_io::{load_safetensors, save_safetensors, SafeTensors};
pub use shape::Shape;
pub use storage::{HostVec, Tensor};
