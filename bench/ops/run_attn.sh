#!/bin/sh
# run_attn.sh - build bench_attn against a dspipe build dir; time dsp_attention and PyTorch side by side with 1 and 2 threads, then peak memory per call.
# usage: bench/ops/run_attn.sh BUILD_DIR [quick | FILTER...]   (a non-ASan build)
#   FILTERs (kinds, HQ/HK, sizes: see bench_attn_torch.py) run only those rows
#   of the timing table and skip the memory table, e.g. "full 8/8 2048";
#   ATTN_THREADS (default "1 2") picks the thread counts
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run_attn.sh BUILD_DIR [quick]}" && pwd)
shift
mode="$*"
cc -O2 -std=c11 -Wall -Wextra -I"$here/../../core/include" \
   "$here/bench_attn.c" -o "$build/bench_attn" \
   -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(python3 -c 'import torch; print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())')"
for t in ${ATTN_THREADS:-1 2}; do
    echo "## $t thread(s): dspipe DSPIPE_OPS_THREADS=$t OPENBLAS_NUM_THREADS=$t, PyTorch torch.set_num_threads($t)"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    OPENBLAS_NUM_THREADS=$t DSPIPE_OPS_THREADS=$t OMP_NUM_THREADS=$t \
        python3 "$here/bench_attn_torch.py" side $t "$build/bench_attn" $mode
    echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
case "$mode" in ''|quick) ;; *) exit 0 ;; esac
echo "## peak RSS growth of one call (8 heads, 1 thread; dspipe: preallocated output; torch: less its output)"
for kind in local topk causal; do
    for n in 1024 2048 4096 8192 16384; do
        DSPIPE_OPS_THREADS=1 "$build/bench_attn" mem $kind $n | sed 's/^/dspipe /'
        # PyTorch's top-k peer holds several n x n x 8 f32 matrices: about
        # 7 GiB at 8192, 27 GiB at 16384 (more than this machine has)
        if [ "$kind" = topk ] && [ "$n" -gt 8192 ]; then
            echo "torch  topk    8/8 $n    skipped: needs ~27 GiB"
        else
            python3 "$here/bench_attn_torch.py" mem $kind $n | sed 's/^/torch  /'
        fi
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
