#!/bin/sh
# run.sh - build bench_ops against a dspipe build dir and run it and PyTorch with 1 and 2 threads.
# usage: bench/ops/run.sh BUILD_DIR   (a non-ASan build: configure without --enable-asan)
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
src=$(cd "$here/../.." && pwd)
cc -O2 -std=c11 -Wall -Wextra -I"$src/core/include" -I"$build" "$here/bench_ops.c" -o "$build/bench_ops" \
   -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs" \
   $(pkg-config --cflags --libs openblas)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in 1 2; do
    echo "## dspipe, OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t"
    OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t "$build/bench_ops"
    echo "## PyTorch, torch.set_num_threads($t)"
    python3 "$here/bench_torch.py" $t
done
for t in 1 2; do
    echo "## dsp_linear vs raw cblas_sgemm, OPENBLAS_NUM_THREADS=$t"
    OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t "$build/bench_ops" wrapper
done
echo "## dspipe small shapes (direct loop vs raw cblas_sgemm), OPENBLAS_NUM_THREADS=1"
OPENBLAS_NUM_THREADS=1 "$build/bench_ops" small
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
