/* video_resnet.c - torchvision's VideoResNet (r3d_18, mc3_18, r2plus1d_18) on core/ops: stem, BasicBlocks, average pool, fc. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "video_model_int.h"

/* torchvision's nn.BatchNorm3d default */
#define BN_EPS 1e-5f

/* One Conv3d (no bias) + BatchNorm3d in inference form, optionally + ReLU.
 * With f32 weights the batch norm is folded into the convolution at load:
 * w and b then hold the folded weight and bias, and the batch norm's
 * tensors are NULL (one pass over the activations and one tensor less per
 * conv). */
typedef struct conv_bn {
    dsp_tensor *w, *b;                  /* b: NULL unless folded */
    dsp_tensor *mean, *var, *gamma, *beta;
    dsp_conv_opts opts;
    int relu;
} conv_bn;

/* A BasicBlock: conv1 (+ BN + ReLU), conv2 (+ BN), the shortcut, ReLU.
 * Each conv is one conv_bn, or two for Conv2Plus1D (spatial 1x3x3 + its
 * BN + ReLU, then temporal 3x1x1 + the block's BN). */
typedef struct res_block {
    conv_bn c1[2], c2[2];
    int nconv;                          /* conv_bn per conv: 1 or 2 */
    conv_bn down;
    int has_down;
} res_block;

typedef struct video_resnet {
    conv_bn stem[2];
    int nstem;
    res_block *block;
    int nblocks;
    dsp_tensor *fc_w, *fc_b;
} video_resnet;

typedef enum conv_kind { CONV_SIMPLE, CONV_NO_TEMPORAL, CONV_2PLUS1D } conv_kind;

static const struct {
    const char *name;
    video_arch arch;
    conv_kind layer_conv[4];
} archs[] = {
    { "r3d_18", VIDEO_ARCH_R3D_18, { CONV_SIMPLE, CONV_SIMPLE, CONV_SIMPLE, CONV_SIMPLE } },
    { "mc3_18", VIDEO_ARCH_MC3_18, { CONV_SIMPLE, CONV_NO_TEMPORAL, CONV_NO_TEMPORAL, CONV_NO_TEMPORAL } },
    { "r2plus1d_18", VIDEO_ARCH_R2PLUS1D_18, { CONV_2PLUS1D, CONV_2PLUS1D, CONV_2PLUS1D, CONV_2PLUS1D } },
};

static void conv_bn_free(conv_bn *c)
{
    dsp_tensor *t[] = { c->w, c->b, c->mean, c->var, c->gamma, c->beta };
    vm_unref_all(t, sizeof t / sizeof t[0]);
    memset(c, 0, sizeof *c);
}

static void resnet_free(void *priv)
{
    video_resnet *r = priv;
    if (!r)
        return;
    for (int i = 0; i < 2; i++)
        conv_bn_free(&r->stem[i]);
    for (int b = 0; r->block && b < r->nblocks; b++) {
        for (int i = 0; i < 2; i++) {
            conv_bn_free(&r->block[b].c1[i]);
            conv_bn_free(&r->block[b].c2[i]);
        }
        conv_bn_free(&r->block[b].down);
    }
    free(r->block);
    dsp_tensor_unref(&r->fc_w);
    dsp_tensor_unref(&r->fc_b);
    free(r);
}

static void release_weights(void *opaque, void *data)
{
    (void)opaque;
    dsp_free(data);
}

/* The batch norm folded into the convolution, as inference engines do
 * (oneDNN, TensorRT, torch.fx's fuse): with s = gamma / sqrt(var + eps) per
 * output channel, w' = w * s and b' = beta - mean * s, so that
 * conv(x, w') + b' = bn(conv(x, w)). Computed in double, rounded once. The
 * folded weights replace w, wrapped read-only: they never change, and the
 * convolution keeps its Winograd transform with a read-only buffer. Only
 * for f32 tensors on the CPU; others keep the two steps (returns 0). */
static int fold_bn(conv_bn *c)
{
    dsp_tensor *bn[] = { c->mean, c->var, c->gamma, c->beta };
    const dsp_tensor *t[] = { c->w, c->mean, c->var, c->gamma, c->beta };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i]->dtype != DSP_DTYPE_F32 || t[i]->device.type != DSP_DEVICE_CPU || !dsp_tensor_is_contiguous(t[i]))
            return 0;
    int64_t oc = c->w->shape[0], per = dsp_tensor_numel(c->w) / oc;
    size_t bytes = (size_t)(oc * per) * sizeof(float);
    float *w = dsp_malloc(bytes);
    dsp_buffer *buf = NULL;
    dsp_tensor *fw = NULL, *fb = NULL;
    int rc = w ? dsp_tensor_new(DSP_DTYPE_F32, 1, &oc, &fb) : DSP_ENOMEM;
    if (rc < 0) {
        dsp_free(w);
        return rc;
    }
    const float *w0 = dsp_tensor_data(c->w), *mean = dsp_tensor_data(c->mean), *var = dsp_tensor_data(c->var),
                *gamma = dsp_tensor_data(c->gamma), *beta = dsp_tensor_data(c->beta);
    float *b = dsp_tensor_data(fb);
    for (int64_t o = 0; o < oc; o++) {
        double sc = (double)gamma[o] / sqrt((double)var[o] + (double)BN_EPS);
        for (int64_t i = 0; i < per; i++)
            w[o * per + i] = (float)((double)w0[o * per + i] * sc);
        b[o] = (float)((double)beta[o] - (double)mean[o] * sc);
    }
    if ((rc = dsp_buffer_wrap(w, bytes, 1, release_weights, NULL, &buf)) < 0)
        dsp_free(w);
    else
        rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, c->w->ndim, c->w->shape, NULL, buf, 0, &fw);
    dsp_buffer_unref(&buf);
    if (rc < 0) {
        dsp_tensor_unref(&fb);
        return rc;
    }
    dsp_tensor_unref(&c->w);
    vm_unref_all(bn, sizeof bn / sizeof bn[0]);
    c->mean = c->var = c->gamma = c->beta = NULL;
    c->w = fw;
    c->b = fb;
    return 0;
}

/* Conv weight wname [out, *in_c, k...] and the BatchNorm3d bn.{weight, bias,
 * running_mean, running_var} [out]; *in_c becomes out. */
static int load_conv_bn(vm_loader *ld, const char *wname, const char *bn, int64_t *in_c, const int kernel[3],
                        const int stride[3], const int pad[3], int relu, conv_bn *c)
{
    int64_t wshape[5] = { -1, *in_c, kernel[0], kernel[1], kernel[2] };
    int rc = vm_get_tensor(ld, wname, 5, wshape, &c->w);
    if (rc < 0)
        return rc;
    int64_t oc = c->w->shape[0];
    static const char *const part[4] = { "weight", "bias", "running_mean", "running_var" };
    dsp_tensor **dst[4] = { &c->gamma, &c->beta, &c->mean, &c->var };
    for (int k = 0; k < 4; k++) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", bn, part[k]);
        if ((rc = vm_get_tensor(ld, name, 1, &oc, dst[k])) < 0)
            return rc;
    }
    for (int d = 0; d < 3; d++) {
        c->opts.stride[d] = stride[d];
        c->opts.padding[d] = pad[d];
    }
    c->relu = relu;
    *in_c = oc;
    if (getenv("DSPIPE_VIDEO_NO_FOLD") == NULL && (rc = fold_bn(c)) < 0)
        return vm_load_fail(ld, rc, "%s: cannot fold %s into it: %s", wname, bn, dsp_strerror(rc));
    return 0;
}

/* The conv_bn steps of one of a block's convs (torchvision's conv builders). */
static int load_block_conv(vm_loader *ld, const char *base, conv_kind kind, int s, int64_t *in_c, int relu,
                           conv_bn c[2])
{
    char w[160], bn[160];
    snprintf(bn, sizeof bn, "%s.1", base);
    if (kind == CONV_SIMPLE || kind == CONV_NO_TEMPORAL) {
        int t = kind == CONV_SIMPLE;
        const int k[3] = { t ? 3 : 1, 3, 3 }, st[3] = { t ? s : 1, s, s }, p[3] = { t, 1, 1 };
        snprintf(w, sizeof w, "%s.0.weight", base);
        return load_conv_bn(ld, w, bn, in_c, k, st, p, relu, &c[0]);
    }
    static const int ks[3] = { 1, 3, 3 }, ps[3] = { 0, 1, 1 }, kt[3] = { 3, 1, 1 }, pt[3] = { 1, 0, 0 };
    const int ss[3] = { 1, s, s }, stt[3] = { s, 1, 1 };
    char mid_bn[160];
    snprintf(w, sizeof w, "%s.0.0.weight", base);
    snprintf(mid_bn, sizeof mid_bn, "%s.0.1", base);
    int rc = load_conv_bn(ld, w, mid_bn, in_c, ks, ss, ps, 1, &c[0]);
    if (rc < 0)
        return rc;
    snprintf(w, sizeof w, "%s.0.3.weight", base);
    return load_conv_bn(ld, w, bn, in_c, kt, stt, pt, relu, &c[1]);
}

static int load_block(vm_loader *ld, const char *base, conv_kind kind, int s, int64_t *in_c, res_block *b)
{
    char name[160];
    int64_t block_in = *in_c;
    b->nconv = kind == CONV_2PLUS1D ? 2 : 1;
    snprintf(name, sizeof name, "%s.conv1", base);
    int rc = load_block_conv(ld, name, kind, s, in_c, 1, b->c1);
    if (rc < 0)
        return rc;
    int64_t planes = *in_c;
    snprintf(name, sizeof name, "%s.conv2", base);
    if ((rc = load_block_conv(ld, name, kind, 1, in_c, 0, b->c2)) < 0)
        return rc;
    if (*in_c != planes)
        return vm_load_fail(ld, DSP_EFORMAT, "%s: conv2 gives %lld channels, conv1 %lld: not a BasicBlock", base,
                            (long long)*in_c, (long long)planes);
    snprintf(name, sizeof name, "%s.downsample.0.weight", base);
    b->has_down = vm_has_tensor(ld, name);
    if (b->has_down) {
        /* get_downsample_stride: Conv3DNoTemporal keeps time, the others stride it too */
        const int k[3] = { 1, 1, 1 }, st[3] = { kind == CONV_NO_TEMPORAL ? 1 : s, s, s }, p[3] = { 0, 0, 0 };
        char bn[160];
        snprintf(bn, sizeof bn, "%s.downsample.1", base);
        if ((rc = load_conv_bn(ld, name, bn, &block_in, k, st, p, 0, &b->down)) < 0)
            return rc;
        if (block_in != planes)
            return vm_load_fail(ld, DSP_EFORMAT, "%s: downsample gives %lld channels, the block %lld", base,
                                (long long)block_in, (long long)planes);
    } else if (s != 1 || block_in != planes) {
        return vm_load_fail(ld, DSP_EFORMAT, "%s: no downsample.0.weight although the block changes the shape "
                            "(stride %d, %lld -> %lld channels)", base, s, (long long)block_in, (long long)planes);
    }
    return 0;
}

static int load_stem(vm_loader *ld, video_resnet *r, int r2plus1d, int64_t *c)
{
    static const int s122[3] = { 1, 2, 2 }, one[3] = { 1, 1, 1 };
    if (!r2plus1d) {
        static const int k[3] = { 3, 7, 7 }, p[3] = { 1, 3, 3 };
        r->nstem = 1;
        return load_conv_bn(ld, "stem.0.weight", "stem.1", c, k, s122, p, 1, &r->stem[0]);
    }
    /* R2Plus1dStem: 1x7x7 to 45 channels (in torchvision's r2plus1d_18), 3x1x1 to 64 */
    static const int k1[3] = { 1, 7, 7 }, p1[3] = { 0, 3, 3 }, k2[3] = { 3, 1, 1 }, p2[3] = { 1, 0, 0 };
    r->nstem = 2;
    int rc = load_conv_bn(ld, "stem.0.weight", "stem.1", c, k1, s122, p1, 1, &r->stem[0]);
    return rc < 0 ? rc : load_conv_bn(ld, "stem.3.weight", "stem.4", c, k2, one, p2, 1, &r->stem[1]);
}

/* blocks of layer L (1-based) present in the weights */
static int count_blocks(const vm_loader *ld, int L)
{
    int n = 0;
    for (;; n++) {
        char a[96], b[96];
        snprintf(a, sizeof a, "layer%d.%d.conv1.0.weight", L, n);
        snprintf(b, sizeof b, "layer%d.%d.conv1.0.0.weight", L, n);
        if (!vm_has_tensor(ld, a) && !vm_has_tensor(ld, b))
            return n;
    }
}

static int resnet_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits);
static const video_model_arch resnet_arch = { .forward = resnet_forward, .free = resnet_free };

int video_resnet_load(vm_loader *ld, video_model *m)
{
    const char *arch = NULL;
    size_t a = 0;
    if (dsp_model_config_str(ld->model, "arch", &arch) < 0)
        return vm_load_fail(ld, DSP_EFORMAT, "config.json: no \"arch\" string (r3d_18, mc3_18 or r2plus1d_18)");
    while (a < sizeof archs / sizeof archs[0] && strcmp(archs[a].name, arch) != 0)
        a++;
    if (a == sizeof archs / sizeof archs[0])
        return vm_load_fail(ld, DSP_EUNSUPPORTED, "config.json: arch '%s' is not supported (r3d_18, mc3_18, "
                            "r2plus1d_18)", arch);
    video_resnet *r = calloc(1, sizeof *r);
    if (!r)
        return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    m->priv = r;
    m->impl = &resnet_arch;
    m->info.arch = archs[a].arch;
    m->info.arch_name = archs[a].name;
    m->info.channels = 3;
    int64_t c = 3;
    int rc = load_stem(ld, r, archs[a].arch == VIDEO_ARCH_R2PLUS1D_18, &c);
    if (rc < 0)
        return rc;
    int per_layer[4];
    for (int L = 0; L < 4; L++) {
        if ((per_layer[L] = count_blocks(ld, L + 1)) == 0)
            return vm_load_fail(ld, DSP_EFORMAT, "tensor 'layer%d.0.conv1.0%s.weight' is missing: not a torchvision "
                                "%s?", L + 1, archs[a].layer_conv[L] == CONV_2PLUS1D ? ".0" : "", arch);
        r->nblocks += per_layer[L];
    }
    if (!(r->block = calloc((size_t)r->nblocks, sizeof *r->block)))
        return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    for (int L = 0, b = 0; L < 4; L++)
        for (int i = 0; i < per_layer[L]; i++, b++) {
            char base[32];
            snprintf(base, sizeof base, "layer%d.%d", L + 1, i);
            if ((rc = load_block(ld, base, archs[a].layer_conv[L], L > 0 && i == 0 ? 2 : 1, &c, &r->block[b])) < 0)
                return rc;
        }
    int64_t fc_shape[2] = { -1, c };
    if ((rc = vm_get_tensor(ld, "fc.weight", 2, fc_shape, &r->fc_w)) < 0)
        return rc;
    m->info.num_classes = r->fc_w->shape[0];
    return vm_get_tensor(ld, "fc.bias", 1, &m->info.num_classes, &r->fc_b);
}

static int run_conv_bn(video_model *m, const conv_bn *c, const dsp_tensor *x, dsp_tensor **out)
{
    dsp_tensor *y = NULL;
    int rc;
    if (!c->mean) {                     /* folded */
        rc = dsp_conv3d(x, c->w, c->b, &c->opts, out);
    } else if ((rc = dsp_conv3d(x, c->w, NULL, &c->opts, &y)) == 0) {
        rc = dsp_batchnorm(y, c->mean, c->var, c->gamma, c->beta, BN_EPS, out);
    }
    /* in place: *out is the convolution's or the batch norm's fresh result */
    if (rc == 0 && c->relu && (rc = dsp_relu(*out, out)) < 0)
        dsp_tensor_unref(out);
    dsp_tensor_unref(&y);
    return rc < 0 ? vm_ops_err(m, rc, "convolution") : 0;
}

/* steps n conv_bn from x into *out (x itself is not consumed) */
static int run_steps(video_model *m, const conv_bn *c, int n, const dsp_tensor *x, dsp_tensor **out)
{
    dsp_tensor *cur = NULL;
    int rc = run_conv_bn(m, &c[0], x, &cur);
    for (int i = 1; rc == 0 && i < n; i++) {
        dsp_tensor *next = NULL;
        rc = run_conv_bn(m, &c[i], cur, &next);
        dsp_tensor_unref(&cur);
        cur = next;
    }
    if (rc == 0)
        *out = cur;
    return rc;
}

static int run_block(video_model *m, const res_block *b, const dsp_tensor *x, dsp_tensor **out)
{
    dsp_tensor *h = NULL, *y = NULL, *sc = NULL;
    int rc;
    if ((rc = run_steps(m, b->c1, b->nconv, x, &h)) < 0 || (rc = run_steps(m, b->c2, b->nconv, h, &y)) < 0)
        goto done;
    if (b->has_down && (rc = run_conv_bn(m, &b->down, x, &sc)) < 0)
        goto done;
    if ((rc = dsp_add(y, sc ? sc : x, &y)) < 0 || (rc = dsp_relu(y, &y)) < 0) {
        rc = vm_ops_err(m, rc, "residual");
        goto done;
    }
    *out = y;
    y = NULL;
done:
    dsp_tensor_unref(&h);
    dsp_tensor_unref(&y);
    dsp_tensor_unref(&sc);
    return rc;
}

static int resnet_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits)
{
    const video_resnet *r = m->priv;
    if (x->ndim != 5 || x->shape[1] != 3 || x->shape[2] < 1 || x->shape[3] < 1 || x->shape[4] < 1) {
        char desc[96];
        return vm_set_err(m, DSP_EINVAL, "clip %s: the model takes [batch, 3, frames, height, width]",
                          dsp_tensor_describe(x, desc, sizeof desc));
    }
    dsp_tensor *h = NULL, *p = NULL, *flat = NULL;
    int rc = run_steps(m, r->stem, r->nstem, x, &h);
    for (int b = 0; rc == 0 && b < r->nblocks; b++) {
        dsp_tensor *next = NULL;
        rc = run_block(m, &r->block[b], h, &next);
        dsp_tensor_unref(&h);
        h = next;
    }
    if (rc == 0) {
        int one[3] = { 1, 1, 1 };
        int64_t shape[2] = { h->shape[0], h->shape[1] };
        if ((rc = dsp_adaptive_pool(h, DSP_POOL_AVG, one, &p)) < 0 ||
            (rc = dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, NULL, p->buf, p->offset, &flat)) < 0 ||
            (rc = dsp_linear(flat, r->fc_w, r->fc_b, logits)) < 0)
            rc = vm_ops_err(m, rc, "pool and fc");
    }
    dsp_tensor_unref(&h);
    dsp_tensor_unref(&p);
    dsp_tensor_unref(&flat);
    return rc;
}
