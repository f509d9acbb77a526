/* quant_int.h - internals of weight-only quantization (dsp_qweight) and the mixture-of-experts operator (not API). */
#ifndef DSPIPE_QUANT_INT_H
#define DSPIPE_QUANT_INT_H

#include <math.h>
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

/* A read-only 2-D weight matrix [rows, cols]: data in dt (f32/f16/bf16)
 * with element strides s0, s1; or, when q is set, the quantized matrix q
 * (then data, dt, s0 and s1 are unused). */
typedef struct dspi_wmat {
    const void *data;
    dsp_dtype dt;
    int64_t rows, cols, s0, s1;
    const dsp_qweight *q;
} dspi_wmat;

/* One SwiGLU expert: gate and up [inter, dim], down [dim, inter]. */
typedef struct dspi_moe_mlp {
    dspi_wmat gate, up, down;
    int act_int8;               /* its int8 matrices take int8 activations (W8A8) */
} dspi_moe_mlp;

/* ---- W8A8: int8 weights times int8 activations --------------------------
 * An activation row is quantized in blocks of DSPI_Q8_BLOCK inputs:
 * d = amax / 127, code = round-to-nearest-even(x * (1 / d)), 0 when d = 0.
 * A dot product of a row quantized so with an int8 weight row (group gs, a
 * multiple of the block) is defined, in this order, as
 *     y = 0; for each block b: y = fmaf(dx[b] * dw[b * 32 / gs], (float)isum_b, y)
 * where isum_b, the integer dot product of the block, is exact. The AVX2
 * kernels and the portable ones compute exactly this, so one row's result
 * has the same bits on both; only the SwiGLU between gate/up and down and
 * the final sum over experts may differ in rounding. */
#define DSPI_Q8_BLOCK 32

/* Do gate and up of expert m multiply int8 activations? Only both
 * together (one quantized x feeds both kernels); down on its own. Any
 * quantized matrix qualifies: int4 codes are widened to int8 first. */
static inline int dspi_moe_q8_up(const dspi_moe_mlp *m)
{
    return m->act_int8 && m->gate.q && m->up.q;
}

static inline int dspi_moe_q8_down(const dspi_moe_mlp *m)
{
    return m->act_int8 && m->down.q != NULL;
}

/* 1 / d for a block whose largest magnitude is amax, d into *d. */
static inline float dspi_q8_scale(float amax, float *d)
{
    *d = amax / 127.0f;
    return *d > 0.0f ? 1.0f / *d : 0.0f;
}

/* The code of x for a block with inverse scale id: x * id rounded to
 * nearest even (rintf in the default rounding mode, as _mm256_cvtps_epi32
 * does), clamped to [-127, 127]; a NaN (x inf or NaN) gives 0. */
static inline int8_t dspi_q8_code(float x, float id)
{
    float v = rintf(x * id);
    return (int8_t)(v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? (int)v : 0);
}

/* x [n] (n a multiple of DSPI_Q8_BLOCK) into codes q [n] and scales d [n / 32];
 * dspi_avx2_q8_quantize (cpu/quant_moe_q8.c) gives the same bits. */
void dspi_q8_quantize(const float *x, int64_t n, int8_t *q, float *d);
void dspi_avx2_q8_quantize(const float *x, int64_t n, int8_t *q, float *d);
/* The W8A8 dot product above: row qx/dx against weight row codes/scales, K long. */
float dspi_q8_dot(const int8_t *qx, const float *dx, const int8_t *codes, const float *scales,
                  int64_t gs, int64_t K);
/* The codes of row r of w (int8 or int4) as w->in int8 values into dst. */
void dspi_q8_row_codes(const dsp_qweight *w, int64_t r, int8_t *dst);
/* y[M, out] = x[M, in] · wᵀ for an int8 or int4 w, activations quantized
 * per row (portable). */
int dspi_q8_linear(const float *x, int64_t M, const dsp_qweight *w, float *y);

/* ---- CPU kernels (cpu/quant_kernels.c, cpu/quant_moe.c) ---------------- */
/* Fill w->codes and w->scales from src [out, in]. Returns DSP_EINVAL
 * with *bad_row set when a row holds inf or NaN (nothing to scale by). */
int dspi_cpu_quantize(const dspi_wmat *src, dsp_qweight *w, int64_t *bad_row);
/* rows [r0, r0 + n) of dequant(w) into dst [n, in] */
void dspi_cpu_dequant_rows(const dsp_qweight *w, int64_t r0, int64_t n, float *dst);
/* y[M, out] = x[M, in] · dequant(w)ᵀ (+ b[out] in bdt, may be NULL) */
int dspi_cpu_linear_q(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                      dsp_dtype bdt, float *y);
/* y[M, N] = x[M, K] · wᵀ for w [N, K] in any dtype and strides, or quantized. */
int dspi_cpu_wmat_linear(const float *x, int64_t M, const dspi_wmat *w, float *y);
/* Elements [k0, k0 + n) of row r of w as f32: a pointer into w itself
 * when its rows are contiguous f32, else converted or dequantized into buf
 * (n floats). For a quantized w, k0 and n are multiples of its group size. */
const float *dspi_wmat_row(const dspi_wmat *w, int64_t r, int64_t k0, int64_t n, float *buf);
/* x [T, dim] contiguous -> out [T, dim]; router [E, dim]. */
int dspi_cpu_moe(const float *x, int64_t T, int64_t dim, const dspi_wmat *router,
                 const dspi_moe_mlp *experts, int n_experts, const dspi_moe_mlp *shared,
                 int n_shared, int top_k, dsp_moe_score score, int renormalize,
                 float routed_scale, float *out);

/* ---- MoE expert kernels (AVX2/FMA, cpu/quant_moe_avx2.c) --------------
 * dspi_cpu_moe groups the tokens by expert and describes each expert's share
 * of the call as a job; the kernels below then run on disjoint slices of the
 * jobs from the thread pool: dspi_avx2_moe_up fills a block of a job's act,
 * dspi_avx2_moe_down adds a block of output features for every job.
 * Few tokens (n <= DSPI_MOE_DOT_MAX, decode) go through dot products that
 * stream each weight row once for all of them; more are packed into panels
 * of DSPI_MOE_TILE tokens, [K][DSPI_MOE_TILE] each (feature-major, so one
 * load gives a feature of every token), and multiplied in register tiles.
 * Call only when dspi_cpu_use_avx2(). */
#define DSPI_MOE_DOT_MAX 4
#define DSPI_MOE_TILE 16
/* Panels one call of a kernel covers at most, and the most gate/up
 * features (dspi_avx2_moe_up) or output features (dspi_avx2_moe_down) */
#define DSPI_MOE_TILES 8
#define DSPI_MOE_UP_BLOCK 96
#define DSPI_MOE_DOWN_BLOCK 192

typedef struct dspi_moe_job {
    const dspi_moe_mlp *mlp;
    int64_t n;                  /* tokens routed to this expert */
    const int64_t *tok;         /* their rows of x and out; NULL: row i is token i */
    const float *wt;            /* their routing weights; NULL: all 1 (shared) */
    const float *x;             /* n <= DOT_MAX: [n][dim] rows; else panels */
    float *act;                 /* silu(gate x) * up x, laid out as x with inter */
    /* W8A8 (DSPI_Q8_BLOCK above): gate and up (q8_up) or down (q8_down)
     * take int8 activations. x and act quantized: n <= DOT_MAX, rows
     * [n][K] of codes and [n][K / 32] of scales; else per panel of 16
     * tokens, codes [K / 4][16][4] (4 consecutive inputs of a token
     * together, for maddubs) and scales [K / 32][16]. */
    int q8_up, q8_down;
    const int8_t *xq;
    const float *xd;
    int8_t *aq;
    float *ad;
} dspi_moe_job;

/* Bytes of scratch one thread needs for the calls below. */
size_t dspi_avx2_moe_scratch(void);
/* Router logits of tokens [t0, t1): logits[t, e] = x[t] · router[e], for
 * a router of plain f32 rows (s1 == 1). */
void dspi_avx2_moe_router(const float *x, int64_t t0, int64_t t1, int64_t dim,
                          const dspi_wmat *router, float *logits);
/* act of job j for features [i0, i1) (at most DSPI_MOE_UP_BLOCK) and the
 * tokens of panels [p0, p1) (at most DSPI_MOE_TILES; 0, 1 on the dot path). */
void dspi_avx2_moe_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                      int64_t p1, float *scratch);
/* out[tok, d0:d1) += wt * (act · downᵀ)[:, d0:d1) for each of the njobs
 * jobs in order, d1 - d0 at most DSPI_MOE_DOWN_BLOCK. */
void dspi_avx2_moe_down(const dspi_moe_job *jobs, int njobs, int64_t dim, int64_t d0,
                        int64_t d1, float *out, float *scratch);

/* W8A8 kernels (cpu/quant_moe_q8.c), for jobs with q8_up / q8_down, with
 * the arguments of dspi_avx2_moe_up and of dspi_avx2_moe_down for one job.
 * dspi_q8_pack_act quantizes act of features [i0, i1) (multiples of 32 or
 * inter) for panels [p0, p1) into aq/ad, after the gate/up kernels. */
void dspi_avx2_q8_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                     int64_t p1, float *scratch);
void dspi_avx2_q8_down(const dspi_moe_job *j, int64_t dim, int64_t d0, int64_t d1, float *out,
                       float *scratch);
/* Bytes of scratch one thread needs for the two above, K (dim or inter)
 * at most kmax: int4 rows are widened into it. */
size_t dspi_avx2_q8_scratch(int64_t kmax);
void dspi_q8_pack_act(const dspi_moe_job *j, int64_t i0, int64_t i1, int64_t p0, int64_t p1);
/* The same, vectorised, for a job on the tile path (n > DSPI_MOE_DOT_MAX). */
void dspi_avx2_q8_pack_act(const dspi_moe_job *j, int64_t i0, int64_t i1, int64_t p0,
                           int64_t p1);

#endif /* DSPIPE_QUANT_INT_H */
