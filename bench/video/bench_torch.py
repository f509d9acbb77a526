#!/usr/bin/env python3
"""bench_torch.py - the PyTorch side of bench/video: decode, sample, resize, normalise, classify.

    python3 bench/video/bench_torch.py MODEL_DIR NUM_CLIPS CLIP_LEN SIZE THREADS VIDEO...

What video.decode sample=uniform clip_len=CLIP_LEN num_clips=NUM_CLIPS width=SIZE height=SIZE
threads=THREADS -> video.classify does, in one process:

- PyAV (FFmpeg through Python): one pass over the video packets counts N (as video.decode
  does), then every frame is decoded in order (frame + slice threads, THREADS of them) and the
  frames at torch.linspace(lo, hi - 1, CLIP_LEN).long() of each of the NUM_CLIPS equal spans
  are converted to RGB at SIZE x SIZE by libswscale's bilinear filter (VideoFrame.reformat),
  the same library and filter video.decode uses;
- (x / 255 - mean) / std with the model folder's mean/std, to [3, T, H, W];
- all clips of the run as one batch, one forward pass under torch.inference_mode with
  torch.set_num_threads(THREADS).

The model is built from the same folder dspipe loads: torchvision's r3d_18 with the folder's
state_dict, or transformers' VideoMAEForVideoClassification.from_pretrained. Prints one JSON
line: import_s, load_s (building the model and reading the weights), run_s (decode to logits),
run_cpu_s (that stretch's CPU seconds, all threads), clips, and a checksum of the logits.
"""
import json
import os
import sys
import time

T_START = time.perf_counter()
import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def uniform_indices(n, num_clips, k):
    """video_uniform_indices (plugins/video/sample.c): linspace over equal spans, truncated."""
    out = []
    for c in range(num_clips):
        lo, hi = n * c // num_clips, n * (c + 1) // num_clips
        hi = max(hi, lo + 1)
        out.append(torch.linspace(lo, hi - 1, k).long().clamp(lo, hi - 1).tolist())
    return out


def decode_clips(path, num_clips, clip_len, size, threads):
    """The clips of one video, u8 [num_clips, T, size, size, 3]."""
    with av.open(path) as c:
        n = sum(1 for p in c.demux(video=0) if p.size > 0 or p.pts is not None)
    clips = uniform_indices(n, num_clips, clip_len)
    want = {}
    for ci, idx in enumerate(clips):
        for j, i in enumerate(idx):
            want.setdefault(i, []).append((ci, j))
    out = np.empty((num_clips, clip_len, size, size, 3), np.uint8)
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.thread_count = threads
        for i, f in enumerate(c.decode(s)):
            if i in want:
                rgb = f.reformat(width=size, height=size, format="rgb24",
                                 interpolation="BILINEAR").to_ndarray()
                for ci, j in want[i]:
                    out[ci, j] = rgb
    return out


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg.get("model_type") == "videomae":
        from transformers import VideoMAEForVideoClassification
        model = VideoMAEForVideoClassification.from_pretrained(d).eval()
        pp = os.path.join(d, "preprocessor_config.json")
        p = json.load(open(pp)) if os.path.exists(pp) else {}
        return model, True, p.get("image_mean", IMAGENET_MEAN), p.get("image_std", IMAGENET_STD)
    import torchvision.models.video as tvv
    from safetensors.torch import load_file
    model = getattr(tvv, cfg["arch"])(weights=None, num_classes=cfg["num_classes"])
    model.load_state_dict(load_file(os.path.join(d, "model.safetensors")), strict=False)
    return model.eval(), False, cfg["image_mean"], cfg["image_std"]


def main():
    model_dir, num_clips, clip_len, size, threads = sys.argv[1], *map(int, sys.argv[2:6])
    videos = sys.argv[6:]
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, is_mae, mean, std = load_model(model_dir)
    t1, c1 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        clips = torch.from_numpy(np.concatenate(
            [decode_clips(v, num_clips, clip_len, size, threads) for v in videos]))
        x = clips.float().div_(255)
        x = (x - torch.tensor(mean)) / torch.tensor(std)            # [B, T, H, W, 3]
        if is_mae:
            logits = model(pixel_values=x.permute(0, 1, 4, 2, 3).contiguous()).logits   # B T C H W
        else:
            logits = model(x.permute(0, 4, 1, 2, 3).contiguous())                         # B C T H W
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"impl": "pytorch", "clips": int(logits.shape[0]), "import_s": round(t0 - T_START, 3),
                      "load_s": round(t1 - t0, 3), "run_s": round(t2 - t1, 3),
                      "run_cpu_s": round(c2 - c1, 2),
                      "logits_sum": round(float(logits.sum()), 4)}))


if __name__ == "__main__":
    main()
