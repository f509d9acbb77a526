#!/bin/sh
# run_moe.sh - the MoE benchmark: dsp_moe against PyTorch's Mixtral block, side by side, 1 and 2 threads.
# usage: bench/ops/run_moe.sh BUILD_DIR [quick]   (a non-ASan build: configure without --enable-asan)
# Builds bench_moe.c against the build's libdspipe, checks that both sides compute
# the same layer, reports quantization accuracy and memory, then times every shape
# with dspipe's and PyTorch's runs interleaved (bench_moe_torch.py --dspipe).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_moe.sh BUILD_DIR [quick]}" && pwd)
quick=${2:-}
src=$(cd "$here/../.." && pwd)
cc -O2 -std=c11 -Wall -Wextra -I"$src/core/include" -I"$build" "$here/bench_moe.c" \
   -o "$build/bench_moe" -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs" -lm
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load: $(load)"
python3 -c 'import torch; print("# PyTorch", torch.__version__)'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "## same layer on both sides (dspipe f32 vs PyTorch eager)"
python3 "$here/bench_moe_torch.py" check "$tmp" | grep -v '^check.*: eager_v4 '
OPENBLAS_NUM_THREADS=1 DSPIPE_OPS_THREADS=1 "$build/bench_moe" check "$tmp"
echo "## quantized experts against f32 (accuracy, memory; W8A8 against f32 and int8/f32 activations)"
OPENBLAS_NUM_THREADS=1 DSPIPE_OPS_THREADS=1 "$build/bench_moe" accuracy
echo "## W8A8 outputs bit-identical on 1 and 2 threads"
for t in 1 2; do DSPIPE_OPS_THREADS=$t "$build/bench_moe" hash > "$tmp/hash$t"; done
cmp "$tmp/hash1" "$tmp/hash2" && echo "identical ($(wc -l < "$tmp/hash1") shapes)"
for t in 1 2; do
    echo "## threads $t: OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t, torch.set_num_threads($t); load $(load)"
    python3 "$here/bench_moe_torch.py" "$t" $quick --dspipe "$build/bench_moe"
done
echo "# load after: $(load), $(date -u '+%H:%M UTC')"
