#!/usr/bin/env python3
"""train.py - train the lung nodule classifier of ct.classify on generated 32^3 patches (1 mm voxels).

    python3 examples/ct_classifier/train.py [--out examples/ct_classifier/model]
                                            [--train 4000] [--test 1000] [--epochs 10] [--seed 1]
    python3 examples/ct_classifier/train.py --fixture tests/data/ct_classifier

Needs numpy, scipy, torch and safetensors (the pyenv python3), no DICOM: the
patches are drawn directly on a 1 mm grid, centred where ct.nodules would put
a candidate.

  positives  solid (-50..80 HU) and sub-solid (-700..-400 HU) nodules of
             3-30 mm, ellipsoids (axes within +-15 %) with soft edges, 30 %
             touching or sitting in a chest-wall plane (muscle, fat, ribs),
             a third with a vessel through, beside or ending in them, and
             other vessels around that may touch them;
  negatives  what the classical detector's false candidates look like:
             vessel segments (radius 1-4.5 mm, any direction), blunt vessel
             ends, bifurcations, crossings, pieces of pleura, airway walls;
on lung parenchyma (-850 HU +- 30) with 0-4 unrelated vessels around, a
blur of 0.3-0.8 voxel and noise of 8-25 HU correlated over 0.3-1 voxel (as
make_phantom.py's 20 HU after dicom.resample to 1 mm). Hard negatives from running the classical detector
are not mined (it gives no false positive on the phantom).

The model (config.json + model.safetensors, what encoders/ct/ctcnn.c reads):
blocks of conv3d (no bias) + batch norm + ReLU [+ max pool], a global
average pool and a linear layer to 2 logits (other, nodule). Input: the
patch clipped to [hu_min, hu_max] and scaled to [0, 1].

It prints the held-out accuracy and AUC. Deterministic: seeded numpy and
torch, one thread order (torch.use_deterministic_algorithms).

--fixture OUT writes what tests/test_ct_classifier.c compares against: a
tiny random-init model (OUT/model), and OUT/io.safetensors with a small HU
volume, candidate centres (some at the border), the patches cut from it and
PyTorch's logits.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
LUNG, BLOOD, SOFT, FAT, AIR, BONE = -850.0, 40.0, 40.0, -100.0, -1000.0, 700.0


# ---- the model ----------------------------------------------------------------
class NoduleCNN(torch.nn.Module):
    """conv3d + BN + ReLU (+ max pool) blocks, global average pool, linear."""

    def __init__(self, cfg):
        super().__init__()
        self.blocks = torch.nn.ModuleList()
        c = 1
        for b in cfg["blocks"]:
            k = b["kernel"]
            m = torch.nn.Module()
            m.conv = torch.nn.Conv3d(c, b["channels"], k, stride=b["stride"], padding=k // 2,
                                     bias=False)
            m.bn = torch.nn.BatchNorm3d(b["channels"], eps=cfg["bn_eps"])
            self.blocks.append(m)
            c = b["channels"]
        self.pools = [b["pool"] for b in cfg["blocks"]]
        self.fc = torch.nn.Linear(c, 2)

    def forward(self, x):
        for m, pool in zip(self.blocks, self.pools):
            x = torch.relu(m.bn(m.conv(x)))
            if pool > 1:
                x = torch.nn.functional.max_pool3d(x, pool)
        return self.fc(x.mean(dim=(2, 3, 4)))


def default_config(patch=32):
    return {
        "model_type": "ct_nodule_cnn",
        "patch_size": patch,
        "spacing_mm": 1.0,
        "hu_min": -1000.0,
        "hu_max": 400.0,
        "bn_eps": 1e-5,
        "blocks": [
            {"channels": 8, "kernel": 3, "stride": 2, "pool": 2},
            {"channels": 16, "kernel": 3, "stride": 1, "pool": 2},
            {"channels": 32, "kernel": 3, "stride": 1, "pool": 1},
        ],
        "labels": ["other", "nodule"],
    }


def normalise(hu, cfg):
    lo, hi = cfg["hu_min"], cfg["hu_max"]
    return (np.clip(hu, lo, hi) - lo) / (hi - lo)


def export(model, cfg, out, extra=None):
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    c = dict(cfg)
    if extra:
        c.update(extra)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")


# ---- patch drawing (mm on a 1 mm grid, centre voxel 16 at 0) ----------------------
def soft(depth, w):
    """Partial-volume fraction of a voxel depth mm inside a surface (edge w mm wide)."""
    return np.clip(depth / w + 0.5, 0.0, 1.0)


def paint(img, f, hu):
    img *= 1 - f
    img += hu * f


def unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def segment_dist(P, p0, p1):
    d = p1 - p0
    t = np.clip(((P - p0) @ d) / float(d @ d), 0.0, 1.0)
    return np.linalg.norm(P - p0 - t[..., None] * d, axis=-1)


class Painter:
    def __init__(self, rng, n):
        self.rng, self.n = rng, n
        ax = np.arange(n, dtype=np.float64) - n // 2
        self.P = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), axis=-1)  # [z, y, x, 3] mm

    def lung(self):
        g = unit(self.rng) * self.rng.uniform(0, 1.0)  # a slight gradient, HU per mm
        return (LUNG + self.rng.uniform(-30, 30) + self.P @ g).astype(np.float64)

    def vessel(self, img, p0, p1, r, hu=None):
        hu = self.rng.uniform(20, 60) if hu is None else hu
        paint(img, soft(r - segment_dist(self.P, p0, p1), self.rng.uniform(0.7, 1.3)), hu)

    def random_vessels(self, img, k, keep_off=None):
        """k vessels crossing the patch anywhere (away from keep_off mm around the centre)."""
        rng = self.rng
        for _ in range(k):
            d, r = unit(rng), rng.uniform(0.5, 3.0)
            for _ in range(20):
                a = rng.uniform(-self.n / 2, self.n / 2, 3)
                if keep_off is None or segment_dist(np.zeros(3), a - 40 * d, a + 40 * d) > keep_off + r:
                    self.vessel(img, a - 40 * d, a + 40 * d, r)
                    break

    def wall(self, img, normal, offset, rib=True):
        """Chest wall beyond the plane x . normal = offset: muscle, then fat, maybe a rib."""
        rng = self.rng
        s = self.P @ normal - offset
        w = rng.uniform(0.7, 1.3)
        paint(img, soft(s, w), rng.uniform(20, 60))
        paint(img, soft(s - rng.uniform(8, 16), w), FAT)
        if rib and rng.random() < 0.5:
            along = np.cross(normal, unit(rng))
            along /= np.linalg.norm(along)
            c = normal * (offset + rng.uniform(4, 9)) + rng.uniform(-10, 10) * np.cross(normal, along)
            self.vessel(img, c - 60 * along, c + 60 * along, rng.uniform(3, 5), BONE)

    def finish(self, img):
        """The scanner's blur and noise: Gaussian noise correlated over 0.3-1 voxel (what
        make_phantom.py's 20 HU look like after dicom.resample), 8-25 HU after smoothing."""
        rng = self.rng
        noise = gaussian_filter(rng.normal(size=img.shape), rng.uniform(0.3, 1.0), mode="wrap")
        noise *= rng.uniform(8, 25) / noise.std()
        return gaussian_filter(img, rng.uniform(0.3, 0.8), mode="nearest") + noise


def nodule_patch(pt):
    rng = pt.rng
    img = pt.lung()
    d = math.exp(rng.uniform(math.log(3.0), math.log(30.0)))
    r = d / 2
    subsolid = rng.random() < 0.3
    hu = rng.uniform(-700, -400) if subsolid else rng.uniform(-50, 80)
    c = rng.uniform(-1.5, 1.5, 3)
    # vessels around it, some of them touching it
    pt.random_vessels(img, rng.integers(0, 5), keep_off=r * rng.uniform(0.5, 1.2))
    if rng.random() < 0.3:  # juxtapleural: the wall plane touches or cuts the nodule
        n = unit(rng)
        pt.wall(img, n, float(c @ n) + r * rng.uniform(0.4, 1.05))
    if rng.random() < 0.35:  # a vessel through, beside or ending in it
        v = unit(rng)
        off = np.cross(v, unit(rng))
        a = c + off / max(np.linalg.norm(off), 1e-6) * rng.uniform(0, r + 1.5)
        end = a + 40 * v if rng.random() < 0.6 else a
        pt.vessel(img, a - 40 * v, end, rng.uniform(0.5, min(4.0, 0.8 * r)))
    axes = r * rng.uniform(0.85, 1.15, 3)
    axes *= r / np.cbrt(np.prod(axes))
    q = (pt.P - c) @ rotation(rng)
    rho = np.sqrt(((q / axes) ** 2).sum(-1))
    paint(img, soft((1 - rho) * r, rng.uniform(0.6, 1.4)), hu)
    if subsolid and d > 8 and rng.random() < 0.3:  # part-solid: a solid core
        paint(img, soft(r * rng.uniform(0.2, 0.5) - np.linalg.norm(pt.P - c, axis=-1), 1.0),
              rng.uniform(-50, 60))
    return pt.finish(img)


def other_patch(pt):
    """What the classical detector's false candidates look like."""
    rng = pt.rng
    img = pt.lung()
    kind = rng.choice(["vessel", "vessel", "end", "bifurcation", "bifurcation", "crossing",
                       "pleura", "airway"])
    r = rng.uniform(1.0, 4.5)
    c = rng.uniform(-1.5, 1.5, 3)
    pt.random_vessels(img, rng.integers(0, 5), keep_off=r + 2)
    if kind == "vessel":
        v = unit(rng)
        pt.vessel(img, c - 40 * v, c + 40 * v, r)
    elif kind == "end":  # a vessel cut by the lung mask or ending: a blunt stub
        v = unit(rng)
        pt.vessel(img, c - 40 * v, c + rng.uniform(-1, 3) * v, r)
    elif kind == "bifurcation":
        v = unit(rng)
        pt.vessel(img, c - 40 * v, c, r)
        for _ in range(2):
            nd = v + rng.normal(0, 0.55, 3)
            pt.vessel(img, c, c + 40 * nd / np.linalg.norm(nd), r * rng.uniform(0.66, 0.78))
    elif kind == "crossing":
        for _ in range(2):
            v = unit(rng)
            a = c + rng.uniform(-r / 2, r / 2, 3)
            pt.vessel(img, a - 40 * v, a + 40 * v, rng.uniform(0.7, 1.0) * r)
    elif kind == "pleura":  # the wall close by, a vessel running into it
        n = unit(rng)
        pt.wall(img, n, float(c @ n) + rng.uniform(-1, 4))
        if rng.random() < 0.6:
            pt.vessel(img, c - 40 * unit(rng), c + n * 10, r * 0.7)
    else:  # airway: a wall of soft tissue around air
        v = unit(rng)
        R = rng.uniform(2.5, 7.0)
        a = c + np.cross(v, unit(rng)) * rng.uniform(0, R)
        pt.vessel(img, a - 40 * v, a + 40 * v, R, rng.uniform(-50, 40))
        pt.vessel(img, a - 40 * v, a + 40 * v, R - rng.uniform(1.0, 2.0), AIR)
        if rng.random() < 0.5:  # the artery beside the bronchus
            perp = np.cross(v, unit(rng))
            b = a + perp / max(np.linalg.norm(perp), 1e-6) * (R + r + 0.5)
            pt.vessel(img, b - 40 * v, b + 40 * v, min(r, R))
    return pt.finish(img)


def make_set(n, seed, cfg):
    rng = np.random.default_rng(seed)
    pt = Painter(rng, cfg["patch_size"])
    x = np.empty((n, 1) + (cfg["patch_size"],) * 3, np.float32)
    y = np.zeros(n, np.int64)
    for i in range(n):
        y[i] = i % 2
        x[i, 0] = normalise(nodule_patch(pt) if y[i] else other_patch(pt), cfg)
    return torch.from_numpy(x), torch.from_numpy(y)


def auc(score, y):
    """Area under the ROC curve, by ranks (Mann-Whitney)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        p = torch.cat([torch.softmax(model(x[i:i + 256]), 1)[:, 1] for i in range(0, len(x), 256)])
    p, yy = p.numpy(), y.numpy()
    return float(((p >= 0.5) == (yy == 1)).mean()), float(auc(p, yy)), p


def train(args):
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    cfg = default_config()
    t0 = time.time()
    xtr, ytr = make_set(args.train, args.seed, cfg)
    xte, yte = make_set(args.test, args.seed + 1000, cfg)
    print(f"generated {len(xtr)} training and {len(xte)} held-out patches in {time.time() - t0:.0f} s",
          flush=True)
    model = NoduleCNN(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    g = torch.Generator().manual_seed(args.seed)
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            xb = xtr[idx]
            # the patch may come flipped or with its axes swapped: no preferred direction
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(2 + int(torch.randint(0, 3, (1,), generator=g)))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        acc, a, _ = evaluate(model, xte, yte)
        print(f"epoch {ep + 1}/{args.epochs}: loss {tot / len(xtr):.4f}, held-out accuracy "
              f"{acc * 100:.1f} %, AUC {a:.4f} ({time.time() - t0:.0f} s)", flush=True)
    export(model, cfg, args.out, {"training": heldout_report(model, xte, yte, args)})
    print(f"-> {args.out}/model.safetensors, config.json ({time.time() - t0:.0f} s)")


def report(args):
    from safetensors.torch import load_file
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.out, "config.json")) as f:
        cfg = json.load(f)
    model = NoduleCNN(cfg)
    r = model.load_state_dict(load_file(os.path.join(args.out, "model.safetensors")), strict=False)
    missing = [k for k in r.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or r.unexpected_keys:
        raise SystemExit(f"{args.out}: missing {missing}, unexpected {r.unexpected_keys}")
    model.eval()
    xte, yte = make_set(args.test, args.seed + 1000, cfg)
    cfg.pop("training", None)
    export(model, cfg, args.out, {"training": heldout_report(model, xte, yte, args)})


def heldout_report(model, xte, yte, args):
    """Accuracy and AUC on the held-out patches, and the screening operating point: the
    largest min_prob that still keeps 99 % of the held-out nodules."""
    acc, a, p = evaluate(model, xte, yte)
    yy = yte.numpy()
    pos, neg = np.sort(p[yy == 1]), p[yy == 0]
    op = round(float(np.floor(pos[int(0.01 * len(pos))] * 1000)) / 1000, 3)
    print(f"held-out ({len(xte)} patches): accuracy {acc * 100:.1f} %, AUC {a:.4f}")
    for t in (0.5, op):
        print(f"  min_prob {t:.3f}: nodules kept {(pos >= t).mean() * 100:.1f} %, "
              f"others dropped {(neg < t).mean() * 100:.1f} %")
    return {"script": "examples/ct_classifier/train.py", "seed": args.seed,
            "train_patches": args.train, "heldout_patches": args.test, "epochs": args.epochs,
            "heldout_accuracy": round(acc, 4), "heldout_auc": round(a, 4),
            "screening_min_prob": op, "screening_nodules_kept": round(float((pos >= op).mean()), 4),
            "screening_others_dropped": round(float((neg < op).mean()), 4)}


# ---- the parity fixture ---------------------------------------------------------------
def fixture(out):
    """A tiny random-init model with batch norm statistics far from identity, a 45 x 24 x 22
    volume, candidates inside and at the border, the patches and PyTorch's logits."""
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    cfg = default_config(patch=12)
    cfg["blocks"] = [{"channels": 3, "kernel": 3, "stride": 1, "pool": 2},
                     {"channels": 5, "kernel": 3, "stride": 2, "pool": 1},
                     {"channels": 4, "kernel": 1, "stride": 1, "pool": 1}]
    cfg["spacing_mm"] = 1.0
    model = NoduleCNN(cfg)
    with torch.no_grad():
        for m in model.blocks:
            m.conv.weight.copy_(0.5 * torch.randn(m.conv.weight.shape))
            m.bn.weight.copy_(1 + 0.3 * torch.randn(m.bn.weight.shape))
            m.bn.bias.copy_(0.2 * torch.randn(m.bn.bias.shape))
            m.bn.running_mean.copy_(0.3 * torch.randn(m.bn.running_mean.shape))
            m.bn.running_var.copy_(0.5 + torch.rand(m.bn.running_var.shape))
        model.fc.weight.copy_(0.15 * torch.randn(model.fc.weight.shape))
        model.fc.bias.copy_(0.1 * torch.randn(model.fc.bias.shape))
    model.eval()
    export(model, cfg, os.path.join(out, "model"))
    vol = rng.uniform(-1100, 600, (45, 24, 22)).astype(np.float32)
    centres = np.array([[10.2, 11.7, 9.9], [0.0, 0.0, 0.0], [44.4, 23.0, 21.6], [3.6, 20.5, 1.2],
                        [12.0, 2.49, 17.51]], np.float64)
    P = cfg["patch_size"]
    patches = np.full((len(centres), 1, P, P, P), AIR, np.float32)
    for n, c in enumerate(centres):
        s = [math.floor(v + 0.5) - P // 2 for v in c]
        for a in range(P):
            for b in range(P):
                for e in range(P):
                    k, j, i = s[0] + a, s[1] + b, s[2] + e
                    if 0 <= k < vol.shape[0] and 0 <= j < vol.shape[1] and 0 <= i < vol.shape[2]:
                        patches[n, 0, a, b, e] = vol[k, j, i]
    patches = normalise(patches, cfg).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(patches))
    save_file({"volume": torch.from_numpy(vol), "centres": torch.from_numpy(centres),
               "patches": torch.from_numpy(patches), "logits": logits.float().contiguous()},
              os.path.join(out, "io.safetensors"))
    print(f"-> {out}/model, {out}/io.safetensors: {len(centres)} patches of {P}^3")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "model"))
    ap.add_argument("--train", type=int, default=4000, help="training patches (half nodules)")
    ap.add_argument("--test", type=int, default=1000, help="held-out patches")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fixture", metavar="OUT", help="write the parity-test fixture instead")
    ap.add_argument("--report", action="store_true",
                    help="no training: score the model in --out on the held-out patches again "
                         "and rewrite its config.json's \"training\" (same --seed, --train, --test, "
                         "--epochs as it was trained with)")
    args = ap.parse_args()
    if args.fixture:
        fixture(args.fixture)
    elif args.report:
        report(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
