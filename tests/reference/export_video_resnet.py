#!/usr/bin/env python3
"""export_video_resnet.py - a torchvision video ResNet (r3d_18, mc3_18, r2plus1d_18) as a model folder video.classify loads.

    python3 tests/reference/export_video_resnet.py ARCH OUT [--weights DEFAULT|none] [--num-classes N]

ARCH is r3d_18, mc3_18 or r2plus1d_18. --weights DEFAULT takes torchvision's Kinetics-400
weights (downloaded by torchvision, or from its cache); none (the default) keeps a random
initialisation with --num-classes classes (400 unless given). OUT/ receives

  model.safetensors  the model's state_dict as torchvision names it (stem.0.weight,
                     layer1.0.conv1.0.weight, ..., fc.weight), f32; num_batches_tracked dropped
  config.json        {"model_type": "torchvision_video_resnet", "arch": ARCH, "num_classes": N,
                      "id2label": {"0": ...}, "image_mean": [3], "image_std": [3]}

The mean/std are Kinetics-400's, as torchvision's VideoClassification preset normalises; the
labels are the weights' categories, or class_<i> for a random model. Needs torch, torchvision
and safetensors.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.video import resnet as tvr

KINETICS_MEAN = [0.43216, 0.394666, 0.37645]
KINETICS_STD = [0.22803, 0.22145, 0.216989]
ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")


def small_video_resnet(arch, widths, num_classes, blocks=2):
    """torchvision's VideoResNet with other channel widths (and blocks per layer: 2 in the
    real models): the same blocks, conv builders, layer builder and forward."""
    if arch == "r2plus1d_18":
        makers = [tvr.Conv2Plus1D] * 4
        mid = 6
        stem = nn.Sequential(
            nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, widths[0], (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
    else:
        makers = [tvr.Conv3DSimple] * 4 if arch == "r3d_18" else \
            [tvr.Conv3DSimple] + [tvr.Conv3DNoTemporal] * 3
        stem = nn.Sequential(
            nn.Conv3d(3, widths[0], (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
    m = tvr.VideoResNet.__new__(tvr.VideoResNet)
    nn.Module.__init__(m)
    m.inplanes = widths[0]
    m.stem = stem
    for i in range(4):
        setattr(m, f"layer{i + 1}", m._make_layer(tvr.BasicBlock, makers[i], widths[i], blocks,
                                                  stride=1 if i == 0 else 2))
    m.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
    m.fc = nn.Linear(widths[3], num_classes)
    return m


def write_folder(model, arch, out, labels=None):
    """Write model (a torchvision VideoResNet in eval mode) and its config.json into out/."""
    os.makedirs(out, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    num_classes = state["fc.weight"].shape[0]
    if labels is None:
        labels = [f"class_{i}" for i in range(num_classes)]
    save_file(state, os.path.join(out, "model.safetensors"))
    config = {"model_type": "torchvision_video_resnet", "arch": arch, "num_classes": num_classes,
              "id2label": {str(i): name for i, name in enumerate(labels)},
              "image_mean": KINETICS_MEAN, "image_std": KINETICS_STD}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main():
    import torchvision.models.video as tvv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", choices=ARCHS)
    ap.add_argument("out")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--num-classes", type=int, default=400)
    a = ap.parse_args()
    builder = getattr(tvv, a.arch)
    if a.weights == "none":
        model, labels = builder(weights=None, num_classes=a.num_classes), None
    else:
        weights = tvv.get_model_weights(builder)[a.weights]
        model, labels = builder(weights=weights), weights.meta["categories"]
    write_folder(model.eval(), a.arch, a.out, labels)
    print(f"{a.out}: {a.arch}, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
