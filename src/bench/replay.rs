//! The `PlanReplay100` row: host cost of one run of a 100-node plan once it is replayed from a recording.

use std::time::Instant;

use super::report::BenchRow;
use super::timing::{median, Budget};
use crate::backend::Backend;
use crate::error::Result;
use crate::exec::Executor;
use crate::graph::{Graph, GraphBuilder};
use crate::tensor::DType;
use crate::util::random;

/// A chain of `nodes` small elementwise ops on a `[1024]` f32 input (nothing in it fuses).
pub fn chain_graph(nodes: usize) -> Result<Graph> {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [1024]);
    let b = g.constant(random::uniform(DType::F32, [1024], 0.5, 3));
    let mut h = x;
    for i in 0..nodes {
        h = match i % 3 {
            0 => g.add(h, b)?,
            1 => g.silu(h)?,
            _ => g.mul(h, b)?,
        };
    }
    g.output(h)?;
    g.build()
}

/// Runs the 100-node chain under `exec` until it replays, then reports the median host time of queuing one replay
/// (`median_us`) and the wall-clock time of a whole run (queue, GPU execution, reading the output back).
/// Without recording support (the CPU), `median_us` is the wall-clock time of a run.
/// Returns the row and the median wall-clock microseconds of a whole run.
pub fn time_plan_replay<G: Backend>(exec: &Executor<G>, device: &str, budget: Budget) -> Result<(BenchRow, f64)> {
    let graph = chain_graph(100)?;
    let compiled = exec.compile(&graph)?;
    let inputs = [random::uniform(DType::F32, [1024], 1.0, 9)];
    for _ in 0..3 {
        compiled.run(&inputs)?;
    }
    let mut host = vec![];
    let mut wall = vec![];
    let start = Instant::now();
    while host.len() < 20 || (start.elapsed().as_secs_f64() < budget.seconds && host.len() < 2000) {
        let before = compiled.statistics();
        let t = Instant::now();
        compiled.run(&inputs)?;
        let w = t.elapsed().as_secs_f64() * 1e6;
        let after = compiled.statistics();
        wall.push(w);
        host.push(if after.replays > before.replays {
            (after.replay_host_ns - before.replay_host_ns) as f64 / 1e3
        } else {
            w
        });
    }
    let host_us = median(&mut host);
    let row = BenchRow {
        op: "PlanReplay100".into(),
        shape: vec![100],
        dtype: "f32".into(),
        device: device.into(),
        median_us: host_us,
        gflops: None,
        gbps: None,
    };
    Ok((row, median(&mut wall)))
}
