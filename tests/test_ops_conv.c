/* test_ops_conv.c - dspipe's convolution family (conv2d/3d, pooling, batch norm, upsampling) against PyTorch fixtures, plus its error contract. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"
#include "ops_fixture.h"

/* Tolerances: max |got - expected| <= TOL * (1 + max |expected|).
 * Convolutions sum up to 441 products (the r3d stem: 3x3x7x7) through
 * im2col + GEMM, in another order than PyTorch's kernels: TOL_CONV. f16/bf16
 * weights are upcast exactly as the reference does, so they share it.
 * Average pooling, adaptive average, batch norm and (bi/tri)linear
 * upsampling round a few f32 operations differently: TOL_F32. Max pooling
 * (both kinds) and nearest upsampling pick an input value: exact (0). */
#define TOL_CONV 3e-5
#define TOL_F32 1e-5

#define FIXTURE_DIR "ops_conv"

/* An i64 parameter vector caseN.name into v (zeros past its length);
 * returns its length. */
static int ints(const dsp_safetensors *st, int i, const char *name, int *v, int max)
{
    dsp_tensor *t = ops_get(st, i, name);
    ck_assert_msg(t != NULL, "case%d.%s missing", i, name);
    ck_assert(t->dtype == DSP_DTYPE_I64 && t->ndim == 1 && t->shape[0] <= max);
    const int64_t *d = dsp_tensor_data(t);
    int n = (int)t->shape[0];
    memset(v, 0, sizeof(int) * (size_t)max);
    for (int k = 0; k < n; k++)
        v[k] = (int)d[k];
    dsp_tensor_unref(&t);
    return n;
}

enum { IN_MAX = 6 };

static int run(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
               dsp_tensor **out)
{
    int a[3], b[3], c[3], k[1];
    if (!strcmp(op, "conv2d") || !strcmp(op, "conv3d")) {
        dsp_conv_opts o;
        memset(&o, 0, sizeof o);
        ints(st, i, "stride", o.stride, 3);
        ints(st, i, "padding", o.padding, 3);
        ints(st, i, "dilation", o.dilation, 3);
        ints(st, i, "groups", k, 1);
        o.groups = k[0];
        return op[4] == '2' ? dsp_conv2d(in[0], in[1], in[2], &o, out)
                            : dsp_conv3d(in[0], in[1], in[2], &o, out);
    }
    if (!strcmp(op, "pool")) {
        ints(st, i, "kind", k, 1);
        ints(st, i, "kernel", a, 3);
        ints(st, i, "stride", b, 3);
        ints(st, i, "padding", c, 3);
        return dsp_pool(in[0], (dsp_pool_kind)k[0], a, b, c, out);
    }
    if (!strcmp(op, "adaptive_pool")) {
        ints(st, i, "kind", k, 1);
        ints(st, i, "out_size", a, 3);
        return dsp_adaptive_pool(in[0], (dsp_pool_kind)k[0], a, out);
    }
    if (!strcmp(op, "batchnorm")) {
        dsp_tensor *e = ops_get(st, i, "eps");
        ck_assert_ptr_nonnull(e);
        float eps = *(const float *)dsp_tensor_data(e);
        dsp_tensor_unref(&e);
        return dsp_batchnorm(in[0], in[1], in[2], in[3], in[4], eps, out);
    }
    if (!strcmp(op, "upsample")) {
        ints(st, i, "out_size", a, 3);
        ints(st, i, "mode", k, 1);
        ints(st, i, "align", b, 1);
        return dsp_upsample(in[0], a, (dsp_upsample_mode)k[0], b[0], out);
    }
    ck_abort_msg("unknown op %s", op);
    return -1;
}

static const char *const input_names[][IN_MAX] = {
    {"conv2d", "x", "w", "b", NULL, NULL}, {"conv3d", "x", "w", "b", NULL, NULL},
    {"pool", "x", NULL, NULL, NULL, NULL}, {"adaptive_pool", "x", NULL, NULL, NULL, NULL},
    {"batchnorm", "x", "mean", "var", "w", "b"}, {"upsample", "x", NULL, NULL, NULL, NULL},
};

/* The tolerance of case i: exact where the op only selects input values. */
static double case_tol(const char *op, const dsp_safetensors *st, int i, double tol)
{
    int k[1];
    if (!strcmp(op, "pool") || !strcmp(op, "adaptive_pool")) {
        ints(st, i, "kind", k, 1);
        return k[0] == DSP_POOL_MAX ? 0.0 : tol;
    }
    if (!strcmp(op, "upsample")) {
        ints(st, i, "mode", k, 1);
        return k[0] == DSP_UPSAMPLE_NEAREST ? 0.0 : tol;
    }
    return tol;
}

/* Every case three ways: *out NULL, preallocated *out, and each input of 2
 * dims or more replaced by a transposed (strided) view; then on the GPU
 * when one is usable. */
static void check_op(const char *op, double tol)
{
    const char *const *names = NULL;
    for (size_t k = 0; k < sizeof input_names / sizeof input_names[0]; k++)
        if (!strcmp(input_names[k][0], op))
            names = input_names[k] + 1;
    ck_assert_ptr_nonnull(names);
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, op);
    int n = ops_ncases(st);
    ck_assert_int_gt(n, 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        dsp_tensor *in[IN_MAX] = {NULL}, *exp = ops_get(st, i, "expected");
        double tol_i = case_tol(op, st, i, tol);
        for (int k = 0; k < IN_MAX - 1 && names[k]; k++)
            in[k] = ops_get(st, i, names[k]);
        double e = ops_check_case(op, i, run, st, in, IN_MAX - 1, names, exp, tol_i, 34,
                                  0);
        worst = e > worst ? e : worst;
        for (int k = 0; k < IN_MAX; k++)
            dsp_tensor_unref(&in[k]);
        dsp_tensor_unref(&exp);
    }
    printf("%-34s %d cases, worst max abs err %.3g\n", op, n, worst);
    dsp_safetensors_close(&st);
}

START_TEST(test_conv2d) { check_op("conv2d", TOL_CONV); }
END_TEST
START_TEST(test_conv3d) { check_op("conv3d", TOL_CONV); }
END_TEST
START_TEST(test_pool) { check_op("pool", TOL_F32); }
END_TEST
START_TEST(test_adaptive_pool) { check_op("adaptive_pool", TOL_F32); }
END_TEST
START_TEST(test_batchnorm) { check_op("batchnorm", TOL_F32); }
END_TEST
START_TEST(test_upsample) { check_op("upsample", TOL_F32); }
END_TEST

/* Deterministic pseudo-random values in [-1, 1). */
static dsp_tensor *filled(int ndim, const int64_t *shape, unsigned seed)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        seed = seed * 1664525u + 1013904223u;
        d[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
    return t;
}

/* A layer whose im2col matrix (576 x 65536 floats, 144 MiB) exceeds the
 * 64 MiB column bound: the output is produced in chunks that start
 * mid-row. Checked against a direct loop on a spread of outputs. */
START_TEST(test_conv_chunked)
{
    int64_t xs[] = {1, 64, 256, 256}, ws[] = {2, 64, 3, 3};
    dsp_tensor *x = filled(4, xs, 1), *w = filled(4, ws, 2), *y = NULL;
    dsp_conv_opts o;
    memset(&o, 0, sizeof o);
    o.padding[0] = o.padding[1] = 1;
    ck_assert_int_eq(dsp_conv2d(x, w, NULL, &o, &y), 0);
    ck_assert_int_eq(y->shape[2], 256);
    const float *xd = dsp_tensor_data(x), *wd = dsp_tensor_data(w), *yd = dsp_tensor_data(y);
    double err = 0;
    for (int64_t idx = 0; idx < 2 * 256 * 256; idx += 331) {
        int64_t oc = idx / 65536, oh = idx / 256 % 256, ow = idx % 256;
        double s = 0;
        for (int c = 0; c < 64; c++)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    int64_t ih = oh + a - 1, iw = ow + b - 1;
                    if (ih >= 0 && ih < 256 && iw >= 0 && iw < 256)
                        s += (double)xd[(c * 256 + ih) * 256 + iw] * wd[((oc * 64 + c) * 3 + a) * 3 + b];
                }
        double d = fabs(s - yd[idx]);
        err = d > err ? d : err;
    }
    printf("%-34s max abs err %.3g (limit %.3g)\n", "conv2d chunked", err, TOL_CONV * 25);
    ck_assert(err <= TOL_CONV * 25);   /* |y| stays below ~24 for 576 products of [-1, 1) */
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&y);
}
END_TEST

/* Winograd F(2,3) against im2col (both selected through DSPIPE_CONV) on
 * random layers: odd sizes and outputs, padding 0/1/2 (mixed per dim),
 * batch 2, channels not multiples of 8, a (1,3,3) kernel, conv2d, bf16
 * weights, and layers of several tile blocks. Winograd's transforms add
 * rounding: measured worst 5.7e-7 relative here; TOL_WINO leaves ~20x. */
#define TOL_WINO 1e-5

typedef struct wino_case {
    int nsp;
    int64_t n, c, oc, in[3], k[3];
    int pad[3];
    int bias;
    dsp_dtype wdt;
} wino_case;

static dsp_tensor *conv_with(const char *algo, const wino_case *wc, const dsp_tensor *x,
                             const dsp_tensor *w, const dsp_tensor *b)
{
    dsp_conv_opts o;
    dsp_tensor *y = NULL;
    memset(&o, 0, sizeof o);
    memcpy(o.padding, wc->pad + 3 - wc->nsp, sizeof(int) * (size_t)wc->nsp);
    setenv("DSPIPE_CONV", algo, 1);
    int rc = wc->nsp == 2 ? dsp_conv2d(x, w, b, &o, &y) : dsp_conv3d(x, w, b, &o, &y);
    unsetenv("DSPIPE_CONV");
    ck_assert_msg(rc == 0, "%s: %s", algo, dsp_ops_error());
    return y;
}

/* max |a - b| / (1 + max |a|) */
static double rel_diff(const dsp_tensor *a, const dsp_tensor *b)
{
    const float *x = dsp_tensor_data(a), *y = dsp_tensor_data(b);
    double big = 0, d = 0;
    ck_assert_int_eq(dsp_tensor_numel(a), dsp_tensor_numel(b));
    for (int64_t i = 0; i < dsp_tensor_numel(a); i++) {
        big = fabs(x[i]) > big ? fabs(x[i]) : big;
        d = fabs((double)x[i] - y[i]) > d ? fabs((double)x[i] - y[i]) : d;
    }
    return d / (1 + big);
}

START_TEST(test_conv_winograd)
{
    static const wino_case cases[] = {
        {3, 1, 3, 4, {5, 9, 11}, {3, 3, 3}, {0, 0, 0}, 1, DSP_DTYPE_F32},
        {3, 2, 5, 7, {4, 6, 7}, {3, 3, 3}, {1, 1, 1}, 0, DSP_DTYPE_F32},
        {3, 1, 9, 10, {3, 5, 5}, {3, 3, 3}, {2, 2, 2}, 1, DSP_DTYPE_F32},
        {3, 1, 20, 17, {3, 4, 5}, {3, 3, 3}, {0, 1, 2}, 1, DSP_DTYPE_F32},
        {3, 1, 12, 8, {5, 6, 7}, {1, 3, 3}, {0, 1, 1}, 0, DSP_DTYPE_F32},
        {3, 1, 24, 40, {6, 7, 9}, {3, 3, 3}, {1, 1, 1}, 1, DSP_DTYPE_BF16},
        {3, 2, 64, 72, {8, 15, 17}, {3, 3, 3}, {1, 1, 1}, 1, DSP_DTYPE_F32},
        /* 784 tiles in blocks of 88 (85 rounded up to the lanes) */
        {3, 1, 16, 32, {8, 28, 28}, {3, 3, 3}, {1, 1, 1}, 0, DSP_DTYPE_F32},
        {2, 2, 5, 6, {1, 7, 13}, {1, 3, 3}, {0, 1, 1}, 1, DSP_DTYPE_F32},
        {2, 1, 33, 31, {1, 21, 18}, {1, 3, 3}, {0, 2, 0}, 0, DSP_DTYPE_F32},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const wino_case *wc = &cases[i];
        const int off = 3 - wc->nsp;
        int64_t xs[5] = {wc->n, wc->c}, ws[5] = {wc->oc, wc->c}, bs[1] = {wc->oc};
        memcpy(xs + 2, wc->in + off, sizeof(int64_t) * (size_t)wc->nsp);
        memcpy(ws + 2, wc->k + off, sizeof(int64_t) * (size_t)wc->nsp);
        dsp_tensor *x = filled(wc->nsp + 2, xs, 11 + (unsigned)i);
        dsp_tensor *w = filled(wc->nsp + 2, ws, 31 + (unsigned)i), *b = NULL;
        if (wc->bias)
            b = filled(1, bs, 51 + (unsigned)i);
        if (wc->wdt == DSP_DTYPE_BF16) {   /* bf16: the high half of each f32 */
            dsp_tensor *w16 = NULL;
            ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_BF16, wc->nsp + 2, ws, &w16), 0);
            const float *src = dsp_tensor_data(w);
            uint16_t *dst = dsp_tensor_data(w16);
            for (int64_t j = 0; j < dsp_tensor_numel(w); j++) {
                uint32_t bits;
                memcpy(&bits, &src[j], sizeof bits);
                dst[j] = (uint16_t)(bits >> 16);
            }
            dsp_tensor_unref(&w);
            w = w16;
        }
        dsp_tensor *ref = conv_with("im2col", wc, x, w, b);
        dsp_tensor *got = conv_with("winograd", wc, x, w, b);
        double e = rel_diff(ref, got);
        printf("%-34s case%zu rel err %.3g (limit %.3g)\n", "conv winograd vs im2col", i, e,
               TOL_WINO);
        ck_assert_msg(e <= TOL_WINO, "case %zu: %g", i, e);
        ck_assert_msg(e > 0, "case %zu: DSPIPE_CONV selected the same path twice", i);
        worst = e > worst ? e : worst;
        dsp_tensor_unref(&x);
        dsp_tensor_unref(&w);
        dsp_tensor_unref(&b);
        dsp_tensor_unref(&ref);
        dsp_tensor_unref(&got);
    }
    printf("%-34s worst rel err %.3g\n", "conv winograd vs im2col", worst);
}
END_TEST

/* Weights in a read-only buffer (a mapped model file) are transformed
 * once and kept with the buffer: the second call reuses them and must
 * give the same result, another tensor in the same buffer its own. */
START_TEST(test_conv_winograd_cached)
{
    const wino_case wc = {3, 1, 16, 16, {4, 6, 6}, {3, 3, 3}, {1, 1, 1}, 0, DSP_DTYPE_F32};
    int64_t xs[] = {1, 16, 4, 6, 6}, ws[] = {16, 16, 3, 3, 3}, both[] = {2 * 16 * 16 * 27};
    dsp_tensor *x = filled(5, xs, 71), *w2 = filled(1, both, 72), *wv[2] = {NULL, NULL};
    dsp_buffer *ro = NULL;
    ck_assert_int_eq(dsp_buffer_wrap(dsp_tensor_data(w2), dsp_tensor_nbytes(w2), 1, NULL, NULL,
                                     &ro), 0);
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 5, ws, NULL, ro,
                                                (size_t)k * 16 * 16 * 27 * sizeof(float),
                                                &wv[k]), 0);
    for (int k = 0; k < 2; k++) {
        dsp_tensor *w = NULL;   /* a writable copy: transformed per call */
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 5, ws, &w), 0);
        memcpy(dsp_tensor_data(w), dsp_tensor_data(wv[k]), dsp_tensor_nbytes(w));
        dsp_tensor *plain = conv_with("winograd", &wc, x, w, NULL);
        for (int rep = 0; rep < 2; rep++) {
            dsp_tensor *got = conv_with("winograd", &wc, x, wv[k], NULL);
            ck_assert_msg(!memcmp(dsp_tensor_data(got), dsp_tensor_data(plain),
                                  dsp_tensor_nbytes(got)), "weights %d call %d", k, rep);
            dsp_tensor_unref(&got);
        }
        dsp_tensor_unref(&plain);
        dsp_tensor_unref(&w);
    }
    setenv("DSPIPE_CONV", "fast", 1);
    dsp_tensor *y = NULL;
    ck_assert_int_eq(dsp_conv3d(x, wv[0], NULL, NULL, &y), DSP_EINVAL);
    unsetenv("DSPIPE_CONV");
    ck_assert_str_eq(dsp_ops_error(), "conv3d: DSPIPE_CONV=fast: expected auto, im2col or "
                     "winograd");
    dsp_tensor_unref(&wv[0]);
    dsp_tensor_unref(&wv[1]);
    dsp_buffer_unref(&ro);
    dsp_tensor_unref(&w2);
    dsp_tensor_unref(&x);
}
END_TEST

START_TEST(test_errors)
{
    int64_t xs[] = {1, 3, 7, 13}, x5s[] = {1, 3, 5, 5}, wg[] = {4, 1, 3, 3}, wbig[] = {2, 3, 7, 7};
    int64_t wch[] = {4, 2, 3, 3}, x3[] = {3, 7, 13}, ms[] = {4}, os[] = {1, 4, 7, 13};
    dsp_tensor *x = filled(4, xs, 3), *x5 = filled(4, x5s, 4), *w_g = filled(4, wg, 5);
    dsp_tensor *w_big = filled(4, wbig, 6), *w_ch = filled(4, wch, 7), *xr3 = filled(3, x3, 8);
    dsp_tensor *mean = filled(1, ms, 9), *o = filled(4, os, 10), *keep = o, *none = NULL;
    dsp_conv_opts opt;
    memset(&opt, 0, sizeof opt);

    opt.groups = 2;
    ops_assert_error(dsp_conv2d(x, w_g, NULL, &opt, &none), DSP_EINVAL,
                     "conv2d: channels not divisible by groups 2: x [1, 3, 7, 13] has 3, "
                     "w [4, 1, 3, 3] has 4 output channels");
    opt.groups = 0;
    ops_assert_error(dsp_conv2d(x, w_ch, NULL, &opt, &none), DSP_EINVAL,
                     "conv2d: w [4, 2, 3, 3] expects 2 input channels per group, x [1, 3, 7, 13] "
                     "has 3 (3 channels / 1 groups)");
    ops_assert_error(dsp_conv2d(x5, w_big, NULL, &opt, &none), DSP_EINVAL,
                     "conv2d: kernel larger than the padded input at dim h: w [2, 3, 7, 7] spans 7 "
                     "(dilation 1), x [1, 3, 5, 5] padded by 0 gives 5");
    opt.padding[0] = opt.padding[1] = 1;    /* 5 + 2 = 7: fits exactly */
    ck_assert_int_eq(dsp_conv2d(x5, w_big, NULL, &opt, &none), 0);
    dsp_tensor_unref(&none);
    opt.dilation[1] = 2;
    ops_assert_error(dsp_conv2d(x5, w_big, NULL, &opt, &none), DSP_EINVAL,
                     "at dim w: w [2, 3, 7, 7] spans 13 (dilation 2)");
    ops_assert_error(dsp_conv3d(x, w_g, NULL, NULL, &none), DSP_EINVAL,
                     "conv3d: expects x [n, c, d, h, w] and w [oc, c / groups, kd, kh, kw], got "
                     "x [1, 3, 7, 13] and w [4, 1, 3, 3]");
    ops_assert_error(dsp_conv2d(xr3, w_g, NULL, NULL, &none), DSP_EINVAL,
                     "conv2d: expects x [n, c, h, w] and w [oc, c / groups, kh, kw], got "
                     "x [3, 7, 13]");
    ops_assert_error(dsp_conv2d(x, w_g, mean, NULL, &none), DSP_EINVAL,
                     "conv2d: w [4, 1, 3, 3] expects 1 input channels per group");
    opt = (dsp_conv_opts){.groups = 3};
    ops_assert_error(dsp_conv2d(x, w_g, x5, &opt, &none), DSP_EINVAL,
                     "conv2d: channels not divisible by groups 3");
    ck_assert_ptr_null(none);

    /* wrong preallocated out: refused, left as it was */
    opt = (dsp_conv_opts){.groups = 3, .padding = {1, 1}};
    int64_t ws3[] = {6, 1, 3, 3};
    dsp_tensor *w3 = filled(4, ws3, 11);
    ops_assert_error(dsp_conv2d(x, w3, NULL, &opt, &o), DSP_EINVAL,
                     "conv2d: out is f32[1, 4, 7, 13], expected f32[1, 6, 7, 13]");
    ck_assert_ptr_eq(o, keep);
    dsp_tensor_unref(&w3);

    int k2[] = {3, 3}, k9[] = {9, 3}, pbad[] = {2, 0};
    ops_assert_error(dsp_pool(xr3, DSP_POOL_MAX, k2, NULL, NULL, &none), DSP_EINVAL,
                     "pool: expects x [n, c, h, w] or [n, c, d, h, w], got x [3, 7, 13]");
    ops_assert_error(dsp_pool(x, DSP_POOL_AVG, k9, NULL, NULL, &none), DSP_EINVAL,
                     "pool: kernel larger than the padded input at dim h: kernel 9, x [1, 3, 7, 13] "
                     "padded by 0 gives 7");
    ops_assert_error(dsp_pool(x, DSP_POOL_MAX, k2, NULL, pbad, &none), DSP_EINVAL,
                     "pool: dim h: kernel 3, stride 3, padding 2");
    ops_assert_error(dsp_adaptive_pool(xr3, DSP_POOL_AVG, k2, &none), DSP_EINVAL,
                     "adaptive_pool: expects x [n, c, h, w] or [n, c, d, h, w]");
    int zero[] = {0, 3};
    ops_assert_error(dsp_adaptive_pool(x, DSP_POOL_AVG, zero, &none), DSP_EINVAL,
                     "adaptive_pool: out_size 0 at dim h, expected at least 1");
    ops_assert_error(dsp_upsample(xr3, k2, DSP_UPSAMPLE_LINEAR, 0, &none), DSP_EINVAL,
                     "upsample: expects x [n, c, h, w] or [n, c, d, h, w], got x [3, 7, 13]");
    ops_assert_error(dsp_batchnorm(x, mean, mean, NULL, NULL, 1e-5f, &none), DSP_EINVAL,
                     "batchnorm: mean [4] does not match the 3 channels of x [1, 3, 7, 13]");
    ops_assert_error(dsp_batchnorm(x, NULL, mean, NULL, NULL, 1e-5f, &none), DSP_EINVAL,
                     "batchnorm: mean is NULL");
    ck_assert_ptr_null(none);

    dsp_tensor *xs_[] = {x, x5, w_g, w_big, w_ch, xr3, mean, o};
    for (size_t i = 0; i < sizeof xs_ / sizeof xs_[0]; i++)
        dsp_tensor_unref(&xs_[i]);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("ops_conv");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conv2d);
    tcase_add_test(tc, test_conv3d);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_adaptive_pool);
    tcase_add_test(tc, test_batchnorm);
    tcase_add_test(tc, test_upsample);
    tcase_add_test(tc, test_conv_chunked);
    tcase_add_test(tc, test_conv_winograd);
    tcase_add_test(tc, test_conv_winograd_cached);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
