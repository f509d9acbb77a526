#!/usr/bin/env python3
"""bench_tokenizer.py - tokens per second of the Hugging Face `tokenizers` library (one thread) on the fixture corpus.

    python3 bench/text/bench_tokenizer.py DATA_DIR [RUNS] [NAME...]

The same corpus and tokenizer files as bench_tokenizer.c (tests/data/text). Two ways: `encode` in a
Python loop (what one call per text costs, Python included) and `encode_batch` of the whole corpus
(the Rust work alone). RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false keep it on one thread.
Each run repeats until it has lasted >= 0.5 s; the median of RUNS runs is printed.
"""
import os
import statistics
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402  (after the environment is set)


def main():
    d = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    names = sys.argv[3:] or ["bert", "gpt2", "roberta", "llama3", "qwen2", "llama2", "unigram"]
    raw = open(os.path.join(d, "corpus.txt"), "rb").read()
    texts = [x.decode("utf-8", errors="replace") for x in raw.split(b"\n")[:-1]]
    import tokenizers
    print(f"# tokenizers {tokenizers.__version__}, {len(texts)} lines, {len(raw)} bytes; median of {runs} runs, 1 thread")
    print(f"{'name':8s} {'tokens/run':>12s} {'encode tok/s':>14s} {'batch tok/s':>14s}")
    for name in names:
        tok = Tokenizer.from_file(os.path.join(d, name + ".json"))
        tok.no_truncation()
        tok.no_padding()
        per_pass = sum(len(e.ids) for e in tok.encode_batch(texts))   # warm-up
        rates = {"loop": [], "batch": []}
        for _ in range(runs):
            for mode in ("loop", "batch"):
                t0 = time.perf_counter()
                tokens = 0
                while True:
                    if mode == "loop":
                        for s in texts:
                            tokens += len(tok.encode(s).ids)
                    else:
                        tokens += sum(len(e.ids) for e in tok.encode_batch(texts))
                    el = time.perf_counter() - t0
                    if el >= 0.5:
                        break
                rates[mode].append(tokens / el)
        print(f"{name:8s} {per_pass:12d} {statistics.median(rates['loop']):14.0f} {statistics.median(rates['batch']):14.0f}")


if __name__ == "__main__":
    main()
