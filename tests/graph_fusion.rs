//! The fusion and dead-node passes: fused graphs give the unfused graph's outputs, fusion happens exactly where
//! the intermediate is private, and dead nodes go while inputs stay.

mod common;

use mlx_native::backend::cpu::CpuBackend;
use mlx_native::exec::{ExecOptions, Executor, PlacementPolicy};
use mlx_native::graph::{eliminate_dead_nodes, fuse_linear, optimize};
use mlx_native::util::random::uniform;
use mlx_native::{DType, GeluKind, Graph, GraphBuilder, NodeId, Tensor};

fn run(graph: &Graph, inputs: &[Tensor], fuse: bool) -> Vec<Tensor> {
    let opts = ExecOptions { policy: PlacementPolicy::ForceCpu, optimize: fuse, rates: None };
    Executor::with_gpu(CpuBackend::new(), opts).run(graph, inputs).unwrap()
}

fn count(graph: &Graph, name: &str) -> usize {
    graph.nodes().iter().filter(|n| n.op.name() == name).count()
}

/// x [batch.., m, k] -> linear(+gelu) -> linear, biases on either side of the Add.
#[allow(clippy::too_many_arguments)]
fn mlp(
    dt: DType,
    lead: &[usize],
    k: usize,
    n: usize,
    tb: bool,
    bias_left: bool,
    gelu: Option<GeluKind>,
    seed: u64,
) -> Graph {
    let mut g = GraphBuilder::new();
    let mut xs = lead.to_vec();
    xs.push(k);
    let x = g.input("x", dt, xs);
    let w = g.constant(uniform(dt, if tb { vec![n, k] } else { vec![k, n] }, 0.3, seed));
    let b = g.constant(uniform(dt, [n], 0.3, seed + 1));
    let h = g.matmul(x, w, false, tb).unwrap();
    let h = if bias_left { g.add(b, h).unwrap() } else { g.add(h, b).unwrap() };
    let h = match gelu {
        Some(kind) => g.gelu(h, kind).unwrap(),
        None => h,
    };
    let w2 = g.constant(uniform(dt, [n, 3], 0.3, seed + 2));
    let b2 = g.constant(uniform(dt, [3], 0.3, seed + 3));
    let y = g.matmul(h, w2, false, false).unwrap();
    let y = g.add(y, b2).unwrap();
    g.output(y).unwrap();
    g.build().unwrap()
}

#[test]
fn fused_graph_equals_unfused_graph() {
    let s = common::seed();
    let mut i = 0;
    for dt in [DType::F32, DType::BF16] {
        for lead in [vec![1], vec![7], vec![2, 5]] {
            for tb in [false, true] {
                for bias_left in [false, true] {
                    for gelu in [None, Some(GeluKind::Erf), Some(GeluKind::Tanh)] {
                        i += 1;
                        let g = mlp(dt, &lead, 33, 65, tb, bias_left, gelu, s.wrapping_add(i * 8));
                        let opt = optimize(&g);
                        let want_gelu = gelu.is_some() as usize;
                        assert_eq!(count(&opt, "FusedLinearAddGelu"), want_gelu, "{}", opt.describe());
                        assert_eq!(count(&opt, "FusedLinearAdd"), 2 - want_gelu, "{}", opt.describe());
                        assert_eq!(count(&opt, "MatMul") + count(&opt, "Add") + count(&opt, "Gelu"), 0);
                        let mut xs = lead.clone();
                        xs.push(33);
                        let x = uniform(dt, xs, 1.0, s.wrapping_add(i));
                        let a = run(&g, std::slice::from_ref(&x), true);
                        let b = run(&g, &[x], false);
                        // Same math up to rounding order (bf16 rounds the unfused intermediate once more).
                        let tol = if dt == DType::F32 { 1e-5 } else { 3e-2 };
                        let want = common::R::of(&b[0]);
                        common::assert_close(&a[0], &want, tol, tol, &format!("graph {i} {dt} seed {s}"));
                    }
                }
            }
        }
    }
}

#[test]
fn shared_or_output_intermediates_are_not_fused() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [4, 8]);
    let w = g.constant(uniform(DType::F32, [8, 6], 1.0, 1));
    let b = g.constant(uniform(DType::F32, [6], 1.0, 2));
    // mm feeds two nodes: no fusion of it.
    let mm = g.matmul(x, w, false, false).unwrap();
    let a1 = g.add(mm, b).unwrap();
    let other = g.silu(mm).unwrap();
    // The second chain's Add is also an output: MatMul+Add may fuse, the Gelu stays separate.
    let mm2 = g.matmul(x, w, false, false).unwrap();
    let a2 = g.add(mm2, b).unwrap();
    let gl = g.gelu(a2, GeluKind::Erf).unwrap();
    // Transposed left side or a 3-D weight never fuses.
    let mm3 = g.matmul(x, x, true, false).unwrap();
    let b3 = g.constant(uniform(DType::F32, [8], 1.0, 3));
    let a3 = g.add(mm3, b3).unwrap();
    for o in [a1, other, a2, gl, a3] {
        g.output(o).unwrap();
    }
    let graph = g.build().unwrap();
    let f = fuse_linear(&graph);
    assert_eq!(count(&f, "FusedLinearAddGelu"), 0, "{}", f.describe());
    assert_eq!(count(&f, "FusedLinearAdd"), 1, "{}", f.describe());
    assert_eq!(count(&f, "MatMul"), 2, "{}", f.describe());
    let x = uniform(DType::F32, [4, 8], 1.0, 9);
    let a = run(&graph, std::slice::from_ref(&x), true);
    let b = run(&graph, &[x], false);
    for (p, q) in a.iter().zip(&b) {
        common::assert_close(p, &common::R::of(q), 1e-5, 1e-5, "partially fused graph");
    }
}

#[test]
fn dead_nodes_go_and_inputs_stay() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [3]);
    let unused = g.input("unused", DType::F32, [2]);
    let _dead = g.silu(x).unwrap();
    let _dead2 = g.gelu(unused, GeluKind::Tanh).unwrap();
    let y = g.add(x, x).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    let d = eliminate_dead_nodes(&graph);
    assert_eq!(d.len(), 3, "{}", d.describe());
    assert_eq!(d.inputs().iter().map(|(_, n)| *n).collect::<Vec<_>>(), ["x", "unused"]);
    assert_eq!(d.outputs(), &[NodeId(2)]);
    let x = Tensor::from_vec(vec![1.0f32, -2.0, 0.5], [3]).unwrap();
    let u = Tensor::from_vec(vec![0f32; 2], [2]).unwrap();
    let out = run(&graph, &[x, u], true);
    assert_eq!(out[0].to_f32_vec(), [2.0, -4.0, 1.0]);
}

/// x·W + b as MatMul + Add (bias on the left when `bias_left`) of a fresh weight.
#[allow(clippy::too_many_arguments)]
fn linear(
    g: &mut GraphBuilder,
    x: NodeId,
    dt: DType,
    k: usize,
    n: usize,
    tb: bool,
    bias_left: bool,
    seed: u64,
) -> NodeId {
    let w = g.constant(uniform(dt, if tb { vec![n, k] } else { vec![k, n] }, 0.3, seed));
    let b = g.constant(uniform(dt, [n], 0.3, seed + 1));
    let h = g.matmul(x, w, false, tb).unwrap();
    if bias_left {
        g.add(b, h).unwrap()
    } else {
        g.add(h, b).unwrap()
    }
}

fn assert_same_outputs(graph: &Graph, x: &Tensor, tol: f64, ctx: &str) {
    let a = run(graph, std::slice::from_ref(x), true);
    let b = run(graph, std::slice::from_ref(x), false);
    for (p, q) in a.iter().zip(&b) {
        common::assert_close(p, &common::R::of(q), tol, tol, ctx);
    }
}

/// Both BERT residual patterns: `linear(x) + x` and, after a GELU layer, `linear(gelu(linear(x))) + x`, with the
/// residual on either side of the Add and the bias on either side of its Add.
#[test]
fn residual_adds_fuse_into_the_linear_layer() {
    let s = common::seed();
    let mut i = 0;
    for dt in [DType::F32, DType::BF16] {
        for lead in [vec![1], vec![7], vec![2, 5]] {
            for tb in [false, true] {
                for (residual_left, bias_left) in [(false, false), (true, false), (false, true), (true, true)] {
                    i += 1;
                    let seed = s.wrapping_add(i * 16);
                    let (k, n) = (33, 19);
                    let mut g = GraphBuilder::new();
                    let mut xs = lead.clone();
                    xs.push(k);
                    let x = g.input("x", dt, xs.clone());
                    // Attention-output style: linear(x) with x's own width as the residual.
                    let h = linear(&mut g, x, dt, k, k, tb, bias_left, seed);
                    let y = if residual_left { g.add(x, h).unwrap() } else { g.add(h, x).unwrap() };
                    // FFN style: gelu(linear) -> linear, + y.
                    let f = linear(&mut g, y, dt, k, n, tb, bias_left, seed + 4);
                    let f = g.gelu(f, GeluKind::Erf).unwrap();
                    let f = linear(&mut g, f, dt, n, k, tb, !bias_left, seed + 8);
                    let z = if residual_left { g.add(y, f).unwrap() } else { g.add(f, y).unwrap() };
                    g.output(z).unwrap();
                    let graph = g.build().unwrap();
                    let opt = optimize(&graph);
                    assert_eq!(count(&opt, "FusedLinearAddResidual"), 2, "{}", opt.describe());
                    assert_eq!(count(&opt, "FusedLinearAddGelu"), 1, "{}", opt.describe());
                    assert_eq!(count(&opt, "FusedLinearAdd") + count(&opt, "MatMul") + count(&opt, "Add"), 0);
                    for node in opt.nodes().iter().filter(|nd| nd.op.name() == "FusedLinearAddResidual") {
                        assert_eq!(node.inputs.len(), 4);
                        assert_eq!(opt.node(node.inputs[3]).out, node.out, "the residual operand");
                    }
                    let xv = uniform(dt, xs, 1.0, s.wrapping_add(i));
                    // bf16 rounds the unfused intermediate once more.
                    let tol = if dt == DType::F32 { 1e-5 } else { 3e-2 };
                    assert_same_outputs(&graph, &xv, tol, &format!("graph {i} {dt} seed {s}"));
                }
            }
        }
    }
}

/// `Add(linear1, linear2)`: the first operand takes the residual, the second stays a FusedLinearAdd.
#[test]
fn an_add_of_two_linear_layers_fuses_the_first() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [5, 8]);
    let l1 = linear(&mut g, x, DType::F32, 8, 6, false, false, 1);
    let l2 = linear(&mut g, x, DType::F32, 8, 6, true, true, 5);
    let y = g.add(l1, l2).unwrap();
    g.output(y).unwrap();
    let graph = g.build().unwrap();
    let opt = optimize(&graph);
    assert_eq!(count(&opt, "FusedLinearAddResidual"), 1, "{}", opt.describe());
    assert_eq!(count(&opt, "FusedLinearAdd"), 1, "{}", opt.describe());
    assert_eq!(count(&opt, "MatMul") + count(&opt, "Add"), 0, "{}", opt.describe());
    let fused = opt.nodes().iter().find(|nd| nd.op.name() == "FusedLinearAddResidual").unwrap();
    assert!(matches!(fused.op, mlx_native::Op::FusedLinearAddResidual { transpose_b: false }), "{}", opt.describe());
    assert_eq!(opt.node(fused.inputs[3]).op.name(), "FusedLinearAdd", "{}", opt.describe());
    assert_same_outputs(&graph, &uniform(DType::F32, [5, 8], 1.0, 9), 1e-5, "two linears");
}

/// No residual fusion when the linear layer's Add has another consumer or is an output, when the residual has
/// another shape (the Add would broadcast the linear layer) or broadcasts itself.
#[test]
fn residual_adds_that_cannot_fuse_stay() {
    let dt = DType::F32;
    let mut g = GraphBuilder::new();
    let x = g.input("x", dt, [4, 8]);
    let big = g.input("big", dt, [3, 4, 8]);
    let row = g.input("row", dt, [8]);
    let one = g.input("one", dt, [1, 8]);
    // The linear Add also feeds a Silu.
    let l1 = linear(&mut g, x, dt, 8, 8, false, false, 1);
    let other = g.silu(l1).unwrap();
    let a1 = g.add(l1, x).unwrap();
    // The linear Add is an output.
    let l2 = linear(&mut g, x, dt, 8, 8, true, false, 3);
    let a2 = g.add(x, l2).unwrap();
    // The residual is larger than the linear layer's output: the Add broadcasts the linear layer.
    let l3 = linear(&mut g, x, dt, 8, 8, false, true, 5);
    let a3 = g.add(l3, big).unwrap();
    // Broadcast residuals: [8] and [1, 8].
    let l4 = linear(&mut g, x, dt, 8, 8, false, false, 7);
    let a4 = g.add(row, l4).unwrap();
    let l5 = linear(&mut g, x, dt, 8, 8, true, true, 9);
    let a5 = g.add(l5, one).unwrap();
    for o in [other, a1, l2, a2, a3, a4, a5] {
        g.output(o).unwrap();
    }
    let graph = g.build().unwrap();
    let f = fuse_linear(&graph);
    assert_eq!(count(&f, "FusedLinearAddResidual"), 0, "{}", f.describe());
    assert_eq!(count(&f, "FusedLinearAdd"), 5, "{}", f.describe());
    assert_eq!(count(&f, "Add"), 5, "{}", f.describe());
    let xv = uniform(dt, [4, 8], 1.0, 11);
    let inputs = [xv, uniform(dt, [3, 4, 8], 1.0, 12), uniform(dt, [8], 1.0, 13), uniform(dt, [1, 8], 1.0, 14)];
    let a = run(&graph, &inputs, true);
    let b = run(&graph, &inputs, false);
    for (p, q) in a.iter().zip(&b) {
        common::assert_close(p, &common::R::of(q), 1e-5, 1e-5, "unfusable residual adds");
    }
}
