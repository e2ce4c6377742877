//! Whole-graph benchmarks: the transformer block under each placement policy, and `--explain`'s per-node table.

use std::time::Instant;

use super::report::BenchRow;
use super::timing::{median, time_case, Budget};
use super::transformer::transformer_block;
use super::BenchCase;
use crate::backend::Backend;
use crate::error::Result;
use crate::exec::{compute_us, Device, Executor, PlacementPolicy};
use crate::tensor::DType;
use crate::util::random;

/// The name a policy has in the JSON `device` field.
pub fn policy_label(p: PlacementPolicy) -> &'static str {
    match p {
        PlacementPolicy::ForceCpu => "cpu",
        PlacementPolicy::ForceGpu => "cuda",
        PlacementPolicy::Auto => "auto",
        PlacementPolicy::SizeThreshold { .. } => "size",
    }
}

/// Times one run of the transformer block `[tokens, hidden]` under `exec`'s policy.
pub fn time_block<G: Backend>(exec: &Executor<G>, tokens: usize, hidden: usize, budget: Budget) -> Result<BenchRow> {
    let graph = transformer_block(tokens, hidden, DType::F32, 11)?;
    let compiled = exec.compile(&graph)?;
    let x = random::uniform(DType::F32, [tokens, hidden], 1.0, 5);
    let inputs = [x];
    compiled.run(&inputs)?;
    let mut times = vec![];
    let start = Instant::now();
    loop {
        let t = Instant::now();
        compiled.run(&inputs)?;
        times.push(t.elapsed().as_secs_f64());
        if start.elapsed().as_secs_f64() > budget.seconds || times.len() >= budget.max_samples {
            break;
        }
    }
    let us = median(&mut times) * 1e6;
    Ok(BenchRow {
        op: "TransformerBlock".into(),
        shape: vec![tokens, hidden],
        dtype: "f32".into(),
        device: policy_label(exec.options().policy).into(),
        median_us: us,
        gflops: None,
        gbps: None,
    })
}

/// One line of `--explain`: a node, where it runs, the model's estimate and the measured time of that node alone.
#[derive(Debug, Clone)]
pub struct ExplainRow {
    /// Node index in the optimised graph.
    pub index: usize,
    /// Op name.
    pub op: &'static str,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Chosen device.
    pub device: Device,
    /// Estimated microseconds on that device (compute only).
    pub estimated_us: f64,
    /// Measured microseconds of the node alone on that device.
    pub measured_us: f64,
}

/// Places the transformer block and measures each computing node alone on its device.
pub fn explain<G: Backend>(exec: &Executor<G>, tokens: usize, hidden: usize) -> Result<Vec<ExplainRow>> {
    let graph = transformer_block(tokens, hidden, DType::F32, 11)?;
    let compiled = exec.compile(&graph)?;
    let rates = exec.rates()?.clone();
    let g = compiled.graph();
    let budget = Budget { seconds: 0.05, max_samples: 10, min_sample_seconds: 0.001 };
    let mut rows = vec![];
    for (i, (node, dev)) in g.nodes().iter().zip(compiled.placement()).enumerate() {
        if node.op.is_leaf() {
            continue;
        }
        let ins = node.inputs.iter().map(|x| g.node(*x).out.clone()).collect();
        let case = BenchCase::for_op(node.op.clone(), ins);
        let (estimated_us, measured_us) = match (dev, exec.gpu(), &rates.gpu) {
            // A view: the executor runs nothing for it.
            _ if matches!(node.op, crate::graph::Op::Reshape { .. }) => (0.0, 0.0),
            (Device::Gpu, Some(gpu), Some((gr, _))) => (compute_us(g, node, gr), time_case(gpu, &case, budget)?),
            _ => (compute_us(g, node, &rates.cpu), time_case(&crate::backend::cpu::CpuBackend::new(), &case, budget)?),
        };
        rows.push(ExplainRow {
            index: i,
            op: node.op.name(),
            shape: node.out.shape.dims().to_vec(),
            device: *dev,
            estimated_us,
            measured_us,
        });
    }
    Ok(rows)
}

/// The token counts of the TransformerBlock rows.
pub fn block_tokens(quick: bool) -> Vec<usize> {
    if quick {
        vec![1, 64]
    } else {
        vec![1, 16, 128, 1024, 4096, 16384]
    }
}

/// Whether `Auto` would run `case` on the GPU as a one-op graph: the first operand arrives from the host, and the
/// other operands of matmul-like ops are resident weights (the usual case in a model).
pub fn auto_picks_gpu(case: &BenchCase, rates: &crate::exec::MachineRates) -> Result<bool> {
    use crate::graph::{GraphBuilder, Op};
    let weights = matches!(
        case.op,
        Op::MatMul { .. }
            | Op::FusedLinearAdd { .. }
            | Op::FusedLinearAddGelu { .. }
            | Op::FusedLinearAddResidual { .. }
    );
    let mut g = GraphBuilder::new();
    let mut ids = vec![];
    for (i, d) in case.inputs.iter().enumerate() {
        // Operands 1 and 2 (weight, bias) are resident; a residual (operand 3) arrives like the first.
        ids.push(if (1..3).contains(&i) && weights {
            g.constant(crate::tensor::Tensor::zeros(d.dtype, d.shape.clone()))
        } else {
            g.input(&format!("x{i}"), d.dtype, d.shape.clone())
        });
    }
    let y = g.op(case.op.clone(), &ids)?;
    g.output(y)?;
    let graph = g.build()?;
    let placement = crate::exec::place(&graph, PlacementPolicy::Auto, rates);
    Ok(placement[y.0] == Device::Gpu)
}
