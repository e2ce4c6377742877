#!/usr/bin/env python3
"""PyTorch side of the benchmark: times the cases of an `mlx-native bench --json` file in PyTorch on the same GPU,
in the same session, and prints one table with both engines and the ratio.

usage: python3 tools/torch_bench.py BENCH.json [--out MERGED.json]

Times are medians of CUDA-event-timed repetitions after warm-up; inputs are random (never zeros). The ratio column is
torch_us / mlx_us (above 1: mlx-native is faster). Also prints PyTorch's device start, cached allocation and pinned
host-to-device bandwidth, for the rows the engine reports about itself.
"""
import json
import statistics
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.cuda.init()
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
START_S = time.perf_counter() - t0
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DT = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def timed(fn, min_ms=200.0, max_reps=200):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once = max(start.elapsed_time(end), 1e-3)
    inner = max(1, min(1000, int(2.0 / once)))
    samples = []
    total = 0.0
    while total < min_ms and len(samples) < max_reps:
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / inner
        samples.append(ms)
        total += ms * inner
    return statistics.median(samples) * 1e3


def rand(shape, dt):
    return torch.rand(shape, device="cuda", dtype=DT[dt]) * 2 - 1


def case_fn(op, shape, dt):
    if op == "Copy":
        x = rand(shape, dt)
        y = torch.empty_like(x)
        return lambda: y.copy_(x)
    if op in ("Add", "Gelu"):
        a = rand(shape, dt)
        b = rand(shape, dt)
        out = torch.empty_like(a)
        if op == "Add":
            return lambda: torch.add(a, b, out=out)
        return lambda: F.gelu(a)
    if op == "LayerNorm":
        x = rand(shape, dt)
        w, b = rand(shape[-1:], dt), rand(shape[-1:], dt)
        return lambda: F.layer_norm(x, shape[-1:], w, b, 1e-5)
    if op == "Softmax":
        x = rand(shape, dt)
        return lambda: torch.softmax(x, -1)
    if op == "MatMul":
        m, k, n = shape
        a, b = rand([m, k], dt), rand([k, n], dt)
        out = torch.empty(m, n, device="cuda", dtype=DT[dt])
        return lambda: torch.matmul(a, b, out=out)
    if op == "FusedLinearAddGelu":
        m, k, n = shape
        x, w, b = rand([m, k], dt), rand([n, k], dt), rand([n], dt)
        return lambda: F.gelu(F.linear(x, w, b))
    if op == "FusedLinearAddResidual":
        # As BERT's output projections run in eager PyTorch: linear, then the residual add.
        m, k, n = shape
        x, w, b, r = rand([m, k], dt), rand([n, k], dt), rand([n], dt), rand([m, n], dt)
        return lambda: F.linear(x, w, b) + r
    if op == "Attention":
        q, k, v = (rand(shape, dt) for _ in range(3))
        return lambda: F.scaled_dot_product_attention(q, k, v)
    return None


def main():
    rows = json.load(open(sys.argv[1]))
    out_path = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    merged = []
    print(f"{'op':<20} {'shape':<22} {'dtype':<5} {'mlx_us':>11} {'torch_us':>11} {'torch/mlx':>9}")
    for r in rows:
        if r["device"] != "cuda":
            continue
        fn = case_fn(r["op"], r["shape"], r["dtype"])
        if fn is None:
            continue
        t = timed(fn)
        ratio = t / r["median_us"]
        merged.append({**r, "torch_us": t, "torch_over_mlx": ratio})
        print(f"{r['op']:<20} {str(r['shape']):<22} {r['dtype']:<5} {r['median_us']:>11.1f} {t:>11.1f} {ratio:>8.2f}x")
        del fn
        torch.cuda.empty_cache()
    # Facts the engine reports about itself, PyTorch's side.
    n = 256 << 20
    host = torch.empty(n, dtype=torch.uint8).pin_memory()
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    h2d = timed(lambda: dev.copy_(host, non_blocking=True), min_ms=300)
    d2h = timed(lambda: host.copy_(dev, non_blocking=True), min_ms=300)
    torch.empty(1 << 20, device="cuda")
    t = time.perf_counter()
    for _ in range(10000):
        torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
    alloc_us = (time.perf_counter() - t) / 10000 * 1e6
    print(f"\ntorch: device start {START_S * 1e3:.0f} ms (import + init), cached 1 MiB allocation {alloc_us:.2f} us "
          f"(includes tensor object creation), pinned H2D {n / h2d / 1e3:.1f} GB/s, pinned D2H {n / d2h / 1e3:.1f} GB/s")
    if out_path:
        json.dump(merged, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
