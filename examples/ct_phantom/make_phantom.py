#!/usr/bin/env python3
"""make_phantom.py - a synthetic chest CT written as a real DICOM series, with the nodules' ground truth.

    python3 examples/ct_phantom/make_phantom.py OUT_DIR [--seed N] [--slices 300]
                                                [--thickness 1.0] [--size 512]

OUT_DIR receives one CT series (CT Image Storage, explicit VR little endian, one
file per slice, 16-bit unsigned with RescaleIntercept -1024) and truth.json:
every nodule's centre in patient coordinates (mm, DICOM LPS) and in voxel
indices, its diameter and its kind.

The anatomy is drawn slice by slice from a few analytic shapes, enough for a
lung nodule detector to meet what it meets in a real scan:
  - air outside a body with a fat layer and muscle (-100 / 40 HU);
  - two lungs around -850 HU whose sections shrink towards the apex and are
    cut by the heart at the base, with a trachea and main bronchi of air;
  - vessel trees (blood, 40 HU) branching from each hilum and thinning out;
  - spine, ribs along the chest wall (cortical bone ~700 HU);
  - nodules of 3-30 mm: solid (~30 HU), sub-solid (ground glass, -650..-450
    HU) and juxtapleural (solid, touching the chest wall);
  - Gaussian noise (20 HU by default).
Edges are partial-volume blended, so a nodule's apparent size is right to a
fraction of a voxel. Same seed, same files (UIDs included).

Needs numpy and pydicom (Debian: python3-numpy python3-pydicom).
"""
import argparse
import datetime
import json
import math
import os
import sys

import numpy as np

try:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
except ImportError:
    sys.exit("make_phantom.py: needs pydicom (Debian: apt-get install python3-pydicom)")

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
AIR, FAT, SOFT, BLOOD, LUNG, BONE = -1000.0, -100.0, 40.0, 40.0, -850.0, 700.0


class Anatomy:
    """The slice-independent layout of one phantom, all lengths in mm.

    x runs to the patient's left, y to the back (posterior), z up (superior):
    DICOM's LPS patient coordinates. Rows of an image go along +y, columns
    along +x."""

    def __init__(self, rng, z0, z1):
        self.rng = rng
        # body outline (an ellipse), lungs from base to apex
        self.body_a = rng.uniform(155, 172)
        self.body_b = rng.uniform(108, 120)
        self.lung_base = z0 + 0.08 * (z1 - z0)
        self.lung_apex = z1 - 0.06 * (z1 - z0)
        self.lung_cx = rng.uniform(78, 86)
        self.lung_ax = rng.uniform(54, 60)
        self.lung_by = rng.uniform(80, 88)
        self.lung_cy = 8.0
        self.carina = self.lung_base + 0.62 * (self.lung_apex - self.lung_base)
        self.vessels = []  # (p0 [3], p1 [3], radius)
        for side in (-1, 1):
            hilum = np.array([side * 40.0, 6.0, self.carina - 15.0])
            self._tree(hilum, side)

    def lung_scale(self, z):
        """How wide the lungs are at z, 0 outside them: narrow at the apex, full
        from a third of the way up, rounded at the base."""
        t = (z - self.lung_base) / (self.lung_apex - self.lung_base)
        if t <= 0 or t >= 1:
            return 0.0
        top = math.sqrt(max(0.0, 1.0 - ((t - 0.35) / 0.65) ** 2)) if t > 0.35 else 1.0
        bottom = math.sqrt(min(1.0, t / 0.08))
        return top * bottom

    def heart_scale(self, z):
        t = (z - self.lung_base) / (self.lung_apex - self.lung_base)
        if t < -0.1 or t > 0.5:
            return 0.0
        return math.sqrt(max(0.0, 1.0 - ((t - 0.15) / 0.35) ** 2))

    def _tree(self, start, side):
        """Vessel branches from a hilum: each splits in two, thinner, until
        they are under a millimetre."""
        rng = self.rng
        stack = []
        for _ in range(4):
            d = np.array([side * rng.uniform(0.3, 1.0), rng.uniform(-0.8, 0.8),
                          rng.uniform(-1.0, 1.0)])
            stack.append((start, d / np.linalg.norm(d), rng.uniform(3.5, 4.5)))
        while stack:
            p, d, r = stack.pop()
            length = rng.uniform(22, 40) * (r / 4.0) ** 0.4
            q = p + d * length
            self.vessels.append((p, q, r))
            if r * 0.72 < 0.7:
                continue
            for _ in range(2):
                nd = d + rng.normal(0, 0.55, 3)
                nd[0] += side * 0.25  # fan out towards the side of the chest
                stack.append((q, nd / np.linalg.norm(nd), r * rng.uniform(0.66, 0.78)))


def pv(d, px):
    """Partial-volume fraction of a pixel whose centre is d mm inside (> 0) a
    surface: linear over one pixel."""
    return np.clip(d / px + 0.5, 0.0, 1.0)


def ellipse_depth(X, Y, cx, cy, a, b):
    """Approximate distance (mm) inside an ellipse, negative outside."""
    r = np.sqrt(((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2)
    return (1.0 - r) * min(a, b)


def lung_masks(an, X, Y, z, px):
    """Fractions of each pixel that are lung, right and left (patient right is
    -x), and the heart's fraction."""
    s = an.lung_scale(z)
    hs = an.heart_scale(z)
    heart = pv(ellipse_depth(X, Y, 22.0, -28.0, 62.0 * hs + 1e-6, 52.0 * hs + 1e-6), px) \
        if hs > 0 else np.zeros_like(X)
    if s <= 0:
        return np.zeros_like(X), heart
    lung = np.zeros_like(X)
    for side in (-1, 1):
        d = ellipse_depth(X, Y, side * an.lung_cx, an.lung_cy, an.lung_ax * s ** 0.6,
                          an.lung_by * s)
        lung = np.maximum(lung, pv(d, px))
    # the mediastinum keeps the lungs apart
    lung *= np.clip((np.abs(X) - 24.0) / px + 0.5, 0.0, 1.0)
    return lung * (1.0 - heart), heart


def airway(an, X, Y, z, px):
    """Fraction of each pixel inside the trachea or a main bronchus (air)."""
    out = np.zeros_like(X)
    if z > an.carina and z < an.lung_apex + 30:
        out = pv(7.5 - np.hypot(X - 0.0, Y + 8.0), px)
    elif an.carina - 25 < z <= an.carina:
        f = (an.carina - z) / 25.0
        for side in (-1, 1):
            out = np.maximum(out, pv(5.5 - np.hypot(X - side * (6 + 30 * f), Y + 6.0), px))
    return out


def ribs(an, X, Y, z, px):
    """Fraction of bone from the ribs: every 24 mm a rib runs round the chest
    wall, dropping towards the front, so a slice cuts short arcs of several."""
    out = np.zeros_like(X)
    a, b = an.body_a - 13.0, an.body_b - 12.0
    for theta in np.linspace(0, 2 * math.pi, 180, endpoint=False):
        # theta = 0 at the back (+y)
        fall = 28.0 * math.sin(theta / 2) ** 2
        k = round((z + fall - an.lung_base) / 24.0)
        zk = an.lung_base + 24.0 * k - fall
        if abs(z - zk) > 4.5 or k < 0 or zk > an.lung_apex + 5:
            continue
        cx, cy = a * math.sin(theta), an.lung_cy + b * math.cos(theta)
        if abs(cy - an.lung_cy) > b * 0.97 and abs(cx) < 30:
            continue  # no ribs over the sternum and the spine
        r = 4.5 * math.sqrt(1 - (z - zk) ** 2 / 4.5 ** 2)
        x0, x1 = cx - 6, cx + 6
        y0, y1 = cy - 6, cy + 6
        sel = (X[0] >= x0) & (X[0] <= x1)
        rows = (Y[:, 0] >= y0) & (Y[:, 0] <= y1)
        if not sel.any() or not rows.any():
            continue
        sub = np.ix_(rows, sel)
        out[sub] = np.maximum(out[sub], pv(r - np.hypot(X[sub] - cx, Y[sub] - cy), px))
    return out


def segment_dist(Px, Py, z, p0, p1):
    """Distance from points (Px, Py, z) to the segment p0-p1."""
    d = p1 - p0
    L2 = float(d @ d)
    t = ((Px - p0[0]) * d[0] + (Py - p0[1]) * d[1] + (z - p0[2]) * d[2]) / L2
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((Px - p0[0] - t * d[0]) ** 2 + (Py - p0[1] - t * d[1]) ** 2 +
                   (z - p0[2] - t * d[2]) ** 2)


def draw_vessels(an, img, lung, X, Y, z, px):
    for p0, p1, r in an.vessels:
        lo, hi = min(p0[2], p1[2]) - r, max(p0[2], p1[2]) + r
        if z < lo or z > hi:
            continue
        xs = (min(p0[0], p1[0]) - r - 2, max(p0[0], p1[0]) + r + 2)
        ys = (min(p0[1], p1[1]) - r - 2, max(p0[1], p1[1]) + r + 2)
        cols = (X[0] >= xs[0]) & (X[0] <= xs[1])
        rows = (Y[:, 0] >= ys[0]) & (Y[:, 0] <= ys[1])
        if not cols.any() or not rows.any():
            continue
        sub = np.ix_(rows, cols)
        f = pv(r - segment_dist(X[sub], Y[sub], z, p0, p1), px) * lung[sub]
        img[sub] = img[sub] * (1 - f) + BLOOD * f


def place_nodules(an, rng, n, px, dz, z0, z1):
    """Nodules inside the lungs, apart from each other: a mix of sizes
    (log-uniform 3-30 mm), kinds and positions, at least one juxtapleural."""
    nodules = []
    kinds = ["juxtapleural"] + [rng.choice(["solid", "solid", "solid", "subsolid"])
                                for _ in range(n - 1)]
    for kind in kinds:
        for _attempt in range(500):
            d = float(math.exp(rng.uniform(math.log(3.0), math.log(30.0))))
            if kind == "subsolid":
                d = max(d, 6.0)  # ground glass under 6 mm is not reported in practice
            r = d / 2
            z = rng.uniform(an.lung_base + 0.1 * (an.lung_apex - an.lung_base),
                            an.lung_apex - 0.15 * (an.lung_apex - an.lung_base))
            s = an.lung_scale(z)
            side = rng.choice([-1, 1])
            a, b = an.lung_ax * s ** 0.6, an.lung_by * s
            if kind == "juxtapleural":
                # centre r inside the lateral or posterior wall: the nodule
                # touches the chest wall
                theta = rng.uniform(-0.9, 0.9) + (math.pi / 2 if side > 0 else -math.pi / 2)
                ex, ey = a * math.sin(theta), b * math.cos(theta)
                nrm = math.hypot(ex / a ** 2, ey / b ** 2)
                nx, ny = (ex / a ** 2) / nrm, (ey / b ** 2) / nrm
                x = side * an.lung_cx + ex - nx * r * 0.9
                y = an.lung_cy + ey - ny * r * 0.9
                x = side * an.lung_cx + (x - side * an.lung_cx)
            else:
                u, v = rng.uniform(-1, 1), rng.uniform(-1, 1)
                if u * u + v * v > 1:
                    continue
                x = side * an.lung_cx + u * (a - r - 4)
                y = an.lung_cy + v * (b - r - 4)
                if a - r - 4 <= 0 or b - r - 4 <= 0:
                    continue
            c = np.array([x, y, z])
            # keep clear of the mediastinum, the heart and the other nodules
            if abs(x) - r < 30:
                continue
            if an.heart_scale(z) > 0 and math.hypot((x - 22) / 70, (y + 28) / 60) < 1.1:
                continue
            if any(np.linalg.norm(c - o["c"]) < r + o["d"] / 2 + 8 for o in nodules):
                continue
            if kind != "juxtapleural":
                # the whole sphere inside the lung at its top and bottom too
                if min(an.lung_scale(z - r), an.lung_scale(z + r)) < 0.85 * s:
                    continue
            hu = {"solid": rng.uniform(10, 60), "juxtapleural": rng.uniform(10, 60),
                  "subsolid": rng.uniform(-650, -450)}[kind]
            nodules.append({"kind": kind, "c": c, "d": d, "hu": hu})
            break
    return nodules


def draw_nodules(nodules, img, X, Y, z, px):
    for o in nodules:
        r, c = o["d"] / 2, o["c"]
        if abs(z - c[2]) >= r + px:
            continue
        cols = np.abs(X[0] - c[0]) <= r + 2
        rows = np.abs(Y[:, 0] - c[1]) <= r + 2
        sub = np.ix_(rows, cols)
        dist = np.sqrt((X[sub] - c[0]) ** 2 + (Y[sub] - c[1]) ** 2 + (z - c[2]) ** 2)
        f = pv(r - dist, px)
        img[sub] = img[sub] * (1 - f) + o["hu"] * f


def render_slice(an, nodules, X, Y, z, px, rng, noise):
    img = np.full(X.shape, AIR, np.float32)
    body = pv(ellipse_depth(X, Y, 0.0, 0.0, an.body_a, an.body_b), px)
    muscle = pv(ellipse_depth(X, Y, 0.0, 0.0, an.body_a - 14, an.body_b - 12), px)
    img = img * (1 - body) + FAT * body
    img = img * (1 - muscle) + SOFT * muscle
    # spine: vertebral body and canal, behind the mediastinum
    vb = pv(19.0 - np.hypot(X, Y - 72.0), px)
    img = img * (1 - vb) + 350.0 * vb
    cortex = pv(2.5 - np.abs(19.0 - np.hypot(X, Y - 72.0)), px)
    img = np.maximum(img, img * (1 - cortex) + BONE * cortex)
    canal = pv(8.0 - np.hypot(X, Y - 99.0), px)
    img = img * (1 - canal) + 20.0 * canal
    rb = ribs(an, X, Y, z, px)
    img = img * (1 - rb) + BONE * rb
    lung, heart = lung_masks(an, X, Y, z, px)
    img = img * (1 - heart) + BLOOD * heart
    img = img * (1 - lung) + LUNG * lung
    aw = airway(an, X, Y, z, px)
    img = img * (1 - aw) + AIR * aw
    aorta = pv(13.0 - np.hypot(X - 18.0, Y - 42.0), px)
    img = img * (1 - aorta) + BLOOD * aorta
    draw_vessels(an, img, lung, X, Y, z, px)
    draw_nodules(nodules, img, X, Y, z, px)
    img += rng.normal(0.0, noise, img.shape).astype(np.float32)
    return img


def uid(seed, what):
    return generate_uid(entropy_srcs=["dspipe ct_phantom", str(seed), what])


def write_slice(path, img, k, z, args, ids, px, x0, y0):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = uid(args.seed, f"sop {k}")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid(0, "implementation")
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ids["study"]
    ds.SeriesInstanceUID = ids["series"]
    ds.FrameOfReferenceUID = ids["frame"]
    ds.Modality = "CT"
    ds.Manufacturer = "dspipe ct_phantom"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    # made-up patient details: the pipeline must keep these out of its results
    ds.PatientName = f"PHANTOM^CHEST^{args.seed}"
    ds.PatientID = f"PH{args.seed:06d}"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"A{args.seed:06d}"
    ds.StudyID = str(args.seed)
    ds.StudyDescription = "CT CHEST (synthetic phantom)"
    ds.SeriesDescription = f"CHEST {args.thickness:g}mm (synthetic phantom)"
    ds.SeriesNumber = 2
    ds.InstanceNumber = args.slices - k  # head first: instance 1 is the top slice
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.SliceThickness = f"{args.thickness:g}"
    ds.SpacingBetweenSlices = f"{args.thickness:g}"
    ds.PixelSpacing = [f"{px:.6g}", f"{px:.6g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = [f"{x0:.4f}", f"{y0:.4f}", f"{z:.4f}"]
    ds.SliceLocation = f"{z:.4f}"
    ds.PatientPosition = "FFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    stored = np.clip(np.rint(img) + 1024, 0, 4095).astype("<u2")
    ds.PixelData = stored.tobytes()
    ds.save_as(path, write_like_original=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="folder for the DICOM files and truth.json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slices", type=int, default=300, help="150-400 (default 300)")
    ap.add_argument("--thickness", type=float, default=1.0,
                    help="slice thickness = spacing in mm, 1-2.5 (default 1.0)")
    ap.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    ap.add_argument("--fov", type=float, default=360.0, help="field of view in mm (default 360)")
    ap.add_argument("--nodules", type=int, default=0,
                    help="how many nodules (default: 4-8, from the seed)")
    ap.add_argument("--noise", type=float, default=20.0, help="noise sigma in HU (default 20)")
    args = ap.parse_args()
    if not 16 <= args.slices <= 2000 or not 0.3 <= args.thickness <= 10 or args.size < 64:
        ap.error("slices 16-2000, thickness 0.3-10 mm, size >= 64")

    rng = np.random.default_rng(args.seed)
    px = args.fov / args.size
    x0 = y0 = -args.fov / 2 + px / 2
    zs = [k * args.thickness - args.slices * args.thickness / 2 for k in range(args.slices)]
    an = Anatomy(rng, zs[0], zs[-1])
    n = args.nodules or int(rng.integers(4, 9))
    nodules = place_nodules(an, rng, n, px, args.thickness, zs[0], zs[-1])

    coords = x0 + px * np.arange(args.size, dtype=np.float64)
    X, Y = np.meshgrid(coords, coords)  # X varies along columns, Y along rows
    ids = {w: uid(args.seed, w) for w in ("study", "series", "frame")}
    os.makedirs(args.out, exist_ok=True)
    for k, z in enumerate(zs):
        img = render_slice(an, nodules, X, Y, z, px, rng, args.noise)
        write_slice(os.path.join(args.out, f"IM{args.slices - k:04d}.dcm"), img, k, z, args,
                    ids, px, x0, y0)

    truth = {
        "generator": "examples/ct_phantom/make_phantom.py",
        "seed": args.seed,
        "study_uid": ids["study"],
        "series_uid": ids["series"],
        "size": [args.size, args.size, args.slices],
        "spacing_mm": [px, px, args.thickness],
        "origin_mm": [x0, y0, zs[0]],
        "voxel_convention": "[i, j, k] = [column, row, slice], slices in ascending z; "
                            "patient (LPS) = origin + [i, j, k] * spacing",
        "nodules": [{
            "id": i + 1,
            "kind": o["kind"],
            "solid": o["kind"] != "subsolid",
            "center_mm": [round(float(v), 3) for v in o["c"]],
            "center_voxel": [round(float((o["c"][0] - x0) / px), 3),
                             round(float((o["c"][1] - y0) / px), 3),
                             round(float((o["c"][2] - zs[0]) / args.thickness), 3)],
            "diameter_mm": round(o["d"], 3),
            "hu": round(o["hu"], 1),
        } for i, o in enumerate(nodules)],
    }
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    listing = ", ".join("%.1f mm %s" % (o["d"], o["kind"]) for o in nodules)
    print(f"make_phantom: {args.slices} slices {args.size}x{args.size} "
          f"({px:.3f} x {px:.3f} x {args.thickness:g} mm), {len(nodules)} nodules "
          f"({listing}) -> {args.out}")


if __name__ == "__main__":
    main()
