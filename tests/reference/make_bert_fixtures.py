#!/usr/bin/env python3
"""make_bert_fixtures.py - small random-init BERT-family models and their outputs, for tests/test_text_encoder.c.

    python3 tests/reference/make_bert_fixtures.py [OUT]      # default: tests/data/text_encoder

Needs torch, transformers and safetensors. For each configuration below it writes OUT/NAME/
with the model as transformers saves it (config.json + model.safetensors, no pooler) and
io.safetensors: a right-padded batch (input_ids, attention_mask, token_type_ids, all i64
[batch, len]) and what transformers computes for it in f32: last_hidden_state [batch, len,
hidden], and pooled [batch, hidden] as sentence-transformers pools: mean over the real tokens
(mean), the first token (cls), and mean then L2-normalised (mean_norm).

bert_odd also gets a 53-word vocab.txt, so the pipeline tests can tokenize text for it.

Weights are drawn with std 0.2 (LayerNorm weights around 1) instead of transformers' 0.02, so
the outputs are far from trivial and every weight matters. Deterministic (seeded).
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

CASES = [
    # name, model class, config; lengths of the batch's sequences
    ("bert_odd", BertModel, BertConfig(vocab_size=53, hidden_size=36, num_hidden_layers=2,
                                       num_attention_heads=3, intermediate_size=52,
                                       max_position_embeddings=40, type_vocab_size=2,
                                       hidden_act="gelu", layer_norm_eps=1e-12), [7, 13, 1, 5]),
    ("bert_tanh", BertModel, BertConfig(vocab_size=41, hidden_size=20, num_hidden_layers=3,
                                        num_attention_heads=4, intermediate_size=28,
                                        max_position_embeddings=32, type_vocab_size=2,
                                        hidden_act="gelu_new", layer_norm_eps=1e-5), [9, 4, 9]),
    ("roberta", RobertaModel, RobertaConfig(vocab_size=47, hidden_size=24, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=40,
                                            max_position_embeddings=34, type_vocab_size=1,
                                            pad_token_id=1, hidden_act="gelu",
                                            layer_norm_eps=1e-5), [11, 6, 3]),
]


def randomize(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def make(out, name, cls, cfg, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = cls(cfg, add_pooling_layer=False).eval()
    randomize(model, g)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    if name == "bert_odd":
        # a vocab.txt that fits the model, so pipelines (text.tokenize + text.encode) run on it
        words = ("the a cat dog sat on mat ran fast slow big small red blue green sun moon star "
                 "sky sea tree house car road city night day rain snow wind fire water stone bird "
                 "fish book song music light dark cold warm ##s ##ing ##ed . , !").split()
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
        assert len(vocab) == cfg.vocab_size, len(vocab)
        with open(os.path.join(d, "vocab.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")
    B, L = len(lengths), max(lengths)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids = torch.full((B, L), pad, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    types = torch.zeros((B, L), dtype=torch.long)
    for b, n in enumerate(lengths):
        # ids avoid the pad id: RoBERTa numbers positions from the non-pad tokens
        ids[b, :n] = torch.randint(pad + 1, cfg.vocab_size, (n,), generator=g)
        mask[b, :n] = 1
        if cfg.type_vocab_size > 1 and n > 2:
            types[b, n // 2:n] = 1
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    m = mask.unsqueeze(-1).float()
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    save_file({
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "last_hidden_state": h.contiguous(), "mean": mean, "cls": h[:, 0].contiguous(),
        "mean_norm": torch.nn.functional.normalize(mean, p=2, dim=1),
    }, os.path.join(d, "io.safetensors"))
    print(f"{d}: hidden {cfg.hidden_size}, heads {cfg.num_attention_heads}, "
          f"layers {cfg.num_hidden_layers}, batch {B} x {L}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "text_encoder")
    torch.manual_seed(0)
    for i, (name, cls, cfg, lengths) in enumerate(CASES):
        make(out, name, cls, cfg, lengths, 1234 + i)


if __name__ == "__main__":
    main()
