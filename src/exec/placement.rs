//! Placement: which device runs each node. The one place this decision is made.
//!
//! Estimated time of a node on a device = launch overhead + max(flops / rate, bytes / bandwidth), plus the
//! transfer time of each input that does not already live there. Graph inputs start on the host; constants are
//! resident on every device (uploaded once); outputs must end on the host. A greedy pass in topological order is
//! refined by flipping single nodes while the whole graph's estimated time drops.

use crate::graph::{matmul_shape, Graph, Node, Op};

/// Where a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU.
    Cpu,
    /// The GPU.
    Gpu,
}

/// How placement is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum PlacementPolicy {
    /// Minimise the estimated time of the whole graph with the cost model.
    #[default]
    Auto,
    /// The seed design's rule: the GPU for MatMul with more than `matmul` output elements and for fused linear ops
    /// with more than `fused` output elements, the CPU for everything else.
    SizeThreshold {
        /// Output elements above which a MatMul goes to the GPU (seed: 500).
        matmul: usize,
        /// Output elements above which a fused linear op goes to the GPU (seed: 1000).
        fused: usize,
    },
    /// Everything on the CPU.
    ForceCpu,
    /// Everything on the GPU.
    ForceGpu,
}

impl PlacementPolicy {
    /// The seed design's thresholds.
    pub fn seed_thresholds() -> PlacementPolicy {
        PlacementPolicy::SizeThreshold { matmul: 500, fused: 1000 }
    }
}

/// Measured (or assumed) speed of one device.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRates {
    /// Fixed cost of running one node, microseconds.
    pub launch_us: f64,
    /// Sustained f32 matmul rate, GFLOP/s.
    pub gflops_f32: f64,
    /// Sustained f16/bf16 matmul rate, GFLOP/s.
    pub gflops_half: f64,
    /// Sustained memory bandwidth (read + write), GB/s.
    pub gbps: f64,
    /// Cost of one node when the whole plan is replayed from a recording (a CUDA graph), microseconds; `None` when
    /// the device cannot record.
    #[serde(default)]
    pub replay_launch_us: Option<f64>,
}

/// Speed of the host-device link.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkRates {
    /// Fixed cost of one transfer, microseconds.
    pub latency_us: f64,
    /// Host-to-device bandwidth, GB/s.
    pub gbps: f64,
    /// Device-to-host bandwidth, GB/s (often several times lower than uploads through staging).
    pub download_gbps: f64,
}

/// Everything the cost model knows about the machine.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineRates {
    /// The CPU.
    pub cpu: DeviceRates,
    /// The GPU and its link, when there is one.
    pub gpu: Option<(DeviceRates, LinkRates)>,
}

/// Floating-point operations and bytes moved by one node.
pub fn node_work(graph: &Graph, node: &Node) -> (f64, f64) {
    let ins: Vec<_> = node.inputs.iter().map(|i| &graph.node(*i).out).collect();
    let bytes = (ins.iter().map(|d| d.bytes()).sum::<usize>() + node.out.bytes()) as f64;
    let out_n = node.out.shape.numel() as f64;
    let flops = match &node.op {
        Op::MatMul { transpose_a, transpose_b } => {
            matmul_shape("cost", &ins[0].shape, &ins[1].shape, *transpose_a, *transpose_b)
                .map(|(s, [_, k, _])| 2.0 * s.numel() as f64 * k as f64)
                .unwrap_or(0.0)
        }
        // The residual's bytes are in `bytes` with the other inputs'.
        Op::FusedLinearAdd { transpose_b }
        | Op::FusedLinearAddGelu { transpose_b, .. }
        | Op::FusedLinearAddResidual { transpose_b } => {
            matmul_shape("cost", &ins[0].shape, &ins[1].shape, false, *transpose_b)
                .map(|(s, [_, k, _])| 2.0 * s.numel() as f64 * k as f64 + 10.0 * s.numel() as f64)
                .unwrap_or(0.0)
        }
        Op::Attention { .. } => {
            let q = ins[0].shape.dims();
            let skv = ins[1].shape.dims()[2] as f64;
            4.0 * (q[0] * q[1] * q[2] * q[3]) as f64 * skv
        }
        Op::PackedAttention { heads, kv_heads, .. } => {
            let q = ins[0].shape.dims();
            let d = q[2] / (heads + 2 * kv_heads).max(1);
            4.0 * (q[0] * heads * q[1] * d) as f64 * q[1] as f64
        }
        Op::Input { .. } | Op::Constant { .. } => 0.0,
        _ => 10.0 * out_n,
    };
    let bytes = if node.op.is_leaf() { 0.0 } else { bytes };
    (flops, bytes)
}

fn is_half(node: &Node) -> bool {
    !matches!(node.out.dtype, crate::tensor::DType::F32)
}

/// Estimated microseconds of `node` on a device with `rates`, not counting transfers.
pub fn compute_us(graph: &Graph, node: &Node, rates: &DeviceRates) -> f64 {
    // Reshapes are views in the executor (no kernel): only leaves and views cost nothing.
    if node.op.is_leaf() || matches!(node.op, Op::Reshape { .. }) {
        return 0.0;
    }
    let (flops, bytes) = node_work(graph, node);
    let rate = if is_half(node) { rates.gflops_half } else { rates.gflops_f32 };
    rates.launch_us + (flops / (rate * 1e3)).max(bytes / (rates.gbps * 1e3))
}

/// Microseconds to bring `bytes` to device `to` over the link.
fn transfer_us(bytes: usize, link: &LinkRates, to: Device) -> f64 {
    let gbps = if to == Device::Cpu { link.download_gbps } else { link.gbps };
    link.latency_us + bytes as f64 / (gbps * 1e3)
}

/// Estimated microseconds of the whole graph under `placement`: every node's compute time plus one transfer per
/// value and device that reads it elsewhere, plus bringing GPU outputs back to the host. Graph inputs live on the
/// host; constants are resident everywhere.
pub fn graph_us(graph: &Graph, placement: &[Device], rates: &MachineRates) -> f64 {
    let nodes = graph.nodes();
    let mut total = 0.0;
    let mut needed_on = vec![[false; 2]; nodes.len()];
    // A plan wholly on the GPU is replayed from a recording: each node costs the replay launch instead.
    let replayed = nodes.iter().zip(placement).all(|(n, d)| n.op.is_leaf() || *d == Device::Gpu);
    for (i, node) in nodes.iter().enumerate() {
        total += match (placement[i], &rates.gpu) {
            (Device::Gpu, Some((g, _))) => match g.replay_launch_us {
                Some(r) if replayed && !node.op.is_leaf() => compute_us(graph, node, g) - g.launch_us + r,
                _ => compute_us(graph, node, g),
            },
            _ => compute_us(graph, node, &rates.cpu),
        };
        for inp in &node.inputs {
            needed_on[inp.0][placement[i] as usize] = true;
        }
    }
    for o in graph.outputs() {
        needed_on[o.0][Device::Cpu as usize] = true;
    }
    if let Some((_, link)) = &rates.gpu {
        for (i, node) in nodes.iter().enumerate() {
            if matches!(node.op, Op::Constant { .. }) {
                continue;
            }
            let home = home_of(node, placement[i]);
            for dev in [Device::Cpu, Device::Gpu] {
                if dev != home && needed_on[i][dev as usize] {
                    total += transfer_us(node.out.bytes(), link, dev);
                }
            }
        }
    }
    total
}

/// Where a node's value is produced: graph inputs arrive on the host whatever their placement says.
fn home_of(node: &Node, placed: Device) -> Device {
    if matches!(node.op, Op::Input { .. }) {
        Device::Cpu
    } else {
        placed
    }
}

/// Chooses a device for every node.
pub fn place(graph: &Graph, policy: PlacementPolicy, rates: &MachineRates) -> Vec<Device> {
    let n = graph.len();
    let nodes = graph.nodes();
    if rates.gpu.is_none() {
        return vec![Device::Cpu; n];
    }
    let leaf_home = |node: &Node| if matches!(node.op, Op::Input { .. }) { Device::Cpu } else { Device::Gpu };
    match policy {
        PlacementPolicy::ForceCpu => vec![Device::Cpu; n],
        PlacementPolicy::ForceGpu => {
            nodes.iter().map(|nd| if nd.op.is_leaf() { leaf_home(nd) } else { Device::Gpu }).collect()
        }
        PlacementPolicy::SizeThreshold { matmul, fused } => nodes
            .iter()
            .map(|nd| {
                let big = match nd.op {
                    Op::MatMul { .. } => nd.out.shape.numel() > matmul,
                    Op::FusedLinearAdd { .. } | Op::FusedLinearAddGelu { .. } | Op::FusedLinearAddResidual { .. } => {
                        nd.out.shape.numel() > fused
                    }
                    _ => false,
                };
                // Constants are resident on the GPU whatever reads them.
                if big || matches!(nd.op, Op::Constant { .. }) {
                    Device::Gpu
                } else {
                    Device::Cpu
                }
            })
            .collect(),
        PlacementPolicy::Auto => auto_place(graph, rates),
    }
}

fn auto_place(graph: &Graph, rates: &MachineRates) -> Vec<Device> {
    let nodes = graph.nodes();
    let Some((gpu, link)) = &rates.gpu else { return vec![Device::Cpu; nodes.len()] };
    // Greedy: each node where it is cheapest given where its inputs already are.
    let mut placement: Vec<Device> = Vec::with_capacity(nodes.len());
    for node in nodes {
        if node.op.is_leaf() {
            placement.push(if matches!(node.op, Op::Input { .. }) { Device::Cpu } else { Device::Gpu });
            continue;
        }
        let cost_on = |dev: Device| {
            let compute =
                if dev == Device::Gpu { compute_us(graph, node, gpu) } else { compute_us(graph, node, &rates.cpu) };
            let moves: f64 = node
                .inputs
                .iter()
                .filter(|i| {
                    let src = graph.node(**i);
                    !matches!(src.op, Op::Constant { .. }) && home_of(src, placement[i.0]) != dev
                })
                .map(|i| transfer_us(graph.node(*i).out.bytes(), link, dev))
                .sum();
            compute + moves
        };
        placement.push(if cost_on(Device::Gpu) < cost_on(Device::Cpu) { Device::Gpu } else { Device::Cpu });
    }
    // Refinement: flip single nodes, then runs of nodes, while the whole graph gets cheaper. Bounded passes.
    let mut best = graph_us(graph, &placement, rates);
    for _ in 0..8 {
        let mut improved = false;
        for i in 0..nodes.len() {
            if nodes[i].op.is_leaf() {
                continue;
            }
            let old = placement[i];
            placement[i] = if old == Device::Cpu { Device::Gpu } else { Device::Cpu };
            let c = graph_us(graph, &placement, rates);
            if c + 1e-9 < best {
                best = c;
                improved = true;
            } else {
                placement[i] = old;
            }
        }
        // A whole-graph move escapes the local minimum where every single flip adds a transfer.
        for dev in [Device::Cpu, Device::Gpu] {
            let all: Vec<Device> =
                nodes.iter().enumerate().map(|(i, nd)| if nd.op.is_leaf() { placement[i] } else { dev }).collect();
            let c = graph_us(graph, &all, rates);
            if c + 1e-9 < best {
                best = c;
                placement = all;
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    placement
}
