/* quant.c - the public weight-only quantization operators and dsp_moe of dspipe/ops.h: argument checks and backend calls. */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"

static const char *kind_name(dsp_quant_kind k)
{
    return k == DSP_QUANT_INT4 ? "int4" : "int8";
}

/* A 2-D float tensor as a kernel-side matrix view (read through its strides). */
static dspi_wmat wmat_of(const dsp_tensor *t)
{
    dspi_wmat m = {dsp_tensor_data(t), t->dtype, t->shape[0], t->shape[1], t->stride[0],
                   t->stride[1]};
    return m;
}

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
    free((*w)->codes);
    free((*w)->scales);
    free(*w);
    *w = NULL;
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

/* Check one SwiGLU expert against dim and make its kernel view. */
static int moe_expert(dspi_opcall *c, const dsp_moe_expert *e, const char *what, int i,
                      int64_t dim, dspi_moe_mlp *m)
{
    const dsp_tensor *t[3] = {e->gate, e->up, e->down};
    static const char *const nm[3] = {"gate", "up", "down"};
    for (int k = 0; k < 3; k++) {
        if (!t[k])
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s is NULL", what, i, nm[k]);
        if (!dspi_is_float_dtype(t[k]->dtype))
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s is %s, expected f32, f16 or bf16",
                                what, i, nm[k], dsp_dtype_name(t[k]->dtype));
        if (t[k]->ndim != 2)
            return dspi_op_fail(c, DSP_EINVAL, "%s[%d].%s %s is not 2-D", what, i, nm[k],
                                dspi_shape_str(t[k]).s);
    }
    int64_t inter = e->gate->shape[0];
    if (e->gate->shape[1] != dim || e->up->shape[0] != inter || e->up->shape[1] != dim ||
        e->down->shape[0] != dim || e->down->shape[1] != inter || inter <= 0)
        return dspi_op_fail(c, DSP_EINVAL, "%s[%d]: gate %s, up %s, down %s do not fit dim %lld "
                            "(expects gate and up [inter, %lld], down [%lld, inter])", what, i,
                            dspi_shape_str(e->gate).s, dspi_shape_str(e->up).s,
                            dspi_shape_str(e->down).s, (long long)dim, (long long)dim,
                            (long long)dim);
    m->gate = wmat_of(e->gate);
    m->up = wmat_of(e->up);
    m->down = wmat_of(e->down);
    return 0;
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
    if (!isfinite(opts->routed_scale))
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "routed_scale %g is not finite",
                                               (double)opts->routed_scale), out);
    int nm = n_experts + n_shared, nt = 2 + 3 * nm;
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
        ts[2 + 3 * i] = e->gate;
        ts[3 + 3 * i] = e->up;
        ts[4 + 3 * i] = e->down;
    }
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, nt, &rc);
    if (!be ||
        (rc = dspi_op_output(&c, out, 2, x->shape)) < 0)
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
