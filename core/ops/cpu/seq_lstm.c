/* seq_lstm.c - CPU LSTM layer (torch.nn.LSTM gates i, f, g, o): one input-projection GEMM, then the recurrence per step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/seq_int.h"

/* y[M,N] = a[M,K] · w[N,K]ᵀ; f16/bf16 weights go through the linear
 * kernel, which converts them a panel at a time. */
static int project(const float *a, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                   int64_t N, float *y)
{
    if (M == 0)
        return 0;
    if (wdt == DSP_DTYPE_F32) {
        dspi_sgemm(1, M, N, K, a, K, (const float *)w, K, y, N);
        return 0;
    }
    return dspi_cpu_linear(a, M, K, w, wdt, N, NULL, DSP_DTYPE_F32, y);
}

static inline float sigmoid(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

/* One direction over the whole batch. gx [batch * seq, 4h] holds the input
 * projections (b_ih included); rows past a sequence's length are never
 * updated, so the reverse direction of a short sequence meets its last real
 * step with the zero initial state, as with packed sequences. */
static int run_direction(const float *gx, int64_t batch, int64_t seq, int64_t h,
                         const dspi_lstm_dir *d, int reverse, const int64_t *lengths,
                         const float *b_hh, float *hs, float *cs, float *gr, float *out,
                         int64_t out_stride, int64_t out_off)
{
    int64_t g4 = 4 * h;
    memset(hs, 0, (size_t)(batch * h) * sizeof *hs);
    memset(cs, 0, (size_t)(batch * h) * sizeof *cs);
    for (int64_t s = 0; s < seq; s++) {
        int64_t t = reverse ? seq - 1 - s : s;
        int rc = project(hs, batch, h, d->w_hh, d->wdt_hh, g4, gr);
        if (rc < 0)
            return rc;
        for (int64_t b = 0; b < batch; b++) {
            if (t >= (lengths ? lengths[b] : seq))
                continue;
            const float *gi = gx + (b * seq + t) * g4;
            float *r = gr + b * g4, *hb = hs + b * h, *cb = cs + b * h;
            float *o = out + (b * seq + t) * out_stride + out_off;
            if (b_hh)
                for (int64_t k = 0; k < g4; k++)
                    r[k] += b_hh[k];
            for (int64_t j = 0; j < h; j++) {
                float ig = sigmoid(gi[j] + r[j]);
                float fg = sigmoid(gi[h + j] + r[h + j]);
                float gg = tanhf(gi[2 * h + j] + r[2 * h + j]);
                float og = sigmoid(gi[3 * h + j] + r[3 * h + j]);
                cb[j] = fg * cb[j] + ig * gg;
                hb[j] = og * tanhf(cb[j]);
                o[j] = hb[j];
            }
        }
    }
    return 0;
}

int dspi_cpu_lstm(const float *x, int64_t batch, int64_t seq, int64_t in, int64_t h,
                  const dspi_lstm_dir *dirs, int ndirs, const int64_t *lengths, float *out)
{
    int64_t g4 = 4 * h, rows = batch * seq;
    int rc = 0;
    float *gx = malloc((size_t)(rows * g4 > 0 ? rows * g4 : 1) * sizeof *gx);
    float *gr = malloc((size_t)(batch * g4 > 0 ? batch * g4 : 1) * sizeof *gr);
    float *hs = malloc((size_t)(batch * h > 0 ? batch * h : 1) * sizeof *hs);
    float *cs = malloc((size_t)(batch * h > 0 ? batch * h : 1) * sizeof *cs);
    float *bias = malloc((size_t)(2 * g4) * sizeof *bias);
    if (!gx || !gr || !hs || !cs || !bias) {
        rc = DSP_ENOMEM;
        goto done;
    }
    if (lengths)    /* steps past a length stay zero */
        memset(out, 0, (size_t)(rows * ndirs * h) * sizeof *out);
    for (int d = 0; d < ndirs; d++) {
        const dspi_lstm_dir *w = &dirs[d];
        float *b_ih = w->b_ih ? bias : NULL, *b_hh = w->b_hh ? bias + g4 : NULL;
        if (b_ih)
            dspi_load_f32(b_ih, w->b_ih, w->bdt_ih, 0, w->bs_ih, g4);
        if (b_hh)
            dspi_load_f32(b_hh, w->b_hh, w->bdt_hh, 0, w->bs_hh, g4);
        /* every time step's input projection in one GEMM: the recurrence
         * is then only the h · w_hhᵀ product per step */
        if ((rc = project(x, rows, in, w->w_ih, w->wdt_ih, g4, gx)) < 0)
            goto done;
        if (b_ih)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t k = 0; k < g4; k++)
                    gx[r * g4 + k] += b_ih[k];
        rc = run_direction(gx, batch, seq, h, w, d == 1, lengths, b_hh, hs, cs, gr, out,
                           ndirs * h, d * h);
        if (rc < 0)
            goto done;
    }
done:
    free(gx);
    free(gr);
    free(hs);
    free(cs);
    free(bias);
    return rc;
}
