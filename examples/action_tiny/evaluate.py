#!/usr/bin/env python3
"""evaluate.py - dspipe's accuracy with the action_tiny model on fresh clips, and its agreement with PyTorch.

    python3 examples/action_tiny/evaluate.py [--work DIR] [--build BUILD] [--seed 3]
                                             [--per-class 25] [--model examples/action_tiny/model]

1. Makes a fresh clip set with make_clips.py (--seed, 3 by default: neither the training
   seed 1 nor the validation seed 2) under --work.
2. Runs pipelines/action_recognition.pipe on its videos and reads predictions.csv.
3. Runs the same weights in PyTorch (torchvision's VideoResNet, f32, eval mode) on clips
   decoded without dspipe: every frame from the ffmpeg command (-vf
   scale=SIZE:SIZE:flags=bilinear -pix_fmt rgb24), the frames torch.linspace(0, N - 1,
   frames).long() picks (PyTorchVideo's UniformTemporalSubsample), normalised with the
   model's mean/std.
4. Prints dspipe's accuracy against the labels make_clips.py drew, a confusion table, the
   number of clips where dspipe's and PyTorch's top-1 differ, and the largest difference of
   the top-1 probability. Exits 1 when accuracy is below --min-accuracy (0.95) or a top-1
   differs.

Needs torch, torchvision, safetensors, numpy, the ffmpeg command and dspipe (installed, or
--build).
"""
import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from common import (CLASSES, MODEL_DIR, PIPELINE, add_dspipe_args, build_model, dspipe,
                    make_clip_set, pixel_values)


def ffmpeg_clip(path, frames, size):
    """u8 [frames, size, size, 3]: the video's frames uniformly subsampled, decoded and scaled
    by the ffmpeg command."""
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vf",
                          f"scale={size}:{size}:flags=bilinear", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    video = np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)
    return video[torch.linspace(0, len(video) - 1, frames).long().numpy()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="action_work", help="scratch folder (default action_work)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=25)
    ap.add_argument("--model", default=MODEL_DIR)
    ap.add_argument("--min-accuracy", type=float, default=0.95)
    add_dspipe_args(ap)
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    frames, size = config["clip_len"], config["image_size"]

    work = os.path.join(args.work, f"fresh_seed{args.seed}")
    rows = make_clip_set(work, args.per_class, args.seed)
    out = os.path.join(work, "predictions")
    rc = dspipe(args, PIPELINE, os.path.join(work, "videos"), out, "--set", f"model={args.model}",
                "--set", f"frames={frames}", "--set", f"size={size}")
    if rc != 0:
        sys.exit(f"action_recognition.pipe failed (exit {rc}); see {out}/errors.jsonl")
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        got = {os.path.relpath(r["path"], os.path.join(work, "videos")): r for r in csv.DictReader(f)}
    missing = [p for p, _ in rows if p not in got]
    if missing:
        sys.exit(f"dspipe gave no prediction for {len(missing)} clips, e.g. {missing[0]}")

    model = build_model()
    # the export drops only BatchNorm's num_batches_tracked counters
    keys = model.load_state_dict(load_file(os.path.join(args.model, "model.safetensors")), strict=False)
    if keys.unexpected_keys or any(not k.endswith("num_batches_tracked") for k in keys.missing_keys):
        sys.exit(f"{args.model}: weights do not fit the action_tiny network: {keys}")
    model.eval()
    clips = np.stack([ffmpeg_clip(os.path.join(work, "videos", p), frames, size) for p, _ in rows])
    x = pixel_values(clips, config["image_mean"], config["image_std"])
    with torch.no_grad():
        prob = torch.cat([model(x[i:i + 64]) for i in range(0, len(x), 64)]).softmax(1)
    torch_top = prob.argmax(1)

    correct = differ = 0
    max_dscore = 0.0
    confusion = [[0] * len(CLASSES) for _ in CLASSES]
    for i, (path, label) in enumerate(rows):
        ours = got[path]
        correct += ours["label"] == label
        confusion[CLASSES.index(label)][CLASSES.index(ours["label"])] += 1
        if ours["label"] != CLASSES[torch_top[i]]:
            differ += 1
            print(f"  {path}: dspipe {ours['label']}, pytorch {CLASSES[torch_top[i]]}")
        max_dscore = max(max_dscore, abs(float(ours["score"]) - prob[i, torch_top[i]].item()))
    acc = correct / len(rows)
    print("confusion (rows: true label, columns: dspipe's):")
    print("        " + " ".join(f"{c[:6]:>6}" for c in CLASSES))
    for c, r in zip(CLASSES, confusion):
        print(f"{c:>7} " + " ".join(f"{n:6d}" for n in r))
    print(f"dspipe accuracy: {correct}/{len(rows)} = {acc:.4f} (fresh clips, seed {args.seed})")
    print(f"top-1 differs from PyTorch on {differ} of {len(rows)} clips; "
          f"largest top-1 probability difference {max_dscore:.2e}")
    sys.exit(0 if acc >= args.min_accuracy and differ == 0 else 1)


if __name__ == "__main__":
    main()
