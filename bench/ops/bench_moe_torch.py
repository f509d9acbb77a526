#!/usr/bin/env python3
"""bench_moe_torch.py - the PyTorch side of the MoE benchmark: Hugging Face Mixtral's sparse MoE block, f32, medians of 7 runs.

Usage:
    bench_moe_torch.py THREADS [quick] [--dspipe BENCH_MOE] [--shapes I:K:T,...]
        time every shape (quick: intermediate size 1024 only; --shapes: only
        these) and print one line per shape. With --dspipe, also run BENCH_MOE serve (bench_moe.c) with
        DSPIPE_OPS_THREADS = OPENBLAS_NUM_THREADS = THREADS and interleave its
        runs with PyTorch's: every shape is timed in 7 rounds, each round one run
        of every variant, so load from other users of a shared machine falls on
        both sides alike; then print a table with the ratios.
    bench_moe_torch.py check DIR
        write reference outputs DIR/moe_I<inter>_k<k>_T<T>.npy for bench_moe's
        "check" mode, after checking that the re-implementations below equal
        transformers' own MixtralSparseMoeBlock (when transformers is installed)

The layer: 16 experts, hidden 1024, expert intermediate size 1024 and 512,
top-2 and top-4, tokens 1 ... 2048, all f32. Inputs and weights come from a
counter-based generator that bench_moe.c reproduces bit for bit (see
normal()), so both sides run the same layer on the same tokens and route
them the same way.

Three PyTorch forwards, all under torch.inference_mode():
  eager_v4  transformers 4.5x MixtralSparseMoeBlock: router nn.Linear,
            softmax, topk, renormalise, then a loop over the experts that got
            tokens (torch.where on the one-hot mask, index the tokens), each an
            MLP of three nn.Linear modules w2(silu(w1(x)) * w3(x)), weighted,
            index_add_ into the output.
  eager_v5  transformers 5.x "eager" MixtralExperts: the same loop, with gate
            and up stacked into one gate_up_proj [E, 2*inter, hidden] weight
            (one F.linear, then chunk).
  grouped   transformers 5.x default experts_implementation "grouped_mm":
            tokens sorted by expert, torch.nn.functional.grouped_mm over all
            experts at once, un-permute, sum over top_k.
The benchmark target is the loop ("a straightforward PyTorch
implementation"); run_moe.sh compares against the faster of eager_v4 and
eager_v5 and reports grouped alongside.
"""
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RUNS = 7
E, H = 16, 1024
INTERS = (1024, 512)
TOPKS = (2, 4)
TOKENS = (1, 8, 64, 256, 1024, 2048)
STD_W = 0.02          # expert and router weights ~ normal(0, 0.02), as HF initialises them
SEED_X, SEED_R, SEED_G, SEED_U, SEED_D = 1, 2, 3, 4, 5


def normal(seed, n, std, first=0):
    """Elements first .. first+n of stream `seed`: element i is Box-Muller of two
    uniforms from splitmix64's finaliser on (seed << 40) ^ (2i) and ^ (2i + 1),
    computed in float64, times std, rounded to float32 (bench_moe.c: gen_normal)."""
    out = np.empty(n, dtype=np.float32)
    c0 = np.uint64(0x9E3779B97F4A7C15)
    c1 = np.uint64(0xBF58476D1CE4E5B9)
    c2 = np.uint64(0x94D049BB133111EB)
    step = 1 << 22
    with np.errstate(over="ignore"):
        for s in range(0, n, step):
            m = min(step, n - s)
            i = np.arange(2 * (first + s), 2 * (first + s + m), dtype=np.uint64)
            z = ((np.uint64(seed) << np.uint64(40)) ^ i) + c0
            z = (z ^ (z >> np.uint64(30))) * c1
            z = (z ^ (z >> np.uint64(27))) * c2
            z = z ^ (z >> np.uint64(31))
            u = ((z >> np.uint64(40)).astype(np.float64) + 0.5) * (2.0 ** -24)
            v = np.sqrt(-2.0 * np.log(u[0::2])) * np.cos(2.0 * np.pi * u[1::2])
            out[s:s + m] = (v * std).astype(np.float32)
    return out


def weights(inter):
    g = torch.from_numpy(normal(SEED_G, E * inter * H, STD_W)).view(E, inter, H)
    u = torch.from_numpy(normal(SEED_U, E * inter * H, STD_W)).view(E, inter, H)
    d = torch.from_numpy(normal(SEED_D, E * H * inter, STD_W)).view(E, H, inter)
    r = torch.from_numpy(normal(SEED_R, E * H, STD_W)).view(E, H)
    return r, g, u, d


def tokens(T):
    return torch.from_numpy(normal(SEED_X, T * H, 1.0)).view(T, H)


class MixtralV4(nn.Module):
    """transformers 4.5x MixtralSparseMoeBlock.forward (inference, no jitter)."""

    class MLP(nn.Module):
        def __init__(self, g, u, d):
            super().__init__()
            inter, hidden = g.shape
            self.w1 = nn.Linear(hidden, inter, bias=False)
            self.w2 = nn.Linear(inter, hidden, bias=False)
            self.w3 = nn.Linear(hidden, inter, bias=False)
            self.w1.weight.data = g.clone()
            self.w3.weight.data = u.clone()
            self.w2.weight.data = d.clone()
            self.act_fn = nn.SiLU()

        def forward(self, hidden_states):
            current_hidden_states = self.act_fn(self.w1(hidden_states)) * self.w3(hidden_states)
            return self.w2(current_hidden_states)

    def __init__(self, r, g, u, d, top_k):
        super().__init__()
        self.num_experts, self.top_k = g.shape[0], top_k
        self.gate = nn.Linear(r.shape[1], r.shape[0], bias=False)
        self.gate.weight.data = r.clone()
        self.experts = nn.ModuleList([self.MLP(g[e], u[e], d[e]) for e in range(g.shape[0])])

    def forward(self, hidden_states):
        sequence_length, hidden_dim = hidden_states.shape
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(hidden_states.dtype)
        final_hidden_states = torch.zeros((sequence_length, hidden_dim), dtype=hidden_states.dtype)
        expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
        expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
        for expert_idx in expert_hit:
            expert_layer = self.experts[expert_idx]
            idx, top_x = torch.where(expert_mask[expert_idx].squeeze(0))
            current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)
            current_hidden_states = expert_layer(current_state) * routing_weights[top_x, idx, None]
            final_hidden_states.index_add_(0, top_x, current_hidden_states.to(hidden_states.dtype))
        return final_hidden_states


class MixtralV5(nn.Module):
    """transformers 5.x MixtralTopKRouter + MixtralExperts, "eager" or "grouped_mm"."""

    def __init__(self, r, g, u, d, top_k, grouped):
        super().__init__()
        self.num_experts, self.top_k, self.hidden_dim = g.shape[0], top_k, g.shape[2]
        self.router_weight = nn.Parameter(r.clone())
        self.gate_up_proj = nn.Parameter(torch.cat([g, u], dim=1).contiguous())
        self.down_proj = nn.Parameter(d.clone())
        self.act_fn = nn.SiLU()
        self.grouped = grouped

    def route(self, hidden_states):
        router_logits = F.linear(hidden_states, self.router_weight)
        router_probs = F.softmax(router_logits.float(), dim=-1)
        router_top_value, router_indices = torch.topk(router_probs, self.top_k, dim=-1)
        router_top_value /= router_top_value.sum(dim=-1, keepdim=True)
        return router_top_value, router_indices

    def eager(self, hidden_states, top_k_index, top_k_weights):
        final_hidden_states = torch.zeros_like(hidden_states)
        with torch.no_grad():
            expert_mask = F.one_hot(top_k_index, num_classes=self.num_experts + 1)
            expert_mask = expert_mask.permute(2, 1, 0)
            expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
        for expert_idx in expert_hit:
            expert_idx = expert_idx[0]
            if expert_idx == self.num_experts:
                continue
            top_k_pos, token_idx = torch.where(expert_mask[expert_idx])
            current_state = hidden_states[token_idx]
            gate, up = F.linear(current_state, self.gate_up_proj[expert_idx]).chunk(2, dim=-1)
            current_hidden_states = self.act_fn(gate) * up
            current_hidden_states = F.linear(current_hidden_states, self.down_proj[expert_idx])
            current_hidden_states = current_hidden_states * top_k_weights[token_idx, top_k_pos, None]
            final_hidden_states.index_add_(0, token_idx, current_hidden_states.to(final_hidden_states.dtype))
        return final_hidden_states

    def grouped_mm(self, hidden_states, top_k_index, top_k_weights):
        # transformers.integrations.moe.grouped_mm_experts_forward, no expert parallelism
        num_top_k = top_k_index.size(-1)
        num_tokens = hidden_states.size(0)
        hidden_dim = hidden_states.size(-1)
        sample_weights = top_k_weights.reshape(-1)
        expert_ids = top_k_index.reshape(-1)
        expert_ids_g, perm = torch.sort(expert_ids)
        selected_hidden_states_g = hidden_states[perm // num_top_k]
        sample_weights_g = sample_weights[perm]
        tokens_per_expert = torch.histc(expert_ids_g.float(), bins=self.num_experts, min=0,
                                        max=self.num_experts - 1)
        offsets = torch.cumsum(tokens_per_expert, dim=0, dtype=torch.int32)
        proj_out = F.grouped_mm(selected_hidden_states_g, self.gate_up_proj.transpose(-2, -1),
                                offs=offsets)
        gate, up = proj_out.chunk(2, dim=-1)
        proj_out = self.act_fn(gate) * up
        proj_out = F.grouped_mm(proj_out, self.down_proj.transpose(-2, -1), offs=offsets)
        weighted_out = proj_out * sample_weights_g.unsqueeze(-1)
        inv_perm = torch.empty_like(perm)
        inv_perm[perm] = torch.arange(perm.size(0))
        weighted_out = weighted_out[inv_perm]
        return weighted_out.view(num_tokens, num_top_k, hidden_dim).sum(dim=1)

    def forward(self, hidden_states):
        top_k_weights, top_k_index = self.route(hidden_states)
        if self.grouped:
            return self.grouped_mm(hidden_states, top_k_index, top_k_weights)
        return self.eager(hidden_states, top_k_index, top_k_weights)


def calibrate(run):
    """reps such that run(reps) takes >= 20 ms"""
    reps = 1
    while run(reps) < 0.02 and reps < 1 << 22:
        reps *= 2
    return reps


def torch_runner(fn):
    def run(reps):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return time.perf_counter() - t0
    return run


class Dspipe:
    """bench_moe serve, one process per thread count."""

    def __init__(self, path, threads):
        import subprocess
        env = dict(os.environ, DSPIPE_OPS_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
        self.p = subprocess.Popen([path, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=env, text=True, bufsize=1)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        ans = self.p.stdout.readline().strip()
        if not ans or ans.startswith("error"):
            raise RuntimeError(f"bench_moe serve: {line!r} -> {ans!r}")
        return ans

    def runner(self, variant, k):
        return lambda reps: float(self.ask(f"run {variant} {k} {reps}"))

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait()


def measure(runners):
    """median and min seconds per call of each runner, RUNS rounds interleaved"""
    reps = {n: calibrate(r) for n, r in runners.items()}
    times = {n: [] for n in runners}
    names = list(runners)
    for i in range(RUNS):
        for n in names[i % len(names):] + names[:i % len(names)]:
            times[n].append(runners[n](reps[n]) / reps[n])
    return ({n: sorted(t)[RUNS // 2] for n, t in times.items()},
            {n: min(t) for n, t in times.items()})


def models(inter, k, w):
    r, g, u, d = w
    return {"eager_v4": MixtralV4(r, g, u, d, k), "eager_v5": MixtralV5(r, g, u, d, k, False),
            "grouped": MixtralV5(r, g, u, d, k, True)}


def check(outdir):
    os.makedirs(outdir, exist_ok=True)
    try:
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except ImportError:
        MixtralSparseMoeBlock = None
        print("transformers not installed: the re-implementations are not checked against it")
    for inter in INTERS:
        w = weights(inter)
        for k in TOPKS:
            ms = models(inter, k, w)
            hf = {}
            if MixtralSparseMoeBlock is not None:
                for impl in ("eager", "grouped_mm"):
                    cfg = MixtralConfig(hidden_size=H, intermediate_size=inter,
                                        num_local_experts=E, num_experts_per_tok=k)
                    cfg._experts_implementation = impl
                    blk = MixtralSparseMoeBlock(cfg).eval()
                    blk.gate.weight.data = w[0].clone()
                    blk.experts.gate_up_proj.data = torch.cat([w[1], w[2]], dim=1).contiguous()
                    blk.experts.down_proj.data = w[3].clone()
                    hf[impl] = blk
            for T in (8, 64):
                x = tokens(T)
                with torch.inference_mode():
                    ys = {n: m(x) for n, m in ms.items()}
                    for n, blk in hf.items():
                        ys["transformers " + n] = blk(x.view(1, T, H)).view(T, H)
                ref = ys["eager_v4"]
                scale = ref.abs().max().item()
                for n, y in ys.items():
                    err = (y - ref).abs().max().item()
                    print(f"check I={inter} k={k} T={T}: {n:<24} max|y - eager_v4| = {err:.3g}"
                          f" (max|y| {scale:.3g})")
                    assert err <= 1e-5 * (1 + scale), n
                np.save(os.path.join(outdir, f"moe_I{inter}_k{k}_T{T}.npy"), ref.numpy())


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "check":
        torch.set_num_threads(1)
        check(sys.argv[2])
        return
    args = sys.argv[1:]
    dsp = None
    if "--dspipe" in args:
        i = args.index("--dspipe")
        dsp = args[i + 1]
        del args[i:i + 2]
    only = None
    if "--shapes" in args:
        i = args.index("--shapes")
        only = {tuple(int(v) for v in sh.split(":")) for sh in args[i + 1].split(",")}
        del args[i:i + 2]
    threads = int(args[0]) if args else 1
    quick = len(args) > 1 and args[1] == "quick"
    torch.set_num_threads(threads)
    d = Dspipe(dsp, threads) if dsp else None
    rows = []
    for inter in INTERS[:1] if quick else INTERS:
        if only and not any(sh[0] == inter for sh in only):
            continue
        w = weights(inter)
        if d:
            d.ask(f"layer {inter}")
        for k in TOPKS:
            ms = models(inter, k, w)
            for T in TOKENS:
                if only and (inter, k, T) not in only:
                    continue
                x = tokens(T)
                if d:
                    d.ask(f"x {T}")
                runners = {n: torch_runner(lambda m=m: m(x)) for n, m in ms.items()}
                if d:
                    # w8a8 / w4a8: the int8 / int4 experts on int8 activations
                    # (DSP_MOE_ACT_INT8)
                    for v in ("f32", "int8", "w8a8", "int4", "w4a8"):
                        runners["dspipe_" + v] = d.runner(v, k)
                with torch.inference_mode():
                    res, mins = measure(runners)
                line = " ".join(f"{n} {t * 1e6:.1f}" for n, t in res.items())
                print(f"moe I={inter} k={k} T={T} thr={threads} us: {line}", flush=True)
                line = " ".join(f"{n} {t * 1e6:.1f}" for n, t in mins.items())
                print(f"moe I={inter} k={k} T={T} thr={threads} min us: {line}", flush=True)
                rows.append((inter, k, T, res, mins))
            del ms
    if d:
        d.close()
        table(rows, threads)


def table(rows, threads):
    """markdown: medians in ms and the ratios the target is about (eager = the
    faster of eager_v4 and eager_v5; "min" ratios from each side's fastest run)"""
    print(f"\n| I | k | T | thr | torch eager_v4 | torch eager_v5 | torch grouped_mm | dspipe f32 "
          f"| dspipe int8 | dspipe int8 W8A8 | dspipe int4 | dspipe int4 W4A8 | eager / dspipe f32 "
          f"| eager / dspipe W8A8 | eager / W8A8 (min) | f32 / W8A8 | grouped_mm / dspipe f32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for inter, k, T, r, m in rows:
        eager = min(r["eager_v4"], r["eager_v5"])
        eager_min = min(m["eager_v4"], m["eager_v5"])
        ms = lambda n: f"{r[n] * 1e3:.3f}"
        print(f"| {inter} | {k} | {T} | {threads} | {ms('eager_v4')} | {ms('eager_v5')} | "
              f"{ms('grouped')} | {ms('dspipe_f32')} | {ms('dspipe_int8')} | {ms('dspipe_w8a8')} | "
              f"{ms('dspipe_int4')} | {ms('dspipe_w4a8')} | {eager / r['dspipe_f32']:.2f} | "
              f"{eager / r['dspipe_w8a8']:.2f} | {eager_min / m['dspipe_w8a8']:.2f} | "
              f"{r['dspipe_f32'] / r['dspipe_w8a8']:.2f} | {r['grouped'] / r['dspipe_f32']:.2f} |")


if __name__ == "__main__":
    main()
