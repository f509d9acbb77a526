#!/usr/bin/env python3
"""make_ops_attn_fixtures.py - PyTorch reference outputs for dsp_attention (tests/test_ops_attn.c).

Run (one command, CPU only, deterministic: fixed seed, float32):

    python3 tests/reference/make_ops_attn_fixtures.py tests/data/ops_attn

Writes attention.safetensors. Case N holds tensors named "caseN.<name>":
  inputs    q [B, Hq, Lq, D], k and v [B, Hk, Lk, D], optional key_mask
            (u8 [B, Lk]) and global (i64 [n_global], HYBRID only)
  scalars   1-element tensors: kind, causal, window, topk, q_offset (i64;
            kind as dsp_attn_kind: 0 full, 1 causal, 2 local, 3 hybrid,
            4 top-k) and scale (f32; 0 means 1/sqrt(D))
  expected  caseN.expected (f32)

The reference is deliberately plain: an explicit boolean visibility mask
[B, 1, Lq, Lk] built from the documented rules, then
softmax((q @ kᵀ) * scale + mask) @ v with kv heads repeat_interleave'd for
grouped / multi-query attention; rows that see no key are 0. Query i sits
at position p = q_offset + i, key j at j:
  CAUSAL  j <= p
  LOCAL   |p - j| < window, and j <= p when causal
  HYBRID  LOCAL, or j global, or p global (and j <= p when causal)
  TOPK    among keys allowed by causal/key_mask, the topk best scores,
          ties to the lower j (a stable descending sort); all if fewer.
key_mask[b][j] == 0 hides key j everywhere.
"""
import os
import sys

import torch
from safetensors.torch import save_file

torch.manual_seed(4321)
torch.set_num_threads(1)

FULL, CAUSAL, LOCAL, HYBRID, TOPK = range(5)


def visibility(kind, B, Lq, Lk, q_offset, causal, window, glob, key_mask):
    p = torch.arange(Lq)[:, None] + q_offset
    j = torch.arange(Lk)[None, :]
    vis = torch.ones(Lq, Lk, dtype=torch.bool)
    if kind == CAUSAL:
        vis = j <= p
    elif kind in (LOCAL, HYBRID):
        vis = (p - j).abs() < window
        if kind == HYBRID and glob is not None:
            vis = vis | torch.isin(j, glob) | torch.isin(p, glob)
    if kind in (LOCAL, HYBRID, TOPK) and causal:
        vis = vis & (j <= p)
    vis = vis[None].expand(B, Lq, Lk)
    if key_mask is not None:
        vis = vis & key_mask.bool()[:, None, :]
    return vis[:, None]                                    # [B, 1, Lq, Lk]


def reference(q, k, v, kind, scale, causal=0, window=0, topk=0, q_offset=0,
              key_mask=None, glob=None):
    B, Hq, Lq, D = q.shape
    Hk, Lk = k.shape[1], k.shape[2]
    if scale == 0:
        scale = 1.0 / (D ** 0.5)
    kr = k.repeat_interleave(Hq // Hk, dim=1)
    vr = v.repeat_interleave(Hq // Hk, dim=1)
    scores = (q @ kr.transpose(-1, -2)) * scale            # [B, Hq, Lq, Lk]
    vis = visibility(kind, B, Lq, Lk, q_offset, causal, window, glob, key_mask)
    vis = vis.expand(B, Hq, Lq, Lk)
    if kind == TOPK:
        masked = scores.masked_fill(~vis, float("-inf"))
        order = torch.sort(masked, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(-1, order, torch.arange(Lk).expand_as(order).contiguous())
        vis = vis & (rank < topk)
    logits = scores + torch.zeros_like(scores).masked_fill(~vis, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    probs = torch.where(vis.any(-1, keepdim=True), probs, torch.zeros_like(probs))
    return probs @ vr


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/ops_attn"
    os.makedirs(outdir, exist_ok=True)
    tensors, n = {}, 0

    def case(B, Hq, Hk, Lq, Lk, D, kind, scale=0.0, causal=0, window=0, topk=0, q_offset=0,
             key_mask=None, glob=None, q=None, k=None, v=None):
        nonlocal n
        q = randn(B, Hq, Lq, D) if q is None else q
        k = randn(B, Hk, Lk, D) if k is None else k
        v = randn(B, Hk, Lk, D) if v is None else v
        g = torch.tensor(glob, dtype=torch.int64) if glob is not None else None
        exp = reference(q, k, v, kind, scale, causal, window, topk, q_offset, key_mask, g)
        named = dict(q=q, k=k, v=v, expected=exp, key_mask=key_mask, **{"global": g})
        for name, t in named.items():
            if t is not None:
                tensors[f"case{n}.{name}"] = t.contiguous()
        for name, val in dict(kind=kind, causal=causal, window=window, topk=topk,
                              q_offset=q_offset).items():
            tensors[f"case{n}.{name}"] = torch.tensor([val], dtype=torch.int64)
        tensors[f"case{n}.scale"] = torch.tensor([scale], dtype=torch.float32)
        n += 1

    def mask(B, Lk, zero):
        m = torch.ones(B, Lk, dtype=torch.uint8)
        for b, j in zero:
            m[b, j] = 0
        return m

    # 0 full, odd sizes, default scale
    case(2, 3, 3, 7, 7, 5, FULL)
    # 1 full, GQA 4 over 2, key_mask; batch 1 fully masked -> zeros
    km = mask(2, 9, [(0, 1), (0, 4), (0, 8)] + [(1, j) for j in range(9)])
    case(2, 4, 2, 5, 9, 8, FULL, scale=0.3, key_mask=km)
    # 2 causal prompt, GQA 8 query heads over 2 kv heads, batch 1
    case(1, 8, 2, 37, 37, 16, CAUSAL)
    # 3 causal chunk after a prefix (q_offset), MQA
    case(1, 4, 1, 3, 11, 7, CAUSAL, q_offset=8)
    # 4 long: 2048 keys, head_dim 64, GQA 2 over 1; the last 48 queries of the prompt
    case(1, 2, 1, 48, 2048, 64, CAUSAL, q_offset=2000)
    # 5 local, not causal, key_mask (batch 1 loses keys 5..7)
    case(2, 2, 2, 13, 13, 6, LOCAL, window=3, key_mask=mask(2, 13, [(1, 5), (1, 6), (1, 7)]))
    # 6 local causal, GQA
    case(1, 4, 2, 19, 19, 8, LOCAL, causal=1, window=4)
    # 7 hybrid, not causal; repeated and out-of-range globals
    case(1, 2, 1, 17, 17, 5, HYBRID, window=2, glob=[7, 0, 7, 30])
    # 8 hybrid causal with q_offset and key_mask
    case(2, 2, 2, 9, 14, 8, HYBRID, causal=1, window=3, q_offset=5, glob=[11, 2],
         key_mask=mask(2, 14, [(0, 2), (1, 6)]))
    # 9 top-k, not causal, MQA, key_mask
    case(2, 2, 1, 10, 23, 8, TOPK, topk=4, key_mask=mask(2, 23, [(0, 0), (1, 3), (1, 22)]))
    # 10 top-k causal with exact ties: small integers, scale a power of two
    qi = torch.randint(-2, 3, (1, 2, 12, 4)).float()
    ki = torch.randint(-1, 2, (1, 2, 12, 4)).float()
    case(1, 2, 2, 12, 12, 4, TOPK, scale=0.125, causal=1, topk=5, q=qi, k=ki)
    # 11 decode: the cache held 20 positions (q_offset = 20), the new token appended makes 21
    case(1, 8, 2, 1, 21, 16, CAUSAL, q_offset=20)
    # 12 local causal decode
    case(1, 2, 2, 1, 21, 8, LOCAL, causal=1, window=5, q_offset=20)
    # 13 top-k where fewer keys are allowed than topk (all kept)
    case(1, 1, 1, 6, 6, 8, TOPK, causal=1, topk=9)

    path = os.path.join(outdir, "attention.safetensors")
    save_file(tensors, path, metadata={"what": f"PyTorch {torch.__version__} reference for "
                                       "dspipe attention", "cases": str(n)})
    print(f"{path}: {n} cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
