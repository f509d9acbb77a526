#!/usr/bin/env python3
"""make_clips.py - labelled synthetic action clips: one shape moving one of eight ways, encoded by the ffmpeg CLI.

    python3 examples/action_tiny/make_clips.py OUT [--per-class 20] [--seed 1]
                                               [--size 112] [--frames 24] [--fps 12]
                                               [--labels FILE]

Writes OUT/<label>/<label>_<n>.<ext> and OUT/labels.csv (path,label, paths
relative to OUT; --labels writes it elsewhere, e.g. to keep OUT a folder of
videos only) for the classes

    left right up down rotate grow shrink still

Every clip has its own background (a colour gradient, optionally with
texture), shape (disc, square, triangle, cross; the rotating ones are never
discs, whose turning cannot be seen), colour, size, start position, speed and
noise, and is encoded with one of several codecs and containers (H.264/MP4,
VP9/WebM, MPEG-4/AVI, MJPEG/AVI, FFV1/MKV; those this ffmpeg lacks are
skipped), so a model must learn the motion, not a codec or a colour. The
same seed gives the same frames.

Needs numpy and the ffmpeg command (Debian: python3-numpy ffmpeg).
"""
import argparse
import csv
import math
import os
import shutil
import subprocess
import sys

import numpy as np

CLASSES = ["left", "right", "up", "down", "rotate", "grow", "shrink", "still"]
SHAPES = ["disc", "square", "triangle", "cross"]
# (extension, ffmpeg output arguments); the first that this ffmpeg can encode are used
CODECS = [
    ("mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "20"]),
    ("webm", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-deadline", "realtime",
              "-b:v", "0", "-crf", "32"]),
    ("avi", ["-c:v", "mpeg4", "-q:v", "3"]),
    ("avi", ["-c:v", "mjpeg", "-q:v", "3"]),
    ("mkv", ["-c:v", "ffv1"]),
]


def available_codecs():
    """The CODECS entries whose encoder this ffmpeg has."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                         text=True).stdout
    names = {line.split()[1] for line in out.splitlines()[10:] if len(line.split()) > 1}
    return [c for c in CODECS if c[1][1] in names]


def shape_mask(kind, X, Y, cx, cy, r, angle):
    """Coverage (0..1, anti-aliased over one pixel) of a shape of radius r
    centred at (cx, cy), turned by angle radians."""
    dx, dy = X - cx, Y - cy
    c, s = math.cos(-angle), math.sin(-angle)
    u, v = c * dx - s * dy, s * dx + c * dy  # shape coordinates
    if kind == "disc":
        d = r - np.hypot(u, v)
    elif kind == "square":
        d = r * 0.8 - np.maximum(np.abs(u), np.abs(v))
    elif kind == "cross":
        arm = r * 0.3
        d = np.maximum(np.minimum(arm - np.abs(u), r - np.abs(v)),
                       np.minimum(arm - np.abs(v), r - np.abs(u)))
    else:  # triangle: inside three half-planes
        d = np.full_like(u, np.inf)
        for k in range(3):
            a = 2 * math.pi * k / 3 + math.pi / 2
            d = np.minimum(d, r * 0.5 - (u * math.cos(a) + v * math.sin(a)))
    return np.clip(d + 0.5, 0.0, 1.0)


def background(rng, size):
    """A random two-colour gradient, sometimes with a soft texture."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * math.pi)
    Y, X = np.mgrid[0:size, 0:size] / (size - 1)
    t = np.clip(0.5 + (X - 0.5) * math.cos(a) + (Y - 0.5) * math.sin(a), 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    if rng.random() < 0.5:
        tex = np.sin(X * rng.uniform(5, 25) + rng.uniform(0, 6)) * \
            np.sin(Y * rng.uniform(5, 25) + rng.uniform(0, 6))
        bg += tex[..., None] * rng.uniform(5, 25)
    return bg


def clip_frames(rng, label, size, frames):
    """The frames of one clip, u8 [frames, size, size, 3]."""
    kind = rng.choice(SHAPES[1:] if label == "rotate" else SHAPES)
    bg = background(rng, size)
    color = rng.uniform(0, 255, 3)
    while np.abs(color - bg.mean(axis=(0, 1))).max() < 80:  # keep it visible
        color = rng.uniform(0, 255, 3)
    r0 = rng.uniform(0.10, 0.18) * size
    spin = rng.uniform(0.08, 0.2) * rng.choice([-1, 1])  # radians per frame
    noise = rng.uniform(2, 10)
    # grow / shrink: between a small radius and 1.6-2.4 times it
    small = rng.uniform(0.06, 0.10) * size
    big = small * rng.uniform(1.6, 2.4)
    if label in ("grow", "shrink"):
        r0 = big
    # start so that the whole path (at the largest radius) stays in the frame;
    # moving shapes cover 30-95% of the room they have
    lo, hi = r0 * 1.1, size - r0 * 1.1
    travel = rng.uniform(0.3, 0.95) * (hi - lo)
    speed = travel / max(1, frames - 1)  # pixels per frame
    cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.get(label, (0, 0))
    if dx:
        cx = rng.uniform(lo + travel, hi) if dx < 0 else rng.uniform(lo, hi - travel)
    if dy:
        cy = rng.uniform(lo + travel, hi) if dy < 0 else rng.uniform(lo, hi - travel)
    angle0 = rng.uniform(0, 2 * math.pi)
    jitter = 0.3 if label == "still" else 0.0  # a still shape is not frozen pixel for pixel
    Y, X = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        t = f / max(1, frames - 1)
        x = cx + dx * speed * f + rng.normal(0, jitter) if jitter else cx + dx * speed * f
        y = cy + dy * speed * f + rng.normal(0, jitter) if jitter else cy + dy * speed * f
        r = {"grow": small * (big / small) ** t,
             "shrink": big * (small / big) ** t}.get(label, r0)
        a = angle0 + (spin * f if label == "rotate" else 0.0)
        m = shape_mask(kind, X, Y, x, y, r, a)[..., None]
        img = bg * (1 - m) + color * m + rng.normal(0, noise, (size, size, 3))
        out[f] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def encode(frames, path, fps, codec_args):
    t, h, w, _ = frames.shape
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"] + codec_args + [path]
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=112, help="frame side in pixels (default 112)")
    ap.add_argument("--frames", type=int, default=24, help="frames per clip (default 24)")
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--codecs", default="all",
                    help="'all' (rotate through every available codec) or one extension")
    ap.add_argument("--labels", help="where labels.csv goes (default OUT/labels.csv)")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("make_clips.py: needs the ffmpeg command (apt-get install ffmpeg)")
    codecs = available_codecs()
    if args.codecs != "all":
        codecs = [c for c in codecs if c[0] == args.codecs]
    if not codecs:
        sys.exit("make_clips.py: this ffmpeg has none of the encoders asked for")
    rng = np.random.default_rng(args.seed)
    rows = []
    for label in CLASSES:
        os.makedirs(os.path.join(args.out, label), exist_ok=True)
    for n in range(args.per_class):
        for ci, label in enumerate(CLASSES):
            ext, cargs = codecs[(n * len(CLASSES) + ci) % len(codecs)]
            rel = os.path.join(label, f"{label}_{n:04d}.{ext}")
            encode(clip_frames(rng, label, args.size, args.frames),
                   os.path.join(args.out, rel), args.fps, cargs)
            rows.append((rel, label))
    with open(args.labels or os.path.join(args.out, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    print(f"make_clips: {len(rows)} clips ({args.per_class} per class, {len(CLASSES)} classes, "
          f"{args.frames} frames of {args.size}x{args.size} at {args.fps} fps, codecs "
          f"{', '.join(c[1][1] for c in codecs)}) -> {args.out}")


if __name__ == "__main__":
    main()
