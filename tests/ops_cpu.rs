//! Every op on the CPU backend against a float64 reference, on random inputs of awkward shapes (1, odd,
//! non-multiples of the kernels' tiles, large) in every float dtype. Outputs go to poisoned, oversized buffers.

mod common;

use common::*;
use mlx_native::util::random::uniform;
use mlx_native::{BinaryOp, DType, GeluKind, Op, ReduceKind, Shape, Tensor};

const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn rand(dtype: DType, shape: &[usize], scale: f32, seed: u64) -> Tensor {
    uniform(dtype, shape.to_vec(), scale, seed)
}

fn from_f32(v: Vec<f32>, shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(v, shape.to_vec()).unwrap().to_dtype(dtype).unwrap()
}

#[test]
fn matmul_matches_reference() {
    let s = seed();
    type Case<'a> = (&'a [usize], &'a [usize], usize, usize, usize);
    let cases: &[Case] = &[
        (&[], &[], 1, 1, 1),
        (&[], &[], 7, 13, 5),
        (&[3], &[3], 17, 9, 33),
        (&[2, 3], &[3], 5, 65, 4),
        (&[4], &[], 33, 31, 65),
        (&[], &[2], 6, 7, 9),
        (&[2, 1], &[1, 3], 3, 4, 5),
        (&[], &[], 300, 257, 129),
        (&[5], &[5], 1, 64, 1),
    ];
    for (ci, (ab, bb, m, k, n)) in cases.iter().enumerate() {
        for (ti, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
            for dt in FLOATS {
                if m * k * n > 100_000 && dt != DType::F32 {
                    continue;
                }
                let mut ash = ab.to_vec();
                ash.extend(if ta { [*k, *m] } else { [*m, *k] });
                let mut bsh = bb.to_vec();
                bsh.extend(if tb { [*n, *k] } else { [*k, *n] });
                let seed = s.wrapping_add((ci * 16 + ti) as u64);
                let a = rand(dt, &ash, 1.0, seed);
                let b = rand(dt, &bsh, 1.0, seed ^ 0xabc);
                let op = Op::MatMul { transpose_a: ta, transpose_b: tb };
                let got = run_op(&op, &[&a, &b], ci % 2 == 0).unwrap();
                let want = matmul(&R::of(&a), &R::of(&b), ta, tb);
                let (atol, rtol) = tol(dt, (*k as f64).sqrt());
                assert_close(&got, &want, atol, rtol, &format!("matmul {ash:?}x{bsh:?} t=({ta},{tb}) {dt} seed {s}"));
            }
        }
    }
}

#[test]
fn binary_broadcasting_matches_reference() {
    let s = seed();
    let cases: &[(&[usize], &[usize])] = &[
        (&[1], &[1]),
        (&[], &[4]),
        (&[7, 33], &[33]),
        (&[33], &[7, 33]),
        (&[1], &[5, 1]),
        (&[4, 1, 3], &[5, 1]),
        (&[2, 3, 1, 6], &[3, 5, 1]),
        (&[100_003], &[100_003]),
        (&[3, 70_001], &[70_001]),
        (&[3, 70_001], &[3, 1]),
        (&[70_001, 1], &[1, 3]),
        (&[5, 1, 9000], &[1, 7, 1]),
    ];
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];
    for (ci, (ash, bsh)) in cases.iter().enumerate() {
        for (oi, op) in ops.into_iter().enumerate() {
            for dt in FLOATS {
                let seed = s.wrapping_add((ci * 8 + oi) as u64);
                let a = rand(dt, ash, 1.0, seed);
                // Divisors kept away from zero so the reference is well conditioned.
                let bv: Vec<f32> = rand(DType::F32, bsh, 1.0, seed ^ 7)
                    .to_f32_vec()
                    .iter()
                    .map(|x| x.signum() * (1.0 + x.abs()))
                    .collect();
                let b = from_f32(bv, bsh, dt);
                let got = run_op(&Op::Binary(op), &[&a, &b], oi % 2 == 1).unwrap();
                let f = |x: f64, y: f64| match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                };
                let want = binary(&R::of(&a), &R::of(&b), f);
                let (atol, rtol) = tol(dt, 2.0);
                assert_close(&got, &want, atol, rtol, &format!("{op:?} {ash:?} {bsh:?} {dt} seed {s}"));
            }
        }
    }
}

#[test]
fn gelu_erf_is_within_1e6_of_f64_everywhere() {
    // Every f32 with 0.125 <= |x| <= 6 (where the error can be largest), a sweep of the rest, and the tails; through
    // the op, so the vectorised kernel is what is checked.
    let mut xs: Vec<f32> = Vec::new();
    for sign in [1.0f32, -1.0] {
        let (lo, hi) = (0.125f32.to_bits(), 6.0f32.to_bits());
        xs.extend((lo..=hi).map(|b| sign * f32::from_bits(b)));
    }
    xs.extend((-200_000..=200_000).map(|i| i as f32 * 5e-5));
    xs.extend([-30.0, -12.0, -5.3, 5.3, 12.0, 30.0, 1e5, -1e5, 1e-30, -1e-30, 0.0, -0.0]);
    let n = xs.len();
    let t = Tensor::from_vec(xs.clone(), [n]).unwrap();
    let got = run_op(&Op::Gelu(GeluKind::Erf), &[&t], false).unwrap().to_f32_vec();
    let mut worst = (0.0, 0.0);
    for (x, g) in xs.iter().zip(&got) {
        let e = (*g as f64 - gelu_erf(*x as f64)).abs();
        if e > worst.0 {
            worst = (e, *x);
        }
    }
    println!("max |gelu_erf - f64| = {:e} at x = {} over {n} values", worst.0, worst.1);
    assert!(worst.0 <= 1e-6, "GELU(erf) error {:e} at x = {}", worst.0, worst.1);
}

#[test]
fn unary_ops_match_reference() {
    let s = seed();
    let shapes: &[&[usize]] = &[&[1], &[7], &[33, 65], &[300_001]];
    for (si, sh) in shapes.iter().enumerate() {
        for dt in FLOATS {
            let x = rand(dt, sh, 8.0, s.wrapping_add(si as u64));
            for (name, op, f) in [
                ("gelu_erf", Op::Gelu(GeluKind::Erf), gelu_erf as fn(f64) -> f64),
                ("gelu_tanh", Op::Gelu(GeluKind::Tanh), gelu_tanh),
                ("silu", Op::Silu, silu),
            ] {
                let got = run_op(&op, &[&x], si % 2 == 0).unwrap();
                let (atol, rtol) = if dt == DType::F32 { (1e-6, 2e-6) } else { tol(dt, 1.0) };
                assert_close(&got, &R::of(&x).map(f), atol, rtol, &format!("{name} {sh:?} {dt} seed {s}"));
            }
        }
    }
}

#[test]
fn norms_match_reference() {
    let s = seed();
    let shapes: &[&[usize]] = &[&[1, 1], &[3, 7], &[5, 1024], &[2, 3, 4099], &[1000, 17]];
    for (si, sh) in shapes.iter().enumerate() {
        let n = *sh.last().unwrap();
        for dt in FLOATS {
            let seed = s.wrapping_add(si as u64 * 3);
            // An offset mean, so a one-pass variance would lose digits.
            let xv: Vec<f32> = rand(DType::F32, sh, 2.0, seed).to_f32_vec().iter().map(|v| v + 3.0).collect();
            let x = from_f32(xv, sh, dt);
            let w = rand(dt, &[n], 1.5, seed + 1);
            let b = rand(dt, &[n], 0.5, seed + 2);
            let got = run_op(&Op::LayerNorm { eps: 1e-5 }, &[&x, &w, &b], si % 2 == 0).unwrap();
            let want = layer_norm(&R::of(&x), &R::of(&w), &R::of(&b), 1e-5);
            let (atol, rtol) = if dt == DType::F32 { (2e-5, 2e-5) } else { tol(dt, 4.0) };
            assert_close(&got, &want, atol, rtol, &format!("layer_norm {sh:?} {dt} seed {s}"));
            let got = run_op(&Op::RmsNorm { eps: 1e-6 }, &[&x, &w], si % 2 == 1).unwrap();
            let want = rms_norm(&R::of(&x), &R::of(&w), 1e-6);
            assert_close(&got, &want, atol, rtol, &format!("rms_norm {sh:?} {dt} seed {s}"));
        }
    }
}

#[test]
fn softmax_matches_reference_and_is_stable() {
    let s = seed();
    let shapes: &[&[usize]] = &[&[1], &[4, 1], &[3, 1000], &[2, 5, 33], &[70, 4099]];
    for (si, sh) in shapes.iter().enumerate() {
        for dt in FLOATS {
            for scale in [1.0, 80.0] {
                let x = rand(dt, sh, scale, s.wrapping_add(si as u64));
                let got = run_op(&Op::Softmax, &[&x], si % 2 == 0).unwrap();
                let (atol, rtol) = if dt == DType::F32 { (1e-6, 1e-5) } else { tol(dt, 1.0) };
                assert_close(&got, &softmax(&R::of(&x)), atol, rtol, &format!("softmax {sh:?} x{scale} {dt} seed {s}"));
            }
        }
    }
    // Huge logits and -inf entries (masked positions).
    let x = Tensor::from_vec(vec![1e30f32, 1e30, f32::NEG_INFINITY, -1e30, 0.0, f32::NEG_INFINITY], [2, 3]).unwrap();
    let got = run_op(&Op::Softmax, &[&x], false).unwrap();
    assert_close(&got, &R::new(&[2, 3], vec![0.5, 0.5, 0.0, 0.0, 1.0, 0.0]), 1e-7, 0.0, "softmax extremes");
}

struct Attn {
    b: usize,
    hq: usize,
    hkv: usize,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
    causal: bool,
    mask: Option<Vec<usize>>,
}

#[test]
fn attention_matches_reference() {
    let s = seed();
    let a = |b, hq, hkv, sq, skv, d, dv, causal, mask: Option<&[usize]>| Attn {
        b,
        hq,
        hkv,
        sq,
        skv,
        d,
        dv,
        causal,
        mask: mask.map(|m| m.to_vec()),
    };
    let cases = [
        a(1, 1, 1, 1, 1, 1, 1, false, None),
        a(2, 3, 3, 5, 7, 8, 8, false, None),
        a(1, 4, 2, 65, 65, 16, 16, true, None),
        a(1, 2, 1, 1, 300, 32, 24, true, None),
        a(2, 4, 1, 130, 300, 8, 5, false, Some(&[2, 1, 1, 300])),
        a(1, 2, 2, 70, 257, 16, 16, true, Some(&[70, 257])),
        a(1, 2, 2, 9, 4, 8, 8, true, None), // sq > skv: the first rows see no key
        a(2, 6, 3, 33, 33, 64, 64, false, Some(&[2, 6, 33, 33])),
        a(1, 1, 1, 600, 600, 16, 16, true, Some(&[1])),
    ];
    for (ci, c) in cases.iter().enumerate() {
        for dt in [DType::F32, DType::BF16, DType::F16] {
            let seed = s.wrapping_add(ci as u64 * 10);
            let q = rand(dt, &[c.b, c.hq, c.sq, c.d], 1.5, seed);
            let k = rand(dt, &[c.b, c.hkv, c.skv, c.d], 1.5, seed + 1);
            let v = rand(dt, &[c.b, c.hkv, c.skv, c.dv], 1.0, seed + 2);
            let mask = c.mask.as_ref().map(|shape| {
                // Mostly small offsets, some positions hidden outright, including whole rows.
                let mv: Vec<f32> = rand(DType::F32, shape, 1.0, seed + 3)
                    .to_f32_vec()
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| if x > 0.7 || i % 97 == 3 { f32::NEG_INFINITY } else { x })
                    .collect();
                from_f32(mv, shape, dt)
            });
            let scale = 1.0 / (c.d as f32).sqrt();
            let op = Op::Attention { scale, causal: c.causal };
            let mut ins = vec![&q, &k, &v];
            ins.extend(mask.as_ref());
            let got = run_op(&op, &ins, ci % 2 == 0).unwrap();
            let want = attention(
                &R::of(&q),
                &R::of(&k),
                &R::of(&v),
                mask.as_ref().map(R::of).as_ref(),
                scale as f64,
                c.causal,
            );
            let (atol, rtol) = if dt == DType::F32 { (2e-6, 1e-5) } else { tol(dt, 1.0) };
            let ctx = format!("attention case {ci} {dt} seed {s}");
            assert_close(&got, &want, atol, rtol, &ctx);
        }
    }
}

#[test]
fn packed_attention_matches_reference() {
    let s = seed();
    // (batch, seq, heads, kv heads, head dim, causal, mask shape)
    type Case<'a> = (usize, usize, usize, usize, usize, bool, Option<&'a [usize]>);
    let cases: [Case; 7] = [
        (1, 1, 1, 1, 1, false, None),
        (2, 7, 3, 3, 8, false, Some(&[2, 1, 1, 7])),
        (1, 65, 4, 2, 16, true, None),
        (3, 33, 2, 1, 5, false, Some(&[3, 2, 33, 33])),
        (2, 130, 12, 12, 32, false, Some(&[2, 1, 1, 130])),
        (1, 300, 2, 2, 24, true, Some(&[300, 300])),
        (1, 9, 6, 3, 64, true, Some(&[1])),
    ];
    for (ci, &(b, sq, heads, kv, d, causal, mask_shape)) in cases.iter().enumerate() {
        for dt in FLOATS {
            let seed = s.wrapping_add(ci as u64 * 10);
            let qkv = rand(dt, &[b, sq, (heads + 2 * kv) * d], 1.5, seed);
            let mask = mask_shape.map(|shape| {
                let mv: Vec<f32> = rand(DType::F32, shape, 1.0, seed + 3)
                    .to_f32_vec()
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| if x > 0.7 || i % 89 == 2 { f32::NEG_INFINITY } else { x })
                    .collect();
                from_f32(mv, shape, dt)
            });
            let scale = 1.0 / (d as f32).sqrt();
            let op = Op::PackedAttention { scale, causal, heads, kv_heads: kv };
            let mut ins = vec![&qkv];
            ins.extend(mask.as_ref());
            let got = run_op(&op, &ins, ci % 2 == 1).unwrap();
            assert_eq!(got.shape().dims(), [b, sq, heads * d]);
            let want =
                packed_attention(&R::of(&qkv), mask.as_ref().map(R::of).as_ref(), heads, kv, scale as f64, causal);
            let (atol, rtol) = if dt == DType::F32 { (2e-6, 1e-5) } else { tol(dt, 1.0) };
            assert_close(&got, &want, atol, rtol, &format!("packed attention case {ci} {dt} seed {s}"));
        }
    }
    // Bad operands are errors, not panics.
    let qkv = rand(DType::F32, &[1, 4, 20], 1.0, s);
    for op in [
        Op::PackedAttention { scale: 1.0, causal: false, heads: 2, kv_heads: 2 }, // 6 heads do not split 20
        Op::PackedAttention { scale: 1.0, causal: false, heads: 3, kv_heads: 2 }, // 3 not a multiple of 2
        Op::PackedAttention { scale: 1.0, causal: false, heads: 2, kv_heads: 0 },
        Op::PackedAttention { scale: f32::NAN, causal: false, heads: 2, kv_heads: 1 },
    ] {
        assert!(run_op(&op, &[&qkv], false).is_err(), "{op:?}");
    }
    let op = Op::PackedAttention { scale: 1.0, causal: false, heads: 2, kv_heads: 1 };
    let bad_mask = rand(DType::F32, &[1, 1, 4, 5], 1.0, s);
    assert!(run_op(&op, &[&qkv, &bad_mask], false).is_err());
    let flat = rand(DType::F32, &[4, 20], 1.0, s);
    assert!(run_op(&op, &[&flat], false).is_err());
}

#[test]
fn embedding_gathers_rows_and_rejects_bad_ids() {
    let s = seed();
    for dt in FLOATS {
        let table = rand(dt, &[37, 13], 1.0, s);
        let ids_u: Vec<u32> = (0..3 * 5).map(|i| ((i as u64 * 7 + s) % 37) as u32).collect();
        let ids_i: Vec<i64> = ids_u.iter().map(|&x| x as i64).collect();
        for ids in [Tensor::from_vec(ids_u.clone(), [3, 5]).unwrap(), Tensor::from_vec(ids_i, [3, 5]).unwrap()] {
            let got = run_op(&Op::Embedding, &[&table, &ids], true).unwrap();
            assert_eq!(got.shape().dims(), &[3, 5, 13]);
            let t = R::of(&table);
            let want: Vec<f64> =
                ids_u.iter().flat_map(|&i| t.data[i as usize * 13..(i as usize + 1) * 13].to_vec()).collect();
            assert_close(&got, &R::new(&[3, 5, 13], want), 0.0, 0.0, &format!("embedding {dt} seed {s}"));
        }
    }
    let table = rand(DType::F32, &[4, 3], 1.0, s);
    for ids in [Tensor::from_vec(vec![0u32, 4], [2]).unwrap(), Tensor::from_vec(vec![1i64, -1], [2]).unwrap()] {
        let e = run_op(&Op::Embedding, &[&table, &ids], false).unwrap_err().to_string();
        assert!(e.contains("outside") && e.contains("4 rows"), "{e}");
    }
}

#[test]
fn layout_ops_match_reference() {
    let s = seed();
    for dt in [DType::F32, DType::BF16, DType::I64, DType::U32] {
        let make = |shape: &[usize], seed: u64| match dt {
            DType::I64 => Tensor::from_vec(
                (0..shape.iter().product::<usize>()).map(|i| i as i64 * 3 - 7 + seed as i64 % 5).collect(),
                shape.to_vec(),
            )
            .unwrap(),
            DType::U32 => Tensor::from_vec(
                (0..shape.iter().product::<usize>()).map(|i| i as u32 * 5 + seed as u32 % 3).collect(),
                shape.to_vec(),
            )
            .unwrap(),
            _ => rand(dt, shape, 1.0, seed),
        };
        let x = make(&[2, 3, 5, 7], s);
        for perm in [[0, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1], [0, 1, 3, 2]] {
            let got = run_op(&Op::Transpose { perm: perm.to_vec() }, &[&x], true).unwrap();
            assert_close(&got, &transpose(&R::of(&x), &perm), 0.0, 0.0, &format!("transpose {perm:?} {dt}"));
        }
        let big = make(&[300, 257], s + 1);
        let got = run_op(&Op::Transpose { perm: vec![1, 0] }, &[&big], false).unwrap();
        assert_close(&got, &transpose(&R::of(&big), &[1, 0]), 0.0, 0.0, &format!("transpose big {dt}"));
        for (axis, start, end) in [(0, 1, 2), (1, 0, 3), (2, 1, 4), (3, 6, 7), (3, 2, 2)] {
            let got = run_op(&Op::Slice { axis, start, end }, &[&x], axis % 2 == 0).unwrap();
            assert_close(
                &got,
                &slice(&R::of(&x), axis, start, end),
                0.0,
                0.0,
                &format!("slice {axis} {start}..{end} {dt}"),
            );
        }
        for axis in 0..3 {
            let mut shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]];
            for (i, sh) in shapes.iter_mut().enumerate() {
                sh[axis] = [1, 5, 2][i];
            }
            let xs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, sh)| make(sh, s + i as u64)).collect();
            let refs: Vec<&Tensor> = xs.iter().collect();
            let got = run_op(&Op::Concat { axis }, &refs, axis == 1).unwrap();
            let want = concat(&xs.iter().map(R::of).collect::<Vec<_>>(), axis);
            assert_close(&got, &want, 0.0, 0.0, &format!("concat axis {axis} {dt}"));
        }
        let got = run_op(&Op::Reshape { shape: Shape::new([7, 30]) }, &[&x], true).unwrap();
        assert_eq!(got.shape().dims(), &[7, 30]);
        assert_eq!(got.as_bytes(), x.as_bytes(), "reshape {dt}");
    }
}

#[test]
fn reduce_matches_reference() {
    let s = seed();
    let shapes: &[&[usize]] = &[&[1], &[3, 1, 70, 5], &[2, 5000], &[9000, 3]];
    for (si, sh) in shapes.iter().enumerate() {
        for dt in FLOATS {
            let x = rand(dt, sh, 1.0, s.wrapping_add(si as u64));
            for axis in 0..sh.len() {
                for (ki, kind) in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max].into_iter().enumerate() {
                    for keep_dim in [false, true] {
                        let got = run_op(&Op::Reduce { kind, axis, keep_dim }, &[&x], keep_dim).unwrap();
                        let want = reduce(&R::of(&x), ki as u8, axis, keep_dim);
                        let len = sh[axis] as f64;
                        let (atol, rtol) =
                            if dt == DType::F32 { (1e-6 * len.sqrt(), 1e-5) } else { tol(dt, len.sqrt()) };
                        assert_close(
                            &got,
                            &want,
                            atol,
                            rtol,
                            &format!("reduce {kind:?} {sh:?} axis {axis} {dt} seed {s}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fused_linear_matches_reference() {
    let s = seed();
    for (ci, (batch, m, k, n)) in
        [(vec![], 1, 1, 1), (vec![2], 5, 33, 17), (vec![], 130, 65, 257), (vec![2, 3], 4, 7, 9)].into_iter().enumerate()
    {
        for tb in [false, true] {
            for dt in FLOATS {
                let seed = s.wrapping_add(ci as u64 * 4);
                let mut xs = batch.clone();
                xs.extend([m, k]);
                let x = rand(dt, &xs, 1.0, seed);
                let w = rand(dt, &if tb { [n, k] } else { [k, n] }, 1.0, seed + 1);
                let b = rand(dt, &[n], 1.0, seed + 2);
                let lin = binary(&matmul(&R::of(&x), &R::of(&w), false, tb), &R::of(&b), |a, b| a + b);
                let (atol, rtol) = tol(dt, (k as f64).sqrt());
                let got = run_op(&Op::FusedLinearAdd { transpose_b: tb }, &[&x, &w, &b], tb).unwrap();
                assert_close(&got, &lin, atol, rtol, &format!("linear {xs:?} n={n} tb={tb} {dt} seed {s}"));
                for (gelu, f) in [(GeluKind::Erf, gelu_erf as fn(f64) -> f64), (GeluKind::Tanh, gelu_tanh)] {
                    let got = run_op(&Op::FusedLinearAddGelu { transpose_b: tb, gelu }, &[&x, &w, &b], !tb).unwrap();
                    assert_close(&got, &lin.map(f), atol, rtol, &format!("linear+gelu {gelu:?} {xs:?} {dt} seed {s}"));
                }
            }
        }
    }
}

#[test]
fn fused_linear_residual_matches_reference() {
    let s = seed();
    let cases = [
        (vec![], 1, 1, 1),
        (vec![], 1, 7, 3),
        (vec![2], 5, 33, 17),
        (vec![], 130, 65, 257),
        (vec![2, 3], 4, 7, 9),
        (vec![3], 1, 96, 40),
        (vec![], 3, 0, 5),
    ];
    for (ci, (batch, m, k, n)) in cases.into_iter().enumerate() {
        for tb in [false, true] {
            for dt in FLOATS {
                let seed = s.wrapping_add(ci as u64 * 8);
                let mut xs = batch.clone();
                xs.extend([m, k]);
                let mut os = batch.clone();
                os.extend([m, n]);
                let x = rand(dt, &xs, 1.0, seed);
                let w = rand(dt, &if tb { [n, k] } else { [k, n] }, 1.0, seed + 1);
                let b = rand(dt, &[n], 1.0, seed + 2);
                let r = rand(dt, &os, 2.0, seed + 3);
                let lin = binary(&matmul(&R::of(&x), &R::of(&w), false, tb), &R::of(&b), |a, b| a + b);
                let want = binary(&lin, &R::of(&r), |a, b| a + b);
                let op = Op::FusedLinearAddResidual { transpose_b: tb };
                let got = run_op(&op, &[&x, &w, &b, &r], ci % 2 == 1).unwrap();
                let (atol, rtol) = tol(dt, (k as f64).sqrt() + 2.0);
                let ctx = format!("linear+residual {xs:?} n={n} tb={tb} {dt} seed {s}");
                assert_close(&got, &want, atol, rtol, &ctx);
                if dt == DType::F32 {
                    // In f32 the fused op adds in the unfused graph's order: (x·W + b) + r, bit for bit.
                    let lin = run_op(&Op::FusedLinearAdd { transpose_b: tb }, &[&x, &w, &b], false).unwrap();
                    let unfused = run_op(&Op::Binary(BinaryOp::Add), &[&lin, &r], false).unwrap();
                    assert_eq!(got.to_f32_vec(), unfused.to_f32_vec(), "{ctx}: differs from Add(FusedLinearAdd)");
                }
            }
        }
    }
}

#[test]
fn fused_linear_residual_rejects_a_residual_of_another_shape_or_dtype() {
    let x = rand(DType::F32, &[2, 4, 3], 1.0, 1);
    let w = rand(DType::F32, &[3, 5], 1.0, 2);
    let b = rand(DType::F32, &[5], 1.0, 3);
    let op = Op::FusedLinearAddResidual { transpose_b: false };
    for (shape, dt) in [(vec![4, 5], DType::F32), (vec![2, 1, 5], DType::F32), (vec![2, 4, 6], DType::F32)] {
        let r = rand(dt, &shape, 1.0, 4);
        let e = run_op(&op, &[&x, &w, &b, &r], false).unwrap_err().to_string();
        assert!(e.contains("residual") && e.contains("FusedLinearAddResidual"), "{shape:?}: {e}");
    }
    let r = rand(DType::F16, &[2, 4, 5], 1.0, 4);
    let e = run_op(&op, &[&x, &w, &b, &r], false).unwrap_err().to_string();
    assert!(e.contains("FusedLinearAddResidual") && e.contains("f16"), "{e}");
    let e = run_op(&op, &[&x, &w, &b], false).unwrap_err().to_string();
    assert!(e.contains("FusedLinearAddResidual"), "{e}");
}

#[test]
fn casts_round_once_and_check_ids() {
    let s = seed();
    let x = rand(DType::F32, &[1001], 100.0, s);
    for to in FLOATS {
        let got = run_op(&Op::Cast { to }, &[&x], true).unwrap();
        assert_eq!(got.dtype(), to);
        assert_eq!(got.as_bytes(), x.to_dtype(to).unwrap().as_bytes(), "cast f32 -> {to}");
        let back = run_op(&Op::Cast { to: DType::F32 }, &[&got], false).unwrap();
        assert_eq!(back.to_f32_vec(), got.to_f32_vec());
    }
    let ids = Tensor::from_vec(vec![0u32, 7, u32::MAX], [3]).unwrap();
    let wide = run_op(&Op::Cast { to: DType::I64 }, &[&ids], false).unwrap();
    assert_eq!(wide.as_slice::<i64>().unwrap(), &[0, 7, u32::MAX as i64]);
    assert_eq!(
        run_op(&Op::Cast { to: DType::U32 }, &[&wide], true).unwrap().as_slice::<u32>().unwrap(),
        &[0, 7, u32::MAX]
    );
    let bad = Tensor::from_vec(vec![1i64, -3], [2]).unwrap();
    let e = run_op(&Op::Cast { to: DType::U32 }, &[&bad], false).unwrap_err().to_string();
    assert!(e.contains("-3"), "{e}");
}

#[test]
fn buffers_download_poison_and_move() {
    use mlx_native::backend::cpu::{CpuBackend, CpuBuffer};
    use mlx_native::backend::Backend;
    use mlx_native::TensorDesc;
    let be = CpuBackend::new();
    let t = rand(DType::BF16, &[3, 4], 1.0, seed());
    let d = TensorDesc::new(DType::BF16, [3, 4]);
    let buf = padded(&t);
    assert_eq!(be.download(&buf, &d).unwrap().as_bytes(), t.as_bytes());
    let moved = be.into_tensor(buf, &d).unwrap();
    assert_eq!(moved.as_bytes(), t.as_bytes());
    assert_eq!(moved.shape().dims(), &[3, 4]);
    let mut b = be.alloc(&TensorDesc::new(DType::F32, [5])).unwrap();
    be.poison(&mut b, &TensorDesc::new(DType::F32, [5])).unwrap();
    assert!(be.download(&b, &TensorDesc::new(DType::F32, [5])).unwrap().to_f32_vec().iter().all(|x| x.is_nan()));
    let shared = be.upload(&t).unwrap();
    assert!(matches!(shared, CpuBuffer::Shared(_)));
    // A buffer too small or of another dtype is an error, not a panic.
    assert!(be.download(&shared, &TensorDesc::new(DType::BF16, [13])).is_err());
    assert!(be.download(&shared, &TensorDesc::new(DType::F32, [3])).is_err());
}

#[test]
fn empty_tensors_run_without_panicking() {
    let e = |shape: &[usize]| rand(DType::F32, shape, 1.0, 1);
    let (x0, x05, w5, w0, w53) = (e(&[0, 5]), e(&[0, 5]), e(&[5]), e(&[0]), e(&[5, 3]));
    let ops: Vec<(Op, Vec<&Tensor>)> = vec![
        (Op::Binary(BinaryOp::Add), vec![&x0, &w5]),
        (Op::Gelu(GeluKind::Erf), vec![&x0]),
        (Op::Softmax, vec![&x05]),
        (Op::LayerNorm { eps: 1e-5 }, vec![&x0, &w5, &w5]),
        (Op::Reduce { kind: ReduceKind::Sum, axis: 0, keep_dim: false }, vec![&x0]),
        (Op::Reduce { kind: ReduceKind::Max, axis: 1, keep_dim: true }, vec![&x0]),
        (Op::Transpose { perm: vec![1, 0] }, vec![&x0]),
        (Op::Slice { axis: 1, start: 1, end: 3 }, vec![&x0]),
        (Op::Concat { axis: 0 }, vec![&x0, &x05]),
        (Op::MatMul { transpose_a: false, transpose_b: false }, vec![&x0, &w53]),
        (Op::Softmax, vec![&w0]),
    ];
    for (op, ins) in &ops {
        let out = run_op(op, ins, true).unwrap();
        assert!(out.to_f32_vec().iter().all(|v| v.is_finite()), "{}", op.name());
    }
    // An empty reduction: sum 0, as numpy.
    let s = run_op(&Op::Reduce { kind: ReduceKind::Sum, axis: 0, keep_dim: false }, &[&x0], false).unwrap();
    assert_eq!(s.to_f32_vec(), vec![0.0; 5]);
    // k = 0: a product of empty sums is all zeros.
    let a = e(&[3, 0]);
    let b = e(&[0, 4]);
    let p = run_op(&Op::MatMul { transpose_a: false, transpose_b: false }, &[&a, &b], true).unwrap();
    assert_eq!(p.to_f32_vec(), vec![0.0; 12]);
    // Attention over zero keys: every query sees nothing and gives 0.
    let q = e(&[1, 2, 3, 4]);
    let k = e(&[1, 1, 0, 4]);
    let o = run_op(&Op::Attention { scale: 0.5, causal: false }, &[&q, &k, &k], false).unwrap();
    assert_eq!(o.to_f32_vec(), vec![0.0; 24]);
}

#[test]
fn nan_propagates_through_elementwise_and_row_ops() {
    let x = Tensor::from_vec(vec![1.0f32, f32::NAN, -2.0, 0.5], [2, 2]).unwrap();
    for op in [Op::Gelu(GeluKind::Erf), Op::Gelu(GeluKind::Tanh), Op::Silu, Op::Softmax] {
        let out = run_op(&op, &[&x], false).unwrap().to_f32_vec();
        assert!(out[1].is_nan(), "{} lost a NaN: {out:?}", op.name());
        assert!(out[2].is_finite() && out[3].is_finite(), "{}: {out:?}", op.name());
    }
    let inf = Tensor::from_vec(vec![f32::INFINITY, f32::NEG_INFINITY], [2]).unwrap();
    assert_eq!(run_op(&Op::Gelu(GeluKind::Erf), &[&inf], false).unwrap().to_f32_vec(), [f32::INFINITY, 0.0]);
    assert_eq!(run_op(&Op::Gelu(GeluKind::Tanh), &[&inf], false).unwrap().to_f32_vec(), [f32::INFINITY, 0.0]);
    let m = run_op(&Op::Reduce { kind: ReduceKind::Max, axis: 1, keep_dim: false }, &[&x], false).unwrap();
    assert!(m.to_f32_vec()[0].is_nan());
}
