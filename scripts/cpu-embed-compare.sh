#!/usr/bin/env bash
# CPU half of issue 5's benchmark, made robust against a busy host: both engines pinned to the same two CPUs of
# two different physical cores (not CPU 0, which takes most interrupts), 2 threads each, and run in alternation
# (PyTorch, ours, PyTorch, ours, ...) so that a slow spell of the host hits both sides.
#
#   BIN=.gpu/check/mlx-native M=/tmp/random-minilm ROUNDS=3 OUT=$OUT/cpu scripts/cpu-embed-compare.sh
#
# M is a MiniLM-shaped model folder (tools/make_random_minilm.py makes one with random weights). Prints one line
# per run and a summary with the median of the per-run medians of each side.
set -u
cd "$(dirname "$0")/.."
BIN="${BIN:-.gpu/check/mlx-native}"
M="${M:-/tmp/random-minilm}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-/tmp/cpu-embed}"
mkdir -p "$OUT"

# Two CPUs on distinct physical cores, highest numbered first (away from CPU 0).
cpus=$(lscpu -p=CPU,CORE 2>/dev/null | grep -v '^#' | sort -t, -k2,2nr -k1,1nr | awk -F, '!seen[$2]++ {print $1}' | head -2 | paste -sd, -)
[ -z "$cpus" ] && cpus=0,1
echo "CPUs used: $cpus ($(lscpu | grep -m1 'Model name' | sed 's/ \+/ /g'))"
lscpu | grep -E 'Thread\(s\) per core|Core\(s\) per socket|Socket|MHz' | sed 's/ \+/ /g'
grep -o -m1 -w -E 'amx_bf16|avx512f' /proc/cpuinfo | sort -u | paste -sd' ' - | sed 's/^/flags: /'

for r in $(seq 1 "$ROUNDS"); do
  taskset -c "$cpus" python3 tools/torch_embed_bench.py bench "$M" --cpu-only --runs 10 --json "$OUT/torch_$r.json" \
    > "$OUT/torch_$r.log" 2>&1
  grep -E 'CPU 2 threads' "$OUT/torch_$r.log" | sed "s/^/round $r torch: /"
  RAYON_NUM_THREADS=2 taskset -c "$cpus" "$BIN" bench-embed --model "$M" --device cpu --batch 32 --tokens 64 --runs 10 \
    > "$OUT/ours_$r.log" 2>&1
  grep -E '^(forward|embed) ' "$OUT/ours_$r.log" | sed "s/^/round $r ours:  /"
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
st, ours = [], []
for r in range(1, rounds + 1):
    try:
        t = json.load(open(f"{out}/torch_{r}.json"))
        st.append(t.get("cpu_32x64_sentence_transformers_ms", t.get("cpu_32x64_pipeline_ms")))
    except Exception as e:
        print(f"round {r}: no PyTorch result ({e})")
    for line in open(f"{out}/ours_{r}.log"):
        if line.startswith("{"):
            ours.append(json.loads(line)["results"]["embed_median_ms"])
if st and ours:
    a, b = statistics.median(st), statistics.median(ours)
    print(f"summary: sentence-transformers {a:.1f} ms, mlx-native embed {b:.1f} ms per 32 x 64 batch "
          f"(medians over {len(st)}/{len(ours)} rounds): {a / b:.2f}x")
PY
