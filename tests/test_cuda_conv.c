/* test_cuda_conv.c - cross-backend test of the convolution, graph/sequence and embedding operators: each run on the CPU and on cuda:0 with the same seeded inputs and compared within stated tolerances, plus the device paths of their input checks. Exits 77 (skip) without a GPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudatest.h"

/* Tolerances: |gpu - cpu| <= atol + rtol * |cpu|.
 *   pool, adaptive pool,     the same operations in the same order, each
 *   batchnorm, upsample,     product and sum rounded once on both sides (the
 *   csr_aggregate            kernels use _rn intrinsics, no fused
 *                            multiply-adds): bit-equal expected, 1e-6 slack
 *   embedding                a copy (f16/bf16 widen exactly): 0
 *   conv2d, conv3d           im2col + cuBLAS in pedantic f32 against
 *                            im2col + OpenBLAS: other summation order,
 *                            K <= 576 products of inputs in [-1, 1]:
 *                            1e-4 + 1e-4 rel
 *   lstm                     two GEMMs per step in another order and
 *                            CUDA's expf/tanhf (a few ulp), carried through
 *                            up to 9 steps of a contracting recurrence:
 *                            2e-5 + 1e-4 rel */
#define TOL_SAME 1e-6, 1e-6
#define TOL_COPY 0.0, 0.0
#define TOL_CONV 1e-4, 1e-4
#define TOL_LSTM 2e-5, 1e-4

/* ---- inputs ---------------------------------------------------------------- */

/* f32 -> f16 bits, truncating the mantissa (|v| < 2: no overflow; tiny
 * values flush to zero). Both backends read the same bits, so only
 * validity matters. */
static uint16_t f16_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(((u >> 16) & 0x8000) | (e > 0 ? ((uint32_t)e << 10) | ((u >> 13) & 0x3ff) : 0));
}

/* A copy of the f32 tensor t in f16 or bf16. */
static dsp_tensor *to_half(const dsp_tensor *t, dsp_dtype dt)
{
    dsp_tensor *h = host(dt, t->ndim, t->shape);
    const float *s = dsp_tensor_data(t);
    uint16_t *d = dsp_tensor_data(h);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        uint32_t u;
        memcpy(&u, &s[i], sizeof u);
        d[i] = dt == DSP_DTYPE_BF16 ? (uint16_t)(u >> 16) : f16_bits(s[i]);
    }
    return h;
}

/* An index tensor (i32 or i64) from values. */
static dsp_tensor *index_tensor(dsp_dtype dt, int64_t n, const int64_t *v)
{
    dsp_tensor *t = host(dt, 1, (int64_t[]){n});
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSP_DTYPE_I64)
            ((int64_t *)dsp_tensor_data(t))[i] = v[i];
        else
            ((int32_t *)dsp_tensor_data(t))[i] = (int32_t)v[i];
    }
    return t;
}

/* An operator of up to ten tensor arguments (NULL entries allowed) run on
 * both devices: the inputs are copied to cuda:0 for the second run. */
typedef int (*opn)(dsp_tensor *const *in, const void *arg, dsp_tensor **out);

static void crossn(const char *what, opn fn, dsp_tensor *const *in, int n, const void *arg,
                   double atol, double rtol)
{
    dsp_tensor *din[10] = {NULL}, *c = NULL, *g = NULL;
    for (int i = 0; i < n; i++)
        din[i] = to(in[i], gpu);
    if (fn(in, arg, &c) < 0)
        FAIL("%s on the CPU: %s", what, dsp_ops_error());
    if (fn(din, arg, &g) < 0)
        FAIL("%s on cuda:%d: %s", what, gpu.index, dsp_ops_error());
    compare(what, c, g, atol, rtol);
    for (int i = 0; i < n; i++)
        dsp_tensor_unref(&din[i]);
}

static void unref_all(dsp_tensor **ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dsp_tensor_unref(&ts[i]);
}

/* ---- convolution ------------------------------------------------------------ */

typedef struct conv_arg {
    int nsp;
    dsp_conv_opts o;
} conv_arg;

static int do_conv(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                   const void *arg, dsp_tensor **out)
{
    const conv_arg *a = arg;
    return a->nsp == 2 ? dsp_conv2d(x, w, b, &a->o, out) : dsp_conv3d(x, w, b, &a->o, out);
}

static void test_conv(void)
{
    /* 2-D: groups, stride, padding and dilation differing per dim, odd sizes */
    dsp_tensor *x = rand_f32(SHAPE(2, 6, 11, 13)), *w = rand_f32(SHAPE(8, 3, 3, 3));
    dsp_tensor *b = rand_f32(SHAPE(8));
    conv_arg grouped = {2, {{2, 1}, {1, 2}, {1, 2}, 2}};
    cross("conv2d groups 2, stride (2,1), pad (1,2), dil (1,2)", do_conv, x, w, b, &grouped,
          TOL_CONV);
    cross("conv2d groups 2 without bias", do_conv, x, w, NULL, &grouped, TOL_CONV);

    /* one group: whole images batched into one cuBLAS call */
    dsp_tensor *x5 = rand_f32(SHAPE(5, 3, 7, 9)), *w1 = rand_f32(SHAPE(4, 3, 2, 3));
    dsp_tensor *b4 = rand_f32(SHAPE(4));
    conv_arg plain = {2, {{1, 1}, {0, 1}, {1, 1}, 1}};
    cross("conv2d [5,3,7,9] k 2x3 pad (0,1)", do_conv, x5, w1, b4, &plain, TOL_CONV);

    /* depthwise, channel multiplier 2 */
    dsp_tensor *xd = rand_f32(SHAPE(2, 6, 9, 10)), *wd = rand_f32(SHAPE(12, 1, 3, 3));
    dsp_tensor *bd = rand_f32(SHAPE(12));
    conv_arg dw = {2, {{1, 1}, {1, 1}, {1, 1}, 6}};
    cross("conv2d depthwise (groups 6, multiplier 2)", do_conv, xd, wd, bd, &dw, TOL_CONV);

    /* pointwise: x is the column matrix, no im2col; with and without groups */
    dsp_tensor *wp = rand_f32(SHAPE(5, 6, 1, 1)), *bp = rand_f32(SHAPE(5));
    dsp_tensor *wpg = rand_f32(SHAPE(4, 3, 1, 1));
    conv_arg one = {2, {{0}, {0}, {0}, 1}}, two = {2, {{0}, {0}, {0}, 2}};
    cross("conv2d pointwise 1x1", do_conv, x, wp, bp, &one, TOL_CONV);
    cross("conv2d pointwise 1x1 groups 2", do_conv, x, wpg, NULL, &two, TOL_CONV);

    /* f16 and bf16 weights (converted to f32 on both sides), bf16 bias */
    dsp_tensor *wh = to_half(w, DSP_DTYPE_F16), *wb = to_half(w, DSP_DTYPE_BF16);
    dsp_tensor *bb = to_half(b, DSP_DTYPE_BF16);
    cross("conv2d f16 weights", do_conv, x, wh, b, &grouped, TOL_CONV);
    cross("conv2d bf16 weights and bias", do_conv, x, wb, bb, &grouped, TOL_CONV);

    /* 3-D */
    dsp_tensor *x3 = rand_f32(SHAPE(2, 4, 5, 6, 7)), *w3 = rand_f32(SHAPE(6, 2, 3, 2, 3));
    dsp_tensor *b3 = rand_f32(SHAPE(6)), *w3p = rand_f32(SHAPE(3, 4, 1, 1, 1));
    conv_arg c3 = {3, {{1, 2, 1}, {1, 0, 1}, {2, 1, 1}, 2}};
    conv_arg p3 = {3, {{0}, {0}, {0}, 1}};
    cross("conv3d groups 2, stride (1,2,1), pad (1,0,1), dil (2,1,1)", do_conv, x3, w3, b3,
          &c3, TOL_CONV);
    cross("conv3d pointwise", do_conv, x3, w3p, NULL, &p3, TOL_CONV);

    /* a column matrix past DSPI_CONV_COL_BYTES (64 MiB): 576 rows x 36864
     * positions per image, so each image runs in two spatial chunks */
    dsp_tensor *xl = rand_f32(SHAPE(2, 64, 192, 192)), *wl = rand_f32(SHAPE(16, 64, 3, 3));
    conv_arg pad1 = {2, {{1, 1}, {1, 1}, {1, 1}, 1}};
    cross("conv2d [2,64,192,192] in spatial chunks", do_conv, xl, wl, NULL, &pad1, TOL_CONV);

    /* a preallocated device result holding garbage is overwritten */
    dsp_tensor *c = NULL, *junk = rand_f32(SHAPE(5, 4, 6, 9));
    dsp_tensor *dx = to(x5, gpu), *dw1 = to(w1, gpu), *dout = to(junk, gpu), *given = dout;
    EXPECT_RC(do_conv(x5, w1, NULL, &plain, &c), 0);
    EXPECT_RC(do_conv(dx, dw1, NULL, &plain, &dout), 0);
    if (dout != given)
        FAIL("conv2d into a preallocated device out replaced the tensor");
    compare("conv2d into a preallocated device out", c, dsp_tensor_ref(dout), TOL_CONV);

    dsp_tensor *ts[] = {x, w, b, x5, w1, b4, xd, wd, bd, wp, bp, wpg, wh, wb, bb,
                        x3, w3, b3, w3p, xl, wl, junk, dx, dw1, dout};
    unref_all(ts, sizeof ts / sizeof ts[0]);
}

/* ---- pooling, batch norm, upsampling ------------------------------------------ */

typedef struct pool_arg {
    dsp_pool_kind kind;
    int k[3], s[3], p[3];
} pool_arg;

static int do_pool(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                   const void *arg, dsp_tensor **out)
{
    const pool_arg *a = arg;
    (void)y;
    (void)z;
    return dsp_pool(x, a->kind, a->k, a->s, a->p, out);
}

typedef struct size_arg {
    int kind;           /* dsp_pool_kind or dsp_upsample_mode */
    int align;
    int size[3];
} size_arg;

static int do_adaptive(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                       const void *arg, dsp_tensor **out)
{
    const size_arg *a = arg;
    (void)y;
    (void)z;
    return dsp_adaptive_pool(x, (dsp_pool_kind)a->kind, a->size, out);
}

static int do_upsample(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                       const void *arg, dsp_tensor **out)
{
    const size_arg *a = arg;
    (void)y;
    (void)z;
    return dsp_upsample(x, a->size, (dsp_upsample_mode)a->kind, a->align, out);
}

static void test_pool(void)
{
    dsp_tensor *x = rand_f32(SHAPE(2, 3, 11, 14)), *x3 = rand_f32(SHAPE(2, 2, 5, 9, 8));
    pool_arg max2 = {DSP_POOL_MAX, {3, 3}, {2, 2}, {1, 1}};
    pool_arg avg2 = {DSP_POOL_AVG, {3, 2}, {2, 1}, {1, 1}};
    pool_arg avg2d = {DSP_POOL_AVG, {2, 2}, {0, 0}, {0, 0}};      /* stride = kernel */
    pool_arg max3 = {DSP_POOL_MAX, {2, 3, 3}, {1, 2, 2}, {1, 1, 0}};
    pool_arg avg3 = {DSP_POOL_AVG, {2, 3, 3}, {1, 2, 2}, {1, 1, 0}};
    cross("max pool 2-D k3 s2 p1", do_pool, x, NULL, NULL, &max2, TOL_SAME);
    cross("avg pool 2-D k (3,2) s (2,1) p1 (count_include_pad)", do_pool, x, NULL, NULL, &avg2,
          TOL_SAME);
    cross("avg pool 2-D k2, default stride", do_pool, x, NULL, NULL, &avg2d, TOL_SAME);
    cross("max pool 3-D", do_pool, x3, NULL, NULL, &max3, TOL_SAME);
    cross("avg pool 3-D", do_pool, x3, NULL, NULL, &avg3, TOL_SAME);

    /* non-divisible sizes: overlapping windows of varying width */
    size_arg amax = {DSP_POOL_MAX, 0, {4, 5}}, aavg = {DSP_POOL_AVG, 0, {4, 5}};
    size_arg aup = {DSP_POOL_AVG, 0, {13, 17}};                  /* out > in */
    size_arg a3 = {DSP_POOL_AVG, 0, {3, 4, 5}}, m3 = {DSP_POOL_MAX, 0, {2, 4, 3}};
    cross("adaptive max [11,14] -> [4,5]", do_adaptive, x, NULL, NULL, &amax, TOL_SAME);
    cross("adaptive avg [11,14] -> [4,5]", do_adaptive, x, NULL, NULL, &aavg, TOL_SAME);
    cross("adaptive avg [11,14] -> [13,17]", do_adaptive, x, NULL, NULL, &aup, TOL_SAME);
    cross("adaptive avg 3-D -> [3,4,5]", do_adaptive, x3, NULL, NULL, &a3, TOL_SAME);
    cross("adaptive max 3-D -> [2,4,3]", do_adaptive, x3, NULL, NULL, &m3, TOL_SAME);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&x3);
}

static int do_batchnorm(dsp_tensor *const *in, const void *arg, dsp_tensor **out)
{
    (void)arg;
    return dsp_batchnorm(in[0], in[1], in[2], in[3], in[4], 1e-5f, out);
}

static void test_batchnorm(void)
{
    dsp_tensor *x = rand_f32(SHAPE(3, 5, 7, 9)), *x1 = rand_f32(SHAPE(4, 6, 10));
    dsp_tensor *mean = rand_f32(SHAPE(5)), *var = rand_f32(SHAPE(5));
    dsp_tensor *w = rand_f32(SHAPE(5)), *b = rand_f32(SHAPE(5));
    float *v = dsp_tensor_data(var);
    for (int i = 0; i < 5; i++)
        v[i] = v[i] * 0.5f + 1.0f;      /* positive variances */
    dsp_tensor *in[] = {x, mean, var, w, b};
    crossn("batchnorm [3,5,7,9]", do_batchnorm, in, 5, NULL, TOL_SAME);
    dsp_tensor *bare[] = {x, mean, var, NULL, NULL};
    crossn("batchnorm without w and b", do_batchnorm, bare, 5, NULL, TOL_SAME);
    dsp_tensor *mh = to_half(mean, DSP_DTYPE_F16), *vh = to_half(var, DSP_DTYPE_F16);
    dsp_tensor *wb = to_half(w, DSP_DTYPE_BF16);
    dsp_tensor *half[] = {x, mh, vh, wb, b};
    crossn("batchnorm f16 mean/var, bf16 w", do_batchnorm, half, 5, NULL, TOL_SAME);

    dsp_tensor *m6 = rand_f32(SHAPE(6)), *v6 = rand_f32(SHAPE(6)), *b6 = rand_f32(SHAPE(6));
    float *v6p = dsp_tensor_data(v6);
    for (int i = 0; i < 6; i++)
        v6p[i] = v6p[i] * 0.5f + 1.0f;
    dsp_tensor *seq[] = {x1, m6, v6, NULL, b6};
    crossn("batchnorm [4,6,10] (1-D), b only", do_batchnorm, seq, 5, NULL, TOL_SAME);
    dsp_tensor *ts[] = {x, x1, mean, var, w, b, mh, vh, wb, m6, v6, b6};
    unref_all(ts, sizeof ts / sizeof ts[0]);
}

static void test_upsample(void)
{
    dsp_tensor *x = rand_f32(SHAPE(2, 3, 5, 7)), *x3 = rand_f32(SHAPE(1, 2, 3, 4, 5));
    size_arg near2 = {DSP_UPSAMPLE_NEAREST, 0, {11, 4}};     /* up in h, down in w */
    size_arg bil = {DSP_UPSAMPLE_LINEAR, 0, {12, 15}}, bila = {DSP_UPSAMPLE_LINEAR, 1, {12, 15}};
    size_arg bdown = {DSP_UPSAMPLE_LINEAR, 0, {3, 4}};
    size_arg one = {DSP_UPSAMPLE_LINEAR, 1, {1, 9}};           /* align_corners, out 1 */
    size_arg near3 = {DSP_UPSAMPLE_NEAREST, 0, {5, 7, 9}};
    size_arg tri = {DSP_UPSAMPLE_LINEAR, 0, {5, 7, 9}}, tria = {DSP_UPSAMPLE_LINEAR, 1, {5, 7, 9}};
    cross("upsample nearest 2-D [5,7] -> [11,4]", do_upsample, x, NULL, NULL, &near2, TOL_SAME);
    cross("upsample bilinear [5,7] -> [12,15]", do_upsample, x, NULL, NULL, &bil, TOL_SAME);
    cross("upsample bilinear align_corners", do_upsample, x, NULL, NULL, &bila, TOL_SAME);
    cross("upsample bilinear down [5,7] -> [3,4]", do_upsample, x, NULL, NULL, &bdown, TOL_SAME);
    cross("upsample bilinear align_corners to h = 1", do_upsample, x, NULL, NULL, &one,
          TOL_SAME);
    cross("upsample nearest 3-D", do_upsample, x3, NULL, NULL, &near3, TOL_SAME);
    cross("upsample trilinear", do_upsample, x3, NULL, NULL, &tri, TOL_SAME);
    cross("upsample trilinear align_corners", do_upsample, x3, NULL, NULL, &tria, TOL_SAME);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&x3);
}

/* ---- CSR aggregation ----------------------------------------------------------- */

static int do_csr(dsp_tensor *const *in, const void *arg, dsp_tensor **out)
{
    return dsp_csr_aggregate(in[0], in[1], in[2], in[3], *(const dsp_agg_kind *)arg, out);
}

static void test_csr(void)
{
    /* 8 destinations over 9 sources, rows 0, 3 and 7 empty; f = 45 spans
     * two passes of a warp's lanes; one source repeats within a row */
    static const int64_t ptr[] = {0, 0, 3, 7, 7, 8, 12, 15, 15};
    static const int64_t idx[] = {1, 4, 8, 0, 2, 2, 5, 3, 8, 7, 6, 0, 1, 4, 4};
    const int64_t nnz = sizeof idx / sizeof idx[0];
    static const char *const names[] = {"sum", "mean", "max"};
    dsp_tensor *x = rand_f32(SHAPE(9, 45)), *ew = rand_f32(SHAPE(15));
    dsp_tensor *p32 = index_tensor(DSP_DTYPE_I32, 9, ptr), *i32 = index_tensor(DSP_DTYPE_I32, nnz, idx);
    dsp_tensor *p64 = index_tensor(DSP_DTYPE_I64, 9, ptr), *i64 = index_tensor(DSP_DTYPE_I64, nnz, idx);
    char what[96];
    for (int k = 0; k < 3; k++) {
        dsp_agg_kind kind = (dsp_agg_kind)k;
        dsp_tensor *a[] = {p32, i32, x, NULL}, *bw[] = {p64, i64, x, ew};
        dsp_tensor *mixed[] = {p64, i32, x, ew};
        snprintf(what, sizeof what, "csr %s, i32, no weights", names[k]);
        crossn(what, do_csr, a, 4, &kind, TOL_SAME);
        snprintf(what, sizeof what, "csr %s, i64, edge weights", names[k]);
        crossn(what, do_csr, bw, 4, &kind, TOL_SAME);
        snprintf(what, sizeof what, "csr %s, i64 indptr, i32 indices, edge weights", names[k]);
        crossn(what, do_csr, mixed, 4, &kind, TOL_SAME);
    }

    /* the structure is checked on the device path too, with the CPU's messages */
    static const int64_t bad_idx[] = {1, 4, 9, 0, 2, 2, 5, 3, 8, 7, 6, 0, 1, 4, 4};
    static const int64_t bad_ptr[] = {0, 0, 3, 7, 6, 8, 12, 15, 15};
    dsp_tensor *bi = index_tensor(DSP_DTYPE_I64, nnz, bad_idx);
    dsp_tensor *bp = index_tensor(DSP_DTYPE_I32, 9, bad_ptr);
    dsp_tensor *dx = to(x, gpu), *dp = to(p32, gpu), *dbi = to(bi, gpu), *dbp = to(bp, gpu);
    dsp_tensor *di = to(i32, gpu), *out = NULL;
    EXPECT_RC(dsp_csr_aggregate(dp, dbi, dx, NULL, DSP_AGG_SUM, &out), DSP_EINVAL);
    expect_msg("csr bad index on the device", "index 9 at position 2 of indices is outside [0, 9)");
    EXPECT_RC(dsp_csr_aggregate(dbp, di, dx, NULL, DSP_AGG_SUM, &out), DSP_EINVAL);
    expect_msg("csr decreasing indptr on the device", "indptr decreases at position 4");
    checks++;
    if (out)
        FAIL("a failed csr_aggregate left a result in *out");
    dsp_tensor *ts[] = {x, ew, p32, i32, p64, i64, bi, bp, dx, dp, dbi, dbp, di};
    unref_all(ts, sizeof ts / sizeof ts[0]);
}

/* ---- LSTM ------------------------------------------------------------------------- */

/* in = {x, lengths, w_ih, w_hh, b_ih, b_hh, and the same four reversed
 * (NULL w_ih_reverse: one direction)} */
static int do_lstm(dsp_tensor *const *in, const void *arg, dsp_tensor **out)
{
    dsp_lstm_weights f = {in[2], in[3], in[4], in[5]}, r = {in[6], in[7], in[8], in[9]};
    (void)arg;
    return dsp_lstm(in[0], &f, in[6] ? &r : NULL, in[1], out);
}

static void test_lstm(void)
{
    const int64_t B = 3, T = 9, IN = 5, H = 7;
    dsp_tensor *x = rand_f32(SHAPE(B, T, IN));
    dsp_tensor *w[8];
    for (int d = 0; d < 2; d++) {
        w[4 * d] = rand_f32(SHAPE(4 * H, IN));
        w[4 * d + 1] = rand_f32(SHAPE(4 * H, H));
        w[4 * d + 2] = rand_f32(SHAPE(4 * H));
        w[4 * d + 3] = rand_f32(SHAPE(4 * H));
    }
    static const int64_t lens[] = {9, 4, 0};
    dsp_tensor *l64 = index_tensor(DSP_DTYPE_I64, B, lens), *l32 = index_tensor(DSP_DTYPE_I32, B, lens);

    dsp_tensor *uni[10] = {x, NULL, w[0], w[1], w[2], w[3]};
    crossn("lstm one direction", do_lstm, uni, 10, NULL, TOL_LSTM);
    dsp_tensor *uni_l[10] = {x, l64, w[0], w[1], NULL, w[3]};
    crossn("lstm one direction, i64 lengths, no b_ih", do_lstm, uni_l, 10, NULL, TOL_LSTM);
    dsp_tensor *bi[10] = {x, NULL, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    crossn("lstm bidirectional", do_lstm, bi, 10, NULL, TOL_LSTM);
    dsp_tensor *bi_l[10] = {x, l32, w[0], w[1], w[2], w[3], w[4], w[5], NULL, NULL};
    crossn("lstm bidirectional, i32 lengths, no reverse biases", do_lstm, bi_l, 10, NULL,
           TOL_LSTM);

    /* f16 / bf16 matrices (converted per call on both sides) and a bf16 bias */
    dsp_tensor *wh = to_half(w[0], DSP_DTYPE_F16), *whh = to_half(w[1], DSP_DTYPE_BF16);
    dsp_tensor *bb = to_half(w[2], DSP_DTYPE_BF16);
    dsp_tensor *half[10] = {x, l64, wh, whh, bb, w[3]};
    crossn("lstm f16 w_ih, bf16 w_hh and b_ih", do_lstm, half, 10, NULL, TOL_LSTM);

    /* a length past seq, checked on a host copy of the device lengths */
    static const int64_t bad[] = {9, 10, 2};
    dsp_tensor *lb = index_tensor(DSP_DTYPE_I32, B, bad), *out = NULL;
    dsp_tensor *dx = to(x, gpu), *dl = to(lb, gpu), *dwi = to(w[0], gpu), *dwh = to(w[1], gpu);
    dsp_lstm_weights f = {dwi, dwh, NULL, NULL};
    EXPECT_RC(dsp_lstm(dx, &f, NULL, dl, &out), DSP_EINVAL);
    expect_msg("lstm bad length on the device", "length 10 at position 1 of lengths is outside [0, 9]");
    checks++;
    if (out)
        FAIL("a failed lstm left a result in *out");
    dsp_tensor *ts[] = {x, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], l64, l32,
                        wh, whh, bb, lb, dx, dl, dwi, dwh};
    unref_all(ts, sizeof ts / sizeof ts[0]);
}

/* ---- embedding ------------------------------------------------------------------- */

static int do_embedding(const dsp_tensor *ids, const dsp_tensor *table, const dsp_tensor *z,
                        const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_embedding(ids, table, out);
}

static void test_embedding(void)
{
    dsp_tensor *table = rand_f32(SHAPE(20, 33)), *ids32 = host(DSP_DTYPE_I32, SHAPE(3, 4));
    static const int64_t some[] = {19, 0, 7, 7, 3};
    dsp_tensor *ids64 = index_tensor(DSP_DTYPE_I64, 5, some);
    for (int i = 0; i < 12; i++)
        ((int32_t *)dsp_tensor_data(ids32))[i] = (i * 7) % 20;
    dsp_tensor *th = to_half(table, DSP_DTYPE_F16), *tb = to_half(table, DSP_DTYPE_BF16);
    cross("embedding f32 table, i32 ids [3,4]", do_embedding, ids32, table, NULL, NULL, TOL_COPY);
    cross("embedding f16 table, i64 ids", do_embedding, ids64, th, NULL, NULL, TOL_COPY);
    cross("embedding bf16 table, i32 ids", do_embedding, ids32, tb, NULL, NULL, TOL_COPY);

    /* a transposed table is read through its strides on both devices */
    dsp_tensor *tt = rand_f32(SHAPE(33, 20)), *dtt = to(tt, gpu), *view = NULL, *dview = NULL;
    dsp_tensor *c = NULL, *g = NULL, *dids = to(ids64, gpu);
    dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){20, 33}, (int64_t[]){1, 20}, tt->buf,
                           0, &view);
    dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){20, 33}, (int64_t[]){1, 20}, dtt->buf,
                           0, &dview);
    EXPECT_RC(dsp_embedding(ids64, view, &c), 0);
    EXPECT_RC(dsp_embedding(dids, dview, &g), 0);
    compare("embedding of a transposed table view", c, g, TOL_COPY);

    /* a bad id on the device: the CPU's message, nothing written */
    static const int64_t bad[] = {0, 3, 20, -1, 2};
    dsp_tensor *idb = index_tensor(DSP_DTYPE_I64, 5, bad), *didb = to(idb, gpu);
    dsp_tensor *dtable = to(table, gpu), *out = NULL;
    EXPECT_RC(dsp_embedding(didb, dtable, &out), DSP_EINVAL);
    expect_msg("embedding bad id on the device", "id 20 at position 2 of ids [5] is outside [0, 20)");
    checks++;
    if (out)
        FAIL("a failed embedding left a result in *out");
    dsp_tensor *ts[] = {table, ids32, ids64, th, tb, tt, dtt, view, dview, dids, idb, didb,
                        dtable};
    unref_all(ts, sizeof ts / sizeof ts[0]);
}

int main(void)
{
    int rc = cudatest_open();
    if (rc)
        return rc;
    test_conv();
    test_pool();
    test_batchnorm();
    test_upsample();
    test_csr();
    test_lstm();
    test_embedding();
    return cudatest_close();
}
