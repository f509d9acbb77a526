/* ctcnn.c - the nodule classifier: config.json and weights checked at load, patches cut and normalised, the forward pass through core ops. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/model.h>
#include <dspipe/ops.h>

#include "ctcnn.h"

#define CTCNN_MAX_BLOCKS 16

typedef struct ctcnn_block {
    int64_t channels, kernel, stride, pool;
    dsp_tensor *conv_w;                     /* [channels, in, k, k, k] */
    dsp_tensor *bn_w, *bn_b, *bn_mean, *bn_var;     /* [channels] */
} ctcnn_block;

struct ctcnn {
    ctcnn_config cfg;
    ctcnn_block block[CTCNN_MAX_BLOCKS];
    dsp_tensor *fc_w, *fc_b;                /* [2, channels of the last block], [2] */
};

typedef struct loader {
    const dsp_model *model;
    const char *dir;
    char *why;                  /* the caller's buffer */
    size_t n;
} loader;

/* "dir: what is wrong" into the caller's buffer; returns code. */
static int load_fail(loader *ld, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int load_fail(loader *ld, int code, const char *fmt, ...)
{
    int len = snprintf(ld->why, ld->n, "%s: ", ld->dir);
    va_list ap;
    va_start(ap, fmt);
    if (len >= 0 && (size_t)len < ld->n)
        vsnprintf(ld->why + len, ld->n - (size_t)len, fmt, ap);
    va_end(ap);
    return code;
}

/* config.json number at key within [lo, hi]. */
static int cfg_float(loader *ld, const char *key, double lo, double hi, double *out)
{
    int rc = dsp_model_config_float(ld->model, key, out);
    if (rc < 0)
        return load_fail(ld, rc == DSP_ENOMEM ? rc : DSP_EFORMAT, "config.json: \"%s\" %s", key,
                         rc == DSP_ENOENT ? "is missing" : "is not a number");
    if (!(*out >= lo && *out <= hi))
        return load_fail(ld, DSP_EFORMAT, "config.json: \"%s\" is %g, expected %g to %g", key,
                         *out, lo, hi);
    return 0;
}

static int cfg_int(loader *ld, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    int rc = dsp_model_config_int(ld->model, key, out);
    if (rc < 0)
        return load_fail(ld, rc == DSP_ENOMEM ? rc : DSP_EFORMAT, "config.json: \"%s\" %s", key,
                         rc == DSP_ENOENT ? "is missing" : "is not an integer");
    if (*out < lo || *out > hi)
        return load_fail(ld, DSP_EFORMAT, "config.json: \"%s\" is %lld, expected %lld to %lld",
                         key, (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

/* An f32 tensor called name of exactly the given shape. */
static int get_tensor(loader *ld, const char *name, int ndim, const int64_t *shape, dsp_tensor **out)
{
    int rc = dsp_model_tensor(ld->model, name, out);
    if (rc < 0)
        return load_fail(ld, rc, "tensor '%s' %s", name,
                         rc == DSP_ENOENT ? "is missing: not a ct_nodule_cnn checkpoint, or config.json "
                                            "lists more blocks than the weights hold"
                                          : dsp_strerror(rc));
    const dsp_tensor *t = *out;
    int ok = t->dtype == DSP_DTYPE_F32 && t->ndim == ndim;
    for (int a = 0; ok && a < ndim; a++)
        ok = t->shape[a] == shape[a];
    if (!ok) {
        char desc[64], want[96];
        int len = snprintf(want, sizeof want, "f32[");
        for (int a = 0; a < ndim; a++)
            len += snprintf(want + len, sizeof want - (size_t)len, "%s%lld", a ? "," : "",
                            (long long)shape[a]);
        snprintf(want + len, sizeof want - (size_t)len, "]");
        dsp_tensor_describe(t, desc, sizeof desc);
        dsp_tensor_unref(out);
        return load_fail(ld, DSP_EFORMAT, "tensor '%s' is %s, config.json expects %s", name, desc,
                         want);
    }
    return 0;
}

static int load_config(loader *ld, ctcnn_config *cfg)
{
    const char *type = NULL;
    double dummy_f;
    int rc = dsp_model_config_str(ld->model, "model_type", &type);
    if (rc < 0 || strcmp(type, "ct_nodule_cnn") != 0)
        return load_fail(ld, DSP_EFORMAT, "config.json: model_type is %s%s%s, not \"ct_nodule_cnn\" "
                         "(a model from examples/ct_classifier/train.py)", type ? "\"" : "",
                         type ? type : "missing", type ? "\"" : "");
    if ((rc = cfg_int(ld, "patch_size", 4, 256, &cfg->patch)) < 0 ||
        (rc = cfg_float(ld, "spacing_mm", 0.05, 20, &cfg->spacing_mm)) < 0 ||
        (rc = cfg_float(ld, "hu_min", -4000, 4000, &cfg->hu_min)) < 0 ||
        (rc = cfg_float(ld, "hu_max", -4000, 4000, &cfg->hu_max)) < 0 ||
        (rc = cfg_float(ld, "bn_eps", 0, 1, &cfg->bn_eps)) < 0)
        return rc;
    cfg->screening_min_prob = -1;
    if (dsp_model_config_float(ld->model, "training.screening_min_prob", &dummy_f) == 0 &&
        (rc = cfg_float(ld, "training.screening_min_prob", 0, 1, &cfg->screening_min_prob)) < 0)
        return rc;
    if (cfg->hu_max <= cfg->hu_min)
        return load_fail(ld, DSP_EFORMAT, "config.json: hu_max %g is not above hu_min %g",
                         cfg->hu_max, cfg->hu_min);
    int64_t dummy;
    cfg->n_blocks = 0;
    for (int b = 0; b <= CTCNN_MAX_BLOCKS; b++) {
        char key[48];
        snprintf(key, sizeof key, "blocks.%d.channels", b);
        rc = dsp_model_config_int(ld->model, key, &dummy);
        if (rc == DSP_ENOENT)
            break;
        if (b == CTCNN_MAX_BLOCKS)
            return load_fail(ld, DSP_EFORMAT, "config.json: more than %d blocks",
                             CTCNN_MAX_BLOCKS);
        cfg->n_blocks++;
    }
    if (cfg->n_blocks == 0)
        return load_fail(ld, DSP_EFORMAT, "config.json: \"blocks\" is missing or empty (a list of "
                         "{channels, kernel, stride, pool})");
    return 0;
}

static int load_blocks(loader *ld, ctcnn *m)
{
    int64_t in = 1, side = m->cfg.patch;
    int rc;
    for (int b = 0; b < m->cfg.n_blocks; b++) {
        ctcnn_block *k = &m->block[b];
        char key[64];
#define BLOCK_INT(field, lo, hi) \
        (snprintf(key, sizeof key, "blocks.%d." #field, b), cfg_int(ld, key, lo, hi, &k->field))
        if ((rc = BLOCK_INT(channels, 1, 4096)) < 0 || (rc = BLOCK_INT(kernel, 1, 7)) < 0 ||
            (rc = BLOCK_INT(stride, 1, 4)) < 0 || (rc = BLOCK_INT(pool, 1, 8)) < 0)
            return rc;
#undef BLOCK_INT
        if (k->kernel % 2 == 0)
            return load_fail(ld, DSP_EFORMAT, "config.json: blocks.%d.kernel is %lld: only odd "
                             "kernels keep the patch centred", b, (long long)k->kernel);
        side = (side - 1) / k->stride + 1;
        side /= k->pool;
        if (side < 1)
            return load_fail(ld, DSP_EFORMAT, "config.json: patch_size %lld is too small for the "
                             "blocks' strides and pools (nothing left after block %d)",
                             (long long)m->cfg.patch, b);
        int64_t ws[5] = { k->channels, in, k->kernel, k->kernel, k->kernel }, cs[1] = { k->channels };
        static const char *const bn[4] = { "weight", "bias", "running_mean", "running_var" };
        dsp_tensor **bt[4] = { &k->bn_w, &k->bn_b, &k->bn_mean, &k->bn_var };
        char name[96];
        snprintf(name, sizeof name, "blocks.%d.conv.weight", b);
        if ((rc = get_tensor(ld, name, 5, ws, &k->conv_w)) < 0)
            return rc;
        for (int q = 0; q < 4; q++) {
            snprintf(name, sizeof name, "blocks.%d.bn.%s", b, bn[q]);
            if ((rc = get_tensor(ld, name, 1, cs, bt[q])) < 0)
                return rc;
        }
        in = k->channels;
    }
    int64_t ws[2] = { 2, in }, bs[1] = { 2 };
    if ((rc = get_tensor(ld, "fc.weight", 2, ws, &m->fc_w)) < 0 ||
        (rc = get_tensor(ld, "fc.bias", 1, bs, &m->fc_b)) < 0)
        return rc;
    return 0;
}

int ctcnn_open(const char *dir, ctcnn **out, char *why, size_t n)
{
    *out = NULL;
    why[0] = 0;
    dsp_model *dm = NULL;
    char *msg = NULL;
    int rc = dsp_model_open(dir, &dm, &msg);
    if (rc < 0) {
        snprintf(why, n, "%s", msg ? msg : dsp_strerror(rc));
        free(msg);
        return rc;
    }
    loader ld = { dm, dir, why, n };
    ctcnn *m = calloc(1, sizeof *m);
    if (!m)
        rc = load_fail(&ld, DSP_ENOMEM, "out of memory");
    else if (!dsp_model_config_json(dm))
        rc = load_fail(&ld, DSP_EINVAL, "a bare safetensors file: give the folder with config.json");
    else if ((rc = load_config(&ld, &m->cfg)) == 0)
        rc = load_blocks(&ld, m);
    dsp_model_close(&dm);       /* the tensors keep their mappings */
    if (rc < 0) {
        ctcnn_close(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void ctcnn_close(ctcnn **mp)
{
    if (!mp || !*mp)
        return;
    ctcnn *m = *mp;
    for (int b = 0; b < CTCNN_MAX_BLOCKS; b++) {
        ctcnn_block *k = &m->block[b];
        dsp_tensor_unref(&k->conv_w);
        dsp_tensor_unref(&k->bn_w);
        dsp_tensor_unref(&k->bn_b);
        dsp_tensor_unref(&k->bn_mean);
        dsp_tensor_unref(&k->bn_var);
    }
    dsp_tensor_unref(&m->fc_w);
    dsp_tensor_unref(&m->fc_b);
    free(m);
    *mp = NULL;
}

const ctcnn_config *ctcnn_get_config(const ctcnn *m)
{
    return &m->cfg;
}

void ctcnn_cut_patch(const ctcnn_config *cfg, const float *hu, int64_t d, int64_t h, int64_t w,
                     const double c[3], int64_t patch, float *out)
{
    int64_t s[3];
    for (int a = 0; a < 3; a++)
        s[a] = (int64_t)floor(c[a] + 0.5) - patch / 2;
    double lo = cfg->hu_min, scale = 1.0 / (cfg->hu_max - cfg->hu_min);
    float air = (float)((fmin(fmax(-1000.0, lo), cfg->hu_max) - lo) * scale);
    for (int64_t a = 0; a < patch; a++)
        for (int64_t b = 0; b < patch; b++) {
            float *row = out + (a * patch + b) * patch;
            int64_t k = s[0] + a, j = s[1] + b;
            if (k < 0 || k >= d || j < 0 || j >= h) {
                for (int64_t e = 0; e < patch; e++)
                    row[e] = air;
                continue;
            }
            const float *src = hu + (k * h + j) * w;
            for (int64_t e = 0; e < patch; e++) {
                int64_t i = s[2] + e;
                if (i < 0 || i >= w) {
                    row[e] = air;
                    continue;
                }
                double v = fmin(fmax((double)src[i], lo), cfg->hu_max);
                row[e] = (float)((v - lo) * scale);
            }
        }
}

static void relu_inplace(dsp_tensor *t)
{
    float *p = dsp_tensor_data(t);
    int64_t n = dsp_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = p[i] > 0 ? p[i] : 0;
}

/* One block: conv3d, batch norm, ReLU, max pool; *x replaced by the result. */
static int run_block(const ctcnn *m, const ctcnn_block *k, dsp_tensor **x)
{
    dsp_tensor *conv = NULL, *norm = NULL, *pooled = NULL;
    int p = (int)(k->kernel / 2), s = (int)k->stride;
    dsp_conv_opts o = { .stride = { s, s, s }, .padding = { p, p, p } };
    int rc = dsp_conv3d(*x, k->conv_w, NULL, &o, &conv);
    if (rc == 0)
        rc = dsp_batchnorm(conv, k->bn_mean, k->bn_var, k->bn_w, k->bn_b, (float)m->cfg.bn_eps,
                           &norm);
    dsp_tensor_unref(&conv);
    if (rc < 0)
        return rc;
    relu_inplace(norm);
    if (k->pool > 1) {
        int kern[3] = { (int)k->pool, (int)k->pool, (int)k->pool };
        rc = dsp_pool(norm, DSP_POOL_MAX, kern, NULL, NULL, &pooled);
        dsp_tensor_unref(&norm);
        if (rc < 0)
            return rc;
        norm = pooled;
    }
    dsp_tensor_unref(x);
    *x = norm;
    return 0;
}

int ctcnn_forward(const ctcnn *m, const dsp_tensor *x, dsp_tensor **logits)
{
    dsp_tensor *cur = dsp_tensor_ref((dsp_tensor *)x), *gap = NULL, *flat = NULL;
    int rc = 0;
    for (int b = 0; rc == 0 && b < m->cfg.n_blocks; b++)
        rc = run_block(m, &m->block[b], &cur);
    int one[3] = { 1, 1, 1 };
    if (rc == 0)
        rc = dsp_adaptive_pool(cur, DSP_POOL_AVG, one, &gap);
    dsp_tensor_unref(&cur);
    if (rc == 0) {
        /* [n, c, 1, 1, 1] -> [n, c]: the same contiguous values */
        int64_t shape[2] = { gap->shape[0], gap->shape[1] };
        rc = dsp_tensor_new(DSP_DTYPE_F32, 2, shape, &flat);
        if (rc == 0)
            memcpy(dsp_tensor_data(flat), dsp_tensor_data(gap), dsp_tensor_nbytes(flat));
    }
    dsp_tensor_unref(&gap);
    if (rc == 0)
        rc = dsp_linear(flat, m->fc_w, m->fc_b, logits);
    dsp_tensor_unref(&flat);
    return rc;
}
