//! Seeded random tensors for tests and benchmarks (never zeros: they hide unwritten outputs).

use rand::{Rng, SeedableRng};

use crate::tensor::{DType, Shape, Tensor};

/// Uniform values in `[-scale, scale)` of `dtype` from `seed`.
pub fn uniform(dtype: DType, shape: impl Into<Shape>, scale: f32, seed: u64) -> Tensor {
    let shape = shape.into();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.numel()).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(v, shape).expect("length matches").to_dtype(dtype).expect("float dtype")
}

/// Random ids in `0..vocab` as u32.
pub fn ids(shape: impl Into<Shape>, vocab: u32, seed: u64) -> Tensor {
    let shape = shape.into();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..shape.numel()).map(|_| rng.random_range(0..vocab.max(1))).collect();
    Tensor::from_vec(v, shape).expect("length matches")
}

/// A fresh seed from the OS, printed by tests so a failure can be replayed.
pub fn fresh_seed() -> u64 {
    rand::rng().random()
}
