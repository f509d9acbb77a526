/* simd.h - the AVX2/FMA CPU kernels (cpu/simd_avx2.c), picked at run time by norm.c and elementwise.c (not API). */
#ifndef DSPIPE_OPS_CPU_SIMD_H
#define DSPIPE_OPS_CPU_SIMD_H

#include <stdint.h>
#include "dspipe/ops.h"

/* 1 when this CPU has AVX2 and FMA and DSPIPE_OPS_SIMD is not "0"
 * (that setting forces the scalar kernels, for tests and comparisons);
 * always 0 where simd_avx2.c is not built for x86. Checked once. */
int dspi_cpu_use_avx2(void);

/* Call only when dspi_cpu_use_avx2(). Rows are contiguous, n > 0; o may
 * be x (every element is read before it is written). */
/* softmax of one row with no mask; returns 0, or -1 when every entry is
 * -inf (o untouched: the caller writes the zeros) */
int dspi_avx2_softmax_row(const float *x, int64_t n, float *o);
void dspi_avx2_layernorm_row(const float *x, int64_t n, const float *w, const float *b,
                             float eps, float *o);
void dspi_avx2_rmsnorm_row(const float *x, int64_t n, const float *w, float eps, float *o);
void dspi_avx2_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *o);
void dspi_avx2_silu(const float *x, int64_t n, float *o);
void dspi_avx2_swiglu(const float *gate, const float *up, int64_t n, float *o);
/* o[j] = a[j] op b[j * bs] for j < n; vectorised for bs 0 and 1 */
void dspi_avx2_add_row(const float *a, const float *b, int64_t bs, int64_t n, float *o);
void dspi_avx2_mul_row(const float *a, const float *b, int64_t bs, int64_t n, float *o);

#endif /* DSPIPE_OPS_CPU_SIMD_H */
