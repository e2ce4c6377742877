//! mlx-native: a Rust inference engine for transformer models. One compute graph runs on the CPU and, where one
//! is present, the GPU.
//!
//! ```
//! use mlx_native::{DType, Executor, GeluKind, GraphBuilder, Tensor};
//!
//! let mut g = GraphBuilder::new();
//! let x = g.input("x", DType::F32, [2, 3]);
//! let w = g.constant(Tensor::from_vec(vec![1.0f32; 12], [3, 4])?);
//! let b = g.constant(Tensor::from_vec(vec![0.5f32; 4], [4])?);
//! let h = g.matmul(x, w, false, false)?;
//! let h = g.add(h, b)?;
//! let y = g.gelu(h, GeluKind::Erf)?; // fused into one FusedLinearAddGelu node when compiled
//! // (MatMul + Add(bias) + Add(residual) likewise becomes one FusedLinearAddResidual node)
//! g.output(y)?;
//! let graph = g.build()?;
//!
//! let out = Executor::cpu().run(&graph, &[Tensor::from_vec(vec![0.1f32; 6], [2, 3])?])?;
//! assert_eq!(out[0].shape().dims(), &[2, 4]);
//! # Ok::<(), mlx_native::Error>(())
//! ```

pub mod backend;
pub mod bench;
pub mod error;
pub mod exec;
pub mod graph;
pub mod models;
pub mod pool;
pub mod tensor;
pub mod util;

pub use error::{Error, Result};
pub use exec::{CompiledGraph, DevicePolicy, ExecOptions, ExecStats, Executor};
pub use graph::{BinaryOp, GeluKind, Graph, GraphBuilder, NodeId, Op, ReduceKind, TensorDesc};
pub use tensor::{DType, Element, Shape, Tensor};
