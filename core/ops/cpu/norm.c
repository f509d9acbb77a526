/* norm.c - CPU row-wise kernels over the last dimension: softmax (with masks), layernorm, rmsnorm. */
#include <math.h>
#include <stdlib.h>
#include "ops/ops_int.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/simd.h"

/* Work units per element for dspi_parallel_for: exp-heavy rows cost about
 * four times a plain pass. */
#define EXP_COST 4

/* Element offset of row r's first element in a view over [..., n]:
 * unravel r over the leading dims (cheap next to the n-element row). */
static int64_t view_row_offset(const dspi_bview *v, int64_t r)
{
    int64_t off = 0;
    for (int d = v->ndim - 2; d >= 0; d--) {
        int64_t i = r % v->shape[d];
        r /= v->shape[d];
        off += i * v->stride[d];
    }
    return off;
}

/* The logit of column j after the mask: -inf where a bool/u8 mask is 0,
 * plus the additive f32 mask otherwise. */
static inline float masked_logit(float x, const dspi_bview *mask, const void *mrow,
                                 int64_t ms, int64_t j)
{
    if (!mask)
        return x;
    if (mask->dtype == DSP_DTYPE_F32)
        return x + ((const float *)mrow)[j * ms];
    return ((const uint8_t *)mrow)[j * ms] ? x : -INFINITY;
}

typedef struct softmax_job {
    const float *x;
    const dspi_bview *mask;
    int64_t n;
    float *out;
    int avx2;
} softmax_job;

static void softmax_rows(void *arg, int64_t r0, int64_t r1)
{
    const softmax_job *jb = arg;
    const dspi_bview *mask = jb->mask;
    int64_t n = jb->n;
    size_t esize = mask ? dsp_dtype_size(mask->dtype) : 0;
    int64_t ms = mask ? mask->stride[mask->ndim - 1] : 0;

    for (int64_t r = r0; r < r1; r++) {
        const float *xr = jb->x + r * n;
        float *o = jb->out + r * n;
        const void *mrow = NULL;
        if (mask)
            mrow = (const char *)mask->data + (size_t)view_row_offset(mask, r) * esize;

        if (jb->avx2) {
            if (mask) {
                /* the masked logits in place of the output (elementwise, so
                 * fine when o is x), then an unmasked row */
                for (int64_t j = 0; j < n; j++)
                    o[j] = masked_logit(xr[j], mask, mrow, ms, j);
                xr = o;
            }
            if (dspi_avx2_softmax_row(xr, n, o) < 0) {
                for (int64_t j = 0; j < n; j++)
                    o[j] = 0.0f;
            }
            continue;
        }

        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            float v = masked_logit(xr[j], mask, mrow, ms, j);
            if (v > mx)
                mx = v;
        }
        if (mx == -INFINITY) {
            /* every entry masked out: zeros (attention to nothing), not 0/0 */
            for (int64_t j = 0; j < n; j++)
                o[j] = 0.0f;
            continue;
        }
        /* o may be x's own storage: each o[j] is written only after x[j]
         * was read for the last time */
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            float e = expf(masked_logit(xr[j], mask, mrow, ms, j) - mx);
            o[j] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++)
            o[j] *= inv;
    }
}

int dspi_cpu_softmax(const float *x, const dspi_bview *mask, int64_t rows, int64_t n,
                     float *out)
{
    softmax_job jb = {x, mask, n, out, n > 0 && dspi_cpu_use_avx2()};
    dspi_parallel_for(rows, 1, rows * n * EXP_COST, softmax_rows, &jb);
    return 0;
}

/* w (and b) are [n] vectors in any float dtype: convert them once. */
static float *load_vec(const void *v, dsp_dtype dt, int64_t n, float fill)
{
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f)
        return NULL;
    if (v) {
        dspi_load_f32(f, v, dt, 0, 1, n);
    } else {
        for (int64_t i = 0; i < n; i++)
            f[i] = fill;
    }
    return f;
}

typedef struct norm_job {
    const float *x;
    int64_t n;
    const float *w, *b;         /* b NULL: rmsnorm */
    float eps;
    float *out;
    int avx2;
} norm_job;

static void layernorm_rows(void *arg, int64_t r0, int64_t r1)
{
    const norm_job *jb = arg;
    int64_t n = jb->n;
    const float *wf = jb->w, *bf = jb->b;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = jb->x + r * n;
        float *o = jb->out + r * n;
        if (jb->avx2) {
            dspi_avx2_layernorm_row(xr, n, wf, bf, jb->eps, o);
            continue;
        }
        /* two passes in double: the variance never goes negative and long
         * rows with a large mean keep their precision */
        double s = 0.0;
        for (int64_t j = 0; j < n; j++)
            s += xr[j];
        double mean = s / (double)n;
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double d = xr[j] - mean;
            ss += d * d;
        }
        float rstd = (float)(1.0 / sqrt(ss / (double)n + (double)jb->eps));
        float m = (float)mean;
        for (int64_t j = 0; j < n; j++)
            o[j] = (xr[j] - m) * rstd * wf[j] + bf[j];
    }
}

int dspi_cpu_layernorm(const float *x, int64_t rows, int64_t n, const void *w, const void *b,
                       dsp_dtype wdt, dsp_dtype bdt, float eps, float *out)
{
    float *wf = load_vec(w, wdt, n, 1.0f);
    float *bf = load_vec(b, bdt, n, 0.0f);
    if (!wf || !bf) {
        free(wf);
        free(bf);
        return DSP_ENOMEM;
    }
    norm_job jb = {x, n, wf, bf, eps, out, n > 0 && dspi_cpu_use_avx2()};
    dspi_parallel_for(rows, 1, rows * n, layernorm_rows, &jb);
    free(wf);
    free(bf);
    return 0;
}

static void rmsnorm_rows(void *arg, int64_t r0, int64_t r1)
{
    const norm_job *jb = arg;
    int64_t n = jb->n;
    const float *wf = jb->w;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = jb->x + r * n;
        float *o = jb->out + r * n;
        if (jb->avx2) {
            dspi_avx2_rmsnorm_row(xr, n, wf, jb->eps, o);
            continue;
        }
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)xr[j] * xr[j];
        /* as Llama's RMSNorm: normalise in f32, then scale by the weight */
        float rstd = (float)(1.0 / sqrt(ss / (double)n + (double)jb->eps));
        for (int64_t j = 0; j < n; j++)
            o[j] = wf[j] * (xr[j] * rstd);
    }
}

int dspi_cpu_rmsnorm(const float *x, int64_t rows, int64_t n, const void *w, dsp_dtype wdt,
                     float eps, float *out)
{
    float *wf = load_vec(w, wdt, n, 1.0f);
    if (!wf)
        return DSP_ENOMEM;
    norm_job jb = {x, n, wf, NULL, eps, out, n > 0 && dspi_cpu_use_avx2()};
    dspi_parallel_for(rows, 1, rows * n, rmsnorm_rows, &jb);
    free(wf);
    return 0;
}
