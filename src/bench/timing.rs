//! Timing one case through the backend contract: warm up, then median over samples, each sample long enough
//! that launch and synchronisation overheads do not dominate.

use std::time::Instant;

use super::cases::BenchCase;
use crate::backend::{Backend, OpCall};
use crate::error::Result;

/// How long to spend on one case.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Target total timing time in seconds (a slow case still runs once after warm-up).
    pub seconds: f64,
    /// Upper bound on samples.
    pub max_samples: usize,
    /// Minimum length of one sample in seconds (runs are repeated inside a sample to reach it).
    pub min_sample_seconds: f64,
}

impl Budget {
    /// Budget for `bench --quick`.
    pub fn quick() -> Budget {
        Budget { seconds: 0.25, max_samples: 15, min_sample_seconds: 0.002 }
    }

    /// Budget for the full run.
    pub fn full() -> Budget {
        Budget { seconds: 1.0, max_samples: 30, min_sample_seconds: 0.005 }
    }
}

/// Median microseconds of one run of `case` on `backend`.
pub fn time_case<B: Backend>(backend: &B, case: &BenchCase, budget: Budget) -> Result<f64> {
    let inputs = case.make_inputs();
    let bufs = inputs.iter().map(|t| backend.upload(t)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&B::Buffer> = bufs.iter().collect();
    let mut out = backend.alloc(&case.output)?;
    let call = OpCall { op: &case.op, inputs: &case.inputs, output: &case.output };
    let mut run = |n: usize| -> Result<f64> {
        let t = Instant::now();
        for _ in 0..n {
            backend.execute(&call, &refs, &mut out)?;
        }
        backend.synchronize()?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(1)?; // warm-up: kernel compilation, heuristics, page faults
    let once = run(1)?.max(1e-9);
    let inner = ((budget.min_sample_seconds / once).ceil() as usize).clamp(1, 10_000);
    let samples = ((budget.seconds / (once * inner as f64)) as usize).clamp(1, budget.max_samples);
    let mut times = Vec::with_capacity(samples + 1);
    times.push(once);
    for _ in 0..samples {
        times.push(run(inner)? / inner as f64);
    }
    Ok(median(&mut times) * 1e6)
}

/// Median of a non-empty slice (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
