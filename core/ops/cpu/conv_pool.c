/* conv_pool.c - CPU pooling (max/avg, adaptive), inference batch norm and nearest/linear upsampling. */
#include <math.h>
#include <stdlib.h>
#include "ops/conv_int.h"

/* Max that lets NaN win, as PyTorch's pooling does. */
static inline float max_nan(float m, float v)
{
    return (v > m || isnan(v)) ? v : m;
}

/* One window [s, e) per dim of plane (clipped to the input by the caller). */
static float window_reduce(const float *plane, const int64_t *in, const int64_t *s,
                           const int64_t *e, dsp_pool_kind kind)
{
    float m = -INFINITY, sum = 0.0f;
    for (int64_t d = s[0]; d < e[0]; d++)
        for (int64_t h = s[1]; h < e[1]; h++) {
            const float *row = plane + (d * in[1] + h) * in[2];
            for (int64_t w = s[2]; w < e[2]; w++) {
                if (kind == DSP_POOL_MAX)
                    m = max_nan(m, row[w]);
                else
                    sum += row[w];
            }
        }
    return kind == DSP_POOL_MAX ? m : sum;
}

int dspi_cpu_pool(const float *x, dsp_pool_kind kind, const dspi_conv_geom *g, float *y)
{
    const int64_t planes = g->n * g->c;
    const int64_t IP = g->in[0] * g->in[1] * g->in[2];
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *plane = x + pl * IP;
        int64_t o[3];
        for (o[0] = 0; o[0] < g->out[0]; o[0]++)
            for (o[1] = 0; o[1] < g->out[1]; o[1]++)
                for (o[2] = 0; o[2] < g->out[2]; o[2]++) {
                    int64_t s[3], e[3], div = 1;
                    for (int d = 0; d < 3; d++) {
                        s[d] = o[d] * g->stride[d] - g->pad[d];
                        e[d] = s[d] + g->k[d];
                        /* PyTorch's divisor: the window clipped to the
                         * padded input, before clipping to the input */
                        int64_t pe = e[d] < g->in[d] + g->pad[d] ? e[d] : g->in[d] + g->pad[d];
                        div *= pe - s[d];
                        if (s[d] < 0)
                            s[d] = 0;
                        if (e[d] > g->in[d])
                            e[d] = g->in[d];
                    }
                    float v = window_reduce(plane, g->in, s, e, kind);
                    *y++ = kind == DSP_POOL_MAX ? v : v / (float)div;
                }
    }
    return 0;
}

int dspi_cpu_adaptive_pool(const float *x, dsp_pool_kind kind, const dspi_conv_geom *g,
                           float *y)
{
    const int64_t planes = g->n * g->c;
    const int64_t IP = g->in[0] * g->in[1] * g->in[2];
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *plane = x + pl * IP;
        int64_t o[3];
        for (o[0] = 0; o[0] < g->out[0]; o[0]++)
            for (o[1] = 0; o[1] < g->out[1]; o[1]++)
                for (o[2] = 0; o[2] < g->out[2]; o[2]++) {
                    int64_t s[3], e[3], cnt = 1;
                    for (int d = 0; d < 3; d++) {
                        s[d] = o[d] * g->in[d] / g->out[d];
                        e[d] = ((o[d] + 1) * g->in[d] + g->out[d] - 1) / g->out[d];
                        cnt *= e[d] - s[d];
                    }
                    float v = window_reduce(plane, g->in, s, e, kind);
                    *y++ = kind == DSP_POOL_MAX ? v : v / (float)cnt;
                }
    }
    return 0;
}

int dspi_cpu_batchnorm(const float *x, int64_t n, int64_t c, int64_t inner, const void *mean,
                       dsp_dtype mdt, const void *var, dsp_dtype vdt, const void *w,
                       dsp_dtype wdt, const void *b, dsp_dtype bdt, float eps, float *y)
{
    float *p = malloc((size_t)(c > 0 ? 4 * c : 1) * sizeof *p);
    if (!p)
        return DSP_ENOMEM;
    float *m = p, *v = p + c, *sc = p + 2 * c, *sh = p + 3 * c;
    dspi_load_f32(m, mean, mdt, 0, 1, c);
    dspi_load_f32(v, var, vdt, 0, 1, c);
    if (w)
        dspi_load_f32(sc, w, wdt, 0, 1, c);
    if (b)
        dspi_load_f32(sh, b, bdt, 0, 1, c);
    /* folded into one multiply-add per element, as PyTorch's CPU inference
     * path does: alpha = w / sqrt(var + eps), beta = b - mean * alpha */
    for (int64_t ch = 0; ch < c; ch++) {
        float alpha = (w ? sc[ch] : 1.0f) / sqrtf(v[ch] + eps);
        sh[ch] = (b ? sh[ch] : 0.0f) - m[ch] * alpha;
        sc[ch] = alpha;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            const float *src = x + (i * c + ch) * inner;
            float *dst = y + (i * c + ch) * inner, a = sc[ch], be = sh[ch];
            for (int64_t k = 0; k < inner; k++)
                dst[k] = src[k] * a + be;
        }
    free(p);
    return 0;
}

/* Source index and weight of output index o along one dim, computed in f32
 * exactly as PyTorch's area_pixel_compute_source_index does. */
static void linear_src(int64_t o, int64_t in, int64_t out, int align, int64_t *i0, int64_t *i1,
                       float *l1)
{
    float src;
    if (align) {
        float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
        src = scale * (float)o;
    } else {
        float scale = (float)in / (float)out;
        src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0)
            src = 0;
    }
    int64_t i = (int64_t)src;
    if (i > in - 1)
        i = in - 1;
    float l = src - (float)i;
    *i0 = i;
    *i1 = i < in - 1 ? i + 1 : i;
    *l1 = l < 0 ? 0 : (l > 1 ? 1 : l);
}

static int64_t nearest_src(int64_t o, int64_t in, int64_t out)
{
    float scale = (float)in / (float)out;
    int64_t i = (int64_t)floorf((float)o * scale);
    return i < in - 1 ? i : in - 1;
}

int dspi_cpu_upsample(const float *x, const dspi_conv_geom *g, dsp_upsample_mode mode,
                      int align_corners, float *y)
{
    const int64_t planes = g->n * g->c;
    const int64_t IP = g->in[0] * g->in[1] * g->in[2];
    int64_t tot = g->out[0] + g->out[1] + g->out[2];
    /* per dim and output index: two source indices and the second's weight */
    int64_t *idx = malloc((size_t)(2 * tot) * sizeof *idx);
    float *lam = malloc((size_t)tot * sizeof *lam);
    if (!idx || !lam) {
        free(idx);
        free(lam);
        return DSP_ENOMEM;
    }
    int64_t *i0[3], *i1[3];
    float *l1[3];
    int64_t off = 0;
    for (int d = 0; d < 3; d++) {
        i0[d] = idx + 2 * off;
        i1[d] = i0[d] + g->out[d];
        l1[d] = lam + off;
        for (int64_t o = 0; o < g->out[d]; o++) {
            if (mode == DSP_UPSAMPLE_NEAREST) {
                i0[d][o] = i1[d][o] = nearest_src(o, g->in[d], g->out[d]);
                l1[d][o] = 0;
            } else {
                linear_src(o, g->in[d], g->out[d], align_corners, &i0[d][o], &i1[d][o],
                           &l1[d][o]);
            }
        }
        off += g->out[d];
    }
    const int64_t IH = g->in[1], IW = g->in[2];
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *p = x + pl * IP;
        for (int64_t od = 0; od < g->out[0]; od++) {
            const float *pd0 = p + i0[0][od] * IH * IW, *pd1 = p + i1[0][od] * IH * IW;
            const float ld1 = l1[0][od], ld0 = 1.0f - ld1;
            for (int64_t oh = 0; oh < g->out[1]; oh++) {
                const int64_t h0 = i0[1][oh] * IW, h1 = i1[1][oh] * IW;
                const float lh1 = l1[1][oh], lh0 = 1.0f - lh1;
                for (int64_t ow = 0; ow < g->out[2]; ow++) {
                    const int64_t w0 = i0[2][ow], w1 = i1[2][ow];
                    if (mode == DSP_UPSAMPLE_NEAREST) {
                        *y++ = pd0[h0 + w0];
                        continue;
                    }
                    const float lw1 = l1[2][ow], lw0 = 1.0f - lw1;
                    float a = lh0 * (lw0 * pd0[h0 + w0] + lw1 * pd0[h0 + w1]) +
                              lh1 * (lw0 * pd0[h1 + w0] + lw1 * pd0[h1 + w1]);
                    if (g->in[0] == 1 && g->out[0] == 1) {
                        *y++ = a;   /* 2-D: no depth term (keeps bilinear's rounding) */
                        continue;
                    }
                    float bq = lh0 * (lw0 * pd1[h0 + w0] + lw1 * pd1[h0 + w1]) +
                               lh1 * (lw0 * pd1[h1 + w0] + lw1 * pd1[h1 + w1]);
                    *y++ = ld0 * a + ld1 * bq;
                }
            }
        }
    }
    free(idx);
    free(lam);
    return 0;
}
