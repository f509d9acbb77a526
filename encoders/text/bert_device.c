/* bert_device.c - moving a BERT-family model between the CPU and a CUDA device: weights once, workspace lazily. */
#include <stdlib.h>

#include <dspipe/dspipe.h>

#include "bert_int.h"

enum { EMB_TENSORS = 5, LAYER_TENSORS = 12 };

static int same_device(dsp_device a, dsp_device b)
{
    return a.type == b.type && (a.type == DSP_DEVICE_CPU || a.index == b.index);
}

dsp_device bert_get_device(const bert_model *m)
{
    return m->dev;
}

/* Every weight field, embeddings first, then layer by layer, into f
 * (EMB_TENSORS + LAYER_TENSORS x layers entries). */
static void weight_fields(bert_model *m, dsp_tensor ***f)
{
    size_t k = 0;
    f[k++] = &m->word;
    f[k++] = &m->pos;
    f[k++] = &m->type;
    f[k++] = &m->emb_ln_w;
    f[k++] = &m->emb_ln_b;
    for (int64_t i = 0; i < m->cfg.layers; i++) {
        bert_layer *L = &m->layer[i];
        dsp_tensor **t[LAYER_TENSORS] = { &L->wqkv, &L->bqkv, &L->wo, &L->bo, &L->ln1_w, &L->ln1_b,
                                          &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_w, &L->ln2_b };
        for (int j = 0; j < LAYER_TENSORS; j++)
            f[k++] = t[j];
    }
}

/* Copies of the n tensors *f[k] on dev into moved[0..n), all or none. */
static int copy_all(bert_model *m, struct dsp_context *ctx, dsp_device dev, dsp_tensor ***f, size_t n,
                    dsp_tensor **moved)
{
    char name[32];
    for (size_t k = 0; k < n; k++) {
        int rc = dsp_tensor_to_device(ctx, *f[k], dev, &moved[k]);
        if (rc < 0) {
            for (size_t j = 0; j < k; j++)
                dsp_tensor_unref(&moved[j]);
            return bert_set_err(m, rc, "cannot move the weights to %s: %s",
                                dsp_device_name(dev, name, sizeof name), dsp_context_errmsg(ctx));
        }
    }
    return 0;
}

int bert_to_device(bert_model *m, struct dsp_context *ctx, dsp_device dev)
{
    if (same_device(dev, m->dev))
        return 0;
    /* back to the CPU the copies may use the context the model came with */
    if (!ctx)
        ctx = dev.type == DSP_DEVICE_CPU ? m->ctx : NULL;
    if (!ctx)
        return bert_set_err(m, DSP_EINVAL, "bert_to_device: a context is needed to copy the weights");
    size_t n = EMB_TENSORS + LAYER_TENSORS * (size_t)m->cfg.layers;
    dsp_tensor ***field = malloc(n * sizeof *field);
    dsp_tensor **moved = calloc(n, sizeof *moved);
    dsp_tensor *unit = NULL;
    int rc = !field || !moved ? bert_set_err(m, DSP_ENOMEM, "out of memory") : 0;
    if (rc == 0) {
        weight_fields(m, field);
        rc = copy_all(m, ctx, dev, field, n, moved);
    }
    /* the L2 weights stay on the CPU too: bert_pool runs where its input is */
    if (rc == 0 && dev.type != DSP_DEVICE_CPU) {
        dsp_tensor **unit_field = &m->unit_norm_w;
        if ((rc = copy_all(m, ctx, dev, &unit_field, 1, &unit)) < 0)
            for (size_t k = 0; k < n; k++)
                dsp_tensor_unref(&moved[k]);
    }
    if (rc == 0) {
        for (size_t k = 0; k < n; k++) {
            dsp_tensor_unref(field[k]);
            *field[k] = moved[k];
        }
        dsp_tensor_unref(&m->unit_norm_dev);
        m->unit_norm_dev = unit;
        /* activations are reallocated on the new device by the next bucket */
        bert_workspace_free(&m->ws);
        m->dev = dev;
        m->ctx = dev.type == DSP_DEVICE_CPU ? NULL : ctx;
    }
    free(field);
    free(moved);
    return rc;
}
