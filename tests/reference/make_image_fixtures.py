#!/usr/bin/env python3
"""make_image_fixtures.py - PNG/JPEG files and the Pillow / torchvision results that tests/test_image.c checks.

    python3 tests/reference/make_image_fixtures.py [tests/data/image]

Needs numpy, Pillow, torch and torchvision (made with Pillow 13.0.0, torch 2.15,
torchvision 0.29.2; CPU, deterministic: fixed seeds, one thread).

Writes into the output folder:

  *.png, *.jpg        the images test_image.c decodes (37x29 unless said otherwise, so
                      JPEG MCUs and Adam7 passes are partial at the edges)
  expected.safetensors every expected array, named as below; images are HWC (HW for
                      nothing: gray images are H x W x 1), torch results CHW

PNG files come from two writers:
  - Pillow (gray8, gray_alpha8, rgb8, rgba8, palette, palette_trns, palette4, gray1,
    exif6.png), whose decode Pillow also gives: expected "decode/NAME" = np.array(im)
    after converting "1" to "L" and "P" to "RGB" / "RGBA";
  - a small writer in this script for what Pillow cannot write: 2/4/16-bit samples,
    gray+alpha and RGB(A) at 16 bits, Adam7 interlacing, a tRNS colour key, every PNG
    row filter (rows cycle through None, Sub, Up, Average, Paeth). Their expected
    decode is the numpy array they were made from; where Pillow can read them, this
    script asserts that Pillow agrees.
  "decode8/NAME" is a 16-bit file's expected result with depth=8: the high byte,
  which is what Pillow ("RGB;16B" raw modes) and libpng's png_set_strip_16 give.
  "convert/NAME_MODE" is Pillow's im.convert(MODE) of the 8-bit files
  (gray = "L", gray_alpha = "LA", rgb = "RGB", rgba = "RGBA").

JPEG files (Pillow's encoder, quality 90 unless said): rgb420, rgb422, rgb444, gray,
progressive, restart (restart markers every MCU row), orient1 .. orient8 (an EXIF
APP1 with Orientation = N; odd N little-endian "II", even N big-endian "MM", orient3
with more tags before Orientation), cmyk (for the unsupported-colour-space error).
Expected "decode/NAME" = np.array of Pillow's decode, and for orientN that of
ImageOps.exif_transpose. exif6.png carries the same tag in a PNG eXIf chunk.

Error fixtures: huge.png (a valid IHDR of 100000 x 100000, one tiny IDAT) and huge.jpg
(an SOF0 of 60000 x 60000 and 16 bytes of scan data): both must be refused before allocating.

Resize (Pillow's Image.resize, box = whole image, no reducing_gap):
  "resize/src_MODE"                 the source, MODE in rgb, gray, rgba, gray_alpha
                                    (37 x 29; the alpha has 0, 255 and values between)
  "resize/MODE_FILTER_WxH"          Pillow's result, FILTER in nearest, bilinear,
                                    bicubic, box, hamming, lanczos (box and hamming
                                    on rgb only); 8 sizes for rgb, 5 for the others
Float resize (torchvision.transforms.functional.resize on a float CHW tensor, which is
torch.nn.functional.interpolate(align_corners=False, antialias=...)):
  "fresize/src"                     f32 [2, 29, 37] in [0, 1]
  "fresize/FILTER_aa_WxH"           antialias=True, FILTER in bilinear, bicubic
  "fresize/bilinear_noaa_WxH"       antialias=False
  "fresize/shorter_S"               i64 [2] = (H, W) torchvision picks for size=[S]
  "fresize/shorter_S_max_M"         the same with max_size=M
Normalize (torchvision ToTensor + Normalize on the rgb source):
  "normalize/imagenet", "normalize/clip"   f32 CHW
Centre crop (torchvision CenterCrop on the PIL image; a crop larger than the image
pads with zeros first):
  "crop/HxW"                        u8 HWC
Pad (torchvision F.pad on the CHW u8 tensor, padding [left, top, right, bottom]):
  "pad/src"                         the top-left 7 x 9 pixels of the rgb source
  "pad/MODE_L_T_R_B"                u8 HWC, MODE in constant (fill 7), edge, reflect,
                                    symmetric
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from safetensors.numpy import save_file

torch.set_num_threads(1)
W, H = 37, 29
OUT = {}


def put(name, arr):
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    OUT[name] = arr


# ---------------------------------------------------------------------------------------------
# source images
# ---------------------------------------------------------------------------------------------
def make_rgb(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = x * 255 / max(w - 1, 1)
    g = y * 255 / max(h - 1, 1)
    b = 128 + 110 * np.sin(x / 3.0) * np.cos(y / 4.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 18, (h, w, 3))
    img[h // 3:h // 2, w // 4:w // 2] = [255, 0, 0]       # hard edges, clipping values
    img[h // 2:h // 2 + 3, :] = [0, 255, 255]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_alpha(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = (x * 7 + y * 11) % 256
    a = np.where(x < 5, 0, a)
    a = np.where(y < 4, 255, a)
    a = np.where((x > w - 6) & (y > h - 8), rng.integers(1, 255, (h, w)), a)
    return a.astype(np.uint8)


def to_gray(rgb):
    # Pillow's "L": ITU-R 601-2 with 16-bit fixed-point weights
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


RGB = make_rgb(W, H, 1)
ALPHA = make_alpha(W, H, 2)
GRAY = to_gray(RGB)
RGBA = np.dstack([RGB, ALPHA])
GA = np.dstack([GRAY, ALPHA])


# ---------------------------------------------------------------------------------------------
# a small PNG writer: every colour type, 1-16 bits, Adam7, all five row filters
# ---------------------------------------------------------------------------------------------
def chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_row(row, bits):
    """row: 1-D array of samples -> bytes (big-endian 16-bit, MSB-first sub-byte)."""
    if bits == 16:
        return row.astype(">u2").tobytes()
    if bits == 8:
        return row.astype(np.uint8).tobytes()
    per = 8 // bits
    n = (len(row) + per - 1) // per
    out = bytearray(n)
    for i, v in enumerate(row):
        out[i // per] |= int(v) << (8 - bits * (i % per + 1))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, raw in enumerate(rows):
        ft = (first_filter + i) % 5
        f = bytearray(len(raw))
        for j in range(len(raw)):
            a = raw[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f[j] = (raw[j] - pred) & 0xFF
        out.append(ft)
        out += f
        prev = raw
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def write_png(path, samples, color_type, bits, interlace=False, palette=None, trns=None,
              extra=b""):
    """samples: H x W x C array of sample values (palette indices for type 3)."""
    h, w, c = samples.shape
    bpp = max(1, bits * c // 8)
    data = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for k, (x0, y0, dx, dy) in enumerate(passes):
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        rows = [pack_row(sub[y].reshape(-1), bits) for y in range(sub.shape[0])]
        data += filter_rows(rows, bpp, k)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0,
                                      1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += extra
    png += chunk(b"IDAT", zlib.compress(bytes(data), 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def pillow_array(path, mode=None):
    im = Image.open(path)
    im.load()
    if mode:
        im = im.convert(mode)
    return np.array(im)


def check_same(name, a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 2:
        a = a[:, :, None]
    if b.ndim == 2:
        b = b[:, :, None]
    assert a.shape == b.shape and np.array_equal(a, b), f"{name}: Pillow disagrees"


def make_pngs(d):
    # --- Pillow-written 8-bit files ---------------------------------------------------------
    for name, arr, mode in (("gray8", GRAY, "L"), ("gray_alpha8", GA, "LA"), ("rgb8", RGB, "RGB"),
                            ("rgba8", RGBA, "RGBA")):
        p = os.path.join(d, name + ".png")
        Image.fromarray(arr, mode).save(p)
        put("decode/" + name, pillow_array(p))
        check_same(name, OUT["decode/" + name], arr)
        for conv, pm in (("gray", "L"), ("gray_alpha", "LA"), ("rgb", "RGB"), ("rgba", "RGBA")):
            put(f"convert/{name}_{conv}", pillow_array(p, pm))

    # palette, 8-bit, 200 colours; with per-entry alpha; and a 4-bit palette
    pim = Image.fromarray(RGB, "RGB").quantize(colors=200, dither=Image.Dither.NONE)
    p = os.path.join(d, "palette.png")
    pim.save(p)
    assert Image.open(p).mode == "P"
    put("decode/palette", pillow_array(p, "RGB"))
    pal_t = pim.copy()
    n_pal = len(pal_t.getpalette()) // 3
    pal_t.info["transparency"] = bytes((i * 37) % 256 for i in range(n_pal))
    p = os.path.join(d, "palette_trns.png")
    pal_t.save(p, transparency=pal_t.info["transparency"])
    put("decode/palette_trns", pillow_array(p, "RGBA"))
    p4 = Image.fromarray(RGB, "RGB").quantize(colors=12, dither=Image.Dither.NONE)
    p = os.path.join(d, "palette4.png")
    p4.save(p, bits=4)
    with open(p, "rb") as f:
        assert f.read()[24] == 4, "palette4.png is not 4-bit"
    put("decode/palette4", pillow_array(p, "RGB"))

    # 1-bit gray (mode "1"): decodes to 0 / 255
    p = os.path.join(d, "gray1.png")
    Image.fromarray(GRAY > 128).convert("1").save(p)
    put("decode/gray1", pillow_array(p, "L"))

    # --- own writer --------------------------------------------------------------------------
    rng = np.random.default_rng(7)
    for bits in (2, 4):
        v = (GRAY.astype(np.int32) >> (8 - bits)).astype(np.uint8)
        p = os.path.join(d, f"gray{bits}.png")
        write_png(p, v[:, :, None], 0, bits)
        want = (v.astype(np.int32) * (255 // ((1 << bits) - 1))).astype(np.uint8)
        put(f"decode/gray{bits}", want)
        check_same(p, pillow_array(p), want)

    g16 = (GRAY.astype(np.uint16) * 257 + rng.integers(0, 256, GRAY.shape)).astype(np.uint16)
    rgb16 = (RGB.astype(np.uint16) * 257 ^ rng.integers(0, 256, RGB.shape)).astype(np.uint16)
    a16 = (ALPHA.astype(np.uint16) * 257).astype(np.uint16)
    for name, arr, ct, interlace in (
            ("gray16", g16[:, :, None], 0, False),
            ("gray_alpha16", np.dstack([g16, a16]), 4, False),
            ("rgb16", rgb16, 2, False),
            ("rgba16", np.dstack([rgb16, a16]), 6, False),
            ("gray16_interlaced", g16[:, :, None], 0, True)):
        p = os.path.join(d, name + ".png")
        write_png(p, arr, ct, 16, interlace)
        put("decode/" + name, arr)
        put("decode8/" + name, (arr >> 8).astype(np.uint8))
        if ct == 0:
            check_same(p, pillow_array(p), arr)           # Pillow: "I;16"
        elif ct == 2:
            check_same(p, pillow_array(p), arr >> 8)      # Pillow: "RGB" from the high bytes

    for name, arr, ct in (("rgb8_interlaced", RGB, 2), ("rgba8_interlaced", RGBA, 6),
                          ("gray_alpha8_interlaced", GA, 4)):
        p = os.path.join(d, name + ".png")
        write_png(p, arr, ct, 8, interlace=True)
        put("decode/" + name, arr)
        check_same(p, pillow_array(p), arr)

    # RGB with a tRNS colour key: the key colour becomes alpha 0, everything else 255
    key = RGB[H // 3, W // 4]                      # the red block
    p = os.path.join(d, "rgb_trns.png")
    write_png(p, RGB, 2, 8, trns=struct.pack(">HHH", *[int(k) for k in key]))
    want = np.dstack([RGB, np.where((RGB == key).all(-1), 0, 255).astype(np.uint8)])
    put("decode/rgb_trns", want)
    check_same(p, pillow_array(p, "RGBA"), want)
    # gray with a tRNS key
    gkey = int(GRAY[0, 0])
    p = os.path.join(d, "gray_trns.png")
    write_png(p, GRAY[:, :, None], 0, 8, trns=struct.pack(">H", gkey))
    want = np.dstack([GRAY, np.where(GRAY == gkey, 0, 255).astype(np.uint8)])
    put("decode/gray_trns", want)
    check_same(p, pillow_array(p, "LA"), want)

    # tiny and one-row images
    p = os.path.join(d, "one_pixel.png")
    write_png(p, RGB[:1, :1], 2, 8)
    put("decode/one_pixel", RGB[:1, :1])
    p = os.path.join(d, "one_row.png")
    write_png(p, RGB[:1, :], 2, 8, interlace=True)
    put("decode/one_row", RGB[:1, :])

    # EXIF orientation in a PNG eXIf chunk (Pillow writes it)
    ex = Image.Exif()
    ex[0x0112] = 6
    p = os.path.join(d, "exif6.png")
    Image.fromarray(RGB).save(p, exif=ex.tobytes())
    im = Image.open(p)
    put("decode/exif6", np.array(ImageOps.exif_transpose(im)))
    put("decode/exif6_raw", np.array(im))

    # absurd dimensions: a valid header, no real image data
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2,
                                                           0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    with open(os.path.join(d, "huge.png"), "wb") as f:
        f.write(png)


# ---------------------------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------------------------
def exif_bytes(orientation, big_endian, more_tags=False):
    """APP1 payload "Exif\\0\\0" + a TIFF header + IFD0 with Orientation (and maybe more)."""
    e = ">" if big_endian else "<"
    entries = []
    extra = b""
    n_entries = 3 if more_tags else 1
    data_off = 8 + 2 + 12 * n_entries + 4
    if more_tags:
        make = b"dspipe test\0"
        entries.append(struct.pack(e + "HHII", 0x010F, 2, len(make), data_off))
        extra += make
        entries.append(struct.pack(e + "HHI", 0x0110, 2, 4) + b"cam\0")
    entries.append(struct.pack(e + "HHIH", 0x0112, 3, 1, orientation) + b"\0\0")
    tiff = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "I", 8)
    tiff += struct.pack(e + "H", n_entries) + b"".join(entries) + struct.pack(e + "I", 0) + extra
    return b"Exif\0\0" + tiff


def make_jpegs(d):
    src = Image.fromarray(RGB)
    cases = [("rgb420", src, dict(quality=90, subsampling=2)),
             ("rgb422", src, dict(quality=90, subsampling=1)),
             ("rgb444", src, dict(quality=95, subsampling=0)),
             ("gray", Image.fromarray(GRAY, "L"), dict(quality=90)),
             ("progressive", src, dict(quality=85, progressive=True)),
             ("restart", src, dict(quality=90, restart_marker_rows=1))]
    for name, im, kw in cases:
        p = os.path.join(d, name + ".jpg")
        im.save(p, "JPEG", **kw)
        put("decode/" + name, pillow_array(p))
    with open(os.path.join(d, "restart.jpg"), "rb") as f:
        assert b"\xff\xdd" in f.read(), "restart.jpg has no DRI marker"
    for k in range(1, 9):
        p = os.path.join(d, f"orient{k}.jpg")
        src.save(p, "JPEG", quality=90, exif=exif_bytes(k, k % 2 == 0, more_tags=(k == 3)))
        im = Image.open(p)
        assert im.getexif().get(0x0112) == k, f"orient{k}.jpg: Pillow reads another orientation"
        put(f"decode/orient{k}", np.array(ImageOps.exif_transpose(im)))
    put("decode/orient_raw", pillow_array(os.path.join(d, "orient1.jpg")))
    # CMYK: valid JPEG, a colour space dspipe does not convert
    Image.fromarray(RGB).convert("CMYK").save(os.path.join(d, "cmyk.jpg"), "JPEG", quality=90)

    # SOF0 claiming 60000 x 60000, then EOI: refused before any allocation
    sof = struct.pack(">BHHB", 8, 60000, 60000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    with open(os.path.join(d, "rgb420.jpg"), "rb") as f:
        good = f.read()
    # keep the tables (DQT, DHT) of a real file so the header parses; swap its SOF
    i = good.index(b"\xff\xc0")
    n = struct.unpack(">H", good[i + 2:i + 4])[0]
    head = good[:i] + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
    rest = good[i + 2 + n:]
    j = rest.index(b"\xff\xda")
    sos = rest[j:j + 2 + struct.unpack(">H", rest[j + 2:j + 4])[0]]
    with open(os.path.join(d, "huge.jpg"), "wb") as f:
        f.write(head + rest[:j] + sos + b"\0" * 16 + b"\xff\xd9")


# ---------------------------------------------------------------------------------------------
# resize, normalize, crop, pad
# ---------------------------------------------------------------------------------------------
FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
           "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
SIZES = [(11, 7), (16, 16), (45, 35), (37, 13), (64, 29), (1, 1), (5, 40), (100, 3)]
FSIZES = [(11, 7), (16, 16), (45, 35), (37, 13), (1, 1), (5, 40)]


def make_resize():
    srcs = {"rgb": (RGB, "RGB"), "gray": (GRAY, "L"), "rgba": (RGBA, "RGBA"),
            "gray_alpha": (GA, "LA")}
    for mname, (arr, mode) in srcs.items():
        put(f"resize/src_{mname}", arr)
        im = Image.fromarray(arr, mode)
        for fname, f in FILTERS.items():
            # (40, 6): the vertical pass first (height shrinks much more than width)
            sizes = SIZES if mname == "rgb" else SIZES[:4] + [(40, 6)]
            if mname != "rgb" and fname in ("box", "hamming"):
                continue
            for (w, h) in sizes:
                out = np.array(im.resize((w, h), f))
                put(f"resize/{mname}_{fname}_{w}x{h}", out)

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, H, W, generator=g, dtype=torch.float32)
    OUT["fresize/src"] = x.numpy()
    for fname, mode in (("bilinear", T.InterpolationMode.BILINEAR),
                        ("bicubic", T.InterpolationMode.BICUBIC)):
        for (w, h) in FSIZES:
            y = TF.resize(x, [h, w], interpolation=mode, antialias=True)
            OUT[f"fresize/{fname}_aa_{w}x{h}"] = y.numpy()
    for (w, h) in FSIZES[:4]:
        y = TF.resize(x, [h, w], interpolation=T.InterpolationMode.BILINEAR, antialias=False)
        OUT[f"fresize/bilinear_noaa_{w}x{h}"] = y.numpy()
    for s, m in ((24, None), (10, None), (29, None), (50, None), (20, 22), (7, 8)):
        y = TF.resize(x, [s], antialias=True, max_size=m)
        key = f"fresize/shorter_{s}" + (f"_max_{m}" if m else "")
        OUT[key] = np.array(y.shape[1:], np.int64)

    t = TF.to_tensor(Image.fromarray(RGB))
    OUT["normalize/imagenet"] = TF.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).numpy()
    OUT["normalize/clip"] = TF.normalize(t, [0.48145466, 0.4578275, 0.40821073],
                                         [0.26862954, 0.26130258, 0.27577711]).numpy()

    pim = Image.fromarray(RGB)
    for (ch, cw) in ((24, 24), (10, 17), (29, 37), (28, 36), (1, 1), (33, 40), (31, 20)):
        put(f"crop/{ch}x{cw}", np.array(T.CenterCrop((ch, cw))(pim)))

    put("pad/src", RGB[:7, :9])
    chw = torch.from_numpy(RGB[:7, :9]).permute(2, 0, 1).contiguous()
    for mode in ("constant", "edge", "reflect", "symmetric"):
        for pad in ((3, 0, 2, 5), (1, 2, 3, 4), (0, 0, 0, 0), (6, 5, 8, 6)):
            kw = {"fill": 7} if mode == "constant" else {}
            y = TF.pad(chw, list(pad), padding_mode=mode, **kw)
            put(f"pad/{mode}_{'_'.join(map(str, pad))}", y.permute(1, 2, 0).numpy())


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..",
                                                           "data", "image")
    os.makedirs(d, exist_ok=True)
    make_pngs(d)
    make_jpegs(d)
    make_resize()
    save_file(OUT, os.path.join(d, "expected.safetensors"),
              metadata={"made_by": "tests/reference/make_image_fixtures.py"})
    total = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{len(OUT)} expected arrays, {len(os.listdir(d))} files, {total} bytes in {d}")


if __name__ == "__main__":
    main()
