/* conv_int.h - the CPU kernels behind dspipe's convolution family (conv, pooling, batch norm, upsampling; not API). */
#ifndef DSPIPE_CONV_INT_H
#define DSPIPE_CONV_INT_H

#include "ops/ops_int.h"

/* Geometry of one convolution or pooling call, always in 3-D: a 2-D call is
 * the 3-D one with depth 1 (in, k and out 1, stride and dilation 1, pad 0),
 * so one kernel serves both ranks. */
typedef struct dspi_conv_geom {
    int64_t n, c, oc, groups;   /* oc and groups: convolution only          */
    int64_t in[3], k[3], out[3];
    int64_t stride[3], pad[3], dil[3];
    /* convolution only: the weight tensor when the kernel's w is its own
     * data (CPU caches derived from the weights key on it), else NULL */
    const dsp_tensor *w_src;
    int algo;                   /* convolution only: a dspi_conv_algo */
} dspi_conv_geom;

/* The CPU convolution algorithm, from DSPIPE_CONV (read per call, so tests
 * can compare both): auto (unset) picks per layer, im2col and winograd
 * force one (winograd only where it applies: 3x3(x3), stride 1, ...). */
typedef enum dspi_conv_algo {
    DSPI_CONV_AUTO = 0,
    DSPI_CONV_IM2COL,
    DSPI_CONV_WINOGRAD
} dspi_conv_algo;

/* y [n, oc, out] = conv(x [n, c, in], w [oc, c / groups, k]) (+ b [oc] in
 * bdt, may be NULL); w in wdt (f32/f16/bf16). Winograd where
 * dspi_winograd_applies(g), else im2col + dspi_sgemm per group, the column
 * buffer bounded by DSPI_CONV_COL_BYTES. */
int dspi_cpu_conv(const float *x, const void *w, dsp_dtype wdt, const void *b, dsp_dtype bdt,
                  const dspi_conv_geom *g, float *y);

/* Winograd F(2x2x2, 3x3x3) convolution (cpu/conv_winograd.c): 1 when g
 * (f32 or f16/bf16 weights) is one it computes and, under g->algo, should:
 * stride 1, dilation 1, one group, a 3x3 kernel in h and w (any padding)
 * and 3 (any padding) or 1 (no padding) in depth. */
int dspi_winograd_applies(const dspi_conv_geom *g);
/* y [n, oc, out] = conv(x, w) without bias, as dspi_cpu_conv, when
 * dspi_winograd_applies(g). Weights in a read-only buffer (a mapped model
 * file) are transformed once and kept with the buffer; others per call.
 * Returns 0 or DSP_ENOMEM (y untouched: the caller may take im2col). */
int dspi_cpu_conv_winograd(const float *x, const void *w, dsp_dtype wdt, const dspi_conv_geom *g,
                           float *y);

/* Column buffer bound: the output is processed spatially in chunks so
 * im2col scratch stays below this. */
#define DSPI_CONV_COL_BYTES ((int64_t)64 << 20)

/* Pooling of x [n*c, in] to y [n*c, out] (g->n * g->c planes); avg counts
 * padding in the divisor (PyTorch's count_include_pad=True). */
int dspi_cpu_pool(const float *x, dsp_pool_kind kind, const dspi_conv_geom *g, float *y);
/* Adaptive pooling, windows [floor(i*in/out), ceil((i+1)*in/out)). */
int dspi_cpu_adaptive_pool(const float *x, dsp_pool_kind kind, const dspi_conv_geom *g,
                           float *y);
/* x [n, c, inner]: (x - mean) / sqrt(var + eps) * w + b per channel; the
 * parameters [c] in their own dtypes (f32/f16/bf16), w and b may be NULL. */
int dspi_cpu_batchnorm(const float *x, int64_t n, int64_t c, int64_t inner, const void *mean,
                       dsp_dtype mdt, const void *var, dsp_dtype vdt, const void *w,
                       dsp_dtype wdt, const void *b, dsp_dtype bdt, float eps, float *y);
/* x [n*c, in] resized to y [n*c, out]: nearest or (bi/tri)linear. */
int dspi_cpu_upsample(const float *x, const dspi_conv_geom *g, dsp_upsample_mode mode,
                      int align_corners, float *y);

#endif /* DSPIPE_CONV_INT_H */
