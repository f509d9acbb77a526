#!/bin/sh
# run_conv.sh - conv3d at r3d_18's layer shapes: dspipe im2col vs Winograd (bench_ops conv) and PyTorch's F.conv3d, 2 threads.
# usage: bench/ops/run_conv.sh BUILD_DIR [THREADS]   (a non-ASan build; THREADS default 2)
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_conv.sh BUILD_DIR [THREADS]}" && pwd)
t=${2:-2}
src=$(cd "$here/../.." && pwd)
cc -O2 -std=c11 -Wall -Wextra -I"$src/core/include" -I"$build" "$here/bench_ops.c" -o "$build/bench_ops" \
   -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs" \
   $(pkg-config --cflags --libs openblas)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $t threads"
echo "## dspipe, OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t, load: $(cut -d' ' -f1-3 /proc/loadavg)"
OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t "$build/bench_ops" conv
echo "## PyTorch, torch.set_num_threads($t), load: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=$t python3 "$here/bench_torch.py" "$t" conv
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
