#!/usr/bin/env python3
"""bench_image_pillow.py - the peer of image.decode: Pillow's Image.open(path).load(), timed per image.

    python3 bench/io/bench_image_pillow.py FILE [REPS] [WARMUP]

One repetition opens the file by name and decodes all of it (load()), as a
Python data loader does; WARMUP untimed repetitions come first. Prints one
JSON line in bench_io's format: every repetition's seconds, the median, the
image's shape and dtype as numpy sees it, the sum of its samples (to check
that both sides decoded the same pixels), and Pillow's version with the
codec libraries it was built with.
"""
import numpy as np
import PIL
from PIL import Image, features

from peer_timing import arguments, report, timed


def decode(path):
    with Image.open(path) as im:
        im.load()


def main():
    path, reps, warmup = arguments(__doc__, 20, 2)
    secs, cpu, _ = timed(lambda: decode(path), reps, warmup)
    with Image.open(path) as im:
        a = np.asarray(im)
    libs = {k: features.version(k) for k in ("libjpeg_turbo", "zlib")}
    report(secs, cpu, impl=f"Pillow {PIL.__version__}", op="open+load", files=1, shape=list(a.shape),
           dtype=str(a.dtype), sum=float(a.sum(dtype=np.float64)), libs=libs)


if __name__ == "__main__":
    main()
