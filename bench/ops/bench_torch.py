#!/usr/bin/env python3
"""bench_torch.py - the PyTorch side of bench/ops: same shapes, medians of 9 runs. Usage: bench_torch.py THREADS [conv]"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
torch.manual_seed(0)
RUNS = 9


def bench(fn, cpu=False):
    """median seconds per call (and of process CPU seconds when cpu)"""
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 >= 0.02 or reps >= 1 << 22:
            break
        reps *= 2
    ts, cs = [], []
    for _ in range(RUNS):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fn()
        ts.append((time.perf_counter() - t0) / reps)
        cs.append((time.process_time() - c0) / reps)
    if cpu:
        return sorted(ts)[RUNS // 2], sorted(cs)[RUNS // 2]
    return sorted(ts)[RUNS // 2]


# bench_ops.c's conv_shapes: c, oc, d, h, w, kd (3x3 in h and w, padding 1; 0 along kd 1)
CONV_SHAPES = [(64, 64, 16, 56, 56, 3), (128, 128, 8, 28, 28, 3), (256, 256, 4, 14, 14, 3),
               (512, 512, 2, 7, 7, 3), (32, 32, 16, 56, 56, 3), (16, 16, 16, 56, 56, 3),
               (8, 8, 16, 56, 56, 3), (4, 4, 16, 56, 56, 3), (16, 32, 8, 28, 28, 3),
               (64, 64, 2, 4, 4, 3), (512, 512, 1, 4, 4, 3), (64, 64, 16, 56, 56, 1),
               (144, 64, 16, 56, 56, 1)]


def conv_rows():
    print(f"# torch {torch.__version__} F.conv3d, medians of {RUNS} runs")
    for c, oc, d, h, w, kd in CONV_SHAPES:
        x = torch.rand(1, c, d, h, w) - 0.5
        wt = torch.rand(oc, c, kd, 3, 3) - 0.5
        pad = (1 if kd == 3 else 0, 1, 1)
        s, cpu = bench(lambda: F.conv3d(x, wt, None, 1, pad), cpu=True)
        gmac = oc * c * kd * 9 * d * h * w * 1e-9
        print(f"conv3d {c:3d}x{oc:3d} k{kd}x3x3 [{d:2d},{h:3d},{w:3d}]  {gmac:6.2f} GMAC"
              f"  torch {s * 1e3:9.2f} ms (cpu {cpu * 1e3:9.2f} ms)")


if len(sys.argv) > 2 and sys.argv[2] == "conv":
    with torch.inference_mode():
        conv_rows()
    sys.exit(0)

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
