/* normalize.c - image.normalize: u8/u16/f32 images to f32 (C x H x W by default), scaled, minus mean, over std. */
#include "image.h"

#include <stdio.h>

enum { PRESET_NONE, PRESET_IMAGENET, PRESET_CLIP };
static const char *const presets[] = { "none", "imagenet", "clip", NULL };
static const char *const out_layouts[] = { "chw", "hwc", NULL };

/* torchvision's ImageNet statistics and OpenAI CLIP's */
static const double preset_mean[3][3] = { { 0, 0, 0 }, { 0.485, 0.456, 0.406 },
                                          { 0.48145466, 0.4578275, 0.40821073 } };
static const double preset_std[3][3] = { { 1, 1, 1 }, { 0.229, 0.224, 0.225 },
                                         { 0.26862954, 0.26130258, 0.27577711 } };

typedef struct normalize_ctx {
    dsp_list mean, std;
    int preset;
    double scale;
    int layout;
    int out_layout;
    char *name;
} normalize_ctx;

static const dsp_param_def normalize_params[] = {
    { .name = "preset", .type = DSP_PARAM_ENUM, .def = "none", .choices = presets,
      .offset = offsetof(normalize_ctx, preset),
      .doc = "mean/std of imagenet (torchvision) or clip (OpenAI CLIP); none: use mean/std" },
    { .name = "mean", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_FLOAT, .def = "[]",
      .offset = offsetof(normalize_ctx, mean),
      .doc = "per-channel mean subtracted after scaling (one value, or one per channel)" },
    { .name = "std", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_FLOAT, .def = "[]",
      .offset = offsetof(normalize_ctx, std),
      .doc = "per-channel standard deviation divided by (one value, or one per channel)" },
    { .name = "scale", .type = DSP_PARAM_FLOAT, .def = "0", .min = 0, .max = 1e30,
      .offset = offsetof(normalize_ctx, scale),
      .doc = "multiply samples by this first; 0 = divide u8 by 255 and u16 by 65535 "
             "(torchvision's ToTensor), f32 unchanged" },
    IMAGE_LAYOUT_PARAM(normalize_ctx, "input layout: "),
    { .name = "out_layout", .type = DSP_PARAM_ENUM, .def = "chw", .choices = out_layouts,
      .offset = offsetof(normalize_ctx, out_layout),
      .doc = "output layout: chw (what PyTorch models take) or hwc" },
    IMAGE_NAME_PARAM(normalize_ctx, "the image tensor, replaced by f32"),
    { NULL }
};

static const dsp_port_def normalize_in[] = {
    { "in", "any", "u8 / u16 / f32 image" },
    { NULL }
};
static const dsp_port_def normalize_out[] = {
    { "out", "tensor", "the packet with an f32 image (meta layout says chw or hwc)" },
    { NULL }
};

static int normalize_init(dsp_node *node)
{
    normalize_ctx *c = dsp_node_priv(node);
    if (c->preset != PRESET_NONE && (c->mean.n || c->std.n))
        return dsp_node_fail(node, DSP_EINVAL, "give preset=%s or mean/std, not both",
                             presets[c->preset]);
    if (c->mean.n > 1 && c->std.n > 1 && c->mean.n != c->std.n)
        return dsp_node_fail(node, DSP_EINVAL, "mean has %d values and std %d; give one per "
                             "channel (or one for all)", c->mean.n, c->std.n);
    for (int i = 0; i < c->std.n; i++)
        if (c->std.f[i] == 0)
            return dsp_node_fail(node, DSP_EINVAL, "std[%d] is 0: division by zero", i);
    return 0;
}

/* Sample k of t as float: integers divided by their maximum in float (as
 * torch's x.float().div(255)), or multiplied by an explicit scale. */
static inline float sample(const dsp_tensor *t, const void *base, int64_t k, double scale)
{
    switch (t->dtype) {
    case DSP_DTYPE_U8: {
        float v = ((const uint8_t *)base)[k];
        return scale > 0 ? (float)(v * scale) : v / 255.0f;
    }
    case DSP_DTYPE_U16: {
        float v = ((const uint16_t *)base)[k];
        return scale > 0 ? (float)(v * scale) : v / 65535.0f;
    }
    default: {
        float v = ((const float *)base)[k];
        return scale > 0 ? (float)(v * scale) : v;
    }
    }
}

static int normalize_process(dsp_node *node, dsp_packet **in)
{
    normalize_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *o = NULL;
    image_geom g;
    char wb[64], desc[96];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, c->layout, &t, &g);
    if (err < 0)
        return err;
    if (t->dtype != DSP_DTYPE_U8 && t->dtype != DSP_DTYPE_U16 && t->dtype != DSP_DTYPE_F32)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s; image.normalize "
                             "takes u8, u16 or f32", where, c->name,
                             dsp_tensor_describe(t, desc, sizeof desc));
    int64_t C = g.c;
    const double *mean = c->mean.f, *std = c->std.f;
    int nm = c->mean.n, ns = c->std.n;
    if (c->preset != PRESET_NONE) {
        mean = preset_mean[c->preset];
        std = preset_std[c->preset];
        nm = ns = 3;
    }
    if ((nm > 1 && nm != C) || (ns > 1 && ns != C))
        return dsp_node_fail(node, DSP_EINVAL, "%s: the image has %lld channels but %s gives "
                             "%d means and %d stds; use mode=rgb in image.decode, or give "
                             "one value per channel", where, (long long)C,
                             c->preset != PRESET_NONE ? presets[c->preset] : "mean/std", nm, ns);
    float m[4096], s[4096];
    if (C > 4096)
        return dsp_node_fail(node, DSP_ELIMIT, "%s: %lld channels: too many for an image",
                             where, (long long)C);
    for (int64_t k = 0; k < C; k++) {
        m[k] = nm ? (float)mean[nm > 1 ? k : 0] : 0.0f;
        s[k] = ns ? (float)std[ns > 1 ? k : 0] : 1.0f;
    }
    image_geom og = g;
    og.chw = c->out_layout == 0;
    if ((err = dsp_tensor_contiguous(t, &src)) < 0 ||
        (err = image_tensor_new(DSP_DTYPE_F32, &og, &o)) < 0) {
        dsp_tensor_unref(&src);
        return dsp_node_fail(node, err, "%s: out of memory", where);
    }
    const void *base = dsp_tensor_data(src);
    float *d = dsp_tensor_data(o);
    int64_t hw = g.h * g.w;
    int use_std = ns > 0, use_mean = nm > 0;
    for (int64_t k = 0; k < C; k++)
        for (int64_t p = 0; p < hw; p++) {
            int64_t si = g.chw ? k * hw + p : p * C + k;
            int64_t di = og.chw ? k * hw + p : p * C + k;
            float v = sample(src, base, si, c->scale);
            if (use_mean)
                v = v - m[k];
            if (use_std)
                v = v / s[k];
            d[di] = v;
        }
    dsp_tensor_unref(&src);
    return image_emit_replaced(node, in[0], c->name, o, g.w, g.h, og.chw ? "chw" : "hwc");
}

const dsp_op_def image_normalize_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.normalize",
    .doc = "to f32 C x H x W: scale (u8 / 255), subtract mean, divide by std (ImageNet, CLIP or lists)",
    .inputs = normalize_in,
    .outputs = normalize_out,
    .params = normalize_params,
    .priv_size = sizeof(normalize_ctx),
    .init = normalize_init,
    .process = normalize_process,
};
