/* fma_peak.c - one core's f32 FMA peak: 12 independent AVX2 vfmadd chains, best of 5 runs of 1.2e9 FMAs.
 *
 *   cc -O2 -mavx2 -mfma bench/ops/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *
 * The ceiling the model benchmarks are held against (bench/video/RESULTS.md,
 * bench/ops/MOE_RESULTS.md): a GEMM-bound model cannot run faster than this
 * per core, whatever its code. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define ITERS 100000000L

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    __m256 acc[CHAINS];
    const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    double best = 1e30;
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (int run = 0; run < 5; run++) {
        double t0 = now();
        /* written out so that the 12 chains stay in registers */
#define FMA(i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
        for (long n = 0; n < ITERS; n++) {
            FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7) FMA(8) FMA(9) FMA(10) FMA(11)
        }
#undef FMA
        double t = now() - t0;
        best = t < best ? t : best;
    }
    float sink = 0, v[8];
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(v, acc[i]);
        sink += v[0];
    }
    /* 8 lanes x 2 flops per FMA */
    printf("%.1f GFLOP/s f32 FMA peak, one core (checksum %g)\n", (double)ITERS * CHAINS * 16 / best / 1e9, sink);
    return 0;
}
