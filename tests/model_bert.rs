//! The BERT graph against transformers on the tiny fixture: every layer's output, fusion, padding.

mod model_common;

use mlx_native::exec::{ExecOptions, PlacementPolicy};
use mlx_native::graph::{optimize, BinaryOp, Op};
use mlx_native::models::{attention_bias, BertModel};
use mlx_native::{DType, Executor, Tensor};
use model_common::*;

fn tiny() -> (BertModel, serde_json::Value) {
    let model = BertModel::load(tiny_dir(), DType::F32).expect("tiny BERT loads");
    (model, json(&tiny_dir().join("reference.json")))
}

fn ids_of(reference: &serde_json::Value) -> Vec<u32> {
    reference["input_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Every hidden state of the tiny model on `exec` against transformers.
fn check_layers(exec: &Executor, label: &str) {
    let (model, reference) = tiny();
    let ids = ids_of(&reference);
    let seq = ids.len();
    let graph = model.graph(1, seq, true).unwrap();
    let inputs = [Tensor::from_vec(ids, [1, seq]).unwrap(), attention_bias(&[seq], seq, DType::F32).unwrap()];
    let outs = exec.run(&graph, &inputs).unwrap();
    let layers = reference["hidden_states_all_layers"].as_array().unwrap();
    assert_eq!(outs.len(), layers.len(), "embedding output + one output per layer");
    for (i, (out, want)) in outs.iter().zip(layers).enumerate() {
        let want: Vec<f32> = rows(want).concat();
        let d = max_abs_diff(&out.to_f32_vec(), &want);
        println!("{label} hidden state {i}: max abs diff {d:.2e}");
        assert!(d <= 1e-4, "{label}: hidden state {i} (0 = embeddings) differs from transformers by {d}");
    }
    let last: Vec<f32> = rows(&reference["last_hidden_state"]).concat();
    assert!(max_abs_diff(&outs.last().unwrap().to_f32_vec(), &last) <= 1e-4);
}

#[test]
fn every_layer_matches_transformers() {
    check_layers(&Executor::cpu(), "cpu");
}

#[test]
fn every_layer_matches_transformers_on_gpu() {
    for policy in [PlacementPolicy::ForceGpu, PlacementPolicy::Auto] {
        match Executor::new(ExecOptions { policy, ..Default::default() }) {
            Ok(exec) if exec.gpu().is_some() => check_layers(&exec, &format!("{policy:?}")),
            Ok(exec) => {
                mlx_native::util::skipped(&format!("SKIPPED: no GPU ({})", exec.gpu_unavailable_reason().unwrap_or("")))
            }
            Err(e) => mlx_native::util::skipped(&format!("SKIPPED: no GPU ({e})")),
        }
    }
}

#[test]
fn projections_fuse_into_linear_kernels() {
    let (model, _) = tiny();
    let g = optimize(&model.graph(2, 8, false).unwrap());
    let count = |f: fn(&Op) -> bool| g.nodes().iter().filter(|n| f(&n.op)).count();
    let layers = model.config().num_hidden_layers;
    // Per layer: the stacked QKV projection plain; the attention output and FFN2 projections take their residual Add.
    assert_eq!(count(|o| matches!(o, Op::FusedLinearAdd { transpose_b: true })), layers, "{}", g.describe());
    assert_eq!(count(|o| matches!(o, Op::FusedLinearAddResidual { transpose_b: true })), 2 * layers);
    assert_eq!(count(|o| matches!(o, Op::Binary(BinaryOp::Add))), 2, "embeddings only: {}", g.describe());
    assert_eq!(count(|o| matches!(o, Op::PackedAttention { .. })), layers);
    assert_eq!(count(|o| matches!(o, Op::Transpose { .. } | Op::Attention { .. })), 0, "{}", g.describe());
    assert_eq!(count(|o| matches!(o, Op::FusedLinearAddGelu { transpose_b: true, .. })), layers);
    assert_eq!(count(|o| matches!(o, Op::MatMul { .. })), 0, "{}", g.describe());
}

#[test]
fn padding_does_not_change_the_real_tokens() {
    let (model, reference) = tiny();
    let ids = ids_of(&reference);
    // Row 0: the first 5 ids then 3 pads; row 1: all 8. Row 0's first 5 outputs must equal a run on 5 ids alone.
    let seq = ids.len();
    let mut batch = ids[..5].to_vec();
    batch.extend([0u32; 3]);
    batch.extend(&ids);
    let graph = model.graph(2, seq, false).unwrap();
    let out = Executor::cpu()
        .run(&graph, &[Tensor::from_vec(batch, [2, seq]).unwrap(), attention_bias(&[5, seq], seq, DType::F32).unwrap()])
        .unwrap()
        .remove(0)
        .to_f32_vec();
    let alone = Executor::cpu()
        .run(
            &model.graph(1, 5, false).unwrap(),
            &[Tensor::from_vec(ids[..5].to_vec(), [1, 5]).unwrap(), attention_bias(&[5], 5, DType::F32).unwrap()],
        )
        .unwrap()
        .remove(0)
        .to_f32_vec();
    let h = model.config().hidden_size;
    let d = max_abs_diff(&out[..5 * h], &alone);
    assert!(d <= 1e-5, "padded row differs from the unpadded run by {d}");
    let full: Vec<f32> = rows(&reference["last_hidden_state"]).concat();
    assert!(max_abs_diff(&out[seq * h..], &full) <= 1e-4, "the unpadded row of the batch");
}

/// f16 and bf16 on `exec`: every token's last hidden state within cosine 0.999 of transformers' f32.
fn check_half(exec: &Executor, label: &str) {
    let (_, reference) = tiny();
    let ids = ids_of(&reference);
    let seq = ids.len();
    let want: Vec<f32> = rows(&reference["last_hidden_state"]).concat();
    for dtype in [DType::F16, DType::BF16] {
        let model = BertModel::load(tiny_dir(), dtype).unwrap();
        let out = exec
            .run(
                &model.graph(1, seq, false).unwrap(),
                &[Tensor::from_vec(ids.clone(), [1, seq]).unwrap(), attention_bias(&[seq], seq, dtype).unwrap()],
            )
            .unwrap()
            .remove(0);
        assert_eq!(out.dtype(), dtype);
        let got = out.to_f32_vec();
        for t in 0..seq {
            let c = cosine(&got[t * 128..(t + 1) * 128], &want[t * 128..(t + 1) * 128]);
            assert!(c >= 0.999, "{label} {dtype} token {t}: cosine {c}");
        }
    }
}

#[test]
fn half_precision_stays_close() {
    check_half(&Executor::cpu(), "cpu");
    match Executor::new(ExecOptions { policy: PlacementPolicy::ForceGpu, ..Default::default() }) {
        Ok(exec) => check_half(&exec, "gpu"),
        Err(e) => mlx_native::util::skipped(&format!("SKIPPED: no GPU for f16/bf16 ({e})")),
    }
}
