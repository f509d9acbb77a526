/* image.h - helpers shared by the operators of the image plugin (not API). */
#ifndef DSP_IMAGE_H
#define DSP_IMAGE_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <dspipe/plugin.h>

/* The operators, each defined in its own file and listed in plugin.c. */
extern const dsp_op_def image_decode_op;
extern const dsp_op_def image_encode_op;
extern const dsp_op_def image_resize_op;
extern const dsp_op_def image_crop_op;
extern const dsp_op_def image_pad_op;
extern const dsp_op_def image_normalize_op;
extern const dsp_op_def image_overlay_op;

/* Room for a decoder's reason, without the file name (the caller adds it). */
#define IMAGE_WHY 384

/* What a decoder returns. The tensor is H x W x C, C = 1 (gray), 2 (gray +
 * alpha), 3 (RGB) or 4 (RGBA), u8 or (PNG only) u16 in host byte order. */
typedef struct image_decoded {
    dsp_tensor *t;              /* owned */
    int orientation;            /* EXIF Orientation 1-8, 0 when absent */
    char warning[IMAGE_WHY];    /* a decoder warning that did not fail it */
} image_decoded;

typedef struct image_decode_opts {
    int64_t max_pixels;         /* width * height above this: DSP_ELIMIT */
    int keep16;                 /* PNG: 16-bit samples stay u16 (else high byte) */
    int strict;                 /* JPEG: a libjpeg warning (damaged data) fails */
} image_decode_opts;

/* Decode one PNG / JPEG held in memory. 0 or a negative DSP_E* code with the
 * reason in why (IMAGE_WHY bytes); out->t is NULL on failure. Never crash
 * or read outside data[0..size) on malformed input. */
int image_png_decode(const uint8_t *data, size_t size, const image_decode_opts *o,
                     image_decoded *out, char *why);
int image_jpeg_decode(const uint8_t *data, size_t size, const image_decode_opts *o,
                      image_decoded *out, char *why);

/* EXIF Orientation (1-8) from a TIFF-structured EXIF block ("II*\0" or
 * "MM\0*" first), or 0 when absent or malformed. Bounds-checked. */
int image_exif_orientation(const uint8_t *tiff, size_t size);
/* The same from a JPEG's first APP1 "Exif" segment (before the first scan). */
int image_jpeg_orientation(const uint8_t *data, size_t size);

/* Write an image (u8/u16 H x W x C, contiguous; JPEG: u8, 1 or 3 channels)
 * to an open stream (FILE *). subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
 * 0 or a negative code with the reason in why. */
int image_png_write(void *fp, const dsp_tensor *t, int level, char *why);
int image_jpeg_write(void *fp, const dsp_tensor *t, int quality, int subsampling, char *why);

/* ---- geometry of an image tensor ------------------------------------------ */
enum { IMAGE_LAYOUT_AUTO, IMAGE_LAYOUT_HWC, IMAGE_LAYOUT_CHW };
extern const char *const image_layout_names[];  /* "auto", "hwc", "chw", NULL */

/* The two parameters every image operator has: the input layout and the
 * name of the image tensor it replaces (ctx: the op's context struct with
 * int `layout` and char *`name` members). */
#define IMAGE_LAYOUT_PARAM(ctx, what)                                                   \
    { .name = "layout", .type = DSP_PARAM_ENUM, .def = "auto", .choices = image_layout_names, \
      .offset = offsetof(ctx, layout),                                                  \
      .doc = what "auto (meta \"layout\", else H x W x C), hwc or chw" }
#define IMAGE_NAME_PARAM(ctx, doc_)                                                     \
    { .name = "name", .type = DSP_PARAM_STRING, .def = "image",                         \
      .offset = offsetof(ctx, name), .doc = doc_ }

typedef struct image_geom {
    int64_t h, w, c;
    int chw;                    /* 1: C x H x W, 0: H x W x C (or H x W: c = 1) */
} image_geom;

/* Find the tensor `name` in p (borrowed) and its geometry. layout AUTO reads
 * meta "layout" ("hwc"/"chw") and falls back to HWC. A 2-D tensor is H x W
 * with one channel. Fails the item (dsp_node_fail) naming the input when the
 * tensor is missing, not 2-D or 3-D, or on another device. */
int image_find(dsp_node *node, const dsp_packet *p, const char *name, int layout,
               dsp_tensor **t, image_geom *g);

/* "what we are working on" for messages: meta source / path, else "item N".
 * Borrowed from p, or from buf. */
const char *image_where(const dsp_packet *p, char *buf, size_t n);

/* Emit in (borrowed) on port 0 with tensor `name` replaced by t (transfer
 * full) and meta width, height (and layout unless NULL) set. Fails the item
 * with a message on error. */
int image_emit_replaced(dsp_node *node, dsp_packet *in, const char *name,
                        dsp_tensor *t, int64_t w, int64_t h, const char *layout);

/* New contiguous tensor shaped like an image of geometry g and dtype dt
 * (H x W x C or C x H x W, 3-D). */
int image_tensor_new(dsp_dtype dt, const image_geom *g, dsp_tensor **out);

/* New image of geometry g with height oh and width ow, any dtype: output
 * pixel (y, x) is src's (rows[y], cols[x]), or fill (one element of
 * dsp_dtype_size bytes) where either index is -1. src is contiguous. The
 * result has src's dimensionality (2-D stays 2-D). */
int image_gather(const dsp_tensor *src, const image_geom *g, int64_t oh, int64_t ow,
                 const int64_t *rows, const int64_t *cols, const void *fill,
                 dsp_tensor **out);

/* A contiguous H x W x C view of t, an H x W x C or (one channel) H x W image
 * (new reference; it may share t's buffer). 0 or DSP_ENOMEM. */
int image_contiguous_hwc(dsp_tensor *t, dsp_tensor **out);

/* ---- pixel operations on contiguous u8/u16 HWC tensors -------------------- */
/* Convert between gray (1), gray+alpha (2), RGB (3) and RGBA (4) the way
 * Pillow's Image.convert does: gray = (19595 R + 38470 G + 7471 B + 2^15)
 * >> 16, gray -> RGB replicates, alpha dropped or set to the maximum.
 * *out is a new tensor (or a new reference to t when nothing changes). */
int image_convert_channels(dsp_tensor *t, int channels, dsp_tensor **out);
/* Apply EXIF orientation 2-8 (1 or 0: a new reference to t), as Pillow's
 * ImageOps.exif_transpose does. */
int image_apply_orientation(dsp_tensor *t, int orientation, dsp_tensor **out);

/* ---- resampling (resample.c) ---------------------------------------------- */
enum { IMAGE_FILTER_NEAREST, IMAGE_FILTER_BILINEAR, IMAGE_FILTER_BICUBIC, IMAGE_FILTER_BOX,
       IMAGE_FILTER_HAMMING, IMAGE_FILTER_LANCZOS };

/* Resize src (contiguous, geometry g, u8 / u16 / f32) to ow x oh into a new
 * tensor of the same dtype and layout. u8 follows Pillow's Image.resize bit
 * for bit (fixed-point coefficients, an 8-bit intermediate after the
 * horizontal pass, premultiplied alpha for 2 and 4 channels when
 * premultiply); f32 follows the same filters in double precision (torch's
 * antialiased interpolate); u16 computes in double and rounds. antialias = 0
 * keeps the filter's support at 1 source pixel when downscaling. Returns 0,
 * DSP_ENOMEM, DSP_EUNSUPPORTED (another dtype) or DSP_ELIMIT (a filter too
 * wide to tabulate). */
int image_resample(const dsp_tensor *src, const image_geom *g, int64_t ow, int64_t oh,
                   int filter, int antialias, int premultiply, dsp_tensor **out);

/* ---- drawing on u8 RGB / RGBA images (draw.c, text.c) -------------------- */
/* A contiguous u8 H x W x C pixel buffer, C = 3 or 4, drawn on in place.
 * Every primitive clips at the borders: pixels outside are skipped. */
typedef struct image_canvas {
    uint8_t *px;
    int64_t w, h;
    int c;
} image_canvas;

typedef struct image_rgb {
    uint8_t r, g, b;
} image_rgb;

/* "#rrggbb" or one of a few names (red, green, blue, yellow, cyan, magenta,
 * white, black, orange); 0 or DSP_EINVAL. */
int image_parse_color(const char *s, image_rgb *out);

/* Paint pixel (x, y) with col at coverage cover (0-255): each channel
 * becomes (dst (255 - cover) + col cover + 127) / 255; alpha, when there is
 * one, becomes cover + dst (255 - cover) / 255 ("over"). */
void image_blend(const image_canvas *cv, int64_t x, int64_t y, image_rgb col, unsigned cover);
/* Outline of the rectangle with inclusive corners (x0, y0), (x1, y1) (x0 <=
 * x1, y0 <= y1), thickness pixels wide, growing inward. */
void image_draw_rect(const image_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                     int thickness, image_rgb col);
/* A Bresenham line (not anti-aliased) from (x0, y0) to (x1, y1), both ends
 * included, each point stamped with a thickness x thickness square (its
 * centre pixel rounded up-left for even sizes). */
void image_draw_line(const image_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                     int thickness, image_rgb col);
/* The boundary of every labelled region of mask (u8, w x h like cv, 0 =
 * background): a pixel of label v > 0 whose 4-neighbour differs or lies
 * outside the image gets palette[(v - 1) % n]. */
void image_draw_contours(const image_canvas *cv, const uint8_t *mask, const image_rgb *palette,
                         int n);

/* A TrueType/OpenType face at one pixel size (FreeType). NULL-safe free. */
typedef struct image_font image_font;
/* Load path at size pixels (em height). On failure the reason, naming the
 * file (and for a missing file the Debian package of the default font), is
 * in why (IMAGE_WHY bytes): DSP_ENOENT, DSP_EFORMAT, DSP_EUNSUPPORTED (built
 * without FreeType) or DSP_ENOMEM. */
int image_font_open(const char *path, int size, image_font **out, char *why);
void image_font_free(image_font **f);
/* Height of a line in pixels: ascender - descender, no extra gap. */
int image_font_line_height(const image_font *f);
/* Draw UTF-8 text with its first line's top (the ascender line) at y and
 * its left edge at x; '\n' starts a new line. Glyphs are anti-aliased
 * (FreeType's 8-bit coverage, hinted) and blended with image_blend; no
 * kerning, no shaping (one glyph per code point). 0, DSP_EFORMAT (bad
 * UTF-8) or DSP_EFORMAT from FreeType with the reason in why. */
int image_draw_text(const image_canvas *cv, image_font *f, int64_t x, int64_t y,
                    const char *text, image_rgb col, char *why);

#endif /* DSP_IMAGE_H */
