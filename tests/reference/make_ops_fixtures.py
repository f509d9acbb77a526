#!/usr/bin/env python3
"""make_ops_fixtures.py - PyTorch reference outputs for dspipe's numeric operators (tests/test_ops.c).

Run (one command, CPU only, deterministic: fixed seed, float32):

    python3 tests/reference/make_ops_fixtures.py tests/data/ops

Writes one <op>.safetensors per operator: linear, matmul, embedding, softmax,
layernorm, rmsnorm, gelu, silu, swiglu, add, mul, rope.

Layout inside each file: case0, case1, ... numbered from 0 without gaps.
Case N holds tensors named "caseN.<name>":
  inputs    linear: x w [b]        matmul: a b          embedding: ids table
            softmax: x [mask]      layernorm: x w [b]   rmsnorm: x w
            gelu/silu: x           swiglu: gate up      add/mul: a b
            rope: x pos
  expected  caseN.expected (f32), the PyTorch result
  scalars   1-element tensors: caseN.eps (f32), caseN.base (f32),
            caseN.rot_dims (i64, 0 = whole head), caseN.transpose_b (i64),
            caseN.kind (i64: 0 = gelu exact/erf, 1 = gelu tanh)
An optional input is simply absent. Weights may be f16/bf16; activations f32.
Where PyTorch gives NaN for a fully masked softmax row, the expected value is
0 (dspipe's documented behaviour). __metadata__ holds only a description.

References: F.linear (f16/bf16 weights upcast with .float(), which is exactly
what dspipe's kernels do), torch.matmul, F.embedding, torch.softmax with
masked_fill/additive masks, F.layer_norm, Hugging Face's LlamaRMSNorm,
F.gelu(approximate='none'|'tanh'), F.silu, and HF's rotate_half /
apply_rotary_pos_emb with the HF inv_freq formula.
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
torch.set_num_threads(1)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale).contiguous()


def scalar(v, dtype):
    return torch.tensor([v], dtype=dtype)


class Fixture:
    def __init__(self, op):
        self.op, self.tensors, self.n = op, {}, 0

    def case(self, **named):
        for k, v in named.items():
            if v is None:
                continue
            self.tensors[f"case{self.n}.{k}"] = v.contiguous()
        self.n += 1

    def write(self, outdir):
        path = os.path.join(outdir, f"{self.op}.safetensors")
        save_file(self.tensors, path,
                  metadata={"what": f"PyTorch {torch.__version__} reference for dspipe {self.op}",
                            "cases": str(self.n)})
        return path, os.path.getsize(path)


def specials_f16():
    # subnormals, the largest normal, inf and NaN: the converters must keep them all
    return torch.tensor([6e-8, -6e-8, 3e-5, 65504.0, float("inf"), float("-inf"),
                         float("nan"), -0.0], dtype=torch.float16)


def specials_bf16():
    return torch.tensor([1e-39, -1e-39, 3e38, float("inf"), float("-inf"), float("nan"),
                         -0.0, 1.0], dtype=torch.bfloat16)


def linear():
    f = Fixture("linear")
    for (xs, n, wdt, bias, bdt) in [
        ((7, 13), 37, torch.float32, True, torch.float32),
        ((2, 3, 129), 64, torch.float32, False, None),
        ((1, 64), 129, torch.float16, True, torch.float32),
        ((13, 37), 7, torch.bfloat16, True, torch.bfloat16),
        ((37, 129), 129, torch.float32, True, torch.float32),   # sgemm path
        ((37, 129), 300, torch.float16, True, torch.float16),   # several f16 panels
        ((5, 256), 300, torch.bfloat16, False, None),           # several bf16 panels
        ((1, 384), 384, torch.float32, True, torch.float32),    # batch 1, BERT width
    ]:
        k = xs[-1]
        x = randn(*xs)
        w = randn(n, k, scale=k ** -0.5).to(wdt)
        if wdt == torch.float16:
            w[0, :4] = torch.tensor([6e-8, -6e-8, 3e-5, -0.0], dtype=torch.float16)
        b = randn(n).to(bdt) if bias else None
        y = F.linear(x, w.float(), b.float() if b is not None else None)
        f.case(x=x, w=w, b=b, expected=y)
    return f


def matmul():
    f = Fixture("matmul")
    for (ash, bsh, tb) in [
        ((7, 13), (13, 37), 0),
        ((2, 3, 7, 13), (13, 5), 0),           # b broadcast over batch
        ((1, 13, 37), (4, 37, 7), 0),          # a broadcast over batch
        ((2, 4, 13, 64), (2, 1, 37, 64), 1),   # q·kᵀ with heads broadcast
        ((129, 64), (64, 129), 0),             # sgemm path
        ((1, 1, 64), (3, 129, 64), 1),
    ]:
        a, b = randn(*ash), randn(*bsh)
        y = torch.matmul(a, b.transpose(-1, -2) if tb else b)
        f.case(a=a, b=b, transpose_b=scalar(tb, torch.int64), expected=y)
    return f


def embedding():
    f = Fixture("embedding")
    t = randn(37, 16)
    ids = torch.randint(0, 37, (2, 7), dtype=torch.int64)
    f.case(ids=ids, table=t, expected=F.embedding(ids, t))
    t = randn(129, 8).half()
    t[5] = specials_f16()
    ids = torch.tensor([5, 0, 128, 5, 64, 3, 1, 2, 9, 100, 127, 5, 7], dtype=torch.int32)
    f.case(ids=ids, table=t, expected=F.embedding(ids.long(), t.float()))
    t = randn(50, 8).bfloat16()
    t[49] = specials_bf16()
    ids = torch.tensor([[49, 0, 3, 49, 17]], dtype=torch.int64)
    f.case(ids=ids, table=t, expected=F.embedding(ids, t.float()))
    return f


def softmax_ref(x, mask=None):
    if mask is not None:
        if mask.dtype in (torch.bool, torch.uint8):
            x = x.masked_fill(mask == 0, float("-inf"))
        else:
            x = x + mask
    return torch.nan_to_num(torch.softmax(x, dim=-1), nan=0.0)


def softmax():
    f = Fixture("softmax")
    x = randn(7, 13, scale=3)
    f.case(x=x, expected=softmax_ref(x))
    x = randn(1024, 64, scale=4)                         # long sequence
    f.case(x=x, expected=softmax_ref(x))
    x = randn(2, 4, 7, 13)
    m = torch.rand(2, 1, 7, 13) > 0.3                     # bool, broadcast over heads
    m[1, 0, 3, :] = False                                 # a fully masked row
    f.case(x=x, mask=m, expected=softmax_ref(x, m))
    x = randn(2, 3, 5, 37)
    m = torch.full((5, 37), float("-inf")).triu(1)        # additive causal mask
    m[4, :] = float("-inf")                               # fully masked
    m[2, :5] += -2.5
    f.case(x=x, mask=m, expected=softmax_ref(x, m))
    x = randn(3, 129, scale=10)
    m = (torch.rand(1, 129) > 0.5).to(torch.uint8)        # u8 padding mask
    f.case(x=x, mask=m, expected=softmax_ref(x, m))
    return f


def layernorm():
    f = Fixture("layernorm")
    for (xs, wdt, bias, eps, off) in [
        ((7, 13), torch.float32, True, 1e-5, 0.0),
        ((1024, 32), torch.float32, True, 1e-12, 0.0),    # long; BERT's eps
        ((2, 5, 129), torch.float32, False, 1e-5, 10.0),  # large mean
        ((3, 37), torch.float16, True, 1e-6, 0.0),
    ]:
        d = xs[-1]
        x = randn(*xs) + off
        w = (1 + randn(d, scale=0.2)).to(wdt)
        b = randn(d, scale=0.2).to(wdt) if bias else None
        y = F.layer_norm(x, (d,), w.float(), b.float() if b is not None else None, eps)
        f.case(x=x, w=w, b=b, eps=scalar(eps, torch.float32), expected=y)
    return f


def llama_rmsnorm(x, w, eps):
    # transformers' LlamaRMSNorm.forward
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return w * x


def rmsnorm():
    f = Fixture("rmsnorm")
    for (xs, wdt, eps) in [
        ((7, 13), torch.float32, 1e-6),
        ((1024, 32), torch.float32, 1e-5),
        ((2, 5, 129), torch.bfloat16, 1e-6),
        ((1, 37), torch.float16, 1e-5),
    ]:
        d = xs[-1]
        x = randn(*xs, scale=2)
        w = (1 + randn(d, scale=0.2)).to(wdt)
        f.case(x=x, w=w, eps=scalar(eps, torch.float32),
               expected=llama_rmsnorm(x, w.float(), eps))
    return f


def gelu():
    f = Fixture("gelu")
    for (xs, kind) in [((7, 13), 0), ((2, 129), 1), ((1024,), 0), ((1024,), 1)]:
        x = randn(*xs, scale=3)
        if xs == (1024,):
            x = torch.linspace(-10, 10, 1024)
        y = F.gelu(x, approximate="tanh" if kind else "none")
        f.case(x=x, kind=scalar(kind, torch.int64), expected=y)
    return f


def silu():
    f = Fixture("silu")
    for xs in [(7, 13), (3, 129)]:
        x = randn(*xs, scale=4)
        f.case(x=x, expected=F.silu(x))
    x = torch.linspace(-90, 90, 37)
    f.case(x=x, expected=F.silu(x))
    return f


def swiglu():
    f = Fixture("swiglu")
    for xs in [(7, 13), (2, 3, 37), (1, 129)]:
        g, u = randn(*xs, scale=3), randn(*xs)
        f.case(gate=g, up=u, expected=F.silu(g) * u)
    return f


BROADCASTS = [((7, 13), (13,)), ((2, 3, 37), (3, 1)), ((4, 129), (4, 129)),
              ((2, 1, 5), (1,)), ((2, 3, 4), (1, 3, 1)), ((1, 7), (1, 7))]


def add():
    f = Fixture("add")
    for (ash, bsh) in BROADCASTS:
        a, b = randn(*ash), randn(*bsh)
        f.case(a=a, b=b, expected=a + b)
    return f


def mul():
    f = Fixture("mul")
    for (ash, bsh) in BROADCASTS:
        a, b = randn(*ash), randn(*bsh)
        f.case(a=a, b=b, expected=a * b)
    return f


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_ref(x, pos, base, rot):
    hd = x.shape[-1]
    rot = rot or hd
    inv_freq = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.int64).float() / rot))
    freqs = pos.float()[..., None] * inv_freq            # [S, rot/2] or [B, S, rot/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    if pos.dim() == 1:
        cos, sin = cos[None, None], sin[None, None]
    else:
        cos, sin = cos[:, None], sin[:, None]             # unsqueeze_dim=1 (heads)
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


def rope():
    f = Fixture("rope")
    for (xs, batched, pdt, base, rot) in [
        ((1, 2, 7, 16), False, torch.int64, 10000.0, 16),
        ((2, 4, 13, 64), True, torch.int64, 10000.0, 64),   # pos [batch, seq]
        ((1, 3, 5, 80), False, torch.int32, 10000.0, 32),   # partial rotary
        ((2, 2, 37, 128), True, torch.int32, 500000.0, 0),  # rot_dims 0 = all
    ]:
        x = randn(*xs)
        b, _, s, _ = xs
        if batched:
            pos = torch.randint(0, 2048, (b, s), dtype=pdt)
        else:
            pos = torch.arange(3, 3 + s, dtype=pdt)
        f.case(x=x, pos=pos, base=scalar(base, torch.float32),
               rot_dims=scalar(rot, torch.int64), expected=rope_ref(x, pos, base, rot))
    return f


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_ops_fixtures.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = 0
    for make in (linear, matmul, embedding, softmax, layernorm, rmsnorm, gelu, silu, swiglu,
                 add, mul, rope):
        path, size = make().write(out)
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
