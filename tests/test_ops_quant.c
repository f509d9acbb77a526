/* test_ops_quant.c - weight-only quantization (dsp_quantize, dsp_linear_q ...) and dsp_moe against PyTorch fixtures, plus their error contract (quantized and W8A8 experts: test_ops_moe.c). */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"
#include "ops_fixture.h"
#include "ops/quant_int.h"
#include "ops/cpu/simd.h"

/* Tolerances: max |got - expected| <= TOL * (1 + max |expected|).
 * dsp_dequantize must equal the script's code * scale exactly (the same
 * float32 multiply, codes reproduced bit for bit): TOL_EXACT 0.
 * dsp_linear_q against x @ deq.T + b: only the GEMM's summation order
 * differs (K up to 512): TOL_GEMM. MoE chains three GEMMs, expf-based
 * softmax/sigmoid/silu (libm vs PyTorch) and a weighted sum over top_k
 * experts: TOL_MOE. The accuracy of quantization itself (against the f32
 * linear) is reported and only loosely bounded: TOL_Q8 / TOL_Q4 on the
 * error relative to max |y|. */
#define TOL_EXACT 0.0
#define TOL_GEMM 2e-5
#define TOL_MOE 5e-5
#define TOL_Q8 0.02
#define TOL_Q4 0.25

#define FIXTURE_DIR "ops_quant"

/* ops_compare with this file's report width and comparison rules. */
static double compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol)
{
    return ops_compare(what, got, exp, tol, 34, OPS_CMP_TERSE_SHAPE);
}

/* ops_transposed_view of a matrix (2 dims only). */
static dsp_tensor *transposed_view(const dsp_tensor *t)
{
    ck_assert_int_eq(t->ndim, 2);
    return ops_transposed_view(t);
}

/* The fixture's codes times its scales: what dsp_dequantize must give. */
static dsp_tensor *ref_dequant(const dsp_tensor *q, const dsp_tensor *scale, int kind, int group,
                               int64_t out, int64_t in)
{
    int64_t shape[2] = {out, in};
    dsp_tensor *d = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, shape, &d), 0);
    float *o = dsp_tensor_data(d);
    const float *s = dsp_tensor_data(scale);
    for (int64_t r = 0; r < out; r++)
        for (int64_t k = 0; k < in; k++) {
            int c;
            if (kind == DSP_QUANT_INT8) {
                c = ((const int8_t *)dsp_tensor_data(q))[r * in + k];
            } else {
                uint8_t byte = ((const uint8_t *)dsp_tensor_data(q))[r * (in / 2) + k / 2];
                int nib = k % 2 ? byte >> 4 : byte & 0xf;
                c = nib >= 8 ? nib - 16 : nib;
            }
            o[r * in + k] = (float)c * s[r * (in / group) + k / group];
        }
    return d;
}

START_TEST(test_quant_fixtures)
{
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "quant");
    int n = ops_ncases(st);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++) {
        dsp_tensor *w = ops_get(st, i, "w"), *x, *b, *y32;
        int big = w == NULL;    /* the shared [256, 512] accuracy matrix */
        if (big) {
            w = ops_get(st, -1, "w");
            x = ops_get(st, -1, "x");
            b = ops_get(st, -1, "b");
            y32 = ops_get(st, -1, "y_f32");
        } else {
            x = ops_get(st, i, "x");
            b = ops_get(st, i, "b");
            y32 = ops_get(st, i, "y_f32");
        }
        dsp_tensor *q = ops_get(st, i, "q"), *scale = ops_get(st, i, "scale");
        dsp_tensor *exp = ops_get(st, i, "expected");
        int kind = (int)ops_scalar(st, i, "kind"), group = (int)ops_scalar(st, i, "group");
        int64_t O = w->shape[0], I = w->shape[1];
        char what[96];
        const char *kn = kind == DSP_QUANT_INT8 ? "int8" : "int4";

        dsp_qweight *qw = NULL;
        ck_assert_msg(dsp_quantize(w, (dsp_quant_kind)kind, group, &qw) == 0, "%s",
                      dsp_ops_error());
        int64_t so = 0, si = 0;
        ck_assert_int_eq(dsp_qweight_shape(qw, &so, &si), 0);
        ck_assert(so == O && si == I);
        size_t want = (size_t)(O * (kind == DSP_QUANT_INT8 ? I : I / 2)) +
                      (size_t)(O * (I / group)) * sizeof(float);
        ck_assert_uint_eq(dsp_qweight_bytes(qw), want);

        /* dequantize: exactly the script's code * scale */
        dsp_tensor *deq = NULL, *rdeq = ref_dequant(q, scale, kind, group, O, I);
        ck_assert_int_eq(dsp_dequantize(qw, &deq), 0);
        snprintf(what, sizeof what, "quant case%d %s g%d dequant", i, kn, group);
        compare(what, deq, rdeq, TOL_EXACT);

        /* a strided weight quantizes to the same codes */
        dsp_tensor *wv = transposed_view(w), *deq2 = NULL;
        dsp_qweight *qw2 = NULL;
        ck_assert_int_eq(dsp_quantize(wv, (dsp_quant_kind)kind, group, &qw2), 0);
        ck_assert_int_eq(dsp_dequantize(qw2, &deq2), 0);
        snprintf(what, sizeof what, "quant case%d strided w dequant", i);
        compare(what, deq2, rdeq, TOL_EXACT);

        /* linear_q: fresh, preallocated (NaN garbage), strided x */
        dsp_tensor *y = NULL, *pre = NULL, *keep;
        ck_assert_msg(dsp_linear_q(x, qw, b, &y) == 0, "%s", dsp_ops_error());
        snprintf(what, sizeof what, "quant case%d %s g%d linear_q", i, kn, group);
        compare(what, y, exp, TOL_GEMM);
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, exp->ndim, exp->shape, &pre), 0);
        memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre));
        keep = pre;
        ck_assert_int_eq(dsp_linear_q(x, qw, b, &pre), 0);
        ck_assert_ptr_eq(pre, keep);
        snprintf(what, sizeof what, "quant case%d prealloc", i);
        compare(what, pre, exp, TOL_GEMM);
        if (x->ndim == 2) {
            dsp_tensor *xt = transposed_view(x), *xs = NULL;
            ck_assert_int_eq(dsp_linear_q(xt, qw, b, &xs), 0);
            snprintf(what, sizeof what, "quant case%d strided x", i);
            compare(what, xs, exp, TOL_GEMM);
            dsp_tensor_unref(&xs);
            dsp_tensor_unref(&xt);
        }

        /* accuracy of quantization itself, against the unquantized linear */
        const float *g = dsp_tensor_data(y), *e = dsp_tensor_data(y32);
        double maxe = 0, mx = 0, se = 0, sy = 0;
        for (int64_t k = 0; k < dsp_tensor_numel(y); k++) {
            double d = fabs((double)g[k] - e[k]);
            maxe = d > maxe ? d : maxe;
            mx = fabs(e[k]) > mx ? fabs(e[k]) : mx;
            se += d * d;
            sy += (double)e[k] * e[k];
        }
        printf("%s%s g%-3d w [%lld, %lld] vs f32 linear: max abs err %.4g, max err / max|y| "
               "%.4g, rel L2 err %.4g; %zu bytes vs f32 %zu (%.1f%%)\n",
               big ? "ACCURACY " : "accuracy ", kn, group, (long long)O, (long long)I, maxe,
               maxe / mx, sqrt(se / sy), dsp_qweight_bytes(qw), (size_t)(O * I) * sizeof(float),
               100.0 * (double)dsp_qweight_bytes(qw) / (double)(O * I * 4));
        ck_assert(maxe / mx <= (kind == DSP_QUANT_INT8 ? TOL_Q8 : TOL_Q4));

        dsp_qweight_free(&qw);
        dsp_qweight_free(&qw2);
        ck_assert_ptr_null(qw);
        dsp_qweight_free(&qw);  /* freeing NULL is a no-op */
        dsp_tensor *ts[] = {w, x, b, y32, q, scale, exp, deq, rdeq, wv, deq2, y, pre};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            dsp_tensor_unref(&ts[k]);
    }
    dsp_safetensors_close(&st);
}
END_TEST

/* A [rows, cols] view of slice e of a stacked [E, rows, cols] tensor. */
static dsp_tensor *slice(const dsp_tensor *t, int e)
{
    dsp_tensor *v = NULL;
    int64_t shape[2] = {t->shape[1], t->shape[2]};
    size_t off = t->offset + (size_t)e * (size_t)(shape[0] * shape[1]) * dsp_dtype_size(t->dtype);
    ck_assert_int_eq(dsp_tensor_from_buffer(t->dtype, 2, shape, NULL, t->buf, off, &v), 0);
    return v;
}

enum { MAXE = 32 };

START_TEST(test_moe_fixtures)
{
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "moe");
    int n = ops_ncases(st);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++) {
        dsp_tensor *x = ops_get(st, i, "x"), *router = ops_get(st, i, "router"), *exp = ops_get(st, i, "expected");
        dsp_tensor *st3[6] = {ops_get(st, i, "gate"), ops_get(st, i, "up"), ops_get(st, i, "down"),
                              ops_get(st, i, "sgate"), ops_get(st, i, "sup"), ops_get(st, i, "sdown")};
        int E = (int)st3[0]->shape[0], S = st3[3] ? (int)st3[3]->shape[0] : 0;
        ck_assert(E + S <= MAXE);
        dsp_tensor *w[MAXE][3], *wt[MAXE][3];
        dsp_moe_expert ex[MAXE], ext[MAXE];
        for (int e = 0; e < E + S; e++) {
            for (int k = 0; k < 3; k++) {
                w[e][k] = slice(st3[e < E ? k : 3 + k], e < E ? e : e - E);
                wt[e][k] = transposed_view(w[e][k]);
            }
            ex[e] = (dsp_moe_expert){w[e][0], w[e][1], w[e][2]};
            ext[e] = (dsp_moe_expert){wt[e][0], wt[e][1], wt[e][2]};
        }
        dsp_moe_opts o = {(int)ops_scalar(st, i, "top_k"), (dsp_moe_score)ops_scalar(st, i, "score"),
                          (int)ops_scalar(st, i, "renorm"), (float)ops_scalar(st, i, "routed_scale")};
        char what[96];
        dsp_tensor *y = NULL, *pre = NULL, *keep, *ys = NULL;
        int rc = dsp_moe(x, router, ex, E, S ? ex + E : NULL, S, &o, &y);
        ck_assert_msg(rc == 0, "moe case%d: %s", i, dsp_ops_error());
        snprintf(what, sizeof what, "moe case%d E%d k%d S%d T%lld", i, E, o.top_k, S,
                 (long long)x->shape[0]);
        compare(what, y, exp, TOL_MOE);
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, exp->shape, &pre), 0);
        memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre));
        keep = pre;
        ck_assert_int_eq(dsp_moe(x, router, ex, E, S ? ex + E : NULL, S, &o, &pre), 0);
        ck_assert_ptr_eq(pre, keep);
        snprintf(what, sizeof what, "moe case%d prealloc", i);
        compare(what, pre, exp, TOL_MOE);
        /* strided expert weights and router, read through their strides */
        dsp_tensor *rv = transposed_view(router);
        ck_assert_int_eq(dsp_moe(x, rv, ext, E, S ? ext + E : NULL, S, &o, &ys), 0);
        snprintf(what, sizeof what, "moe case%d strided weights", i);
        compare(what, ys, exp, TOL_MOE);
        for (int e = 0; e < E + S; e++)
            for (int k = 0; k < 3; k++) {
                dsp_tensor_unref(&w[e][k]);
                dsp_tensor_unref(&wt[e][k]);
            }
        for (int k = 0; k < 6; k++)
            dsp_tensor_unref(&st3[k]);
        dsp_tensor *ts[] = {x, router, exp, y, pre, ys, rv};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            dsp_tensor_unref(&ts[k]);
    }
    dsp_safetensors_close(&st);
}
END_TEST

static dsp_tensor *filled(int ndim, const int64_t *shape, float v)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = v + (float)(i % 7) * 0.25f;
    return t;
}

START_TEST(test_quant_errors)
{
    int64_t ws[] = {8, 48}, w2[] = {8, 64}, xs[] = {3, 32}, os[] = {3, 9};
    dsp_tensor *w = filled(2, ws, 0), *wok = filled(2, w2, 0), *x = filled(2, xs, 1);
    dsp_tensor *o = filled(2, os, 0), *none = NULL, *keep = o;
    dsp_qweight *q = NULL;
    ops_assert_error(dsp_quantize(w, DSP_QUANT_INT8, 32, &q), DSP_EINVAL,
                     "quantize: w [8, 48] has in_features 48, not a multiple of group_size 32");
    ck_assert_ptr_null(q);
    ops_assert_error(dsp_quantize(wok, DSP_QUANT_INT4, 64, &q), DSP_EINVAL,
                     "quantize: group_size 64 is not supported (32 or 128)");
    ops_assert_error(dsp_quantize(wok, (dsp_quant_kind)3, 32, &q), DSP_EINVAL, "unknown kind 3");
    ((float *)dsp_tensor_data(wok))[2 * 64 + 5] = NAN;
    ops_assert_error(dsp_quantize(wok, DSP_QUANT_INT8, 32, &q), DSP_EINVAL,
                     "row 2 of w [8, 64] holds inf or NaN");
    ((float *)dsp_tensor_data(wok))[2 * 64 + 5] = 0.0f;
    ck_assert_ptr_null(q);
    ck_assert_int_eq(dsp_quantize(wok, DSP_QUANT_INT4, 32, &q), 0);
    ops_assert_error(dsp_linear_q(x, q, NULL, &none), DSP_EINVAL,
                     "linear_q: x [3, 32] has 32 features, w int4[8, 64] g32 expects 64");
    ck_assert_ptr_null(none);
    dsp_tensor *x64 = NULL;
    int64_t x64s[] = {3, 64};
    x64 = filled(2, x64s, 0);
    ops_assert_error(dsp_linear_q(x64, q, NULL, &o), DSP_EINVAL,
                     "linear_q: out is f32[3, 9], expected f32[3, 8]");
    ck_assert_ptr_eq(o, keep);
    ops_assert_error(dsp_linear_q(x64, q, x, &none), DSP_EINVAL, "linear_q: b [3, 32] does not match");
    ops_assert_error(dsp_dequantize(NULL, &none), DSP_EINVAL, "dequantize: w is NULL");
    ck_assert_int_eq(dsp_qweight_shape(NULL, NULL, NULL), DSP_EINVAL);
    ck_assert_uint_eq(dsp_qweight_bytes(NULL), 0);
    dsp_qweight_free(&q);
    dsp_tensor *ts[] = {w, wok, x, o, x64};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        dsp_tensor_unref(&ts[k]);
}
END_TEST

START_TEST(test_moe_errors)
{
    int64_t xs[] = {5, 8}, rs[] = {4, 8}, gs[] = {6, 8}, ds[] = {8, 6}, bad[] = {8, 5};
    dsp_tensor *x = filled(2, xs, 0), *r = filled(2, rs, 0), *g = filled(2, gs, 0);
    dsp_tensor *d = filled(2, ds, 0), *db = filled(2, bad, 0), *none = NULL;
    dsp_moe_expert ex[4];
    for (int e = 0; e < 4; e++)
        ex[e] = (dsp_moe_expert){g, g, d};
    dsp_moe_opts o = {5, DSP_MOE_SOFTMAX, 1, 0.0f};
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: top_k 5 must be in [1, n_experts 4]");
    o.top_k = 0;
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 0, &o, &none), DSP_EINVAL, "top_k 0");
    o.top_k = 2;
    o.act = (dsp_moe_act)7;
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 0, &o, &none), DSP_EINVAL, "moe: unknown act 7");
    o.act = DSP_MOE_ACT_DEFAULT;
    ops_assert_error(dsp_moe(x, r, ex, 3, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: expects x [tokens, dim] and router [3, dim], got x [5, 8] and router [4, 8]");
    ex[2].down = db;
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: experts[2]: gate [6, 8], up [6, 8], down [8, 5] do not fit dim 8");
    ex[2].down = d;
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 1, &o, &none), DSP_EINVAL, "shared[] for n_shared 1");
    /* quantized matrices: given twice, missing, of the wrong shape */
    int64_t g32s[] = {6, 32}, d32s[] = {32, 6}, x32s[] = {5, 32}, r32s[] = {4, 32};
    dsp_tensor *g32 = filled(2, g32s, 0), *d32 = filled(2, d32s, 0), *x32 = filled(2, x32s, 0);
    dsp_tensor *r32 = filled(2, r32s, 0);
    dsp_qweight *qg = NULL, *qg64 = NULL;
    int64_t g64s[] = {6, 64};
    dsp_tensor *g64 = filled(2, g64s, 0);
    ck_assert_int_eq(dsp_quantize(g32, DSP_QUANT_INT8, 32, &qg), 0);
    ck_assert_int_eq(dsp_quantize(g64, DSP_QUANT_INT4, 32, &qg64), 0);
    dsp_moe_expert q4[4];
    for (int e = 0; e < 4; e++)
        q4[e] = (dsp_moe_expert){.qgate = qg, .up = g32, .down = d32};
    ck_assert_msg(dsp_moe(x32, r32, q4, 4, NULL, 0, &o, &none) == 0, "%s", dsp_ops_error());
    dsp_tensor_unref(&none);
    q4[1].gate = g32;
    ops_assert_error(dsp_moe(x32, r32, q4, 4, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: experts[1]: both gate and qgate are set; give the matrix once");
    q4[1].gate = NULL;
    q4[3].up = NULL;
    ops_assert_error(dsp_moe(x32, r32, q4, 4, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: experts[3].up is NULL (and no qup given)");
    q4[3].up = g32;
    q4[2].qgate = qg64;
    ops_assert_error(dsp_moe(x32, r32, q4, 4, NULL, 0, &o, &none), DSP_EINVAL,
                     "moe: experts[2]: gate int4[6, 64] g32, up [6, 32], down [32, 6] do not fit "
                     "dim 32");
    q4[2].qgate = qg;
    dsp_moe_expert sh = {.gate = g32, .qup = qg, .down = d32};
    ck_assert_int_eq(dsp_moe(x32, r32, q4, 4, &sh, 1, &o, &none), 0);
    dsp_tensor_unref(&none);
    sh.qdown = qg;
    sh.down = NULL;
    ops_assert_error(dsp_moe(x32, r32, q4, 4, &sh, 1, &o, &none), DSP_EINVAL,
                     "moe: shared[0]: gate [6, 32], up int8[6, 32] g32, down int8[6, 32] g32 do "
                     "not fit dim 32");
    ck_assert_ptr_null(none);
    dsp_qweight_free(&qg);
    dsp_qweight_free(&qg64);
    dsp_tensor *qts[] = {g32, d32, x32, r32, g64};
    for (size_t k = 0; k < sizeof qts / sizeof qts[0]; k++)
        dsp_tensor_unref(&qts[k]);
    ops_assert_error(dsp_moe(x, r, ex, 4, NULL, 0, NULL, &none), DSP_EINVAL, "moe: opts is NULL");
    ck_assert_ptr_null(none);
    /* sanity: the same call with valid options works and routed_scale 0 means 1 */
    ck_assert_int_eq(dsp_moe(x, r, ex, 4, NULL, 0, &o, &none), 0);
    dsp_tensor *one = NULL;
    o.routed_scale = 1.0f;
    ck_assert_int_eq(dsp_moe(x, r, ex, 4, NULL, 0, &o, &one), 0);
    ck_assert_int_eq(memcmp(dsp_tensor_data(none), dsp_tensor_data(one),
                            dsp_tensor_nbytes(one)), 0);
    dsp_tensor *ts[] = {x, r, g, d, db, none, one};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        dsp_tensor_unref(&ts[k]);
}
END_TEST

static Suite *quant_suite(void)
{
    Suite *s = suite_create("ops_quant");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_quant_fixtures);
    tcase_add_test(tc, test_moe_fixtures);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_quant_errors);
    tcase_add_test(tc, test_moe_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(quant_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
