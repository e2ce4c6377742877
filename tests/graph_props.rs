//! Properties of broadcasting and shape inference, checked with proptest: the inferred shape is numpy's, the CPU
//! result has that shape and matches the float64 reference, and incompatible shapes are errors naming both.

mod common;

use common::*;
use mlx_native::graph::{infer, matmul_shape};
use mlx_native::util::random::uniform;
use mlx_native::{BinaryOp, DType, Op, ReduceKind, Shape, TensorDesc};
use proptest::prelude::*;

/// An output shape and two operand shapes that broadcast to it (dims dropped from the left or set to 1).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..5, 0..5).prop_flat_map(|out| {
        let r = out.len();
        (Just(out), 0..=r, 0..=r, prop::collection::vec(any::<bool>(), r), prop::collection::vec(any::<bool>(), r))
            .prop_map(move |(out, ra, rb, ones_a, ones_b)| {
                let derive = |rank: usize, ones: &[bool]| -> Vec<usize> {
                    (r - rank..r).map(|i| if ones[i] { 1 } else { out[i] }).collect()
                };
                let a = derive(ra, &ones_a);
                let b = derive(rb, &ones_b);
                let real = broadcast_shape(&a, &b).expect("derived shapes broadcast");
                (real, a, b)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn binary_broadcasting_matches_numpy((out, a, b) in broadcast_pair(), op in 0usize..4, seed in any::<u64>()) {
        let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][op];
        let (sa, sb) = (Shape::new(a.clone()), Shape::new(b.clone()));
        let inferred = Shape::broadcast("Add", &sa, &sb).unwrap();
        prop_assert_eq!(inferred.dims(), &out[..]);
        let x = uniform(DType::F32, a.clone(), 1.0, seed);
        let yv: Vec<f32> = uniform(DType::F32, b.clone(), 1.0, seed ^ 1).to_f32_vec().iter().map(|v| v + 2.0).collect();
        let y = mlx_native::Tensor::from_vec(yv, b.clone()).unwrap();
        let got = run_op(&Op::Binary(op), &[&x, &y], seed % 2 == 0).unwrap();
        let want = binary(&R::of(&x), &R::of(&y), |p, q| match op {
            BinaryOp::Add => p + q,
            BinaryOp::Sub => p - q,
            BinaryOp::Mul => p * q,
            BinaryOp::Div => p / q,
        });
        assert_close(&got, &want, 1e-6, 1e-6, &format!("{op:?} {a:?} {b:?} seed {seed}"));
    }

    #[test]
    fn incompatible_shapes_are_errors(mut a in prop::collection::vec(1usize..6, 1..4), i in 0usize..4, d in 2usize..5) {
        let i = i % a.len();
        let mut b = a.clone();
        a[i] = d;
        b[i] = d + 1;
        let e = Shape::broadcast("Add", &Shape::new(a.clone()), &Shape::new(b.clone())).unwrap_err().to_string();
        let sa = format!("{:?}", a);
        let sb = format!("{:?}", b);
        prop_assert!(e.contains(&sa) && e.contains(&sb), "{}", e);
    }

    #[test]
    fn matmul_shape_inference_matches_the_run(
        (batch, ba, bb) in broadcast_pair(), m in 1usize..6, k in 1usize..6, n in 1usize..6,
        ta in any::<bool>(), tb in any::<bool>(), seed in any::<u64>()
    ) {
        let mut ash = ba.clone();
        ash.extend(if ta { [k, m] } else { [m, k] });
        let mut bsh = bb.clone();
        bsh.extend(if tb { [n, k] } else { [k, n] });
        let (shape, mkn) = matmul_shape("MatMul", &Shape::new(ash.clone()), &Shape::new(bsh.clone()), ta, tb).unwrap();
        let mut want_shape = batch.clone();
        want_shape.extend([m, n]);
        prop_assert_eq!(shape.dims(), &want_shape[..]);
        prop_assert_eq!(mkn, [m, k, n]);
        let a = uniform(DType::F32, ash.clone(), 1.0, seed);
        let b = uniform(DType::F32, bsh.clone(), 1.0, seed ^ 5);
        let got = run_op(&Op::MatMul { transpose_a: ta, transpose_b: tb }, &[&a, &b], ta).unwrap();
        assert_close(&got, &matmul(&R::of(&a), &R::of(&b), ta, tb), 1e-5, 1e-5, &format!("{ash:?} {bsh:?} seed {seed}"));
    }

    #[test]
    fn layout_and_reduce_inference_matches_the_run(
        dims in prop::collection::vec(1usize..5, 1..5), perm_seed in any::<u64>(), axis in 0usize..4,
        cut in 0usize..5, seed in any::<u64>()
    ) {
        let r = dims.len();
        let axis = axis % r;
        let x = uniform(DType::F32, dims.clone(), 1.0, seed);
        // A permutation from the seed (Fisher-Yates).
        let mut perm: Vec<usize> = (0..r).collect();
        let mut s = perm_seed;
        for i in (1..r).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let d = TensorDesc::new(DType::F32, dims.clone());
        let t = Op::Transpose { perm: perm.clone() };
        let inferred = infer(&t, std::slice::from_ref(&d)).unwrap();
        let got = run_op(&t, &[&x], seed % 2 == 1).unwrap();
        prop_assert_eq!(got.shape(), &inferred.shape);
        assert_close(&got, &transpose(&R::of(&x), &perm), 0.0, 0.0, &format!("transpose {dims:?} {perm:?}"));
        let (start, end) = (cut.min(dims[axis]) / 2, cut.min(dims[axis]));
        let sl = Op::Slice { axis, start, end };
        let got = run_op(&sl, &[&x], false).unwrap();
        prop_assert_eq!(got.shape(), &infer(&sl, std::slice::from_ref(&d)).unwrap().shape);
        assert_close(&got, &slice(&R::of(&x), axis, start, end), 0.0, 0.0, "slice");
        for (ki, kind) in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max].into_iter().enumerate() {
            let keep_dim = seed % 3 == ki as u64;
            let op = Op::Reduce { kind, axis, keep_dim };
            let got = run_op(&op, &[&x], true).unwrap();
            prop_assert_eq!(got.shape(), &infer(&op, std::slice::from_ref(&d)).unwrap().shape);
            assert_close(&got, &reduce(&R::of(&x), ki as u8, axis, keep_dim), 1e-6, 1e-6, "reduce");
        }
    }
}
