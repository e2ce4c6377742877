//! The cost model with synthetic device rates (no GPU needed).

use mlx_native::exec::{graph_us, place, Device, DeviceRates, LinkRates, MachineRates, PlacementPolicy};
use mlx_native::{DType, Graph, GraphBuilder, NodeId, Tensor};

fn rates(with_gpu: bool) -> MachineRates {
    MachineRates {
        cpu: DeviceRates { launch_us: 1.0, gflops_f32: 100.0, gflops_half: 50.0, gbps: 20.0, replay_launch_us: None },
        gpu: with_gpu.then_some((
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

fn weight(g: &mut GraphBuilder, dims: &[usize]) -> NodeId {
    g.constant(Tensor::zeros(DType::F32, dims.to_vec()))
}

fn placed(graph: &Graph, p: &[Device], op: &str) -> Vec<Device> {
    graph.nodes().iter().zip(p).filter(|(n, _)| n.op.name() == op).map(|(_, d)| *d).collect()
}

#[test]
fn tiny_graph_stays_on_cpu() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [4]);
    let y = g.input("y", DType::F32, [4]);
    let s = g.add(x, y).unwrap();
    let m = g.mul(s, y).unwrap();
    g.output(m).unwrap();
    let graph = g.build().unwrap();
    let p = place(&graph, PlacementPolicy::Auto, &rates(true));
    assert!(p.iter().all(|d| *d == Device::Cpu), "{p:?}");
}

#[test]
fn large_matmul_goes_to_gpu() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [2048, 2048]);
    let w = weight(&mut g, &[2048, 2048]);
    let y = g.matmul(x, w, false, false).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    let p = place(&graph, PlacementPolicy::Auto, &rates(true));
    assert_eq!(placed(&graph, &p, "MatMul"), vec![Device::Gpu]);
    // And the choice is cheaper by the model's own measure.
    let all_cpu = vec![Device::Cpu; graph.len()];
    assert!(graph_us(&graph, &p, &rates(true)) < graph_us(&graph, &all_cpu, &rates(true)));
}

#[test]
fn small_op_between_gpu_ops_stays_on_gpu() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [1024, 1024]);
    let w1 = weight(&mut g, &[1024, 1024]);
    let w2 = weight(&mut g, &[1024, 1024]);
    let a = g.matmul(x, w1, false, false).unwrap();
    let b = g.silu(a).unwrap(); // cheap on any device, but moving it costs two transfers
    let c = g.matmul(b, w2, false, false).unwrap();
    g.output(c).unwrap();
    let graph = g.build().unwrap();
    let p = place(&graph, PlacementPolicy::Auto, &rates(true));
    assert_eq!(placed(&graph, &p, "MatMul"), vec![Device::Gpu, Device::Gpu]);
    assert_eq!(placed(&graph, &p, "Silu"), vec![Device::Gpu]);
}

#[test]
fn no_gpu_means_all_cpu_under_every_policy() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [2048, 2048]);
    let w = weight(&mut g, &[2048, 2048]);
    let y = g.matmul(x, w, false, false).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    for policy in [PlacementPolicy::Auto, PlacementPolicy::ForceGpu, PlacementPolicy::seed_thresholds()] {
        let p = place(&graph, policy, &rates(false));
        assert!(p.iter().all(|d| *d == Device::Cpu), "{policy:?}: {p:?}");
    }
}

#[test]
fn size_threshold_follows_the_seed_rule() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [10, 40]);
    let w_small = weight(&mut g, &[40, 40]); // 400 outputs: CPU
    let w_big = weight(&mut g, &[40, 60]); // 600 outputs: GPU
    let a = g.matmul(x, w_small, false, false).unwrap();
    let b = g.matmul(x, w_big, false, false).unwrap();
    let s = g.softmax(b).unwrap();
    g.output(a).unwrap();
    g.output(s).unwrap();
    let graph = g.build().unwrap();
    let p = place(&graph, PlacementPolicy::seed_thresholds(), &rates(true));
    assert_eq!(placed(&graph, &p, "MatMul"), vec![Device::Cpu, Device::Gpu]);
    assert_eq!(placed(&graph, &p, "Softmax"), vec![Device::Cpu]);
}

#[test]
fn force_policies_place_every_computing_node() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [3, 5]);
    let y = g.softmax(x).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    assert_eq!(place(&graph, PlacementPolicy::ForceGpu, &rates(true)), vec![Device::Cpu, Device::Gpu]);
    assert_eq!(place(&graph, PlacementPolicy::ForceCpu, &rates(true)), vec![Device::Cpu, Device::Cpu]);
}

#[test]
fn replayable_gpu_plan_wins_when_recording_makes_launches_cheap() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [64]);
    let mut h = x;
    for _ in 0..30 {
        h = g.silu(h).unwrap();
    }
    g.output(h).unwrap();
    let graph = g.build().unwrap();
    let mut r = rates(true);
    r.cpu.launch_us = 2.0;
    // Without replay, 30 GPU launches cost more than the CPU's: everything stays on the CPU.
    let p = place(&graph, PlacementPolicy::Auto, &r);
    assert!(p.iter().all(|d| *d == Device::Cpu), "{p:?}");
    // Replayed from a CUDA graph, a node costs a fraction of a launch: the whole chain moves to the GPU.
    if let Some((gpu, _)) = r.gpu.as_mut() {
        gpu.replay_launch_us = Some(0.2);
    }
    let p = place(&graph, PlacementPolicy::Auto, &r);
    assert_eq!(placed(&graph, &p, "Silu"), vec![Device::Gpu; 30], "{p:?}");
}

#[test]
fn downloads_are_priced_at_their_own_bandwidth() {
    // A large matmul whose output must come back to the host: with a slow download the GPU no longer pays off.
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [256, 64]);
    let w = weight(&mut g, &[64, 4096]);
    let y = g.matmul(x, w, false, false).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    let mut r = rates(true);
    assert_eq!(placed(&graph, &place(&graph, PlacementPolicy::Auto, &r), "MatMul"), vec![Device::Gpu]);
    if let Some((_, link)) = r.gpu.as_mut() {
        link.download_gbps = 0.1;
    }
    assert_eq!(placed(&graph, &place(&graph, PlacementPolicy::Auto, &r), "MatMul"), vec![Device::Cpu]);
}
