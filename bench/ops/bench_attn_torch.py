#!/usr/bin/env python3
"""bench_attn_torch.py - the PyTorch side of the attention benchmark (bench_attn.c), and the table that joins both.

Usage:
    bench_attn_torch.py side THREADS BENCH_ATTN [quick | FILTER...]
                          the table: per case, runs of dspipe's bench_attn (a
                          "serve" child with the caller's DSPIPE_OPS_THREADS)
                          alternating with PyTorch's, so both see the same
                          load on a shared machine; medians of 9 runs each
                          (the table's ratio: torch time / dspipe time), and
                          the fastest of the 9 runs on each side. FILTERs
                          pick rows: kinds (full), heads (8/2) and sizes
                          (2048); a row is run when it matches one of the
                          given values of each field named, e.g.
                          "full 8/8 1024 2048" (a spot check, not the table)
    bench_attn_torch.py time THREADS [quick]   PyTorch alone, one line per case
    bench_attn_torch.py mem KIND N             peak RSS growth of one call (run once
                                               per process: run_attn.sh does that)

Shapes: batch 1, head_dim 64, 8 query heads over 8 kv heads (MHA) or over
2 kv heads (GQA), n = q_len = k_len in 128 ... 4096, f32, under
torch.inference_mode(). The PyTorch peer of each kind:
  full    F.scaled_dot_product_attention(q, k, v)                     [sdpa]
  causal  F.scaled_dot_product_attention(q, k, v, is_causal=True)     [sdpa]
  local   F.scaled_dot_product_attention with the boolean attn_mask
          0 <= i - j < 128 (causal sliding window)                    [sdpa+mask]
  topk    the straightforward implementation: s = (q @ kᵀ) * scale,
          causal masked_fill(-inf), topk(32), scatter the kept scores
          into a -inf matrix, softmax, @ v                            [eager]
GQA uses enable_gqa=True for SDPA and repeat_interleave for top-k.
Each figure is the median of 9 runs, each run repeating the call until it
takes >= 20 ms (as bench_attn.c does).
"""
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

RUNS = 9
D = 64
WINDOW = 128
TOPK = 32
NS = (128, 512, 1024, 2048, 4096)
HEADS = ((8, 8), (8, 2))
KINDS = ("full", "causal", "local", "topk")
PEER = {"full": "sdpa", "causal": "sdpa", "local": "sdpa+mask", "topk": "eager"}


def calibrate(fn):
    """calls per run: doubled until one run takes >= 20 ms"""
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if time.perf_counter() - t0 >= 0.02 or reps >= 1 << 22:
            return reps
        reps *= 2


def one_run(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def bench(fn):
    reps = calibrate(fn)
    return sorted(one_run(fn, reps) for _ in range(RUNS))[RUNS // 2]


def local_mask(n):
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    return (i - j >= 0) & (i - j < WINDOW)


def topk_attention(q, k, v, hq, hk):
    if hq != hk:
        k = k.repeat_interleave(hq // hk, dim=1)
        v = v.repeat_interleave(hq // hk, dim=1)
    n = q.shape[2]
    s = (q @ k.transpose(-1, -2)) * (1.0 / D ** 0.5)
    s.masked_fill_(torch.ones(n, n, dtype=torch.bool).triu_(1), float("-inf"))
    kk = min(TOPK, n)
    vals, idx = s.topk(kk, dim=-1)
    m = torch.full_like(s, float("-inf")).scatter_(-1, idx, vals)
    return torch.softmax(m, dim=-1) @ v


def make_call(kind, hq, hk, n):
    q = torch.rand(1, hq, n, D) - 0.5
    k = torch.rand(1, hk, n, D) - 0.5
    v = torch.rand(1, hk, n, D) - 0.5
    gqa = hq != hk
    if kind == "full":
        return lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    if kind == "causal":
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if kind == "local":
        mask = local_mask(n)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    return lambda: topk_attention(q, k, v, hq, hk)


def time_all(threads, quick):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with torch.inference_mode():
        for kind, hq, hk, n in cases(quick):
            s = bench(make_call(kind, hq, hk, n))
            print(f"{kind:<7} {hq}/{hk} {n:>6} {s * 1e3:12.4f} ms  {PEER[kind]}", flush=True)


def maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mem_one(kind, n):
    """Peak RSS growth of one call at n, less its output (n x 8 x 64 floats),
    after a warm-up call at n = 128 (as bench_attn.c does). For local, the
    n x n boolean mask SDPA needs is built inside the measured span."""
    torch.set_num_threads(1)
    with torch.inference_mode():
        make_call(kind, 8, 8, 128)()
        q, k, v = (torch.rand(1, 8, n, D) - 0.5 for _ in range(3))
        base = maxrss_bytes()
        if kind == "local":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=local_mask(n))
        elif kind == "topk":
            out = topk_attention(q, k, v, 8, 8)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=kind == "causal")
        grow = maxrss_bytes() - base
    print(f"{kind:<7} 8/8 {n:>6} {max(grow - out.numel() * 4, 0) / 2**20:10.1f} MiB  {PEER[kind]}")


def cases(quick, filters=()):
    ns = (128, 1024) if quick else NS
    kinds = [f for f in filters if f in KINDS]
    heads = [f for f in filters if "/" in f]
    sizes = [int(f) for f in filters if f.isdigit()]
    bad = [f for f in filters if f not in kinds and f not in heads and not f.isdigit()]
    if bad:
        sys.exit(f"unknown filter {bad[0]!r}: a kind ({', '.join(KINDS)}), HQ/HK or N")
    for hq, hk in HEADS:
        for kind in KINDS:
            for n in sizes or ns:
                if (not kinds or kind in kinds) and (not heads or f"{hq}/{hk}" in heads):
                    yield kind, hq, hk, n


def side(threads, bench_attn, quick, filters=()):
    """Per case, RUNS runs of each, alternating dspipe (a bench_attn serve
    child, idle on its pipe while PyTorch runs) and PyTorch, then the two
    medians: both see the same moments of a noisy shared machine."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"{'kind':<7} {'heads':>5} {'n':>6} {'dspipe ms':>11} {'torch ms':>11} {'torch/dsp':>9}"
          f"   {'min dsp':>9} {'min torch':>10} {'ratio':>6}  peer", flush=True)
    with torch.inference_mode():
        for kind, hq, hk, n in cases(quick, filters):
            child = subprocess.Popen([bench_attn, "serve", kind, str(hq), str(hk), str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            dreps = int(child.stdout.readline().split()[1])
            fn = make_call(kind, hq, hk, n)
            treps = calibrate(fn)
            dt, tt = [], []
            for _ in range(RUNS):
                time.sleep(0.02)        # PyTorch's OpenMP workers stop spinning
                child.stdin.write("run\n")
                child.stdin.flush()
                dt.append(float(child.stdout.readline()))
                tt.append(one_run(fn, treps))
            child.stdin.close()
            child.wait()
            dms, tms = sorted(dt)[RUNS // 2] * 1e3, sorted(tt)[RUNS // 2] * 1e3
            dmin, tmin = min(dt) * 1e3, min(tt) * 1e3
            print(f"{kind:<7} {f'{hq}/{hk}':>5} {n:>6} {dms:11.3f} {tms:11.3f} {tms / dms:8.2f}x"
                  f"   {dmin:9.3f} {tmin:10.3f} {tmin / dmin:5.2f}x  {PEER[kind]}", flush=True)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "side":
        quick = sys.argv[4:] == ["quick"]
        side(int(sys.argv[2]), sys.argv[3], quick, () if quick else sys.argv[4:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "time":
        time_all(int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "quick")
    elif len(sys.argv) == 4 and sys.argv[1] == "mem":
        mem_one(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
