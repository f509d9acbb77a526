#!/usr/bin/env python3
"""make_ops_seq_fixtures.py - PyTorch reference outputs for dspipe's graph and sequence operators (tests/test_ops_seq.c).

Run (one command, CPU only, deterministic: fixed seed, float32):

    python3 tests/reference/make_ops_seq_fixtures.py tests/data/ops_seq

Writes csr_aggregate.safetensors and lstm.safetensors, laid out as the
fixtures of make_ops_fixtures.py: case0, case1, ... numbered without gaps,
tensors named "caseN.<name>", the PyTorch result in caseN.expected (f32),
an optional input simply absent.

  csr_aggregate  indptr, indices (i32 or i64), x [num_src, f],
                 edge_weight (f32 [nnz], optional), kind (i64: 0 sum,
                 1 mean, 2 max). References: torch.zeros(...).index_add_
                 (sum), the same divided by the neighbour count (mean),
                 scatter_reduce(amax, include_self=False) then 0 for nodes
                 without neighbours (max). Graphs include isolated nodes,
                 self loops and duplicate edges, and one graph has no edge.
  lstm           x [batch, seq, in], weight_ih_l0, weight_hh_l0,
                 bias_ih_l0, bias_hh_l0 (state_dict names of torch.nn.LSTM,
                 batch_first=True), the same with _reverse for a
                 bidirectional layer, lengths (i32/i64 [batch], optional:
                 pack_padded_sequence(enforce_sorted=False) + LSTM +
                 pad_packed_sequence(total_length=seq)). Weights may be
                 bf16/f16: the reference runs the LSTM on the upcast weights.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

torch.manual_seed(4321)
torch.set_num_threads(1)


def scalar(v, dtype):
    return torch.tensor([v], dtype=dtype)


class Fixture:
    def __init__(self, op):
        self.op, self.tensors, self.n = op, {}, 0

    def case(self, **named):
        for k, v in named.items():
            if v is None:
                continue
            self.tensors[f"case{self.n}.{k}"] = v.contiguous().clone()
        self.n += 1

    def write(self, outdir):
        path = os.path.join(outdir, f"{self.op}.safetensors")
        save_file(self.tensors, path,
                  metadata={"what": f"PyTorch {torch.__version__} reference for dspipe {self.op}",
                            "cases": str(self.n)})
        return path, os.path.getsize(path)


def random_graph(n, num_src, avg_deg, isolated):
    """CSR with some isolated nodes, self loops (when square) and duplicate edges."""
    deg = torch.randint(0, 2 * avg_deg + 1, (n,))
    deg[torch.randperm(n)[:isolated]] = 0
    rows = []
    for i in range(n):
        nb = torch.randint(0, num_src, (int(deg[i]),))
        if len(nb) >= 2:
            nb[1] = nb[0]                      # a duplicate edge
        if len(nb) >= 3 and i < num_src:
            nb[2] = i                          # a self loop
        rows.append(nb)
    indices = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(deg, 0)
    return indptr, indices.to(torch.int64)


def csr_ref(indptr, indices, x, w, kind):
    n = indptr.numel() - 1
    f = x.shape[1]
    dst = torch.repeat_interleave(torch.arange(n), indptr[1:] - indptr[:-1])
    msg = x[indices]
    if w is not None:
        msg = msg * w[:, None]
    if kind in (0, 1):
        y = torch.zeros(n, f).index_add_(0, dst, msg)
        if kind == 1:
            cnt = (indptr[1:] - indptr[:-1]).float().clamp(min=1)
            y = y / cnt[:, None]
        return y
    y = torch.zeros(n, f).scatter_reduce(0, dst[:, None].expand(-1, f), msg, "amax",
                                         include_self=False)
    empty = indptr[1:] == indptr[:-1]
    y[empty] = 0
    return y


def csr_aggregate():
    f = Fixture("csr_aggregate")
    for (n, num_src, feat, deg, iso, ptr_dt, idx_dt) in [
        (7, 7, 5, 3, 2, torch.int64, torch.int64),     # square: self loops
        (37, 50, 16, 4, 5, torch.int32, torch.int32),
        (1, 3, 1, 3, 0, torch.int32, torch.int64),     # one node, mixed index dtypes
        (4, 6, 3, 0, 4, torch.int64, torch.int32),     # no edge at all
        (301, 301, 33, 6, 20, torch.int64, torch.int64),  # longer
    ]:
        indptr, indices = random_graph(n, num_src, deg, iso)
        x = torch.randn(num_src, feat)
        w = torch.rand(indices.numel()) * 2 - 0.5      # some negative weights for max
        for kind in (0, 1, 2):
            for weighted in (False, True):
                ew = w if weighted else None
                f.case(indptr=indptr.to(ptr_dt), indices=indices.to(idx_dt), x=x,
                       edge_weight=ew, kind=scalar(kind, torch.int64),
                       expected=csr_ref(indptr, indices, x, ew, kind))
    return f


def lstm():
    f = Fixture("lstm")
    for (inp, hid, batch, seq, bidir, lengths, len_dt, bias, wdt) in [
        (5, 7, 1, 1, False, None, None, True, None),
        (16, 32, 3, 50, False, None, None, True, None),
        (5, 7, 3, 50, True, None, None, True, None),
        (16, 32, 1, 1, True, None, None, True, None),
        (16, 32, 3, 50, True, [50, 17, 1], torch.int64, True, None),
        (5, 7, 3, 50, False, [17, 50, 1], torch.int32, True, None),   # unsorted
        (5, 7, 3, 50, True, [1, 17, 50], torch.int32, True, None),
        (5, 7, 3, 4, False, None, None, False, None),                  # no biases
        (5, 7, 2, 9, True, None, None, True, torch.bfloat16),
        (16, 7, 1, 9, False, None, None, True, torch.float16),
    ]:
        m = torch.nn.LSTM(inp, hid, num_layers=1, bias=bias, batch_first=True,
                          bidirectional=bidir)
        sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
        if wdt is not None:
            sd = {k: v.to(wdt) for k, v in sd.items()}
            m.load_state_dict({k: v.float() for k, v in sd.items()})
        x = torch.randn(batch, seq, inp)
        with torch.no_grad():
            if lengths is None:
                y, _ = m(x)
                lt = None
            else:
                lt = torch.tensor(lengths, dtype=len_dt)
                p = pack_padded_sequence(x, lt.long(), batch_first=True, enforce_sorted=False)
                yp, _ = m(p)
                y, _ = pad_packed_sequence(yp, batch_first=True, total_length=seq)
        f.case(x=x, lengths=lt, expected=y, **sd)
    return f


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_ops_seq_fixtures.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    total = 0
    for make in (csr_aggregate, lstm):
        path, size = make().write(out)
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
