//! all-MiniLM-L6-v2 against sentence-transformers (tests/fixtures/minilm_reference.json, made by
//! tools/make_minilm_reference.py). Needs the model: scripts/fetch-minilm.sh, or MLX_NATIVE_MINILM_DIR; prints
//! SKIPPED otherwise. GPU tests print SKIPPED without a GPU. A folder made by tools/make_random_minilm.py (random
//! weights, marked by a RANDOM_WEIGHTS file) is only compared GPU against CPU.

mod model_common;

use std::path::Path;

use mlx_native::exec::PlacementPolicy;
use mlx_native::DType;
use model_common::*;

struct Reference {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let r = json(&root().join("tests/fixtures/minilm_reference.json"));
    Reference {
        texts: r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        ids: r["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
            .collect(),
        embeddings: rows(&r["embeddings"]),
    }
}

/// The real model's folder, or `None` (SKIPPED printed) when absent or random.
fn real_minilm() -> Option<std::path::PathBuf> {
    let dir = minilm_dir()?;
    if is_random(&dir) {
        mlx_native::util::skipped(&format!(
            "SKIPPED: {} holds random weights; the reference needs the real model",
            dir.display()
        ));
        return None;
    }
    Some(dir)
}

fn is_random(dir: &Path) -> bool {
    dir.join("RANDOM_WEIGHTS").exists()
}

fn texts(r: &Reference) -> Vec<&str> {
    r.texts.iter().map(|s| s.as_str()).collect()
}

/// Embeds the reference texts and calls `check` on each (index, ours, reference); false when skipped.
fn check_against_reference(
    policy: PlacementPolicy,
    dtype: DType,
    batch_size: usize,
    check: impl Fn(usize, &[f32], &[f32]),
) -> bool {
    let Some(dir) = real_minilm() else { return false };
    let Some(e) = load(&dir, policy, dtype, batch_size) else { return false };
    let r = reference();
    let got = e.embed(&texts(&r)).unwrap();
    assert_eq!(got.len(), r.embeddings.len());
    for (i, (g, w)) in got.iter().zip(&r.embeddings).enumerate() {
        check(i, g, w);
    }
    true
}

#[test]
fn minilm_tokenizes_like_sentence_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let Some(e) = load(&dir, PlacementPolicy::ForceCpu, DType::F32, 8) else { return };
    let r = reference();
    assert_eq!(e.max_seq_length(), 256);
    let ids = e.tokenize(&texts(&r)).unwrap();
    for (i, (a, b)) in ids.iter().zip(&r.ids).enumerate() {
        assert_eq!(a, b, "text {i} {:?}", r.texts[i]);
    }
    assert!(ids.iter().any(|s| s.len() == 256), "the long text is truncated at 256, not 128");
}

#[test]
fn minilm_cpu_f32_matches_sentence_transformers() {
    let worst = std::sync::Mutex::new(0f32);
    let ran = check_against_reference(PlacementPolicy::ForceCpu, DType::F32, 8, |i, g, w| {
        let d = max_abs_diff(g, w);
        let mut m = worst.lock().unwrap();
        *m = m.max(d);
        assert!(d <= 1e-5, "text {i}: max abs diff {d}");
    });
    if ran {
        println!("CPU f32: max abs diff {:.3e}", *worst.lock().unwrap());
    }
}

#[test]
fn minilm_cpu_half_cosine() {
    for dtype in [DType::F16, DType::BF16] {
        check_against_reference(PlacementPolicy::ForceCpu, dtype, 8, |i, g, w| {
            let c = cosine(g, w);
            assert!(c >= 0.999, "{dtype} text {i}: cosine {c}");
        });
    }
}

#[test]
fn minilm_batch_invariance() {
    let Some(dir) = minilm_dir() else { return };
    let r = reference();
    let t = texts(&r);
    let Some(one) = load(&dir, PlacementPolicy::ForceCpu, DType::F32, 1) else { return };
    let alone = one.embed(&t).unwrap();
    for bs in [3, 32] {
        let Some(e) = load(&dir, PlacementPolicy::ForceCpu, DType::F32, bs) else { return };
        // Each text in two different batches: with the others in order, and reversed.
        let rev: Vec<&str> = t.iter().rev().cloned().collect();
        for (label, got) in
            [("in order", e.embed(&t).unwrap()), ("reversed", e.embed(&rev).unwrap().into_iter().rev().collect())]
        {
            for (i, g) in got.iter().enumerate() {
                let d = max_abs_diff(g, &alone[i]);
                assert!(d <= 1e-5, "batch size {bs} {label}, text {i}: {d}");
            }
        }
    }
}

#[test]
fn minilm_gpu_f32_matches_sentence_transformers() {
    check_against_reference(PlacementPolicy::ForceGpu, DType::F32, 8, |i, g, w| {
        let d = max_abs_diff(g, w);
        assert!(d <= 1e-4, "GPU text {i}: max abs diff {d}");
    });
}

#[test]
fn minilm_gpu_half_cosine() {
    for dtype in [DType::F16, DType::BF16] {
        check_against_reference(PlacementPolicy::ForceGpu, dtype, 8, |i, g, w| {
            let c = cosine(g, w);
            assert!(c >= 0.999, "GPU {dtype} text {i}: cosine {c}");
        });
    }
}

/// GPU against CPU on whatever MiniLM folder is there (random weights included), in every dtype and with Auto.
#[test]
fn minilm_gpu_matches_cpu() {
    let Some(dir) = minilm_dir() else { return };
    let r = reference();
    let t = texts(&r);
    let Some(cpu) = load(&dir, PlacementPolicy::ForceCpu, DType::F32, 8) else { return };
    let want = cpu.embed(&t).unwrap();
    for (policy, dtype) in [
        (PlacementPolicy::ForceGpu, DType::F32),
        (PlacementPolicy::Auto, DType::F32),
        (PlacementPolicy::ForceGpu, DType::F16),
        (PlacementPolicy::ForceGpu, DType::BF16),
    ] {
        let Some(e) = load(&dir, policy, dtype, 8) else { return };
        if e.executor().gpu().is_none() {
            mlx_native::util::skipped(&format!("SKIPPED: no GPU for {policy:?}"));
            return;
        }
        let got = e.embed(&t).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if dtype == DType::F32 {
                let d = max_abs_diff(g, w);
                assert!(d <= 1e-4, "{policy:?} f32 text {i}: max abs diff {d} vs CPU");
            } else {
                let c = cosine(g, w);
                assert!(c >= 0.999, "{policy:?} {dtype} text {i}: cosine {c} vs CPU");
            }
        }
    }
}
