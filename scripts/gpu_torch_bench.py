"""PyTorch on the same GPU, same shapes as `mlx-native bench` (the side-by-side column of issue 3).

Times with CUDA events around many repetitions after warm-up, median of samples, random inputs.
Writes rows shaped like mlx-native's BenchRow (device "torch") to the JSON path given as argv[1].
"""
import json
import statistics
import sys

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda"


def timeit(fn, reps=None, samples=15):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); fn(); e.record(); torch.cuda.synchronize()
    once = max(s.elapsed_time(e), 1e-3)
    reps = reps or max(1, min(200, int(5.0 / once)))
    out = []
    for _ in range(samples):
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e) / reps * 1e3)
    return statistics.median(out)


rows = []


def row(op, shape, dtype, us, flops=None, nbytes=None):
    r = {"op": op, "shape": shape, "dtype": dtype, "device": "torch", "median_us": us,
         "gflops": flops / us / 1e3 if flops else None, "gbps": nbytes / us / 1e3 if nbytes else None}
    rows.append(r)
    extra = f"{r['gbps']:.0f} GB/s" if nbytes else f"{r['gflops']:.0f} GFLOP/s" if flops else ""
    print(f"{op:<22} {str(shape):<24} {dtype:<5} {us:>10.1f} us  {extra}", flush=True)


f32, bf16 = torch.float32, torch.bfloat16
n = 268435456
x = torch.rand(n, device=dev)
y = torch.empty_like(x)
row("Copy", [n], "f32", timeit(lambda: y.copy_(x)), nbytes=8 * n)
del x, y
n = 67108864
a, b = torch.randn(n, device=dev), torch.randn(n, device=dev)
o = torch.empty_like(a)
row("Add", [n], "f32", timeit(lambda: torch.add(a, b, out=o)), nbytes=12 * n)
row("Gelu", [n], "f32", timeit(lambda: F.gelu(a)), nbytes=8 * n)
del a, b, o
x = torch.randn(16384, 4096, device=dev)
w, bb = torch.randn(4096, device=dev), torch.randn(4096, device=dev)
nb = 2 * x.numel() * 4 + 2 * 4096 * 4
row("LayerNorm", [16384, 4096], "f32", timeit(lambda: F.layer_norm(x, (4096,), w, bb, 1e-5)), nbytes=nb)
row("Softmax", [16384, 4096], "f32", timeit(lambda: torch.softmax(x, -1)), nbytes=2 * x.numel() * 4)
del x
for dt, (m, k, nn) in [(bf16, (4096, 384, 1536)), (f32, (4096, 4096, 4096)), (bf16, (8192, 8192, 8192))]:
    A, B = torch.randn(m, k, device=dev, dtype=dt), torch.randn(k, nn, device=dev, dtype=dt)
    row("MatMul", [m, k, nn], "bf16" if dt == bf16 else "f32", timeit(lambda: A @ B), flops=2 * m * k * nn)
X = torch.randn(4096, 384, device=dev, dtype=bf16)
W = torch.randn(1536, 384, device=dev, dtype=bf16)
Bv = torch.randn(1536, device=dev, dtype=bf16)
row("FusedLinearAddGelu", [4096, 384, 1536], "bf16", timeit(lambda: F.gelu(F.linear(X, W, Bv))), flops=2 * 4096 * 384 * 1536)
q, k_, v = (torch.randn(8, 16, 2048, 64, device=dev, dtype=bf16) for _ in range(3))
row("Attention", [8, 16, 2048, 64], "bf16", timeit(lambda: F.scaled_dot_product_attention(q, k_, v)),
    flops=4 * 8 * 16 * 2048 * 2048 * 64)
n = 64 << 20
hp = torch.rand(n).pin_memory()
hpage = torch.rand(n)
d = torch.empty(n, device=dev)
row("UploadPinned", [n], "f32", timeit(lambda: d.copy_(hp, non_blocking=True), samples=5), nbytes=4 * n)
row("DownloadPinned", [n], "f32", timeit(lambda: hp.copy_(d, non_blocking=True), samples=5), nbytes=4 * n)
row("UploadPageable", [n], "f32", timeit(lambda: d.copy_(hpage), samples=5), nbytes=4 * n)
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
        json.dump(rows, f, indent=1)
