/* quant.c - the public weight-only quantization operators and dsp_moe of dspipe/ops.h: argument checks and backend calls. */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ops/quant_int.h"

static const char *kind_name(dsp_quant_kind k)
{
    return k == DSP_QUANT_INT4 ? "int4" : "int8";
}

/* A 2-D float tensor as a kernel-side matrix view (read through its strides). */
static dspi_wmat wmat_of(const dsp_tensor *t)
{
    dspi_wmat m = {dsp_tensor_data(t), t->dtype, t->shape[0], t->shape[1], t->stride[0],
                   t->stride[1], NULL};
    return m;
}

static dspi_shapestr qw_str(const dsp_qweight *w);

int dsp_quantize(const dsp_tensor *w, dsp_quant_kind kind, int group_size, dsp_qweight **out)
{
    dspi_opcall c;
    int rc;
    dsp_qweight *q = NULL;
    dspi_op_begin(&c, "quantize");
    if (!out)
        return dspi_op_fail(&c, DSP_EINVAL, "out is NULL");
    if ((rc = dspi_op_need(&c, w, "w")) < 0 ||
        (rc = dspi_op_need_dtype(&c, w, "w", dspi_is_float_dtype(w->dtype), "f32, f16 or bf16")) < 0)
        return dspi_op_finish(&c, rc, NULL);
    if (kind != DSP_QUANT_INT8 && kind != DSP_QUANT_INT4)
        return dspi_op_fail(&c, DSP_EINVAL, "unknown kind %d (DSP_QUANT_INT8 or DSP_QUANT_INT4)",
                            (int)kind);
    if (group_size != 32 && group_size != 128)
        return dspi_op_fail(&c, DSP_EINVAL, "group_size %d is not supported (32 or 128)",
                            group_size);
    if (w->ndim != 2 || w->shape[1] <= 0)
        return dspi_op_fail(&c, DSP_EINVAL, "w %s must be [out, in] with in > 0",
                            dspi_shape_str(w).s);
    if (w->shape[1] % group_size)
        return dspi_op_fail(&c, DSP_EINVAL, "w %s has in_features %lld, not a multiple of "
                            "group_size %d", dspi_shape_str(w).s, (long long)w->shape[1],
                            group_size);
    const dsp_tensor *ts[] = {w};
    /* the CUDA backend table will be consulted here; today this is the CPU */
    if (!dspi_op_backend(&c, NULL, ts, 1, &rc))
        return dspi_op_finish(&c, rc, NULL);
    q = calloc(1, sizeof *q);
    if (!q)
        return dspi_op_fail(&c, DSP_ENOMEM, "out of memory");
    q->kind = kind;
    q->group_size = group_size;
    q->out = w->shape[0];
    q->in = w->shape[1];
    q->device = w->device;
    int64_t nc = q->out * dspi_qrow_bytes(q), ns = q->out * (q->in / group_size);
    q->codes = malloc((size_t)(nc > 0 ? nc : 1));
    q->scales = malloc((size_t)(ns > 0 ? ns : 1) * sizeof *q->scales);
    if (!q->codes || !q->scales) {
        rc = dspi_op_fail(&c, DSP_ENOMEM, "out of memory for %s w %s", kind_name(kind),
                          dspi_shape_str(w).s);
        goto fail;
    }
    dspi_wmat src = wmat_of(w);
    int64_t bad = -1;
    if ((rc = dspi_cpu_quantize(&src, q, &bad)) < 0) {
        if (bad >= 0)
            rc = dspi_op_fail(&c, rc, "row %lld of w %s holds inf or NaN", (long long)bad,
                              dspi_shape_str(w).s);
        else
            rc = dspi_op_fail(&c, rc, "out of memory");
        goto fail;
    }
    *out = q;
    return 0;
fail:
    dsp_qweight_free(&q);
    return rc;
}

void dsp_qweight_free(dsp_qweight **w)
{
    if (!w || !*w)
        return;
    if ((*w)->device.type == DSP_DEVICE_CUDA) {
        /* device memory can only exist once a backend is loaded, and
         * modules stay loaded: this is the one that allocated it */
        const dspi_backend *be = dspi_device_loaded_backend();
        if (be && (*w)->codes)
            be->free((*w)->device.index, (*w)->codes);
        if (be && (*w)->scales)
            be->free((*w)->device.index, (*w)->scales);
    } else {
        free((*w)->codes);
        free((*w)->scales);
    }
    free(*w);
    *w = NULL;
}

/* ---- copies between devices ---------------------------------------------- */

/* The backend for a copy to or from cuda:index, with a message on ctx when
 * it is not usable (as dsp_tensor_to_device reports it). */
static int qw_backend(dsp_context *ctx, int index, const dspi_backend **out)
{
    const char *why = NULL;
    const dspi_backend *be = dspi_device_backend(ctx);
    *out = NULL;
    if (!be) {
        dspi_set_error(ctx, "dsp_qweight_to_device: cuda:%d is not usable: %s", index,
                       ctx->cuda_error ? ctx->cuda_error : "no CUDA backend");
        return DSP_EDEVICE;
    }
    int n = be->device_count(&why);
    if (index < 0 || index >= n) {
        if (n > 0)
            dspi_set_error(ctx, "dsp_qweight_to_device: no device cuda:%d (this machine has "
                           "cuda:0..cuda:%d)", index, n - 1);
        else
            dspi_set_error(ctx, "dsp_qweight_to_device: cuda:%d is not usable: %s", index,
                           why ? why : "no CUDA device");
        return DSP_EDEVICE;
    }
    *out = be;
    return 0;
}

/* n bytes on dev (host malloc for the CPU) into *p; 0, DSP_ENOMEM or
 * DSP_EDEVICE. */
static int qw_alloc(const dspi_backend *be, dsp_device dev, size_t n, void **p)
{
    if (dev.type == DSP_DEVICE_CPU) {
        *p = malloc(n ? n : 1);
        return *p ? 0 : DSP_ENOMEM;
    }
    int rc = be->malloc(dev.index, n, p);
    if (rc < 0)
        *p = NULL;
    return rc < 0 ? (rc == DSP_ENOMEM ? DSP_ENOMEM : DSP_EDEVICE) : 0;
}

/* n bytes from src (on from) to dst (on to); one side is the CPU. */
static int qw_copy(const dspi_backend *be, dsp_device to, void *dst, dsp_device from,
                   const void *src, size_t n)
{
    if (n == 0)
        return 0;
    if (to.type == DSP_DEVICE_CPU && from.type == DSP_DEVICE_CPU) {
        memcpy(dst, src, n);
        return 0;
    }
    if (to.type == DSP_DEVICE_CPU)
        return be->memcpy_d2h(from.index, dst, src, n) < 0 ? DSP_EDEVICE : 0;
    return be->memcpy_h2d(to.index, dst, src, n) < 0 ? DSP_EDEVICE : 0;
}

/* A copy of w (on its device, backend be where that is CUDA) on dev, which
 * is the CPU or w is; *out NULL on failure, message on ctx. */
static int qw_copy_to(dsp_context *ctx, const dspi_backend *be, const dsp_qweight *w,
                      dsp_device dev, dsp_qweight **out)
{
    size_t nc = (size_t)(w->out * dspi_qrow_bytes(w));
    size_t ns = (size_t)(w->out * (w->in / w->group_size)) * sizeof(float);
    const char *where = dev.type == DSP_DEVICE_CPU ? "the CPU" : "the GPU";
    int rc;
    dsp_qweight *q = calloc(1, sizeof *q);
    if (!q) {
        dspi_set_error(ctx, "dsp_qweight_to_device: out of memory");
        return DSP_ENOMEM;
    }
    *q = *w;
    q->device = dev;
    q->codes = NULL;
    q->scales = NULL;
    if ((rc = qw_alloc(be, dev, nc, (void **)&q->codes)) < 0 ||
        (rc = qw_alloc(be, dev, ns, (void **)&q->scales)) < 0) {
        dspi_set_error(ctx, "dsp_qweight_to_device: cannot allocate %s (%zu bytes) on %s",
                       qw_str(w).s, nc + ns, where);
        goto fail;
    }
    if ((rc = qw_copy(be, dev, q->codes, w->device, w->codes, nc)) < 0 ||
        (rc = qw_copy(be, dev, q->scales, w->device, w->scales, ns)) < 0) {
        dspi_set_error(ctx, "dsp_qweight_to_device: copying %s to %s failed", qw_str(w).s,
                       where);
        goto fail;
    }
    /* a copy from pageable host memory may return before the device has
     * it: wait, so that any thread's stream may read the weights next */
    if (dev.type == DSP_DEVICE_CUDA && be->synchronize(dev.index) < 0) {
        rc = DSP_EDEVICE;
        dspi_set_error(ctx, "dsp_qweight_to_device: copying %s to cuda:%d failed",
                       qw_str(w).s, dev.index);
        goto fail;
    }
    *out = q;
    return 0;
fail:
    dsp_qweight_free(&q);
    return rc;
}

int dsp_qweight_to_device(struct dsp_context *ctx, const dsp_qweight *w, dsp_device dev,
                          dsp_qweight **out)
{
    const dspi_backend *be = NULL;
    dsp_qweight *host = NULL;
    int rc;
    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!ctx || !w) {
        if (ctx)
            dspi_set_error(ctx, "dsp_qweight_to_device: w is NULL");
        return DSP_EINVAL;
    }
    if (dev.type != DSP_DEVICE_CPU && dev.type != DSP_DEVICE_CUDA) {
        dspi_set_error(ctx, "dsp_qweight_to_device: unknown device type %d", (int)dev.type);
        return DSP_EINVAL;
    }
    if (w->device.type == DSP_DEVICE_CPU) {
        if (dev.type == DSP_DEVICE_CUDA && (rc = qw_backend(ctx, dev.index, &be)) < 0)
            return rc;
        return qw_copy_to(ctx, be, w, dev, out);
    }
    /* w lives on a CUDA device, so some context loaded the backend */
    be = ctx->cuda ? ctx->cuda : dspi_device_loaded_backend();
    if (!be) {
        dspi_set_error(ctx, "dsp_qweight_to_device: w is on cuda:%d but no CUDA backend is "
                       "loaded", w->device.index);
        return DSP_EDEVICE;
    }
    if (dev.type == DSP_DEVICE_CPU)
        return qw_copy_to(ctx, be, w, dev, out);
    /* CUDA to CUDA goes through the host, as tensors do */
    if ((rc = qw_backend(ctx, dev.index, &be)) < 0 ||
        (rc = qw_copy_to(ctx, be, w, (dsp_device){DSP_DEVICE_CPU, 0}, &host)) < 0)
        return rc;
    rc = qw_copy_to(ctx, be, host, dev, out);
    dsp_qweight_free(&host);
    return rc;
}

size_t dsp_qweight_bytes(const dsp_qweight *w)
{
    if (!w)
        return 0;
    return (size_t)(w->out * dspi_qrow_bytes(w)) +
           (size_t)(w->out * (w->in / w->group_size)) * sizeof(float);
}

int dsp_qweight_shape(const dsp_qweight *w, int64_t *out_features, int64_t *in_features)
{
    if (!w)
        return DSP_EINVAL;
    if (out_features)
        *out_features = w->out;
    if (in_features)
        *in_features = w->in;
    return 0;
}

/* "int4[256, 512] g32" for messages */
static dspi_shapestr qw_str(const dsp_qweight *w)
{
    int64_t s[2] = {w->out, w->in};
    dspi_shapestr d = dspi_dims_str(2, s), r;
    snprintf(r.s, sizeof r.s, "%s%.120s g%d", kind_name(w->kind), d.s, w->group_size);
    return r;
}

int dsp_dequantize(const dsp_qweight *w, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "dequantize");
    if (!w)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "w is NULL"), out);
    if (w->device.type != DSP_DEVICE_CPU)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EUNSUPPORTED, "w %s is on cuda:%d; "
                                               "dequantize runs on the CPU: copy w there with "
                                               "dsp_qweight_to_device first", qw_str(w).s,
                                               w->device.index), out);
    /* the CUDA backend table will be consulted here; today this is the CPU */
    if (!dspi_op_backend(&c, out, NULL, 0, &rc))
        return dspi_op_finish(&c, rc, out);
    int64_t shape[2] = {w->out, w->in};
    if ((rc = dspi_op_output(&c, out, 2, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    dspi_cpu_dequant_rows(w, 0, w->out, dspi_op_res(&c));
    return dspi_op_finish(&c, 0, out);
}

int dsp_linear_q(const dsp_tensor *x, const dsp_qweight *w, const dsp_tensor *b,
                 dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "linear_q");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (!w)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "w is NULL"), out);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->in) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "x %s has %lld features, w %s expects %lld",
                          dspi_shape_str(x).s, x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL,
                          qw_str(w).s, (long long)w->in);
        return dspi_op_finish(&c, rc, out);
    }
    if (b) {
        if ((rc = dspi_op_need(&c, b, "b")) < 0 ||
            (rc = dspi_op_need_dtype(&c, b, "b", dspi_is_float_dtype(b->dtype), "f32, f16 or bf16")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (b->ndim != 1 || b->shape[0] != w->out) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "b %s does not match w %s (expects [%lld])",
                              dspi_shape_str(b).s, qw_str(w).s, (long long)w->out);
            return dspi_op_finish(&c, rc, out);
        }
    }
    const dsp_tensor *ts[] = {x, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be)
        return dspi_op_finish(&c, rc, out);
    if (w->device.type != c.dev.type || w->device.index != c.dev.index)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EDEVICE, "w is on %s:%d, x on %s:%d",
                                               w->device.type == DSP_DEVICE_CPU ? "cpu" : "cuda",
                                               w->device.index,
                                               c.dev.type == DSP_DEVICE_CPU ? "cpu" : "cuda",
                                               c.dev.index), out);
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->out;
    if ((rc = dspi_op_output(&c, out, x->ndim, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *bd = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || (b && !(bd = dspi_op_contig(&c, b, &rc))))
        return dspi_op_finish(&c, rc, out);
    rc = be->linear_q(xd, dspi_prod(x->shape, x->ndim - 1), w, bd,
                           b ? b->dtype : DSP_DTYPE_F32, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* ---- mixture of experts -------------------------------------------------- */

/* "[6, 8]" for a tensor, "int4[6, 8] g32" for a quantized matrix */
static dspi_shapestr mat_str(const dsp_tensor *t, const dsp_qweight *q)
{
    return q ? qw_str(q) : dspi_shape_str(t);
}

/* Check one SwiGLU expert against dim and make its kernel view: each of
 * gate, up and down comes either as a tensor or as a quantized matrix. */
static int moe_expert(dspi_opcall *c, const dsp_moe_expert *e, const char *what, int i,
                      int64_t dim, dspi_moe_mlp *m)
{
    const dsp_tensor *t[3] = {e->gate, e->up, e->down};
    const dsp_qweight *q[3] = {e->qgate, e->qup, e->qdown};
    static const char *const nm[3] = {"gate", "up", "down"};
    int64_t rows[3], cols[3];
    for (int k = 0; k < 3; k++) {
        if (t[k] && q[k])
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d]: both %s and q%s are set; give the "
                                "matrix once, as a tensor or quantized", what, i, nm[k], nm[k]);
        if (!t[k] && !q[k])
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s is NULL (and no q%s given)", what, i,
                                nm[k], nm[k]);
        if (q[k]) {
            rows[k] = q[k]->out;
            cols[k] = q[k]->in;
            continue;
        }
        if (!dspi_is_float_dtype(t[k]->dtype))
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s is %s, expected f32, f16 or bf16",
                                what, i, nm[k], dsp_dtype_name(t[k]->dtype));
        if (t[k]->ndim != 2)
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s %s is not 2-D", what, i, nm[k],
                                dspi_shape_str(t[k]).s);
        rows[k] = t[k]->shape[0];
        cols[k] = t[k]->shape[1];
    }
    int64_t inter = rows[0];
    if (cols[0] != dim || rows[1] != inter || cols[1] != dim || rows[2] != dim ||
        cols[2] != inter || inter <= 0)
        return dspi_op_fail(c, DSP_EINVAL, "%s[%d]: gate %s, up %s, down %s do not fit dim %lld "
                            "(expects gate and up [inter, %lld], down [%lld, inter])", what, i,
                            mat_str(t[0], q[0]).s, mat_str(t[1], q[1]).s, mat_str(t[2], q[2]).s,
                            (long long)dim, (long long)dim, (long long)dim);
    dspi_wmat *w[3] = {&m->gate, &m->up, &m->down};
    m->act_int8 = 0;
    for (int k = 0; k < 3; k++) {
        if (t[k]) {
            *w[k] = wmat_of(t[k]);
        } else {
            dspi_wmat v = {NULL, DSP_DTYPE_F32, rows[k], cols[k], cols[k], 1, q[k]};
            *w[k] = v;
        }
    }
    return 0;
}

/* A quantized matrix of an expert must live where the call runs. */
static int moe_qdevice(dspi_opcall *c, const dsp_moe_expert *e, const char *what, int i)
{
    const dsp_qweight *q[3] = {e->qgate, e->qup, e->qdown};
    static const char *const nm[3] = {"qgate", "qup", "qdown"};
    for (int k = 0; k < 3; k++)
        if (q[k] && (q[k]->device.type != c->dev.type || q[k]->device.index != c->dev.index))
            return dspi_op_fail(c, DSP_EDEVICE, "%s[%d].%s is on %s:%d, x on %s:%d", what, i,
                                nm[k], q[k]->device.type == DSP_DEVICE_CPU ? "cpu" : "cuda",
                                q[k]->device.index, c->dev.type == DSP_DEVICE_CPU ? "cpu" : "cuda",
                                c->dev.index);
    return 0;
}

/* Whether int8 matrices take int8 activations: opts->act, or for
 * DSP_MOE_ACT_DEFAULT the environment (read each call: cheap next to an
 * MoE layer, and a test can change it). */
static int moe_act_int8(dsp_moe_act act)
{
    if (act == DSP_MOE_ACT_DEFAULT) {
        const char *env = getenv("DSPIPE_MOE_ACT");
        return env && strcmp(env, "int8") == 0;
    }
    return act == DSP_MOE_ACT_INT8;
}

int dsp_moe(const dsp_tensor *x, const dsp_tensor *router, const dsp_moe_expert *experts,
            int n_experts, const dsp_moe_expert *shared, int n_shared,
            const dsp_moe_opts *opts, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_moe_mlp *mlps = NULL;
    const dsp_tensor **ts = NULL;
    dspi_op_begin(&c, "moe");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 || (rc = dspi_op_need(&c, router, "router")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, router, "router", dspi_is_float_dtype(router->dtype),
                                 "f32, f16 or bf16")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (!opts)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "opts is NULL"), out);
    if (x->ndim != 2 || router->ndim != 2 || router->shape[1] != x->shape[1] ||
        router->shape[0] != n_experts) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects x [tokens, dim] and router [%d, dim], got x %s "
                          "and router %s", n_experts, dspi_shape_str(x).s,
                          dspi_shape_str(router).s);
        return dspi_op_finish(&c, rc, out);
    }
    if (n_experts < 1 || !experts || n_shared < 0 || (n_shared > 0 && !shared)) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "needs at least one expert and shared[] for n_shared %d "
                          "(n_experts %d)", n_shared, n_experts);
        return dspi_op_finish(&c, rc, out);
    }
    if (opts->top_k < 1 || opts->top_k > n_experts) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "top_k %d must be in [1, n_experts %d]", opts->top_k,
                          n_experts);
        return dspi_op_finish(&c, rc, out);
    }
    if (opts->score != DSP_MOE_SOFTMAX && opts->score != DSP_MOE_SIGMOID)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "unknown score %d",
                                               (int)opts->score), out);
    if (opts->act < DSP_MOE_ACT_DEFAULT || opts->act > DSP_MOE_ACT_INT8)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "unknown act %d (expects "
                                               "DSP_MOE_ACT_DEFAULT, _F32 or _INT8)",
                                               (int)opts->act), out);
    if (!isfinite(opts->routed_scale))
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "routed_scale %g is not finite",
                                               (double)opts->routed_scale), out);
    int nm = n_experts + n_shared, nt = 2 + 3 * nm, act_int8 = moe_act_int8(opts->act);
    mlps = malloc((size_t)nm * sizeof *mlps);
    ts = malloc((size_t)nt * sizeof *ts);
    if (!mlps || !ts) {
        rc = dspi_op_fail(&c, DSP_ENOMEM, "out of memory");
        goto done;
    }
    ts[0] = x;
    ts[1] = router;
    for (int i = 0; i < nm; i++) {
        const dsp_moe_expert *e = i < n_experts ? &experts[i] : &shared[i - n_experts];
        if ((rc = moe_expert(&c, e, i < n_experts ? "experts" : "shared",
                             i < n_experts ? i : i - n_experts, x->shape[1], &mlps[i])) < 0)
            goto done;
        mlps[i].act_int8 = act_int8;
        ts[2 + 3 * i] = e->gate;
        ts[3 + 3 * i] = e->up;
        ts[4 + 3 * i] = e->down;
    }
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, nt, &rc);
    if (!be)
        goto done;
    for (int i = 0; i < nm; i++)
        if ((rc = moe_qdevice(&c, i < n_experts ? &experts[i] : &shared[i - n_experts],
                              i < n_experts ? "experts" : "shared",
                              i < n_experts ? i : i - n_experts)) < 0)
            goto done;
    if ((rc = dspi_op_output(&c, out, 2, x->shape)) < 0)
        goto done;
    const void *xd = dspi_op_contig(&c, x, &rc);
    if (!xd)
        goto done;
    /* weights are read through their strides by the kernel: no copies */
    dspi_wmat rw = wmat_of(router);
    rc = be->moe(xd, x->shape[0], x->shape[1], &rw, mlps, n_experts, mlps + n_experts,
                      n_shared, opts->top_k, opts->score, opts->renormalize,
                      opts->routed_scale == 0.0f ? 1.0f : opts->routed_scale, dspi_op_res(&c));
done:
    free(mlps);
    free(ts);
    return dspi_op_finish(&c, rc, out);
}
