/* bert.c - BERT-family encoder forward pass on core/ops: embeddings, N layers, pooling, length-bucketed batches. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>

#include "bert_int.h"

int bert_set_err(bert_model *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return code;
}

static int ops_err(bert_model *m, int code, const char *what)
{
    char name[32];
    /* no fallback to the CPU: say how to get one */
    if (code == DSP_EUNSUPPORTED && m->dev.type != DSP_DEVICE_CPU)
        return bert_set_err(m, code, "%s: %s; the encoder cannot run this model on %s: use the CPU "
                            "(dspipe --device cpu, or no bert_to_device)", what, dsp_ops_error(),
                            dsp_device_name(m->dev, name, sizeof name));
    return bert_set_err(m, code, "%s: %s", what, dsp_ops_error());
}

const char *bert_errmsg(const bert_model *m)
{
    return m ? m->err : "";
}

const bert_config *bert_get_config(const bert_model *m)
{
    return &m->cfg;
}

bert_encode_opts bert_default_encode_opts(void)
{
    return (bert_encode_opts){ .pooling = BERT_POOL_MEAN, .normalize = 1, .token_budget = 512 };
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                   */
/* ------------------------------------------------------------------------ */

/* 64-byte aligned for the SIMD kernels; contents undefined */
static int grow_buffer(float **b, size_t bytes)
{
    free(*b);
    *b = aligned_alloc(64, (bytes + 63) / 64 * 64);
    return *b ? 0 : DSP_ENOMEM;
}

/* Elements of each slot for `tokens` tokens. */
static size_t slot_elems(const bert_config *c, bert_ws_slot s, int64_t tokens)
{
    size_t T = (size_t)tokens, H = (size_t)c->hidden;
    return s == BERT_WS_QKV ? 3 * T * H : s == BERT_WS_INTER ? T * (size_t)c->intermediate : T * H;
}

static int host_workspace_reserve(bert_model *m, int64_t tokens)
{
    bert_workspace *ws = &m->ws;
    for (int s = 0; s < BERT_WS_SLOTS; s++) {
        int rc = grow_buffer(&ws->host[s], slot_elems(&m->cfg, s, tokens) * sizeof(float));
        if (rc < 0)
            return rc;
    }
    memset(ws->host[BERT_WS_ZEROS], 0, slot_elems(&m->cfg, BERT_WS_ZEROS, tokens) * sizeof(float));
    return 0;
}

/* Each slot becomes a device tensor [elements] uploaded from one host block
 * of zeros (the public API allocates device memory by copying; zeros also
 * keep uninitialised host bytes out of the copy). Views reshape it later. */
static int device_workspace_reserve(bert_model *m, int64_t tokens)
{
    bert_workspace *ws = &m->ws;
    int64_t most = (int64_t)slot_elems(&m->cfg, BERT_WS_QKV, tokens);
    if ((int64_t)slot_elems(&m->cfg, BERT_WS_INTER, tokens) > most)
        most = (int64_t)slot_elems(&m->cfg, BERT_WS_INTER, tokens);
    dsp_tensor *zeros = NULL;
    int rc = dsp_tensor_new(DSP_DTYPE_F32, 1, &most, &zeros);
    if (rc < 0)
        return rc;
    memset(dsp_tensor_data(zeros), 0, dsp_tensor_nbytes(zeros));
    for (int s = 0; rc == 0 && s < BERT_WS_SLOTS; s++) {
        int64_t n = (int64_t)slot_elems(&m->cfg, s, tokens);
        dsp_tensor *part = NULL;
        dsp_tensor_unref(&ws->dev[s]);
        if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 1, &n, NULL, zeros->buf, 0, &part)) == 0 &&
            (rc = dsp_tensor_to_device(m->ctx, part, m->dev, &ws->dev[s])) < 0)
            bert_set_err(m, rc, "%s", dsp_context_errmsg(m->ctx));
        dsp_tensor_unref(&part);
    }
    dsp_tensor_unref(&zeros);
    return rc;
}

static int workspace_reserve(bert_model *m, int64_t tokens)
{
    bert_workspace *ws = &m->ws;
    if (tokens <= ws->cap)
        return 0;
    char name[32];
    int rc = m->dev.type == DSP_DEVICE_CPU ? host_workspace_reserve(m, tokens)
                                           : device_workspace_reserve(m, tokens);
    if (rc < 0) {
        bert_workspace_free(ws);
        if (rc == DSP_EDEVICE)
            return rc;      /* the failed copy's message is set */
        return bert_set_err(m, rc, "cannot allocate activations for %lld tokens on %s", (long long)tokens,
                            dsp_device_name(m->dev, name, sizeof name));
    }
    ws->cap = tokens;
    return 0;
}

/* A writable f32 tensor of the given shape (and strides, NULL: contiguous)
 * over workspace memory from base + elem_offset. Each view wraps the memory
 * in a buffer of its own, holding its only reference: the operators accept
 * it as a preallocated output (they refuse shared buffers), and the layer
 * code, not refcounts, makes sure no call writes what it reads. */
static int view(float *base, int ndim, const int64_t *shape, const int64_t *stride, int64_t elem_offset,
                dsp_tensor **out)
{
    int64_t last = 0, numel = 1;        /* the furthest element and the contiguous count */
    for (int d = 0; d < ndim; d++) {
        last += (shape[d] - 1) * (stride ? stride[d] : 0);
        numel *= shape[d];
    }
    size_t span = (size_t)(stride ? last + 1 : numel) * sizeof(float);
    dsp_buffer *buf = NULL;
    int rc = dsp_buffer_wrap(base + elem_offset, span, 0, NULL, NULL, &buf);
    if (rc == 0)
        rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, ndim, shape, stride, buf, 0, out);
    dsp_buffer_unref(&buf);
    return rc;
}

/* A view of a device slot. Contiguous from the start, it is the slot's own
 * tensor, reshaped in place: the operators write an output only into a
 * buffer with one reference, and the slot tensor holds its buffer's only
 * one (the caller gets a reference to the tensor, not to the buffer). Any
 * other view is a new tensor on the buffer, a second reference that makes
 * the slot read-only while it lives: the layer code takes such views (q, k,
 * v, the heads' permutation) only after the slot has been written. Two
 * contiguous views of one slot must not be alive at once. */
static int device_view(dsp_tensor *slot, int ndim, const int64_t *shape, const int64_t *stride,
                       int64_t elem_offset, dsp_tensor **out)
{
    if (stride || elem_offset)
        return dsp_tensor_from_buffer(DSP_DTYPE_F32, ndim, shape, stride, slot->buf,
                                      (size_t)elem_offset * sizeof(float), out);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= shape[d];
    if ((size_t)numel * sizeof(float) > dsp_buffer_size(slot->buf) || ndim > DSP_MAX_DIMS)
        return DSP_EINVAL;
    slot->ndim = ndim;
    int64_t step = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        slot->shape[d] = shape[d];
        slot->stride[d] = step;
        step *= shape[d];
    }
    *out = dsp_tensor_ref(slot);
    return 0;
}

/* View of workspace slot s where the model lives (see view and device_view). */
static int ws_view(bert_model *m, bert_ws_slot s, int ndim, const int64_t *shape, const int64_t *stride,
                   int64_t elem_offset, dsp_tensor **out)
{
    if (m->dev.type == DSP_DEVICE_CPU)
        return view(m->ws.host[s], ndim, shape, stride, elem_offset, out);
    return device_view(m->ws.dev[s], ndim, shape, stride, elem_offset, out);
}

/* Tensors of one padded batch, wrapping the caller's arrays (read-only). */
typedef struct batch_tensors {
    dsp_tensor *ids, *types, *mask;
} batch_tensors;

static void batch_tensors_free(batch_tensors *bt)
{
    dsp_tensor_unref(&bt->ids);
    dsp_tensor_unref(&bt->types);
    dsp_tensor_unref(&bt->mask);
}

static int wrap(const void *data, dsp_dtype dt, int64_t B, int64_t L, dsp_tensor **out)
{
    dsp_buffer *buf = NULL;
    int64_t shape[2] = { B, L };
    int rc = dsp_buffer_wrap((void *)data, (size_t)(B * L) * dsp_dtype_size(dt), 1, NULL, NULL, &buf);
    if (rc == 0)
        rc = dsp_tensor_from_buffer(dt, 2, shape, NULL, buf, 0, out);
    dsp_buffer_unref(&buf);
    return rc;
}

/* x = LayerNorm(word[ids] + pos[offset + 0..L-1] + type[type_ids]) */
static int embed(bert_model *m, const batch_tensors *bt, int64_t B, int64_t L)
{
    const bert_config *c = &m->cfg;
    int64_t H = c->hidden, shape[3] = { B, L, H }, pshape[2] = { L, H };
    dsp_tensor *x = NULL, *t = NULL, *pos = NULL, *type0 = NULL;
    int rc;
    if ((rc = ws_view(m, BERT_WS_T1, 3, shape, NULL, 0, &t)) < 0 ||
        (rc = ws_view(m, BERT_WS_X, 3, shape, NULL, 0, &x)) < 0 ||
        (rc = dsp_tensor_from_buffer(m->pos->dtype, 2, pshape, m->pos->stride, m->pos->buf,
                                     m->pos->offset + (size_t)(c->position_offset * m->pos->stride[0]) *
                                     dsp_dtype_size(m->pos->dtype), &pos)) < 0)
        goto done;
    if ((rc = dsp_embedding(bt->ids, m->word, &t)) < 0) {
        rc = ops_err(m, rc, "word embeddings");
        goto done;
    }
    if ((rc = dsp_add(t, pos, &t)) < 0) {
        rc = ops_err(m, rc, "position embeddings");
        goto done;
    }
    if (bt->types) {
        /* x is free until the layer norm: use it for the type rows */
        if ((rc = dsp_embedding(bt->types, m->type, &x)) < 0 || (rc = dsp_add(t, x, &t)) < 0) {
            rc = ops_err(m, rc, "token type embeddings");
            goto done;
        }
    } else {
        int64_t tshape[1] = { H };
        if ((rc = dsp_tensor_from_buffer(m->type->dtype, 1, tshape, &m->type->stride[1], m->type->buf,
                                         m->type->offset, &type0)) < 0 ||
            (rc = dsp_add(t, type0, &t)) < 0) {
            rc = ops_err(m, rc, "token type embeddings");
            goto done;
        }
    }
    if ((rc = dsp_layernorm(t, m->emb_ln_w, m->emb_ln_b, (float)c->eps, &x)) < 0)
        rc = ops_err(m, rc, "embedding layer norm");
done:
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&pos);
    dsp_tensor_unref(&type0);
    return rc;
}

/* Self-attention of layer L: x [B*L, H] -> attention output rows in t1
 * [B, L, H] (before the output projection). Views that share a slot's
 * buffer are taken only once the slot is written (see device_view). */
static int self_attention(bert_model *m, const bert_layer *ly, const batch_tensors *bt, int64_t B, int64_t L)
{
    const bert_config *c = &m->cfg;
    int64_t H = c->hidden, nh = c->heads, hd = H / nh, T = B * L;
    int64_t rows[2] = { T, H }, qkv_shape[2] = { T, 3 * H };
    /* q, k, v are column blocks of qkv viewed [B, heads, L, hd]: no copy */
    int64_t hshape[4] = { B, nh, L, hd }, hstride[4] = { L * 3 * H, hd, 3 * H, 1 };
    /* the attention result [B, heads, L, hd] viewed as [B, L, heads, hd] */
    int64_t pshape[4] = { B, L, nh, hd }, pstride[4] = { nh * L * hd, hd, L * hd, 1 };
    dsp_tensor *x = NULL, *qkv = NULL, *q = NULL, *k = NULL, *v = NULL, *att = NULL, *perm = NULL,
               *zeros = NULL, *rowsv = NULL;
    int rc;
    if ((rc = ws_view(m, BERT_WS_X, 2, rows, NULL, 0, &x)) < 0 ||
        (rc = ws_view(m, BERT_WS_QKV, 2, qkv_shape, NULL, 0, &qkv)) < 0)
        goto done;
    if ((rc = dsp_linear(x, ly->wqkv, ly->bqkv, &qkv)) < 0) {
        rc = ops_err(m, rc, "query/key/value");
        goto done;
    }
    if ((rc = ws_view(m, BERT_WS_QKV, 4, hshape, hstride, 0, &q)) < 0 ||
        (rc = ws_view(m, BERT_WS_QKV, 4, hshape, hstride, H, &k)) < 0 ||
        (rc = ws_view(m, BERT_WS_QKV, 4, hshape, hstride, 2 * H, &v)) < 0 ||
        (rc = ws_view(m, BERT_WS_CTX, 4, hshape, NULL, 0, &att)) < 0)
        goto done;
    dsp_attn_opts ao = { .kind = DSP_ATTN_FULL, .key_mask = bt->mask };
    if ((rc = dsp_attention(q, k, v, &ao, &att)) < 0) {
        rc = ops_err(m, rc, "attention");
        goto done;
    }
    /* heads back to token rows in t1: 0 + strided view is a copy every backend
     * runs in place (ops.h has no transpose; add reads its b through strides) */
    if ((rc = ws_view(m, BERT_WS_CTX, 4, pshape, pstride, 0, &perm)) < 0 ||
        (rc = ws_view(m, BERT_WS_ZEROS, 4, pshape, NULL, 0, &zeros)) < 0 ||
        (rc = ws_view(m, BERT_WS_T1, 4, pshape, NULL, 0, &rowsv)) < 0)
        goto done;
    if ((rc = dsp_add(zeros, perm, &rowsv)) < 0)
        rc = ops_err(m, rc, "attention heads to rows");
done:;
    dsp_tensor *all[] = { x, qkv, q, k, v, att, perm, zeros, rowsv };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        dsp_tensor_unref(&all[i]);
    return rc;
}

/* y = LayerNorm(linear(in, w, b) + x) into x: the residual block closing both halves of a layer. */
static int dense_residual_norm(bert_model *m, bert_ws_slot in, int64_t in_dim, const dsp_tensor *w,
                               const dsp_tensor *b, const dsp_tensor *ln_w, const dsp_tensor *ln_b, int64_t T,
                               bert_ws_slot tmp, const char *what)
{
    int64_t H = m->cfg.hidden, ishape[2] = { T, in_dim }, shape[2] = { T, H };
    dsp_tensor *xi = NULL, *y = NULL, *x = NULL;
    int rc;
    if ((rc = ws_view(m, in, 2, ishape, NULL, 0, &xi)) < 0 ||
        (rc = ws_view(m, tmp, 2, shape, NULL, 0, &y)) < 0 ||
        (rc = ws_view(m, BERT_WS_X, 2, shape, NULL, 0, &x)) < 0)
        goto done;
    if ((rc = dsp_linear(xi, w, b, &y)) < 0 || (rc = dsp_add(y, x, &y)) < 0 ||
        (rc = dsp_layernorm(y, ln_w, ln_b, (float)m->cfg.eps, &x)) < 0)
        rc = ops_err(m, rc, what);
done:
    dsp_tensor_unref(&xi);
    dsp_tensor_unref(&y);
    dsp_tensor_unref(&x);
    return rc;
}

static int feed_forward_in(bert_model *m, const bert_layer *ly, int64_t T)
{
    int64_t shape[2] = { T, m->cfg.hidden }, ishape[2] = { T, m->cfg.intermediate };
    dsp_tensor *x = NULL, *h = NULL;
    int rc;
    if ((rc = ws_view(m, BERT_WS_X, 2, shape, NULL, 0, &x)) < 0 ||
        (rc = ws_view(m, BERT_WS_INTER, 2, ishape, NULL, 0, &h)) < 0)
        goto done;
    if ((rc = dsp_linear(x, ly->w1, ly->b1, &h)) < 0 || (rc = dsp_gelu(h, m->cfg.act, &h)) < 0)
        rc = ops_err(m, rc, "intermediate");
done:
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&h);
    return rc;
}

/* The whole encoder on a padded batch; the result is left in slot x [B, L, H]. */
static int forward_ws(bert_model *m, const batch_tensors *bt, int64_t B, int64_t L)
{
    const bert_config *c = &m->cfg;
    int64_t T = B * L;
    if (c->position_offset + L > c->max_positions)
        return bert_set_err(m, DSP_ELIMIT, "a sequence of %lld tokens is longer than the model's %lld positions: "
                            "truncate it (text.tokenize max_length=%lld)", (long long)L,
                            (long long)(c->max_positions - c->position_offset),
                            (long long)(c->max_positions - c->position_offset));
    int rc = workspace_reserve(m, T);
    if (rc < 0)
        return rc;
    if ((rc = embed(m, bt, B, L)) < 0)
        return rc;
    for (int64_t i = 0; i < c->layers; i++) {
        const bert_layer *ly = &m->layer[i];
        if ((rc = self_attention(m, ly, bt, B, L)) < 0 ||
            (rc = dense_residual_norm(m, BERT_WS_T1, c->hidden, ly->wo, ly->bo, ly->ln1_w, ly->ln1_b, T,
                                      BERT_WS_CTX, "attention output")) < 0 ||
            (rc = feed_forward_in(m, ly, T)) < 0 ||
            (rc = dense_residual_norm(m, BERT_WS_INTER, c->intermediate, ly->w2, ly->b2, ly->ln2_w, ly->ln2_b,
                                      T, BERT_WS_T1, "output")) < 0)
            return rc;
    }
    return 0;
}

/* Replace each of the batch's host tensors with a copy on the model's device. */
static int batch_to_device(bert_model *m, batch_tensors *bt)
{
    dsp_tensor **all[] = { &bt->ids, &bt->types, &bt->mask };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        dsp_tensor *d = NULL;
        if (!*all[i])
            continue;
        int rc = dsp_tensor_to_device(m->ctx, *all[i], m->dev, &d);
        if (rc < 0)
            return bert_set_err(m, rc, "cannot copy the batch's ids and mask to the device: %s",
                                dsp_context_errmsg(m->ctx));
        dsp_tensor_unref(all[i]);
        *all[i] = d;
    }
    return 0;
}

static int make_batch_tensors(bert_model *m, const bert_batch *b, uint8_t *ones, batch_tensors *bt)
{
    int rc;
    if ((rc = wrap(b->ids, DSP_DTYPE_I64, b->batch, b->len, &bt->ids)) < 0 ||
        (b->type_ids && (rc = wrap(b->type_ids, DSP_DTYPE_I64, b->batch, b->len, &bt->types)) < 0) ||
        (rc = wrap(b->mask ? b->mask : ones, DSP_DTYPE_U8, b->batch, b->len, &bt->mask)) < 0)
        return bert_set_err(m, rc, "cannot wrap the batch: %s", dsp_strerror(rc));
    return m->dev.type == DSP_DEVICE_CPU ? 0 : batch_to_device(m, bt);
}

/* The last hidden state [B, L, H] from slot x into a new CPU tensor. */
static int hidden_to_host(bert_model *m, int64_t B, int64_t L, dsp_tensor **hidden)
{
    int64_t shape[3] = { B, L, m->cfg.hidden };
    int rc;
    if (m->dev.type == DSP_DEVICE_CPU) {
        if ((rc = dsp_tensor_new(DSP_DTYPE_F32, 3, shape, hidden)) < 0)
            return bert_set_err(m, rc, "out of memory");
        memcpy(dsp_tensor_data(*hidden), m->ws.host[BERT_WS_X], dsp_tensor_nbytes(*hidden));
        return 0;
    }
    dsp_tensor *x = NULL;
    if ((rc = ws_view(m, BERT_WS_X, 3, shape, NULL, 0, &x)) == 0 &&
        (rc = dsp_tensor_to_device(m->ctx, x, (dsp_device){ DSP_DEVICE_CPU, 0 }, hidden)) < 0)
        bert_set_err(m, rc, "cannot copy the hidden state to the CPU: %s", dsp_context_errmsg(m->ctx));
    dsp_tensor_unref(&x);
    return rc;
}

int bert_forward(bert_model *m, const bert_batch *b, dsp_tensor **hidden)
{
    *hidden = NULL;
    if (b->batch <= 0 || b->len <= 0)
        return bert_set_err(m, DSP_EINVAL, "empty batch (%lld x %lld)", (long long)b->batch, (long long)b->len);
    uint8_t *ones = NULL;
    if (!b->mask) {
        if (!(ones = malloc((size_t)(b->batch * b->len))))
            return bert_set_err(m, DSP_ENOMEM, "out of memory");
        memset(ones, 1, (size_t)(b->batch * b->len));
    }
    batch_tensors bt = { 0 };
    int rc = make_batch_tensors(m, b, ones, &bt);
    if (rc == 0)
        rc = forward_ws(m, &bt, b->batch, b->len);
    if (rc == 0)
        rc = hidden_to_host(m, b->batch, b->len, hidden);
    batch_tensors_free(&bt);
    free(ones);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Pooling                                                                   */
/* ------------------------------------------------------------------------ */

/* Pooling as a product: weights [B, 1, L] · hidden [B, L, H] -> [B, 1, H],
 * with 1/count on the real tokens (mean) or a one-hot first token (CLS), so
 * it runs wherever the hidden state lives. Then the optional L2 norm.
 * This builds the weights, on the CPU. */
static int pool_weights(bert_model *m, int64_t B, int64_t L, const uint8_t *mask, const bert_encode_opts *o,
                        dsp_tensor **w)
{
    int64_t wshape[3] = { B, 1, L };
    int rc = dsp_tensor_new(DSP_DTYPE_F32, 3, wshape, w);
    if (rc < 0)
        return bert_set_err(m, rc, "out of memory");
    float *wd = dsp_tensor_data(*w);
    for (int64_t b = 0; b < B; b++) {
        int64_t count = 0;
        for (int64_t j = 0; j < L; j++)
            count += !mask || mask[b * L + j];
        for (int64_t j = 0; j < L; j++) {
            int on = !mask || mask[b * L + j];
            wd[b * L + j] = o->pooling == BERT_POOL_CLS ? (j == 0) : on ? 1.0f / (float)(count ? count : 1) : 0.0f;
        }
    }
    return 0;
}

/* eps keeps an all-zero vector finite: |x| = sqrt(sum + H*eps), as F.normalize's 1e-12 floor */
#define L2_EPS(H) (1e-24f / (float)(H))

static int pool_on_host(bert_model *m, const dsp_tensor *w, const dsp_tensor *hidden, const bert_encode_opts *o,
                        float *out)
{
    int64_t B = hidden->shape[0], H = hidden->shape[2];
    int64_t pshape[3] = { B, 1, H }, oshape[2] = { B, H };
    dsp_tensor *pooled = NULL, *flat = NULL, *dst = NULL;
    dsp_buffer *obuf = NULL;
    int rc;
    /* the result goes straight into out: wrapped as the only reference, so writable */
    if ((rc = dsp_buffer_wrap(out, (size_t)(B * H) * sizeof(float), 0, NULL, NULL, &obuf)) < 0)
        goto done;
    if (!o->normalize) {
        if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 3, pshape, NULL, obuf, 0, &pooled)) < 0)
            goto done;
        dsp_buffer_unref(&obuf);
        if ((rc = dsp_matmul(w, hidden, 0, &pooled)) < 0)
            rc = ops_err(m, rc, "pooling");
        goto done;
    }
    if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, oshape, NULL, obuf, 0, &dst)) < 0)
        goto done;
    dsp_buffer_unref(&obuf);
    if ((rc = dsp_matmul(w, hidden, 0, &pooled)) < 0) {
        rc = ops_err(m, rc, "pooling");
        goto done;
    }
    if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, oshape, NULL, pooled->buf, pooled->offset, &flat)) < 0)
        goto done;
    if ((rc = dsp_rmsnorm(flat, m->unit_norm_w, L2_EPS(H), &dst)) < 0)
        rc = ops_err(m, rc, "L2 normalisation");
done:
    dsp_tensor_unref(&pooled);
    dsp_tensor_unref(&flat);
    dsp_tensor_unref(&dst);
    dsp_buffer_unref(&obuf);
    return rc;
}

/* The same on the device: the weights go up, only [B, H] comes back. */
static int pool_on_device(bert_model *m, const dsp_tensor *w, const dsp_tensor *hidden,
                          const bert_encode_opts *o, float *out)
{
    int64_t B = hidden->shape[0], H = hidden->shape[2], oshape[2] = { B, H };
    dsp_tensor *dw = NULL, *pooled = NULL, *flat = NULL, *res = NULL, *host = NULL;
    int rc;
    if ((rc = dsp_tensor_to_device(m->ctx, w, m->dev, &dw)) < 0) {
        rc = bert_set_err(m, rc, "pooling: %s", dsp_context_errmsg(m->ctx));
        goto done;
    }
    if ((rc = dsp_matmul(dw, hidden, 0, &pooled)) < 0) {
        rc = ops_err(m, rc, "pooling");
        goto done;
    }
    if ((rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, oshape, NULL, pooled->buf, pooled->offset, &flat)) < 0)
        goto done;
    if (!o->normalize)
        res = dsp_tensor_ref(flat);
    else if ((rc = dsp_rmsnorm(flat, m->unit_norm_dev, L2_EPS(H), &res)) < 0) {
        rc = ops_err(m, rc, "L2 normalisation");
        goto done;
    }
    if ((rc = dsp_tensor_to_device(m->ctx, res, (dsp_device){ DSP_DEVICE_CPU, 0 }, &host)) < 0) {
        rc = bert_set_err(m, rc, "cannot copy the embeddings to the CPU: %s", dsp_context_errmsg(m->ctx));
        goto done;
    }
    memcpy(out, dsp_tensor_data(host), (size_t)(B * H) * sizeof(float));
done:
    dsp_tensor_unref(&dw);
    dsp_tensor_unref(&pooled);
    dsp_tensor_unref(&flat);
    dsp_tensor_unref(&res);
    dsp_tensor_unref(&host);
    return rc;
}

static int pool_rows(bert_model *m, const dsp_tensor *hidden, const uint8_t *mask, const bert_encode_opts *o,
                     float *out)
{
    dsp_tensor *w = NULL;
    int rc = pool_weights(m, hidden->shape[0], hidden->shape[1], mask, o, &w);
    if (rc == 0)
        rc = hidden->device.type == DSP_DEVICE_CPU ? pool_on_host(m, w, hidden, o, out)
                                                   : pool_on_device(m, w, hidden, o, out);
    dsp_tensor_unref(&w);
    return rc;
}

int bert_pool(bert_model *m, const dsp_tensor *hidden, const uint8_t *mask, const bert_encode_opts *o,
              float *out)
{
    if (hidden->ndim != 3 || hidden->shape[2] != m->cfg.hidden)
        return bert_set_err(m, DSP_EINVAL, "pool: hidden must be [batch, len, %lld]", (long long)m->cfg.hidden);
    dsp_device d = hidden->device;
    char name[2][32];
    if (d.type != DSP_DEVICE_CPU && (d.type != m->dev.type || d.index != m->dev.index))
        return bert_set_err(m, DSP_EDEVICE, "pool: hidden is on %s, the model on %s: pool on the CPU or the "
                            "model's device", dsp_device_name(d, name[0], sizeof name[0]),
                            dsp_device_name(m->dev, name[1], sizeof name[1]));
    return pool_rows(m, hidden, mask, o, out);
}

/* ------------------------------------------------------------------------ */
/* Bucketed encoding                                                         */
/* ------------------------------------------------------------------------ */

/* Keys (len << 32 | index) are distinct, so sorting them is a stable sort by length
 * that needs no state outside the array (qsort has no context argument). */
static int key_cmp(const void *a, const void *b)
{
    uint64_t ka = *(const uint64_t *)a, kb = *(const uint64_t *)b;
    return (ka > kb) - (ka < kb);
}

static int sort_by_length(const bert_seq *seqs, int n, int *order)
{
    uint64_t *key = malloc((size_t)n * sizeof *key);
    if (!key)
        return DSP_ENOMEM;
    for (int i = 0; i < n; i++)
        key[i] = ((uint64_t)seqs[i].len << 32) | (uint32_t)i;
    qsort(key, (size_t)n, sizeof *key, key_cmp);
    for (int i = 0; i < n; i++)
        order[i] = (int)(key[i] & 0xffffffffu);
    free(key);
    return 0;
}

static int reserve_ids(bert_model *m, int64_t tokens)
{
    bert_workspace *ws = &m->ws;
    if (tokens <= ws->ids_cap)
        return 0;
    free(ws->ids);
    free(ws->types);
    free(ws->mask);
    ws->ids = malloc((size_t)tokens * sizeof *ws->ids);
    ws->types = malloc((size_t)tokens * sizeof *ws->types);
    ws->mask = malloc((size_t)tokens);
    if (!ws->ids || !ws->types || !ws->mask) {
        ws->ids_cap = 0;
        return bert_set_err(m, DSP_ENOMEM, "out of memory");
    }
    ws->ids_cap = tokens;
    return 0;
}

/* Run the bucket order[0..B) (lengths ascending, so the last is the longest):
 * pad to L, forward, pool, and scatter the rows to their places in out. */
static int run_bucket(bert_model *m, const bert_seq *seqs, const int *order, int B, const bert_encode_opts *o,
                      float *out, float *rows)
{
    int64_t L = seqs[order[B - 1]].len, H = m->cfg.hidden;
    int rc = reserve_ids(m, (int64_t)B * L);
    if (rc < 0)
        return rc;
    bert_workspace *ws = &m->ws;
    int any_types = 0;
    for (int b = 0; b < B; b++) {
        const bert_seq *s = &seqs[order[b]];
        int64_t *ids = ws->ids + b * L, *types = ws->types + b * L;
        uint8_t *mask = ws->mask + b * L;
        memcpy(ids, s->ids, (size_t)s->len * sizeof *ids);
        memset(ids + s->len, 0, (size_t)(L - s->len) * sizeof *ids);
        memset(mask, 1, (size_t)s->len);
        memset(mask + s->len, 0, (size_t)(L - s->len));
        memset(types, 0, (size_t)L * sizeof *types);
        if (s->type_ids) {
            memcpy(types, s->type_ids, (size_t)s->len * sizeof *types);
            for (int64_t j = 0; j < s->len && !any_types; j++)
                any_types = s->type_ids[j] != 0;
        }
    }
    bert_batch bb = { .ids = ws->ids, .type_ids = any_types ? ws->types : NULL, .mask = ws->mask,
                      .batch = B, .len = L };
    batch_tensors bt = { 0 };
    dsp_tensor *hidden = NULL;
    int64_t shape[3] = { B, L, H };
    if ((rc = make_batch_tensors(m, &bb, NULL, &bt)) == 0 && (rc = forward_ws(m, &bt, B, L)) == 0 &&
        (rc = ws_view(m, BERT_WS_X, 3, shape, NULL, 0, &hidden)) == 0 &&
        (rc = pool_rows(m, hidden, ws->mask, o, rows)) == 0)
        for (int b = 0; b < B; b++)
            memcpy(out + (int64_t)order[b] * H, rows + (int64_t)b * H, (size_t)H * sizeof(float));
    dsp_tensor_unref(&hidden);
    batch_tensors_free(&bt);
    return rc;
}

/* A bucket: order[start .. start + count) */
typedef struct bucket {
    int start, count;
    int64_t cost;
} bucket;

static int bucket_cmp(const void *a, const void *b)
{
    const bucket *x = a, *y = b;
    return (x->cost < y->cost) - (x->cost > y->cost);   /* largest first */
}

/* The models for threads 1..n-1 of a parallel bert_encode: copies of m
 * (weights shared, read-only) that keep their own workspace across calls. */
static int prepare_subs(bert_model *m, int n)
{
    if (n > m->nsub) {
        bert_model *s = realloc(m->sub, (size_t)n * sizeof *s);
        if (!s)
            return bert_set_err(m, DSP_ENOMEM, "out of memory");
        memset(s + m->nsub, 0, (size_t)(n - m->nsub) * sizeof *s);
        m->sub = s;
        m->nsub = n;
    }
    for (int i = 0; i < m->nsub; i++) {
        bert_workspace keep = m->sub[i].ws;
        m->sub[i] = *m;
        m->sub[i].ws = keep;
        m->sub[i].sub = NULL;
        m->sub[i].nsub = 0;
    }
    return 0;
}

typedef struct bucket_job {
    bert_model *m;
    const bert_seq *seqs;
    const int *order;
    const bucket *bk;
    const bert_encode_opts *o;
    float *out, *rows;
    int *rc, *thread;           /* per bucket */
} bucket_job;

static void bucket_task(void *ctx, int task, int thread)
{
    bucket_job *j = ctx;
    const bucket *b = &j->bk[task];
    bert_model *m = thread == 0 ? j->m : &j->m->sub[thread - 1];
    j->thread[task] = thread;
    j->rc[task] = run_bucket(m, j->seqs, j->order + b->start, b->count, j->o, j->out,
                             j->rows + (int64_t)b->start * j->m->cfg.hidden);
}

/* Run the buckets, on the CPU in parallel (one bucket per thread, each with
 * single-threaded operators: its GEMMs are too small, [<= budget, H] x
 * [H, 4H], for a fork and join inside each to pay), else one by one. */
static int run_buckets(bert_model *m, const bert_seq *seqs, const int *order, bucket *bk, int nb,
                       const bert_encode_opts *o, float *out, float *rows)
{
    int threads = dsp_ops_threads();
    if (nb < 2 || threads < 2 || m->dev.type != DSP_DEVICE_CPU) {
        for (int i = 0; i < nb; i++) {
            int rc = run_bucket(m, seqs, order + bk[i].start, bk[i].count, o, out,
                                rows + (int64_t)bk[i].start * m->cfg.hidden);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    int *rc = calloc((size_t)nb * 2, sizeof *rc);
    if (!rc || prepare_subs(m, threads - 1) < 0) {
        free(rc);
        return bert_set_err(m, DSP_ENOMEM, "out of memory");
    }
    qsort(bk, (size_t)nb, sizeof *bk, bucket_cmp);
    bucket_job j = { .m = m, .seqs = seqs, .order = order, .bk = bk, .o = o, .out = out, .rows = rows,
                     .rc = rc, .thread = rc + nb };
    dsp_parallel_tasks(nb, bucket_task, &j);
    int first = 0;
    for (int i = 0; i < nb && !first; i++)
        if (rc[i] < 0) {
            first = rc[i];
            if (j.thread[i] > 0)
                memcpy(m->err, m->sub[j.thread[i] - 1].err, sizeof m->err);
        }
    free(rc);
    return first;
}

int bert_encode(bert_model *m, const bert_seq *seqs, int n, const bert_encode_opts *o, float *out)
{
    if (n <= 0)
        return 0;
    int64_t budget = o->token_budget > 0 ? o->token_budget : 512, H = m->cfg.hidden;
    for (int i = 0; i < n; i++)
        if (seqs[i].len <= 0)
            return bert_set_err(m, DSP_EINVAL, "sequence %d is empty (no tokens)", i);
    int *order = malloc((size_t)n * sizeof *order);
    bucket *bk = malloc((size_t)n * sizeof *bk);
    float *rows = malloc((size_t)n * (size_t)H * sizeof *rows);
    int rc = !order || !bk || !rows ? DSP_ENOMEM : sort_by_length(seqs, n, order), nb = 0;
    if (rc < 0)
        bert_set_err(m, rc, "out of memory");
    /* grow a bucket while its padded size (count x longest) stays within the
     * budget; its cost is about its GEMMs' and attention's multiply-adds */
    for (int start = 0; rc == 0 && start < n; nb++) {
        int end = start + 1;
        while (end < n && (int64_t)(end - start + 1) * seqs[order[end]].len <= budget)
            end++;
        int64_t L = seqs[order[end - 1]].len;
        bk[nb] = (bucket){ .start = start, .count = end - start, .cost = (end - start) * L * (6 * H + L) };
        start = end;
    }
    if (rc == 0)
        rc = run_buckets(m, seqs, order, bk, nb, o, out, rows);
    free(order);
    free(bk);
    free(rows);
    return rc;
}
