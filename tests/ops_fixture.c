/* ops_fixture.c - shared helpers of the test_ops* programs (see ops_fixture.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/dspipe.h"
#include "ops_fixture.h"

/* Path of $TESTS_SRCDIR/data/<dir>/<op>.safetensors, in a static buffer. */
const char *ops_fixture_path(const char *dir, const char *op)
{
    static char path[512];
    const char *src = getenv("TESTS_SRCDIR");
    snprintf(path, sizeof path, "%s/data/%s/%s.safetensors", src && *src ? src : ".", dir, op);
    return path;
}

/* Opens the fixture <dir>/<op>, asserting success. */
dsp_safetensors *ops_fixture_open(const char *dir, const char *op)
{
    dsp_safetensors *st = NULL;
    char *why = NULL;
    const char *path = ops_fixture_path(dir, op);
    int rc = dsp_safetensors_open(path, &st, &why);
    ck_assert_msg(rc == 0, "%s: %s", path, why ? why : "?");
    free(why);
    return st;
}

/* caseN.name (i >= 0) or shared.name (i < 0); NULL when absent. */
dsp_tensor *ops_get(const dsp_safetensors *st, int i, const char *name)
{
    char key[96];
    dsp_tensor *t = NULL;
    if (i >= 0)
        snprintf(key, sizeof key, "case%d.%s", i, name);
    else
        snprintf(key, sizeof key, "shared.%s", name);
    if (dsp_safetensors_get(st, key, &t) < 0)
        return NULL;
    return t;
}

/* The f32 or i64 scalar caseN.name as a double; asserts it exists. */
double ops_scalar(const dsp_safetensors *st, int i, const char *name)
{
    dsp_tensor *t = ops_get(st, i, name);
    ck_assert_msg(t != NULL, "case%d.%s missing", i, name);
    double v = t->dtype == DSP_DTYPE_F32 ? *(const float *)dsp_tensor_data(t)
                                         : (double)*(const int64_t *)dsp_tensor_data(t);
    dsp_tensor_unref(&t);
    return v;
}

/* Counts the cases that have an "expected" tensor, from case0 on. */
int ops_ncases(const dsp_safetensors *st)
{
    int n = 0;
    for (;; n++) {
        dsp_tensor *t = ops_get(st, n, "expected");
        if (!t)
            return n;
        dsp_tensor_unref(&t);
    }
}

/* Max abs error of got against expected, printed and asserted within
 * tol * (1 + max|expected|); see ops_fixture.h for the flags. */
double ops_compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol,
                   int width, unsigned flags)
{
    char a[128], b[128];
    int same = got->ndim == exp->ndim &&
               !memcmp(got->shape, exp->shape, sizeof(int64_t) * (size_t)got->ndim);
    if (flags & OPS_CMP_TERSE_SHAPE)
        ck_assert_msg(same, "%s: shapes differ", what);
    else
        ck_assert_msg(same, "%s: got %s, expected %s", what, dsp_tensor_describe(got, a, sizeof a),
                      dsp_tensor_describe(exp, b, sizeof b));
    if (flags & OPS_CMP_EXP_CONTIG)
        ck_assert(dsp_tensor_is_contiguous(got) && dsp_tensor_is_contiguous(exp));
    else
        ck_assert(dsp_tensor_is_contiguous(got) && got->dtype == DSP_DTYPE_F32);
    const float *g = dsp_tensor_data(got), *e = dsp_tensor_data(exp);
    int64_t n = dsp_tensor_numel(got);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((flags & OPS_CMP_NONFINITE) && (isnan(e[i]) || isinf(e[i]))) {
            ck_assert_msg(isnan(e[i]) ? isnan(g[i]) : g[i] == e[i],
                          "%s: element %lld is %g, expected %g", what, (long long)i,
                          (double)g[i], (double)e[i]);
            continue;
        }
        double d = fabs((double)g[i] - e[i]);
        if (!(d <= err))
            err = d;        /* NaN in g (where e is finite) becomes the error */
        if (fabs(e[i]) > mx)
            mx = fabs(e[i]);
    }
    double limit = tol * (1 + mx);
    printf("%-*s max abs err %.3g (limit %.3g)\n", width, what, err, limit);
    ck_assert_msg(err <= limit, "%s: max abs err %g > %g", what, err, limit);
    return err;
}

/* t's values stored with the last two dims swapped, viewed back through
 * swapped strides; NULL below 2 dims. */
dsp_tensor *ops_transposed_view(const dsp_tensor *t)
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

/* Asserts rc == want and that the operator error message contains needle. */
void ops_assert_error(int rc, int want, const char *needle)
{
    ck_assert_int_eq(rc, want);
    ck_assert_msg(strstr(dsp_ops_error(), needle), "message \"%s\" lacks \"%s\"",
                  dsp_ops_error(), needle);
}

static dsp_context *gpu_ctx;
static dsp_device gpu_dev;
static int gpu_state;           /* 0 not probed, 1 usable, -1 not */

static void gpu_close(void)
{
    dsp_context_free(&gpu_ctx);
}

const dsp_device *ops_gpu(void)
{
    if (gpu_state == 0) {
        gpu_state = -1;
        if (dsp_context_new(&gpu_ctx) == 0 && dsp_device_open(gpu_ctx, "cuda", &gpu_dev) == 0) {
            char name[64];
            gpu_state = 1;
            printf("fixture cases also run on %s\n", dsp_device_name(gpu_dev, name, sizeof name));
        } else {
            printf("fixture cases run on the CPU only (CUDA skipped: %s)\n",
                   gpu_ctx ? dsp_context_errmsg(gpu_ctx) : "no context");
        }
        atexit(gpu_close);
    }
    return gpu_state > 0 ? &gpu_dev : NULL;
}

static dsp_tensor *copy_to(const dsp_tensor *t, dsp_device dev)
{
    dsp_tensor *d = NULL;
    if (!t)
        return NULL;
    int rc = dsp_tensor_to_device(gpu_ctx, t, dev, &d);
    ck_assert_msg(rc == 0, "dsp_tensor_to_device: %s", dsp_context_errmsg(gpu_ctx));
    return d;
}

int ops_check_on_gpu(const char *what, ops_runner run, const char *op,
                     const dsp_safetensors *st, int i, dsp_tensor **in, int nin,
                     const dsp_tensor *exp, double tol, int width, unsigned flags)
{
    const dsp_device *gpu = ops_gpu();
    if (!gpu)
        return 0;
    dsp_tensor *din[16] = {NULL}, *dout = NULL, *back = NULL;
    char label[128];
    ck_assert_int_le(nin, 16);
    for (int k = 0; k < nin; k++)
        din[k] = copy_to(in[k], *gpu);
    int rc = run(op, st, i, din, &dout), ran = 0;
    snprintf(label, sizeof label, "%s cuda", what);
    if (rc == DSP_EUNSUPPORTED) {
        printf("%-*s not run on CUDA: %s\n", width, label, dsp_ops_error());
    } else {
        ck_assert_msg(rc == 0, "%s: rc %d: %s", label, rc, dsp_ops_error());
        ck_assert_int_eq(dout->device.type, DSP_DEVICE_CUDA);
        back = copy_to(dout, (dsp_device){DSP_DEVICE_CPU, 0});
        ops_compare(label, back, exp, tol, width, flags);
        ran = 1;
    }
    for (int k = 0; k < nin; k++)
        dsp_tensor_unref(&din[k]);
    dsp_tensor_unref(&dout);
    dsp_tensor_unref(&back);
    return ran;
}

double ops_check_case(const char *op, int i, ops_runner run, const dsp_safetensors *st,
                      dsp_tensor **in, int nin, const char *const *names, const dsp_tensor *exp,
                      double tol, int width, unsigned flags)
{
    char what[96];
    dsp_tensor *out = NULL, *pre = NULL, *keep;
    snprintf(what, sizeof what, "%s case%d", op, i);
    int rc = run(op, st, i, in, &out);
    ck_assert_msg(rc == 0, "%s: rc %d: %s", what, rc, dsp_ops_error());
    double err = ops_compare(what, out, exp, tol, width, flags);
    dsp_tensor_unref(&out);

    /* preallocated output: overwritten in place, same object */
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, exp->ndim, exp->shape, &pre), 0);
    memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre)); /* NaN garbage */
    keep = pre;
    ck_assert_int_eq(run(op, st, i, in, &pre), 0);
    ck_assert_ptr_eq(pre, keep);
    snprintf(what, sizeof what, "%s case%d prealloc", op, i);
    ops_compare(what, pre, exp, tol, width, flags);
    dsp_tensor_unref(&pre);

    /* strided inputs give the same result */
    for (int k = 0; k < nin; k++) {
        dsp_tensor *orig = in[k], *view = orig ? ops_transposed_view(orig) : NULL, *sout = NULL;
        if (!view)
            continue;
        in[k] = view;
        rc = run(op, st, i, in, &sout);
        ck_assert_msg(rc == 0, "%s strided %s: %s", op, names[k], dsp_ops_error());
        snprintf(what, sizeof what, "%s case%d strided %s", op, i, names[k]);
        ops_compare(what, sout, exp, tol, width, flags);
        dsp_tensor_unref(&sout);
        dsp_tensor_unref(&view);
        in[k] = orig;
    }

    /* and on the GPU when there is one */
    snprintf(what, sizeof what, "%s case%d", op, i);
    ops_check_on_gpu(what, run, op, st, i, in, nin, exp, tol, width, flags);
    return err;
}
