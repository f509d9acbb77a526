/* gemm.c - CPU matrix products: linear (x·wᵀ + b, f32/f16/bf16 weights) and batched matmul. */
#include "config.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops_int.h"
#include "ops/cpu/parallel.h"
#ifdef HAVE_OPENBLAS
#include <pthread.h>
#include <cblas.h>
#endif

/* Below this many multiply-adds (M*N*K) a direct loop beats OpenBLAS:
 * its call overhead (argument checks, thread dispatch, packing) dominates
 * tiny problems. Measured with bench/ops ("run.sh ... small", 2-core Zen 3,
 * see bench/ops/RESULTS.md): [4,16]x[16,16] ties (0.35 vs 0.33 us), at
 * [4,32]x[32,32] sgemm already wins (0.84 vs 1.41 us). A single row (M = 1)
 * goes to sgemv instead: sgemm handles it poorly (1.8 us at 64x64). */
#define DIRECT_GEMM_MAX_FLOPS 4096

/* Cache blocking of the portable loop: a K block of A's row and of B's rows
 * stays in L1/L2 while it is reused across the other dimension. */
#define KB 256
#define NB 64

/* Dot product with 8 independent partial sums so the compiler can keep
 * them in one vector register without reassociating (no -ffast-math). */
static float dot_f32(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* The portable GEMM: direct for small shapes, cache-blocked for big ones
 * (the fallback when dspipe is built without OpenBLAS). */
static void sgemm_blocked(int trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,
                          int acc)
{
    for (int64_t m = 0; m < M && !acc; m++)
        memset(C + m * ldc, 0, (size_t)N * sizeof *C);
    if (trans_b) {
        for (int64_t k0 = 0; k0 < K; k0 += KB) {
            int64_t kn = K - k0 < KB ? K - k0 : KB;
            for (int64_t n0 = 0; n0 < N; n0 += NB) {
                int64_t n1 = N - n0 < NB ? N : n0 + NB;
                for (int64_t m = 0; m < M; m++) {
                    const float *a = A + m * lda + k0;
                    float *c = C + m * ldc;
                    for (int64_t n = n0; n < n1; n++)
                        c[n] += dot_f32(a, B + n * ldb + k0, kn);
                }
            }
        }
    } else {
        /* C[m,:] += A[m,k] * B[k,:]: contiguous rows, vectorises as axpy */
        for (int64_t k0 = 0; k0 < K; k0 += KB) {
            int64_t k1 = K - k0 < KB ? K : k0 + KB;
            for (int64_t m = 0; m < M; m++) {
                float *c = C + m * ldc;
                for (int64_t k = k0; k < k1; k++) {
                    float a = A[m * lda + k];
                    const float *b = B + k * ldb;
                    for (int64_t n = 0; n < N; n++)
                        c[n] += a * b[n];
                }
            }
        }
    }
}

/* C = A·op(B) (acc 0) or C += A·op(B) (acc 1) */
static void gemm(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float *C, int64_t ldc, int acc)
{
    const float beta = acc ? 1.0f : 0.0f;
    if (M == 0 || N == 0)
        return;
#ifdef HAVE_OPENBLAS
    if ((double)M * (double)N * (double)K >= DIRECT_GEMM_MAX_FLOPS && K > 0 &&
        M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
        ldc <= INT_MAX) {
        if (M == 1) {
            /* one row: a matrix-vector product, y = B·a or Bᵀ·a */
            if (trans_b)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, B, (int)ldb, A,
                            1, beta, C, 1);
            else
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, B, (int)ldb, A,
                            1, beta, C, 1);
            return;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    sgemm_blocked(trans_b, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

#ifdef HAVE_OPENBLAS
/* OpenBLAS 0.3.21 has one process-wide thread count: set to 1 while the
 * pool runs tasks, and put back after. Only the pool's holder calls these,
 * one job at a time; the mutex orders them against each other anyway. */
static pthread_mutex_t serial_mu = PTHREAD_MUTEX_INITIALIZER;
static int serial_saved;

void dspi_gemm_serial_begin(void)
{
    pthread_mutex_lock(&serial_mu);
    serial_saved = openblas_get_num_threads();
    if (serial_saved > 1)
        openblas_set_num_threads(1);
    pthread_mutex_unlock(&serial_mu);
}

void dspi_gemm_serial_end(void)
{
    pthread_mutex_lock(&serial_mu);
    if (serial_saved > 1)
        openblas_set_num_threads(serial_saved);
    serial_saved = 0;
    pthread_mutex_unlock(&serial_mu);
}
#else
void dspi_gemm_serial_begin(void)
{
}

void dspi_gemm_serial_end(void)
{
}
#endif

void dspi_sgemm(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                const float *B, int64_t ldb, float *C, int64_t ldc)
{
    gemm(trans_b, M, N, K, A, lda, B, ldb, C, ldc, 0);
}

void dspi_sgemm_acc(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float *C, int64_t ldc)
{
    gemm(trans_b, M, N, K, A, lda, B, ldb, C, ldc, 1);
}

/* Rows of a converted f16/bf16 weight panel: about 128 KiB of f32 scratch,
 * so the panel stays in L2 while sgemm streams x past it. */
static int64_t panel_rows(int64_t K)
{
    int64_t p = (32 * 1024) / (K > 0 ? K : 1);
    return p < 16 ? 16 : p;
}

int dspi_cpu_linear(const float *x, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                    int64_t N, const void *b, dsp_dtype bdt, float *y)
{
    /* a bias is written into y first and the product accumulated onto it
     * (beta = 1): one write pass instead of a read-modify-write pass after
     * the GEMM, which showed as up to 10% on 2 threads (bench/ops wrapper) */
    if (b) {
        if (M > 0)
            dspi_load_f32(y, b, bdt, 0, 1, N);
        for (int64_t m = 1; m < M; m++)
            memcpy(y + m * N, y, (size_t)N * sizeof *y);
    }
    if (wdt == DSP_DTYPE_F32) {
        gemm(1, M, N, K, x, K, (const float *)w, K, y, N, b != NULL);
    } else {
        int64_t P = panel_rows(K);
        if (P > N)
            P = N;
        float *panel = malloc((size_t)(P * K > 0 ? P * K : 1) * sizeof *panel);
        if (!panel)
            return DSP_ENOMEM;
        for (int64_t n0 = 0; n0 < N; n0 += P) {
            int64_t np = N - n0 < P ? N - n0 : P;
            dspi_load_f32(panel, w, wdt, n0 * K, 1, np * K);
            gemm(1, M, np, K, x, K, panel, K, y + n0, N, b != NULL);
        }
        free(panel);
    }
    return 0;
}

int dspi_cpu_matmul(const float *a, const float *b, int64_t nbatch, const int64_t *a_off,
                      const int64_t *b_off, int64_t m, int64_t k, int64_t n, int transpose_b,
                      float *c)
{
    for (int64_t i = 0; i < nbatch; i++)
        dspi_sgemm(transpose_b, m, n, k, a + a_off[i], k, b + b_off[i], transpose_b ? k : n,
                   c + i * m * n, n);
    return 0;
}
