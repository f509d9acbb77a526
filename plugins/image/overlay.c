/* overlay.c - image.overlay: boxes, polygons, mask contours and text from packet meta drawn onto u8 images. */
#include "image.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Coordinates beyond this are refused: a line is walked pixel by pixel. */
#define OVERLAY_MAX_COORD 100000.0
#define OVERLAY_MAX_PALETTE 64

typedef struct overlay_ctx {
    char *key;
    char *name;
    char *mask;
    char *color;
    int64_t thickness;
    char *font;
    int64_t font_size;
    dsp_list palette;
    image_rgb def_color;
    image_rgb pal[OVERLAY_MAX_PALETTE];
    image_font *face;           /* NULL when the font could not be opened */
    int font_err;               /* then: the code and why */
    char font_why[IMAGE_WHY];
} overlay_ctx;

static const dsp_param_def overlay_params[] = {
    { .name = "key", .type = DSP_PARAM_STRING, .def = "overlay",
      .offset = offsetof(overlay_ctx, key),
      .doc = "meta key of the array of things to draw ({\"box\"}, {\"polygon\"}, {\"text\"})" },
    { .name = "color", .type = DSP_PARAM_STRING, .def = "#ff3030",
      .offset = offsetof(overlay_ctx, color),
      .doc = "colour of items without their own \"color\": \"#rrggbb\" or red, green, blue, "
             "yellow, cyan, magenta, white, black, orange" },
    { .name = "thickness", .type = DSP_PARAM_INT, .def = "2", .min = 1, .max = 100,
      .offset = offsetof(overlay_ctx, thickness),
      .doc = "line width in pixels of items without their own \"thickness\"" },
    { .name = "font", .type = DSP_PARAM_PATH,
      .def = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
      .offset = offsetof(overlay_ctx, font),
      .doc = "TrueType/OpenType font of text and labels (Debian: fonts-dejavu-core)" },
    { .name = "font_size", .type = DSP_PARAM_INT, .def = "14", .min = 4, .max = 512,
      .offset = offsetof(overlay_ctx, font_size), .doc = "text size in pixels (em height)" },
    { .name = "mask", .type = DSP_PARAM_STRING, .def = "mask",
      .offset = offsetof(overlay_ctx, mask),
      .doc = "the u8 label tensor in the packet on the mask port, traced as contours" },
    { .name = "palette", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_STRING,
      .def = "[\"#ff3030\", \"#30d030\", \"#3090ff\", \"#ffd700\", \"#ff40ff\", \"#00d0d0\", "
             "\"#ff8c00\", \"#ffffff\"]",
      .offset = offsetof(overlay_ctx, palette),
      .doc = "contour colour of mask label v: palette[(v - 1) % n]" },
    IMAGE_NAME_PARAM(overlay_ctx, "the image tensor, replaced by the drawn-on RGB/RGBA image"),
    { NULL }
};

static const dsp_port_def overlay_in[] = {
    { "in", "image", "u8 H x W x C images, C = 1 (becomes RGB), 2 (becomes RGBA), 3 or 4; "
      "meta <key> says what to draw" },
    { "mask", "any", "a packet with a u8 H x W label tensor (0 = background) whose "
      "regions are outlined", DSP_PORT_OPTIONAL },
    { NULL }
};
static const dsp_port_def overlay_out[] = {
    { "out", "image", "the packet with the drawn-on image (RGB, or RGBA when it had alpha)" },
    { NULL }
};

static int overlay_init(dsp_node *node)
{
    overlay_ctx *c = dsp_node_priv(node);
    if (image_parse_color(c->color, &c->def_color) < 0)
        return dsp_node_fail(node, DSP_EINVAL, "color='%s': want \"#rrggbb\" (quoted in a "
                             ".pipe file) or a colour name such as red", c->color);
    if (c->palette.n < 1 || c->palette.n > OVERLAY_MAX_PALETTE)
        return dsp_node_fail(node, DSP_EINVAL, "palette has %d colours; give 1 to %d",
                             c->palette.n, OVERLAY_MAX_PALETTE);
    for (int i = 0; i < c->palette.n; i++)
        if (image_parse_color(c->palette.s[i], &c->pal[i]) < 0)
            return dsp_node_fail(node, DSP_EINVAL, "palette[%d] '%s': want \"#rrggbb\" or a "
                                 "colour name", i, c->palette.s[i]);
    /* a missing font only fails the items that draw text */
    c->font_err = image_font_open(c->font, (int)c->font_size, &c->face, c->font_why);
    return 0;
}

static void overlay_fini(dsp_node *node)
{
    overlay_ctx *c = dsp_node_priv(node);
    image_font_free(&c->face);
}

/* ---- reading one item of the meta array ------------------------------------ */

/* What went wrong with an item, for the message: "overlay[3].box: ...". */
typedef struct item_err {
    char msg[IMAGE_WHY];
} item_err;

static int bad(item_err *e, const char *key, size_t i, const char *what, const char *fmt, ...)
    DSP_PRINTF(5, 6);
static int bad(item_err *e, const char *key, size_t i, const char *what, const char *fmt, ...)
{
    int n = snprintf(e->msg, sizeof e->msg, "meta \"%s\"[%zu]%s%s: ", key, i,
                     what[0] ? "." : "", what);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof e->msg)
        vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return DSP_EINVAL;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A coordinate: a finite number within the limit, rounded to a pixel. */
static int coord(const json_t *v, int64_t *out)
{
    if (!json_is_number(v))
        return DSP_EINVAL;
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > OVERLAY_MAX_COORD)
        return DSP_EINVAL;
    *out = (int64_t)llround(d);
    return 0;
}

/* [x, y] into p[0], p[1]. */
static int point(const json_t *v, int64_t *p)
{
    return json_is_array(v) && json_array_size(v) == 2 && coord(json_array_get(v, 0), p) == 0 &&
           coord(json_array_get(v, 1), p + 1) == 0 ? 0 : DSP_EINVAL;
}

static const char *const item_keys[] = { "box", "polygon", "text", "at", "closed", "label",
                                         "color", "thickness", NULL };

/* Draw item i (an element of the array under c->key). 0, or DSP_EINVAL with
 * e->msg set, or a text error with e->msg set. */
static int draw_item(overlay_ctx *c, const image_canvas *cv, const json_t *it, size_t i,
                     item_err *e)
{
    const char *k = c->key;
    if (!json_is_object(it))
        return bad(e, k, i, "", "is %s; want an object such as {\"box\": [x0, y0, x1, y1]}, "
                   "{\"polygon\": [[x, y], ...]} or {\"text\": \"...\", \"at\": [x, y]}",
                   json_kind(it));
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)it, name, v) {
        int known = 0;
        for (int j = 0; item_keys[j] && !known; j++)
            known = strcmp(name, item_keys[j]) == 0;
        if (!known)
            return bad(e, k, i, "", "unknown key \"%s\" (known: box, polygon, closed, text, "
                       "at, label, color, thickness)", name);
    }
    const json_t *box = json_object_get(it, "box"), *poly = json_object_get(it, "polygon");
    const json_t *text = json_object_get(it, "text");
    if ((box != NULL) + (poly != NULL) + (text != NULL) != 1)
        return bad(e, k, i, "", "give exactly one of \"box\", \"polygon\" and \"text\"");

    image_rgb col = c->def_color;
    const json_t *jc = json_object_get(it, "color");
    if (jc && (!json_is_string(jc) || image_parse_color(json_string_value(jc), &col) < 0))
        return bad(e, k, i, "color", "%s%s%s; want \"#rrggbb\" or a colour name (red, green, "
                   "blue, yellow, cyan, magenta, white, black, orange)",
                   json_is_string(jc) ? "\"" : "is ",
                   json_is_string(jc) ? json_string_value(jc) : json_kind(jc),
                   json_is_string(jc) ? "\"" : "");
    int thick = (int)c->thickness;
    const json_t *jt = json_object_get(it, "thickness");
    if (jt) {
        if (!json_is_integer(jt) || json_integer_value(jt) < 1 || json_integer_value(jt) > 100)
            return bad(e, k, i, "thickness", "want an integer from 1 to 100");
        thick = (int)json_integer_value(jt);
    }
    const json_t *closed = json_object_get(it, "closed"), *label = json_object_get(it, "label");
    const json_t *at = json_object_get(it, "at");
    if (closed && (!poly || !json_is_boolean(closed)))
        return bad(e, k, i, "closed", poly ? "want true or false" : "belongs to a polygon");
    if (label && (!box || !json_is_string(label)))
        return bad(e, k, i, "label", box ? "want a string" : "belongs to a box (use "
                   "{\"text\": ..., \"at\": [x, y]} for free text)");
    if (at && !text)
        return bad(e, k, i, "at", "belongs to a text item");

    if (box) {
        int64_t b[4];
        if (!json_is_array(box) || json_array_size(box) != 4)
            return bad(e, k, i, "box", "want 4 numbers [x0, y0, x1, y1]");
        for (int j = 0; j < 4; j++)
            if (coord(json_array_get(box, (size_t)j), b + j) < 0)
                return bad(e, k, i, "box", "element %d is not a number within +-%g", j,
                           OVERLAY_MAX_COORD);
        if (b[0] > b[2] || b[1] > b[3])
            return bad(e, k, i, "box", "[%lld, %lld, %lld, %lld]: want x0 <= x1 and y0 <= y1",
                       (long long)b[0], (long long)b[1], (long long)b[2], (long long)b[3]);
        image_draw_rect(cv, b[0], b[1], b[2], b[3], thick, col);
        if (!label)
            return 0;
        if (!c->face) {
            bad(e, k, i, "label", "%s", c->font_why);
            return c->font_err;
        }
        /* above the box when it fits, else inside below the top edge */
        int64_t lh = image_font_line_height(c->face);
        int64_t ty = b[1] - lh >= 0 ? b[1] - lh : b[1] + thick;
        char why[IMAGE_WHY];
        int err = image_draw_text(cv, c->face, b[0], ty, json_string_value(label), col, why);
        if (err < 0)
            bad(e, k, i, "label", "%s", why);
        return err;
    }
    if (poly) {
        size_t n = json_is_array(poly) ? json_array_size(poly) : 0;
        if (n == 0)
            return bad(e, k, i, "polygon", "want an array of [x, y] points, at least one");
        int64_t first[2], prev[2], p[2];
        for (size_t j = 0; j < n; j++) {
            if (point(json_array_get(poly, j), p) < 0)
                return bad(e, k, i, "polygon", "point %zu is not [x, y] with numbers within "
                           "+-%g", j, OVERLAY_MAX_COORD);
            if (j == 0) {
                first[0] = p[0];
                first[1] = p[1];
                if (n == 1)
                    image_draw_line(cv, p[0], p[1], p[0], p[1], thick, col);
            } else {
                image_draw_line(cv, prev[0], prev[1], p[0], p[1], thick, col);
            }
            prev[0] = p[0];
            prev[1] = p[1];
        }
        if (n > 2 && (!closed || json_is_true(closed)))
            image_draw_line(cv, prev[0], prev[1], first[0], first[1], thick, col);
        return 0;
    }
    int64_t p[2];
    if (!json_is_string(text))
        return bad(e, k, i, "text", "is %s; want a string", json_kind(text));
    if (!at || point(at, p) < 0)
        return bad(e, k, i, "at", "want [x, y], the top-left corner of the text");
    if (!c->face) {
        bad(e, k, i, "text", "%s", c->font_why);
        return c->font_err;
    }
    char why[IMAGE_WHY];
    int err = image_draw_text(cv, c->face, p[0], p[1], json_string_value(text), col, why);
    if (err < 0)
        bad(e, k, i, "text", "%s", why);
    return err;
}

/* ---- the operator ------------------------------------------------------------ */

/* The label mask of in (borrowed) as contiguous u8 h x w (new reference). */
static int find_mask(dsp_node *node, overlay_ctx *c, const dsp_packet *in, int64_t h,
                     int64_t w, const char *where, dsp_tensor **out)
{
    char desc[96];
    dsp_tensor *m = dsp_packet_tensor(in, c->mask);
    if (!m)
        return dsp_node_fail(node, DSP_ENOENT, "%s: no tensor '%s' in the packet on the mask "
                             "port; set mask= to the label tensor's name", where, c->mask);
    dsp_tensor_describe(m, desc, sizeof desc);
    int shape_ok = (m->ndim == 2 || (m->ndim == 3 && m->shape[2] == 1)) &&
                   m->shape[0] == h && m->shape[1] == w;
    if (m->dtype != DSP_DTYPE_U8 || m->device.type != DSP_DEVICE_CPU || !shape_ok)
        return dsp_node_fail(node, DSP_EINVAL, "%s: mask '%s' is %s; want a u8 CPU label "
                             "image of the image's size, %lld x %lld (H x W)", where, c->mask,
                             desc, (long long)h, (long long)w);
    int err = dsp_tensor_contiguous(m, out);
    return err < 0 ? dsp_node_fail(node, err, "%s: out of memory", where) : 0;
}

static int overlay_process(dsp_node *node, dsp_packet **in)
{
    overlay_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *img = NULL, *mask = NULL;
    image_geom g;
    char wb[64], desc[96];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, IMAGE_LAYOUT_AUTO, &t, &g);
    if (err < 0)
        return err;
    if (g.chw || t->dtype != DSP_DTYPE_U8 || g.c > 4)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s; image.overlay "
                             "draws on u8 H x W x C images with 1 to 4 channels (draw before "
                             "image.normalize)", where, c->name,
                             dsp_tensor_describe(t, desc, sizeof desc));
    json_t *items = NULL;
    if (dsp_meta_has(dsp_packet_meta_const(in[0]), c->key)) {
        char *text = dsp_meta_to_json(dsp_packet_meta_const(in[0]));
        json_t *meta = text ? json_loads(text, 0, NULL) : NULL;
        dsp_free(text);
        items = meta ? json_incref(json_object_get(meta, c->key)) : NULL;
        json_decref(meta);
        if (!items)
            return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", where);
        if (!json_is_array(items)) {
            err = dsp_node_fail(node, DSP_EINVAL, "%s: meta \"%s\" is %s; want an array of "
                                "objects such as {\"box\": [x0, y0, x1, y1]}", where, c->key,
                                json_kind(items));
            json_decref(items);
            return err;
        }
    }
    if (in[1] && (err = find_mask(node, c, in[1], g.h, g.w, where, &mask)) < 0) {
        json_decref(items);
        return err;
    }

    /* a private RGB / RGBA copy to draw on */
    err = image_contiguous_hwc(t, &src);
    if (!err)
        err = image_convert_channels(src, g.c == 1 ? 3 : g.c == 2 ? 4 : (int)g.c, &img);
    if (!err && img == src)
        err = dsp_tensor_make_writable(&img);
    dsp_tensor_unref(&src);
    if (err < 0) {
        json_decref(items);
        dsp_tensor_unref(&mask);
        dsp_tensor_unref(&img);
        return dsp_node_fail(node, err, "%s: out of memory", where);
    }
    image_canvas cv = { dsp_tensor_data(img), g.w, g.h, (int)img->shape[2] };
    if (mask)
        image_draw_contours(&cv, dsp_tensor_data(mask), c->pal, c->palette.n);
    dsp_tensor_unref(&mask);

    item_err e;
    for (size_t i = 0; !err && items && i < json_array_size(items); i++)
        err = draw_item(c, &cv, json_array_get(items, i), i, &e);
    json_decref(items);
    if (err < 0) {
        dsp_tensor_unref(&img);
        return dsp_node_fail(node, err, "%s: %s", where, e.msg);
    }
    /* gray became RGB (gray + alpha RGBA): say so where decode said otherwise */
    dsp_packet *p = dsp_packet_ref(in[0]);
    const dsp_meta *m = dsp_packet_meta_const(in[0]);
    int64_t oc = img->shape[2];
    if (oc != g.c && (dsp_meta_has(m, "channels") || dsp_meta_has(m, "mode"))) {
        err = dsp_packet_make_writable(&p);
        if (!err && dsp_meta_has(m, "channels"))
            err = dsp_meta_set_int(dsp_packet_meta(p), "channels", oc);
        if (!err && dsp_meta_has(m, "mode"))
            err = dsp_meta_set_str(dsp_packet_meta(p), "mode", oc == 3 ? "rgb" : "rgba");
        if (err < 0) {
            dsp_packet_unref(&p);
            dsp_tensor_unref(&img);
            return dsp_node_fail(node, err, "%s: out of memory", where);
        }
    }
    err = image_emit_replaced(node, p, c->name, img, g.w, g.h, NULL);
    dsp_packet_unref(&p);
    return err;
}

const dsp_op_def image_overlay_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.overlay",
    .doc = "draw boxes, polygons, label-mask contours and text (FreeType) from meta onto u8 "
           "images",
    .inputs = overlay_in,
    .outputs = overlay_out,
    .params = overlay_params,
    .priv_size = sizeof(overlay_ctx),
    .init = overlay_init,
    .process = overlay_process,
    .fini = overlay_fini,
};
