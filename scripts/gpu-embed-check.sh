#!/usr/bin/env bash
# The sentence-embedding part of the GPU run (issue 5), in one call on the GPU machine (no Rust, no network; torch +
# transformers present). The real model is too big to carry, so a random-weight MiniLM is made there with the real
# tokenizer.json. Everything is logged under $OUT; a failing step is reported and the next one still runs.
#
#   BIN=.gpu/model/mlx-native TESTS=".gpu/model/model_minilm .gpu/model/model_bert .gpu/model/model_embedder" \
#     TOK=.gpu/model/tokenizer.json OUT=$OUT/embed scripts/gpu-embed-check.sh
#
# Steps: random model; PyTorch eager (CPU pinned to cores 0,1 with 2 threads; GPU 1x16 latency, 256x128 f32/f16);
# mlx-native bench-embed with the same shapes; accuracy of `mlx-native embed` against PyTorch (GPU f32 <= 1e-4,
# GPU f16 cosine >= 0.999, CPU f32 <= 1e-5); the model test binaries (tiny BERT every layer on the GPU against
# transformers, tiny embedder on the GPU against sentence-transformers, MiniLM GPU vs CPU on the random model).
set -u
cd "$(dirname "$0")/.."
BIN="${BIN:-.gpu/model/mlx-native}"
TESTS="${TESTS:-.gpu/model/model_minilm .gpu/model/model_bert .gpu/model/model_embedder}"
TOK="${TOK:-.gpu/model/tokenizer.json}"
OUT="${OUT:-/tmp/embed-out}"
M="${M:-/tmp/random-minilm}"
mkdir -p "$OUT"
status=0
# Both CPU sides pinned to the same 2 cores (and 2 threads each).
PIN=(taskset -c 0,1)
if ! command -v taskset > /dev/null; then
  echo "WARNING: taskset not found: the CPU rows run unpinned (still 2 threads each)"
  PIN=()
fi
step() {
  local name="$1"
  shift
  echo "=== $name: $*"
  if ! "$@" > "$OUT/$name.log" 2>&1; then
    echo "FAILED: $name (see $name.log)"
    status=1
  fi
  # The log's last lines, without transformers' load report and progress bars.
  grep -v -E 'LOAD REPORT|MISSING|^Key |^-+\+|^Notes|newly initialized|^\s*$|it/s\]' "$OUT/$name.log" | tail -n "${TAIL:-8}"
}

step make_model python3 tools/make_random_minilm.py "$M" "$TOK"
# SKIP_CPU=1 leaves out the CPU rows (scripts/cpu-embed-compare.sh measures them more carefully).
if [ "${SKIP_CPU:-0}" != 1 ]; then
step torch_cpu "${PIN[@]}" python3 tools/torch_embed_bench.py bench "$M" --cpu-only --json "$OUT/torch_cpu.json" \
  --texts-out "$OUT/ref_cpu.json"
step ours_cpu env RAYON_NUM_THREADS=2 "${PIN[@]}" "$BIN" bench-embed --model "$M" --device cpu --batch 32 --tokens 64
fi
step torch_gpu python3 tools/torch_embed_bench.py bench "$M" --gpu-only --json "$OUT/torch_gpu.json" \
  --texts-out "$OUT/ref_gpu.json"
step ours_gpu_1x16 "$BIN" bench-embed --model "$M" --device cuda --dtype f32 --batch 1 --tokens 16 --runs 200 --warmup 20
step ours_gpu_256x128_f32 "$BIN" bench-embed --model "$M" --device cuda --dtype f32 --batch 256 --tokens 128
step ours_gpu_256x128_f16 "$BIN" bench-embed --model "$M" --device cuda --dtype f16 --batch 256 --tokens 128
step ours_auto_1x16 "$BIN" bench-embed --model "$M" --device auto --dtype f32 --batch 1 --tokens 16 --runs 200 --warmup 20

step embed_gpu_f32 sh -c "'$BIN' embed --model '$M' --device cuda --dtype f32 --input '$OUT/ref_gpu.txt' > '$OUT/ours_gpu_f32.jsonl'"
step cmp_gpu_f32 python3 tools/torch_embed_bench.py compare "$OUT/ref_gpu.json" "$OUT/ours_gpu_f32.jsonl" \
  --key embeddings_gpu_f32 --tol 1e-4
step embed_gpu_f16 sh -c "'$BIN' embed --model '$M' --device cuda --dtype f16 --input '$OUT/ref_gpu.txt' > '$OUT/ours_gpu_f16.jsonl'"
step cmp_gpu_f16 python3 tools/torch_embed_bench.py compare "$OUT/ref_gpu.json" "$OUT/ours_gpu_f16.jsonl" \
  --key embeddings_gpu_f16 --tol 1 --min-cos 0.999
step embed_gpu_bf16 sh -c "'$BIN' embed --model '$M' --device cuda --dtype bf16 --input '$OUT/ref_gpu.txt' > '$OUT/ours_gpu_bf16.jsonl'"
step cmp_gpu_bf16 python3 tools/torch_embed_bench.py compare "$OUT/ref_gpu.json" "$OUT/ours_gpu_bf16.jsonl" \
  --key embeddings_gpu_f32 --tol 1 --min-cos 0.999
[ "${SKIP_CPU:-0}" != 1 ] && step embed_cpu_f32 sh -c "'$BIN' embed --model '$M' --device cpu --input '$OUT/ref_cpu.txt' > '$OUT/ours_cpu_f32.jsonl'"
[ "${SKIP_CPU:-0}" != 1 ] && step cmp_cpu_f32 python3 tools/torch_embed_bench.py compare "$OUT/ref_cpu.json" "$OUT/ours_cpu_f32.jsonl" \
  --key embeddings_cpu_f32 --tol 1e-5
for t in $TESTS; do
  if [ -x "$t" ]; then
    TAIL=40 step "test_$(basename "$t")" env MLX_NATIVE_MINILM_DIR="$M" MLX_NATIVE_BIN="$BIN" "$t" --nocapture --test-threads 1
  else
    echo "=== test binary $t not found: skipped"
  fi
done
echo "gpu-embed-check: $([ $status = 0 ] && echo all steps passed || echo some steps FAILED); logs in $OUT"
exit $status
