#!/usr/bin/env python3
"""train.py - train the tiny action model on make_clips.py clips and export it for video.classify.

    python3 examples/action_tiny/train.py [--work DIR] [--build BUILD] [--per-class 40]
                                          [--epochs 50] [--out examples/action_tiny/model]

1. Makes a training set (make_clips.py --seed 1) and a validation set (--seed 2) under
   --work (kept there, so a second run reuses them).
2. Decodes them with dspipe itself (decode_clips.pipe: video.decode sample=uniform
   clip_len=8 width=64 height=64), so the model is trained on exactly the pixels
   action_recognition.pipe will give it: same frame indices, same libswscale scaling.
3. Trains torchvision's VideoResNet (r3d_18's blocks and kernels, one block per layer,
   widths 8, 16, 32, 64) with AdamW, augmenting by mirroring, time reversal and
   transposition (which swap left/right, up/down, grow/shrink, left/up and right/down).
4. Writes model.safetensors + config.json (id2label, Kinetics mean/std) to --out through
   tests/reference/export_video_resnet.py, and prints the validation accuracy.

Deterministic: fixed seeds, one thread, torch.use_deterministic_algorithms. Needs torch,
torchvision, safetensors, numpy, the ffmpeg command and dspipe (installed, or --build).
"""
import argparse
import json
import os
import time

import torch
from torch import nn

from common import (ARCH, CLASSES, MODEL_DIR, WIDTHS, add_dspipe_args, build_model,
                    decode_clip_set, make_clip_set, pixel_values)
from export_video_resnet import KINETICS_MEAN, KINETICS_STD, write_folder

# the label a clip gets when it is mirrored left-right, mirrored up-down, or played backwards
HFLIP = {"left": "right", "right": "left"}
VFLIP = {"up": "down", "down": "up"}
REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up",
           "grow": "shrink", "shrink": "grow"}
TRANSPOSE = {"left": "up", "up": "left", "right": "down", "down": "right"}


def remap(table):
    return torch.tensor([CLASSES.index(table.get(c, c)) for c in CLASSES])


def augment(x, y, g):
    """Random mirrors, time reversal and transposition (H <-> W) of a batch x [B, 3, T, H, W]
    with labels y."""
    for dim, table in ((4, HFLIP), (3, VFLIP), (2, REVERSE)):
        pick = torch.rand(len(y), generator=g) < 0.5
        x[pick] = x[pick].flip(dim)
        y = torch.where(pick, remap(table)[y], y)
    pick = torch.rand(len(y), generator=g) < 0.5
    x[pick] = x[pick].transpose(3, 4)
    y = torch.where(pick, remap(TRANSPOSE)[y], y)
    return x, y


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    return (pred == y).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="action_work", help="scratch folder for clips (default action_work)")
    ap.add_argument("--out", default=MODEL_DIR)
    ap.add_argument("--per-class", type=int, default=40, help="training clips per class")
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    add_dspipe_args(ap)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    sets = {}
    for name, per_class, seed in (("train", args.per_class, 1), ("val", args.val_per_class, 2)):
        d = os.path.join(args.work, name)
        rows = make_clip_set(d, per_class, seed)
        clips = decode_clip_set(args, d, rows, args.frames, args.size)
        sets[name] = (pixel_values(clips, KINETICS_MEAN, KINETICS_STD),
                      torch.tensor([CLASSES.index(label) for _, label in rows]))
        print(f"{name}: {len(rows)} clips, {tuple(clips.shape[1:])} each")
    (xt, yt), (xv, yv) = sets["train"], sets["val"]

    model = build_model()
    print(f"model: {ARCH} blocks, widths {WIDTHS}, {sum(p.numel() for p in model.parameters())} parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 32
    steps = args.epochs * ((len(yt) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(yt), generator=g)
        total = 0.0
        for i in range(0, len(yt), batch):
            idx = order[i:i + batch]
            x, y = augment(xt[idx].clone(), yt[idx], g)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}: loss {total / len(yt):.4f}, val accuracy "
                  f"{accuracy(model, xv, yv):.3f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    write_folder(model, ARCH, args.out, CLASSES)
    with open(os.path.join(args.out, "config.json")) as f:
        config = json.load(f)
    # how the clips were made; action_recognition.pipe's defaults must match
    config["clip_len"], config["image_size"] = args.frames, args.size
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    acc = accuracy(model, xv, yv)
    print(f"{args.out}: validation accuracy {acc:.3f} on {len(yv)} clips (seed 2)")


if __name__ == "__main__":
    main()
