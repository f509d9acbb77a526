#!/usr/bin/env python3
"""make_model_fixtures.py - writes the Hugging Face model folders under tests/data/models/.

Run from anywhere:  python3 tests/reference/make_model_fixtures.py
Needs torch and safetensors; transformers is optional (python3 -m pip install
torch safetensors transformers). Without transformers the hf_bert/ folder is
left as it is (and test_model.c skips it when it is absent).

Folders (test_model.c opens them with dsp_model_open):
  tiny_single/   config.json + model.safetensors              (f32, f16, bf16)
  tiny_sharded/  config.json + model.safetensors.index.json + 3 shards, laid
                 out as transformers shards a checkpoint (tensors in order,
                 "model-0000K-of-00003.safetensors", metadata.total_size)
  hf_bert/       saved by transformers itself: a random-init BertModel with
                 save_pretrained(max_shard_size="20KB"), the genuine layout
                 (only when transformers is importable)

expected.json, read by test_model.c:
  { folder: { tensor: { "dtype": dspipe dtype name, "shape": [...],
                        "values": [...]      (tiny_* : every value, C order)
                        "sum": float, "first": [up to 4 values]  (hf_bert) } } }
Values are the stored values as float64 (f16/bf16 widened exactly), so the
C side compares them exactly.

Broken folders for the error tests are built by test_model.c at run time in
a temporary directory.
"""
import inspect
import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "models")
DSP_DTYPE = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}

TINY_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 4,
    "num_hidden_layers": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "pad_token_id": None,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "text_config": {"hidden_size": 8, "vocab_size": 10,
                    "rope_scaling": {"type": "linear", "factor": 2.0}},
}


def pattern(shape, seed, dtype):
    """Deterministic values, exact in f16 and bf16: multiples of 1/8 in [-1, 1]."""
    n = 1
    for s in shape:
        n *= s
    k = (torch.arange(n, dtype=torch.int64) * 7 + seed * 3) % 17 - 8
    return (k.to(torch.float32) / 8).reshape(shape).to(dtype)


def tiny_tensors():
    """A two-layer BERT-shaped state dict, in the order transformers saves it."""
    h, v, p, f = 4, 10, 6, 5
    spec = [("embeddings.word_embeddings.weight", (v, h), torch.float32),
            ("embeddings.position_embeddings.weight", (p, h), torch.float32),
            ("embeddings.LayerNorm.weight", (h,), torch.float32),
            ("embeddings.LayerNorm.bias", (h,), torch.float32)]
    for layer in range(2):
        pre = "encoder.layer.%d." % layer
        spec += [(pre + "attention.self.query.weight", (h, h), torch.float16),
                 (pre + "attention.self.query.bias", (h,), torch.float16),
                 (pre + "attention.self.key.weight", (h, h), torch.bfloat16),
                 (pre + "attention.self.key.bias", (h,), torch.bfloat16),
                 (pre + "attention.self.value.weight", (h, h), torch.float32),
                 (pre + "attention.self.value.bias", (h,), torch.float32),
                 (pre + "attention.output.dense.weight", (h, h), torch.float16),
                 (pre + "intermediate.dense.weight", (f, h), torch.bfloat16),
                 (pre + "output.dense.weight", (h, f), torch.float32)]
    spec += [("pooler.dense.weight", (h, h), torch.bfloat16),
             ("pooler.dense.bias", (h,), torch.bfloat16)]
    return {name: pattern(shape, i, dt) for i, (name, shape, dt) in enumerate(spec)}


def describe_full(t):
    return {"dtype": DSP_DTYPE[t.dtype], "shape": list(t.shape),
            "values": t.to(torch.float64).reshape(-1).tolist()}


def describe_summary(t):
    flat = t.to(torch.float64).reshape(-1)
    return {"dtype": DSP_DTYPE[t.dtype], "shape": list(t.shape),
            "sum": float(flat.sum()), "first": flat[:4].tolist()}


def write_config(folder, config):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def fresh(name):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def tiny_single():
    folder = fresh("tiny_single")
    tensors = tiny_tensors()
    write_config(folder, TINY_CONFIG)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return {k: describe_full(v) for k, v in tensors.items()}


def tiny_sharded():
    """Three shards filled in order, as transformers' shard_checkpoint does."""
    folder = fresh("tiny_sharded")
    tensors = tiny_tensors()
    names = list(tensors)
    cuts = [0, len(names) // 3, 2 * len(names) // 3, len(names)]
    weight_map, total = {}, 0
    for k in range(3):
        shard = "model-%05d-of-%05d.safetensors" % (k + 1, 3)
        part = {n: tensors[n] for n in names[cuts[k]:cuts[k + 1]]}
        save_file(part, os.path.join(folder, shard), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = shard
            total += t.numel() * t.element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    config = dict(TINY_CONFIG, torch_dtype="bfloat16")
    write_config(folder, config)
    return {k: describe_full(v) for k, v in tensors.items()}


def hf_bert():
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        print("transformers is not importable: hf_bert/ left as it is")
        return None
    folder = fresh("hf_bert")
    torch.manual_seed(0)
    # max_position_embeddings is lowered from 512 to keep the folder small
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, vocab_size=99, max_position_embeddings=64)
    model = BertModel(config).eval()
    kwargs = {"max_shard_size": "20KB"}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True     # transformers < 5; always on since
    model.save_pretrained(folder, **kwargs)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    expected = {}
    for shard in sorted(set(weight_map.values())):
        with safe_open(os.path.join(folder, shard), framework="pt") as st:
            for name in st.keys():
                expected[name] = describe_summary(st.get_tensor(name))
    assert set(expected) == set(weight_map), "index and shards disagree"
    return expected


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "expected.json")
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            expected = json.load(f)
    expected["tiny_single"] = tiny_single()
    expected["tiny_sharded"] = tiny_sharded()
    bert = hf_bert()
    if bert is not None:
        expected["hf_bert"] = bert
    with open(path, "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    for root, _, files in os.walk(OUT):     # safetensors creates its files 0600
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


if __name__ == "__main__":
    main()
