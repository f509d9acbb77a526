/* test_ops.c - dspipe's numeric operators (dspipe/ops.h) against PyTorch fixtures, plus their error contract. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"
#include "ops_fixture.h"

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

#define FIXTURE_DIR "ops"

enum { IN_MAX = 4 };

/* Run op's case on in[] (the fixture's inputs, possibly swapped for views). */
static int run(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
               dsp_tensor **out)
{
    if (!strcmp(op, "linear"))
        return dsp_linear(in[0], in[1], in[2], out);
    if (!strcmp(op, "matmul"))
        return dsp_matmul(in[0], in[1], (int)ops_scalar(st, i, "transpose_b"), out);
    if (!strcmp(op, "embedding"))
        return dsp_embedding(in[0], in[1], out);
    if (!strcmp(op, "softmax"))
        return dsp_softmax(in[0], in[1], out);
    if (!strcmp(op, "layernorm"))
        return dsp_layernorm(in[0], in[1], in[2], (float)ops_scalar(st, i, "eps"), out);
    if (!strcmp(op, "rmsnorm"))
        return dsp_rmsnorm(in[0], in[1], (float)ops_scalar(st, i, "eps"), out);
    if (!strcmp(op, "gelu"))
        return dsp_gelu(in[0], (dsp_gelu_kind)ops_scalar(st, i, "kind"), out);
    if (!strcmp(op, "silu"))
        return dsp_silu(in[0], out);
    if (!strcmp(op, "swiglu"))
        return dsp_swiglu(in[0], in[1], out);
    if (!strcmp(op, "add"))
        return dsp_add(in[0], in[1], out);
    if (!strcmp(op, "mul"))
        return dsp_mul(in[0], in[1], out);
    if (!strcmp(op, "rope"))
        return dsp_rope(in[0], in[1], (float)ops_scalar(st, i, "base"),
                            (int)ops_scalar(st, i, "rot_dims"), out);
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
 * each 2-D-or-more input replaced by a transposed (strided) view; then on
 * the GPU when one is usable. */
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
        double tol_i = tol;
        for (int k = 0; k < IN_MAX - 1 && names[k]; k++) {
            in[k] = ops_get(st, i, names[k]);
            if (in[k] && (in[k]->dtype == DSP_DTYPE_F16 || in[k]->dtype == DSP_DTYPE_BF16) &&
                tol_i > 0 && tol_i < TOL_HALF)
                tol_i = TOL_HALF;
        }
        double e = ops_check_case(op, i, run, st, in, IN_MAX - 1, names, exp, tol_i, 28,
                                  OPS_CMP_NONFINITE);
        worst = e > worst ? e : worst;
        for (int k = 0; k < IN_MAX; k++)
            dsp_tensor_unref(&in[k]);
        dsp_tensor_unref(&exp);
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

START_TEST(test_wrong_out_and_shapes)
{
    int64_t xs[] = {7, 13}, ws[] = {37, 13}, wbad[] = {37, 12}, os[] = {7, 36};
    dsp_tensor *x = filled(2, xs, 0), *w = filled(2, ws, 1), *wb = filled(2, wbad, 1);
    dsp_tensor *o = filled(2, os, 0), *keep = o, *none = NULL;

    ops_assert_error(dsp_linear(x, w, NULL, &o), DSP_EINVAL,
                     "linear: out is f32[7, 36], expected f32[7, 37]");
    ck_assert_ptr_eq(o, keep);
    ops_assert_error(dsp_linear(x, wb, NULL, &none), DSP_EINVAL,
                     "linear: x [7, 13] has 13 features, w [37, 12] expects 12");
    ck_assert_ptr_null(none);   /* *out untouched on failure */
    ops_assert_error(dsp_matmul(x, wb, 0, &none), DSP_EINVAL, "matmul: a [7, 13] and b [37, 12]");
    ops_assert_error(dsp_add(x, wb, &none), DSP_EINVAL, "add: b [37, 12] does not broadcast to a [7, 13]");
    ops_assert_error(dsp_swiglu(x, w, &none), DSP_EINVAL, "swiglu: gate [7, 13] and up [37, 13]");
    ops_assert_error(dsp_rmsnorm(x, NULL, 1e-5f, &none), DSP_EINVAL, "rmsnorm: w is NULL");
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
    ops_assert_error(dsp_embedding(ids, table, &out), DSP_EINVAL,
                     "embedding: id 40 at position 1 of ids [3] is outside [0, 37)");
    ck_assert_ptr_null(out);
    d[1] = -1;
    ops_assert_error(dsp_embedding(ids, table, &out), DSP_EINVAL, "id -1 at position 1");
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

/* relu is exact: max(x, 0) with -0 and NaN kept as torch.relu keeps them;
 * a strided input and an in-place output */
START_TEST(test_relu)
{
    int64_t shape[2] = {3, 5};
    dsp_tensor *x = NULL, *out = NULL, *col = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, shape, &x), 0);
    float *v = dsp_tensor_data(x);
    for (int i = 0; i < 15; i++)
        v[i] = (float)(i - 7) * 0.5f;
    v[14] = NAN;
    v[0] = -0.0f;
    ck_assert_int_eq(dsp_relu(x, &out), 0);
    const float *o = dsp_tensor_data(out);
    for (int i = 1; i < 14; i++)
        ck_assert_float_eq(o[i], v[i] > 0 ? v[i] : 0.0f);
    ck_assert(isnan(o[14]));
    ck_assert(o[0] == 0.0f && signbit(o[0]));
    /* column 1 of x, a strided [3] view: 1 * 0.5 - 3.5, 6 * 0.5 - 3.5, 11 * 0.5 - 3.5 */
    int64_t cs[1] = {3}, st[1] = {5};
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 1, cs, st, x->buf, sizeof(float), &col), 0);
    dsp_tensor *c_out = NULL;
    ck_assert_int_eq(dsp_relu(col, &c_out), 0);
    const float *co = dsp_tensor_data(c_out);
    ck_assert(co[0] == 0.0f && co[1] == 0.0f && co[2] == 2.0f);
    dsp_tensor_unref(&c_out);
    dsp_tensor_unref(&col);
    /* in place */
    dsp_tensor *same = x;
    ck_assert_int_eq(dsp_relu(x, &same), 0);
    ck_assert_ptr_eq(same, x);
    ck_assert_float_eq(v[3], 0.0f);
    ck_assert_float_eq(v[13], 3.0f);
    /* an integer tensor is refused */
    dsp_tensor *ints = NULL, *none = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_I32, 2, shape, &ints), 0);
    ops_assert_error(dsp_relu(ints, &none), DSP_EINVAL, "relu");
    ck_assert_ptr_null(none);
    dsp_tensor_unref(&ints);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&x);
}
END_TEST

START_TEST(test_cuda_refused_and_readonly_out)
{
    int64_t xs[] = {3, 5};
    dsp_tensor *x = filled(2, xs, 0), *out = NULL, *shared;
    x->device.type = DSP_DEVICE_CUDA;   /* a fake device tensor: never dereferenced */
    ops_assert_error(dsp_silu(x, &out), DSP_EDEVICE, "no CUDA backend is loaded");
    x->device.type = DSP_DEVICE_CPU;
    ck_assert_ptr_null(out);
    /* a shared buffer is not writable: refused, never written */
    ck_assert_int_eq(dsp_silu(x, &out), 0);
    dsp_buffer *extra = dsp_buffer_ref(out->buf);
    shared = out;
    ops_assert_error(dsp_silu(x, &shared), DSP_EINVAL, "not writable");
    dsp_buffer_unref(&extra);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&x);
}
END_TEST

#ifdef HAVE_OPENBLAS
int openblas_get_num_threads(void);     /* OpenBLAS's; its cblas.h is not on this path */
#endif

/* Each task multiplies its own x by a shared w: its product must equal the
 * one computed before on the caller's thread, whatever thread ran it. */
typedef struct task_ctx {
    const dsp_tensor *w;
    dsp_tensor *x[40], *want[40];
    int runs[40], thread[40], bad;
} task_ctx;

/* max |a - b| / max |b| of two contiguous f32 tensors of one shape */
static double rel_diff(const dsp_tensor *a, const dsp_tensor *b)
{
    const float *x = dsp_tensor_data(a), *y = dsp_tensor_data(b);
    double d = 0, m = 0;
    for (int64_t i = 0; i < dsp_tensor_numel(b); i++) {
        d = fmax(d, fabs((double)x[i] - y[i]));
        m = fmax(m, fabs((double)y[i]));
    }
    return m > 0 ? d / m : d;
}

static void linear_task(void *arg, int task, int thread)
{
    task_ctx *c = arg;
    dsp_tensor *y = NULL;
    __atomic_fetch_add(&c->runs[task], 1, __ATOMIC_RELAXED);
    c->thread[task] = thread;
    if (dsp_linear(c->x[task], c->w, NULL, &y) < 0 || rel_diff(y, c->want[task]) > 1e-6)
        __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
    dsp_tensor_unref(&y);
}

START_TEST(test_parallel_tasks)
{
    int64_t ws[] = {96, 80}, xs[] = {0, 80};
    dsp_tensor *w = filled(2, ws, 0.25f);
    task_ctx c = { .w = w };
    for (int t = 0; t < 40; t++) {
        xs[0] = 3 + 7 * t;          /* [3, 80] x [80, 96] .. [276, 80] x [80, 96] */
        c.x[t] = filled(2, xs, 0.01f * (float)t);
        ck_assert_int_eq(dsp_linear(c.x[t], w, NULL, &c.want[t]), 0);
    }
#ifdef HAVE_OPENBLAS
    int blas_threads = openblas_get_num_threads();
#endif
    ck_assert_int_eq(dsp_ops_threads(), 3);     /* main() sets DSPIPE_OPS_THREADS */
    dsp_parallel_tasks(40, linear_task, &c);
    int used[3] = {0};
    for (int t = 0; t < 40; t++) {
        ck_assert_int_eq(c.runs[t], 1);
        ck_assert(c.thread[t] >= 0 && c.thread[t] < 3);
        used[c.thread[t]] = 1;
        dsp_tensor_unref(&c.x[t]);
        dsp_tensor_unref(&c.want[t]);
    }
    ck_assert_int_eq(c.bad, 0);
    ck_assert_int_eq(used[0], 1);   /* the caller works too */
#ifdef HAVE_OPENBLAS
    ck_assert_int_eq(openblas_get_num_threads(), blas_threads);     /* put back */
#endif
    dsp_parallel_tasks(0, linear_task, &c);     /* nothing to do: returns */
    dsp_tensor_unref(&w);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    /* first: it needs a process where no CUDA backend was loaded yet, and
     * the fixture cases load it (to look for a GPU) when the tests run
     * unforked (CK_FORK=no, as under valgrind) */
    TCase *tc = tcase_create("no backend");
    tcase_add_test(tc, test_cuda_refused_and_readonly_out);
    suite_add_tcase(s, tc);
    tc = tcase_create("pytorch");
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_gelu);
    tcase_add_test(tc, test_silu);
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_mul);
    tcase_add_test(tc, test_rope);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_wrong_out_and_shapes);
    tcase_add_test(tc, test_embedding_out_of_range);
    tcase_add_test(tc, test_softmax_fully_masked_and_inplace);
    tcase_add_test(tc, test_parallel_tasks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setenv("DSPIPE_OPS_THREADS", "3", 0);      /* a pool even on a one-core machine */
    SRunner *sr = srunner_create(ops_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
