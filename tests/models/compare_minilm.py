#!/usr/bin/env python3
"""compare_minilm.py - cosine of dspipe's embeddings (embed.write output) with sentence-transformers'.

    compare_minilm.py MODEL_DIR OUT_DIR [--min-cosine 0.99999] [--min-count 1000]

OUT_DIR holds embeddings.npy and index.jsonl from pipelines/text_embed.pipe. Each row's text is
taken from the index (exactly the string dspipe embedded, invalid UTF-8 already replaced) and
encoded by sentence-transformers from the same model folder, on the CPU. Prints the minimum,
mean and median cosine and the worst sentences; exits 1 below the thresholds.
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--min-cosine", type=float, default=0.99999)
    ap.add_argument("--min-count", type=int, default=1000)
    a = ap.parse_args()

    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    ours = np.load(os.path.join(a.out, "embeddings.npy"))
    with open(os.path.join(a.out, "index.jsonl"), encoding="utf-8") as f:
        index = [json.loads(line) for line in f]
    assert len(index) == ours.shape[0], (len(index), ours.shape)
    texts = [r.get("text", "") for r in index]
    model = SentenceTransformer(a.model, device="cpu")
    ref = model.encode(texts, batch_size=64, convert_to_numpy=True)
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    order = np.argsort(cos)
    print(f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
          f"max_seq_length {model.max_seq_length}")
    print(f"{len(cos)} sentences: min cosine {cos.min():.8f}, mean {cos.mean():.8f}, "
          f"median {np.median(cos):.8f}, max |diff| {np.abs(ours - ref).max():.2e}")
    for i in order[:3]:
        print(f"  worst: {cos[i]:.8f}  row {i} {index[i].get('source', '')}: {texts[i][:60]!r}")
    ok = len(cos) >= a.min_count and cos.min() >= a.min_cosine
    print(("PASS" if ok else "FAIL") + f": min cosine {cos.min():.8f} (>= {a.min_cosine}) "
          f"over {len(cos)} sentences (>= {a.min_count})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
