//! The GPU backend of a build without one: a type with no values, so code generic over the GPU compiles and every
//! path that would use it is statically unreachable.

use crate::backend::{Backend, OpCall};
use crate::error::Result;
use crate::graph::TensorDesc;
use crate::tensor::Tensor;

/// No GPU. Has no values.
#[derive(Debug)]
pub enum NoGpu {}

impl Backend for NoGpu {
    type Buffer = NoGpu;

    fn name(&self) -> &'static str {
        match *self {}
    }

    fn alloc(&self, _desc: &TensorDesc) -> Result<NoGpu> {
        match *self {}
    }

    fn upload(&self, _tensor: &Tensor) -> Result<NoGpu> {
        match *self {}
    }

    fn download(&self, _buf: &NoGpu, _desc: &TensorDesc) -> Result<Tensor> {
        match *self {}
    }

    fn poison(&self, _buf: &mut NoGpu, _desc: &TensorDesc) -> Result<()> {
        match *self {}
    }

    fn execute(&self, _call: &OpCall<'_>, _inputs: &[&NoGpu], _out: &mut NoGpu) -> Result<()> {
        match *self {}
    }

    fn synchronize(&self) -> Result<()> {
        match *self {}
    }
}
