//! The embedding pipeline on the tiny fixture (always runs, no download): tokenisation and embeddings against
//! sentence-transformers, batch invariance, bad model folders, and the `embed` CLI.

mod model_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mlx_native::exec::PlacementPolicy;
use mlx_native::models::{EmbedOptions, Embedder};
use mlx_native::tensor::{load_safetensors, save_safetensors};
use mlx_native::DType;
use model_common::*;

fn st_reference() -> (Vec<String>, Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let r = json(&tiny_dir().join("st_reference.json"));
    let texts = r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let ids = r["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect();
    (texts, ids, rows(&r["embeddings"]))
}

fn cpu(dir: &Path, batch_size: usize) -> Embedder {
    load(dir, PlacementPolicy::ForceCpu, DType::F32, batch_size).unwrap()
}

#[test]
fn tiny_matches_sentence_transformers() {
    let (texts, ids, want) = st_reference();
    let texts: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let e = cpu(&tiny_dir(), 4);
    assert_eq!(e.max_seq_length(), 32, "max_seq_length comes from sentence_bert_config.json");
    assert_eq!(e.tokenize(&texts).unwrap(), ids, "token ids (no fixed padding, truncation at 32)");
    let got = e.embed(&texts).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_abs_diff(g, w);
        assert!(d <= 1e-5, "text {i} {:?}: max abs diff {d}", texts[i]);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised");
    }
}

#[test]
fn tiny_batch_invariance() {
    let (texts, _, _) = st_reference();
    let texts: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let alone: Vec<Vec<f32>> = texts.iter().map(|t| cpu(&tiny_dir(), 1).embed(&[t]).unwrap().remove(0)).collect();
    for bs in [2, 3, 64] {
        let e = cpu(&tiny_dir(), bs);
        // Reversed input order too: outputs must come back in input order.
        let rev: Vec<&str> = texts.iter().rev().cloned().collect();
        let got = e.embed(&rev).unwrap();
        for (i, g) in got.iter().rev().enumerate() {
            let d = max_abs_diff(g, &alone[i]);
            assert!(d <= 1e-5, "batch size {bs}, text {i}: {d}");
        }
    }
    assert!(cpu(&tiny_dir(), 4).embed(&[]).unwrap().is_empty());
}

/// A copy of the tiny folder in a fresh temporary directory.
#[test]
fn unpadded_batches_skip_the_mask_with_the_same_result() {
    let e = cpu(&tiny_dir(), 8);
    let vocab = e.model().config().vocab_size as u32;
    let ids = |n: u32, s: u32| -> Vec<u32> { (0..n).map(|i| (i * 31 + s) % vocab).collect() };
    // Two texts of 8 ids fill a batch of exactly 8 positions: nothing is padded, so the graph has no mask.
    let same = vec![ids(8, 1), ids(8, 2)];
    let unmasked = e.embed_ids(&same).unwrap();
    for (i, text) in same.iter().enumerate() {
        // Next to a 13-id text the batch is padded to 16 positions and masked.
        let masked = e.embed_ids(&[text.clone(), ids(13, 5)]).unwrap();
        let d = max_abs_diff(&unmasked[i], &masked[0]);
        assert!(d <= 1e-5, "text {i}: unmasked vs masked batch: {d}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-native-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json"] {
        std::fs::copy(tiny_dir().join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(tiny_dir().join("1_Pooling/config.json"), dir.join("1_Pooling/config.json")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match Embedder::load(dir, EmbedOptions { policy: PlacementPolicy::ForceCpu, ..Default::default() }) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_files_are_named() {
    assert!(load_err(Path::new("/nonexistent/model")).contains("/nonexistent/model"));
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let dir = scratch(&format!("missing-{}", f.replace('.', "-")));
        std::fs::remove_file(dir.join(f)).unwrap();
        let e = load_err(&dir);
        assert!(e.contains(f), "missing {f}: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn corrupted_safetensors_is_an_error() {
    let dir = scratch("corrupt");
    let good = std::fs::read(dir.join("model.safetensors")).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"this is not a safetensors file at all".to_vec()),
        ("empty", vec![]),
    ] {
        std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();
        let e = load_err(&dir);
        assert!(e.contains("model.safetensors"), "{what}: {e}");
    }
    // A valid file lacking one tensor: the error names it.
    let st = load_safetensors(tiny_dir().join("model.safetensors")).unwrap().into_map();
    let kept: Vec<(&str, &mlx_native::Tensor)> = st
        .iter()
        .filter(|(k, _)| !k.contains("layer.2.intermediate.dense.bias"))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    save_safetensors(dir.join("model.safetensors"), kept).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("encoder.layer.2.intermediate.dense.bias"), "{e}");
    // `bert.`-prefixed names (checkpoints of models with heads) load.
    let renamed: Vec<(String, &mlx_native::Tensor)> = st.iter().map(|(k, v)| (format!("bert.{k}"), v)).collect();
    save_safetensors(dir.join("model.safetensors"), renamed.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
    let a = cpu(&dir, 2).embed(&["hello world"]).unwrap();
    let b = cpu(&tiny_dir(), 2).embed(&["hello world"]).unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn other_architectures_are_refused_by_name() {
    let dir = scratch("gpt2");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"BertModel\"", "\"GPT2LMHeadModel\"")
            .replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\""),
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(e.contains("GPT2LMHeadModel") && e.contains("config.json"), "{e}");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert!(load_err(&dir).contains("config.json"));
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    assert!(load_err(&dir).contains("tokenizer.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cli(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    // MLX_NATIVE_BIN: where the binary is when this test binary runs on another machine than it was built on.
    let bin = std::env::var("MLX_NATIVE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mlx-native").to_string());
    let mut cmd = Command::new(bin);
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    let mut child = cmd.spawn().expect("the mlx-native binary runs");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(out.to_vec()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn cli_keeps_every_line_and_reports_bad_utf8() {
    let model = tiny_dir();
    let model = model.to_str().unwrap();
    let dir = scratch("cli");
    let input = dir.join("input.txt");
    // Line 3 is empty, line 4 is not UTF-8, line 6 ends the file without a newline.
    std::fs::write(&input, b"hello world\nthe cat sat\n\nbad \xff\xfe bytes\r\nGr\xc3\xbc\xc3\x9fe\nlast").unwrap();
    let out = cli(
        &["embed", "--model", model, "--device", "cpu", "--batch-size", "2", "--input", input.to_str().unwrap()],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad line makes the exit status non-zero");
    assert!(stderr.contains("line 4") && stderr.contains("UTF-8"), "{stderr}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 6, "one output line per input line");
    assert!(out.stdout.starts_with(b"{\"text\":\"hello world\",\"embedding\":["), "text first, then embedding");
    let texts = ["hello world", "the cat sat", "", "", "Grüße", "last"];
    let lib = cpu(&tiny_dir(), 8);
    for (i, l) in lines.iter().enumerate() {
        if i == 3 {
            assert_eq!(l["line"], 4);
            assert!(l["error"].as_str().unwrap().contains("UTF-8"));
            continue;
        }
        assert_eq!(l["text"], texts[i]);
        let want = lib.embed(&[texts[i]]).unwrap().remove(0);
        assert!(max_abs_diff(&floats(&l["embedding"]), &want) <= 1e-6, "line {}", i + 1);
    }

    // Texts as arguments, and --output.
    let out_file = dir.join("out.jsonl");
    let out =
        cli(&["embed", "--model", model, "--device", "cpu", "--output", out_file.to_str().unwrap(), "a", "b"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&std::fs::read(&out_file).unwrap());
    assert_eq!((lines[0]["text"].as_str(), lines[1]["text"].as_str()), (Some("a"), Some("b")));

    // Standard input.
    let out = cli(&["embed", "--model", model, "--device", "cpu"], Some(b"x\ny\n"));
    assert!(out.status.success());
    assert_eq!(json_lines(&out.stdout).len(), 2);

    // A bad model folder: a clear error, non-zero exit.
    let out = cli(&["embed", "--model", "/nonexistent/model", "hi"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiny_on_gpu_matches_sentence_transformers() {
    let (texts, _, want) = st_reference();
    let texts: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let Some(e) = load(&tiny_dir(), PlacementPolicy::ForceGpu, dtype, 4) else { return };
        let got = e.embed(&texts).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if dtype == DType::F32 {
                let d = max_abs_diff(g, w);
                assert!(d <= 1e-4, "GPU f32 text {i}: max abs diff {d}");
            } else {
                let c = cosine(g, w);
                assert!(c >= 0.999, "GPU {dtype} text {i}: cosine {c}");
            }
        }
        if dtype == DType::F32 {
            // Batch invariance on the GPU: each text alone vs in batches of 3 (reversed order).
            let Some(one) = load(&tiny_dir(), PlacementPolicy::ForceGpu, dtype, 1) else { return };
            let rev: Vec<&str> = texts.iter().rev().cloned().collect();
            let batched: Vec<Vec<f32>> = load(&tiny_dir(), PlacementPolicy::ForceGpu, dtype, 3)
                .unwrap()
                .embed(&rev)
                .unwrap()
                .into_iter()
                .rev()
                .collect();
            for (i, t) in texts.iter().enumerate() {
                let d = max_abs_diff(&one.embed(&[t]).unwrap()[0], &batched[i]);
                assert!(d <= 1e-5, "GPU batch invariance, text {i}: {d}");
            }
        }
    }
}

#[test]
fn embedder_is_shareable_and_weights_are_mapped() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Embedder>();
    let w = mlx_native::models::Weights::load(tiny_dir().join("model.safetensors"), "bert.").unwrap();
    let t = w.get("encoder.layer.0.attention.self.query.weight", &[128, 128], DType::F32).unwrap();
    assert!(t.is_mapped(), "f32 weights are used in place from the memory map");
    assert!(!w.get("encoder.layer.0.attention.self.query.weight", &[128, 128], DType::F16).unwrap().is_mapped());
    let e = w.get("encoder.layer.0.attention.self.query.weight", &[128, 64], DType::F32).unwrap_err().to_string();
    assert!(e.contains("query.weight") && e.contains("128, 64"), "{e}");
    // One embedder used from several threads at once gives the same vectors as from one.
    let emb = cpu(&tiny_dir(), 2);
    let want = emb.embed(&["the cat sat", "hello world"]).unwrap();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| emb.embed(&["the cat sat", "hello world"]).unwrap())).collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), want);
        }
    });
}
