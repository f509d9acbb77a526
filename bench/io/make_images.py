#!/usr/bin/env python3
"""make_images.py - photo-like test images for bench/io: JPEG q90 and PNG 8-bit RGB / 16-bit gray.

    python3 bench/io/make_images.py OUT_DIR [--seed N]

Writes jpeg_1920x1080.jpg and jpeg_4000x3000.jpg (quality 90, 4:2:0: Pillow's
defaults, as a camera or a web export), png_rgb8_1920x1080.png and
png_gray16_2048x2048.png (compression level 6, zlib's and Pillow's default).
What a codec meets in a photo: smooth shading over the whole frame, many sharp
edges (overlapping filled shapes in unrelated colours), fine texture, slightly
soft focus and sensor noise; not a flat test pattern that compresses to nothing.
Same seed, same files. Needs numpy and Pillow.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def shading(rng, h, w, channels):
    """A smooth random field in [0, 1]: coarse noise upsampled bicubically."""
    planes = []
    for _ in range(channels):
        coarse = (rng.random((6, 8)) * 255).astype(np.uint8)
        planes.append(np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC),
                                 dtype=np.float32) / 255.0)
    return np.stack(planes, axis=-1)


def scene(rng, w, h, channels):
    """Shading, then a few hundred shapes with hard edges, blurred a little, plus noise:
    float32 H x W x channels in [0, 1]."""
    base = (shading(rng, h, w, channels) * 255).astype(np.uint8)
    img = Image.fromarray(base if channels == 3 else base[..., 0])
    draw = ImageDraw.Draw(img)
    scale = (w * h / (1920 * 1080)) ** 0.5
    for _ in range(int(400 * scale)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(4, 120) * scale
        fill = tuple(int(v) for v in rng.integers(0, 256, channels))
        fill = fill if channels == 3 else fill[0]
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=fill)
        elif kind == 1:
            pts = [(x + r * np.cos(a), y + r * np.sin(a))
                   for a in np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 8)))]
            draw.polygon(pts, fill=fill)
        else:
            draw.line([x, y, x + rng.uniform(-4, 4) * r, y + rng.uniform(-4, 4) * r],
                      fill=fill, width=max(1, int(rng.uniform(1, 6) * scale)))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    a = np.asarray(img, dtype=np.float32).reshape(h, w, channels) / 255.0
    # texture (a fine pattern modulated by the shading) and sensor noise
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a += 0.03 * np.sin(xx * 0.9 + 0.4 * yy)[..., None] * shading(rng, h, w, 1)
    a += rng.normal(0, 0.02, a.shape).astype(np.float32)
    return np.clip(a, 0, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for w, h in ((1920, 1080), (4000, 3000)):
        rgb = (scene(rng, w, h, 3) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(args.out, f"jpeg_{w}x{h}.jpg"), quality=90)
        if w == 1920:
            Image.fromarray(rgb).save(os.path.join(args.out, f"png_rgb8_{w}x{h}.png"),
                                      compress_level=6)
    gray = (scene(rng, 2048, 2048, 1)[..., 0] * 65535 + 0.5).astype(np.uint16)
    Image.fromarray(gray).save(os.path.join(args.out, "png_gray16_2048x2048.png"),
                               compress_level=6)


if __name__ == "__main__":
    main()
