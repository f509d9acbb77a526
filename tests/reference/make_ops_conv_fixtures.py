#!/usr/bin/env python3
"""make_ops_conv_fixtures.py - PyTorch reference outputs for dspipe's convolution family (tests/test_ops_conv.c).

Run (one command, CPU only, deterministic: fixed seed, float32):

    python3 tests/reference/make_ops_conv_fixtures.py tests/data/ops_conv

Writes conv2d, conv3d, pool, adaptive_pool, batchnorm and upsample .safetensors.

Layout inside each file: case0, case1, ... numbered from 0 without gaps.
Case N holds tensors named "caseN.<name>":
  inputs    conv2d/conv3d: x w [b]      pool/adaptive_pool/upsample: x
            batchnorm: x mean var [w] [b]
  expected  caseN.expected (f32), the PyTorch result
  params    i64 tensors: conv: stride, padding, dilation ([nsp] each), groups ([1]);
            pool: kind ([1]: 0 max, 1 avg), kernel, stride (0 = kernel), padding;
            adaptive_pool: kind, out_size; upsample: out_size, mode ([1]: 0 nearest,
            1 linear), align ([1]); batchnorm: eps (f32 [1])
Weights may be f16/bf16 (the reference upcasts them with .float(), as dspipe does).

References: F.conv2d / F.conv3d, F.max_pool2d/3d, F.avg_pool2d/3d (count_include_pad
default), F.adaptive_avg_pool2d/3d, F.adaptive_max_pool2d/3d,
F.batch_norm(training=False), F.interpolate(nearest | bilinear | trilinear).
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(4321)
torch.set_num_threads(1)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale).contiguous()


def i64(v):
    return torch.tensor(list(v) if isinstance(v, (list, tuple)) else [v], dtype=torch.int64)


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


def conv(nsp):
    op = f"conv{nsp}d"
    f = Fixture(op)
    fn = F.conv2d if nsp == 2 else F.conv3d
    if nsp == 2:
        cases = [
            # xshape, oc, k, stride, pad, dil, groups, bias, wdtype
            ((1, 3, 7, 13), 5, (3, 3), (1, 1), (0, 0), (1, 1), 1, True, torch.float32),
            ((3, 4, 7, 13), 6, (3, 5), (2, 2), (1, 1), (1, 1), 1, False, torch.float32),
            ((1, 4, 9, 11), 4, (3, 3), (1, 2), (2, 1), (2, 2), 2, True, torch.float32),
            ((3, 6, 7, 13), 6, (3, 3), (1, 1), (1, 1), (1, 1), 6, True, torch.float32),  # depthwise
            ((2, 8, 7, 13), 12, (1, 1), (1, 1), (0, 0), (1, 1), 1, True, torch.float32),  # 1x1
            ((1, 8, 7, 13), 4, (1, 1), (2, 2), (0, 0), (1, 1), 2, False, torch.float32),  # strided 1x1
            ((1, 4, 7, 13), 8, (3, 3), (2, 1), (1, 1), (1, 1), 1, True, torch.float16),
            ((1, 4, 7, 13), 8, (3, 3), (1, 1), (1, 1), (2, 1), 2, True, torch.bfloat16),
            ((1, 3, 64, 64), 16, (7, 7), (2, 2), (3, 3), (1, 1), 1, False, torch.float32),  # ResNet stem
        ]
    else:
        cases = [
            ((1, 3, 5, 9, 11), 4, (3, 3, 3), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, True, torch.float32),
            ((3, 4, 5, 9, 11), 6, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), 2, False, torch.float32),
            ((1, 4, 5, 9, 11), 4, (2, 3, 3), (1, 1, 2), (1, 2, 1), (2, 2, 1), 4, True, torch.float32),  # depthwise
            ((1, 6, 5, 9, 11), 3, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, True, torch.float16),  # 1x1
            ((1, 3, 8, 32, 32), 8, (3, 7, 7), (1, 2, 2), (1, 3, 3), (1, 1, 1), 1, True, torch.float32),  # r3d stem
        ]
    for xs, oc, k, s, p, d, g, bias, wdt in cases:
        x = randn(*xs)
        w = randn(oc, xs[1] // g, *k, scale=0.3).to(wdt)
        b = randn(oc) if bias else None
        y = fn(x, w.float(), b, stride=s, padding=p, dilation=d, groups=g)
        f.case(x=x, w=w, b=b, stride=i64(s), padding=i64(p), dilation=i64(d), groups=i64(g),
               expected=y)
    return f


def pool():
    f = Fixture("pool")
    cases = [
        # xshape, kind, kernel, stride, pad
        ((1, 2, 7, 13), 0, (3, 3), (2, 2), (1, 1)),
        ((3, 2, 7, 13), 1, (3, 3), (2, 2), (1, 1)),
        ((1, 3, 7, 13), 0, (2, 3), (0, 0), (0, 0)),   # stride 0 = kernel
        ((1, 3, 7, 13), 1, (2, 4), (1, 3), (1, 2)),
        ((1, 2, 5, 9, 11), 0, (3, 3, 3), (2, 2, 2), (1, 1, 1)),
        ((3, 2, 5, 9, 11), 1, (2, 3, 3), (1, 2, 2), (1, 1, 0)),
        ((1, 16, 32, 32), 0, (3, 3), (2, 2), (1, 1)),  # after the ResNet stem
    ]
    for xs, kind, k, s, p in cases:
        x = randn(*xs)
        sk = tuple(ki if si == 0 else si for ki, si in zip(k, s))
        if len(k) == 2:
            y = (F.max_pool2d if kind == 0 else F.avg_pool2d)(x, k, sk, p)
        else:
            y = (F.max_pool3d if kind == 0 else F.avg_pool3d)(x, k, sk, p)
        f.case(x=x, kind=i64(kind), kernel=i64(k), stride=i64(s), padding=i64(p), expected=y)
    return f


def adaptive_pool():
    f = Fixture("adaptive_pool")
    fns = {(2, 0): F.adaptive_max_pool2d, (2, 1): F.adaptive_avg_pool2d,
           (3, 0): F.adaptive_max_pool3d, (3, 1): F.adaptive_avg_pool3d}
    cases = [
        ((1, 3, 7, 13), 1, (3, 5)),
        ((3, 3, 7, 13), 0, (3, 5)),
        ((1, 2, 7, 13), 1, (1, 1)),        # global average pool
        ((1, 2, 5, 7), 0, (8, 9)),         # larger than the input: overlapping windows
        ((1, 2, 5, 9, 11), 1, (2, 4, 3)),
        ((3, 2, 5, 9, 11), 0, (3, 2, 5)),
        ((1, 8, 8, 16, 16), 1, (1, 1, 1)),
    ]
    for xs, kind, o in cases:
        x = randn(*xs)
        y = fns[(len(o), kind)](x, o)
        if isinstance(y, tuple):
            y = y[0]
        f.case(x=x, kind=i64(kind), out_size=i64(o), expected=y)
    return f


def batchnorm():
    f = Fixture("batchnorm")
    cases = [
        ((1, 5, 7, 13), True, True, 1e-5),
        ((3, 4, 5, 9, 11), True, True, 1e-3),
        ((3, 6), True, False, 1e-5),       # [n, c]: BatchNorm1d on features
        ((2, 3, 17), False, False, 1e-5),  # no affine
        ((1, 16, 32, 32), True, True, 1e-5),
    ]
    for xs, wt, bs, eps in cases:
        c = xs[1]
        x = randn(*xs)
        mean, var = randn(c), torch.rand(c) + 0.1
        w = randn(c) if wt else None
        b = randn(c) if bs else None
        y = F.batch_norm(x, mean, var, w, b, training=False, eps=eps)
        f.case(x=x, mean=mean, var=var, w=w, b=b, eps=torch.tensor([eps], dtype=torch.float32),
               expected=y)
    return f


def upsample():
    f = Fixture("upsample")
    cases = [
        ((1, 2, 7, 13), (14, 26), 0, 0),
        ((3, 2, 7, 13), (10, 5), 0, 0),      # non-integer scales, down in w
        ((1, 2, 7, 13), (16, 31), 1, 0),
        ((1, 2, 7, 13), (16, 31), 1, 1),
        ((3, 2, 7, 13), (5, 9), 1, 0),       # bilinear downscale
        ((1, 2, 1, 13), (3, 7), 1, 1),       # a 1-pixel dim with align_corners
        ((1, 2, 5, 9, 11), (10, 18, 22), 0, 0),
        ((1, 2, 5, 9, 11), (7, 13, 6), 1, 0),
        ((3, 2, 5, 9, 11), (7, 13, 6), 1, 1),
        ((1, 8, 16, 16), (64, 64), 1, 0),    # a segmentation head's upsample
    ]
    for xs, o, mode, align in cases:
        x = randn(*xs)
        if mode == 0:
            y = F.interpolate(x, size=o, mode="nearest")
        else:
            y = F.interpolate(x, size=o, mode="bilinear" if len(o) == 2 else "trilinear",
                              align_corners=bool(align))
        f.case(x=x, out_size=i64(o), mode=i64(mode), align=i64(align), expected=y)
    return f


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_ops_conv_fixtures.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = 0
    for make in (lambda: conv(2), lambda: conv(3), pool, adaptive_pool, batchnorm, upsample):
        path, size = make().write(out)
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
