//! Every builder error path: an `Err` (never a panic) whose message names the offending shapes (or dtypes, or
//! argument), and a builder that stays usable afterwards.

use mlx_native::graph::GraphBuilder;
use mlx_native::{DType, GeluKind, NodeId, Op, ReduceKind, Result, Shape, Tensor};

fn check(what: &str, r: Result<NodeId>, needles: &[&str]) {
    let e = r.expect_err(what).to_string();
    for n in needles {
        assert!(e.contains(n), "{what}: message {e:?} lacks {n:?}");
    }
}

#[test]
fn shape_errors_name_both_shapes() {
    let mut g = GraphBuilder::new();
    let f = |g: &mut GraphBuilder, name: &str, s: &[usize]| g.input(name, DType::F32, s.to_vec());
    let a23 = f(&mut g, "a23", &[2, 3]);
    let a45 = f(&mut g, "a45", &[4, 5]);
    let v3 = f(&mut g, "v3", &[3]);
    let b234 = f(&mut g, "b234", &[2, 3, 4]);
    let b534 = f(&mut g, "b534", &[5, 4, 3]);
    let q = f(&mut g, "q", &[1, 4, 5, 8]);
    let k = f(&mut g, "k", &[1, 2, 6, 8]);
    let v = f(&mut g, "v", &[1, 2, 6, 8]);
    let k7 = f(&mut g, "k7", &[1, 2, 6, 7]);
    let k3 = f(&mut g, "k3", &[1, 3, 6, 8]);
    let kb = f(&mut g, "kb", &[2, 2, 6, 8]);
    let v5 = f(&mut g, "v5", &[1, 2, 5, 8]);
    let m_bad = f(&mut g, "m_bad", &[1, 4, 5, 7]);
    let m_rank5 = f(&mut g, "m5", &[1, 1, 4, 5, 6]);

    check("matmul inner", g.matmul(a23, a45, false, false), &["[2, 3]", "[4, 5]", "inner"]);
    check("matmul rank", g.matmul(v3, a23, false, false), &["[3]", "[2, 3]"]);
    check("matmul batch", g.matmul(b234, b534, false, false), &["[2, 3, 4]", "[5, 4, 3]", "batch"]);
    check("add broadcast", g.add(a23, a45), &["[2, 3]", "[4, 5]"]);
    check("mul broadcast", g.mul(b234, a23), &["[2, 3, 4]", "[2, 3]"]);
    check("layer_norm weight", g.layer_norm(a45, v3, v3, 1e-5), &["[4, 5]", "[3]"]);
    check("rms_norm weight", g.rms_norm(a45, v3, 1e-5), &["[4, 5]", "[3]"]);
    check("attention rank", g.attention(a23, k, v, None, None, false), &["[2, 3]"]);
    check("attention head_dim", g.attention(q, k7, k7, None, None, false), &["[1, 4, 5, 8]", "[1, 2, 6, 7]"]);
    check("attention heads", g.attention(q, k3, k3, None, None, false), &["[1, 4, 5, 8]", "[1, 3, 6, 8]"]);
    check("attention batch", g.attention(q, kb, kb, None, None, false), &["[1, 4, 5, 8]", "[2, 2, 6, 8]"]);
    check("attention kv", g.attention(q, k, v5, None, None, false), &["[1, 2, 6, 8]", "[1, 2, 5, 8]"]);
    check("attention mask", g.attention(q, k, v, Some(m_bad), None, false), &["[1, 4, 5, 7]", "[1, 4, 5, 6]"]);
    check("attention mask rank", g.attention(q, k, v, Some(m_rank5), None, false), &["[1, 1, 4, 5, 6]"]);
    check("reshape", g.reshape(a23, [7]), &["[2, 3]", "[7]"]);
    check("concat", g.concat(&[a23, a45], 0), &["[2, 3]", "[4, 5]"]);
    let table = f(&mut g, "table", &[2, 3, 4]);
    let ids = g.input("ids", DType::U32, [5]);
    check("embedding table", g.embedding(table, ids), &["[2, 3, 4]", "[5]"]);
    let w3 = f(&mut g, "w3", &[2, 3, 4]);
    check("linear weight rank", g.linear(a23, w3, v3, false), &["[2, 3]", "[2, 3, 4]"]);
    let w34 = f(&mut g, "w34", &[3, 4]);
    check("linear bias", g.linear(a23, w34, v3, false), &["[2, 4]", "[3]"]);
    check("linear inner", g.linear(a45, w34, v3, false), &["[4, 5]", "[3, 4]"]);
}

#[test]
fn dtype_and_argument_errors_say_what_was_wrong() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let h = g.input("h", DType::F16, [2, 3]);
    let ids = g.input("ids", DType::I64, [4]);
    let fids = g.input("fids", DType::F32, [4]);
    let table = g.input("table", DType::F32, [10, 3]);
    check("add dtypes", g.add(x, h), &["f32", "f16"]);
    check("matmul dtypes", g.matmul(x, h, false, true), &["f32", "f16"]);
    check("gelu on ids", g.gelu(ids, GeluKind::Erf), &["i64", "float"]);
    check("softmax on ids", g.softmax(ids), &["i64"]);
    check("embedding float ids", g.embedding(table, fids), &["u32 or i64", "f32"]);
    check("cast int to float", g.cast(ids, DType::F32), &["i64", "f32"]);
    check("cast float to int", g.cast(x, DType::U32), &["f32", "u32"]);
    check("transpose perm", g.transpose(x, &[0, 0]), &["[0, 0]", "permutation"]);
    check("transpose rank", g.transpose(x, &[0, 1, 2]), &["[0, 1, 2]"]);
    check("slice range", g.slice(x, 1, 2, 5), &["2..5", "size 3"]);
    check("slice reversed", g.slice(x, 1, 2, 1), &["2..1"]);
    check("slice axis", g.slice(x, 2, 0, 1), &["axis 2", "rank 2"]);
    check("concat axis", g.concat(&[x, x], 2), &["axis 2"]);
    check("concat empty", g.concat(&[], 0), &["at least one"]);
    check("concat dtypes", g.concat(&[x, h], 0), &["f32", "f16"]);
    check("reduce axis", g.reduce(x, ReduceKind::Sum, 5, false), &["axis 5"]);
    check("layer_norm eps", g.layer_norm(x, x, x, f32::NAN), &["eps", "NaN"]);
    let w = g.input("w", DType::F32, [3]);
    check("rms_norm eps", g.rms_norm(x, w, -1.0), &["eps", "-1"]);
    let q = g.input("q", DType::F32, [1, 1, 2, 3]);
    check("attention scale", g.attention(q, q, q, None, Some(f32::INFINITY), false), &["scale", "inf"]);
    check("unknown node", g.silu(NodeId(999)), &["999"]);
    check("wrong arity", g.op(Op::Softmax, &[x, x]), &["Softmax", "2"]);
    check("leaf via op", g.op(Op::Input { name: "y".into() }, &[]), &["Input"]);
    check("reshape to more", g.reshape(x, Shape::new([2, 4])), &["[2, 3]", "[2, 4]"]);
    // The builder still works after all those errors.
    let y = g.add(x, x).unwrap();
    assert!(g.output(NodeId(12345)).is_err());
    g.output(y).unwrap();
    g.build().unwrap();
}

#[test]
fn build_rejects_bad_graphs() {
    let mut g = GraphBuilder::new();
    g.input("x", DType::F32, [1]);
    assert!(g.build().unwrap_err().to_string().contains("no outputs"));
    let mut g = GraphBuilder::new();
    let a = g.input("x", DType::F32, [1]);
    g.input("x", DType::F32, [1]);
    g.output(a).unwrap();
    assert!(g.build().unwrap_err().to_string().contains("'x'"));
    let mut g = GraphBuilder::new();
    let c = g.constant(Tensor::from_vec(vec![1.0f32], [1]).unwrap());
    g.output(c).unwrap();
    assert_eq!(g.build().unwrap().len(), 1);
}
