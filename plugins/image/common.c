/* common.c - image tensor lookup, channel conversion and EXIF orientation shared by the image operators. */
#include "image.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *const image_layout_names[] = { "auto", "hwc", "chw", NULL };

const char *image_where(const dsp_packet *p, char *buf, size_t n)
{
    const char *s = NULL;
    const dsp_meta *m = dsp_packet_meta_const(p);
    if (dsp_meta_get_str(m, "path", &s) == 0 || dsp_meta_get_str(m, "source", &s) == 0)
        return s;
    snprintf(buf, n, "item %" PRId64, dsp_packet_item(p));
    return buf;
}

int image_find(dsp_node *node, const dsp_packet *p, const char *name, int layout,
               dsp_tensor **t, image_geom *g)
{
    char wb[64];
    const char *where = image_where(p, wb, sizeof wb);
    dsp_tensor *x = dsp_packet_tensor(p, name);
    if (!x)
        return dsp_node_fail(node, DSP_ENOENT,
                             "%s: no tensor '%s' in the packet; decode it first "
                             "(image.decode) or set name= to the image tensor's name",
                             where, name);
    if (x->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EUNSUPPORTED,
                             "%s: tensor '%s' is on a GPU; image operators work on "
                             "CPU tensors", where, name);
    char desc[96];
    if (layout == IMAGE_LAYOUT_AUTO) {
        const char *l = NULL;
        int known = dsp_meta_get_str(dsp_packet_meta_const(p), "layout", &l) == 0;
        layout = known && strcmp(l, "chw") == 0 ? IMAGE_LAYOUT_CHW : IMAGE_LAYOUT_HWC;
        /* a guess that would silently treat 224 rows as channels: ask instead */
        if (!known && x->ndim == 3 && x->shape[0] <= 4 && x->shape[2] > 4)
            return dsp_node_fail(node, DSP_EINVAL,
                                 "%s: tensor '%s' is %s and has no meta \"layout\": it looks "
                                 "like C x H x W; set layout=chw (or layout=hwc if it has %lld "
                                 "channels)", where, name,
                                 dsp_tensor_describe(x, desc, sizeof desc),
                                 (long long)x->shape[2]);
    }
    if (x->ndim == 2) {
        *g = (image_geom){ .h = x->shape[0], .w = x->shape[1], .c = 1, .chw = 0 };
    } else if (x->ndim == 3 && layout == IMAGE_LAYOUT_CHW) {
        *g = (image_geom){ .c = x->shape[0], .h = x->shape[1], .w = x->shape[2], .chw = 1 };
    } else if (x->ndim == 3) {
        *g = (image_geom){ .h = x->shape[0], .w = x->shape[1], .c = x->shape[2], .chw = 0 };
    } else {
        return dsp_node_fail(node, DSP_EINVAL,
                             "%s: tensor '%s' is %s; an image is H x W, H x W x C "
                             "or (layout=chw) C x H x W", where, name,
                             dsp_tensor_describe(x, desc, sizeof desc));
    }
    if (g->h <= 0 || g->w <= 0 || g->c <= 0)
        return dsp_node_fail(node, DSP_EINVAL, "%s: tensor '%s' is %s: an empty image",
                             where, name, dsp_tensor_describe(x, desc, sizeof desc));
    *t = x;
    return 0;
}

int image_tensor_new(dsp_dtype dt, const image_geom *g, dsp_tensor **out)
{
    int64_t shape[3];
    if (g->chw) {
        shape[0] = g->c;
        shape[1] = g->h;
        shape[2] = g->w;
    } else {
        shape[0] = g->h;
        shape[1] = g->w;
        shape[2] = g->c;
    }
    return dsp_tensor_new(dt, 3, shape, out);
}

int image_contiguous_hwc(dsp_tensor *t, dsp_tensor **out)
{
    dsp_tensor *src = NULL;
    int err = dsp_tensor_contiguous(t, &src);
    if (err < 0 || src->ndim == 3) {
        *out = src;
        return err;
    }
    int64_t shape[3] = { src->shape[0], src->shape[1], 1 };
    err = dsp_tensor_from_buffer(src->dtype, 3, shape, NULL, src->buf, src->offset, out);
    dsp_tensor_unref(&src);
    return err;
}

/* Pillow's "L" from RGB: ITU-R 601-2 luma in 16-bit fixed point. For 16-bit
 * samples the same weights apply (the product fits in 64 bits). */
static inline uint64_t luma(uint64_t r, uint64_t g, uint64_t b)
{
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

#define CONVERT_LOOP(T, MAXV)                                                         \
    do {                                                                              \
        const T *s = (const T *)dsp_tensor_data(t);                                   \
        T *d = (T *)dsp_tensor_data(o);                                               \
        for (int64_t i = 0; i < n; i++, s += cin, d += cout) {                        \
            uint64_t r, gr, b, a = (MAXV);                                            \
            if (cin >= 3) {                                                           \
                r = s[0]; gr = s[1]; b = s[2];                                        \
                if (cin == 4) a = s[3];                                               \
            } else {                                                                  \
                r = gr = b = s[0];                                                    \
                if (cin == 2) a = s[1];                                               \
            }                                                                         \
            switch (cout) {                                                           \
            case 1: d[0] = (T)(cin >= 3 ? luma(r, gr, b) : r); break;                 \
            case 2: d[0] = (T)(cin >= 3 ? luma(r, gr, b) : r); d[1] = (T)a; break;    \
            case 3: d[0] = (T)r; d[1] = (T)gr; d[2] = (T)b; break;                    \
            default: d[0] = (T)r; d[1] = (T)gr; d[2] = (T)b; d[3] = (T)a; break;      \
            }                                                                         \
        }                                                                             \
    } while (0)

int image_convert_channels(dsp_tensor *t, int channels, dsp_tensor **out)
{
    int cin = (int)t->shape[2], cout = channels;
    if (cin == cout) {
        *out = dsp_tensor_ref(t);
        return 0;
    }
    int64_t shape[3] = { t->shape[0], t->shape[1], cout };
    dsp_tensor *o = NULL;
    int err = dsp_tensor_new(t->dtype, 3, shape, &o);
    if (err < 0)
        return err;
    int64_t n = shape[0] * shape[1];
    if (t->dtype == DSP_DTYPE_U16)
        CONVERT_LOOP(uint16_t, 65535);
    else
        CONVERT_LOOP(uint8_t, 255);
    *out = o;
    return 0;
}

/* Output pixel (y, x) of an oriented image comes from source (sy, sx).
 * Orientations 5-8 swap the axes: the output is W x H. */
static inline void orient_source(int o, int64_t y, int64_t x, int64_t h, int64_t w,
                                 int64_t *sy, int64_t *sx)
{
    switch (o) {
    case 2: *sy = y;         *sx = w - 1 - x; break;     /* mirror left-right     */
    case 3: *sy = h - 1 - y; *sx = w - 1 - x; break;     /* rotate 180            */
    case 4: *sy = h - 1 - y; *sx = x;         break;     /* mirror top-bottom     */
    case 5: *sy = x;         *sx = y;         break;     /* transpose             */
    case 6: *sy = h - 1 - x; *sx = y;         break;     /* rotate 90 clockwise   */
    case 7: *sy = h - 1 - x; *sx = w - 1 - y; break;     /* transverse            */
    case 8: *sy = x;         *sx = w - 1 - y; break;     /* rotate 90 counter-cw  */
    default: *sy = y;        *sx = x;         break;
    }
}

int image_apply_orientation(dsp_tensor *t, int orientation, dsp_tensor **out)
{
    if (orientation < 2 || orientation > 8) {
        *out = dsp_tensor_ref(t);
        return 0;
    }
    int64_t h = t->shape[0], w = t->shape[1], c = t->shape[2];
    int swap = orientation >= 5;
    int64_t shape[3] = { swap ? w : h, swap ? h : w, c };
    dsp_tensor *o = NULL;
    int err = dsp_tensor_new(t->dtype, 3, shape, &o);
    if (err < 0)
        return err;
    size_t px = (size_t)c * dsp_dtype_size(t->dtype);
    const uint8_t *s = dsp_tensor_data(t);
    uint8_t *d = dsp_tensor_data(o);
    for (int64_t y = 0; y < shape[0]; y++)
        for (int64_t x = 0; x < shape[1]; x++, d += px) {
            int64_t sy, sx;
            orient_source(orientation, y, x, h, w, &sy, &sx);
            memcpy(d, s + ((size_t)sy * (size_t)w + (size_t)sx) * px, px);
        }
    *out = o;
    return 0;
}

int image_gather(const dsp_tensor *src, const image_geom *g, int64_t oh, int64_t ow,
                 const int64_t *rows, const int64_t *cols, const void *fill,
                 dsp_tensor **out)
{
    image_geom og = *g;
    og.h = oh;
    og.w = ow;
    dsp_tensor *o = NULL;
    int err;
    if (src->ndim == 2) {
        int64_t shape[2] = { oh, ow };
        err = dsp_tensor_new(src->dtype, 2, shape, &o);
    } else {
        err = image_tensor_new(src->dtype, &og, &o);
    }
    if (err < 0)
        return err;
    size_t es = dsp_dtype_size(src->dtype);
    const uint8_t *s = dsp_tensor_data(src);
    uint8_t *d = dsp_tensor_data(o);
    /* strides in elements: HWC (y, x, c) or CHW */
    int64_t c = g->c;
    int64_t isy = g->chw ? g->w : g->w * c, isx = g->chw ? 1 : c, isc = g->chw ? g->h * g->w : 1;
    int64_t osy = g->chw ? ow : ow * c, osx = g->chw ? 1 : c, osc = g->chw ? oh * ow : 1;
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++) {
                uint8_t *dp = d + (size_t)(y * osy + x * osx + ch * osc) * es;
                if (rows[y] < 0 || cols[x] < 0)
                    memcpy(dp, fill, es);
                else
                    memcpy(dp, s + (size_t)(rows[y] * isy + cols[x] * isx + ch * isc) * es, es);
            }
    *out = o;
    return 0;
}

int image_emit_replaced(dsp_node *node, dsp_packet *in, const char *name,
                        dsp_tensor *t, int64_t w, int64_t h, const char *layout)
{
    dsp_packet *p = dsp_packet_ref(in);
    int err = dsp_packet_make_writable(&p);
    if (err < 0) {
        dsp_tensor_unref(&t);
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "out of memory");
    }
    dsp_meta *m = dsp_packet_meta(p);
    err = dsp_packet_set_tensor(p, name, t);
    if (!err)
        err = dsp_meta_set_int(m, "width", w);
    if (!err)
        err = dsp_meta_set_int(m, "height", h);
    if (!err && layout)
        err = dsp_meta_set_str(m, "layout", layout);
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "cannot update the packet: %s", dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, p);
}
