/* resize.c - image.resize: resample to a size or a shorter side, matching Pillow (u8) and torchvision (f32). */
#include "image.h"

#include <stdio.h>

static const char *const resize_filters[] = { "nearest", "bilinear", "bicubic", "box", "hamming",
                                              "lanczos", NULL };

typedef struct resize_ctx {
    char *name;
    int64_t width, height, shorter, max_size;
    int filter;
    int antialias;
    int premultiply;
    int layout;
    int64_t max_pixels;
} resize_ctx;

static const dsp_param_def resize_params[] = {
    { .name = "width", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(resize_ctx, width),
      .doc = "output width (with height); 0 = not given" },
    { .name = "height", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(resize_ctx, height),
      .doc = "output height (with width); 0 = not given" },
    { .name = "shorter", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(resize_ctx, shorter),
      .doc = "instead of width/height: the shorter side becomes this, the longer one "
             "int(shorter * long / short), as torchvision's Resize(int)" },
    { .name = "max_size", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(resize_ctx, max_size),
      .doc = "with shorter: cap the longer side at this (torchvision's max_size); 0 = none" },
    { .name = "filter", .type = DSP_PARAM_ENUM, .def = "bilinear", .choices = resize_filters,
      .offset = offsetof(resize_ctx, filter),
      .doc = "Pillow's filters: nearest, bilinear, bicubic (a = -0.5), box, hamming, lanczos" },
    { .name = "antialias", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(resize_ctx, antialias),
      .doc = "widen the filter by the downscale factor (Pillow always does; torchvision's "
             "antialias=True); false = torchvision's antialias=False for bilinear" },
    { .name = "premultiply", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(resize_ctx, premultiply),
      .doc = "u8 gray+alpha / RGBA: resample colour premultiplied by alpha, as Pillow does" },
    IMAGE_LAYOUT_PARAM(resize_ctx, ""),
    IMAGE_NAME_PARAM(resize_ctx, "the image tensor, replaced by the result"),
    { .name = "max_pixels", .type = DSP_PARAM_INT, .def = "178956970", .min = 1, .max = 1e12,
      .offset = offsetof(resize_ctx, max_pixels),
      .doc = "refuse outputs with more pixels (a shorter side on a very long image)" },
    { NULL }
};

static const dsp_port_def resize_in[] = {
    { "in", "any", "u8 / u16 / f32 image, H x W x C or C x H x W" },
    { NULL }
};
static const dsp_port_def resize_out[] = {
    { "out", "image", "the packet with the image resized and meta width, height updated" },
    { NULL }
};

static int resize_init(dsp_node *node)
{
    resize_ctx *c = dsp_node_priv(node);
    int wh = c->width > 0 || c->height > 0;
    if (wh && c->shorter > 0)
        return dsp_node_fail(node, DSP_EINVAL, "give either width and height, or shorter; "
                             "not both");
    if (!wh && c->shorter <= 0)
        return dsp_node_fail(node, DSP_EINVAL, "give the output size: width=W height=H, or "
                             "shorter=S (the shorter side, keeping the aspect ratio)");
    if (wh && (c->width <= 0 || c->height <= 0))
        return dsp_node_fail(node, DSP_EINVAL, "give both width and height (got width=%lld "
                             "height=%lld), or shorter=S to keep the aspect ratio",
                             (long long)c->width, (long long)c->height);
    if (c->max_size > 0 && c->shorter <= 0)
        return dsp_node_fail(node, DSP_EINVAL, "max_size goes with shorter=S");
    if (c->max_size > 0 && c->max_size <= c->shorter)
        return dsp_node_fail(node, DSP_EINVAL, "max_size=%lld must be greater than "
                             "shorter=%lld (as in torchvision)", (long long)c->max_size,
                             (long long)c->shorter);
    return 0;
}

/* torchvision's _compute_resized_output_size for size=[shorter]. */
static void shorter_side(int64_t h, int64_t w, int64_t s, int64_t max_size, int64_t *oh,
                         int64_t *ow)
{
    int64_t sh = w <= h ? w : h, lg = w <= h ? h : w;
    int64_t ns = s, nl = (int64_t)((double)(s * lg) / (double)sh);
    if (max_size > 0 && nl > max_size) {
        ns = (int64_t)((double)(max_size * ns) / (double)nl);
        nl = max_size;
    }
    *ow = w <= h ? ns : nl;
    *oh = w <= h ? nl : ns;
}

static int resize_process(dsp_node *node, dsp_packet **in)
{
    resize_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *o = NULL;
    image_geom g;
    char wb[64], desc[96];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, c->layout, &t, &g);
    if (err < 0)
        return err;
    if (t->dtype != DSP_DTYPE_U8 && t->dtype != DSP_DTYPE_U16 && t->dtype != DSP_DTYPE_F32)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s; image.resize "
                             "takes u8, u16 or f32", where, c->name,
                             dsp_tensor_describe(t, desc, sizeof desc));
    int64_t ow = c->width, oh = c->height;
    if (c->shorter > 0)
        shorter_side(g.h, g.w, c->shorter, c->max_size, &oh, &ow);
    if (ow < 1 || oh < 1 || (double)ow * (double)oh > (double)c->max_pixels)
        return dsp_node_fail(node, DSP_ELIMIT, "%s: %lld x %lld image would become %lld x "
                             "%lld, %s", where, (long long)g.w, (long long)g.h,
                             (long long)ow, (long long)oh,
                             ow < 1 || oh < 1 ? "an empty image; use a larger size"
                                              : "more than max_pixels; raise it if intended");
    if ((err = dsp_tensor_contiguous(t, &src)) < 0)
        return dsp_node_fail(node, err, "%s: out of memory", where);
    err = image_resample(src, &g, ow, oh, c->filter, c->antialias, c->premultiply, &o);
    dsp_tensor_unref(&src);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot resize %lld x %lld to %lld x %lld: %s",
                             where, (long long)g.w, (long long)g.h, (long long)ow,
                             (long long)oh, err == DSP_ELIMIT
                                 ? "the filter would be too wide; resize in two steps"
                                 : dsp_strerror(err));
    if (g.c == 1 && t->ndim == 2) {
        /* keep a 2-D image 2-D */
        int64_t shape[2] = { oh, ow };
        dsp_tensor *v = NULL;
        err = dsp_tensor_from_buffer(o->dtype, 2, shape, NULL, o->buf, o->offset, &v);
        dsp_tensor_unref(&o);
        if (err < 0)
            return dsp_node_fail(node, err, "%s: %s", where, dsp_strerror(err));
        o = v;
    }
    return image_emit_replaced(node, in[0], c->name, o, ow, oh, NULL);
}

const dsp_op_def image_resize_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.resize",
    .doc = "resize images as Pillow's Image.resize (u8, bit-exact) and torchvision's resize (f32)",
    .inputs = resize_in,
    .outputs = resize_out,
    .params = resize_params,
    .priv_size = sizeof(resize_ctx),
    .init = resize_init,
    .process = resize_process,
};
