//! The crate's one error type.

use crate::tensor::{DType, Shape};

/// Everything that can go wrong in mlx-native. Messages say what was wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two shapes that had to agree did not.
    #[error("shape mismatch in {op}: {lhs} vs {rhs}{hint}")]
    ShapeMismatch {
        /// The operation that checked the shapes.
        op: &'static str,
        /// The first shape.
        lhs: Shape,
        /// The second shape.
        rhs: Shape,
        /// Extra explanation, starting with "; " when present.
        hint: String,
    },
    /// An operand had a dtype the operation does not accept.
    #[error("dtype mismatch in {op}: expected {expected}, got {got}")]
    DTypeMismatch {
        /// The operation that checked the dtypes.
        op: &'static str,
        /// What the operation needed.
        expected: String,
        /// What it was given.
        got: DType,
    },
    /// An argument was out of range or inconsistent (axis, permutation, slice bounds, ...).
    #[error("invalid argument to {op}: {msg}")]
    InvalidArgument {
        /// The operation that rejected the argument.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A graph was malformed or used wrongly (unknown node id, wrong number of inputs, ...).
    #[error("graph error: {0}")]
    Graph(String),
    /// A model or tensor file could not be read or was corrupt.
    #[error("bad model file {path}: {msg}")]
    BadFile {
        /// The file.
        path: String,
        /// What was wrong with it.
        msg: String,
    },
    /// An I/O error with the path it happened on.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No GPU can be used; the reason says why (no driver, no device, missing library, ...).
    #[error("GPU not available: {0}")]
    GpuUnavailable(String),
    /// The GPU ran out of memory even after the pool released its cache.
    #[error("GPU out of memory: requested {requested} bytes ({in_use} in use, {cached} cached); use smaller batches or the CPU")]
    OutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Bytes in use by live buffers at the time.
        in_use: usize,
        /// Bytes held in the pool's cache at the time.
        cached: usize,
    },
    /// A GPU driver, compiler or library call failed.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The backend cannot run this operation (dtype, layout or op not supported there).
    #[error("{backend} backend does not support {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked for.
        what: String,
    },
}

/// Shorthand for results with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape mismatch with no hint.
    pub fn shape(op: &'static str, lhs: &Shape, rhs: &Shape) -> Self {
        Error::ShapeMismatch { op, lhs: lhs.clone(), rhs: rhs.clone(), hint: String::new() }
    }

    /// A shape mismatch with an explanation.
    pub fn shape_hint(op: &'static str, lhs: &Shape, rhs: &Shape, hint: impl Into<String>) -> Self {
        Error::ShapeMismatch { op, lhs: lhs.clone(), rhs: rhs.clone(), hint: format!("; {}", hint.into()) }
    }

    /// An invalid argument.
    pub fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }

    /// An I/O error on a path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }

    /// A bad file.
    pub fn bad_file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.as_ref().display().to_string(), msg: msg.into() }
    }
}
