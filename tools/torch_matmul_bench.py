"""PyTorch side of the matmul benchmark: times the shapes of examples/gemm_check.rs on the same GPU, with the
same method (median of event-timed groups of repetitions after warm-up, random inputs), and, given the JSON the
Rust example wrote, prints both side by side with the ratios the issue's goals are stated in.

Usage: python3 tools/torch_matmul_bench.py [RUST_JSON]
"""

import json
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, reps, samples):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(reps):
            fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / reps)
    times.sort()
    return times[len(times) // 2]


def time_graph_ms(fn, reps, samples):
    """GPU time of `reps` calls captured in one CUDA graph (no Python launch overhead)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    return time_ms(graph.replay, 1, samples) / reps


def main():
    dev = "cuda"
    torch.manual_seed(0)
    rows = {}

    def rnd(*shape, dtype):
        return (torch.rand(*shape, device=dev, dtype=torch.float32) * 2 - 1).to(dtype)

    for key, dtype, size, tf32, reps, samples in [
        ("matmul_bf16_8192", torch.bfloat16, 8192, False, 10, 15),
        ("matmul_f32_4096", torch.float32, 4096, False, 5, 11),
        ("matmul_tf32_4096", torch.float32, 4096, True, 10, 15),
    ]:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a, b = rnd(size, size, dtype=dtype), rnd(size, size, dtype=dtype)
        ms = time_ms(lambda: torch.matmul(a, b), reps, samples)
        rows[key] = (f"torch.matmul {dtype} tf32={tf32} [{size}]^3", ms, 2 * size**3 / ms / 1e9)
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = False

    m, k, n = 4096, 384, 1536
    bf = torch.bfloat16
    x, w_kn, w_nk, bias = rnd(m, k, dtype=bf), rnd(k, n, dtype=bf), rnd(n, k, dtype=bf), rnd(n, dtype=bf)
    flops = 2 * m * k * n
    for key, label, fn in [
        ("matmul_bf16_4096x384x1536", "torch.matmul(x, w[k,n])", lambda: torch.matmul(x, w_kn)),
        ("matmul_bf16_4096x384x1536_tb", "F.linear(x, w[n,k])", lambda: F.linear(x, w_nk)),
        ("linear_bias_bf16", "F.linear(x, w, b)", lambda: F.linear(x, w_nk, bias)),
        ("linear_bias_gelu_tanh_bf16", "F.gelu(F.linear(x,w,b), 'tanh')",
         lambda: F.gelu(F.linear(x, w_nk, bias), approximate="tanh")),
        ("linear_bias_gelu_erf_bf16", "F.gelu(F.linear(x,w,b)) (erf)", lambda: F.gelu(F.linear(x, w_nk, bias))),
    ]:
        ms = time_ms(fn, 100, 21)
        rows[key] = (label, ms, flops / ms / 1e9)
        try:
            ms = time_graph_ms(fn, 100, 21)
            rows[key + "_graph"] = (label + " [graph]", ms, flops / ms / 1e9)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"CUDA graph timing of {key} failed: {e}")

    print(f"\nPyTorch {torch.__version__} on {torch.cuda.get_device_name()}")
    print(f"{'torch benchmark (median)':<44} {'ms':>10} {'TFLOP/s':>9}")
    for key, (label, ms, tf) in rows.items():
        print(f"{label:<44} {ms:>10.4f} {tf:>9.1f}")

    if len(sys.argv) < 2:
        return
    with open(sys.argv[1]) as f:
        ours = {r["key"]: r for r in json.load(f)}
    print(f"\n{'case':<42} {'mlx ms':>9} {'torch ms':>9} {'torch/mlx':>10}  (>1 = mlx-native faster)")
    for key, (label, ms, _) in rows.items():
        for ok in [key, key + "_heuristic"]:
            if ok in ours:
                o = ours[ok]["ms"]
                print(f"{ok:<42} {o:>9.4f} {ms:>9.4f} {ms / o:>10.3f}  {label}")

    def ratio(a, b, src):
        return src[a]["ms"] / src[b]["ms"] if a in src and b in src else float("nan")

    t = {k: {"ms": v[1]} for k, v in rows.items()}
    print("\nGoals (issue 3):")
    for key in ["matmul_bf16_8192", "matmul_f32_4096"]:
        if key in ours:
            r = rows[key][1] / ours[key]["ms"]
            print(f"  {key}: {r:.3f}x PyTorch speed (goal >= 0.95): {'MET' if r >= 0.95 else 'MISSED'}")
    base = "matmul_bf16_4096x384x1536"
    for fused in ["linear_bias_gelu_tanh_bf16", "linear_bias_gelu_erf_bf16", "linear_bias_bf16"]:
        r = ratio(fused, base, ours)
        rt = ratio(fused, base + "_tb", ours)
        tr = ratio(fused, base, t)
        tg = ratio(fused + "_graph", base + "_graph", t)
        print(f"  {fused}: {r:.3f}x plain matmul (vs W^T plain {rt:.3f}x; torch eager {tr:.3f}x, torch graph "
              f"{tg:.3f}x) goal <= 1.1: {'MET' if r <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    main()
