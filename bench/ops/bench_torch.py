#!/usr/bin/env python3
"""bench_torch.py - the PyTorch side of bench/ops: same shapes, medians of 9 runs. Usage: bench_torch.py THREADS"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
torch.manual_seed(0)
RUNS = 9


def bench(fn):
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 >= 0.02 or reps >= 1 << 22:
            break
        reps *= 2
    ts = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        ts.append((time.perf_counter() - t0) / reps)
    return sorted(ts)[RUNS // 2]


with torch.inference_mode():
    for (m, k, n) in [(128, 384, 1536), (128, 1536, 384), (1, 384, 384), (1, 384, 1536)]:
        x, w, b = torch.rand(m, k) - 0.5, torch.rand(n, k) - 0.5, torch.rand(n)
        out = torch.empty(m, n)
        s = bench(lambda: torch.addmm(b, x, w.t(), out=out))
        s2 = bench(lambda: F.linear(x, w, b))
        print(f"linear     [{m},{k}]x[{n},{k}]^T {s * 1e6:12.2f} us {2 * m * n * k / s * 1e-9:8.2f} GFLOP/s"
              f"  (F.linear allocating: {s2 * 1e6:.2f} us)")
    for rows in (4096, 64):
        x = torch.rand(rows, 384) - 0.5
        w, b = torch.rand(384), torch.rand(384)
        rms = torch.nn.RMSNorm(384, eps=1e-6)
        cases = [("softmax", lambda: torch.softmax(x, -1)),
                 ("layernorm", lambda: F.layer_norm(x, (384,), w, b, 1e-12)),
                 ("rmsnorm", lambda: rms(x)),
                 ("gelu", lambda: F.gelu(x)),
                 ("gelu_tanh", lambda: F.gelu(x, approximate="tanh")),
                 ("silu", lambda: F.silu(x)),
                 ("add", lambda: x + b)]
        for name, fn in cases:
            s = bench(fn)
            print(f"{name:<10} {f'[{rows},384]':<22} {s * 1e6:12.2f} us")
