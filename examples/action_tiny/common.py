"""common.py - what train.py and evaluate.py share: making clip sets, running dspipe, loading clips."""
import csv
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from make_clips import CLASSES  # noqa: E402,F401

MODEL_DIR = os.path.join(HERE, "model")
# the shipped model: r3d_18's blocks and kernels, one block per layer, these channel widths
ARCH = "r3d_18"
WIDTHS = (8, 16, 32, 64)
BLOCKS = 1
PIPELINE = os.path.join(ROOT, "pipelines", "action_recognition.pipe")


def add_dspipe_args(ap):
    ap.add_argument("--build", help="a dspipe build folder to run from (default: the installed dspipe)")


def dspipe(args, *argv):
    """Run dspipe (installed, or from --build with its plugins) with argv; fail loudly."""
    env = dict(os.environ)
    exe = "dspipe"
    if args.build:
        b = os.path.abspath(args.build)
        exe = os.path.join(b, "core", "dspipe")
        # the build's plugins only: an installed dspipe's older ones must not mix in
        env["DSPIPE_PLUGIN_PATH"] = ":".join(os.path.join(b, p, ".libs") for p in
                                             ("plugins/builtin", "plugins/video", "plugins/image",
                                              "encoders/video"))
        env["DSPIPE_NO_DEFAULT_PLUGINS"] = "1"
    r = subprocess.run([exe, "-q", *argv], env=env)
    return r.returncode


def make_clip_set(out, per_class, seed):
    """out/videos/<label>/... and out/labels.csv from make_clips.py (kept when already there)."""
    labels = os.path.join(out, "labels.csv")
    if not os.path.exists(labels):
        subprocess.run([sys.executable, os.path.join(HERE, "make_clips.py"),
                        os.path.join(out, "videos"), "--per-class", str(per_class),
                        "--seed", str(seed), "--labels", labels], check=True)
    with open(labels, newline="") as f:
        return [(row["path"], row["label"]) for row in csv.DictReader(f)]


def decode_clip_set(args, out, rows, frames, size):
    """Decode every video of a clip set through dspipe (decode_clips.pipe) and return its
    clips, u8 [N, frames, size, size, 3], in the order of rows."""
    npy = os.path.join(out, f"clips_{frames}x{size}")
    if not os.path.isdir(npy):
        listing = os.path.join(out, "videos.txt")
        with open(listing, "w") as f:
            f.writelines(f"videos/{path}\n" for path, _ in rows)
        rc = dspipe(args, os.path.join(HERE, "decode_clips.pipe"), listing, npy + ".tmp",
                    "--set", f"frames={frames}", "--set", f"size={size}")
        if rc != 0:
            sys.exit(f"decode_clips.pipe failed on {listing} (exit {rc})")
        os.rename(npy + ".tmp", npy)
    return np.stack([np.load(os.path.join(npy, os.path.splitext(os.path.basename(p))[0] + ".npy"))
                     for p, _ in rows])


def pixel_values(clips, mean, std):
    """What video.classify computes from u8 [N, T, H, W, 3] clips: (x / 255 - mean) / std in f32,
    as [N, 3, T, H, W]."""
    import torch
    x = torch.from_numpy(clips).float() / 255.0
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(0, 4, 1, 2, 3).contiguous()


def build_model():
    """The action_tiny network (untrained), torchvision's VideoResNet with reduced widths."""
    from export_video_resnet import small_video_resnet
    return small_video_resnet(ARCH, WIDTHS, len(CLASSES), blocks=BLOCKS)
