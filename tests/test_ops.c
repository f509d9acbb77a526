/* test_ops.c - dspipe's numeric operators (dspipe/ops.h) against PyTorch fixtures, plus their error contract. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"

/* Tolerances: max |got - expected| <= TOL * (1 + max |expected|).
 * f32 paths, and f16/bf16 weights too (the reference upcasts the very same
 * weights, so only f32 rounding differs): TOL_F32. GEMMs sum up to 384
 * products in a different order than PyTorch: TOL_GEMM. RoPE angles reach
 * 2048 rad; they are formed in f32 step by step as HF does, so only libm's
 * cosf/sinf may differ from PyTorch's: TOL_ROPE (observed ~5e-7). Embedding,
 * add and mul must be exact (tolerance 0, f16/bf16 specials included). */
#define TOL_F32 1e-5
#define TOL_GEMM 2e-5
#define TOL_HALF 5e-5
#define TOL_ROPE 2e-5

static const char *fixture_path(const char *op)
{
    static char path[512];
    const char *src = getenv("TESTS_SRCDIR");
    snprintf(path, sizeof path, "%s/data/ops/%s.safetensors", src && *src ? src : ".", op);
    return path;
}

static dsp_safetensors *open_fixture(const char *op)
{
    dsp_safetensors *st = NULL;
    char *why = NULL;
    int rc = dsp_safetensors_open(fixture_path(op), &st, &why);
    ck_assert_msg(rc == 0, "%s: %s", fixture_path(op), why ? why : "?");
    free(why);
    return st;
}

/* caseN.name, or NULL when the case has no such tensor */
static dsp_tensor *get(const dsp_safetensors *st, int i, const char *name)
{
    char key[64];
    dsp_tensor *t = NULL;
    snprintf(key, sizeof key, "case%d.%s", i, name);
    if (dsp_safetensors_get(st, key, &t) < 0)
        return NULL;
    return t;
}

static double scalar(const dsp_safetensors *st, int i, const char *name)
{
    dsp_tensor *t = get(st, i, name);
    ck_assert_ptr_nonnull(t);
    double v = t->dtype == DSP_DTYPE_F32 ? *(const float *)dsp_tensor_data(t)
                                         : (double)*(const int64_t *)dsp_tensor_data(t);
    dsp_tensor_unref(&t);
    return v;
}

static int ncases(const dsp_safetensors *st)
{
    int n = 0;
    for (;; n++) {
        dsp_tensor *t = get(st, n, "expected");
        if (!t)
            return n;
        dsp_tensor_unref(&t);
    }
}

/* Max abs error of got against expected (same shape, both read through
 * their strides as contiguous f32); NaN must meet NaN and inf the same inf.
 * Returns the error and asserts it is within tol * (1 + max|expected|). */
static double compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol)
{
    char a[128], b[128];
    ck_assert_msg(got->ndim == exp->ndim &&
                  !memcmp(got->shape, exp->shape, sizeof(int64_t) * (size_t)got->ndim),
                  "%s: got %s, expected %s", what, dsp_tensor_describe(got, a, sizeof a),
                  dsp_tensor_describe(exp, b, sizeof b));
    ck_assert(dsp_tensor_is_contiguous(got) && got->dtype == DSP_DTYPE_F32);
    const float *g = dsp_tensor_data(got), *e = dsp_tensor_data(exp);
    int64_t n = dsp_tensor_numel(got);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(e[i]) || isinf(e[i])) {
            ck_assert_msg(isnan(e[i]) ? isnan(g[i]) : g[i] == e[i],
                          "%s: element %lld is %g, expected %g", what, (long long)i,
                          (double)g[i], (double)e[i]);
            continue;
        }
        double d = fabs((double)g[i] - e[i]);
        if (!(d <= err))
            err = d;        /* NaN in g where e is finite becomes the error */
        if (fabs(e[i]) > mx)
            mx = fabs(e[i]);
    }
    double limit = tol * (1 + mx);
    printf("%-28s max abs err %.3g (limit %.3g)\n", what, err, limit);
    ck_assert_msg(err <= limit, "%s: max abs err %g > %g", what, err, limit);
    return err;
}

/* A non-contiguous view equal to t: the data stored with the last two dims
 * swapped, viewed back through swapped strides (a transposed view). NULL
 * when t has fewer than 2 dims. */
static dsp_tensor *transposed_view(const dsp_tensor *t)
{
    if (t->ndim < 2)
        return NULL;
    int nd = t->ndim;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1], lead = dsp_tensor_numel(t) / (r * c);
    size_t es = dsp_dtype_size(t->dtype);
    int64_t shape[DSP_MAX_DIMS], stride[DSP_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[nd - 2] = c;
    shape[nd - 1] = r;
    dsp_tensor *store = NULL, *view = NULL;
    ck_assert_int_eq(dsp_tensor_new(t->dtype, nd, shape, &store), 0);
    const char *src = dsp_tensor_data(t);
    char *dst = dsp_tensor_data(store);
    for (int64_t l = 0; l < lead; l++)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                memcpy(dst + ((l * c + j) * r + i) * es, src + ((l * r + i) * c + j) * es, es);
    memcpy(stride, store->stride, sizeof stride);
    stride[nd - 2] = 1;
    stride[nd - 1] = r;
    memcpy(shape, t->shape, sizeof shape);
    ck_assert_int_eq(dsp_tensor_from_buffer(t->dtype, nd, shape, stride, store->buf,
                                            store->offset, &view), 0);
    dsp_tensor_unref(&store);
    ck_assert(!dsp_tensor_is_contiguous(view) || r == 1 || c == 1);
    return view;
}

enum { IN_MAX = 4 };

/* Run op's case on in[] (the fixture's inputs, possibly swapped for views). */
static int run(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
               dsp_tensor **out)
{
    if (!strcmp(op, "linear"))
        return dsp_linear(in[0], in[1], in[2], out);
    if (!strcmp(op, "matmul"))
        return dsp_matmul(in[0], in[1], (int)scalar(st, i, "transpose_b"), out);
    if (!strcmp(op, "embedding"))
        return dsp_embedding(in[0], in[1], out);
    if (!strcmp(op, "softmax"))
        return dsp_softmax(in[0], in[1], out);
    if (!strcmp(op, "layernorm"))
        return dsp_layernorm(in[0], in[1], in[2], (float)scalar(st, i, "eps"), out);
    if (!strcmp(op, "rmsnorm"))
        return dsp_rmsnorm(in[0], in[1], (float)scalar(st, i, "eps"), out);
    if (!strcmp(op, "gelu"))
        return dsp_gelu(in[0], (dsp_gelu_kind)scalar(st, i, "kind"), out);
    if (!strcmp(op, "silu"))
        return dsp_silu(in[0], out);
    if (!strcmp(op, "swiglu"))
        return dsp_swiglu(in[0], in[1], out);
    if (!strcmp(op, "add"))
        return dsp_add(in[0], in[1], out);
    if (!strcmp(op, "mul"))
        return dsp_mul(in[0], in[1], out);
    if (!strcmp(op, "rope"))
        return dsp_rope(in[0], in[1], (float)scalar(st, i, "base"),
                        (int)scalar(st, i, "rot_dims"), out);
    ck_abort_msg("unknown op %s", op);
    return -1;
}

static const char *const input_names[][IN_MAX] = {
    {"linear", "x", "w", "b"}, {"matmul", "a", "b", NULL}, {"embedding", "ids", "table", NULL},
    {"softmax", "x", "mask", NULL}, {"layernorm", "x", "w", "b"}, {"rmsnorm", "x", "w", NULL},
    {"gelu", "x", NULL, NULL}, {"silu", "x", NULL, NULL}, {"swiglu", "gate", "up", NULL},
    {"add", "a", "b", NULL}, {"mul", "a", "b", NULL}, {"rope", "x", "pos", NULL},
};

/* Every case of op's fixture three ways: *out NULL, preallocated *out, and
 * each 2-D-or-more input replaced by a transposed (strided) view. */
static void check_op(const char *op, double tol)
{
    const char *const *names = NULL;
    for (size_t k = 0; k < sizeof input_names / sizeof input_names[0]; k++)
        if (!strcmp(input_names[k][0], op))
            names = input_names[k] + 1;
    ck_assert_ptr_nonnull(names);
    dsp_safetensors *st = open_fixture(op);
    int n = ncases(st);
    ck_assert_int_gt(n, 0);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        dsp_tensor *in[IN_MAX] = {NULL}, *exp = get(st, i, "expected"), *out = NULL;
        char what[64];
        double tol_i = tol;
        for (int k = 0; k < IN_MAX - 1 && names[k]; k++) {
            in[k] = get(st, i, names[k]);
            if (in[k] && (in[k]->dtype == DSP_DTYPE_F16 || in[k]->dtype == DSP_DTYPE_BF16) &&
                tol_i > 0 && tol_i < TOL_HALF)
                tol_i = TOL_HALF;
        }
        snprintf(what, sizeof what, "%s case%d", op, i);
        int rc = run(op, st, i, in, &out);
        ck_assert_msg(rc == 0, "%s: rc %d: %s", what, rc, dsp_ops_error());
        double e = compare(what, out, exp, tol_i);
        worst = e > worst ? e : worst;

        /* preallocated output: overwritten in place, same object */
        dsp_tensor *pre = NULL, *keep;
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, exp->ndim, exp->shape, &pre), 0);
        memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre)); /* NaN garbage */
        keep = pre;
        ck_assert_int_eq(run(op, st, i, in, &pre), 0);
        ck_assert_ptr_eq(pre, keep);
        snprintf(what, sizeof what, "%s case%d prealloc", op, i);
        compare(what, pre, exp, tol_i);
        dsp_tensor_unref(&pre);

        /* strided inputs give the same result */
        for (int k = 0; k < IN_MAX - 1; k++) {
            dsp_tensor *orig = in[k], *view = orig ? transposed_view(orig) : NULL, *sout = NULL;
            if (!view)
                continue;
            in[k] = view;
            rc = run(op, st, i, in, &sout);
            ck_assert_msg(rc == 0, "%s strided %s: %s", op, names[k], dsp_ops_error());
            snprintf(what, sizeof what, "%s case%d strided %s", op, i, names[k]);
            compare(what, sout, exp, tol_i);
            dsp_tensor_unref(&sout);
            dsp_tensor_unref(&view);
            in[k] = orig;
        }
        for (int k = 0; k < IN_MAX; k++)
            dsp_tensor_unref(&in[k]);
        dsp_tensor_unref(&exp);
        dsp_tensor_unref(&out);
    }
    printf("%-28s %d cases, worst max abs err %.3g\n", op, n, worst);
    dsp_safetensors_close(&st);
}

START_TEST(test_linear) { check_op("linear", TOL_GEMM); }
END_TEST
START_TEST(test_matmul) { check_op("matmul", TOL_GEMM); }
END_TEST
START_TEST(test_embedding) { check_op("embedding", 0.0); }
END_TEST
START_TEST(test_softmax) { check_op("softmax", TOL_F32); }
END_TEST
START_TEST(test_layernorm) { check_op("layernorm", TOL_F32); }
END_TEST
START_TEST(test_rmsnorm) { check_op("rmsnorm", TOL_F32); }
END_TEST
START_TEST(test_gelu) { check_op("gelu", TOL_F32); }
END_TEST
START_TEST(test_silu) { check_op("silu", TOL_F32); }
END_TEST
START_TEST(test_swiglu) { check_op("swiglu", TOL_F32); }
END_TEST
START_TEST(test_add) { check_op("add", 0.0); }
END_TEST
START_TEST(test_mul) { check_op("mul", 0.0); }
END_TEST
START_TEST(test_rope) { check_op("rope", TOL_ROPE); }
END_TEST

static dsp_tensor *filled(int ndim, const int64_t *shape, float v)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = v + (float)(i % 7);
    return t;
}

static void assert_error(int rc, int want, const char *needle)
{
    ck_assert_int_eq(rc, want);
    ck_assert_msg(strstr(dsp_ops_error(), needle), "message \"%s\" lacks \"%s\"",
                  dsp_ops_error(), needle);
}

START_TEST(test_wrong_out_and_shapes)
{
    int64_t xs[] = {7, 13}, ws[] = {37, 13}, wbad[] = {37, 12}, os[] = {7, 36};
    dsp_tensor *x = filled(2, xs, 0), *w = filled(2, ws, 1), *wb = filled(2, wbad, 1);
    dsp_tensor *o = filled(2, os, 0), *keep = o, *none = NULL;

    assert_error(dsp_linear(x, w, NULL, &o), DSP_EINVAL,
                 "linear: out is f32[7, 36], expected f32[7, 37]");
    ck_assert_ptr_eq(o, keep);
    assert_error(dsp_linear(x, wb, NULL, &none), DSP_EINVAL,
                 "linear: x [7, 13] has 13 features, w [37, 12] expects 12");
    ck_assert_ptr_null(none);   /* *out untouched on failure */
    assert_error(dsp_matmul(x, wb, 0, &none), DSP_EINVAL, "matmul: a [7, 13] and b [37, 12]");
    assert_error(dsp_add(x, wb, &none), DSP_EINVAL, "add: b [37, 12] does not broadcast to a [7, 13]");
    assert_error(dsp_swiglu(x, w, &none), DSP_EINVAL, "swiglu: gate [7, 13] and up [37, 13]");
    assert_error(dsp_rmsnorm(x, NULL, 1e-5f, &none), DSP_EINVAL, "rmsnorm: w is NULL");
    ck_assert_ptr_null(none);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&wb);
    dsp_tensor_unref(&o);
}
END_TEST

START_TEST(test_embedding_out_of_range)
{
    int64_t ts[] = {37, 4}, is[] = {3};
    dsp_tensor *table = filled(2, ts, 0), *ids = NULL, *out = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_I64, 1, is, &ids), 0);
    int64_t *d = dsp_tensor_data(ids);
    d[0] = 0;
    d[1] = 40;
    d[2] = 1;
    assert_error(dsp_embedding(ids, table, &out), DSP_EINVAL,
                 "embedding: id 40 at position 1 of ids [3] is outside [0, 37)");
    ck_assert_ptr_null(out);
    d[1] = -1;
    assert_error(dsp_embedding(ids, table, &out), DSP_EINVAL, "id -1 at position 1");
    dsp_tensor_unref(&ids);
    dsp_tensor_unref(&table);
}
END_TEST

START_TEST(test_softmax_fully_masked_and_inplace)
{
    int64_t xs[] = {2, 4};
    dsp_tensor *x = filled(2, xs, 0), *mask = NULL, *out = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 2, xs, &mask), 0);
    uint8_t *m = dsp_tensor_data(mask);
    for (int i = 0; i < 8; i++)
        m[i] = i >= 4;          /* row 0 entirely masked out */
    ck_assert_int_eq(dsp_softmax(x, mask, &out), 0);
    const float *o = dsp_tensor_data(out);
    float sum = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert(o[i] == 0.0f);
        sum += o[4 + i];
    }
    ck_assert_float_eq_tol(sum, 1.0f, 1e-6f);
    /* in place: *out is x itself (contiguous, writable) */
    dsp_tensor *same = x;
    ck_assert_int_eq(dsp_softmax(x, mask, &same), 0);
    ck_assert_ptr_eq(same, x);
    ck_assert_int_eq(memcmp(dsp_tensor_data(x), o, 8 * sizeof(float)), 0);
    /* gelu in place too */
    ck_assert_int_eq(dsp_gelu(x, DSP_GELU_TANH, &same), 0);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&mask);
    dsp_tensor_unref(&out);
}
END_TEST

START_TEST(test_cuda_refused_and_readonly_out)
{
    int64_t xs[] = {3, 5};
    dsp_tensor *x = filled(2, xs, 0), *out = NULL, *shared;
    x->device.type = DSP_DEVICE_CUDA;   /* a fake device tensor: never dereferenced */
    assert_error(dsp_silu(x, &out), DSP_EDEVICE, "no CUDA backend is loaded");
    x->device.type = DSP_DEVICE_CPU;
    ck_assert_ptr_null(out);
    /* a shared buffer is not writable: refused, never written */
    ck_assert_int_eq(dsp_silu(x, &out), 0);
    dsp_buffer *extra = dsp_buffer_ref(out->buf);
    shared = out;
    assert_error(dsp_silu(x, &shared), DSP_EINVAL, "not writable");
    dsp_buffer_unref(&extra);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&x);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_gelu);
    tcase_add_test(tc, test_silu);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_mul);
    tcase_add_test(tc, test_rope);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_wrong_out_and_shapes);
    tcase_add_test(tc, test_embedding_out_of_range);
    tcase_add_test(tc, test_softmax_fully_masked_and_inplace);
    tcase_add_test(tc, test_cuda_refused_and_readonly_out);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
