//! The memory plan: intermediates share buffers by liveness, so a chain needs two live buffers, not one per node.

use mlx_native::exec::MemoryPlan;
use mlx_native::{DType, GraphBuilder};

#[test]
fn chain_peak_is_two_live_tensors_not_the_sum() {
    for n in [1usize, 7, 1000] {
        let mut g = GraphBuilder::new();
        let x = g.input("x", DType::F32, [n]);
        let mut h = x;
        for i in 0..20 {
            h = if i % 2 == 0 { g.silu(h).unwrap() } else { g.add(h, x).unwrap() };
        }
        g.output(h).unwrap();
        let graph = g.build().unwrap();
        let plan = MemoryPlan::new(&graph);
        // 19 intermediates (the last node is the output, handed to the caller) but only two alive at once.
        assert_eq!(plan.peak_bytes(), 2 * 4 * n, "n = {n}: {plan:?}");
    }
}

#[test]
fn growing_chain_peak_is_the_two_largest_live_tensors() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [10]);
    let mut h = g.silu(x).unwrap();
    let mut sizes = vec![10usize];
    for _ in 0..4 {
        h = g.concat(&[h, h], 0).unwrap();
        sizes.push(2 * sizes.last().unwrap());
    }
    let out = g.silu(h).unwrap();
    g.output(out).unwrap();
    let graph = g.build().unwrap();
    let plan = MemoryPlan::new(&graph);
    // Intermediates: 10, 20, 40, 80, 160 elements; the output (160) has no slot. Largest live pair: 80 + 160.
    let n = sizes.len();
    assert_eq!(plan.peak_bytes(), 4 * (sizes[n - 1] + sizes[n - 2]), "{plan:?}");
}

#[test]
fn dtypes_never_share_a_buffer() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [64]);
    let a = g.silu(x).unwrap();
    let b = g.cast(a, DType::BF16).unwrap();
    let c = g.silu(b).unwrap();
    let d = g.cast(c, DType::F32).unwrap();
    let e = g.silu(d).unwrap();
    g.output(e).unwrap();
    let plan = MemoryPlan::new(&g.build().unwrap());
    for (i, s) in plan.slot_of.iter().enumerate() {
        if let Some(s) = s {
            let node_dtype = if (2..=3).contains(&i) { DType::BF16 } else { DType::F32 };
            assert_eq!(plan.slots[*s].dtype, node_dtype, "node {i}");
        }
    }
}
