#!/usr/bin/env python3
"""Builds a random-weight all-MiniLM-L6-v2 look-alike for machines the 90 MB real model cannot reach (the GPU
machine: no network, and the device tool carries at most 64 MiB). Needs torch + transformers, no network.

    python3 tools/make_random_minilm.py DIR TOKENIZER_JSON [--seed 0]

DIR receives config.json (MiniLM's config, written inline below), model.safetensors (a BertModel with random
weights: transformers' init, std 0.02, then every bias ~ N(0, 0.05) and every LayerNorm weight ~ N(1, 0.1) so an
engine that skips one fails), tokenizer.json (copied from TOKENIZER_JSON: carry the real one), tokenizer_config.json,
the sentence-transformers files (modules.json, 1_Pooling/config.json, sentence_bert_config.json) and a
RANDOM_WEIGHTS marker that tells tests/model_minilm.rs not to compare with the real model's reference.
"""
import argparse
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

MINILM_CONFIG = {
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 384,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 6,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("tokenizer_json")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    cfg = {k: v for k, v in MINILM_CONFIG.items() if k not in ("architectures", "model_type")}
    model = BertModel(BertConfig(**cfg), add_pooling_layer=False).eval()
    gen = torch.Generator().manual_seed(a.seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
            elif "LayerNorm.weight" in name:
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)
    os.makedirs(os.path.join(a.dir, "1_Pooling"), exist_ok=True)
    model.save_pretrained(a.dir, safe_serialization=True)
    # Our config, not the one save_pretrained wrote (keeps the file identical to MiniLM's in every field we read).
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(MINILM_CONFIG, f, indent=2)
    shutil.copyfile(a.tokenizer_json, os.path.join(a.dir, "tokenizer.json"))
    files = {
        "tokenizer_config.json": {"do_lower_case": True, "unk_token": "[UNK]", "sep_token": "[SEP]",
                                  "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
                                  "tokenize_chinese_chars": True, "strip_accents": None,
                                  "tokenizer_class": "BertTokenizer", "model_max_length": 512},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": 384, "pooling_mode_cls_token": False,
                                  "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                                  "pooling_mode_mean_sqrt_len_tokens": False},
        "sentence_bert_config.json": {"max_seq_length": 256, "do_lower_case": False},
    }
    for name, content in files.items():
        with open(os.path.join(a.dir, name), "w") as f:
            json.dump(content, f, indent=2)
    with open(os.path.join(a.dir, "RANDOM_WEIGHTS"), "w") as f:
        f.write(f"random weights, seed {a.seed}, made by tools/make_random_minilm.py\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"random MiniLM ({n / 1e6:.1f} M parameters) in {a.dir}: {sorted(os.listdir(a.dir))}")


if __name__ == "__main__":
    main()
