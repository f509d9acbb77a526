/* decode.c - image.decode: PNG (libpng) and JPEG (TurboJPEG) files or bytes to u8/u16 HWC tensors. */
#include "image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { MODE_KEEP, MODE_GRAY, MODE_GRAY_ALPHA, MODE_RGB, MODE_RGBA };
static const char *const decode_modes[] = { "keep", "gray", "gray_alpha", "rgb", "rgba", NULL };
static const char *const mode_of_channels[] = { "", "gray", "gray_alpha", "rgb", "rgba" };
enum { DEPTH_KEEP, DEPTH_8 };
static const char *const decode_depths[] = { "keep", "8", NULL };

typedef struct decode_ctx {
    char *name;
    char *bytes;
    int mode;
    int depth;
    int orient;
    int strict;
    int64_t max_pixels;
} decode_ctx;

static const dsp_param_def decode_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "image",
      .offset = offsetof(decode_ctx, name),
      .doc = "name of the output tensor (H x W x C)" },
    { .name = "bytes", .type = DSP_PARAM_STRING, .def = "bytes",
      .offset = offsetof(decode_ctx, bytes),
      .doc = "a u8 tensor of this name holding an encoded image is decoded (and removed); "
             "without one, the file named by meta \"path\" is read" },
    { .name = "mode", .type = DSP_PARAM_ENUM, .def = "keep", .choices = decode_modes,
      .offset = offsetof(decode_ctx, mode),
      .doc = "channels: keep (as stored; palettes expand to RGB, tRNS to alpha), gray, "
             "gray_alpha, rgb, rgba (converted as Pillow's Image.convert)" },
    { .name = "depth", .type = DSP_PARAM_ENUM, .def = "keep", .choices = decode_depths,
      .offset = offsetof(decode_ctx, depth),
      .doc = "16-bit PNGs: keep (u16) or 8 (u8: the high byte of each sample, as Pillow)" },
    { .name = "orient", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(decode_ctx, orient),
      .doc = "apply the EXIF Orientation tag (JPEG APP1, PNG eXIf) as Pillow's "
             "ImageOps.exif_transpose" },
    { .name = "strict", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(decode_ctx, strict),
      .doc = "fail a JPEG on any libjpeg warning (truncated or corrupt data); false "
             "accepts it, logs the warning and sets meta decode_warning" },
    { .name = "max_pixels", .type = DSP_PARAM_INT, .def = "178956970", .min = 1,
      .max = 1e12, .offset = offsetof(decode_ctx, max_pixels),
      .doc = "refuse images with more pixels (width x height) before allocating; "
             "the default is Pillow's decompression-bomb limit" },
    { NULL }
};

static const dsp_port_def decode_in[] = {
    { "in", "any", "records with meta \"path\" (files.list) or a u8 tensor of encoded bytes" },
    { NULL }
};
static const dsp_port_def decode_out[] = {
    { "out", "image", "the input packet plus the decoded image and meta width, height, "
      "channels, mode, bit_depth, format, orientation, layout" },
    { NULL }
};

/* What the first bytes say a file is, for the message when it is neither
 * PNG nor JPEG. */
static const char *sniff(const uint8_t *d, size_t n)
{
    static const struct { const char *magic; size_t len; const char *name; } known[] = {
        { "GIF87a", 6, "a GIF image" }, { "GIF89a", 6, "a GIF image" },
        { "BM", 2, "a BMP image" }, { "II*\0", 4, "a TIFF image" },
        { "MM\0*", 4, "a TIFF image" }, { "\0\0\0\x0cjP  ", 8, "a JPEG 2000 image" },
        { "\xff\x4f\xff\x51", 4, "a JPEG 2000 codestream" }, { "%PDF", 4, "a PDF document" },
        { "\x1a\x45\xdf\xa3", 4, "a Matroska/WebM file" }, { "\x93NUMPY", 6, "a .npy file" },
        { "DICM", 4, "a DICOM file" }, { "<", 1, "text (HTML or XML?)" },
    };
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return "a WebP image";
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0)
        return "a DICOM file";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (n >= known[i].len && memcmp(d, known[i].magic, known[i].len) == 0)
            return known[i].name;
    return NULL;
}

static int is_png(const uint8_t *d, size_t n)
{
    return n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int is_jpeg(const uint8_t *d, size_t n)
{
    return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
}

/* Decode data into pkt (writable). where names the input in messages. */
static int decode_into(dsp_node *node, decode_ctx *c, const uint8_t *data, size_t size,
                       const char *where, dsp_packet *pkt)
{
    if (size == 0)
        return dsp_node_fail(node, DSP_EFORMAT, "%s: empty (0 bytes): not an image; "
                             "re-export or remove the file", where);
    int png = is_png(data, size), jpeg = !png && is_jpeg(data, size);
    if (!png && !jpeg) {
        const char *what = sniff(data, size);
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < size && i < 8; i++)
            snprintf(hex + 3 * i, 4, "%02x ", data[i]);
        if (hex[0])
            hex[strlen(hex) - 1] = '\0';
        return dsp_node_fail(node, DSP_EUNSUPPORTED,
                             "%s: not a PNG or JPEG file (%s, first bytes %s); image.decode "
                             "reads PNG and JPEG: convert it first", where,
                             what ? what : "unknown format", hex);
    }
#ifndef HAVE_PNG
    if (png)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: a PNG file, but this dspipe was "
                             "built without libpng (apt-get install libpng-dev, re-run "
                             "configure)", where);
#endif
#ifndef HAVE_TURBOJPEG
    if (jpeg)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: a JPEG file, but this dspipe was "
                             "built without libjpeg-turbo (apt-get install "
                             "libturbojpeg0-dev, re-run configure)", where);
#endif
    image_decode_opts o = { .max_pixels = c->max_pixels, .keep16 = c->depth == DEPTH_KEEP,
                            .strict = c->strict };
    image_decoded d = { 0 };
    char why[IMAGE_WHY];
    int err = DSP_EUNSUPPORTED;
#ifdef HAVE_PNG
    if (png)
        err = image_png_decode(data, size, &o, &d, why);
#endif
#ifdef HAVE_TURBOJPEG
    if (jpeg)
        err = image_jpeg_decode(data, size, &o, &d, why);
#endif
    const char *fmt = png ? "PNG" : "JPEG";
    if (err == DSP_ELIMIT)
        return dsp_node_fail(node, err, "%s: %s; raise max_pixels if the image is real",
                             where, why);
    if (err == DSP_EUNSUPPORTED || err == DSP_ENOMEM)
        return dsp_node_fail(node, err, "%s: %s", where, why);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: corrupt or truncated %s (%zu bytes): %s; "
                             "re-export the file, or remove it", where, fmt, size, why);
    if (d.warning[0])
        dsp_node_log(node, png ? DSP_LOG_VERBOSE : DSP_LOG_WARNING, "%s: %s: %s", where,
                     png ? "libpng warning" : "damaged JPEG accepted (strict=false)",
                     d.warning);

    /* the mode's index is its channel count */
    dsp_tensor *t = d.t, *x = NULL;
    if (c->mode != MODE_KEEP && (err = image_convert_channels(t, c->mode, &x)) == 0) {
        dsp_tensor_unref(&t);
        t = x;
        x = NULL;
    }
    if (!err && c->orient && d.orientation > 1 &&
        (err = image_apply_orientation(t, d.orientation, &x)) == 0) {
        dsp_tensor_unref(&t);
        t = x;
    }
    if (err < 0) {
        dsp_tensor_unref(&t);
        return dsp_node_fail(node, err, "%s: out of memory", where);
    }
    int64_t h = t->shape[0], w = t->shape[1], ch = t->shape[2];
    int bits = t->dtype == DSP_DTYPE_U16 ? 16 : 8;
    dsp_meta *m = dsp_packet_meta(pkt);
    err = dsp_packet_set_tensor(pkt, c->name, t);
    if (!err)
        err = dsp_meta_set_int(m, "width", w);
    if (!err)
        err = dsp_meta_set_int(m, "height", h);
    if (!err)
        err = dsp_meta_set_int(m, "channels", ch);
    if (!err)
        err = dsp_meta_set_str(m, "mode", mode_of_channels[ch]);
    if (!err)
        err = dsp_meta_set_int(m, "bit_depth", bits);
    if (!err)
        err = dsp_meta_set_str(m, "format", png ? "png" : "jpeg");
    if (!err)
        err = dsp_meta_set_str(m, "layout", "hwc");
    if (!err && d.orientation)
        err = dsp_meta_set_int(m, "orientation", d.orientation);
    if (!err && d.warning[0] && jpeg)
        err = dsp_meta_set_str(m, "decode_warning", d.warning);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot store the image: %s", where,
                             dsp_strerror(err));
    return 0;
}

static int decode_process(dsp_node *node, dsp_packet **in)
{
    decode_ctx *c = dsp_node_priv(node);
    dsp_packet *out = NULL;
    dsp_buffer *file = NULL;
    char wb[64];
    const char *path = NULL;
    dsp_tensor *enc = c->bytes && c->bytes[0] ? dsp_packet_tensor(in[0], c->bytes) : NULL;
    if (!enc && dsp_meta_get_str(dsp_packet_meta_const(in[0]), "path", &path) < 0)
        return dsp_node_fail(node, DSP_EINVAL,
                             "item %" PRId64 " has neither a tensor '%s' of encoded bytes nor "
                             "a string meta \"path\"; connect image.decode to files.list",
                             dsp_packet_item(in[0]), c->bytes);
    int err = dsp_packet_derive(in[0], &out);
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    const char *where = image_where(out, wb, sizeof wb);
    if (enc) {
        char desc[96];
        dsp_tensor *bytes = NULL;
        if (enc->dtype != DSP_DTYPE_U8 || enc->ndim != 1 || enc->device.type != DSP_DEVICE_CPU) {
            err = dsp_node_fail(node, DSP_EINVAL, "%s: tensor '%s' is %s; encoded bytes are a "
                                "1-D u8 CPU tensor", where, c->bytes,
                                dsp_tensor_describe(enc, desc, sizeof desc));
        } else if ((err = dsp_tensor_contiguous(enc, &bytes)) < 0) {
            err = dsp_node_fail(node, err, "%s: out of memory", where);
        } else {
            err = decode_into(node, c, dsp_tensor_data(bytes), (size_t)bytes->shape[0], where,
                              out);
            dsp_tensor_unref(&bytes);
            if (!err)
                dsp_packet_remove_tensor(out, c->bytes);
        }
    } else {
        dsp_meta_get_str(dsp_packet_meta_const(out), "path", &path);
        err = dsp_buffer_map_file(path, &file);
        if (err < 0)
            err = dsp_node_fail(node, err, "%s: cannot read: %s", path,
                                err == DSP_EINVAL ? "not a regular file" : strerror(errno));
        else
            err = decode_into(node, c, dsp_buffer_data(file), dsp_buffer_size(file), path, out);
        dsp_buffer_unref(&file);
    }
    if (err < 0) {
        dsp_packet_unref(&out);
        return err;
    }
    return dsp_node_emit(node, 0, out);
}

const dsp_op_def image_decode_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "image.decode",
    .doc = "decode PNG (libpng) and JPEG (TurboJPEG) files or bytes to H x W x C u8/u16 images",
    .inputs = decode_in,
    .outputs = decode_out,
    .params = decode_params,
    .priv_size = sizeof(decode_ctx),
    .process = decode_process,
};
