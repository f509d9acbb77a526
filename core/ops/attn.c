/* attn.c - dsp_attention (full, causal, local, hybrid, top-k; grouped-query heads) and the KV cache: argument checks and kernel calls. */
#include "config.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ops/attn_int.h"

/* Strides of t's dims 0..2 when its rows (the last dim) are unit-stride:
 * the kernels read every row through these strides, so KV-cache views (rows
 * strided by the capacity) and [batch, len, heads, dim] projections viewed
 * as [batch, heads, len, dim] are read in place, with no copy per decoded
 * token, on the CPU and on CUDA. Anything else is made contiguous (on the
 * CPU; dspi_op_contig refuses a strided device tensor). */
static const float *rows_of(dspi_opcall *c, const dsp_tensor *t, int64_t st[3], int *rc)
{
    int64_t hd = t->shape[3];
    if (t->stride[3] == 1 || hd <= 1) {
        st[0] = t->stride[0];
        st[1] = t->stride[1];
        st[2] = t->stride[2];
        *rc = 0;
        return dsp_tensor_data(t);
    }
    const float *d = dspi_op_contig(c, t, rc);
    st[2] = hd;
    st[1] = t->shape[2] * hd;
    st[0] = t->shape[1] * st[1];
    return d;
}

static int check_qkv(dspi_opcall *c, const dsp_tensor *q, const dsp_tensor *k,
                     const dsp_tensor *v)
{
    int rc;
    if ((rc = dspi_op_need(c, q, "q")) < 0 || (rc = dspi_op_need(c, k, "k")) < 0 ||
        (rc = dspi_op_need(c, v, "v")) < 0 ||
        (rc = dspi_op_need_dtype(c, q, "q", q->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(c, k, "k", k->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(c, v, "v", v->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return rc;
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        return dspi_op_fail(c, DSP_EINVAL, "expects q [batch, q_heads, q_len, head_dim] and k, v "
                            "[batch, kv_heads, k_len, head_dim], got q %s, k %s, v %s",
                            dspi_shape_str(q).s, dspi_shape_str(k).s, dspi_shape_str(v).s);
    if (memcmp(k->shape, v->shape, 4 * sizeof(int64_t)) != 0)
        return dspi_op_fail(c, DSP_EINVAL, "k %s and v %s differ in shape", dspi_shape_str(k).s,
                            dspi_shape_str(v).s);
    if (q->shape[0] != k->shape[0] || q->shape[3] != k->shape[3])
        return dspi_op_fail(c, DSP_EINVAL, "q %s and k %s differ in batch or head_dim",
                            dspi_shape_str(q).s, dspi_shape_str(k).s);
    if (k->shape[1] < 1 || q->shape[1] % k->shape[1] != 0)
        return dspi_op_fail(c, DSP_EINVAL, "q %s has %lld heads, not a multiple of k %s's %lld "
                            "kv heads", dspi_shape_str(q).s, (long long)q->shape[1],
                            dspi_shape_str(k).s, (long long)k->shape[1]);
    return 0;
}

static int check_opts(dspi_opcall *c, const dsp_attn_opts *o, const dsp_tensor *k)
{
    int rc;
    if (!o)
        return dspi_op_fail(c, DSP_EINVAL, "opts is NULL");
    if (o->kind < DSP_ATTN_FULL || o->kind > DSP_ATTN_TOPK)
        return dspi_op_fail(c, DSP_EINVAL, "unknown attention kind %d", (int)o->kind);
    if (!(o->scale >= 0.0f) || isinf(o->scale))
        return dspi_op_fail(c, DSP_EINVAL, "scale %g must be finite and >= 0 (0: 1/sqrt(head_dim))",
                            (double)o->scale);
    if (o->q_offset < 0)
        return dspi_op_fail(c, DSP_EINVAL, "q_offset %lld is negative", (long long)o->q_offset);
    if ((o->kind == DSP_ATTN_LOCAL || o->kind == DSP_ATTN_HYBRID) && o->window < 1)
        return dspi_op_fail(c, DSP_EINVAL, "window %d must be at least 1 for local/hybrid attention",
                            o->window);
    if (o->kind == DSP_ATTN_HYBRID && (o->n_global < 0 || (o->n_global > 0 && !o->global)))
        return dspi_op_fail(c, DSP_EINVAL, "n_global %d with global %s", o->n_global,
                            o->global ? "set" : "NULL");
    if (o->kind == DSP_ATTN_TOPK && o->topk < 1)
        return dspi_op_fail(c, DSP_EINVAL, "topk %d must be at least 1", o->topk);
    const dsp_tensor *m = o->key_mask;
    if (!m)
        return 0;
    if ((rc = dspi_op_need(c, m, "key_mask")) < 0 ||
        (rc = dspi_op_need_dtype(c, m, "key_mask",
                                 m->dtype == DSP_DTYPE_U8 || m->dtype == DSP_DTYPE_BOOL,
                                 "u8 or bool")) < 0)
        return rc;
    if (m->ndim != 2 || m->shape[0] != k->shape[0] || m->shape[1] != k->shape[2])
        return dspi_op_fail(c, DSP_EINVAL, "key_mask %s does not match k %s (expects [%lld, %lld])",
                            dspi_shape_str(m).s, dspi_shape_str(k).s, (long long)k->shape[0],
                            (long long)k->shape[2]);
    return 0;
}

/* The CUDA kernels' limits (attn_int.h), refused with what to do instead. */
static int check_cuda_limits(dspi_opcall *c, const dspi_attn_args *a)
{
    if (a->head_dim > DSPI_CUDA_ATTN_MAX_DIM)
        return dspi_op_fail(c, DSP_EUNSUPPORTED, "head_dim %lld is more than CUDA attention's %d: "
                            "copy the tensors to the CPU with dsp_tensor_to_device",
                            (long long)a->head_dim, DSPI_CUDA_ATTN_MAX_DIM);
    if (a->kind == DSP_ATTN_TOPK && a->topk < a->k_len && a->topk > DSPI_CUDA_ATTN_MAX_TOPK)
        return dspi_op_fail(c, DSP_EUNSUPPORTED, "top-k with topk %lld of %lld keys is not "
                            "implemented on CUDA (at most %d kept keys): use topk <= %d, or copy "
                            "the tensors to the CPU with dsp_tensor_to_device", (long long)a->topk,
                            (long long)a->k_len, DSPI_CUDA_ATTN_MAX_TOPK, DSPI_CUDA_ATTN_MAX_TOPK);
    return 0;
}

int dsp_attention(const dsp_tensor *q, const dsp_tensor *k, const dsp_tensor *v,
                  const dsp_attn_opts *opts, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_attn_args a;
    dspi_op_begin(&c, "attention");
    if ((rc = check_qkv(&c, q, k, v)) < 0 || (rc = check_opts(&c, opts, k)) < 0)
        return dspi_op_finish(&c, rc, out);
    const dsp_tensor *ts[] = {q, k, v, opts->key_mask};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 4, &rc);
    if (!be ||
        (rc = dspi_op_output(&c, out, 4, q->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    memset(&a, 0, sizeof a);
    if (!(a.q = rows_of(&c, q, a.qs, &rc)) || !(a.k = rows_of(&c, k, a.ks, &rc)) ||
        !(a.v = rows_of(&c, v, a.vs, &rc)) ||
        (opts->key_mask && !(a.key_mask = dspi_op_contig(&c, opts->key_mask, &rc))))
        return dspi_op_finish(&c, rc, out);
    a.batch = q->shape[0];
    a.q_heads = q->shape[1];
    a.q_len = q->shape[2];
    a.head_dim = q->shape[3];
    a.kv_heads = k->shape[1];
    a.k_len = k->shape[2];
    a.kind = opts->kind;
    a.scale = opts->scale > 0.0f ? opts->scale
                                 : 1.0f / sqrtf((float)(a.head_dim > 0 ? a.head_dim : 1));
    a.causal = opts->kind == DSP_ATTN_CAUSAL || (opts->kind != DSP_ATTN_FULL && opts->causal);
    a.window = opts->window;
    a.global = opts->global;
    a.n_global = opts->kind == DSP_ATTN_HYBRID ? opts->n_global : 0;
    a.topk = opts->topk;
    a.q_offset = opts->q_offset;
    a.out = dspi_op_res(&c);
    if (c.mem && (rc = check_cuda_limits(&c, &a)) < 0)
        return dspi_op_finish(&c, rc, out);
    rc = be->attention(&a);
    return dspi_op_finish(&c, rc, out);
}

/* ---- KV cache -------------------------------------------------------------
 * One buffer per sequence for keys and one for values, each laid out
 * [kv_heads, capacity, head_dim], so an append writes t rows per head in
 * place and a view is a strided window over the first len rows. */
struct dsp_kv_cache {
    int n_seqs, kv_heads, head_dim;
    int64_t capacity;
    int64_t *len;
    dsp_buffer **kbuf, **vbuf;
};

void dsp_kv_cache_free(dsp_kv_cache **pc)
{
    if (!pc || !*pc)
        return;
    dsp_kv_cache *c = *pc;
    for (int s = 0; s < c->n_seqs; s++) {
        if (c->kbuf)
            dsp_buffer_unref(&c->kbuf[s]);
        if (c->vbuf)
            dsp_buffer_unref(&c->vbuf[s]);
    }
    free(c->kbuf);
    free(c->vbuf);
    free(c->len);
    free(c);
    *pc = NULL;
}

int dsp_kv_cache_new(int n_seqs, int kv_heads, int head_dim, int64_t capacity,
                     dsp_kv_cache **out)
{
    dspi_opcall oc;
    dspi_op_begin(&oc, "kv_cache_new");
    if (!out)
        return dspi_op_fail(&oc, DSP_EINVAL, "out is NULL");
    if (n_seqs < 1 || kv_heads < 1 || head_dim < 1 || capacity < 1)
        return dspi_op_fail(&oc, DSP_EINVAL, "n_seqs %d, kv_heads %d, head_dim %d and capacity "
                            "%lld must all be at least 1", n_seqs, kv_heads, head_dim,
                            (long long)capacity);
    if ((uint64_t)capacity > SIZE_MAX / sizeof(float) / (size_t)kv_heads / (size_t)head_dim)
        return dspi_op_fail(&oc, DSP_ELIMIT, "capacity %lld x %d heads x %d is too large",
                            (long long)capacity, kv_heads, head_dim);
    size_t bytes = (size_t)capacity * (size_t)kv_heads * (size_t)head_dim * sizeof(float);
    dsp_kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return dspi_op_fail(&oc, DSP_ENOMEM, "out of memory");
    c->n_seqs = n_seqs;
    c->kv_heads = kv_heads;
    c->head_dim = head_dim;
    c->capacity = capacity;
    c->len = calloc((size_t)n_seqs, sizeof *c->len);
    c->kbuf = calloc((size_t)n_seqs, sizeof *c->kbuf);
    c->vbuf = calloc((size_t)n_seqs, sizeof *c->vbuf);
    if (!c->len || !c->kbuf || !c->vbuf)
        goto nomem;
    for (int s = 0; s < n_seqs; s++)
        if (dsp_buffer_new(bytes, &c->kbuf[s]) < 0 || dsp_buffer_new(bytes, &c->vbuf[s]) < 0)
            goto nomem;
    *out = c;
    return 0;
nomem:
    dsp_kv_cache_free(&c);
    return dspi_op_fail(&oc, DSP_ENOMEM, "out of memory for %d sequences of %zu bytes", n_seqs,
                        2 * bytes);
}

static int bad_seq(dspi_opcall *oc, const dsp_kv_cache *c, int seq)
{
    if (!c)
        return dspi_op_fail(oc, DSP_EINVAL, "cache is NULL");
    if (seq < 0 || seq >= c->n_seqs)
        return dspi_op_fail(oc, DSP_EINVAL, "sequence %d outside [0, %d)", seq, c->n_seqs);
    return 0;
}

static int check_rows(dspi_opcall *oc, const dsp_kv_cache *c, const dsp_tensor *t,
                      const char *name)
{
    int rc;
    if ((rc = dspi_op_need(oc, t, name)) < 0 ||
        (rc = dspi_op_need_dtype(oc, t, name, t->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return rc;
    if (t->ndim != 3 || t->shape[0] != c->kv_heads || t->shape[2] != c->head_dim)
        return dspi_op_fail(oc, DSP_EINVAL, "%s %s does not match the cache (expects [%d, t, %d])",
                            name, dspi_shape_str(t).s, c->kv_heads, c->head_dim);
    return 0;
}

int dsp_kv_cache_append(dsp_kv_cache *c, int seq, const dsp_tensor *k, const dsp_tensor *v)
{
    dspi_opcall oc;
    int rc;
    dspi_op_begin(&oc, "kv_cache_append");
    if ((rc = bad_seq(&oc, c, seq)) < 0 || (rc = check_rows(&oc, c, k, "k")) < 0 ||
        (rc = check_rows(&oc, c, v, "v")) < 0)
        return rc;
    int64_t t = k->shape[1];
    if (v->shape[1] != t)
        return dspi_op_fail(&oc, DSP_EINVAL, "k %s and v %s differ in length", dspi_shape_str(k).s,
                            dspi_shape_str(v).s);
    if (t > c->capacity - c->len[seq])
        return dspi_op_fail(&oc, DSP_ELIMIT, "sequence %d holds %lld of %lld positions, cannot "
                            "append %lld more", seq, (long long)c->len[seq],
                            (long long)c->capacity, (long long)t);
    const float *kd, *vd;
    if (!(kd = dspi_op_contig(&oc, k, &rc)) || !(vd = dspi_op_contig(&oc, v, &rc)))
        return dspi_op_finish(&oc, rc, NULL);
    float *kc = dsp_buffer_data(c->kbuf[seq]), *vc = dsp_buffer_data(c->vbuf[seq]);
    size_t row = (size_t)c->head_dim * sizeof(float);
    for (int64_t h = 0; h < c->kv_heads; h++) {
        int64_t at = (h * c->capacity + c->len[seq]) * c->head_dim;
        memcpy(kc + at, kd + h * t * c->head_dim, (size_t)t * row);
        memcpy(vc + at, vd + h * t * c->head_dim, (size_t)t * row);
    }
    c->len[seq] += t;
    return dspi_op_finish(&oc, 0, NULL);
}

int64_t dsp_kv_cache_len(const dsp_kv_cache *c, int seq)
{
    dspi_opcall oc;
    int rc;
    dspi_op_begin(&oc, "kv_cache_len");
    if ((rc = bad_seq(&oc, c, seq)) < 0)
        return rc;
    return c->len[seq];
}

void dsp_kv_cache_reset(dsp_kv_cache *c, int seq)
{
    dspi_opcall oc;
    dspi_op_begin(&oc, "kv_cache_reset");
    if (bad_seq(&oc, c, seq) == 0)
        c->len[seq] = 0;
}

int dsp_kv_cache_view(const dsp_kv_cache *c, int seq, dsp_tensor **k, dsp_tensor **v)
{
    dspi_opcall oc;
    int rc;
    dspi_op_begin(&oc, "kv_cache_view");
    if ((rc = bad_seq(&oc, c, seq)) < 0)
        return rc;
    if (!k || !v)
        return dspi_op_fail(&oc, DSP_EINVAL, "k or v is NULL");
    int64_t hd = c->head_dim, shape[4] = {1, c->kv_heads, c->len[seq], hd};
    int64_t stride[4] = {c->kv_heads * c->capacity * hd, c->capacity * hd, hd, 1};
    dsp_tensor *kt = NULL, *vt = NULL;
    if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, shape, stride, c->kbuf[seq], 0, &kt)) < 0 ||
        (rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, shape, stride, c->vbuf[seq], 0, &vt)) < 0) {
        dsp_tensor_unref(&kt);
        return dspi_op_fail(&oc, rc, "cannot make views of sequence %d", seq);
    }
    *k = kt;
    *v = vt;
    return 0;
}
