//! The executor: the same graphs under every placement policy give the same outputs. A second CPU backend stands
//! in for the GPU, so the mixed-placement and transfer paths run in CI; the real GPU runs in tests/gpu_*.rs.

use mlx_native::backend::cpu::CpuBackend;
use mlx_native::bench::transformer_block;
use mlx_native::exec::{Device, DeviceRates, ExecOptions, Executor, LinkRates, MachineRates, PlacementPolicy};
use mlx_native::util::random;
use mlx_native::{DType, Graph, GraphBuilder, Tensor};

fn fake_gpu_rates() -> MachineRates {
    MachineRates {
        cpu: DeviceRates { launch_us: 1.0, gflops_f32: 100.0, gflops_half: 50.0, gbps: 20.0, replay_launch_us: None },
        gpu: Some((
            DeviceRates {
                launch_us: 5.0,
                gflops_f32: 40_000.0,
                gflops_half: 400_000.0,
                gbps: 2500.0,
                replay_launch_us: None,
            },
            LinkRates { latency_us: 10.0, gbps: 20.0, download_gbps: 20.0 },
        )),
    }
}

fn mlp(tokens: usize) -> Graph {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [tokens, 48]);
    let w1 = g.constant(random::uniform(DType::F32, [48, 96], 0.2, 1));
    let b1 = g.constant(random::uniform(DType::F32, [96], 0.2, 2));
    let w2 = g.constant(random::uniform(DType::F32, [96, 48], 0.2, 3));
    let h = g.matmul(x, w1, false, false).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.gelu(h, mlx_native::GeluKind::Tanh).unwrap();
    let y = g.matmul(h, w2, false, false).unwrap();
    g.output(y).unwrap();
    g.build().unwrap()
}

fn elementwise_chain() -> Graph {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [7, 33]);
    let b = g.input("b", DType::F32, [33]);
    let mut h = x;
    for i in 0..12 {
        h = match i % 4 {
            0 => g.add(h, b).unwrap(),
            1 => g.silu(h).unwrap(),
            2 => g.mul(h, b).unwrap(),
            _ => g.sub(h, x).unwrap(),
        };
    }
    g.output(h).unwrap();
    g.output(x).unwrap(); // an input that is also an output
    g.build().unwrap()
}

fn inputs_for(graph: &Graph, seed: u64) -> Vec<Tensor> {
    graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, (id, _))| {
            let d = &graph.node(*id).out;
            random::uniform(d.dtype, d.shape.clone(), 1.0, seed + k as u64)
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_f32_vec().iter().zip(b.to_f32_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check_policies(graph: &Graph, tol: f32) {
    let seed = random::fresh_seed();
    println!("seed {seed}");
    let inputs = inputs_for(graph, seed);
    let reference = Executor::cpu().run(graph, &inputs).unwrap();
    let policies = [
        PlacementPolicy::ForceCpu,
        PlacementPolicy::ForceGpu,
        PlacementPolicy::SizeThreshold { matmul: 500, fused: 1000 },
        PlacementPolicy::Auto,
    ];
    for policy in policies {
        let opts = ExecOptions { policy, rates: Some(fake_gpu_rates()), ..Default::default() };
        let exec = Executor::with_gpu(CpuBackend::new(), opts);
        let compiled = exec.compile(graph).unwrap();
        println!("{policy:?}: {:?}", compiled.placement());
        if policy == PlacementPolicy::ForceGpu {
            let on_gpu = compiled.graph().nodes().iter().zip(compiled.placement()).filter(|(n, _)| !n.op.is_leaf());
            assert!(on_gpu.into_iter().all(|(_, d)| *d == Device::Gpu));
        }
        for run in 0..2 {
            let out = compiled.run(&inputs).unwrap();
            assert_eq!(out.len(), reference.len());
            for (o, r) in out.iter().zip(&reference) {
                let d = max_abs_diff(o, r);
                assert!(d <= tol, "{policy:?} run {run}: max diff {d}");
            }
        }
    }
}

#[test]
fn transformer_block_same_under_every_policy() {
    check_policies(&transformer_block(17, 128, DType::F32, 5).unwrap(), 1e-4);
}

#[test]
fn mlp_same_under_every_policy() {
    check_policies(&mlp(9), 1e-5);
}

#[test]
fn elementwise_chain_same_under_every_policy() {
    check_policies(&elementwise_chain(), 1e-5);
}

#[test]
fn size_threshold_mixes_devices() {
    let opts =
        ExecOptions { policy: PlacementPolicy::seed_thresholds(), rates: Some(fake_gpu_rates()), ..Default::default() };
    let exec = Executor::with_gpu(CpuBackend::new(), opts);
    let compiled = exec.compile(&transformer_block(33, 128, DType::F32, 9).unwrap()).unwrap();
    let p = compiled.placement();
    assert!(p.contains(&Device::Gpu) && p.iter().filter(|d| **d == Device::Cpu).count() > 1, "{p:?}");
}

#[test]
fn auto_without_gpu_runs_on_cpu() {
    // This machine (like CI) has no GPU: Auto must fall back to the CPU and say why.
    let exec = Executor::new(ExecOptions::default()).unwrap();
    if exec.gpu().is_some() {
        mlx_native::util::skipped("SKIPPED: a GPU is present; this test checks the no-GPU fallback");
        return;
    }
    let reason = exec.gpu_unavailable_reason().unwrap_or_default().to_string();
    assert!(!reason.is_empty());
    println!("no GPU: {reason}");
    let graph = mlp(5);
    let compiled = exec.compile(&graph).unwrap();
    assert!(compiled.placement().iter().all(|d| *d == Device::Cpu));
    let inputs = inputs_for(&graph, 1);
    let out = compiled.run(&inputs).unwrap();
    let reference = Executor::cpu().run(&graph, &inputs).unwrap();
    assert_eq!(max_abs_diff(&out[0], &reference[0]), 0.0);
    let err = Executor::new(ExecOptions { policy: PlacementPolicy::ForceGpu, ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("GPU not available"), "{err}");
}

#[test]
fn executor_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Executor>();
    assert_send_sync::<mlx_native::CompiledGraph>();
    let graph = transformer_block(8, 64, DType::F32, 3).unwrap();
    let compiled = Executor::cpu().compile(&graph).unwrap();
    let inputs: Vec<Vec<Tensor>> = (0..4).map(|t| inputs_for(&graph, 100 + t)).collect();
    let expected: Vec<Vec<f32>> = inputs.iter().map(|i| compiled.run(i).unwrap()[0].to_f32_vec()).collect();
    std::thread::scope(|s| {
        for (inp, want) in inputs.iter().zip(&expected) {
            let c = &compiled;
            s.spawn(move || {
                for _ in 0..5 {
                    assert_eq!(&c.run(inp).unwrap()[0].to_f32_vec(), want);
                }
            });
        }
    });
}

/// A CPU graph big enough to run on a rayon worker (the runner's `WORKER_MIN_FLOPS`) gives the same outputs when
/// run from the main thread, from other threads at once, and from inside rayon's own pool (where it runs inline).
#[test]
fn large_cpu_graph_same_from_every_thread() {
    use rayon::prelude::*;
    let graph = transformer_block(64, 384, DType::F32, 5).unwrap();
    let compiled = Executor::cpu().compile(&graph).unwrap();
    let inputs: Vec<Vec<Tensor>> = (0..3).map(|t| inputs_for(&graph, 200 + t)).collect();
    let expected: Vec<Vec<f32>> = inputs.iter().map(|i| compiled.run(i).unwrap()[0].to_f32_vec()).collect();
    assert!(expected.iter().flatten().all(|v| v.is_finite()));
    assert_ne!(expected[0], expected[1], "different inputs must give different outputs");
    std::thread::scope(|s| {
        for (inp, want) in inputs.iter().zip(&expected) {
            let c = &compiled;
            s.spawn(move || assert_eq!(&c.run(inp).unwrap()[0].to_f32_vec(), want));
        }
    });
    let from_pool: Vec<Vec<f32>> = inputs.par_iter().map(|i| compiled.run(i).unwrap()[0].to_f32_vec()).collect();
    assert_eq!(from_pool, expected);
}

#[test]
fn wrong_inputs_are_errors() {
    let graph = mlp(3);
    let compiled = Executor::cpu().compile(&graph).unwrap();
    assert!(compiled.run(&[]).is_err());
    let bad = random::uniform(DType::F32, [4, 48], 1.0, 1);
    let e = compiled.run(&[bad]).err().unwrap().to_string();
    assert!(e.contains("[3, 48]") && e.contains("[4, 48]"), "{e}");
}

/// Reshapes are views (no copy, no slot): of an input, of a constant, of an intermediate read again later, chained,
/// and as graph outputs, under every placement.
fn reshape_views() -> Graph {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [6, 10]);
    let c = g.constant(random::uniform(DType::F32, [60], 1.0, 4));
    let xr = g.reshape(x, [60]).unwrap();
    let s = g.add(xr, c).unwrap();
    let a = g.reshape(s, [3, 20]).unwrap();
    let b = g.reshape(a, [20, 3]).unwrap();
    let w = g.constant(random::uniform(DType::F32, [3, 5], 1.0, 5));
    let m = g.matmul(b, w, false, false).unwrap();
    let cr = g.reshape(c, [6, 10]).unwrap();
    let t = g.silu(s).unwrap(); // reads s after its views were made
    g.output(m).unwrap();
    g.output(a).unwrap();
    g.output(t).unwrap();
    g.output(cr).unwrap();
    g.build().unwrap()
}

#[test]
fn reshape_views_same_under_every_policy() {
    check_policies(&reshape_views(), 1e-5);
    let plan = Executor::cpu().compile(&reshape_views()).unwrap();
    let p = plan.memory_plan(Device::Cpu);
    for (i, n) in plan.graph().nodes().iter().enumerate() {
        if n.op.name() == "Reshape" {
            assert!(p.alias_of[i].is_some() && p.slot_of[i].is_none(), "node {i}: {p:?}");
        }
    }
}
