/* test_ops_seq.c - dsp_csr_aggregate and dsp_lstm against PyTorch fixtures (tests/data/ops_seq), plus their error contract. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"
#include "ops_fixture.h"

/* Tolerances: max |got - expected| <= TOL * (1 + max |expected|).
 * CSR aggregation adds the edges in CSR order, the order index_add_ uses,
 * and multiplies by the edge weight in f32 as the reference does: TOL_CSR
 * only allows for a different rounding of the mean's division (observed 0).
 * LSTM: the GEMMs sum in another order than PyTorch's and expf / tanhf differ
 * from its vectorised sigmoid / tanh by an ulp or so; errors are carried
 * through up to 50 recurrent steps: TOL_LSTM (observed 1.2e-7). Half-precision
 * weights are upcast by the reference too, so the same tolerance holds. */
#define TOL_CSR 1e-6
#define TOL_LSTM 2e-6

#define FIXTURE_DIR "ops_seq"

/* ops_compare with this file's report width and comparison rules. */
static double compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol)
{
    return ops_compare(what, got, exp, tol, 34, 0);
}

static int64_t iscalar(const dsp_safetensors *st, int i, const char *name)
{
    dsp_tensor *t = ops_get(st, i, name);
    ck_assert_ptr_nonnull(t);
    int64_t v = *(const int64_t *)dsp_tensor_data(t);
    dsp_tensor_unref(&t);
    return v;
}

/* The preallocated path: a NaN-filled *out is overwritten in place. */
static void check_prealloc(const char *what, const dsp_tensor *exp, double tol,
                           int (*call)(void *, dsp_tensor **), void *arg)
{
    dsp_tensor *pre = NULL, *keep;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, exp->ndim, exp->shape, &pre), 0);
    memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre));
    keep = pre;
    ck_assert_msg(call(arg, &pre) == 0, "%s: %s", what, dsp_ops_error());
    ck_assert_ptr_eq(pre, keep);
    compare(what, pre, exp, tol);
    dsp_tensor_unref(&pre);
}

/* ---- csr_aggregate --------------------------------------------------------- */

typedef struct csr_case {
    dsp_tensor *indptr, *indices, *x, *ew;
    dsp_agg_kind kind;
} csr_case;

static int csr_call(void *arg, dsp_tensor **out)
{
    csr_case *k = arg;
    return dsp_csr_aggregate(k->indptr, k->indices, k->x, k->ew, k->kind, out);
}

/* The fixture case on the GPU: in = {indptr, indices, x, edge_weight}. */
static int csr_run(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
                   dsp_tensor **out)
{
    (void)op;
    return dsp_csr_aggregate(in[0], in[1], in[2], in[3], (dsp_agg_kind)iscalar(st, i, "kind"),
                             out);
}

START_TEST(test_csr_aggregate)
{
    static const char *const kinds[] = {"sum", "mean", "max"};
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "csr_aggregate");
    int n = ops_ncases(st);
    ck_assert_int_gt(n, 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        csr_case k = {ops_get(st, i, "indptr"), ops_get(st, i, "indices"), ops_get(st, i, "x"),
                      ops_get(st, i, "edge_weight"), (dsp_agg_kind)iscalar(st, i, "kind")};
        dsp_tensor *exp = ops_get(st, i, "expected"), *out = NULL;
        char what[96];
        snprintf(what, sizeof what, "csr case%d %s%s", i, kinds[k.kind], k.ew ? " weighted" : "");
        ck_assert_msg(csr_call(&k, &out) == 0, "%s: %s", what, dsp_ops_error());
        double e = compare(what, out, exp, TOL_CSR);
        worst = e > worst ? e : worst;
        dsp_tensor_unref(&out);
        snprintf(what, sizeof what, "csr case%d prealloc", i);
        check_prealloc(what, exp, TOL_CSR, csr_call, &k);
        /* a strided x gives the same result */
        dsp_tensor *orig = k.x;
        k.x = ops_transposed_view(orig);
        snprintf(what, sizeof what, "csr case%d strided x", i);
        ck_assert_msg(csr_call(&k, &out) == 0, "%s: %s", what, dsp_ops_error());
        compare(what, out, exp, TOL_CSR);
        dsp_tensor_unref(&out);
        dsp_tensor_unref(&k.x);
        k.x = orig;
        /* and on the GPU when there is one */
        dsp_tensor *gin[] = {k.indptr, k.indices, k.x, k.ew};
        snprintf(what, sizeof what, "csr case%d", i);
        ops_check_on_gpu(what, csr_run, "csr_aggregate", st, i, gin, 4, exp, TOL_CSR, 34, 0);
        dsp_tensor_unref(&k.indptr);
        dsp_tensor_unref(&k.indices);
        dsp_tensor_unref(&k.x);
        dsp_tensor_unref(&k.ew);
        dsp_tensor_unref(&exp);
    }
    printf("%-34s %d cases, worst max abs err %.3g\n", "csr_aggregate", n, worst);
    dsp_safetensors_close(&st);
}
END_TEST

/* ---- lstm ------------------------------------------------------------------ */

typedef struct lstm_case {
    dsp_tensor *x, *lengths, *w[8];     /* fwd w_ih w_hh b_ih b_hh, then _reverse */
    dsp_lstm_weights fwd, bwd;
    int bidir;
} lstm_case;

static const char *const lstm_names[8] = {
    "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
    "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse"};

static void lstm_bind(lstm_case *k)
{
    k->fwd = (dsp_lstm_weights){k->w[0], k->w[1], k->w[2], k->w[3]};
    k->bwd = (dsp_lstm_weights){k->w[4], k->w[5], k->w[6], k->w[7]};
    k->bidir = k->w[4] != NULL;
}

static int lstm_call(void *arg, dsp_tensor **out)
{
    lstm_case *k = arg;
    return dsp_lstm(k->x, &k->fwd, k->bidir ? &k->bwd : NULL, k->lengths, out);
}

/* The fixture case on the GPU: in = {x, lengths, the 8 weights}. */
static int lstm_run(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
                    dsp_tensor **out)
{
    lstm_case k = {in[0], in[1], {NULL}, {0}, {0}, 0};
    (void)op;
    (void)st;
    (void)i;
    memcpy(k.w, in + 2, sizeof k.w);
    lstm_bind(&k);
    return lstm_call(&k, out);
}

START_TEST(test_lstm)
{
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "lstm");
    int n = ops_ncases(st);
    ck_assert_int_gt(n, 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        lstm_case k = {ops_get(st, i, "x"), ops_get(st, i, "lengths"), {NULL}, {0}, {0}, 0};
        for (int j = 0; j < 8; j++)
            k.w[j] = ops_get(st, i, lstm_names[j]);
        lstm_bind(&k);
        dsp_tensor *exp = ops_get(st, i, "expected"), *out = NULL;
        char what[96];
        snprintf(what, sizeof what, "lstm case%d %s h%lld%s%s", i, k.bidir ? "bi" : "uni",
                 (long long)(k.w[1]->shape[1]), k.lengths ? " lengths" : "",
                 k.w[0]->dtype != DSP_DTYPE_F32 ? " half" : "");
        ck_assert_msg(lstm_call(&k, &out) == 0, "%s: %s", what, dsp_ops_error());
        double e = compare(what, out, exp, TOL_LSTM);
        worst = e > worst ? e : worst;
        dsp_tensor_unref(&out);
        snprintf(what, sizeof what, "lstm case%d prealloc", i);
        check_prealloc(what, exp, TOL_LSTM, lstm_call, &k);
        /* strided x, then strided w_ih of every direction */
        dsp_tensor *orig = k.x;
        k.x = ops_transposed_view(orig);
        snprintf(what, sizeof what, "lstm case%d strided x", i);
        ck_assert_msg(lstm_call(&k, &out) == 0, "%s: %s", what, dsp_ops_error());
        compare(what, out, exp, TOL_LSTM);
        dsp_tensor_unref(&out);
        dsp_tensor_unref(&k.x);
        k.x = orig;
        dsp_tensor *ow[2] = {k.w[0], k.w[4]};
        for (int d = 0; d < 1 + k.bidir; d++)
            k.w[4 * d] = ops_transposed_view(ow[d]);
        lstm_bind(&k);
        snprintf(what, sizeof what, "lstm case%d strided w_ih", i);
        ck_assert_msg(lstm_call(&k, &out) == 0, "%s: %s", what, dsp_ops_error());
        compare(what, out, exp, TOL_LSTM);
        dsp_tensor_unref(&out);
        for (int d = 0; d < 1 + k.bidir; d++) {
            dsp_tensor_unref(&k.w[4 * d]);
            k.w[4 * d] = ow[d];
        }
        lstm_bind(&k);
        /* and on the GPU when there is one */
        dsp_tensor *gin[10] = {k.x, k.lengths};
        memcpy(gin + 2, k.w, sizeof k.w);
        snprintf(what, sizeof what, "lstm case%d", i);
        ops_check_on_gpu(what, lstm_run, "lstm", st, i, gin, 10, exp, TOL_LSTM, 34, 0);
        for (int j = 0; j < 8; j++)
            dsp_tensor_unref(&k.w[j]);
        dsp_tensor_unref(&k.x);
        dsp_tensor_unref(&k.lengths);
        dsp_tensor_unref(&exp);
    }
    printf("%-34s %d cases, worst max abs err %.3g\n", "lstm", n, worst);
    dsp_safetensors_close(&st);
}
END_TEST

/* ---- error contract -------------------------------------------------------- */

static dsp_tensor *filled(int ndim, const int64_t *shape, float v)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = v + 0.1f * (float)(i % 7);
    return t;
}

static dsp_tensor *ints(dsp_dtype dt, int64_t n, const int64_t *v)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(dt, 1, &n, &t), 0);
    for (int64_t i = 0; i < n; i++) {
        if (dt == DSP_DTYPE_I64)
            ((int64_t *)dsp_tensor_data(t))[i] = v[i];
        else
            ((int32_t *)dsp_tensor_data(t))[i] = (int32_t)v[i];
    }
    return t;
}

START_TEST(test_csr_errors)
{
    int64_t xs[] = {5, 3}, ws = 3, os[] = {4, 3};
    dsp_tensor *x = filled(2, xs, 0), *out = NULL;
    dsp_tensor *ix = ints(DSP_DTYPE_I32, 5, (const int64_t[]){0, 4, 4, 1, 2});
    dsp_tensor *ew = filled(1, &ws, 1);
    dsp_tensor *p;

    p = ints(DSP_DTYPE_I64, 5, (const int64_t[]){1, 2, 2, 4, 5});
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_SUM, &out), DSP_EINVAL,
                     "csr_aggregate: indptr[0] is 1, expected 0");
    dsp_tensor_unref(&p);
    p = ints(DSP_DTYPE_I64, 5, (const int64_t[]){0, 3, 2, 4, 5});
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_MAX, &out), DSP_EINVAL,
                     "indptr decreases at position 2: indptr[2] = 2 < indptr[1] = 3");
    dsp_tensor_unref(&p);
    p = ints(DSP_DTYPE_I32, 5, (const int64_t[]){0, 1, 2, 4, 4});
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_MEAN, &out), DSP_EINVAL,
                     "indptr[4] (the last) is 4, expected nnz = 5");
    dsp_tensor_unref(&p);
    p = ints(DSP_DTYPE_I32, 5, (const int64_t[]){0, 1, 2, 4, 5});
    ((int32_t *)dsp_tensor_data(ix))[3] = 5;
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_SUM, &out), DSP_EINVAL,
                     "index 5 at position 3 of indices is outside [0, 5)");
    ((int32_t *)dsp_tensor_data(ix))[3] = -1;
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_SUM, &out), DSP_EINVAL,
                     "index -1 at position 3");
    ((int32_t *)dsp_tensor_data(ix))[3] = 1;
    ops_assert_error(dsp_csr_aggregate(p, ix, x, ew, DSP_AGG_SUM, &out), DSP_EINVAL,
                     "edge_weight [3] does not match indices [5] (expects [5])");
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, (dsp_agg_kind)7, &out), DSP_EINVAL,
                     "unknown aggregation kind 7");
    ops_assert_error(dsp_csr_aggregate(p, ix, ew, NULL, DSP_AGG_SUM, &out), DSP_EINVAL,
                     "x [3]");
    ck_assert_ptr_null(out);    /* *out untouched on failure */
    /* a wrong preallocated out is refused and kept */
    dsp_tensor *o = filled(2, xs, 0), *keep = o;
    ops_assert_error(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_SUM, &o), DSP_EINVAL,
                     "out is f32[5, 3], expected f32[4, 3]");
    ck_assert_ptr_eq(o, keep);
    dsp_tensor_unref(&o);
    /* and a valid call: node 1 gets x[4], node 2 (no edge) zeros */
    dsp_tensor_unref(&p);
    p = ints(DSP_DTYPE_I32, 5, (const int64_t[]){0, 1, 2, 2, 5});
    ck_assert_int_eq(dsp_csr_aggregate(p, ix, x, NULL, DSP_AGG_MAX, &out), 0);
    ck_assert_int_eq(out->shape[0], os[0]);
    const float *y = dsp_tensor_data(out), *xd = dsp_tensor_data(x);
    for (int k = 0; k < 3; k++) {
        ck_assert(y[3 + k] == xd[12 + k]);
        ck_assert(y[6 + k] == 0.0f);
    }
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&p);
    dsp_tensor_unref(&ix);
    dsp_tensor_unref(&ew);
    dsp_tensor_unref(&x);
}
END_TEST

START_TEST(test_lstm_errors)
{
    int64_t xs[] = {3, 6, 5}, wih[] = {28, 5}, whh[] = {28, 7}, bs = 28;
    int64_t wbad[] = {27, 5}, wbadin[] = {28, 6}, whbad[] = {28, 6}, wih2[] = {32, 5};
    int64_t bbad = 27, os[] = {3, 6, 14};
    dsp_tensor *x = filled(3, xs, 0), *wi = filled(2, wih, 0), *wh = filled(2, whh, 0);
    dsp_tensor *b = filled(1, &bs, 0), *wb = filled(2, wbad, 0), *wbi = filled(2, wbadin, 0);
    dsp_tensor *whb = filled(2, whbad, 0), *wi2 = filled(2, wih2, 0), *bb = filled(1, &bbad, 0);
    dsp_tensor *out = NULL;
    dsp_lstm_weights f = {wi, wh, b, b};

    dsp_lstm_weights bad = {wb, wh, b, b};
    ops_assert_error(dsp_lstm(x, &bad, NULL, NULL, &out), DSP_EINVAL,
                     "lstm: w_ih [27, 5] must be [4h, in] with in = 5 from x");
    bad.w_ih = wbi;
    ops_assert_error(dsp_lstm(x, &bad, NULL, NULL, &out), DSP_EINVAL,
                     "lstm: w_ih [28, 6] must be [4h, in] with in = 5");
    bad = (dsp_lstm_weights){wi, whb, b, b};
    ops_assert_error(dsp_lstm(x, &bad, NULL, NULL, &out), DSP_EINVAL,
                     "lstm: w_hh [28, 6] does not match w_ih [28, 5] (expects [28, 7])");
    bad = (dsp_lstm_weights){wi, wh, b, bb};
    ops_assert_error(dsp_lstm(x, &bad, NULL, NULL, &out), DSP_EINVAL,
                     "lstm: b_hh [27] does not match w_ih [28, 5] (expects [28])");
    bad = (dsp_lstm_weights){wi2, wh, NULL, NULL};
    ops_assert_error(dsp_lstm(x, &f, &bad, NULL, &out), DSP_EINVAL,
                     "lstm: w_ih_reverse [32, 5] must be [4h, in] with in = 5 from x and h from "
                     "the forward weights");
    bad = (dsp_lstm_weights){wi, NULL, NULL, NULL};
    ops_assert_error(dsp_lstm(x, &bad, NULL, NULL, &out), DSP_EINVAL, "lstm: w_hh is NULL");
    ops_assert_error(dsp_lstm(wi, &f, NULL, NULL, &out), DSP_EINVAL,
                     "lstm: x [28, 5] must be [batch, seq, in]");

    dsp_tensor *len = ints(DSP_DTYPE_I64, 3, (const int64_t[]){6, 7, 1});
    ops_assert_error(dsp_lstm(x, &f, &f, len, &out), DSP_EINVAL,
                     "lstm: length 7 at position 1 of lengths is outside [0, 6]");
    dsp_tensor_unref(&len);
    len = ints(DSP_DTYPE_I32, 3, (const int64_t[]){6, 2, -1});
    ops_assert_error(dsp_lstm(x, &f, NULL, len, &out), DSP_EINVAL, "length -1 at position 2");
    dsp_tensor_unref(&len);
    len = ints(DSP_DTYPE_I32, 2, (const int64_t[]){6, 2});
    ops_assert_error(dsp_lstm(x, &f, NULL, len, &out), DSP_EINVAL,
                     "lengths [2] does not match x [3, 6, 5] (expects [3])");
    ck_assert_ptr_null(out);
    dsp_tensor_unref(&len);

    /* lengths: steps past the end are zeros, and the reverse direction of a
     * short sequence equals running that sequence alone */
    len = ints(DSP_DTYPE_I64, 3, (const int64_t[]){6, 0, 2});
    ck_assert_int_eq(dsp_lstm(x, &f, &f, len, &out), 0);
    ck_assert_int_eq(out->shape[2], os[2]);
    const float *y = dsp_tensor_data(out);
    for (int t = 0; t < 6; t++)
        for (int j = 0; j < 14; j++) {
            ck_assert(y[(1 * 6 + t) * 14 + j] == 0.0f);
            if (t >= 2)
                ck_assert(y[(2 * 6 + t) * 14 + j] == 0.0f);
        }
    dsp_tensor *view = NULL, *alone = NULL;
    int64_t vs[] = {1, 2, 5};
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 3, vs, x->stride, x->buf,
                                            x->offset + 2 * 30 * sizeof(float), &view), 0);
    ck_assert_int_eq(dsp_lstm(view, &f, &f, NULL, &alone), 0);
    const float *a = dsp_tensor_data(alone);
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < 14; j++)
            ck_assert_msg(fabsf(y[(2 * 6 + t) * 14 + j] - a[t * 14 + j]) < 1e-6f,
                          "t %d j %d: %g vs %g", t, j, (double)y[(2 * 6 + t) * 14 + j],
                          (double)a[t * 14 + j]);
    dsp_tensor_unref(&alone);
    dsp_tensor_unref(&view);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&len);

    dsp_tensor *tensors[] = {x, wi, wh, b, wb, wbi, whb, wi2, bb};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        dsp_tensor_unref(&tensors[i]);
}
END_TEST

static Suite *seq_suite(void)
{
    Suite *s = suite_create("ops_seq");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_csr_aggregate);
    tcase_add_test(tc, test_lstm);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_csr_errors);
    tcase_add_test(tc, test_lstm_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(seq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
