#!/usr/bin/env bash
# Builds the GPU checks here (release), packages them into .gpu/check/ (ignored by git), and prints the one
# command to run on the GPU machine (device `run` with carry [".gpu/check"]). Every session checks the same way:
#   1. the GPU op tests (every op GPU vs CPU / float64, outputs poisoned) and the kernel-cache test,
#   2. compute-sanitizer memcheck on the GPU op tests, racecheck on one launch of every shared-memory kernel,
#   3. `mlx-native info` and `mlx-native bench --device all --json $OUT/bench.json`,
#   4. PyTorch on the same machine for the side-by-side column ($OUT/torch.json).
# Usage: scripts/gpu-check.sh [--quick]   (--quick: bench --quick, for a fast smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=""
[ "${1:-}" = "--quick" ] && quick="--quick"

out="${GPU_CHECK_DIR:-.gpu/check}"
rm -rf "$out"
mkdir -p "$out"
cargo build --release --bin mlx-native
cp target/release/mlx-native "$out/"
cargo test --release --no-run --message-format=json --test gpu_ops --test gpu_cache --test gpu_exec --test kernels_compile --test no_gpu --test model_minilm --test model_bert --test model_embedder \
  | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$out"
cp tools/torch_bench.py "$out/"
for f in "$out"/*; do
  case "$f" in *.py) ;; *) strip "$f" ;; esac
done
du -sh "$out" >&2

# The commands for the GPU machine. Logs and JSON land in $OUT (at most 8 files come back). The whole check usually
# fits one 600 s call; the two halves are printed too, for a machine that is slower than expected.
env='export MLX_NATIVE_KERNEL_CACHE=/tmp/mlx-kcache MLX_NATIVE_REQUIRE_GPU=1 PYTHONUNBUFFERED=1;'
tests='nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > $OUT/gpu.txt; ./mlx-native info 2>&1 | tee -a $OUT/gpu.txt;'
tests+=' timeout 120 ./gpu_ops --test-threads=4 > $OUT/tests.log 2>&1; echo "gpu_ops rc=$?" | tee -a $OUT/summary.txt;'
tests+=' timeout 60 ./gpu_cache --nocapture >> $OUT/tests.log 2>&1; echo "gpu_cache rc=$?" | tee -a $OUT/summary.txt;'
tests+=' timeout 60 ./kernels_compile >> $OUT/tests.log 2>&1; echo "kernels_compile rc=$?" | tee -a $OUT/summary.txt;'
# gpu_exec on one thread: its replay test counts the plan's captures, and a capture by a test running beside it
# makes that plan take the ordinary path (session 10 saw it fail so with the default threads).
tests+=' timeout 120 ./gpu_exec --test-threads=1 >> $OUT/tests.log 2>&1; echo "gpu_exec rc=$?" | tee -a $OUT/summary.txt;'
tests+=' for t in model_bert model_minilm model_embedder; do MLX_NATIVE_BIN=$PWD/mlx-native timeout 120 ./$t >> $OUT/tests.log 2>&1; echo "$t rc=$?" | tee -a $OUT/summary.txt; done;'
tests+=' ./no_gpu --nocapture >> $OUT/tests.log 2>&1; echo "no_gpu rc=$? (SKIPPED on a GPU machine)" | tee -a $OUT/summary.txt;'
tests+=' grep -E "test result|FAILED|panicked" $OUT/tests.log | tee -a $OUT/summary.txt;'
tests+=' timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 ./gpu_ops --test-threads=4 > $OUT/sanitizer.log 2>&1; echo "memcheck rc=$?" | tee -a $OUT/summary.txt;'
tests+=' timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 ./gpu_ops --test-threads=1 racecheck_set >> $OUT/sanitizer.log 2>&1; echo "racecheck rc=$?" | tee -a $OUT/summary.txt;'
tests+=' grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result" $OUT/sanitizer.log | tee -a $OUT/summary.txt;'
bench="timeout 330 ./mlx-native bench --device all $quick --json \$OUT/bench.json > \$OUT/bench.txt 2>&1; echo \"bench rc=\$?\" | tee -a \$OUT/summary.txt;"
bench+=' timeout 150 python3 torch_bench.py $OUT/bench.json --out $OUT/torch.json > $OUT/torch.txt 2>&1; echo "torch rc=$?" | tee -a $OUT/summary.txt;'
bench+=' grep -A40 "copy bandwidth" $OUT/bench.txt | head -60; cat $OUT/torch.txt | tail -n 25'
echo
echo "run on the GPU machine (device run, carry [\"$out\"], timeout_s 600), all in one call:"
echo "cd $out && $env $tests $bench"
echo
echo "or in two calls: tests and sanitizers"
echo "cd $out && $env $tests"
echo "then benchmarks (mlx-native bench --device all and PyTorch)"
echo "cd $out && $env $bench"
