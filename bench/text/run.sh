#!/bin/sh
# run.sh - build bench_tokenizer against a dspipe build dir and time it and the Hugging Face tokenizers library, one thread each.
# usage: bench/text/run.sh BUILD_DIR [RUNS]   (a non-ASan build: configure without --enable-asan)
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [RUNS]}" && pwd)
runs=${2:-7}
src=$(cd "$here/../.." && pwd)
data=$src/tests/data/text
cc -O2 -std=gnu11 -Wall -Wextra -I"$src/plugins/text" -I"$src/core/include" "$here/bench_tokenizer.c" \
   "$build/plugins/text/.libs/libdsptok.a" -o "$build/bench_tokenizer" \
   $(pkg-config --libs jansson libpcre2-8 libutf8proc)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## dspipe (C), tok_encode in a loop"
"$build/bench_tokenizer" "$data" "$runs"
echo "## Hugging Face tokenizers (Rust, from Python), RAYON_NUM_THREADS=1"
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 "$here/bench_tokenizer.py" "$data" "$runs"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
