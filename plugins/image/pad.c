/* pad.c - image.pad: border padding (constant, edge, reflect, symmetric) as torchvision's F.pad. */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PAD_CONSTANT, PAD_EDGE, PAD_REFLECT, PAD_SYMMETRIC };
static const char *const pad_modes[] = { "constant", "edge", "reflect", "symmetric", NULL };

typedef struct pad_ctx {
    int64_t left, top, right, bottom;
    int64_t width, height;
    int mode;
    double fill;
    int layout;
    char *name;
} pad_ctx;

static const dsp_param_def pad_params[] = {
    { .name = "left", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, left), .doc = "columns added on the left" },
    { .name = "top", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, top), .doc = "rows added at the top" },
    { .name = "right", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, right), .doc = "columns added on the right" },
    { .name = "bottom", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, bottom), .doc = "rows added at the bottom" },
    { .name = "width", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, width),
      .doc = "instead of left/right: pad to at least this width, centred (the odd "
             "column goes right)" },
    { .name = "height", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(pad_ctx, height),
      .doc = "instead of top/bottom: pad to at least this height, centred (the odd row "
             "goes to the bottom)" },
    { .name = "mode", .type = DSP_PARAM_ENUM, .def = "constant", .choices = pad_modes,
      .offset = offsetof(pad_ctx, mode),
      .doc = "constant (fill), edge (repeat the border), reflect (mirror without the "
             "border pixel), symmetric (mirror with it)" },
    { .name = "fill", .type = DSP_PARAM_FLOAT, .def = "0",
      .offset = offsetof(pad_ctx, fill),
      .doc = "value of constant padding (an integer in range for u8/u16 images)" },
    IMAGE_LAYOUT_PARAM(pad_ctx, ""),
    IMAGE_NAME_PARAM(pad_ctx, "the image tensor, replaced by the result"),
    { NULL }
};

static const dsp_port_def pad_in[] = {
    { "in", "any", "image of any dtype, H x W x C or C x H x W" },
    { NULL }
};
static const dsp_port_def pad_out[] = {
    { "out", "image", "the packet with the image padded and meta width, height updated" },
    { NULL }
};

static int pad_init(dsp_node *node)
{
    pad_ctx *c = dsp_node_priv(node);
    if (c->width > 0 && (c->left || c->right))
        return dsp_node_fail(node, DSP_EINVAL, "give width (pad to a size) or left/right, "
                             "not both");
    if (c->height > 0 && (c->top || c->bottom))
        return dsp_node_fail(node, DSP_EINVAL, "give height (pad to a size) or top/bottom, "
                             "not both");
    return 0;
}

/* Source index for output index i of an axis of n pixels padded by `before`. */
static int64_t pad_index(int mode, int64_t i, int64_t before, int64_t n)
{
    int64_t s = i - before;
    if (s >= 0 && s < n)
        return s;
    switch (mode) {
    case PAD_EDGE:
        return s < 0 ? 0 : n - 1;
    case PAD_REFLECT: {
        if (n == 1)
            return 0;
        int64_t p = 2 * (n - 1), r = ((s % p) + p) % p;
        return r < n ? r : p - r;
    }
    case PAD_SYMMETRIC: {
        int64_t p = 2 * n, r = ((s % p) + p) % p;
        return r < n ? r : p - 1 - r;
    }
    default:
        return -1;
    }
}

/* The fill value as one element of dtype dt; 0 or DSP_EINVAL when it does
 * not fit. */
static int fill_element(double v, dsp_dtype dt, uint8_t *out)
{
    memset(out, 0, 16);
    switch (dt) {
    case DSP_DTYPE_U8:
        if (v != floor(v) || v < 0 || v > 255)
            return DSP_EINVAL;
        out[0] = (uint8_t)v;
        return 0;
    case DSP_DTYPE_U16: {
        if (v != floor(v) || v < 0 || v > 65535)
            return DSP_EINVAL;
        uint16_t x = (uint16_t)v;
        memcpy(out, &x, sizeof x);
        return 0;
    }
    case DSP_DTYPE_F32: {
        float x = (float)v;
        memcpy(out, &x, sizeof x);
        return 0;
    }
    case DSP_DTYPE_F64:
        memcpy(out, &v, sizeof v);
        return 0;
    default:
        return v == 0 ? 0 : DSP_EINVAL;     /* zero bytes are zero in every type */
    }
}

static int pad_process(dsp_node *node, dsp_packet **in)
{
    pad_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *o = NULL;
    image_geom g;
    char wb[64], desc[96];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, c->layout, &t, &g);
    if (err < 0)
        return err;
    uint8_t fill[16] = { 0 };
    if (c->mode == PAD_CONSTANT && fill_element(c->fill, t->dtype, fill) < 0)
        return dsp_node_fail(node, DSP_EINVAL, "%s: fill=%g does not fit tensor '%s' (%s); "
                             "use a value of its type", where, c->fill, c->name,
                             dsp_tensor_describe(t, desc, sizeof desc));
    int64_t l = c->left, r = c->right, tp = c->top, b = c->bottom;
    if (c->width > g.w) {
        l = (c->width - g.w) / 2;
        r = c->width - g.w - l;
    }
    if (c->height > g.h) {
        tp = (c->height - g.h) / 2;
        b = c->height - g.h - tp;
    }
    int64_t oh = g.h + tp + b, ow = g.w + l + r;
    int64_t *rows = malloc((size_t)oh * sizeof *rows), *cols = malloc((size_t)ow * sizeof *cols);
    if (rows && cols && (err = dsp_tensor_contiguous(t, &src)) == 0) {
        for (int64_t y = 0; y < oh; y++)
            rows[y] = pad_index(c->mode, y, tp, g.h);
        for (int64_t x = 0; x < ow; x++)
            cols[x] = pad_index(c->mode, x, l, g.w);
        err = image_gather(src, &g, oh, ow, rows, cols, fill, &o);
    } else if (!err) {
        err = DSP_ENOMEM;
    }
    free(rows);
    free(cols);
    dsp_tensor_unref(&src);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot pad: %s", where, dsp_strerror(err));
    return image_emit_replaced(node, in[0], c->name, o, ow, oh, NULL);
}

const dsp_op_def image_pad_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.pad",
    .doc = "pad image borders (constant, edge, reflect, symmetric) as torchvision's F.pad",
    .inputs = pad_in,
    .outputs = pad_out,
    .params = pad_params,
    .priv_size = sizeof(pad_ctx),
    .init = pad_init,
    .process = pad_process,
};
