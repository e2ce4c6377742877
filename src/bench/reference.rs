//! Reference rows measured in the same run as the engine's: direct `gemm` calls, for the CPU matmul ceiling.

use std::time::Instant;

use super::report::BenchRow;
use super::timing::{median, Budget};
use crate::util::random;
use crate::DType;

/// Times `gemm::gemm` called directly on an f32 n×n×n product with the same threading as the engine.
pub fn gemm_direct(n: usize, budget: Budget) -> BenchRow {
    let a = random::uniform(DType::F32, [n, n], 1.0, 1).to_f32_vec();
    let b = random::uniform(DType::F32, [n, n], 1.0, 2).to_f32_vec();
    let mut c = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let mut run = || {
        let t = Instant::now();
        // SAFETY: the pointers cover n*n elements each with the row-major strides given; c does not alias a or b.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            );
        }
        t.elapsed().as_secs_f64()
    };
    run();
    let once = run();
    let samples = ((budget.seconds / once) as usize).clamp(1, budget.max_samples);
    let mut times: Vec<f64> = std::iter::once(once).chain((0..samples).map(|_| run())).collect();
    let us = median(&mut times) * 1e6;
    BenchRow {
        op: "GemmDirect".into(),
        shape: vec![n, n, n],
        dtype: "f32".into(),
        device: "cpu".into(),
        median_us: us,
        gflops: Some(2.0 * (n * n * n) as f64 / us / 1e3),
        gbps: None,
    }
}
