/* conv.c - CPU 2-D/3-D convolution: im2col (vol2col) in bounded spatial chunks + dspi_sgemm per group, or Winograd (conv_winograd.c) where it applies. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "ops/conv_int.h"
#include "ops/cpu/parallel.h"

/* Converted f16/bf16 weight rows per panel: about 4 MiB of f32, so most
 * layers convert in one panel while a huge one never becomes one f32 copy. */
#define WEIGHT_PANEL_FLOATS ((int64_t)1 << 20)

/* One im2col call: rows of col [K, np] for output positions p0 .. p0+np-1
 * of channel block xc [cg, in]. */
typedef struct im2col_job {
    const float *xc;
    const dspi_conv_geom *g;
    int64_t p0, np;
    float *col;
} im2col_job;

/* Rows r0 .. r1-1 of col: row (ci, kd, kh, kw) holds the input values
 * feeding each output position (zero where the dilated tap falls into
 * padding). Positions are walked one output row (od, oh) at a time, so the
 * bounds checks are per row and the in-range middle of a row is a copy
 * (memcpy at stride 1): the element-wise version was a third of r3d_18's
 * time on one thread while OpenBLAS's threads spun waiting for it. */
static void im2col_rows(void *arg, int64_t r0, int64_t r1)
{
    const im2col_job *jb = arg;
    const dspi_conv_geom *g = jb->g;
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t OH = g->out[1], OW = g->out[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t sw = g->stride[2], p_end = jb->p0 + jb->np;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t ci = r / (KD * KH * KW), a = r / (KH * KW) % KD, b = r / KW % KH,
                      c = r % KW;
        const float *plane = jb->xc + ci * ID * IH * IW;
        const int64_t offd = a * g->dil[0] - g->pad[0], offh = b * g->dil[1] - g->pad[1];
        const int64_t offw = c * g->dil[2] - g->pad[2];
        /* ow in [ow_lo, ow_hi) reads inside the row: 0 <= ow * sw + offw < IW */
        int64_t ow_lo = offw >= 0 ? 0 : (-offw + sw - 1) / sw;
        int64_t ow_hi = IW - offw <= 0 ? 0 : (IW - offw - 1) / sw + 1;
        ow_lo = ow_lo < OW ? ow_lo : OW;
        ow_hi = ow_hi < ow_lo ? ow_lo : ow_hi < OW ? ow_hi : OW;
        float *dst = jb->col + r * jb->np;
        for (int64_t p = jb->p0; p < p_end;) {
            const int64_t row = p / OW, ow0 = p % OW;
            const int64_t ow1 = ow0 + (p_end - p) < OW ? ow0 + (p_end - p) : OW;
            const int64_t id = row / OH * g->stride[0] + offd, ih = row % OH * g->stride[1] + offh;
            float *d = dst + (p - jb->p0);
            if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
                memset(d, 0, (size_t)(ow1 - ow0) * sizeof *d);
            } else {
                const float *src = plane + (id * IH + ih) * IW + offw;
                const int64_t lo = ow0 > ow_lo ? ow0 : ow_lo, hi = ow1 < ow_hi ? ow1 : ow_hi;
                int64_t ow = ow0;
                for (; ow < lo && ow < ow1; ow++)
                    d[ow - ow0] = 0.0f;
                if (sw == 1 && hi > lo) {
                    memcpy(d + (lo - ow0), src + lo, (size_t)(hi - lo) * sizeof *d);
                    ow = hi;
                }
                for (; ow < hi; ow++)
                    d[ow - ow0] = src[ow * sw];
                for (; ow < ow1; ow++)
                    d[ow - ow0] = 0.0f;
            }
            p += ow1 - ow0;
        }
    }
}

static void im2col(const float *xc, int64_t cg, const dspi_conv_geom *g, int64_t p0, int64_t np,
                   float *col)
{
    im2col_job jb = { xc, g, p0, np, col };
    const int64_t rows = cg * g->k[0] * g->k[1] * g->k[2];
    dspi_parallel_for(rows, 1, rows * np, im2col_rows, &jb);
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

/* Convolutions below this many multiply-adds stay on the plain path: a
 * task pool's start costs more than they save. */
#define CONV_TASK_MIN_MACS ((int64_t)1 << 22)
/* Each task thread's column buffer: about this size, but at least
 * CONV_TASK_MIN_CHUNK positions so a deep layer's GEMM stays wide. Small
 * enough that im2col's output is still in cache when OpenBLAS packs it,
 * and that a call faults in few fresh pages: r3d_18 in bench/video used
 * 10% less CPU time than with 32 MiB per thread (1 MiB: 9%, 16 MiB: 4%). */
#define CONV_TASK_COL_BYTES ((int64_t)4 << 20)
#define CONV_TASK_MIN_CHUNK 256

/* An f32 convolution as (image, group, position chunk) tasks: each an
 * im2col and a one-thread GEMM on one pool thread, in that thread's own
 * column buffer. Splitting the work this way instead of running every
 * chunk's GEMM on all threads keeps the cores on GEMMs: with a
 * multi-threaded GEMM after a separate im2col, OpenBLAS's threads spin in
 * sched_yield while the columns are built (a tenth of r3d_18's time). */
typedef struct conv_task_job {
    const float *x, *w;
    const dspi_conv_geom *g;
    int64_t K, P, IP, chunk, nchunks;
    float *cols, *y;
} conv_task_job;

static void conv_task(void *arg, int task, int thread)
{
    const conv_task_job *jb = arg;
    const dspi_conv_geom *g = jb->g;
    const int64_t cg = g->c / g->groups, ocg = g->oc / g->groups;
    const int64_t img = task / jb->nchunks, gi = img % g->groups, n = img / g->groups;
    const int64_t p0 = task % jb->nchunks * jb->chunk;
    const int64_t np = jb->P - p0 < jb->chunk ? jb->P - p0 : jb->chunk;
    float *col = jb->cols + thread * jb->chunk * jb->K;
    im2col(jb->x + (n * g->c + gi * cg) * jb->IP, cg, g, p0, np, col);
    dspi_sgemm(0, ocg, np, jb->K, jb->w + gi * ocg * jb->K, jb->K, col, np,
               jb->y + (n * g->oc + gi * ocg) * jb->P + p0, jb->P);
}

/* Plans the task split of an f32 convolution into *jb (cols left NULL):
 * CONV_TASK_COL_BYTES of columns per thread, at least two tasks per
 * thread. Returns 0 when the plain path fits better (one thread, a small
 * convolution, too few positions to share). */
static int plan_conv_tasks(const dspi_conv_geom *g, int64_t K, int64_t P, int nthr,
                           conv_task_job *jb)
{
    const int64_t imgs = g->n * g->groups, ocg = g->oc / g->groups;
    if (nthr < 2 || K <= 0 || P <= 0 || imgs * ocg * K * P < CONV_TASK_MIN_MACS)
        return 0;
    int64_t chunk = CONV_TASK_COL_BYTES / (int64_t)sizeof(float) / K;
    chunk = chunk < CONV_TASK_MIN_CHUNK ? CONV_TASK_MIN_CHUNK : chunk;
    chunk = chunk > P ? P : chunk;
    int64_t nchunks = (P + chunk - 1) / chunk;
    if (imgs * nchunks < 2 * nthr) {
        int64_t want = (2 * nthr + imgs - 1) / imgs;
        chunk = (P + want - 1) / want;
        nchunks = (P + chunk - 1) / chunk;
    }
    if (imgs * nchunks < nthr || imgs * nchunks > INT_MAX)
        return 0;
    jb->g = g;
    jb->K = K;
    jb->P = P;
    jb->IP = g->in[0] * g->in[1] * g->in[2];
    jb->chunk = chunk;
    jb->nchunks = nchunks;
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
    const int nthr = dsp_ops_threads();
    conv_task_job tj = { .x = x, .w = w, .y = y };
    const int tasks = wdt == DSP_DTYPE_F32 && !pointwise && plan_conv_tasks(g, K, P, nthr, &tj);
    if (b && !(bias = malloc((size_t)(g->oc > 0 ? g->oc : 1) * sizeof *bias)))
        goto nomem;
    /* out of memory for Winograd's transformed weights (64/27 of the
     * weights, in f32), im2col may still fit: its scratch is bounded */
    if (dspi_winograd_applies(g) && (rc = dspi_cpu_conv_winograd(x, w, wdt, g, y)) != DSP_ENOMEM) {
        if (rc < 0)
            goto done;
        goto add_bias;
    }
    rc = 0;
    if (tasks) {
        if (!(tj.cols = malloc((size_t)(nthr * tj.chunk * K) * sizeof *tj.cols)))
            goto nomem;
        dsp_parallel_tasks((int)(g->n * G * tj.nchunks), conv_task, &tj);
        free(tj.cols);
        goto add_bias;
    }
    if (!pointwise && !(col = malloc((size_t)(chunk * K > 0 ? chunk * K : 1) * sizeof *col)))
        goto nomem;
    if (wdt != DSP_DTYPE_F32 &&
        !(panel = malloc((size_t)(prows * K > 0 ? prows * K : 1) * sizeof *panel)))
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
add_bias:
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
