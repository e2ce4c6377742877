//! The CUDA backend (work in progress).
