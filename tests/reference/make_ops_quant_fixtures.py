#!/usr/bin/env python3
"""make_ops_quant_fixtures.py - PyTorch references for dspipe's quantized linear and MoE operators (tests/test_ops_quant.c).

Run (one command, CPU only, deterministic: fixed seed, float32):

    python3 tests/reference/make_ops_quant_fixtures.py tests/data/ops_quant

Writes quant.safetensors and moe.safetensors. Cases are numbered case0,
case1, ... without gaps; tensors are named "caseN.<name>"; scalars are
1-element i64/f32 tensors; an optional input is absent.

quant.safetensors
  caseN.w (f32/f16/bf16 [out, in]; absent: use shared.w), caseN.x (absent:
  shared.x), caseN.b (optional; cases using shared.w use shared.b),
  caseN.kind (i64 1 = int8, 2 = int4), caseN.group (i64),
  caseN.q: the codes, i8 [out, in] for int8; for int4 u8 [out, in/2] packed as
  dspipe stores them (element 2j in the low nibble of byte j, 2j+1 in the high
  nibble, two's complement); caseN.scale (f32 [out, in/group]),
  caseN.expected = x @ (q * scale).T + b, caseN.y_f32 (or shared.y_f32)
  = x @ w.T + b (unquantized).
  shared.w is a [256, 512] standard-normal weight quantized four ways
  (int8/int4 x group 32/128) for the accuracy and memory report.
  The rule (dspipe's): per row and group of `group` inputs,
  scale = max|w| / 127 (int8) or / 7 (int4), all in float32; code =
  round-half-to-even(w / scale) clamped to [-127, 127] or [-8, 7]; a group of
  zeros has scale 0 and codes 0; dequantized weight = code * scale (float32).
  Computed in numpy float32 so every division is exactly IEEE's.

moe.safetensors
  caseN.x [T, dim], caseN.router [E, dim], caseN.gate/up [E, inter, dim],
  caseN.down [E, dim, inter], optional caseN.sgate/sup [S, inter, dim] and
  caseN.sdown [S, dim, inter] (shared experts), caseN.top_k, caseN.score
  (i64: 0 softmax, 1 sigmoid), caseN.renorm (i64), caseN.routed_scale (f32, 0
  means 1), caseN.expected [T, dim].
  The reference goes token by token as transformers' MixtralSparseMoeBlock /
  DeepSeek MoE do: scores, top-k (stable: equal scores keep the lower expert
  index first), optional renormalisation, routed_scale, plus shared experts.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(4321)
torch.set_num_threads(1)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale).contiguous()


def i64(v):
    return torch.tensor([v], dtype=torch.int64)


def f32(v):
    return torch.tensor([v], dtype=torch.float32)


def quantize_ref(w, kind, group):
    """codes (int8, unpacked) and scales by dspipe's rule, in numpy float32."""
    a = w.float().numpy().astype(np.float32)
    out, inn = a.shape
    g = a.reshape(out, inn // group, group)
    amax = np.abs(g).max(axis=-1)
    qmax = np.float32(127.0 if kind == 1 else 7.0)
    lo, hi = (-127, 127) if kind == 1 else (-8, 7)
    scale = (amax / qmax).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    v = (g / safe[..., None]).astype(np.float32)
    q = np.clip(np.rint(v), lo, hi)
    q = np.where(scale[..., None] > 0, q, 0).astype(np.int8)
    deq = (q.astype(np.float32) * scale[..., None]).astype(np.float32).reshape(out, inn)
    q = q.reshape(out, inn)
    if kind == 2:
        n = (q.astype(np.int16) & 0xF).astype(np.uint8)
        q = (n[:, 0::2] | (n[:, 1::2] << 4)).astype(np.uint8)
    return torch.from_numpy(q.copy()), torch.from_numpy(scale.copy()), torch.from_numpy(deq.copy())


class Fixture:
    def __init__(self, name):
        self.name, self.tensors, self.n = name, {}, 0

    def case(self, **named):
        for k, v in named.items():
            if v is not None:
                self.tensors[f"case{self.n}.{k}"] = v.contiguous()
        self.n += 1

    def write(self, outdir):
        path = os.path.join(outdir, f"{self.name}.safetensors")
        save_file(self.tensors, path,
                  metadata={"what": f"PyTorch {torch.__version__} reference for dspipe {self.name}",
                            "cases": str(self.n)})
        return path, os.path.getsize(path)


def quant():
    f = Fixture("quant")
    w = randn(256, 512)
    x = randn(4, 512)
    b = randn(256)
    y32 = F.linear(x, w, b)
    f.tensors.update({"shared.w": w, "shared.x": x, "shared.b": b, "shared.y_f32": y32})
    for kind, group in [(1, 32), (1, 128), (2, 32), (2, 128)]:
        q, s, deq = quantize_ref(w, kind, group)
        f.case(kind=i64(kind), group=i64(group), q=q, scale=s,
               expected=F.linear(x, deq, b))

    def small(w, x, b, kind, group):
        q, s, deq = quantize_ref(w, kind, group)
        f.case(w=w, x=x, b=b, kind=i64(kind), group=i64(group), q=q, scale=s,
               expected=F.linear(x, deq, b), y_f32=F.linear(x, w.float(), b))

    # batch 1, int4: a zero group, and exact .5 ties (scale 1 when max|w| == 7)
    w = randn(37, 64, scale=0.125)
    w[1, :32] = 0.0
    w[2, :32] = 0.0
    w[2, :6] = torch.tensor([7.0, 2.5, -2.5, 1.5, -0.5, 3.5])
    small(w, randn(1, 64), None, 2, 32)
    # int8 ties: scale 1 when max|w| == 127
    w = randn(5, 128)
    w[3, :] = 0.0
    w[3, :5] = torch.tensor([127.0, 2.5, -2.5, 0.5, -126.5])
    small(w, randn(2, 3, 128), randn(5), 1, 128)
    # f16 weight, int4 group 128, a longer batch
    small(randn(33, 256).half(), randn(67, 256), randn(33), 2, 128)
    # bf16 weight, int8 group 32
    small(randn(16, 32).bfloat16(), randn(3, 32), None, 1, 32)
    return f


def mlp(x, g, u, d):
    return F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), d)


def moe_ref(x, router, gate, up, down, top_k, score, renorm, routed_scale, sg, su, sd):
    """token by token, as transformers' Mixtral / DeepSeek MoE blocks"""
    rs = routed_scale if routed_scale != 0 else 1.0
    gate, up, down = gate.float(), up.float(), down.float()
    logits = F.linear(x, router.float())
    out = torch.zeros_like(x)
    used = set()
    for t in range(x.shape[0]):
        s = torch.softmax(logits[t], -1) if score == 0 else torch.sigmoid(logits[t])
        order = sorted(range(s.shape[0]), key=lambda e: -s[e].item())[:top_k]
        wts = s[order]
        if renorm:
            wts = wts / wts.sum()
        wts = wts * rs
        acc = torch.zeros(x.shape[1])
        for j, e in enumerate(order):
            used.add(e)
            acc += wts[j] * mlp(x[t], gate[e], up[e], down[e])
        if sg is not None:
            for e in range(sg.shape[0]):
                acc += mlp(x[t], sg[e].float(), su[e].float(), sd[e].float())
        out[t] = acc
    return out, used


def moe():
    f = Fixture("moe")

    def case(T, dim, inter, E, top_k, score, renorm, rs, S=0, wdt=torch.float32, router=None,
             must_skip=False):
        x = randn(T, dim)
        r = router if router is not None else randn(E, dim, scale=dim ** -0.5)
        g = randn(E, inter, dim, scale=dim ** -0.5).to(wdt)
        u = randn(E, inter, dim, scale=dim ** -0.5).to(wdt)
        d = randn(E, dim, inter, scale=inter ** -0.5).to(wdt)
        sg = su = sd = None
        if S:
            sg = randn(S, inter, dim, scale=dim ** -0.5)
            su = randn(S, inter, dim, scale=dim ** -0.5)
            sd = randn(S, dim, inter, scale=inter ** -0.5)
        y, used = moe_ref(x, r, g, u, d, top_k, score, renorm, rs, sg, su, sd)
        if must_skip:
            assert len(used) < E, "the case must leave an expert without tokens"
        f.case(x=x, router=r, gate=g, up=u, down=d, sgate=sg, sup=su, sdown=sd,
               top_k=i64(top_k), score=i64(score), renorm=i64(renorm),
               routed_scale=f32(rs), expected=y)

    case(7, 32, 32, 8, 2, 0, 1, 0.0)                  # Mixtral-like
    case(129, 32, 16, 16, 4, 1, 1, 2.5, S=2)          # DeepSeek-V3-like
    case(3, 32, 16, 8, 1, 0, 0, 0.0, must_skip=True)  # experts without tokens
    case(1, 37, 53, 3, 2, 0, 0, 0.0, S=1)             # odd dims, one token
    case(129, 37, 21, 4, 3, 1, 0, 1.5)                # odd dims, longer
    # f16 experts, bf16 router with zero rows: exact score ties
    r = randn(4, 24, scale=0.01)
    r[1:] = 0.0
    case(5, 24, 40, 4, 2, 0, 1, 0.0, wdt=torch.float16, router=r.bfloat16())
    return f


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_ops_quant_fixtures.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = 0
    for make in (quant, moe):
        path, size = make().write(out)
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
