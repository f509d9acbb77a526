#!/usr/bin/env python3
"""bench_encoder_st.py - sentences per second of sentence-transformers (PyTorch, CPU) on a text file.

    bench_encoder_st.py MODEL_DIR CORPUS [RUNS] [THREADS] [BATCH]

The peer of bench_encoder.c: the same non-empty lines (trailing CR dropped, invalid UTF-8
replaced), model.encode() with the model's own settings (max_seq_length 256 for
all-MiniLM-L6-v2, mean pooling + normalisation from its modules.json), batch_size BATCH
(default 32, the library's default; it sorts by length itself), torch.set_num_threads(THREADS)
(default 2). One untimed warm-up pass, then RUNS timed passes. Prints one JSON line like
bench_encoder: per-run seconds, CPU seconds per run, median sentences/s, peak RSS.
"""
import json
import resource
import sys
import time


def main():
    model_dir, corpus = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
    import torch
    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer
    with open(corpus, "rb") as f:
        lines = [l.rstrip(b"\r").decode("utf-8", errors="replace") for l in f.read().split(b"\n")]
    texts = [l for l in lines if l]
    model = SentenceTransformer(model_dir, device="cpu")
    with torch.inference_mode():
        model.encode(texts, batch_size=batch)
        times = []
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(runs):
            t0 = time.perf_counter()
            model.encode(texts, batch_size=batch)
            times.append(time.perf_counter() - t0)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / runs
    med = sorted(times)[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "sentence-transformers", "sentences": len(texts),
                      "runs_s": [round(t, 4) for t in times], "cpu_s_per_run": round(cpu, 3),
                      "median_sps": round(len(texts) / med, 1),
                      "peak_rss_mb": round(rss, 1), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
