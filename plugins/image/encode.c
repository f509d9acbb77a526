/* encode.c - image.encode: write each image as a PNG (libpng) or JPEG (TurboJPEG) file, atomically. */
#include "image.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { FORMAT_AUTO, FORMAT_PNG, FORMAT_JPEG };
static const char *const encode_formats[] = { "auto", "png", "jpeg", NULL };
static const char *const encode_subsampling[] = { "444", "422", "420", NULL };

typedef struct encode_ctx {
    char *path;
    int format;
    int64_t quality;
    int subsampling;
    int64_t compression;
    int drop_alpha;
    char *name;
    char *root;
    int fmt;                    /* resolved FORMAT_PNG / FORMAT_JPEG */
} encode_ctx;

static const dsp_param_def encode_params[] = {
    { .name = "path", .type = DSP_PARAM_STRING, .offset = offsetof(encode_ctx, path),
      .doc = "output file template: {item}, {part}, {stem} (file name of meta path/source "
             "without its extension, else the item number), {rel} (meta path/source below root=, "
             "subfolders kept, without its extension)" },
    { .name = "format", .type = DSP_PARAM_ENUM, .def = "auto", .choices = encode_formats,
      .offset = offsetof(encode_ctx, format),
      .doc = "png or jpeg; auto picks it from the extension (.png, .jpg, .jpeg)" },
    { .name = "quality", .type = DSP_PARAM_INT, .def = "90", .min = 1, .max = 100,
      .offset = offsetof(encode_ctx, quality), .doc = "JPEG quality" },
    { .name = "subsampling", .type = DSP_PARAM_ENUM, .def = "420", .choices = encode_subsampling,
      .offset = offsetof(encode_ctx, subsampling),
      .doc = "JPEG chroma subsampling of colour images: 444, 422 or 420" },
    { .name = "compression", .type = DSP_PARAM_INT, .def = "6", .min = 0, .max = 9,
      .offset = offsetof(encode_ctx, compression), .doc = "PNG zlib level (0 = none, 9 = best)" },
    { .name = "drop_alpha", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(encode_ctx, drop_alpha),
      .doc = "JPEG: write gray+alpha / RGBA images without their alpha (else they fail)" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "image",
      .offset = offsetof(encode_ctx, name), .doc = "the image tensor to write" },
    { .name = "root", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(encode_ctx, root),
      .doc = "{rel}: the folder the input paths are under (files.list dir=), cut from their front" },
    { NULL }
};

static const dsp_port_def encode_in[] = {
    { "in", "image", "u8 (PNG also u16) H x W x C images, C = 1 to 4" },
    { NULL }
};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static int encode_init(dsp_node *node)
{
    encode_ctx *c = dsp_node_priv(node);
    if (!c->path || !c->path[0])
        return dsp_node_fail(node, DSP_EINVAL, "path must not be empty");
    for (const char *p = c->path; (p = strchr(p, '{')); p++) {
        if (strncmp(p, "{item}", 6) && strncmp(p, "{part}", 6) && strncmp(p, "{stem}", 6) &&
            strncmp(p, "{rel}", 5))
            return dsp_node_fail(node, DSP_EINVAL, "path '%s': unknown placeholder at '%s'; "
                                 "use {item}, {part}, {stem} or {rel}", c->path, p);
    }
    c->fmt = c->format;
    if (c->fmt == FORMAT_AUTO) {
        if (ends_with(c->path, ".png"))
            c->fmt = FORMAT_PNG;
        else if (ends_with(c->path, ".jpg") || ends_with(c->path, ".jpeg"))
            c->fmt = FORMAT_JPEG;
        else
            return dsp_node_fail(node, DSP_EINVAL, "cannot tell the format from path '%s': "
                                 "end it in .png, .jpg or .jpeg, or set format=png|jpeg",
                                 c->path);
    }
#ifndef HAVE_PNG
    if (c->fmt == FORMAT_PNG)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "this dspipe was built without libpng: "
                             "cannot write PNG");
#endif
#ifndef HAVE_TURBOJPEG
    if (c->fmt == FORMAT_JPEG)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "this dspipe was built without "
                             "libjpeg-turbo: cannot write JPEG");
#endif
    return 0;
}

/* Append s (n bytes) to the growing string *out. */
static int append(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *p = realloc(*out, nc);
        if (!p)
            return DSP_ENOMEM;
        *out = p;
        *cap = nc;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
    return 0;
}

/* The last ch in s[0..n), or NULL. */
static const char *last_of(const char *s, size_t n, char ch)
{
    while (n > 0)
        if (s[--n] == ch)
            return s + n;
    return NULL;
}

/* The file name of src[0..len) without its extension; "." and ".." become "_". */
static void stem_of(const char *src, size_t len, char *stem, size_t n)
{
    const char *base = last_of(src, len, '/');
    base = base ? base + 1 : src;
    size_t blen = len - (size_t)(base - src);
    const char *dot = last_of(base, blen, '.');
    size_t k = dot && dot != base ? (size_t)(dot - base) : blen;
    snprintf(stem, n, "%.*s", (int)k, base);
    if (strcmp(stem, ".") == 0 || strcmp(stem, "..") == 0 || !stem[0])
        snprintf(stem, n, "_");
}

/* {rel}: src below root (when it is under it), its folders kept and its
 * extension dropped. Leading '/', empty and "." components are left out and
 * ".." becomes "_", so the result stays inside the template's folder. */
static int rel_of(const char *root, const char *src, char **out, size_t *len, size_t *cap)
{
    size_t r = strlen(root);
    while (r > 1 && root[r - 1] == '/')
        r--;
    if (r && strncmp(src, root, r) == 0 && (src[r] == '/' || root[r - 1] == '/'))
        src += r;
    int first = 1;
    while (*src) {
        size_t k = strcspn(src, "/");
        const char *part = src;
        src += k;
        if (*src)
            src++;
        if (k == 0 || (k == 1 && part[0] == '.'))
            continue;
        char stem[256];
        if (!*src)              /* the file name */
            stem_of(part, k, stem, sizeof stem);
        else
            snprintf(stem, sizeof stem, "%.*s", (int)k, k == 2 && !strncmp(part, "..", 2) ? "_" : part);
        if ((!first && append(out, len, cap, "/", 1) < 0) || append(out, len, cap, stem, strlen(stem)) < 0)
            return DSP_ENOMEM;
        first = 0;
    }
    return first ? append(out, len, cap, "_", 1) : 0;
}

/* The template with its placeholders filled; NULL on OOM. {stem} is a file
 * name without directories, {rel} a path below the template's folder, so a
 * value never steers the file out of it. */
static char *expand(const encode_ctx *c, const dsp_packet *p)
{
    char item[32], part[32], stem[256];
    snprintf(item, sizeof item, "%" PRId64, dsp_packet_item(p));
    snprintf(part, sizeof part, "%" PRId64, dsp_packet_part(p));
    const char *src = NULL;
    const dsp_meta *m = dsp_packet_meta_const(p);
    if (dsp_meta_get_str(m, "path", &src) == 0 || dsp_meta_get_str(m, "source", &src) == 0)
        stem_of(src, strlen(src), stem, sizeof stem);
    else
        snprintf(stem, sizeof stem, "%s", item);
    char *out = NULL;
    size_t len = 0, cap = 0;
    for (const char *s = c->path; *s;) {
        const char *v = NULL;
        if (strncmp(s, "{rel}", 5) == 0) {
            if ((src ? rel_of(c->root, src, &out, &len, &cap) : append(&out, &len, &cap, item, strlen(item))) < 0)
                goto oom;
            s += 5;
            continue;
        }
        if (strncmp(s, "{item}", 6) == 0)
            v = item;
        else if (strncmp(s, "{part}", 6) == 0)
            v = part;
        else if (strncmp(s, "{stem}", 6) == 0)
            v = stem;
        if (v) {
            if (append(&out, &len, &cap, v, strlen(v)) < 0)
                goto oom;
            s += 6;
        } else {
            if (append(&out, &len, &cap, s, 1) < 0)
                goto oom;
            s++;
        }
    }
    return out;
oom:
    free(out);
    return NULL;
}

static int encode_process(dsp_node *node, dsp_packet **in)
{
    encode_ctx *c = dsp_node_priv(node);
    dsp_tensor *t = NULL, *src = NULL, *x = NULL;
    image_geom g;
    char wb[64], desc[96], why[IMAGE_WHY];
    const char *where = image_where(in[0], wb, sizeof wb);
    int err = image_find(node, in[0], c->name, IMAGE_LAYOUT_AUTO, &t, &g);
    if (err < 0)
        return err;
    int jpeg = c->fmt == FORMAT_JPEG;
    dsp_tensor_describe(t, desc, sizeof desc);
    if (g.chw)
        return dsp_node_fail(node, DSP_EINVAL, "%s: tensor '%s' (%s) is C x H x W (meta "
                             "layout=chw); image.encode writes H x W x C images: encode "
                             "before image.normalize", where, c->name, desc);
    if (t->dtype != DSP_DTYPE_U8 && (jpeg || t->dtype != DSP_DTYPE_U16))
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s; %s takes u8%s "
                             "images", where, c->name, desc, jpeg ? "JPEG" : "PNG",
                             jpeg ? "" : " or u16");
    if (g.c > 4)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s: %lld channels; "
                             "an image has 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)",
                             where, c->name, desc, (long long)g.c);
    if (jpeg && (g.h > 65500 || g.w > 65500))
        return dsp_node_fail(node, DSP_ELIMIT, "%s: %lld x %lld is larger than JPEG allows "
                             "(65500 per side); write PNG", where, (long long)g.w,
                             (long long)g.h);
    if (jpeg && (g.c == 2 || g.c == 4) && !c->drop_alpha)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: a %s image: JPEG has no alpha "
                             "channel; set drop_alpha=true to write the colour only, or write "
                             "PNG", where, g.c == 2 ? "gray+alpha" : "RGBA");
    if ((err = image_contiguous_hwc(t, &src)) < 0)
        return dsp_node_fail(node, err, "%s: out of memory", where);
    if (jpeg && (g.c == 2 || g.c == 4) &&
        (err = image_convert_channels(src, (int)g.c - 1, &x)) == 0) {
        dsp_tensor_unref(&src);
        src = x;
    }
    if (err < 0) {
        dsp_tensor_unref(&src);
        return dsp_node_fail(node, err, "%s: out of memory", where);
    }

    char *file = expand(c, in[0]);
    dsp_outfile *f = NULL;
    if (!file || (err = dsp_node_claim_output(node, file)) == DSP_ENOMEM) {
        err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    } else if (err < 0) {
        err = dsp_node_fail(node, DSP_EEXIST, "%s: already written for an earlier item in "
                            "this run; make path '%s' unique, e.g. with {item} or {stem}",
                            file, c->path);
    } else if ((err = dsp_outfile_open(node, file, &f)) == 0) {
        err = DSP_EUNSUPPORTED;
        snprintf(why, sizeof why, "not built in");
#ifdef HAVE_TURBOJPEG
        if (jpeg)
            err = image_jpeg_write(dsp_outfile_stream(f), src, (int)c->quality,
                                   c->subsampling, why);
#endif
#ifdef HAVE_PNG
        if (!jpeg)
            err = image_png_write(dsp_outfile_stream(f), src, (int)c->compression, why);
#endif
        if (err < 0) {
            dsp_outfile_discard(&f);
            err = dsp_node_fail(node, err, "%s: cannot write %s: %s", file, jpeg ? "JPEG" : "PNG",
                                why);
        } else {
            err = dsp_outfile_commit(node, &f);
        }
    }
    free(file);
    dsp_tensor_unref(&src);
    return err;
}

const dsp_op_def image_encode_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.encode",
    .doc = "write images as PNG (libpng) or JPEG (TurboJPEG) files named by a template (atomic)",
    .inputs = encode_in,
    .params = encode_params,
    .priv_size = sizeof(encode_ctx),
    .flags = DSP_OP_SINK,
    .init = encode_init,
    .process = encode_process,
};
