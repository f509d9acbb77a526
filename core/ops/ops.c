/* ops.c - the public numeric operators of dspipe/ops.h: argument checks, output handling, backend dispatch. */
#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/ops_int.h"

/* One message per thread: operators run concurrently in pipeline nodes. */
static _Thread_local char errbuf[512];

const char *dsp_ops_error(void)
{
    return errbuf;
}

/* State of one operator call: the result tensor and the contiguous copies
 * made of strided inputs, released together by call_finish. */
typedef struct opcall {
    const char *op;
    dsp_tensor *res;
    int allocated;              /* res is ours until handed to *out */
    dsp_tensor *tmp[4];
    int ntmp;
} opcall;

static void call_begin(opcall *c, const char *op)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    errbuf[0] = '\0';
}

static int fail(opcall *c, int code, const char *fmt, ...) DSP_PRINTF(3, 4);
static int fail(opcall *c, int code, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(errbuf, sizeof errbuf, "%s: ", c->op);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof errbuf)
        vsnprintf(errbuf + n, sizeof errbuf - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

/* "[64, 32]" */
typedef struct shapestr {
    char s[160];
} shapestr;

static shapestr fmt_dims(int ndim, const int64_t *shape)
{
    shapestr r;
    size_t len = 0;
    r.s[len++] = '[';
    r.s[len] = '\0';
    for (int i = 0; i < ndim && len < sizeof r.s; i++)
        len += (size_t)snprintf(r.s + len, sizeof r.s - len, i ? ", %lld" : "%lld",
                                (long long)shape[i]);
    if (len < sizeof r.s - 1) {
        r.s[len++] = ']';
        r.s[len] = '\0';
    }
    return r;
}

static shapestr fmt_shape(const dsp_tensor *t)
{
    return fmt_dims(t->ndim, t->shape);
}

static int is_float_dtype(dsp_dtype dt)
{
    return dt == DSP_DTYPE_F32 || dt == DSP_DTYPE_F16 || dt == DSP_DTYPE_BF16;
}

static int64_t prod(const int64_t *shape, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= shape[i];
    return p;
}

static int need(opcall *c, const dsp_tensor *t, const char *name)
{
    if (!t)
        return fail(c, DSP_EINVAL, "%s is NULL", name);
    if (t->ndim < 0 || t->ndim > DSP_MAX_DIMS)
        return fail(c, DSP_EINVAL, "%s has an invalid rank %d", name, t->ndim);
    return 0;
}

static int need_dtype(opcall *c, const dsp_tensor *t, const char *name, int ok,
                      const char *expected)
{
    if (ok)
        return 0;
    return fail(c, DSP_EINVAL, "%s is %s, expected %s", name, dsp_dtype_name(t->dtype),
                expected);
}

/* ---- dispatch ------------------------------------------------------------
 * The one place that maps devices to backends. A CUDA backend table will
 * slot in here; until then only the CPU computes. */
static const dspi_ops_backend *select_backend(opcall *c, dsp_tensor **out,
                                              const dsp_tensor *const *ts, int n, int *rc)
{
    dsp_device dev = {DSP_DEVICE_CPU, 0};
    int have = 0;
    for (int i = 0; i <= n; i++) {
        const dsp_tensor *t = i < n ? ts[i] : (out ? *out : NULL);
        if (!t)
            continue;
        if (have && (t->device.type != dev.type || t->device.index != dev.index)) {
            *rc = fail(c, DSP_EDEVICE, "tensors are on different devices (%s:%d and %s:%d)",
                       dev.type == DSP_DEVICE_CPU ? "cpu" : "cuda", dev.index,
                       t->device.type == DSP_DEVICE_CPU ? "cpu" : "cuda", t->device.index);
            return NULL;
        }
        dev = t->device;
        have = 1;
    }
    if (dev.type != DSP_DEVICE_CPU) {
        *rc = fail(c, DSP_EDEVICE, "CUDA ops are not implemented yet (tensors on cuda:%d)",
                   dev.index);
        return NULL;
    }
    *rc = 0;
    return &dspi_ops_cpu;
}

/* Data of t laid out contiguously: t's own storage, or a copy kept until
 * call_finish. t is only read (the const cast is for the copy routine,
 * which is not called on contiguous tensors and so never takes a ref). */
static const void *contig(opcall *c, const dsp_tensor *t, int *rc)
{
    *rc = 0;
    if (dsp_tensor_is_contiguous(t))
        return dsp_tensor_data(t);
    dsp_tensor *copy = NULL;
    int r = dsp_tensor_contiguous((dsp_tensor *)t, &copy);
    if (r < 0) {
        *rc = fail(c, r, "cannot make a contiguous copy of a strided input");
        return NULL;
    }
    c->tmp[c->ntmp++] = copy;
    return dsp_tensor_data(copy);
}

/* The result: *out when given (checked), else a new contiguous f32 tensor. */
static int call_output(opcall *c, dsp_tensor **out, int ndim, const int64_t *shape)
{
    if (!out)
        return fail(c, DSP_EINVAL, "out is NULL");
    dsp_tensor *o = *out;
    if (!o) {
        int r = dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &c->res);
        if (r < 0)
            return fail(c, r, "cannot allocate the result f32%s", fmt_dims(ndim, shape).s);
        c->allocated = 1;
        return 0;
    }
    int same = o->dtype == DSP_DTYPE_F32 && o->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = o->shape[i] == shape[i];
    if (!same)
        return fail(c, DSP_EINVAL, "out is %s%s, expected f32%s", dsp_dtype_name(o->dtype),
                    fmt_shape(o).s, fmt_dims(ndim, shape).s);
    if (!dsp_tensor_is_contiguous(o))
        return fail(c, DSP_EINVAL, "out %s is not contiguous", fmt_shape(o).s);
    if (!o->buf || !dsp_buffer_is_writable(o->buf))
        return fail(c, DSP_EINVAL, "out %s is not writable (shared or read-only buffer)",
                    fmt_shape(o).s);
    c->res = o;
    return 0;
}

static int call_finish(opcall *c, int rc, dsp_tensor **out)
{
    for (int i = 0; i < c->ntmp; i++)
        dsp_tensor_unref(&c->tmp[i]);
    if (c->allocated) {
        if (rc < 0)
            dsp_tensor_unref(&c->res);
        else
            *out = c->res;
    }
    if (rc < 0 && !errbuf[0])
        fail(c, rc, "%s", rc == DSP_ENOMEM ? "out of memory" : "failed");
    return rc;
}

static float *res_data(opcall *c)
{
    return dsp_tensor_data(c->res);
}

/* View of b broadcast to shape (b's dims align with the trailing dims). */
static int broadcast_view(opcall *c, const dsp_tensor *b, const char *bname,
                          const dsp_tensor *a, const char *aname, dspi_bview *v)
{
    if (b->ndim > a->ndim)
        goto mismatch;
    memset(v, 0, sizeof *v);
    v->data = dsp_tensor_data(b);
    v->dtype = b->dtype;
    v->ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++) {
        int bd = d - (a->ndim - b->ndim);
        v->shape[d] = a->shape[d];
        if (bd < 0)
            continue;
        if (b->shape[bd] == a->shape[d])
            v->stride[d] = a->shape[d] == 1 ? 0 : b->stride[bd];
        else if (b->shape[bd] != 1)
            goto mismatch;
    }
    return 0;
mismatch:
    return fail(c, DSP_EINVAL, "%s %s does not broadcast to %s %s", bname, fmt_shape(b).s,
                aname, fmt_shape(a).s);
}

/* ---- operators ----------------------------------------------------------- */

int dsp_linear(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b, dsp_tensor **out)
{
    opcall c;
    int rc;
    call_begin(&c, "linear");
    if ((rc = need(&c, x, "x")) < 0 || (rc = need(&c, w, "w")) < 0)
        return call_finish(&c, rc, out);
    if ((rc = need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = need_dtype(&c, w, "w", is_float_dtype(w->dtype), "f32, f16 or bf16")) < 0)
        return call_finish(&c, rc, out);
    if (w->ndim != 2 || x->ndim < 1) {
        rc = fail(&c, DSP_EINVAL, "expects x [..., in] and w [out, in], got x %s and w %s",
                  fmt_shape(x).s, fmt_shape(w).s);
        return call_finish(&c, rc, out);
    }
    int64_t K = w->shape[1], N = w->shape[0];
    if (x->shape[x->ndim - 1] != K) {
        rc = fail(&c, DSP_EINVAL, "x %s has %lld features, w %s expects %lld", fmt_shape(x).s,
                  (long long)x->shape[x->ndim - 1], fmt_shape(w).s, (long long)K);
        return call_finish(&c, rc, out);
    }
    if (b) {
        if ((rc = need(&c, b, "b")) < 0 ||
            (rc = need_dtype(&c, b, "b", is_float_dtype(b->dtype), "f32, f16 or bf16")) < 0)
            return call_finish(&c, rc, out);
        if (b->ndim != 1 || b->shape[0] != N) {
            rc = fail(&c, DSP_EINVAL, "b %s does not match w %s (expects [%lld])",
                      fmt_shape(b).s, fmt_shape(w).s, (long long)N);
            return call_finish(&c, rc, out);
        }
    }
    const dsp_tensor *ts[] = {x, w, b};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 3, &rc);
    if (!be)
        return call_finish(&c, rc, out);
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    if ((rc = call_output(&c, out, x->ndim, shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd, *wd, *bd = NULL;
    if (!(xd = contig(&c, x, &rc)) || !(wd = contig(&c, w, &rc)) ||
        (b && !(bd = contig(&c, b, &rc))))
        return call_finish(&c, rc, out);
    rc = be->linear(xd, prod(x->shape, x->ndim - 1), K, wd, w->dtype, N, bd,
                    b ? b->dtype : DSP_DTYPE_F32, res_data(&c));
    return call_finish(&c, rc, out);
}

int dsp_matmul(const dsp_tensor *a, const dsp_tensor *b, int transpose_b, dsp_tensor **out)
{
    opcall c;
    int rc;
    int64_t *offs = NULL;
    call_begin(&c, "matmul");
    if ((rc = need(&c, a, "a")) < 0 || (rc = need(&c, b, "b")) < 0 ||
        (rc = need_dtype(&c, a, "a", a->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = need_dtype(&c, b, "b", b->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return call_finish(&c, rc, out);
    if (a->ndim < 2 || b->ndim < 2) {
        rc = fail(&c, DSP_EINVAL, "a %s and b %s need at least 2 dims each", fmt_shape(a).s,
                  fmt_shape(b).s);
        return call_finish(&c, rc, out);
    }
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t bk = b->shape[b->ndim - (transpose_b ? 1 : 2)];
    int64_t n = b->shape[b->ndim - (transpose_b ? 2 : 1)];
    if (bk != k) {
        rc = fail(&c, DSP_EINVAL, "a %s and b %s%s do not match: a has k = %lld, b has %lld",
                  fmt_shape(a).s, fmt_shape(b).s, transpose_b ? " (transposed)" : "",
                  (long long)k, (long long)bk);
        return call_finish(&c, rc, out);
    }
    /* broadcast batch dims, right-aligned as in torch.matmul */
    int abn = a->ndim - 2, bbn = b->ndim - 2, nb = abn > bbn ? abn : bbn;
    int64_t shape[DSP_MAX_DIMS], astr[DSP_MAX_DIMS], bstr[DSP_MAX_DIMS];
    int64_t as = m * k, bs = k * n;
    for (int d = nb - 1; d >= 0; d--) {
        int ad = d - (nb - abn), bd = d - (nb - bbn);
        int64_t ea = ad >= 0 ? a->shape[ad] : 1, eb = bd >= 0 ? b->shape[bd] : 1;
        if (ea != eb && ea != 1 && eb != 1) {
            rc = fail(&c, DSP_EINVAL, "batch dims of a %s and b %s do not broadcast",
                      fmt_shape(a).s, fmt_shape(b).s);
            return call_finish(&c, rc, out);
        }
        shape[d] = ea > eb ? ea : eb;
        if (ea == 0 || eb == 0)
            shape[d] = 0;
        astr[d] = ea == 1 ? 0 : as;
        bstr[d] = eb == 1 ? 0 : bs;
        as *= ea;
        bs *= eb;
    }
    shape[nb] = m;
    shape[nb + 1] = n;
    const dsp_tensor *ts[] = {a, b};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, nb + 2, shape)) < 0)
        return call_finish(&c, rc, out);
    const void *ad, *bdat;
    if (!(ad = contig(&c, a, &rc)) || !(bdat = contig(&c, b, &rc)))
        return call_finish(&c, rc, out);
    int64_t nbatch = prod(shape, nb);
    offs = malloc((size_t)(nbatch > 0 ? 2 * nbatch : 1) * sizeof *offs);
    if (!offs)
        return call_finish(&c, fail(&c, DSP_ENOMEM, "out of memory"), out);
    for (int64_t i = 0; i < nbatch; i++) {
        int64_t r = i, ao = 0, bo = 0;
        for (int d = nb - 1; d >= 0; d--) {
            int64_t idx = r % shape[d];
            r /= shape[d];
            ao += idx * astr[d];
            bo += idx * bstr[d];
        }
        offs[i] = ao;
        offs[nbatch + i] = bo;
    }
    rc = be->matmul(ad, bdat, nbatch, offs, offs + nbatch, m, k, n, transpose_b, res_data(&c));
    free(offs);
    return call_finish(&c, rc, out);
}

int dsp_embedding(const dsp_tensor *ids, const dsp_tensor *table, dsp_tensor **out)
{
    opcall c;
    int rc;
    call_begin(&c, "embedding");
    if ((rc = need(&c, ids, "ids")) < 0 || (rc = need(&c, table, "table")) < 0 ||
        (rc = need_dtype(&c, ids, "ids",
                         ids->dtype == DSP_DTYPE_I32 || ids->dtype == DSP_DTYPE_I64,
                         "i32 or i64")) < 0 ||
        (rc = need_dtype(&c, table, "table", is_float_dtype(table->dtype),
                         "f32, f16 or bf16")) < 0)
        return call_finish(&c, rc, out);
    if (table->ndim != 2 || ids->ndim >= DSP_MAX_DIMS) {
        rc = fail(&c, DSP_EINVAL, "expects table [vocab, dim] and ids of at most %d dims, got "
                  "table %s and ids %s", DSP_MAX_DIMS - 1, fmt_shape(table).s,
                  fmt_shape(ids).s);
        return call_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {ids, table};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be)
        return call_finish(&c, rc, out);
    const void *idd = contig(&c, ids, &rc);
    if (!idd)
        return call_finish(&c, rc, out);
    int64_t nids = prod(ids->shape, ids->ndim), vocab = table->shape[0];
    for (int64_t i = 0; i < nids; i++) {
        int64_t id = ids->dtype == DSP_DTYPE_I64 ? ((const int64_t *)idd)[i]
                                                 : ((const int32_t *)idd)[i];
        if (id < 0 || id >= vocab) {
            rc = fail(&c, DSP_EINVAL, "id %lld at position %lld of ids %s is outside [0, %lld)"
                      " of table %s", (long long)id, (long long)i, fmt_shape(ids).s,
                      (long long)vocab, fmt_shape(table).s);
            return call_finish(&c, rc, out);
        }
    }
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = table->shape[1];
    if ((rc = call_output(&c, out, ids->ndim + 1, shape)) < 0)
        return call_finish(&c, rc, out);
    /* the table is read through its strides: no copy of a big matrix */
    rc = be->embedding(idd, ids->dtype, nids, dsp_tensor_data(table), table->dtype,
                       table->stride[0], table->stride[1], table->shape[1], res_data(&c));
    return call_finish(&c, rc, out);
}

int dsp_softmax(const dsp_tensor *x, const dsp_tensor *mask, dsp_tensor **out)
{
    opcall c;
    int rc;
    dspi_bview mv;
    call_begin(&c, "softmax");
    if ((rc = need(&c, x, "x")) < 0 ||
        (rc = need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return call_finish(&c, rc, out);
    if (x->ndim < 1) {
        rc = fail(&c, DSP_EINVAL, "x is a scalar, expected at least 1 dim");
        return call_finish(&c, rc, out);
    }
    if (mask) {
        if ((rc = need(&c, mask, "mask")) < 0 ||
            (rc = need_dtype(&c, mask, "mask",
                             mask->dtype == DSP_DTYPE_U8 || mask->dtype == DSP_DTYPE_BOOL ||
                                 mask->dtype == DSP_DTYPE_F32, "bool, u8 or f32")) < 0 ||
            (rc = broadcast_view(&c, mask, "mask", x, "x", &mv)) < 0)
            return call_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {x, mask};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, x->ndim, x->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd = contig(&c, x, &rc);
    if (!xd)
        return call_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->softmax(xd, mask ? &mv : NULL, prod(x->shape, x->ndim - 1), n, res_data(&c));
    return call_finish(&c, rc, out);
}

/* Shared checks of layernorm and rmsnorm: x f32 [..., dim], v NULL or [dim]. */
static int norm_check(opcall *c, const dsp_tensor *x, const dsp_tensor *v, const char *name)
{
    int rc;
    if ((rc = need(c, x, "x")) < 0 ||
        (rc = need_dtype(c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return rc;
    if (x->ndim < 1)
        return fail(c, DSP_EINVAL, "x is a scalar, expected at least 1 dim");
    if (!v)
        return 0;
    if ((rc = need(c, v, name)) < 0 ||
        (rc = need_dtype(c, v, name, is_float_dtype(v->dtype), "f32, f16 or bf16")) < 0)
        return rc;
    if (v->ndim != 1 || v->shape[0] != x->shape[x->ndim - 1])
        return fail(c, DSP_EINVAL, "%s %s does not match x %s (expects [%lld])", name,
                    fmt_shape(v).s, fmt_shape(x).s, (long long)x->shape[x->ndim - 1]);
    return 0;
}

int dsp_layernorm(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b, float eps,
                  dsp_tensor **out)
{
    opcall c;
    int rc;
    call_begin(&c, "layernorm");
    if (!w)
        return call_finish(&c, fail(&c, DSP_EINVAL, "w is NULL"), out);
    if ((rc = norm_check(&c, x, w, "w")) < 0 || (rc = norm_check(&c, x, b, "b")) < 0)
        return call_finish(&c, rc, out);
    const dsp_tensor *ts[] = {x, w, b};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 3, &rc);
    if (!be || (rc = call_output(&c, out, x->ndim, x->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd, *wd, *bd = NULL;
    if (!(xd = contig(&c, x, &rc)) || !(wd = contig(&c, w, &rc)) ||
        (b && !(bd = contig(&c, b, &rc))))
        return call_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->layernorm(xd, prod(x->shape, x->ndim - 1), n, wd, bd, w->dtype,
                       b ? b->dtype : DSP_DTYPE_F32, eps, res_data(&c));
    return call_finish(&c, rc, out);
}

int dsp_rmsnorm(const dsp_tensor *x, const dsp_tensor *w, float eps, dsp_tensor **out)
{
    opcall c;
    int rc;
    call_begin(&c, "rmsnorm");
    if (!w)
        return call_finish(&c, fail(&c, DSP_EINVAL, "w is NULL"), out);
    if ((rc = norm_check(&c, x, w, "w")) < 0)
        return call_finish(&c, rc, out);
    const dsp_tensor *ts[] = {x, w};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, x->ndim, x->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd, *wd;
    if (!(xd = contig(&c, x, &rc)) || !(wd = contig(&c, w, &rc)))
        return call_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->rmsnorm(xd, prod(x->shape, x->ndim - 1), n, wd, w->dtype, eps, res_data(&c));
    return call_finish(&c, rc, out);
}

/* gelu, silu (up == NULL) and swiglu share their checks and plumbing. */
static int unary(const char *op, const dsp_tensor *x, const dsp_tensor *up, int kind,
                 dsp_tensor **out)
{
    opcall c;
    int rc;
    const char *xn = up ? "gate" : "x";
    call_begin(&c, op);
    if ((rc = need(&c, x, xn)) < 0 ||
        (rc = need_dtype(&c, x, xn, x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return call_finish(&c, rc, out);
    if (up) {
        if ((rc = need(&c, up, "up")) < 0 ||
            (rc = need_dtype(&c, up, "up", up->dtype == DSP_DTYPE_F32, "f32")) < 0)
            return call_finish(&c, rc, out);
        if (up->ndim != x->ndim ||
            memcmp(up->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
            rc = fail(&c, DSP_EINVAL, "gate %s and up %s differ in shape", fmt_shape(x).s,
                      fmt_shape(up).s);
            return call_finish(&c, rc, out);
        }
    }
    if (kind != -1 && kind != DSP_GELU_EXACT && kind != DSP_GELU_TANH)
        return call_finish(&c, fail(&c, DSP_EINVAL, "unknown gelu kind %d", kind), out);
    const dsp_tensor *ts[] = {x, up};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, x->ndim, x->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd, *ud = NULL;
    if (!(xd = contig(&c, x, &rc)) || (up && !(ud = contig(&c, up, &rc))))
        return call_finish(&c, rc, out);
    int64_t n = prod(x->shape, x->ndim);
    if (up)
        rc = be->swiglu(xd, ud, n, res_data(&c));
    else if (kind >= 0)
        rc = be->gelu(xd, n, (dsp_gelu_kind)kind, res_data(&c));
    else
        rc = be->silu(xd, n, res_data(&c));
    return call_finish(&c, rc, out);
}

int dsp_gelu(const dsp_tensor *x, dsp_gelu_kind kind, dsp_tensor **out)
{
    return unary("gelu", x, NULL, (int)kind, out);
}

int dsp_silu(const dsp_tensor *x, dsp_tensor **out)
{
    return unary("silu", x, NULL, -1, out);
}

int dsp_swiglu(const dsp_tensor *gate, const dsp_tensor *up, dsp_tensor **out)
{
    if (!up) {
        snprintf(errbuf, sizeof errbuf, "swiglu: up is NULL");
        return DSP_EINVAL;
    }
    return unary("swiglu", gate, up, -1, out);
}

static int binary(const char *op, const dsp_tensor *a, const dsp_tensor *b, int is_mul,
                  dsp_tensor **out)
{
    opcall c;
    int rc;
    dspi_bview bv;
    call_begin(&c, op);
    if ((rc = need(&c, a, "a")) < 0 || (rc = need(&c, b, "b")) < 0 ||
        (rc = need_dtype(&c, a, "a", a->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = need_dtype(&c, b, "b", b->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = broadcast_view(&c, b, "b", a, "a", &bv)) < 0)
        return call_finish(&c, rc, out);
    const dsp_tensor *ts[] = {a, b};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, a->ndim, a->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *ad = contig(&c, a, &rc);
    if (!ad)
        return call_finish(&c, rc, out);
    rc = is_mul ? be->mul(ad, &bv, res_data(&c)) : be->add(ad, &bv, res_data(&c));
    return call_finish(&c, rc, out);
}

int dsp_add(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out)
{
    return binary("add", a, b, 0, out);
}

int dsp_mul(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out)
{
    return binary("mul", a, b, 1, out);
}

int dsp_rope(const dsp_tensor *x, const dsp_tensor *pos, float base, int rot_dims,
             dsp_tensor **out)
{
    opcall c;
    int rc;
    call_begin(&c, "rope");
    if ((rc = need(&c, x, "x")) < 0 || (rc = need(&c, pos, "pos")) < 0 ||
        (rc = need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = need_dtype(&c, pos, "pos",
                         pos->dtype == DSP_DTYPE_I32 || pos->dtype == DSP_DTYPE_I64,
                         "i32 or i64")) < 0)
        return call_finish(&c, rc, out);
    if (x->ndim != 4) {
        rc = fail(&c, DSP_EINVAL, "x %s must be [batch, heads, seq, head_dim]", fmt_shape(x).s);
        return call_finish(&c, rc, out);
    }
    int64_t B = x->shape[0], S = x->shape[2], hd = x->shape[3];
    int batched = pos->ndim == 2;
    if (!((pos->ndim == 1 && pos->shape[0] == S) ||
          (batched && pos->shape[0] == B && pos->shape[1] == S))) {
        rc = fail(&c, DSP_EINVAL, "pos %s does not match x %s (expects [%lld] or [%lld, %lld])",
                  fmt_shape(pos).s, fmt_shape(x).s, (long long)S, (long long)B, (long long)S);
        return call_finish(&c, rc, out);
    }
    int64_t rd = rot_dims == 0 ? hd : rot_dims;
    if (rd < 0 || rd > hd || rd % 2) {
        rc = fail(&c, DSP_EINVAL, "rot_dims %d must be even and at most head_dim %lld of x %s",
                  rot_dims, (long long)hd, fmt_shape(x).s);
        return call_finish(&c, rc, out);
    }
    if (!(base > 0.0f)) {
        rc = fail(&c, DSP_EINVAL, "base %g must be positive", (double)base);
        return call_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {x, pos};
    const dspi_ops_backend *be = select_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = call_output(&c, out, 4, x->shape)) < 0)
        return call_finish(&c, rc, out);
    const void *xd, *pd;
    if (!(xd = contig(&c, x, &rc)) || !(pd = contig(&c, pos, &rc)))
        return call_finish(&c, rc, out);
    rc = be->rope(xd, B, x->shape[1], S, hd, pd, pos->dtype, batched, base, (int)rd,
                  res_data(&c));
    return call_finish(&c, rc, out);
}
