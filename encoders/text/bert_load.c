/* bert_load.c - open a BERT-family model folder: config.json checks, tensors by name, fused query/key/value. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/model.h>

#include "bert_int.h"

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct loader {
    const dsp_model *model;
    const char *dir;
    const char *prefix;
    char **errmsg;
} loader;

static int load_fail(loader *ld, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int load_fail(loader *ld, int code, const char *fmt, ...)
{
    if (ld->errmsg) {
        char buf[600];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        size_t n = strlen(ld->dir) + strlen(buf) + 3;
        free(*ld->errmsg);
        *ld->errmsg = malloc(n);
        if (*ld->errmsg)
            snprintf(*ld->errmsg, n, "%s: %s", ld->dir, buf);
    }
    return code;
}

/* Tensor prefix + name with the expected shape (dims < 0 are not checked). */
static int get_tensor(loader *ld, const char *name, int ndim, int64_t d0, int64_t d1, dsp_tensor **out)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", ld->prefix, name);
    int rc = dsp_model_tensor(ld->model, full, out);
    if (rc < 0)
        return load_fail(ld, rc, "tensor '%s' %s", full,
                         rc == DSP_ENOENT ? "is missing: not a BERT-family checkpoint?" : dsp_strerror(rc));
    const dsp_tensor *t = *out;
    if (t->ndim != ndim || (d0 >= 0 && t->shape[0] != d0) || (ndim > 1 && d1 >= 0 && t->shape[1] != d1)) {
        char desc[64];
        dsp_tensor_describe(t, desc, sizeof desc);
        dsp_tensor_unref(out);
        return load_fail(ld, DSP_EFORMAT, "tensor '%s' is %s, config.json expects [%lld%s%lld]", full, desc,
                         (long long)d0, ndim > 1 ? ", " : "", ndim > 1 ? (long long)d1 : 0LL);
    }
    return 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Append the n elements of contiguous t to dst as f32 (f32, f16 or bf16 weights). */
static int append_f32(const dsp_tensor *t, float *dst)
{
    dsp_tensor *c = NULL;
    int rc = dsp_tensor_contiguous((dsp_tensor *)t, &c);
    if (rc < 0)
        return rc;
    int64_t n = dsp_tensor_numel(c);
    const void *src = dsp_tensor_data(c);
    if (c->dtype == DSP_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (c->dtype == DSP_DTYPE_F16 || c->dtype == DSP_DTYPE_BF16) {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) {
            if (c->dtype == DSP_DTYPE_F16) {
                dst[i] = half_to_float(h[i]);
            } else {
                uint32_t bits = (uint32_t)h[i] << 16;
                memcpy(&dst[i], &bits, sizeof(float));
            }
        }
    } else {
        rc = DSP_EUNSUPPORTED;
    }
    dsp_tensor_unref(&c);
    return rc;
}

/* One [3H, H] weight and [3H] bias from query, key and value, so a layer's
 * projections are one GEMM over the bucket instead of three thinner ones. */
static int fuse_qkv(loader *ld, int64_t H, const char *base, dsp_tensor **w, dsp_tensor **b)
{
    static const char *const part[3] = { "query", "key", "value" };
    int64_t wshape[2] = { 3 * H, H }, bshape[1] = { 3 * H };
    int rc;
    if ((rc = dsp_tensor_new(DSP_DTYPE_F32, 2, wshape, w)) < 0 ||
        (rc = dsp_tensor_new(DSP_DTYPE_F32, 1, bshape, b)) < 0)
        return load_fail(ld, rc, "out of memory");
    for (int k = 0; k < 3; k++) {
        char name[160];
        dsp_tensor *t = NULL;
        snprintf(name, sizeof name, "%s.attention.self.%s.weight", base, part[k]);
        if ((rc = get_tensor(ld, name, 2, H, H, &t)) < 0)
            return rc;
        rc = append_f32(t, (float *)dsp_tensor_data(*w) + k * H * H);
        dsp_tensor_unref(&t);
        if (rc < 0)
            return load_fail(ld, rc, "%s: weights must be f32, f16 or bf16", name);
        snprintf(name, sizeof name, "%s.attention.self.%s.bias", base, part[k]);
        if ((rc = get_tensor(ld, name, 1, H, -1, &t)) < 0)
            return rc;
        rc = append_f32(t, (float *)dsp_tensor_data(*b) + k * H);
        dsp_tensor_unref(&t);
        if (rc < 0)
            return load_fail(ld, rc, "%s: weights must be f32, f16 or bf16", name);
    }
    return 0;
}

static int load_layer(loader *ld, const bert_config *c, int i, bert_layer *L)
{
    char base[64], name[192];
    int64_t H = c->hidden, I = c->intermediate;
    snprintf(base, sizeof base, "encoder.layer.%d", i);
    int rc = fuse_qkv(ld, H, base, &L->wqkv, &L->bqkv);
    struct { const char *suffix; dsp_tensor **t; int ndim; int64_t d0, d1; } spec[] = {
        { "attention.output.dense.weight", &L->wo, 2, H, H },
        { "attention.output.dense.bias", &L->bo, 1, H, -1 },
        { "attention.output.LayerNorm.weight", &L->ln1_w, 1, H, -1 },
        { "attention.output.LayerNorm.bias", &L->ln1_b, 1, H, -1 },
        { "intermediate.dense.weight", &L->w1, 2, I, H },
        { "intermediate.dense.bias", &L->b1, 1, I, -1 },
        { "output.dense.weight", &L->w2, 2, H, I },
        { "output.dense.bias", &L->b2, 1, H, -1 },
        { "output.LayerNorm.weight", &L->ln2_w, 1, H, -1 },
        { "output.LayerNorm.bias", &L->ln2_b, 1, H, -1 },
    };
    for (size_t k = 0; rc == 0 && k < sizeof spec / sizeof spec[0]; k++) {
        snprintf(name, sizeof name, "%s.%s", base, spec[k].suffix);
        rc = get_tensor(ld, name, spec[k].ndim, spec[k].d0, spec[k].d1, spec[k].t);
    }
    return rc;
}

static int read_int(loader *ld, const char *key, int64_t def, int64_t *out)
{
    int rc = dsp_model_config_int(ld->model, key, out);
    if (rc == DSP_ENOENT && def >= 0) {
        *out = def;
        return 0;
    }
    if (rc < 0)
        return load_fail(ld, DSP_EFORMAT, "config.json: '%s' %s", key,
                         rc == DSP_ENOENT ? "is missing" : "is not an integer");
    if (*out < 0 || *out > (1 << 24))
        return load_fail(ld, DSP_EFORMAT, "config.json: '%s' = %lld is out of range", key, (long long)*out);
    return 0;
}

static int read_config(loader *ld, bert_config *c)
{
    int rc;
    if ((rc = read_int(ld, "hidden_size", -1, &c->hidden)) < 0 ||
        (rc = read_int(ld, "num_hidden_layers", -1, &c->layers)) < 0 ||
        (rc = read_int(ld, "num_attention_heads", -1, &c->heads)) < 0 ||
        (rc = read_int(ld, "intermediate_size", -1, &c->intermediate)) < 0 ||
        (rc = read_int(ld, "vocab_size", -1, &c->vocab)) < 0 ||
        (rc = read_int(ld, "max_position_embeddings", 512, &c->max_positions)) < 0 ||
        (rc = read_int(ld, "type_vocab_size", 2, &c->type_vocab)) < 0)
        return rc;
    if (c->heads <= 0 || c->hidden % c->heads != 0)
        return load_fail(ld, DSP_EFORMAT, "config.json: hidden_size %lld is not a multiple of num_attention_heads %lld",
                         (long long)c->hidden, (long long)c->heads);
    c->eps = 1e-12;
    dsp_model_config_float(ld->model, "layer_norm_eps", &c->eps);
    const char *act = "gelu", *pos = "absolute", *type = "bert";
    dsp_model_config_str(ld->model, "hidden_act", &act);
    dsp_model_config_str(ld->model, "position_embedding_type", &pos);
    dsp_model_config_str(ld->model, "model_type", &type);
    if (strcmp(act, "gelu") == 0)
        c->act = DSP_GELU_EXACT;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
        c->act = DSP_GELU_TANH;
    else
        return load_fail(ld, DSP_EUNSUPPORTED, "config.json: hidden_act '%s' is not supported (gelu, gelu_new)", act);
    if (strcmp(pos, "absolute") != 0)
        return load_fail(ld, DSP_EUNSUPPORTED,
                         "config.json: position_embedding_type '%s' is not supported (absolute only)", pos);
    /* RoBERTa numbers real tokens from padding_idx + 1 (its create_position_ids_from_input_ids) */
    c->position_offset = 0;
    if (strcmp(type, "roberta") == 0 || strcmp(type, "xlm-roberta") == 0 || strcmp(type, "camembert") == 0) {
        int64_t pad = 1;
        read_int(ld, "pad_token_id", 1, &pad);
        c->position_offset = pad + 1;
    }
    return 0;
}

static const char *find_prefix(const dsp_model *m)
{
    static const char *const prefixes[] = { "", "bert.", "roberta.", "model.", NULL };
    for (int i = 0; prefixes[i]; i++) {
        char name[96];
        dsp_tensor *t = NULL;
        snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", prefixes[i]);
        if (dsp_model_tensor(m, name, &t) == 0) {
            dsp_tensor_unref(&t);
            return prefixes[i];
        }
    }
    return NULL;
}

static int load_weights(loader *ld, bert_model *m)
{
    const bert_config *c = &m->cfg;
    int64_t H = c->hidden;
    int rc;
    if ((rc = get_tensor(ld, "embeddings.word_embeddings.weight", 2, c->vocab, H, &m->word)) < 0 ||
        (rc = get_tensor(ld, "embeddings.position_embeddings.weight", 2, c->max_positions, H, &m->pos)) < 0 ||
        (rc = get_tensor(ld, "embeddings.token_type_embeddings.weight", 2, c->type_vocab, H, &m->type)) < 0 ||
        (rc = get_tensor(ld, "embeddings.LayerNorm.weight", 1, H, -1, &m->emb_ln_w)) < 0 ||
        (rc = get_tensor(ld, "embeddings.LayerNorm.bias", 1, H, -1, &m->emb_ln_b)) < 0)
        return rc;
    if (!(m->layer = calloc((size_t)c->layers, sizeof *m->layer)))
        return load_fail(ld, DSP_ENOMEM, "out of memory");
    for (int i = 0; i < c->layers; i++)
        if ((rc = load_layer(ld, c, i, &m->layer[i])) < 0)
            return rc;
    /* L2 normalisation as an RMS norm: x / sqrt(sum(x²)/H) * (1/sqrt(H)) = x / |x|,
     * one op that every backend has */
    int64_t shape[1] = { H };
    if ((rc = dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &m->unit_norm_w)) < 0)
        return load_fail(ld, rc, "out of memory");
    float *w = dsp_tensor_data(m->unit_norm_w);
    for (int64_t i = 0; i < H; i++)
        w[i] = (float)(1.0 / sqrt((double)H));
    return 0;
}

int bert_open(const char *dir, bert_model **out, char **errmsg)
{
    *out = NULL;
    dsp_model *model = NULL;
    int rc = dsp_model_open(dir, &model, errmsg);
    if (rc < 0)
        return rc;
    bert_model *m = calloc(1, sizeof *m);
    loader ld = { .model = model, .dir = dir, .errmsg = errmsg };
    if (!m) {
        rc = load_fail(&ld, DSP_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = read_config(&ld, &m->cfg)) < 0)
        goto fail;
    if (!(ld.prefix = find_prefix(model))) {
        rc = load_fail(&ld, DSP_EFORMAT, "no tensor embeddings.word_embeddings.weight (nor bert./roberta. prefixed): "
                       "not a BERT-family checkpoint");
        goto fail;
    }
    if ((rc = load_weights(&ld, m)) < 0)
        goto fail;
    dsp_model_close(&model);   /* the tensors keep their mappings */
    *out = m;
    return 0;
fail:
    bert_close(&m);
    dsp_model_close(&model);
    return rc;
}

void bert_workspace_free(bert_workspace *ws)
{
    for (int i = 0; i < BERT_WS_SLOTS; i++) {
        free(ws->host[i]);
        dsp_tensor_unref(&ws->dev[i]);
    }
    free(ws->ids);
    free(ws->types);
    free(ws->mask);
    memset(ws, 0, sizeof *ws);
}

void bert_close(bert_model **mp)
{
    bert_model *m = mp ? *mp : NULL;
    if (!m)
        return;
    dsp_tensor **emb[] = { &m->word, &m->pos, &m->type, &m->emb_ln_w, &m->emb_ln_b, &m->unit_norm_w,
                           &m->unit_norm_dev };
    for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++)
        dsp_tensor_unref(emb[i]);
    for (int64_t i = 0; m->layer && i < m->cfg.layers; i++) {
        bert_layer *L = &m->layer[i];
        dsp_tensor **t[] = { &L->wqkv, &L->bqkv, &L->wo, &L->bo, &L->ln1_w, &L->ln1_b,
                             &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_w, &L->ln2_b };
        for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
            dsp_tensor_unref(t[k]);
    }
    free(m->layer);
    bert_workspace_free(&m->ws);
    for (int i = 0; i < m->nsub; i++)
        bert_workspace_free(&m->sub[i].ws);
    free(m->sub);
    free(m);
    *mp = NULL;
}

