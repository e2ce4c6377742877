#!/usr/bin/env python3
"""PyTorch eager side of the sentence-embedding benchmark and accuracy check (issue 5), on the same machine as
`mlx-native bench-embed`. Needs torch + transformers (+ tokenizers); uses sentence-transformers too when installed.
No network.

    python3 tools/torch_embed_bench.py bench DIR [--json OUT] [--texts-out REF.json] [--cpu-only | --gpu-only] [--runs N]
    python3 tools/torch_embed_bench.py compare REF.json OURS.jsonl [--key embeddings_gpu_f32] [--tol 1e-4] [--min-cos C]

`bench` measures, with the synthetic texts `mlx-native bench-embed` uses ("hello" x (T-2) + [CLS] + [SEP] = T
tokens), median of --runs after warm-up:
  * CPU, torch.set_num_threads(2): 32 texts x 64 tokens, whole pipeline (tokenise, forward, mean pool,
    normalise) -> sentences/s; with sentence-transformers installed, also SentenceTransformer.encode.
    Pin the process to the same 2 cores as the engine: `taskset -c 0,1 python3 ...`.
  * GPU f32 batch 1 x 16 tokens latency (forward + pooling, inputs already on the GPU, synchronised), and the
    same from text to host vectors.
  * GPU batch 256 x 128 tokens, f32 and f16: texts/s (forward + pooling, inputs on the GPU).
It also embeds the texts of tests/fixtures/minilm_reference.json (CPU f32 and GPU f32/f16) and writes them with
--texts-out, plus the texts one per line next to it (REF.txt) for `mlx-native embed --input REF.txt`.

`compare` reads that JSON and the engine's JSON lines and prints the max abs difference and the min cosine; exit
status 1 when the max abs difference exceeds --tol or the smallest cosine is below --min-cos.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(dir_, device, dtype):
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    tok = Tokenizer.from_file(os.path.join(dir_, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    model = BertModel.from_pretrained(dir_, add_pooling_layer=False).to(device=device, dtype=dtype).eval()
    return tok, model


def batch_tensors(tok, texts, device):
    import torch

    enc = tok.encode_batch([t.strip() for t in texts])
    seq = max(len(e.ids) for e in enc)
    ids = torch.zeros((len(texts), seq), dtype=torch.long)
    mask = torch.zeros((len(texts), seq), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
    return ids.to(device), mask.to(device)


def forward_pool(model, ids, mask):
    """last_hidden_state -> mean over the mask -> L2 normalise, as sentence-transformers does (in f32)."""
    import torch

    h = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    m = mask.unsqueeze(-1).float()
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def embed_texts(tok, model, texts, device, batch_size=32):
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            ids, mask = batch_tensors(tok, texts[i : i + batch_size], device)
            out.append(forward_pool(model, ids, mask).cpu())
    return torch.cat(out).numpy()


def timed(fn, runs, warmup, sync=None):
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), min(ts)


def synthetic(n, tokens):
    return [" ".join(["hello"] * (tokens - 2))] * n


def bench(a):
    import torch

    results = {"torch": torch.__version__, "threads_cpu": 2}
    try:
        import transformers

        results["transformers"] = transformers.__version__
    except Exception:
        pass

    ref_texts = json.load(open(os.path.join(ROOT, "tests/fixtures/minilm_reference.json"), encoding="utf-8"))["texts"]
    accuracy = {"texts": ref_texts}
    if not a.gpu_only:
        cpu_rows(a, results, accuracy, ref_texts)
    if not a.cpu_only and torch.cuda.is_available():
        gpu_rows(a, results, accuracy, ref_texts)
    else:
        print("no GPU (or --cpu-only): GPU rows skipped")

    print(json.dumps({"bench": "torch_embed", **results}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    if a.texts_out:
        with open(a.texts_out, "w", encoding="utf-8") as f:
            json.dump(accuracy, f, ensure_ascii=False)
        txt = os.path.splitext(a.texts_out)[0] + ".txt"
        with open(txt, "w", encoding="utf-8") as f:
            f.write("".join(t.replace("\n", " ") + "\n" for t in ref_texts))
        print(f"wrote {a.texts_out} and {txt}")


def cpu_rows(a, results, accuracy, ref_texts):
    import torch

    # CPU, 2 threads.
    torch.set_num_threads(2)
    tok, model = load(a.dir, "cpu", torch.float32)
    texts = synthetic(32, 64)
    ids, mask = batch_tensors(tok, texts, "cpu")
    assert ids.shape == (32, 64), ids.shape
    results["attn_implementation"] = getattr(model.config, "_attn_implementation", "?")

    def cpu_pipeline():
        with torch.inference_mode():
            i, m = batch_tensors(tok, texts, "cpu")
            return forward_pool(model, i, m).numpy()

    med, mn = timed(cpu_pipeline, a.runs, 2)
    results["cpu_32x64_pipeline_ms"] = med
    results["cpu_32x64_pipeline_sentences_per_s"] = 32 / (med / 1e3)
    print(f"CPU 2 threads, 32 x 64 tokens, tokenise+forward+pool: median {med:.2f} ms (min {mn:.2f}) "
          f"= {32 / (med / 1e3):.1f} sentences/s", flush=True)
    try:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(a.dir, device="cpu")
        med, mn = timed(lambda: st.encode(texts, batch_size=32, convert_to_numpy=True), a.runs, 2)
        results["cpu_32x64_sentence_transformers_ms"] = med
        results["cpu_32x64_sentence_transformers_sentences_per_s"] = 32 / (med / 1e3)
        print(f"CPU 2 threads, sentence-transformers encode 32 x 64: median {med:.2f} ms = "
              f"{32 / (med / 1e3):.1f} sentences/s", flush=True)
    except ImportError:
        print("sentence-transformers not installed: its encode() not timed (the pipeline above is the same math)")
    accuracy["embeddings_cpu_f32"] = embed_texts(tok, model, ref_texts, "cpu").tolist()


def gpu_rows(a, results, accuracy, ref_texts):
    import torch

    dev = "cuda"
    results["gpu"] = torch.cuda.get_device_name(0)
    results["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    sync = torch.cuda.synchronize
    for dtype, name in [(torch.float32, "f32"), (torch.float16, "f16")]:
        tok, model = load(a.dir, dev, dtype)
        if dtype == torch.float32:
            i1, m1 = batch_tensors(tok, synthetic(1, 16), dev)
            with torch.inference_mode():
                med, mn = timed(lambda: forward_pool(model, i1, m1), max(a.runs, 50), 10, sync)
            results["gpu_f32_1x16_forward_ms"] = med
            print(f"GPU f32 1 x 16 tokens, forward+pool (inputs on GPU): median {med:.3f} ms (min {mn:.3f})")
            one = synthetic(1, 16)

            def text_to_host():
                with torch.inference_mode():
                    i, m = batch_tensors(tok, one, dev)
                    return forward_pool(model, i, m).cpu()

            med, mn = timed(text_to_host, max(a.runs, 50), 10, sync)
            results["gpu_f32_1x16_text_to_host_ms"] = med
            print(f"GPU f32 1 x 16 tokens, text to host vector: median {med:.3f} ms (min {mn:.3f})")
        ib, mb = batch_tensors(tok, synthetic(256, 128), dev)
        assert ib.shape == (256, 128)
        with torch.inference_mode():
            med, mn = timed(lambda: forward_pool(model, ib, mb), a.runs, 3, sync)
        results[f"gpu_{name}_256x128_forward_ms"] = med
        results[f"gpu_{name}_256x128_texts_per_s"] = 256 / (med / 1e3)
        print(f"GPU {name} 256 x 128 tokens, forward+pool: median {med:.2f} ms (min {mn:.2f}) = "
              f"{256 / (med / 1e3):.0f} texts/s", flush=True)
        accuracy[f"embeddings_gpu_{name}"] = embed_texts(tok, model, ref_texts, dev).tolist()


def compare(a):
    import numpy as np

    ref = json.load(open(a.ref, encoding="utf-8"))
    if a.key not in ref:
        sys.exit(f"{a.key} is not in {a.ref} (the PyTorch run for it did not happen: no GPU?)")
    want = np.array(ref[a.key], dtype=np.float64)
    got = []
    for line in open(a.ours, encoding="utf-8"):
        got.append(json.loads(line)["embedding"])
    got = np.array(got, dtype=np.float64)
    if got.shape != want.shape:
        sys.exit(f"shape mismatch: ours {got.shape} vs {a.key} {want.shape}")
    diff = float(np.abs(got - want).max())
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    ok = diff <= a.tol and cos.min() >= a.min_cos
    print(f"{a.key}: {len(got)} texts, max abs diff {diff:.3e} (tol {a.tol:g}), min cosine {cos.min():.6f} "
          f"(min {a.min_cos:g}): "
          f"{'OK' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("dir")
    b.add_argument("--json")
    b.add_argument("--texts-out")
    only = b.add_mutually_exclusive_group()
    only.add_argument("--cpu-only", action="store_true")
    only.add_argument("--gpu-only", action="store_true")
    b.add_argument("--runs", type=int, default=20)
    c = sub.add_parser("compare")
    c.add_argument("ref")
    c.add_argument("ours")
    c.add_argument("--key", default="embeddings_gpu_f32")
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--min-cos", type=float, default=-1.0)
    a = ap.parse_args()
    bench(a) if a.cmd == "bench" else compare(a)


if __name__ == "__main__":
    main()
