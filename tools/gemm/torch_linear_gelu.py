"""PyTorch side of tools/gemm/harness.cu: times x @ W^T, F.linear (bias) and gelu(F.linear) in both GELU forms for
[m, k, n] = [4096, 384, 1536] (bf16 and f16, W stored [n, k]), with the harness's method (median of event-timed
groups of launches after warm-up; L2 not flushed), eager and inside a CUDA graph.

Usage: python3 tools/gemm/torch_linear_gelu.py
"""

import torch
import torch.nn.functional as F


def time_us(fn, reps=20, samples=31):
    for _ in range(10):
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
        times.append(e0.elapsed_time(e1) * 1e3 / reps)
    times.sort()
    return times[len(times) // 2]


def graph_us(fn, reps=20):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return time_us(g.replay, 1) / reps


def main():
    m, k, n = 4096, 384, 1536
    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        x = (torch.rand(m, k, device="cuda") * 2 - 1).to(dtype)
        w = ((torch.rand(n, k, device="cuda") * 2 - 1) * (3 / k**0.5)).to(dtype)
        b = (torch.rand(n, device="cuda") * 2 - 1).to(dtype)
        cases = [
            ("matmul x@W^T", lambda: torch.matmul(x, w.t())),
            ("linear (bias)", lambda: F.linear(x, w, b)),
            ("gelu(linear) erf", lambda: F.gelu(F.linear(x, w, b))),
            ("gelu(linear) tanh", lambda: F.gelu(F.linear(x, w, b), approximate="tanh")),
        ]
        base = None
        for name, fn in cases:
            eager = time_us(fn)
            graph = graph_us(fn)
            base = base or eager
            print(f"torch {str(dtype):15s} {name:20s} eager {eager:7.2f} us  graph {graph:7.2f} us  "
                  f"eager/matmul {eager / base:.3f}")


if __name__ == "__main__":
    main()
