#!/usr/bin/env python3
"""export_models.py - the two benchmark models, random init, as folders video.classify loads.

    python3 bench/video/export_models.py OUT

OUT/r3d_18        torchvision's r3d_18 at full width (400 classes), through
                  tests/reference/export_video_resnet.py's write_folder (Kinetics mean/std)
OUT/videomae_small VideoMAEForVideoClassification, VideoMAE-small's shape (hidden 384, 12 layers,
                  6 heads, MLP 1536, 16 frames at 224, tubelet 2, patch 16, mean pooling, 400
                  classes), saved by save_pretrained

Weights are random (seeded): speed does not depend on them, and both sides load the same files.
"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "reference"))
from export_video_resnet import write_folder  # noqa: E402


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    import torchvision.models.video as tvv
    write_folder(tvv.r3d_18(weights=None, num_classes=400).eval(), "r3d_18", os.path.join(out, "r3d_18"))

    from transformers import VideoMAEConfig, VideoMAEForVideoClassification
    cfg = VideoMAEConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                         intermediate_size=1536, image_size=224, patch_size=16, num_frames=16,
                         tubelet_size=2, use_mean_pooling=True, num_labels=400)
    VideoMAEForVideoClassification(cfg).eval().save_pretrained(os.path.join(out, "videomae_small"),
                                                               safe_serialization=True)
    print(f"{out}: r3d_18, videomae_small")


if __name__ == "__main__":
    main()
