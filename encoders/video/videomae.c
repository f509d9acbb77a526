/* videomae.c - VideoMAEForVideoClassification on core/ops: tubelet embedding, pre-norm blocks, mean or first-token pooling, classifier. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "video_model_int.h"

typedef struct vmae_layer {
    dsp_tensor *ln1_w, *ln1_b;          /* layernorm_before */
    dsp_tensor *wqkv, *bqkv;            /* query, key, value fused: [3H, H], [3H] (key bias 0) */
    dsp_tensor *wo, *bo;
    dsp_tensor *ln2_w, *ln2_b;          /* layernorm_after */
    dsp_tensor *w1, *b1, *w2, *b2;
} vmae_layer;

typedef struct videomae {
    int64_t hidden, layers, heads, inter, tubelet, patch, tokens;
    double eps;
    dsp_gelu_kind act;
    int mean_pool;                      /* use_mean_pooling: mean + fc_norm; else layernorm + token 0 */
    dsp_tensor *patch_w, *patch_b, *pos;
    dsp_tensor *norm_w, *norm_b;        /* fc_norm (mean pooling) or videomae.layernorm */
    dsp_tensor *cls_w, *cls_b;
    vmae_layer *layer;
} videomae;

/* transformers' VideoMAEForVideoClassification builds fc_norm as nn.LayerNorm(hidden): its default eps,
 * not layer_norm_eps */
#define FC_NORM_EPS 1e-5f

static int videomae_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits);
static void videomae_free(void *priv);
static const video_model_arch videomae_arch = { .forward = videomae_forward, .free = videomae_free };

static void videomae_free(void *priv)
{
    videomae *v = priv;
    if (!v)
        return;
    dsp_tensor *top[] = { v->patch_w, v->patch_b, v->pos, v->norm_w, v->norm_b, v->cls_w, v->cls_b };
    vm_unref_all(top, sizeof top / sizeof top[0]);
    for (int64_t i = 0; v->layer && i < v->layers; i++)
        vm_unref_all(&v->layer[i].ln1_w, sizeof(vmae_layer) / sizeof(dsp_tensor *));
    free(v->layer);
    free(v);
}

/* The fixed table transformers builds (get_sinusoid_encoding_table):
 * angle(p, j) = p / 10000^(2 floor(j/2) / H); sin on even j, cos on odd;
 * computed in double, stored as f32 as torch.FloatTensor does. */
static int sinusoid_table(int64_t n, int64_t H, dsp_tensor **out)
{
    int64_t shape[2] = { n, H };
    int rc = dsp_tensor_new(DSP_DTYPE_F32, 2, shape, out);
    if (rc < 0)
        return rc;
    float *t = dsp_tensor_data(*out);
    for (int64_t p = 0; p < n; p++)
        for (int64_t j = 0; j < H; j++) {
            double a = (double)p / pow(10000.0, 2.0 * (double)(j / 2) / (double)H);
            t[p * H + j] = (float)(j % 2 == 0 ? sin(a) : cos(a));
        }
    return 0;
}

/* query/value bias as transformers >= 5 names it (query.bias), or as the
 * Hub's checkpoints do (q_bias) */
static int get_qv_bias(vm_loader *ld, const char *base, char which, int64_t H, dsp_tensor **out)
{
    char name[192];
    snprintf(name, sizeof name, "%s.attention.attention.%s.bias", base, which == 'q' ? "query" : "value");
    if (!vm_has_tensor(ld, name)) {
        char legacy[192];
        snprintf(legacy, sizeof legacy, "%s.attention.attention.%c_bias", base, which);
        if (!vm_has_tensor(ld, legacy))
            return vm_load_fail(ld, DSP_EFORMAT, "neither '%s' nor '%s' is present (config.json has qv_bias true)",
                                name, legacy);
        snprintf(name, sizeof name, "%s", legacy);
    }
    return vm_get_tensor(ld, name, 1, &H, out);
}

static int fuse_qkv(vm_loader *ld, int64_t H, const char *base, int qv_bias, vmae_layer *L)
{
    static const char *const part[3] = { "query", "key", "value" };
    int64_t wshape[2] = { 3 * H, H }, bshape[1] = { 3 * H }, hh[2] = { H, H };
    int rc;
    if ((rc = dsp_tensor_new(DSP_DTYPE_F32, 2, wshape, &L->wqkv)) < 0 ||
        (rc = dsp_tensor_new(DSP_DTYPE_F32, 1, bshape, &L->bqkv)) < 0)
        return vm_load_fail(ld, rc, "out of memory");
    float *w = dsp_tensor_data(L->wqkv), *b = dsp_tensor_data(L->bqkv);
    memset(b, 0, (size_t)(3 * H) * sizeof *b);
    for (int k = 0; k < 3; k++) {
        char name[192];
        dsp_tensor *t = NULL;
        snprintf(name, sizeof name, "%s.attention.attention.%s.weight", base, part[k]);
        if ((rc = vm_get_tensor(ld, name, 2, hh, &t)) < 0)
            return rc;
        dsp_tensor *c = NULL;
        if ((rc = dsp_tensor_contiguous(t, &c)) == 0)
            memcpy(w + k * H * H, dsp_tensor_data(c), (size_t)(H * H) * sizeof *w);
        dsp_tensor_unref(&c);
        dsp_tensor_unref(&t);
        if (rc < 0)
            return vm_load_fail(ld, rc, "out of memory");
        if (k == 1 || !qv_bias)
            continue;
        if ((rc = get_qv_bias(ld, base, k == 0 ? 'q' : 'v', H, &t)) < 0)
            return rc;
        if ((rc = dsp_tensor_contiguous(t, &c)) == 0)
            memcpy(b + k * H, dsp_tensor_data(c), (size_t)H * sizeof *b);
        dsp_tensor_unref(&c);
        dsp_tensor_unref(&t);
        if (rc < 0)
            return vm_load_fail(ld, rc, "out of memory");
    }
    return 0;
}

static int load_layer(vm_loader *ld, const videomae *v, int64_t i, int qv_bias, vmae_layer *L)
{
    char base[64], name[192];
    int64_t H = v->hidden, I = v->inter;
    snprintf(base, sizeof base, "videomae.encoder.layer.%lld", (long long)i);
    int rc = fuse_qkv(ld, H, base, qv_bias, L);
    struct { const char *suffix; dsp_tensor **t; int ndim; int64_t shape[2]; } spec[] = {
        { "layernorm_before.weight", &L->ln1_w, 1, { H } },
        { "layernorm_before.bias", &L->ln1_b, 1, { H } },
        { "attention.output.dense.weight", &L->wo, 2, { H, H } },
        { "attention.output.dense.bias", &L->bo, 1, { H } },
        { "layernorm_after.weight", &L->ln2_w, 1, { H } },
        { "layernorm_after.bias", &L->ln2_b, 1, { H } },
        { "intermediate.dense.weight", &L->w1, 2, { I, H } },
        { "intermediate.dense.bias", &L->b1, 1, { I } },
        { "output.dense.weight", &L->w2, 2, { H, I } },
        { "output.dense.bias", &L->b2, 1, { H } },
    };
    for (size_t k = 0; rc == 0 && k < sizeof spec / sizeof spec[0]; k++) {
        snprintf(name, sizeof name, "%s.%s", base, spec[k].suffix);
        rc = vm_get_tensor(ld, name, spec[k].ndim, spec[k].shape, spec[k].t);
    }
    return rc;
}

static int read_config(vm_loader *ld, videomae *v, video_model_info *info)
{
    int64_t image, channels;
    int rc;
    if ((rc = vm_read_int(ld, "hidden_size", -1, &v->hidden)) < 0 ||
        (rc = vm_read_int(ld, "num_hidden_layers", -1, &v->layers)) < 0 ||
        (rc = vm_read_int(ld, "num_attention_heads", -1, &v->heads)) < 0 ||
        (rc = vm_read_int(ld, "intermediate_size", -1, &v->inter)) < 0 ||
        (rc = vm_read_int(ld, "image_size", 224, &image)) < 0 ||
        (rc = vm_read_int(ld, "patch_size", 16, &v->patch)) < 0 ||
        (rc = vm_read_int(ld, "num_frames", 16, &info->frames)) < 0 ||
        (rc = vm_read_int(ld, "tubelet_size", 2, &v->tubelet)) < 0 ||
        (rc = vm_read_int(ld, "num_channels", 3, &channels)) < 0)
        return rc;
    if (v->heads <= 0 || v->hidden % v->heads != 0)
        return vm_load_fail(ld, DSP_EFORMAT, "config.json: hidden_size %lld is not a multiple of "
                            "num_attention_heads %lld", (long long)v->hidden, (long long)v->heads);
    if (v->patch <= 0 || v->tubelet <= 0 || image % v->patch != 0 || info->frames % v->tubelet != 0)
        return vm_load_fail(ld, DSP_EFORMAT, "config.json: image_size %lld / num_frames %lld are not multiples of "
                            "patch_size %lld / tubelet_size %lld", (long long)image, (long long)info->frames,
                            (long long)v->patch, (long long)v->tubelet);
    if (channels != 3)
        return vm_load_fail(ld, DSP_EUNSUPPORTED, "config.json: num_channels %lld (only 3: RGB clips)",
                            (long long)channels);
    info->height = info->width = image;
    info->channels = channels;
    v->tokens = (info->frames / v->tubelet) * (image / v->patch) * (image / v->patch);
    v->eps = 1e-12;
    dsp_model_config_float(ld->model, "layer_norm_eps", &v->eps);
    const char *act = "gelu";
    dsp_model_config_str(ld->model, "hidden_act", &act);
    if (strcmp(act, "gelu") == 0)
        v->act = DSP_GELU_EXACT;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
        v->act = DSP_GELU_TANH;
    else
        return vm_load_fail(ld, DSP_EUNSUPPORTED, "config.json: hidden_act '%s' is not supported (gelu, gelu_new)", act);
    return 0;
}

int videomae_load(vm_loader *ld, video_model *m)
{
    videomae *v = calloc(1, sizeof *v);
    if (!v)
        return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    m->priv = v;
    m->impl = &videomae_arch;
    int rc = read_config(ld, v, &m->info);
    if (rc < 0)
        return rc;
    v->mean_pool = vm_read_bool(ld, "use_mean_pooling", 1);
    int qv_bias = vm_read_bool(ld, "qv_bias", 1);
    int64_t H = v->hidden, ts = v->tubelet, p = v->patch;
    int64_t pshape[5] = { H, 3, ts, p, p }, hshape[1] = { H }, cshape[2] = { -1, H };
    if ((rc = vm_get_tensor(ld, "videomae.embeddings.patch_embeddings.projection.weight", 5, pshape, &v->patch_w)) < 0 ||
        (rc = vm_get_tensor(ld, "videomae.embeddings.patch_embeddings.projection.bias", 1, hshape, &v->patch_b)) < 0)
        return rc;
    const char *norm = v->mean_pool ? "fc_norm" : "videomae.layernorm";
    char name[64];
    snprintf(name, sizeof name, "%s.weight", norm);
    if ((rc = vm_get_tensor(ld, name, 1, hshape, &v->norm_w)) < 0)
        return rc;
    snprintf(name, sizeof name, "%s.bias", norm);
    if ((rc = vm_get_tensor(ld, name, 1, hshape, &v->norm_b)) < 0 ||
        (rc = vm_get_tensor(ld, "classifier.weight", 2, cshape, &v->cls_w)) < 0)
        return rc;
    m->info.num_classes = v->cls_w->shape[0];
    if ((rc = vm_get_tensor(ld, "classifier.bias", 1, &m->info.num_classes, &v->cls_b)) < 0)
        return rc;
    if ((rc = sinusoid_table(v->tokens, H, &v->pos)) < 0)
        return vm_load_fail(ld, rc, "out of memory");
    if (!(v->layer = calloc((size_t)v->layers, sizeof *v->layer)))
        return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    for (int64_t i = 0; i < v->layers; i++)
        if ((rc = load_layer(ld, v, i, qv_bias, &v->layer[i])) < 0)
            return rc;
    snprintf(name, sizeof name, "videomae.encoder.layer.%lld.layernorm_before.weight", (long long)v->layers);
    if (vm_has_tensor(ld, name))
        return vm_load_fail(ld, DSP_EFORMAT, "the weights have more layers than config.json's num_hidden_layers %lld",
                            (long long)v->layers);
    return 0;
}

/* A view of t's storage (elements from elem_offset, f32). */
static int view(const dsp_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t elem_offset,
                dsp_tensor **out)
{
    return dsp_tensor_from_buffer(DSP_DTYPE_F32, ndim, shape, stride, t->buf,
                                  t->offset + (size_t)elem_offset * sizeof(float), out);
}

/* x [B, N, H] += attention(layernorm_before(x)) projected */
static int attention_half(video_model *m, const videomae *v, const vmae_layer *L, dsp_tensor **x)
{
    int64_t B = (*x)->shape[0], N = (*x)->shape[1], H = v->hidden, nh = v->heads, hd = H / nh;
    /* q, k, v are column blocks of qkv [B, N, 3H] viewed [B, heads, N, hd]; the result [B, heads, N, hd]
     * is read back as [B, N, heads, hd] */
    int64_t hshape[4] = { B, nh, N, hd }, hstride[4] = { N * 3 * H, hd, 3 * H, 1 };
    int64_t pshape[4] = { B, N, nh, hd }, pstride[4] = { nh * N * hd, hd, N * hd, 1 }, rows[3] = { B, N, H };
    dsp_tensor *h = NULL, *qkv = NULL, *q = NULL, *k = NULL, *vv = NULL, *att = NULL, *perm = NULL, *ctx = NULL,
               *ctx3 = NULL, *o = NULL;
    dsp_attn_opts ao = { .kind = DSP_ATTN_FULL };
    int rc;
    if ((rc = dsp_layernorm(*x, L->ln1_w, L->ln1_b, (float)v->eps, &h)) < 0 ||
        (rc = dsp_linear(h, L->wqkv, L->bqkv, &qkv)) < 0 ||
        (rc = view(qkv, 4, hshape, hstride, 0, &q)) < 0 || (rc = view(qkv, 4, hshape, hstride, H, &k)) < 0 ||
        (rc = view(qkv, 4, hshape, hstride, 2 * H, &vv)) < 0 || (rc = dsp_attention(q, k, vv, &ao, &att)) < 0 ||
        (rc = view(att, 4, pshape, pstride, 0, &perm)) < 0 || (rc = dsp_tensor_contiguous(perm, &ctx)) < 0 ||
        (rc = view(ctx, 3, rows, NULL, 0, &ctx3)) < 0 || (rc = dsp_linear(ctx3, L->wo, L->bo, &o)) < 0 ||
        (rc = dsp_add(*x, o, x)) < 0)
        rc = vm_ops_err(m, rc, "attention");
    dsp_tensor *all[] = { h, qkv, q, k, vv, att, perm, ctx, ctx3, o };
    vm_unref_all(all, sizeof all / sizeof all[0]);
    return rc;
}

/* x += output(act(intermediate(layernorm_after(x)))) */
static int mlp_half(video_model *m, const videomae *v, const vmae_layer *L, dsp_tensor **x)
{
    dsp_tensor *h = NULL, *i = NULL, *o = NULL;
    int rc;
    if ((rc = dsp_layernorm(*x, L->ln2_w, L->ln2_b, (float)v->eps, &h)) < 0 ||
        (rc = dsp_linear(h, L->w1, L->b1, &i)) < 0 || (rc = dsp_gelu(i, v->act, &i)) < 0 ||
        (rc = dsp_linear(i, L->w2, L->b2, &o)) < 0 || (rc = dsp_add(*x, o, x)) < 0)
        rc = vm_ops_err(m, rc, "feed-forward");
    dsp_tensor_unref(&h);
    dsp_tensor_unref(&i);
    dsp_tensor_unref(&o);
    return rc;
}

/* patch embedding [B, H, t, h, w] -> tokens [B, N, H] + the position table */
static int embed(video_model *m, const videomae *v, const dsp_tensor *x, dsp_tensor **out)
{
    dsp_conv_opts co = { .stride = { (int)v->tubelet, (int)v->patch, (int)v->patch } };
    dsp_tensor *pe = NULL, *tok = NULL;
    int rc = dsp_conv3d(x, v->patch_w, v->patch_b, &co, &pe);
    if (rc == 0) {
        int64_t B = pe->shape[0], H = v->hidden, N = v->tokens;
        int64_t shape[3] = { B, N, H }, stride[3] = { H * N, 1, N };
        if ((rc = view(pe, 3, shape, stride, 0, &tok)) == 0)
            rc = dsp_add(tok, v->pos, out);
    }
    if (rc < 0)
        rc = vm_ops_err(m, rc, "patch embedding");
    dsp_tensor_unref(&pe);
    dsp_tensor_unref(&tok);
    return rc;
}

/* [B, N, H] -> [B, H]: mean over tokens + fc_norm, or the final layernorm of token 0 */
static int pool(video_model *m, const videomae *v, const dsp_tensor *x, dsp_tensor **out)
{
    int64_t B = x->shape[0], N = x->shape[1], H = v->hidden, bh[2] = { B, H };
    dsp_tensor *t = NULL, *p = NULL, *flat = NULL;
    int rc;
    if (v->mean_pool) {
        /* tokens as the spatial dim of a [B, H, N, 1] view: adaptive average to 1 x 1 is their mean */
        int64_t shape[4] = { B, H, N, 1 }, stride[4] = { N * H, 1, H, 1 };
        int one[2] = { 1, 1 };
        if ((rc = view(x, 4, shape, stride, 0, &t)) < 0 || (rc = dsp_adaptive_pool(t, DSP_POOL_AVG, one, &p)) < 0 ||
            (rc = view(p, 2, bh, NULL, 0, &flat)) < 0 ||
            (rc = dsp_layernorm(flat, v->norm_w, v->norm_b, FC_NORM_EPS, out)) < 0)
            rc = vm_ops_err(m, rc, "mean pooling");
    } else {
        int64_t stride[2] = { N * H, 1 };
        if ((rc = view(x, 2, bh, stride, 0, &t)) < 0 ||
            (rc = dsp_layernorm(t, v->norm_w, v->norm_b, (float)v->eps, out)) < 0)
            rc = vm_ops_err(m, rc, "final layernorm");
    }
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&p);
    dsp_tensor_unref(&flat);
    return rc;
}

static int videomae_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits)
{
    const videomae *v = m->priv;
    const video_model_info *in = &m->info;
    if (x->ndim != 5 || x->shape[1] != in->channels || x->shape[2] != in->frames || x->shape[3] != in->height ||
        x->shape[4] != in->width) {
        char desc[96];
        return vm_set_err(m, DSP_EINVAL, "clip %s: the model takes [batch, %lld, %lld, %lld, %lld] (channels, frames, "
                          "height, width)", dsp_tensor_describe(x, desc, sizeof desc), (long long)in->channels,
                          (long long)in->frames, (long long)in->height, (long long)in->width);
    }
    dsp_tensor *h = NULL, *pooled = NULL;
    int rc = embed(m, v, x, &h);
    for (int64_t i = 0; rc == 0 && i < v->layers; i++)
        if ((rc = attention_half(m, v, &v->layer[i], &h)) == 0)
            rc = mlp_half(m, v, &v->layer[i], &h);
    if (rc == 0 && (rc = pool(m, v, h, &pooled)) == 0 && (rc = dsp_linear(pooled, v->cls_w, v->cls_b, logits)) < 0)
        rc = vm_ops_err(m, rc, "classifier");
    dsp_tensor_unref(&h);
    dsp_tensor_unref(&pooled);
    return rc;
}
