#!/usr/bin/env python3
"""make_video_fixtures.py - small random-init video classifiers and their logits, for tests/test_video_encoder.c.

    python3 tests/reference/make_video_fixtures.py [OUT]      # default: tests/data/video_encoder
    python3 tests/reference/make_video_fixtures.py --full OUT # real sizes (~700 MB), not committed

The second form writes the same layout for the real architectures with random weights
(videomae_base: VideoMAE-base, 16 x 224 x 224; r3d_18, mc3_18, r2plus1d_18 at torchvision's
widths); the test then runs on them with VIDEO_ENCODER_FIXTURES=OUT (see
docs/video_encoder.md).

Needs torch, torchvision, transformers and safetensors. Writes OUT/NAME/ for each model:

  videomae_mean  VideoMAEForVideoClassification (hidden 48, 2 layers, 3 heads, 32x32, 4 frames,
                 tubelet 2, patch 8), mean pooling + fc_norm, saved by save_pretrained, with a
                 preprocessor_config.json whose image_mean/image_std are not ImageNet's
  videomae_cls   use_mean_pooling=false (final layernorm, first token), 24x24, 1 layer, gelu_new,
                 its query/value biases renamed q_bias/v_bias as the Hub's VideoMAE checkpoints
                 (MCG-NJU/videomae-*) store them; no preprocessor_config.json (ImageNet mean/std)
  r3d_18, mc3_18, r2plus1d_18
                 torchvision's VideoResNet built from its own blocks, conv makers, _make_layer
                 and forward, with layers [2, 2, 2, 2] as the real models, but channel widths
                 (4, 8, 12, 16) instead of (64, 128, 256, 512) (and stems to match): the real
                 ones are 33M parameters (~130 MB each), too big to commit; the C code reads
                 every width from the weights, so the same code runs both. Written by
                 export_video_resnet.write_folder, the exporter for real models.

and OUT/NAME/io.safetensors: clips (u8 [B, T, H, W, C], as video.decode emits them),
pixel_values (f32 [B, C, T, H, W]: clips / 255, normalised with the folder's mean/std, the
layout torchvision takes and VideoMAE's convolution sees) and logits (f32 [B, classes]) that
transformers / torchvision compute for them in eval mode.

Weights are drawn with larger spread than the default initialisations (and BatchNorm running
statistics are not 0/1), so every tensor changes the logits. Deterministic (seeded).
"""
import os
import sys
from functools import partial

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.video import resnet as tvr
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_video_resnet import (KINETICS_MEAN, KINETICS_STD, small_video_resnet,  # noqa: E402
                                 write_folder)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def pixel_values(clips, mean, std):
    x = clips.float() / 255.0                                  # B T H W C
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(0, 4, 1, 2, 3).contiguous()               # B C T H W


def save_io(d, clips, pv, logits):
    save_file({"clips": clips.contiguous(), "pixel_values": pv, "logits": logits.contiguous()},
              os.path.join(d, "io.safetensors"))


def make_videomae(out, name, cfg, legacy_names, mean, g, B=3, std=0.2):
    cfg._attn_implementation = "eager"
    model = VideoMAEForVideoClassification(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname and pname.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    std = IMAGENET_STD
    if mean is not None:
        std = [0.25, 0.3, 0.2]
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            f.write('{\n  "image_processor_type": "VideoMAEImageProcessor",\n'
                    f'  "image_mean": {mean},\n  "image_std": {std}\n}}\n')
    else:
        mean = IMAGENET_MEAN
    if legacy_names:
        path = os.path.join(d, "model.safetensors")
        st = load_file(path)
        st = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
               .replace("attention.attention.value.bias", "attention.attention.v_bias"): v
              for k, v in st.items()}
        save_file(st, path, metadata={"format": "pt"})
    clips = torch.randint(0, 256, (B, cfg.num_frames, cfg.image_size, cfg.image_size, 3),
                          generator=g, dtype=torch.uint8)
    pv = pixel_values(clips, mean, std)
    with torch.no_grad():
        logits = model(pixel_values=pv.permute(0, 2, 1, 3, 4)).logits   # VideoMAE takes B T C H W
    save_io(d, clips, pv, logits)
    print(f"{d}: VideoMAE hidden {cfg.hidden_size}, logits max {logits.abs().max():.3f}")


def make_resnet(out, arch, g, full=False):
    if full:
        model = getattr(tvr, arch)(weights=None, num_classes=400)
    else:
        model = small_video_resnet(arch, (4, 8, 12, 16), 7)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv3d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(mod, nn.BatchNorm3d):
                c = mod.num_features
                mod.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=g))
                mod.bias.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(0.5 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
    model.eval()
    d = os.path.join(out, arch)
    labels = None if full else ["abseiling", "bowling", "juggling balls", "playing cello",
                                "surfing water", "tai chi", "yoga"]
    write_folder(model, arch, d, labels)
    B, T, H, W = (2, 8, 112, 112) if full else (3, 4, 24, 20)
    clips = torch.randint(0, 256, (B, T, H, W, 3), generator=g, dtype=torch.uint8)
    pv = pixel_values(clips, KINETICS_MEAN, KINETICS_STD)
    with torch.no_grad():
        logits = model(pv)
    save_io(d, clips, pv, logits)
    print(f"{d}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"logits max {logits.abs().max():.3f}")


def main_full(out, g):
    """Real sizes, random weights: VideoMAE-base (16 x 224 x 224, Kinetics-400's head) and the
    three ResNets at torchvision's widths, two clips each (8 x 112 x 112 for the ResNets)."""
    # std 0.05, not 0.2: at hidden 768, 0.2 makes attention logits of ~30 and a network so
    # sensitive that f32 summation order alone moves its logits by 1e-4
    make_videomae(out, "videomae_base", VideoMAEConfig(num_labels=400), True, None, g, B=2, std=0.05)
    for arch in ("r3d_18", "mc3_18", "r2plus1d_18"):
        make_resnet(out, arch, g, full=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    g = torch.Generator().manual_seed(4321)
    if len(sys.argv) > 2 and sys.argv[1] == "--full":
        return main_full(sys.argv[2], g)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "video_encoder")
    labels = {0: "archery", 1: "baking cookies", 2: "cartwheeling", 3: "dancing ballet", 4: "eating cake"}
    make_videomae(out, "videomae_mean", VideoMAEConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
        image_size=32, num_frames=4, tubelet_size=2, patch_size=8, use_mean_pooling=True,
        layer_norm_eps=1e-6, hidden_act="gelu", id2label=labels,
        label2id={v: k for k, v in labels.items()}), False, [0.45, 0.4, 0.5], g)
    make_videomae(out, "videomae_cls", VideoMAEConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=24, num_frames=4, tubelet_size=2, patch_size=8, use_mean_pooling=False,
        layer_norm_eps=1e-12, hidden_act="gelu_new", num_labels=4), True, None, g)
    for arch in ("r3d_18", "mc3_18", "r2plus1d_18"):
        make_resnet(out, arch, g)


if __name__ == "__main__":
    main()
