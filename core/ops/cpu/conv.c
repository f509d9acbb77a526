/* conv.c - CPU 2-D/3-D convolution: im2col (vol2col) in bounded spatial chunks + dspi_sgemm per group. */
#include <stdlib.h>
#include <string.h>
#include "ops/conv_int.h"

/* Converted f16/bf16 weight rows per panel: about 4 MiB of f32, so most
 * layers convert in one panel while a huge one never becomes one f32 copy. */
#define WEIGHT_PANEL_FLOATS ((int64_t)1 << 20)

/* col [K, np]: for each (ci, kd, kh, kw) row, the input values feeding
 * output positions p0 .. p0+np-1 of channel block xc [cg, in] (zero where
 * the dilated tap falls into padding). */
static void im2col(const float *xc, int64_t cg, const dspi_conv_geom *g, int64_t p0, int64_t np,
                   float *col)
{
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t OH = g->out[1], OW = g->out[2];
    const int64_t od0 = p0 / (OH * OW), oh0 = (p0 / OW) % OH, ow0 = p0 % OW;
    float *dst = col;
    for (int64_t ci = 0; ci < cg; ci++) {
        const float *plane = xc + ci * ID * IH * IW;
        for (int64_t a = 0; a < g->k[0]; a++)
            for (int64_t b = 0; b < g->k[1]; b++)
                for (int64_t c = 0; c < g->k[2]; c++, dst += np) {
                    int64_t od = od0, oh = oh0, ow = ow0;
                    const int64_t offd = a * g->dil[0] - g->pad[0];
                    const int64_t offh = b * g->dil[1] - g->pad[1];
                    const int64_t offw = c * g->dil[2] - g->pad[2];
                    for (int64_t i = 0; i < np; i++) {
                        int64_t id = od * g->stride[0] + offd, ih = oh * g->stride[1] + offh;
                        int64_t iw = ow * g->stride[2] + offw;
                        dst[i] = (id >= 0 && id < ID && ih >= 0 && ih < IH && iw >= 0 && iw < IW)
                                     ? plane[(id * IH + ih) * IW + iw]
                                     : 0.0f;
                        if (++ow == OW) {
                            ow = 0;
                            if (++oh == OH) {
                                oh = 0;
                                od++;
                            }
                        }
                    }
                }
    }
}

/* A 1x1(x1) kernel with stride 1 and no padding reads x as the column
 * matrix itself: no im2col at all. */
static int is_pointwise(const dspi_conv_geom *g)
{
    for (int d = 0; d < 3; d++)
        if (g->k[d] != 1 || g->stride[d] != 1 || g->pad[d] != 0)
            return 0;
    return 1;
}

int dspi_cpu_conv(const float *x, const void *w, dsp_dtype wdt, const void *b, dsp_dtype bdt,
                  const dspi_conv_geom *g, float *y)
{
    const int64_t G = g->groups, cg = g->c / G, ocg = g->oc / G;
    const int64_t K = cg * g->k[0] * g->k[1] * g->k[2];
    const int64_t P = g->out[0] * g->out[1] * g->out[2];
    const int64_t IP = g->in[0] * g->in[1] * g->in[2];
    const int pointwise = is_pointwise(g);
    int64_t chunk = DSPI_CONV_COL_BYTES / (int64_t)sizeof(float) / (K > 0 ? K : 1);
    if (chunk < 1)
        chunk = 1;
    if (chunk > P)
        chunk = P;
    int64_t prows = wdt == DSP_DTYPE_F32 ? ocg : WEIGHT_PANEL_FLOATS / (K > 0 ? K : 1);
    if (prows < 1)
        prows = 1;
    if (prows > ocg)
        prows = ocg;
    float *col = NULL, *panel = NULL, *bias = NULL;
    int rc = 0;
    if (!pointwise && !(col = malloc((size_t)(chunk * K > 0 ? chunk * K : 1) * sizeof *col)))
        goto nomem;
    if (wdt != DSP_DTYPE_F32 &&
        !(panel = malloc((size_t)(prows * K > 0 ? prows * K : 1) * sizeof *panel)))
        goto nomem;
    if (b && !(bias = malloc((size_t)(g->oc > 0 ? g->oc : 1) * sizeof *bias)))
        goto nomem;

    for (int64_t gi = 0; gi < G; gi++) {
        for (int64_t r0 = 0; r0 < ocg; r0 += prows) {
            const int64_t nr = ocg - r0 < prows ? ocg - r0 : prows;
            const int64_t wrow = gi * ocg + r0;     /* first output channel of the panel */
            const float *wp;
            if (wdt == DSP_DTYPE_F32) {
                wp = (const float *)w + wrow * K;
            } else {
                dspi_load_f32(panel, w, wdt, wrow * K, 1, nr * K);
                wp = panel;
            }
            for (int64_t n = 0; n < g->n; n++) {
                const float *xc = x + (n * g->c + gi * cg) * IP;
                float *yc = y + (n * g->oc + wrow) * P;
                if (pointwise) {
                    dspi_sgemm(0, nr, P, K, wp, K, xc, IP, yc, P);
                    continue;
                }
                for (int64_t p0 = 0; p0 < P; p0 += chunk) {
                    const int64_t np = P - p0 < chunk ? P - p0 : chunk;
                    /* rebuilt per weight panel: only layers past 4 MiB of
                     * f16/bf16 weights have more than one */
                    im2col(xc, cg, g, p0, np, col);
                    dspi_sgemm(0, nr, np, K, wp, K, col, np, yc + p0, P);
                }
            }
        }
    }
    if (bias) {
        dspi_load_f32(bias, b, bdt, 0, 1, g->oc);
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t o = 0; o < g->oc; o++) {
                float *row = y + (n * g->oc + o) * P, bo = bias[o];
                for (int64_t p = 0; p < P; p++)
                    row[p] += bo;
            }
    }
    goto done;
nomem:
    rc = DSP_ENOMEM;
done:
    free(col);
    free(panel);
    free(bias);
    return rc;
}
