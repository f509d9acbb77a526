/* contact_sheet.c - video.contact_sheet: a classified clip's frames tiled into one RGB image, with its label lines as image.overlay text. */
#include "video.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libavutil/imgutils.h>

typedef struct sheet_ctx {
    /* parameters */
    int enable;
    char *input;
    char *output;
    int64_t columns;
    int64_t width;
    int64_t gap;
    int64_t lines;
    int64_t line_height;
    char *key;
} sheet_ctx;

static const dsp_param_def sheet_params[] = {
    { .name = "enable", .type = DSP_PARAM_BOOL, .def = "true", .offset = offsetof(sheet_ctx, enable),
      .doc = "false: drop every packet, so nothing downstream draws or writes (a pipe arg "
             "switches the sheet branch off)" },
    { .name = "input", .type = DSP_PARAM_STRING, .def = "frames", .offset = offsetof(sheet_ctx, input),
      .doc = "the clip: u8 [T, H, W, 3] as video.decode makes it (video.classify keep_input=true)" },
    { .name = "output", .type = DSP_PARAM_STRING, .def = "image", .offset = offsetof(sheet_ctx, output),
      .doc = "name of the u8 H x W x 3 sheet tensor that replaces the clip" },
    { .name = "columns", .type = DSP_PARAM_INT, .def = "4", .min = 1, .max = 256,
      .offset = offsetof(sheet_ctx, columns), .doc = "thumbnails per row (fewer when the clip is shorter)" },
    { .name = "width", .type = DSP_PARAM_INT, .def = "128", .min = 0, .max = 4096,
      .offset = offsetof(sheet_ctx, width),
      .doc = "thumbnail width in pixels, height keeping the frames' aspect ratio (libswscale "
             "bilinear); 0: the frames' own size" },
    { .name = "gap", .type = DSP_PARAM_INT, .def = "2", .min = 0, .max = 256,
      .offset = offsetof(sheet_ctx, gap), .doc = "black pixels between and around the thumbnails" },
    { .name = "lines", .type = DSP_PARAM_INT, .def = "3", .min = 0, .max = 64,
      .offset = offsetof(sheet_ctx, lines),
      .doc = "top-k entries listed under the file name (at most those in meta topk)" },
    { .name = "line_height", .type = DSP_PARAM_INT, .def = "16", .min = 4, .max = 512,
      .offset = offsetof(sheet_ctx, line_height),
      .doc = "pixels per text line of the band above the thumbnails; 16 fits image.overlay "
             "font_size=12" },
    { .name = "key", .type = DSP_PARAM_STRING, .def = "overlay", .offset = offsetof(sheet_ctx, key),
      .doc = "meta key of the text items for image.overlay" },
    { NULL }
};

static const dsp_port_def sheet_in[] = {
    { .name = "in", .type = "tensor",
      .doc = "one classified clip per packet: video.classify keep_input=true (meta label, score, topk)" },
    { NULL }
};
static const dsp_port_def sheet_out[] = {
    { .name = "out", .type = "image:u8:rgb",
      .doc = "the sheet image and meta overlay: its text lines, for image.overlay then image.encode" },
    { NULL }
};

/* As video.decode's max_pixels default: 768 MiB of RGB. */
#define SHEET_MAX_PIXELS ((int64_t)1 << 28)

/* Where the pieces of a sheet go, in pixels. */
typedef struct sheet_layout {
    int64_t t, fh, fw;                  /* the clip: frames x height x width */
    int tw, th;                         /* one thumbnail */
    int64_t cols, rows, band, w, h;     /* band: height of the text band at the top */
} sheet_layout;

static void sheet_plan(const sheet_ctx *c, int64_t nlines, sheet_layout *l)
{
    video_target_size((int)l->fw, (int)l->fh, (int)c->width, 0, 0, &l->tw, &l->th);
    l->cols = l->t < c->columns ? l->t : c->columns;
    l->rows = (l->t + l->cols - 1) / l->cols;
    l->band = nlines * c->line_height;
    l->w = c->gap + l->cols * (l->tw + c->gap);
    l->h = c->gap + l->band + l->rows * (l->th + c->gap);
}

/* Copy frame t of the clip, scaled to the thumbnail size, into its tile of
 * the sheet. swscale reads and writes through 64-byte aligned images: its
 * SIMD converters get row ends wrong on other strides (see decode.c). */
static int sheet_tile(const sheet_ctx *c, const sheet_layout *l, const dsp_tensor *clip, int64_t t,
                      struct SwsContext **sws, uint8_t *sheet)
{
    const int64_t *st = clip->stride;
    const uint8_t *src = (const uint8_t *)dsp_tensor_data(clip) + t * st[0];
    int64_t x0 = c->gap + (t % l->cols) * (l->tw + c->gap);
    int64_t y0 = c->gap + l->band + (t / l->cols) * (l->th + c->gap);
    uint8_t *dst = sheet + (y0 * l->w + x0) * 3;
    if (l->tw == l->fw && l->th == l->fh) {
        for (int64_t y = 0; y < l->fh; y++)
            for (int64_t x = 0; x < l->fw; x++)
                for (int ch = 0; ch < 3; ch++)
                    dst[(y * l->w + x) * 3 + ch] = src[y * st[1] + x * st[2] + ch * st[3]];
        return 0;
    }
    if (!*sws && !(*sws = sws_getContext((int)l->fw, (int)l->fh, AV_PIX_FMT_RGB24, l->tw, l->th,
                                         AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL, NULL, NULL)))
        return DSP_EUNSUPPORTED;
    uint8_t *in[4] = { NULL }, *out[4] = { NULL };
    int in_ls[4], out_ls[4];
    if (av_image_alloc(in, in_ls, (int)l->fw, (int)l->fh + 1, AV_PIX_FMT_RGB24, 64) < 0 ||
        av_image_alloc(out, out_ls, l->tw, l->th + 1, AV_PIX_FMT_RGB24, 64) < 0) {
        av_freep(&in[0]);
        return DSP_ENOMEM;
    }
    for (int64_t y = 0; y < l->fh; y++)
        for (int64_t x = 0; x < l->fw; x++)
            for (int ch = 0; ch < 3; ch++)
                in[0][y * in_ls[0] + x * 3 + ch] = src[y * st[1] + x * st[2] + ch * st[3]];
    sws_scale(*sws, (const uint8_t *const *)in, in_ls, 0, (int)l->fh, out, out_ls);
    for (int y = 0; y < l->th; y++)
        memcpy(dst + (int64_t)y * l->w * 3, out[0] + (size_t)y * (size_t)out_ls[0], (size_t)l->tw * 3);
    av_freep(&in[0]);
    av_freep(&out[0]);
    return 0;
}

/* The band's text: the file name, then up to `lines` top-k entries "label
 * 0.930" (meta topk, else label and score), as image.overlay text items one
 * line_height apart. NULL with why on a packet that was not classified. */
static json_t *sheet_text(const sheet_ctx *c, const dsp_packet *p, char *why, size_t n)
{
    const dsp_meta *m = dsp_packet_meta_const(p);
    const char *label = NULL, *name = NULL;
    double score;
    if (dsp_meta_get_str(m, "label", &label) < 0 || dsp_meta_get_float(m, "score", &score) < 0) {
        snprintf(why, n, "no meta label and score: put video.classify before video.contact_sheet");
        return NULL;
    }
    char fallback[32];
    if (dsp_meta_get_str(m, "name", &name) < 0 && dsp_meta_get_str(m, "path", &name) == 0) {
        const char *slash = strrchr(name, '/');
        name = slash ? slash + 1 : name;
    }
    if (!name) {
        snprintf(fallback, sizeof fallback, "item %lld", (long long)dsp_packet_item(p));
        name = fallback;
    }
    char *text = dsp_meta_to_json(m);
    json_t *meta = text ? json_loads(text, 0, NULL) : NULL, *items = json_array();
    free(text);
    json_t *topk = json_object_get(meta, "topk");
    int ok = meta && items;
    ok = ok && json_array_append_new(items, json_pack("{s:s, s:[i, i], s:s}", "text", name, "at",
                                                      (int)c->gap, (int)c->gap, "color", "white")) == 0;
    for (int64_t i = 0; ok && i < c->lines; i++) {
        const char *l = label;
        double s = score;
        if (json_is_array(topk)) {
            json_t *e = json_array_get(topk, (size_t)i);
            if (!e)
                break;
            l = json_string_value(json_object_get(e, "label"));
            s = json_number_value(json_object_get(e, "score"));
        } else if (i > 0) {
            break;
        }
        char line[256];
        snprintf(line, sizeof line, "%s %.3f", l ? l : "?", s);
        int y = (int)(c->gap + (i + 1) * c->line_height);
        ok = json_array_append_new(items, json_pack("{s:s, s:[i, i], s:s}", "text", line, "at", (int)c->gap, y,
                                                    "color", i == 0 ? "yellow" : "white")) == 0;
    }
    json_decref(meta);
    if (!ok) {
        json_decref(items);
        snprintf(why, n, "out of memory");
        return NULL;
    }
    return items;
}

static int sheet_process(dsp_node *node, dsp_packet **in)
{
    sheet_ctx *c = dsp_node_priv(node);
    const dsp_packet *p = in[0];
    if (!c->enable)
        return 0;
    char why[256], desc[96], item[32];
    const char *where = item;
    if (dsp_meta_get_str(dsp_packet_meta_const(p), "path", &where) < 0)
        snprintf(item, sizeof item, "item %lld", (long long)dsp_packet_item(p));
    const dsp_tensor *clip = dsp_packet_tensor(p, c->input);
    if (!clip)
        return dsp_node_fail(node, DSP_EINVAL, "%s: no tensor '%s': set keep_input=true on "
                             "video.classify (it drops the clip otherwise) or set input=", where, c->input);
    dsp_tensor_describe(clip, desc, sizeof desc);
    if (clip->dtype != DSP_DTYPE_U8 || clip->ndim != 4 || clip->shape[3] != 3 ||
        clip->device.type != DSP_DEVICE_CPU || clip->shape[0] < 1 || clip->shape[1] < 1 || clip->shape[2] < 1)
        return dsp_node_fail(node, DSP_EINVAL, "%s: clip '%s' is %s: expected u8 [frames, height, "
                             "width, 3] on the CPU, as video.decode makes it (a normalised f32 clip "
                             "cannot be shown: take the frames before normalising)", where, c->input, desc);
    json_t *items = sheet_text(c, p, why, sizeof why);
    if (!items)
        return dsp_node_fail(node, DSP_EINVAL, "%s: %s", where, why);
    sheet_layout l = { .t = clip->shape[0], .fh = clip->shape[1], .fw = clip->shape[2] };
    sheet_plan(c, (int64_t)json_array_size(items), &l);
    if (l.w > 65536 || l.h > 65536 || l.w * l.h > SHEET_MAX_PIXELS) {
        json_decref(items);
        return dsp_node_fail(node, DSP_ELIMIT, "%s: clip '%s' is %s: a sheet of %lld x %lld pixels "
                             "(at most 65536 a side, 2^28 in all); lower width= or change columns=", where, c->input, desc,
                             (long long)l.w, (long long)l.h);
    }
    int64_t shape[3] = { l.h, l.w, 3 };
    dsp_tensor *sheet = NULL;
    dsp_packet *out = NULL;
    struct SwsContext *sws = NULL;
    char *text = json_dumps(items, JSON_COMPACT);
    json_decref(items);
    int err = text ? dsp_tensor_new(DSP_DTYPE_U8, 3, shape, &sheet) : DSP_ENOMEM;
    if (!err)
        memset(dsp_tensor_data(sheet), 0, dsp_tensor_nbytes(sheet));
    for (int64_t t = 0; !err && t < l.t; t++)
        err = sheet_tile(c, &l, clip, t, &sws, dsp_tensor_data(sheet));
    sws_freeContext(sws);
    if (!err && (err = dsp_packet_derive(p, &out)) == 0) {
        (void)dsp_packet_remove_tensor(out, c->input);
        err = dsp_packet_set_tensor(out, c->output, sheet);   /* transfer full */
        sheet = NULL;
    }
    dsp_meta *m = out ? dsp_packet_meta(out) : NULL;
    if (!err && (err = dsp_meta_set_json(m, c->key, text)) == 0 &&
        (err = dsp_meta_set_int(m, "width", l.w)) == 0 && (err = dsp_meta_set_int(m, "height", l.h)) == 0)
        err = dsp_meta_set_str(m, "layout", "hwc");
    free(text);
    dsp_tensor_unref(&sheet);
    if (err < 0) {
        dsp_packet_unref(&out);
        return dsp_node_fail(node, err, "%s: cannot make the sheet of clip '%s' (%s): %s", where, c->input,
                             desc, err == DSP_EUNSUPPORTED ? "libswscale refused the scaling" : dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, out);
}

const dsp_op_def video_contact_sheet_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "video.contact_sheet",
    .doc = "tile a classified clip's frames into one RGB image with its file name and top-k labels "
           "as image.overlay text (then image.encode writes it)",
    .inputs = sheet_in,
    .outputs = sheet_out,
    .params = sheet_params,
    .priv_size = sizeof(sheet_ctx),
    .process = sheet_process,
};
