/* quant_int.h - internals of weight-only quantization (dsp_qweight) and the mixture-of-experts operator (not API). */
#ifndef DSPIPE_QUANT_INT_H
#define DSPIPE_QUANT_INT_H

#include <stdint.h>
#include "ops/ops_int.h"

/* A quantized [out, in] matrix. Row r, group g has scale
 * scales[r * (in / group_size) + g]; a weight is code * scale. int8 codes
 * are one byte each, row-major. int4 codes are two's-complement nibbles,
 * two per byte, row-major: element 2j in the low nibble of byte j, element
 * 2j+1 in the high nibble (group sizes are even, so rows start on a byte). */
struct dsp_qweight {
    dsp_quant_kind kind;
    int group_size;
    int64_t out, in;
    dsp_device device;
    uint8_t *codes;             /* owned */
    float *scales;              /* owned */
};

/* Bytes of codes for one row. */
static inline int64_t dspi_qrow_bytes(const dsp_qweight *w)
{
    return w->kind == DSP_QUANT_INT4 ? w->in / 2 : w->in;
}

/* A read-only 2-D float matrix: data in dt (f32/f16/bf16), element strides. */
typedef struct dspi_wmat {
    const void *data;
    dsp_dtype dt;
    int64_t rows, cols, s0, s1;
} dspi_wmat;

/* One SwiGLU expert: gate and up [inter, dim], down [dim, inter]. */
typedef struct dspi_moe_mlp {
    dspi_wmat gate, up, down;
} dspi_moe_mlp;

/* ---- CPU kernels (cpu/quant_kernels.c, cpu/quant_moe.c) ---------------- */
/* Fill w->codes and w->scales from src [out, in]. Returns DSP_EINVAL
 * with *bad_row set when a row holds inf or NaN (nothing to scale by). */
int dspi_cpu_quantize(const dspi_wmat *src, dsp_qweight *w, int64_t *bad_row);
/* rows [r0, r0 + n) of dequant(w) into dst [n, in] */
void dspi_cpu_dequant_rows(const dsp_qweight *w, int64_t r0, int64_t n, float *dst);
/* y[M, out] = x[M, in] · dequant(w)ᵀ (+ b[out] in bdt, may be NULL) */
int dspi_cpu_linear_q(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                      dsp_dtype bdt, float *y);
/* y[M, N] = x[M, K] · wᵀ for w [N, K] in any dtype and strides. */
int dspi_cpu_wmat_linear(const float *x, int64_t M, const dspi_wmat *w, float *y);
/* x [T, dim] contiguous -> out [T, dim]; router [E, dim]. */
int dspi_cpu_moe(const float *x, int64_t T, int64_t dim, const dspi_wmat *router,
                 const dspi_moe_mlp *experts, int n_experts, const dspi_moe_mlp *shared,
                 int n_shared, int top_k, dsp_moe_score score, int renormalize,
                 float routed_scale, float *out);

#endif /* DSPIPE_QUANT_INT_H */
