/* resample.c - separable resampling as Pillow's Image.resize does it: support widened by the
 * downscale factor (antialiasing), normalised per-pixel weights, one pass per axis in Pillow's
 * order; 22-bit fixed point for u8, double precision for u16 and f32. Nearest is Pillow's
 * affine nearest (pixel centres, accumulated in double). */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PI_D 3.14159265358979323846
/* u8 weights carry 22 fractional bits: 8 bits of sample, 2 bits of headroom
   for filters whose weights overshoot, and the sign, in 32 bits */
#define PRECISION_BITS 22
/* no more weights than this per axis (each a double): refuse, not thrash */
#define MAX_COEFFS ((int64_t)1 << 27)

typedef struct filter_def {
    double (*fn)(double x);
    double support;
} filter_def;

/* The kernels as Pillow writes them, down to the float literals in the
 * Hamming window: the u8 results depend on every bit of the weights. */
static double box_fn(double x)
{
    return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}

static double bilinear_fn(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_fn(double x)
{
    if (x < 0.0)
        x = -x;
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x = x * PI_D;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_fn(double x)
{
    const double a = -0.5;              /* Keys' cubic with a = -0.5, as Pillow and torch's antialias */
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_fn(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * PI_D;
    return sin(x) / x;
}

static double lanczos_fn(double x)
{
    return -3.0 <= x && x < 3.0 ? sinc_fn(x) * sinc_fn(x / 3) : 0.0;
}

static const filter_def filters[] = {
    [IMAGE_FILTER_NEAREST] = { NULL, 0.0 },
    [IMAGE_FILTER_BILINEAR] = { bilinear_fn, 1.0 },
    [IMAGE_FILTER_BICUBIC] = { bicubic_fn, 2.0 },
    [IMAGE_FILTER_BOX] = { box_fn, 0.5 },
    [IMAGE_FILTER_HAMMING] = { hamming_fn, 1.0 },
    [IMAGE_FILTER_LANCZOS] = { lanczos_fn, 3.0 },
};

/* Weights of one axis: output i reads n[i] source pixels from lo[i] with
 * weights k[i * ksize ...]; k8 is the same in fixed point. */
typedef struct axis_coeffs {
    int64_t out, ksize;
    int64_t *lo, *n;
    double *k;
    int32_t *k8;
} axis_coeffs;

static void coeffs_free(axis_coeffs *c)
{
    free(c->lo);
    free(c->n);
    free(c->k);
    free(c->k8);
    memset(c, 0, sizeof *c);
}

static int coeffs_make(int64_t in, int64_t out, const filter_def *f, int antialias,
                       int fixed, axis_coeffs *c)
{
    memset(c, 0, sizeof *c);
    double scale = (double)in / (double)out;
    double filterscale = scale < 1.0 || !antialias ? 1.0 : scale;
    double support = f->support * filterscale;
    int64_t ksize = (int64_t)ceil(support) * 2 + 1;
    if (ksize > MAX_COEFFS / out)
        return DSP_ELIMIT;
    c->out = out;
    c->ksize = ksize;
    c->lo = malloc((size_t)out * sizeof *c->lo);
    c->n = malloc((size_t)out * sizeof *c->n);
    c->k = calloc((size_t)(out * ksize), sizeof *c->k);
    if (fixed)
        c->k8 = calloc((size_t)(out * ksize), sizeof *c->k8);
    if (!c->lo || !c->n || !c->k || (fixed && !c->k8)) {
        coeffs_free(c);
        return DSP_ENOMEM;
    }
    double ss = 1.0 / filterscale;
    for (int64_t i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        /* Pillow's rounding: truncation of centre +- support + 0.5, then clamping */
        int64_t lo = (int64_t)(center - support + 0.5);
        if (lo < 0)
            lo = 0;
        int64_t hi = (int64_t)(center + support + 0.5);
        if (hi > in)
            hi = in;
        int64_t n = hi - lo;
        double *k = c->k + i * ksize, sum = 0.0;
        for (int64_t x = 0; x < n; x++) {
            double w = f->fn((x + lo - center + 0.5) * ss);
            k[x] = w;
            sum += w;
        }
        for (int64_t x = 0; x < n; x++)
            if (sum != 0.0)
                k[x] /= sum;            /* divided, not multiplied by 1/sum: bit-exact */
        if (fixed) {
            int32_t *k8 = c->k8 + i * ksize;
            for (int64_t x = 0; x < n; x++)
                k8[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                                 : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        }
        c->lo[i] = lo;
        c->n[i] = n > 0 ? n : 0;
    }
    return 0;
}

/* Strides (in elements) of an image in memory: pixel (y, x), channel ch at
 * y * sy + x * sx + ch * sc. */
typedef struct strides {
    int64_t sy, sx, sc;
} strides;

static strides strides_of(int64_t w, int64_t h, int64_t c, int chw)
{
    return chw ? (strides){ w, 1, h * w } : (strides){ w * c, c, 1 };
}

static inline uint8_t clip8(int32_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

static inline uint16_t round16(double v)
{
    /* round half away from zero, then clamp */
    double r = v >= 0.0 ? v + 0.5 : v - 0.5;
    return r <= 0.0 ? 0 : r >= 65535.0 ? 65535 : (uint16_t)r;
}

/* One pass along an axis. horizontal: output (y, i) from source row y0 + y,
 * for rows [0, rows); vertical: output row i from the source rows the
 * weights name. T is the sample type, ACC the accumulator, INIT its start
 * value (the rounding half for fixed point), STORE the conversion back,
 * KT / KW the weight type and field (k8 fixed point, k double). */
#define PASS(T, ACC, INIT, STORE, KT, KW)                                                  \
    static void pass_##T(const T *src, strides ss, T *dst, strides ds, int64_t rows,       \
                         int64_t cols, int64_t ch, const axis_coeffs *k, int horizontal,   \
                         int64_t y0)                                                       \
    {                                                                                      \
        for (int64_t a = 0; a < rows; a++)                                                 \
            for (int64_t b = 0; b < cols; b++) {                                           \
                /* horizontal: a = row, b = output column; vertical: a = output row,      \
                   b = column */                                                           \
                int64_t i = horizontal ? b : a;                                            \
                int64_t lo = k->lo[i], n = k->n[i];                                        \
                const KT *w = k->KW + i * k->ksize;                                        \
                for (int64_t c = 0; c < ch; c++) {                                         \
                    const T *s;                                                            \
                    int64_t step;                                                          \
                    if (horizontal) {                                                      \
                        s = src + (y0 + a) * ss.sy + lo * ss.sx + c * ss.sc;               \
                        step = ss.sx;                                                      \
                    } else {                                                               \
                        s = src + lo * ss.sy + b * ss.sx + c * ss.sc;                      \
                        step = ss.sy;                                                      \
                    }                                                                      \
                    ACC acc = INIT;                                                        \
                    for (int64_t x = 0; x < n; x++)                                        \
                        acc += (ACC)s[x * step] * w[x];                                    \
                    dst[a * ds.sy + b * ds.sx + c * ds.sc] = STORE(acc);                   \
                }                                                                          \
            }                                                                              \
    }

PASS(uint8_t, int32_t, (int32_t)1 << (PRECISION_BITS - 1), clip8, int32_t, k8)
PASS(uint16_t, double, 0.0, round16, double, k)
PASS(float, double, 0.0, (float), double, k)

/* Run the pass for dtype dt (u8 fixed point, u16 or f32 in double). */
static void run_pass(dsp_dtype dt, const void *src, strides ss, void *dst, strides ds,
                     int64_t rows, int64_t cols, int64_t ch, const axis_coeffs *k,
                     int horizontal, int64_t y0)
{
    if (dt == DSP_DTYPE_U8)
        pass_uint8_t(src, ss, dst, ds, rows, cols, ch, k, horizontal, y0);
    else if (dt == DSP_DTYPE_U16)
        pass_uint16_t(src, ss, dst, ds, rows, cols, ch, k, horizontal, y0);
    else
        pass_float(src, ss, dst, ds, rows, cols, ch, k, horizontal, y0);
}

static int resample_separable(const void *src, dsp_dtype dt, const image_geom *g,
                              int64_t ow, int64_t oh, const filter_def *f, int antialias,
                              void *dst)
{
    int fixed = dt == DSP_DTYPE_U8;
    int need_h = ow != g->w, need_v = oh != g->h;
    /* Pillow (13.0) runs the vertical pass first when the height shrinks by
       more than twice as many pixels as the width; with u8 the order changes
       the result, since the intermediate image is rounded to 8 bits */
    int horizontal_first = !(g->h - oh > 0 && g->h - oh > (g->w - ow) * 2);
    axis_coeffs kh = { 0 }, kv = { 0 };
    int err = 0;
    void *tmp = NULL;
    size_t es = dsp_dtype_size(dt);
    strides s_in = strides_of(g->w, g->h, g->c, g->chw);
    strides s_out = strides_of(ow, oh, g->c, g->chw);
    if ((need_v && (err = coeffs_make(g->h, oh, f, antialias, fixed, &kv)) < 0) ||
        (need_h && (err = coeffs_make(g->w, ow, f, antialias, fixed, &kh)) < 0))
        goto out;

    if (!need_h || !need_v) {
        if (need_h)
            run_pass(dt, src, s_in, dst, s_out, g->h, ow, g->c, &kh, 1, 0);
        else
            run_pass(dt, src, s_in, dst, s_out, oh, g->w, g->c, &kv, 0, 0);
    } else if (horizontal_first) {
        /* the horizontal pass only computes the rows the vertical pass reads */
        int64_t y_first = kv.lo[0], rows = kv.lo[oh - 1] + kv.n[oh - 1] - y_first;
        for (int64_t i = 0; i < oh; i++)
            kv.lo[i] -= y_first;
        strides s_t = strides_of(ow, rows, g->c, g->chw);
        if (!(tmp = malloc((size_t)(rows * ow * g->c) * es))) {
            err = DSP_ENOMEM;
            goto out;
        }
        run_pass(dt, src, s_in, tmp, s_t, rows, ow, g->c, &kh, 1, y_first);
        run_pass(dt, tmp, s_t, dst, s_out, oh, ow, g->c, &kv, 0, 0);
    } else {
        strides s_t = strides_of(g->w, oh, g->c, g->chw);
        if (!(tmp = malloc((size_t)(oh * g->w * g->c) * es))) {
            err = DSP_ENOMEM;
            goto out;
        }
        run_pass(dt, src, s_in, tmp, s_t, oh, g->w, g->c, &kv, 0, 0);
        run_pass(dt, tmp, s_t, dst, s_out, oh, ow, g->c, &kh, 1, 0);
    }
out:
    free(tmp);
    coeffs_free(&kh);
    coeffs_free(&kv);
    return err;
}

/* Pillow's nearest: the source of output pixel i is trunc((i + 0.5) * scale),
 * with the position accumulated step by step in double as Pillow does. */
static int64_t *nearest_table(int64_t in, int64_t out)
{
    int64_t *t = malloc((size_t)out * sizeof *t);
    if (!t)
        return NULL;
    double scale = (double)in / (double)out, pos = scale * 0.5;
    for (int64_t i = 0; i < out; i++, pos += scale) {
        int64_t v = (int64_t)pos;
        t[i] = v < 0 ? 0 : v >= in ? in - 1 : v;
    }
    return t;
}

static int resample_nearest(const uint8_t *src, size_t es, const image_geom *g, int64_t ow,
                            int64_t oh, uint8_t *dst)
{
    int64_t *tx = nearest_table(g->w, ow), *ty = nearest_table(g->h, oh);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return DSP_ENOMEM;
    }
    strides si = strides_of(g->w, g->h, g->c, g->chw), so = strides_of(ow, oh, g->c, g->chw);
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t y = 0; y < oh; y++)
            for (int64_t x = 0; x < ow; x++)
                memcpy(dst + (size_t)(y * so.sy + x * so.sx + c * so.sc) * es,
                       src + (size_t)(ty[y] * si.sy + tx[x] * si.sx + c * si.sc) * es, es);
    free(tx);
    free(ty);
    return 0;
}

/* Pillow resizes RGBA and LA premultiplied ("RGBa", "La"): colour times alpha
 * with rounding, (a * b + 128 + ((a * b + 128) >> 8)) >> 8, and back with a
 * truncating division, clipped; alpha 0 and 255 are left alone. */
static void premultiply_u8(uint8_t *p, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++, p += c) {
        unsigned a = p[c - 1];
        for (int64_t k = 0; k < c - 1; k++) {
            unsigned t = p[k] * a + 128;
            p[k] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
}

static void unpremultiply_u8(uint8_t *p, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++, p += c) {
        unsigned a = p[c - 1];
        if (a == 0 || a == 255)
            continue;
        for (int64_t k = 0; k < c - 1; k++) {
            unsigned v = 255u * p[k] / a;
            p[k] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

int image_resample(const dsp_tensor *src, const image_geom *g, int64_t ow, int64_t oh,
                   int filter, int antialias, int premultiply, dsp_tensor **out)
{
    dsp_dtype dt = src->dtype;
    if (dt != DSP_DTYPE_U8 && dt != DSP_DTYPE_U16 && dt != DSP_DTYPE_F32)
        return DSP_EUNSUPPORTED;
    image_geom og = *g;
    og.w = ow;
    og.h = oh;
    dsp_tensor *o = NULL;
    int err = image_tensor_new(dt, &og, &o);
    if (err < 0)
        return err;
    if (ow == g->w && oh == g->h) {
        /* Pillow returns a copy: no premultiplication round trip */
        memcpy(dsp_tensor_data(o), dsp_tensor_data(src), dsp_tensor_nbytes(src));
    } else if (filter == IMAGE_FILTER_NEAREST) {
        err = resample_nearest(dsp_tensor_data(src), dsp_dtype_size(dt), g, ow, oh,
                               dsp_tensor_data(o));
    } else {
        int pm = premultiply && dt == DSP_DTYPE_U8 && !g->chw && (g->c == 2 || g->c == 4);
        dsp_tensor *pre = NULL;
        const void *in = dsp_tensor_data(src);
        if (pm) {
            if ((err = dsp_tensor_new(dt, src->ndim, src->shape, &pre)) < 0)
                goto fail;
            memcpy(dsp_tensor_data(pre), in, dsp_tensor_nbytes(src));
            premultiply_u8(dsp_tensor_data(pre), g->h * g->w, g->c);
            in = dsp_tensor_data(pre);
        }
        err = resample_separable(in, dt, g, ow, oh, &filters[filter], antialias,
                                 dsp_tensor_data(o));
        dsp_tensor_unref(&pre);
        if (!err && pm)
            unpremultiply_u8(dsp_tensor_data(o), oh * ow, g->c);
    }
    if (err < 0)
        goto fail;
    *out = o;
    return 0;
fail:
    dsp_tensor_unref(&o);
    return err;
}
