/* crop.c - image.crop: centre crop as torchvision's CenterCrop, padding with zeros when the crop is larger. */
#include "image.h"

#include <stdlib.h>

typedef struct crop_ctx {
    int64_t size, width, height;
    int layout;
    char *name;
} crop_ctx;

static const dsp_param_def crop_params[] = {
    { .name = "size", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(crop_ctx, size), .doc = "a size x size crop (or width and height)" },
    { .name = "width", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(crop_ctx, width), .doc = "crop width (with height)" },
    { .name = "height", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 100000,
      .offset = offsetof(crop_ctx, height), .doc = "crop height (with width)" },
    IMAGE_LAYOUT_PARAM(crop_ctx, ""),
    IMAGE_NAME_PARAM(crop_ctx, "the image tensor, replaced by the crop"),
    { NULL }
};

static const dsp_port_def crop_in[] = {
    { "in", "any", "image of any dtype, H x W x C or C x H x W" },
    { NULL }
};
static const dsp_port_def crop_out[] = {
    { "out", "image", "the packet with the image cropped and meta width, height updated" },
    { NULL }
};

static int crop_init(dsp_node *node)
{
    crop_ctx *c = dsp_node_priv(node);
    int wh = c->width > 0 || c->height > 0;
    if (wh == (c->size > 0))
        return dsp_node_fail(node, DSP_EINVAL, "give either size=S (a square crop) or width=W "
                             "height=H%s", wh ? ", not both" : "");
    if (wh && (c->width <= 0 || c->height <= 0))
        return dsp_node_fail(node, DSP_EINVAL, "give both width and height");
    if (c->size > 0)
        c->width = c->height = c->size;
    return 0;
}

/* Python's round() of d / 2: halves go to the even neighbour. */
static int64_t half_round_even(int64_t d)
{
    int64_t q = d / 2;
    return d % 2 == 0 || q % 2 == 0 ? q : q + 1;
}

/* Source index of each output index along one axis of n pixels cropped to
 * k: torchvision pads (k - n) / 2 before when k > n, then offsets by
 * round((padded - k) / 2). -1 marks padding. */
static void axis_map(int64_t n, int64_t k, int64_t *map)
{
    int64_t before = k > n ? (k - n) / 2 : 0, padded = k > n ? k : n;
    int64_t off = half_round_even(padded - k);
    for (int64_t i = 0; i < k; i++) {
        int64_t s = i + off - before;
        map[i] = s >= 0 && s < n ? s : -1;
    }
}

static int crop_process(dsp_node *node, dsp_packet **in)
{
    crop_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *o = NULL;
    image_geom g;
    char wb[64];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, c->layout, &t, &g);
    if (err < 0)
        return err;
    int64_t *rows = malloc((size_t)c->height * sizeof *rows);
    int64_t *cols = malloc((size_t)c->width * sizeof *cols);
    static const uint8_t zero[16];
    if (rows && cols && (err = dsp_tensor_contiguous(t, &src)) == 0) {
        axis_map(g.h, c->height, rows);
        axis_map(g.w, c->width, cols);
        err = image_gather(src, &g, c->height, c->width, rows, cols, zero, &o);
    } else if (!err) {
        err = DSP_ENOMEM;
    }
    free(rows);
    free(cols);
    dsp_tensor_unref(&src);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot crop: %s", where, dsp_strerror(err));
    return image_emit_replaced(node, in[0], c->name, o, c->width, c->height, NULL);
}

const dsp_op_def image_crop_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.crop",
    .doc = "centre crop as torchvision's CenterCrop (zero padding when the crop is larger)",
    .inputs = crop_in,
    .outputs = crop_out,
    .params = crop_params,
    .priv_size = sizeof(crop_ctx),
    .init = crop_init,
    .process = crop_process,
};
