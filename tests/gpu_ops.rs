//! Every op on the GPU against the CPU backend, and against a float64 reference where that is cheap, on random
//! inputs of awkward shapes (1, odd, not multiples of the vector width or the tile sizes, large). GPU outputs are
//! poisoned (NaN / all-ones) before every launch, so an element a kernel does not write fails the comparison.
//! Without a GPU every test prints `SKIPPED: no GPU (<reason>)` and returns.

#[cfg(all(feature = "cuda", target_os = "linux"))]
mod gpu {
    use std::sync::OnceLock;

    use mlx_native::backend::cpu::CpuBackend;
    use mlx_native::backend::cuda::{CudaBackend, ErfGeluPath};
    use mlx_native::backend::{Backend, OpCall};
    use mlx_native::graph::infer;
    use mlx_native::util::random;
    use mlx_native::{BinaryOp, DType, Error, GeluKind, Op, ReduceKind, Result, Shape, Tensor, TensorDesc};

    const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    fn gpu() -> Option<&'static CudaBackend> {
        static G: OnceLock<std::result::Result<CudaBackend, String>> = OnceLock::new();
        match G.get_or_init(|| CudaBackend::new(0).map_err(|e| e.to_string())) {
            Ok(g) => Some(g),
            // On the GPU machine scripts/gpu-check.sh sets MLX_NATIVE_REQUIRE_GPU=1: a skip there is a failure.
            Err(e) if std::env::var_os("MLX_NATIVE_REQUIRE_GPU").is_some() => panic!("no GPU but one is required: {e}"),
            Err(e) => {
                mlx_native::util::skipped(&format!("SKIPPED: no GPU ({e})"));
                None
            }
        }
    }

    fn seed() -> u64 {
        let s = random::fresh_seed();
        println!("seed {s}");
        s
    }

    fn desc(t: &Tensor) -> TensorDesc {
        TensorDesc::new(t.dtype(), t.shape().clone())
    }

    /// Uploads, runs one op, downloads. `poison` fills the output with NaN first.
    fn run<B: Backend>(b: &B, op: &Op, inputs: &[Tensor], poison: bool) -> Result<Tensor> {
        let descs: Vec<TensorDesc> = inputs.iter().map(desc).collect();
        let out = infer(op, &descs)?;
        let bufs = inputs.iter().map(|t| b.upload(t)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&B::Buffer> = bufs.iter().collect();
        let mut o = b.alloc(&out)?;
        if poison {
            b.poison(&mut o, &out)?;
        }
        b.execute(&OpCall { op, inputs: &descs, output: &out }, &refs, &mut o)?;
        b.synchronize()?;
        b.download(&o, &out)
    }

    /// Relative tolerance of a result rounded once to `d` (both sides compute in f32 and may round differently).
    fn tol(d: DType) -> f64 {
        match d {
            DType::F32 => 2e-5,
            DType::F16 => 2e-3,
            DType::BF16 => 1.6e-2,
            _ => 0.0,
        }
    }

    fn as_f64(t: &Tensor) -> Vec<f64> {
        match t.dtype() {
            DType::I64 => t.as_slice::<i64>().map(|s| s.iter().map(|&x| x as f64).collect()).unwrap_or_default(),
            DType::U32 => t.as_slice::<u32>().map(|s| s.iter().map(|&x| x as f64).collect()).unwrap_or_default(),
            _ => t.to_f32_vec().into_iter().map(f64::from).collect(),
        }
    }

    /// |got - want| <= tol * (scale + |want|) for every element; NaN never passes.
    fn assert_close(got: &[f64], want: &[f64], tol: f64, scale: f64, ctx: &str) {
        assert_eq!(got.len(), want.len(), "{ctx}: element counts differ");
        let mut worst = (0.0f64, 0usize);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g - w).abs() / (scale + w.abs());
            if !err.is_finite() || err.is_nan() || g.is_nan() {
                panic!("{ctx}: element {i} is {g}, expected {w} (unwritten or NaN)");
            }
            if err > worst.0 {
                worst = (err, i);
            }
        }
        assert!(
            worst.0 <= tol,
            "{ctx}: element {} is {}, expected {} (relative error {:.3e} > {tol:.1e})",
            worst.1,
            got[worst.1],
            want[worst.1],
            worst.0
        );
    }

    /// GPU result of `op`, checked against the CPU backend with `tol(dtype) * slack`.
    fn check(g: &CudaBackend, op: Op, inputs: &[Tensor], slack: f64, ctx: &str) -> Tensor {
        let got = run(g, &op, inputs, true).unwrap_or_else(|e| panic!("{ctx}: GPU failed: {e}"));
        let want = run(&CpuBackend::new(), &op, inputs, false).unwrap_or_else(|e| panic!("{ctx}: CPU failed: {e}"));
        assert_eq!(got.shape(), want.shape(), "{ctx}");
        assert_eq!(got.dtype(), want.dtype(), "{ctx}");
        let t = if want.dtype().is_float() { tol(want.dtype()) * slack } else { 0.0 };
        assert_close(&as_f64(&got), &as_f64(&want), t, 1.0, &format!("{ctx} (GPU vs CPU)"));
        got
    }

    fn rnd(d: DType, shape: &[usize], s: u64) -> Tensor {
        random::uniform(d, Shape::new(shape.to_vec()), 1.0, s)
    }

    // ---- float64 references (on the inputs as rounded to their dtype) ----

    fn bcast_index(i: usize, out: &[usize], shape: &[usize]) -> usize {
        let off = out.len() - shape.len();
        let (mut rem, mut idx, mut stride) = (i, 0, 1);
        for d in (0..out.len()).rev() {
            let c = rem % out[d];
            rem /= out[d];
            if d >= off && shape[d - off] != 1 {
                idx += c * stride;
            }
            if d >= off {
                stride *= shape[d - off];
            }
        }
        idx
    }

    fn ref_binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Vec<f64> {
        let out = Shape::broadcast("ref", a.shape(), b.shape()).expect("broadcastable");
        let (av, bv) = (as_f64(a), as_f64(b));
        (0..out.numel())
            .map(|i| {
                let x = av[bcast_index(i, out.dims(), a.shape().dims())];
                let y = bv[bcast_index(i, out.dims(), b.shape().dims())];
                match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                }
            })
            .collect()
    }

    fn erf64(x: f64) -> f64 {
        // Abramowitz-Stegun 7.1.26 is too coarse; use the series / continued fraction via libm-quality erf from
        // the complementary error function identity with high-order rational approximation (W. J. Cody).
        // For test purposes the Taylor series converges fast for |x| < 3 and erf saturates beyond.
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn ref_unary(op: &Op, x: &Tensor) -> Vec<f64> {
        as_f64(x)
            .into_iter()
            .map(|v| match op {
                Op::Gelu(GeluKind::Erf) => 0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2)),
                Op::Gelu(GeluKind::Tanh) => {
                    0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
                }
                _ => v / (1.0 + (-v).exp()),
            })
            .collect()
    }

    fn ref_rows(op: &Op, ins: &[Tensor]) -> Vec<f64> {
        let x = as_f64(&ins[0]);
        let n = ins[0].shape().last_dim();
        let w = ins.get(1).map(as_f64);
        let b = ins.get(2).map(as_f64);
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks(n) {
            match op {
                Op::Softmax => {
                    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    out.extend(row.iter().map(|v| (v - m).exp() / s));
                }
                Op::LayerNorm { eps } => {
                    let mean = row.iter().sum::<f64>() / n as f64;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                    let r = 1.0 / (var + *eps as f64).sqrt();
                    let (w, b) = (w.as_ref().expect("weight"), b.as_ref().expect("bias"));
                    out.extend(row.iter().enumerate().map(|(i, v)| (v - mean) * r * w[i] + b[i]));
                }
                Op::RmsNorm { eps } => {
                    let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
                    let r = 1.0 / (ms + *eps as f64).sqrt();
                    let w = w.as_ref().expect("weight");
                    out.extend(row.iter().enumerate().map(|(i, v)| v * r * w[i]));
                }
                _ => unreachable!("row op"),
            }
        }
        out
    }

    // ---- tests ----

    #[test]
    fn binary_broadcasts() {
        let Some(g) = gpu() else { return };
        let s = seed();
        let cases: &[(&[usize], &[usize])] = &[
            (&[1], &[1]),
            (&[7], &[7]),
            (&[1_000_003], &[1_000_003]),
            (&[3, 5, 7], &[7]),
            (&[8, 16], &[16]),
            (&[64, 129], &[129]),
            (&[4, 33], &[4, 1]),
            (&[2, 1, 5], &[3, 1]),
            (&[1], &[9, 17]),
            (&[24], &[3, 24]),
            (&[2, 3, 2, 3, 2, 3, 2, 3, 2, 5], &[3, 1, 5]),
            (&[6, 1, 4, 1, 3], &[5, 1, 2, 1]),
        ];
        for d in FLOATS {
            for (i, (sa, sb)) in cases.iter().enumerate() {
                for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                    let a = rnd(d, sa, s + i as u64);
                    // Keep divisors away from 0 so the comparison is about the kernel, not cancellation.
                    let b = if op == BinaryOp::Div {
                        let v: Vec<f32> = rnd(DType::F32, sb, s + 99).to_f32_vec().iter().map(|x| x + 2.0).collect();
                        Tensor::from_vec(v, sb.to_vec()).unwrap().to_dtype(d).unwrap()
                    } else {
                        rnd(d, sb, s + 50 + i as u64)
                    };
                    let ctx = format!("{op:?} {d} {sa:?} {sb:?}");
                    let got = check(g, Op::Binary(op), &[a.clone(), b.clone()], 1.0, &ctx);
                    assert_close(&as_f64(&got), &ref_binary(op, &a, &b), tol(d), 1.0, &format!("{ctx} vs f64"));
                }
            }
        }
    }

    #[test]
    fn gelu_silu() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for d in FLOATS {
            for shape in [&[1usize][..], &[13], &[3, 4097], &[(1 << 20) + 3]] {
                for op in [Op::Gelu(GeluKind::Erf), Op::Gelu(GeluKind::Tanh), Op::Silu] {
                    let x = random::uniform(d, Shape::new(shape.to_vec()), 4.0, s);
                    let ctx = format!("{op:?} {d} {shape:?}");
                    let got = check(g, op.clone(), std::slice::from_ref(&x), 1.0, &ctx);
                    assert_close(&as_f64(&got), &ref_unary(&op, &x), tol(d), 1e-3, &format!("{ctx} vs f64"));
                }
            }
        }
    }

    #[test]
    fn casts() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for from in FLOATS {
            for to in FLOATS {
                for shape in [&[1usize][..], &[1001], &[3, 77]] {
                    let x = random::uniform(from, Shape::new(shape.to_vec()), 100.0, s);
                    let got = check(
                        g,
                        Op::Cast { to },
                        std::slice::from_ref(&x),
                        0.0,
                        &format!("cast {from}->{to} {shape:?}"),
                    );
                    // Exact: one rounding of the f32 value, the same as the host conversion.
                    assert_eq!(got.as_bytes(), x.to_dtype(to).unwrap().as_bytes(), "cast {from}->{to}");
                }
            }
        }
        let ids = random::ids([3, 333], 1 << 30, s);
        let wide = check(g, Op::Cast { to: DType::I64 }, std::slice::from_ref(&ids), 0.0, "u32->i64");
        let back = check(g, Op::Cast { to: DType::U32 }, &[wide], 0.0, "i64->u32");
        assert_eq!(back.as_bytes(), ids.as_bytes());
        // An i64 that does not fit u32 is an error at the next synchronize, not a silent wrap. A backend of its own:
        // the error flag is per backend and other tests share `g` concurrently.
        let g = &CudaBackend::new(0).expect("GPU opens");
        let bad = Tensor::from_vec(vec![1i64, -5, 7], [3]).unwrap();
        let r = run(g, &Op::Cast { to: DType::U32 }, &[bad], true);
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
        let ok = run(g, &Op::Cast { to: DType::I64 }, &[ids], true);
        assert!(ok.is_ok(), "the error flag must be cleared after it was reported: {ok:?}");
    }

    #[test]
    fn norms_and_softmax() {
        let Some(g) = gpu() else { return };
        let s = seed();
        let widths = [1usize, 7, 32, 100, 256, 257, 1000, 1024, 1025, 4096, 5000, 8192, 8200, 20000, 40000];
        for d in FLOATS {
            for (i, &n) in widths.iter().enumerate() {
                let rows = [3usize, 5, 64, 1][i % 4];
                let x = random::uniform(d, [rows, n], 3.0, s + i as u64);
                let w = random::uniform(d, [n], 1.0, s + 100);
                let b = random::uniform(d, [n], 1.0, s + 200);
                let cases = [
                    (Op::LayerNorm { eps: 1e-5 }, vec![x.clone(), w.clone(), b.clone()]),
                    (Op::RmsNorm { eps: 1e-6 }, vec![x.clone(), w.clone()]),
                    (Op::Softmax, vec![x.clone()]),
                ];
                for (op, ins) in cases {
                    let ctx = format!("{op:?} {d} [{rows}, {n}]");
                    let got = check(g, op.clone(), &ins, 1.0, &ctx);
                    // f32: against float64 with a bound that grows slowly with the row length (summation order).
                    let t = if d == DType::F32 { 1e-5 * (1.0 + (n as f64).log2() / 4.0) } else { tol(d) * 1.5 };
                    assert_close(&as_f64(&got), &ref_rows(&op, &ins), t, 1e-2, &format!("{ctx} vs f64"));
                }
            }
        }
        // A 3-D input: rows are everything but the last axis.
        let x = random::uniform(DType::F32, [2, 3, 50], 2.0, s);
        check(g, Op::Softmax, &[x], 1.0, "softmax 3-D");
    }

    #[test]
    fn reductions() {
        let Some(g) = gpu() else { return };
        let s = seed();
        let shapes: &[&[usize]] = &[&[1], &[7, 13, 5], &[3, 5000], &[100_003], &[2, 1, 3]];
        for d in FLOATS {
            for shape in shapes {
                for axis in 0..shape.len() {
                    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
                        for keep_dim in [false, true] {
                            let x = rnd(d, shape, s + axis as u64);
                            let r = shape[axis] as f64;
                            // Sums of r values: the error of the f32 accumulations grows with r.
                            let slack = if kind == ReduceKind::Max { 1.0 } else { 1.0 + r.sqrt() / 4.0 };
                            let ctx = format!("{kind:?} {d} {shape:?} axis {axis} keep {keep_dim}");
                            check(g, Op::Reduce { kind, axis, keep_dim }, &[x], slack, &ctx);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn layout_ops() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for d in [DType::F32, DType::F16, DType::BF16] {
            let x = rnd(d, &[2, 3, 4], s);
            for perm in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
                check(
                    g,
                    Op::Transpose { perm: perm.to_vec() },
                    std::slice::from_ref(&x),
                    0.0,
                    &format!("transpose {perm:?} {d}"),
                );
            }
            let x = rnd(d, &[5, 1, 7, 3], s + 1);
            check(g, Op::Transpose { perm: vec![2, 0, 3, 1] }, &[x], 0.0, "transpose 4-D");
            let x = rnd(d, &[2, 64, 12, 32], s + 2);
            check(g, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[x], 0.0, "transpose heads");
            // Last axis kept but not a whole number of 16-byte vectors: the unvectorised row path.
            let x = rnd(d, &[3, 5, 2, 7], s + 5);
            check(g, Op::Transpose { perm: vec![2, 0, 1, 3] }, &[x], 0.0, "transpose rows, odd width");
            let x = rnd(d, &[129, 67], s + 3);
            check(g, Op::Transpose { perm: vec![1, 0] }, &[x], 0.0, "transpose 2-D odd");
            let x = rnd(d, &[5, 7, 9], s + 4);
            for (axis, start, end) in [(0, 1, 4), (1, 0, 7), (1, 3, 4), (2, 2, 9), (2, 5, 5), (0, 0, 5)] {
                check(
                    g,
                    Op::Slice { axis, start, end },
                    std::slice::from_ref(&x),
                    0.0,
                    &format!("slice {axis} {start}..{end}"),
                );
            }
            let x = rnd(d, &[6, 64], s + 5);
            check(g, Op::Slice { axis: 1, start: 8, end: 40 }, &[x], 0.0, "slice aligned rows");
            for axis in 0..3 {
                let mut a = vec![3, 4, 5];
                let mut b = vec![3, 4, 5];
                let mut c = vec![3, 4, 5];
                a[axis] = 2;
                b[axis] = 7;
                c[axis] = 1;
                let ins = [rnd(d, &a, s + 6), rnd(d, &b, s + 7), rnd(d, &c, s + 8)];
                check(g, Op::Concat { axis }, &ins, 0.0, &format!("concat axis {axis} {d}"));
            }
            let x = rnd(d, &[6, 35], s + 9);
            check(g, Op::Reshape { shape: Shape::new([5, 42]) }, &[x], 0.0, "reshape");
        }
        let ids = random::ids([4, 6, 5], 1000, s).to_dtype(DType::I64).unwrap();
        check(g, Op::Transpose { perm: vec![2, 0, 1] }, std::slice::from_ref(&ids), 0.0, "transpose i64");
        check(g, Op::Concat { axis: 1 }, &[ids.clone(), ids], 0.0, "concat i64");
    }

    #[test]
    fn embedding_gather() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for d in FLOATS {
            for dim in [1usize, 33, 64, 1000] {
                let table = rnd(d, &[50, dim], s);
                let ids = random::ids([3, 7], 50, s + 1);
                check(g, Op::Embedding, &[table.clone(), ids.clone()], 0.0, &format!("embedding u32 {d} {dim}"));
                let ids64 = ids.to_dtype(DType::I64).unwrap();
                check(g, Op::Embedding, &[table, ids64], 0.0, &format!("embedding i64 {d} {dim}"));
            }
        }
        // Tables of ids (8-byte elements) gather too.
        let table = random::ids([40, 3], 1000, s + 2).to_dtype(DType::I64).unwrap();
        check(g, Op::Embedding, &[table, random::ids([5], 40, s + 3)], 0.0, "embedding of an i64 table");
        // Out-of-range ids: no out-of-bounds read (clamped), and an error at the next synchronize (own backend, as
        // the error flag is per backend).
        let g = &CudaBackend::new(0).expect("GPU opens");
        let table = rnd(DType::F32, &[10, 8], s);
        for ids in [Tensor::from_vec(vec![1u32, 10, 2], [3]).unwrap(), Tensor::from_vec(vec![-1i64, 3], [2]).unwrap()] {
            let r = run(g, &Op::Embedding, &[table.clone(), ids], true);
            assert!(matches!(r, Err(Error::InvalidArgument { .. })), "out-of-range id must be reported: {r:?}");
        }
        let ok = run(g, &Op::Embedding, &[table, Tensor::from_vec(vec![9u32, 0], [2]).unwrap()], true);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn attention() {
        let Some(g) = gpu() else { return };
        let s = seed();
        // (batch, hq, hkv, sq, skv, d, dv)
        let shapes = [
            (1, 1, 1, 1, 1, 1, 1),
            (2, 4, 2, 5, 7, 16, 16),
            (1, 8, 1, 33, 33, 64, 64),
            (2, 2, 2, 17, 40, 96, 80),
            (1, 2, 1, 3, 130, 128, 128),
            // f32 takes its register-tiled path for d = dv in {32, 64, 128}: tiles of 64 rows and 32/64 keys.
            (3, 4, 2, 129, 70, 32, 32),
            (2, 2, 2, 70, 1, 32, 32),
            (2, 3, 1, 65, 129, 64, 64),
        ];
        for d in FLOATS {
            for (i, &(b, hq, hkv, sq, skv, hd, dv)) in shapes.iter().enumerate() {
                let q = rnd(d, &[b, hq, sq, hd], s + i as u64);
                let k = rnd(d, &[b, hkv, skv, hd], s + 10 + i as u64);
                let v = rnd(d, &[b, hkv, skv, dv], s + 20 + i as u64);
                for causal in [false, true] {
                    let op = Op::Attention { scale: 1.0 / (hd as f32).sqrt(), causal };
                    let ctx = format!("attention {d} {:?} causal {causal}", shapes[i]);
                    check(g, op.clone(), &[q.clone(), k.clone(), v.clone()], 2.0, &ctx);
                    let mask = rnd(d, &[1, 1, sq, skv], s + 30);
                    check(g, op.clone(), &[q.clone(), k.clone(), v.clone(), mask], 2.0, &format!("{ctx} + mask"));
                    // A padding mask, the same for every query row (read once per key by the f32 tiled path).
                    let mask = rnd(d, &[b, 1, 1, skv], s + 31);
                    check(g, op, &[q.clone(), k.clone(), v.clone(), mask], 2.0, &format!("{ctx} + [b,1,1,skv] mask"));
                }
            }
        }
        // A fully masked row gives zeros, not NaN.
        let (q, k, v) = (
            rnd(DType::F32, &[1, 1, 2, 8], s),
            rnd(DType::F32, &[1, 1, 3, 8], s + 1),
            rnd(DType::F32, &[1, 1, 3, 8], s + 2),
        );
        let mask =
            Tensor::from_vec(vec![0.0f32, 0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY], [2, 3])
                .unwrap();
        let out = run(g, &Op::Attention { scale: 0.3, causal: false }, &[q, k, v, mask], true).unwrap();
        assert!(out.to_f32_vec()[8..].iter().all(|&x| x == 0.0), "fully masked row: {:?}", out.to_f32_vec());
        // The same on the f32 tiled path (d = 32): batch 0 masks every key, batch 1 none.
        let (q, k, v) = (
            rnd(DType::F32, &[2, 2, 5, 32], s + 3),
            rnd(DType::F32, &[2, 2, 7, 32], s + 4),
            rnd(DType::F32, &[2, 2, 7, 32], s + 5),
        );
        let mut m = vec![f32::NEG_INFINITY; 7];
        m.extend([0.0f32; 7]);
        let mask = Tensor::from_vec(m, [2, 1, 1, 7]).unwrap();
        let out = run(g, &Op::Attention { scale: 0.3, causal: false }, &[q, k, v, mask], true).unwrap().to_f32_vec();
        let half = out.len() / 2;
        assert!(out[..half].iter().all(|&x| x == 0.0), "fully masked batch: {:?}", &out[..8]);
        assert!(out[half..].iter().all(|&x| x.is_finite() && x != 0.0), "unmasked batch: {:?}", &out[half..half + 8]);
    }

    #[test]
    fn packed_attention() {
        let Some(g) = gpu() else { return };
        let s = seed();
        // (batch, seq, heads, kv heads, head dim): tensor-core / f32 tiled head sizes with packed strides, MiniLM's
        // shape, grouped heads, and head sizes only the generic path takes.
        let shapes = [
            (1, 1, 1, 1, 32),
            (2, 7, 3, 3, 32),
            (3, 129, 12, 12, 32),
            (2, 65, 4, 2, 64),
            (1, 130, 2, 1, 128),
            (2, 17, 2, 2, 40),
            (2, 9, 3, 1, 20),
        ];
        for d in FLOATS {
            for (i, &(b, sq, heads, kv, hd)) in shapes.iter().enumerate() {
                let qkv = rnd(d, &[b, sq, (heads + 2 * kv) * hd], s + i as u64);
                for causal in [false, true] {
                    let op = Op::PackedAttention { scale: 1.0 / (hd as f32).sqrt(), causal, heads, kv_heads: kv };
                    let ctx = format!("packed attention {d} {:?} causal {causal}", shapes[i]);
                    check(g, op.clone(), std::slice::from_ref(&qkv), 2.0, &ctx);
                    let mask = rnd(d, &[1, 1, sq, sq], s + 30);
                    check(g, op.clone(), &[qkv.clone(), mask], 2.0, &format!("{ctx} + mask"));
                    let mask = rnd(d, &[b, 1, 1, sq], s + 31);
                    check(g, op, &[qkv.clone(), mask], 2.0, &format!("{ctx} + [b,1,1,s] mask"));
                }
            }
        }
        // Padding as the embedder makes it: batch 0 sees 3 of 40 keys, batch 1 none (its rows give 0).
        for d in FLOATS {
            let qkv = rnd(d, &[2, 40, 3 * 2 * 32], s + 40);
            let mut m = vec![0.0f32; 3];
            m.extend([f32::NEG_INFINITY; 77]);
            let mask = Tensor::from_vec(m, [2, 1, 1, 40]).unwrap().to_dtype(d).unwrap();
            let op = Op::PackedAttention { scale: 0.2, causal: false, heads: 2, kv_heads: 2 };
            let out = check(g, op, &[qkv, mask], 2.0, &format!("packed attention padding {d}")).to_f32_vec();
            let half = out.len() / 2;
            assert!(out[..half].iter().all(|&x| x.is_finite() && x != 0.0), "{d}: visible keys: {:?}", &out[..8]);
            assert!(out[half..].iter().all(|&x| x == 0.0), "{d}: fully masked batch: {:?}", &out[half..half + 8]);
        }
    }

    #[test]
    fn matmul_and_fused_linear() {
        let Some(g) = gpu() else { return };
        let s = seed();
        let cases: &[(&[usize], &[usize], bool, bool)] = &[
            (&[1, 1], &[1, 1], false, false),
            (&[17, 33], &[33, 9], false, false),
            (&[33, 17], &[33, 9], true, false),
            (&[17, 33], &[9, 33], false, true),
            (&[33, 17], &[9, 33], true, true),
            (&[3, 17, 33], &[33, 9], false, false),
            (&[2, 1, 5, 6], &[3, 6, 4], false, false),
            (&[4, 2, 5, 6], &[2, 4, 6], false, true),
            (&[130, 257], &[257, 66], false, false),
        ];
        for d in FLOATS {
            for (i, (sa, sb, ta, tb)) in cases.iter().enumerate() {
                let a = rnd(d, sa, s + i as u64);
                let b = rnd(d, sb, s + 40 + i as u64);
                let op = Op::MatMul { transpose_a: *ta, transpose_b: *tb };
                // The CPU and cuBLAS sum k products in different orders.
                check(g, op, &[a, b], 5.0, &format!("matmul {d} {sa:?} {sb:?} ta {ta} tb {tb}"));
            }
            for (m, k, n) in [(1, 1, 1), (5, 16, 24), (37, 70, 130)] {
                let x = rnd(d, &[2, m, k], s + 3);
                let w = rnd(d, &[n, k], s + 4);
                let b = rnd(d, &[n], s + 5);
                let ins = [x, w, b];
                check(g, Op::FusedLinearAdd { transpose_b: true }, &ins, 5.0, &format!("linear {d} {m} {k} {n}"));
                for gelu in [GeluKind::Erf, GeluKind::Tanh] {
                    let op = Op::FusedLinearAddGelu { transpose_b: true, gelu };
                    check(g, op, &ins, 5.0, &format!("linear+gelu {gelu:?} {d} {m} {k} {n}"));
                }
                let wt = rnd(d, &[k, n], s + 6);
                check(
                    g,
                    Op::FusedLinearAdd { transpose_b: false },
                    &[ins[0].clone(), wt, ins[2].clone()],
                    5.0,
                    "linear W[k,n]",
                );
            }
        }
    }

    /// FusedLinearAddResidual (cuBLASLt's bias epilogue with the residual as its C, beta = 1; k = 0 takes the
    /// fallback: bias, then an in-place add of the residual) against float64, output poisoned: every element within
    /// `tol(d)` of (|want| + the magnitudes summed), which is a few output ulps. W is scaled by 1/sqrt(k) and the
    /// residual by 4, so a missing, doubled or misplaced residual (mean |r| = 2) is far outside the tolerance.
    #[test]
    fn fused_linear_residual() {
        let Some(g) = gpu() else { return };
        let s = seed();
        // (leading dims of x, m, k, n)
        let shapes: &[(&[usize], usize, usize, usize)] = &[
            (&[], 1, 1, 1),
            (&[], 1, 7, 3),
            (&[2], 5, 33, 17),
            (&[], 37, 70, 130),
            (&[2, 3], 4, 16, 24),
            (&[], 130, 257, 66),
            (&[], 3, 0, 5),
            (&[], 4096, 0, 1536),
            (&[], 4096, 1536, 384),
        ];
        for d in FLOATS {
            for (i, &(lead, m, k, n)) in shapes.iter().enumerate() {
                for tb in [true, false] {
                    let seed = s + 10 * i as u64 + tb as u64;
                    let ctx = format!("linear+residual {d} {lead:?} {m} {k} {n} tb {tb} seed {s}");
                    let (mut xs, mut os) = (lead.to_vec(), lead.to_vec());
                    xs.extend([m, k]);
                    os.extend([m, n]);
                    let x = rnd(d, &xs, seed);
                    let wshape = if tb { vec![n, k] } else { vec![k, n] };
                    let w = random::uniform(d, Shape::new(wshape), 1.0 / (k.max(1) as f32).sqrt(), seed + 1);
                    let b = rnd(d, &[n], seed + 2);
                    let r = random::uniform(d, Shape::new(os), 4.0, seed + 3);
                    let ins = [x, w, b, r];
                    let op = Op::FusedLinearAddResidual { transpose_b: tb };
                    let got = as_f64(&run(g, &op, &ins, true).unwrap_or_else(|e| panic!("{ctx}: GPU failed: {e}")));
                    let (xv, wv, bv, rv) = (as_f64(&ins[0]), as_f64(&ins[1]), as_f64(&ins[2]), as_f64(&ins[3]));
                    let rows_total = got.len() / n;
                    let rows: Vec<usize> = if rows_total * n * k > 50_000_000 {
                        (0..61).map(|j| (j * 7919 + s as usize) % rows_total).chain([0, rows_total - 1]).collect()
                    } else {
                        (0..rows_total).collect()
                    };
                    for row in rows {
                        for j in 0..n {
                            let res = rv[row * n + j];
                            let (mut acc, mut mag) = (bv[j] + res, bv[j].abs() + res.abs());
                            for q in 0..k {
                                let wq = if tb { wv[j * k + q] } else { wv[q * n + j] };
                                let p = xv[row * k + q] * wq;
                                acc += p;
                                mag += p.abs();
                            }
                            let got = got[row * n + j];
                            let err = (got - acc).abs();
                            assert!(
                                err <= tol(d) * (acc.abs() + mag),
                                "{ctx}: [{row}, {j}] is {got}, expected {acc} (residual {res}, error {err:.3e})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// x * Phi(x) in float64, accurate relative to its value also far in the negative tail (continued fraction
    /// for erfc there, where 1 + erf(z) would cancel).
    fn gelu_erf64(x: f64) -> f64 {
        let z = -x / std::f64::consts::SQRT_2;
        let erfc = if z < 2.5 {
            1.0 - erf64(z)
        } else {
            // erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...))))
            let mut k = z;
            for n in (1..=80).rev() {
                k = z + (n as f64 / 2.0) / k;
            }
            (-z * z).exp() / std::f64::consts::PI.sqrt() / k
        };
        0.5 * x * erfc
    }

    /// A backend of its own, so that forcing the erf-GELU path does not change what other tests run.
    fn own_backend() -> Option<CudaBackend> {
        gpu()?;
        Some(CudaBackend::new(0).expect("a second backend on the GPU"))
    }

    /// FusedLinearAddGelu (erf, W stored [n, k]) checked against float64 (sampled rows for large shapes): every
    /// element within `tol(d)` relative plus an absolute part. For the fused kernel (`fused`) that part covers the
    /// f32 accumulation only (the result is rounded once); the cuBLASLt path rounds the product to the output dtype
    /// before the bias is added, which allows `tol(d)` times the sum of the magnitudes.
    fn check_linear_gelu_erf(
        g: &CudaBackend,
        d: DType,
        (m, k, n): (usize, usize, usize),
        fused: bool,
        s: u64,
        ctx: &str,
    ) {
        // W scaled so that x·W^T has a standard deviation near 2: the GELU tail down to about -10 is exercised.
        let x = rnd(d, &[m, k], s);
        let w = random::uniform(d, Shape::new(vec![n, k]), 6.0 / (k as f32).sqrt(), s + 1);
        let b = rnd(d, &[n], s + 2);
        let op = Op::FusedLinearAddGelu { transpose_b: true, gelu: GeluKind::Erf };
        let ins = [x, w, b];
        let got = as_f64(&run(g, &op, &ins, true).unwrap_or_else(|e| panic!("{ctx}: GPU failed: {e}")));
        let (xv, wv, bv) = (as_f64(&ins[0]), as_f64(&ins[1]), as_f64(&ins[2]));
        let rows: Vec<usize> = if m * n * k > 50_000_000 {
            (0..61).map(|i| (i * 7919 + s as usize) % m).chain([0, m - 1]).collect()
        } else {
            (0..m).collect()
        };
        let floor = if d == DType::F16 { 1e-7 } else { 1e-30 };
        let abs = if fused { 1e-5 } else { tol(d) };
        for r in rows {
            for j in 0..n {
                let (mut acc, mut mag) = (bv[j], bv[j].abs());
                for q in 0..k {
                    let p = xv[r * k + q] * wv[j * k + q];
                    acc += p;
                    mag += p.abs();
                }
                let want = gelu_erf64(acc);
                let g = got[r * n + j];
                let err = (g - want).abs();
                assert!(
                    err <= tol(d) * want.abs() + abs * mag + floor,
                    "{ctx}: [{r}, {j}] is {g}, expected {want} (pre-activation {acc}, error {err:.3e})"
                );
            }
        }
    }

    /// Each way of running FusedLinearAddGelu in the erf form, forced: our fused kernel (wgmma on compute
    /// capability 9.0, and its mma.sync form), cuBLASLt + bias_gelu_erf, and the automatic choice, in f16 and bf16,
    /// on shapes with m = 1, odd m and n, n not a multiple of the tile, k = 8 .. 1000 (k = 7: not supported by the
    /// fused kernel, falls back), and the benchmark shape.
    #[test]
    fn fused_linear_gelu_erf_paths() {
        let Some(g) = own_backend() else { return };
        let s = seed();
        let shapes = [
            (1, 8, 1),
            (1, 24, 37),
            (37, 24, 45),
            (5, 7, 9),
            (129, 8, 130),
            // n a multiple of 8 (the TMA form's output rows; other n take the mma.sync form).
            (1, 8, 8),
            (37, 24, 48),
            (129, 8, 136),
            (333, 384, 1528),
            (200, 384, 136),
            (3, 1000, 257),
            (333, 384, 1531),
            // More tiles than SMs with ragged edges: the persistent TMA form's blocks take several tiles each.
            (2000, 72, 2000),
            (4096, 384, 1536),
        ];
        for path in [ErfGeluPath::Fused, ErfGeluPath::FusedMmaSync, ErfGeluPath::Cublas, ErfGeluPath::Auto] {
            g.set_erf_gelu_path(path);
            assert_eq!(g.erf_gelu_path(), path);
            for d in [DType::F16, DType::BF16] {
                for (i, &shape) in shapes.iter().enumerate() {
                    let ctx = format!("linear+gelu erf {path:?} {d} {shape:?}");
                    // The fused kernel surely runs only when forced and supported (k a multiple of 8).
                    let fused = matches!(path, ErfGeluPath::Fused | ErfGeluPath::FusedMmaSync) && shape.1 % 8 == 0;
                    check_linear_gelu_erf(&g, d, shape, fused, s + 10 * i as u64, &ctx);
                }
            }
        }
        // Leading batch dimensions of x fold into m.
        g.set_erf_gelu_path(ErfGeluPath::Fused);
        let d = DType::BF16;
        let ins = [rnd(d, &[2, 3, 40], s), rnd(d, &[24, 40], s + 1), rnd(d, &[24], s + 2)];
        check(&g, Op::FusedLinearAddGelu { transpose_b: true, gelu: GeluKind::Erf }, &ins, 5.0, "fused batched");
    }

    /// Non-finite pre-activations through both forms of the fused erf-GELU kernel give what the CPU gives: +inf
    /// stays +inf, -inf gives 0 (the limit of x·Φ(x)), NaN stays NaN, and the other columns are unaffected.
    #[test]
    fn fused_linear_gelu_erf_non_finite() {
        let Some(g) = own_backend() else { return };
        let s = seed();
        let (m, k, n) = (3, 16, 24);
        let op = Op::FusedLinearAddGelu { transpose_b: true, gelu: GeluKind::Erf };
        for path in [ErfGeluPath::Fused, ErfGeluPath::FusedMmaSync] {
            g.set_erf_gelu_path(path);
            for d in [DType::F16, DType::BF16] {
                let ctx = format!("non-finite linear+gelu erf {path:?} {d}");
                let mut b = rnd(DType::F32, &[n], s + 2).to_f32_vec();
                b[..3].copy_from_slice(&[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
                let b = Tensor::from_vec(b, [n]).and_then(|t| t.to_dtype(d)).expect("bias");
                let ins = [rnd(d, &[m, k], s), rnd(d, &[n, k], s + 1), b];
                let got = as_f64(&run(&g, &op, &ins, true).unwrap_or_else(|e| panic!("{ctx}: GPU failed: {e}")));
                let want = as_f64(&run(&CpuBackend::new(), &op, &ins, false).expect("CPU"));
                for r in 0..m {
                    let (gr, wr) = (&got[r * n..(r + 1) * n], &want[r * n..(r + 1) * n]);
                    for (side, v) in [("GPU", gr), ("CPU", wr)] {
                        assert!(v[0] == f64::INFINITY && v[1] == 0.0 && v[2].is_nan(), "{ctx}: {side} row {r} {v:?}");
                    }
                    assert_close(&gr[3..], &wr[3..], tol(d) * 5.0, 1.0, &ctx);
                }
            }
        }
    }

    /// One small launch of every kernel that uses shared memory (each norm plan, block-per-row reductions, each
    /// attention path): what `compute-sanitizer --tool racecheck` runs in scripts/gpu-check.sh, where the full
    /// tests would take too long.
    #[test]
    fn racecheck_set() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for (d, n) in
            [(DType::F32, 100), (DType::F32, 1000), (DType::BF16, 4096), (DType::F32, 20000), (DType::F16, 40000)]
        {
            let x = random::uniform(d, [2, n], 3.0, s);
            let w = random::uniform(d, [n], 1.0, s + 1);
            let b = random::uniform(d, [n], 1.0, s + 2);
            check(g, Op::LayerNorm { eps: 1e-5 }, &[x.clone(), w.clone(), b], 1.0, &format!("racecheck layernorm {n}"));
            check(g, Op::RmsNorm { eps: 1e-6 }, &[x.clone(), w], 1.0, &format!("racecheck rmsnorm {n}"));
            check(g, Op::Softmax, std::slice::from_ref(&x), 1.0, &format!("racecheck softmax {n}"));
        }
        let x = rnd(DType::F32, &[3, 5000], s);
        for kind in [ReduceKind::Sum, ReduceKind::Max] {
            check(g, Op::Reduce { kind, axis: 1, keep_dim: false }, std::slice::from_ref(&x), 20.0, "racecheck reduce");
        }
        // The fused GEMM + GELU kernel, both forms (own backend: the forced path stays out of other tests).
        if let Some(own) = own_backend() {
            for path in [ErfGeluPath::Fused, ErfGeluPath::FusedMmaSync] {
                own.set_erf_gelu_path(path);
                let ctx = format!("racecheck fused linear {path:?}");
                check_linear_gelu_erf(&own, DType::BF16, (37, 72, 45), true, s, &ctx);
            }
        }
        // (dtype, head dim): tensor-core paths (f16/bf16 with d 64 or 128) and the generic path.
        for (d, hd) in [
            (DType::BF16, 64),
            (DType::F16, 128),
            (DType::F32, 16),
            (DType::BF16, 40),
            (DType::F32, 32),
            (DType::F32, 64),
        ] {
            let q = rnd(d, &[1, 2, 130, hd], s + 3);
            let k = rnd(d, &[1, 1, 70, hd], s + 4);
            let v = rnd(d, &[1, 1, 70, hd], s + 5);
            let op = Op::Attention { scale: 1.0 / (hd as f32).sqrt(), causal: true };
            check(g, op, &[q, k, v], 2.0, &format!("racecheck attention {d} d={hd}"));
        }
        // Packed operands with a padding mask staged through shared memory.
        for (d, hd) in [(DType::F16, 32), (DType::BF16, 64), (DType::F32, 32)] {
            let qkv = rnd(d, &[2, 130, 3 * 2 * hd], s + 6);
            let mask = rnd(d, &[2, 1, 1, 130], s + 7);
            let op = Op::PackedAttention { scale: 1.0 / (hd as f32).sqrt(), causal: false, heads: 2, kv_heads: 2 };
            check(g, op, &[qkv, mask], 2.0, &format!("racecheck packed attention {d} d={hd}"));
        }
    }

    #[test]
    fn transfers_round_trip_and_pool_reuse() {
        let Some(g) = gpu() else { return };
        let s = seed();
        for n in [0usize, 1, 3, 1 << 20, (8 << 20) / 4 + 3, (20 << 20) / 4 + 5] {
            let t = random::uniform(DType::F32, [n], 1.0, s);
            let buf = g.upload(&t).unwrap();
            let back = g.download(&buf, &TensorDesc::new(DType::F32, [n])).unwrap();
            assert_eq!(back.as_bytes(), t.as_bytes(), "round trip of {n} floats");
        }
        // Straight from a memory-mapped safetensors file.
        let dir = std::env::temp_dir().join(format!("mlx-native-gpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let w = random::uniform(DType::BF16, [333, 77], 1.0, s);
        mlx_native::tensor::save_safetensors(&path, [("w", &w)]).unwrap();
        let st = mlx_native::tensor::load_safetensors(&path).unwrap();
        let mapped = st.get("w").unwrap().clone();
        assert!(mapped.is_mapped(), "the loader maps the file");
        let buf = g.upload(&mapped).unwrap();
        let back = g.download(&buf, &TensorDesc::new(DType::BF16, [333, 77])).unwrap();
        assert_eq!(back.as_bytes(), w.as_bytes());
        let _ = std::fs::remove_dir_all(&dir);
        // Pool: a freed block is reused (a cache hit), statistics come through the backend.
        let d = TensorDesc::new(DType::F32, [12345]);
        drop(g.alloc(&d).unwrap());
        let before = g.pool_statistics().expect("pooled");
        drop(g.alloc(&d).unwrap());
        let after = g.pool_statistics().expect("pooled");
        assert!(after.hits > before.hits, "{before:?} -> {after:?}");
    }
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
#[test]
fn gpu_ops() {
    mlx_native::util::skipped("SKIPPED: no GPU (built without the `cuda` feature)");
}
