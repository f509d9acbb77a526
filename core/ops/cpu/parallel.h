/* parallel.h - a tiny row-parallel for-loop for the CPU kernels (not API). */
#ifndef DSPIPE_OPS_CPU_PARALLEL_H
#define DSPIPE_OPS_CPU_PARALLEL_H

#include <stdint.h>

/* Runs fn(ctx, begin, end) over [begin, end) slices that together cover
 * [0, n) exactly once. The slices may run on the pool's worker threads;
 * the call returns after all of them have finished. */
typedef void (*dspi_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Below this much work (a unit is about one float element through a
 * cheap pass, ~0.15 ns with AVX2) a call stays on the calling thread:
 * waking a worker, sharing caches and waiting for it cost more than the
 * work saves. Measured with bench/ops: at 49152 units, softmax [64,384]
 * (98304 units, ~20 us) got slower on 2 threads (20 -> 22 us). */
#define DSPI_PARALLEL_MIN_WORK 131072

/* fn over [0, n) in slices of at least grain items, on up to
 * DSPIPE_OPS_THREADS (default: online cores) threads when work (the
 * caller's estimate of the total cost) is at least DSPI_PARALLEL_MIN_WORK;
 * inline otherwise, or when another call holds the pool. */
void dspi_parallel_for(int64_t n, int64_t grain, int64_t work, dspi_range_fn fn, void *ctx);

/* While dsp_parallel_tasks runs its tasks on the pool, every GEMM runs on
 * the thread that calls it (OpenBLAS set to one thread, then restored).
 * In gemm.c; no-ops without OpenBLAS. */
void dspi_gemm_serial_begin(void);
void dspi_gemm_serial_end(void);

#endif /* DSPIPE_OPS_CPU_PARALLEL_H */
