/* quant_moe.c - CPU kernel of the mixture-of-experts block: routing, tokens grouped by expert, one GEMM chain per expert. */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"

/* Rows of a converted weight panel, as in gemm.c: ~128 KiB of f32. */
static int64_t panel_rows(int64_t K)
{
    int64_t p = (32 * 1024) / (K > 0 ? K : 1);
    return p < 16 ? 16 : p;
}

int dspi_cpu_wmat_linear(const float *x, int64_t M, const dspi_wmat *w, float *y)
{
    int64_t N = w->rows, K = w->cols;
    if (w->s1 == 1 && w->s0 == K)
        return dspi_cpu_linear(x, M, K, w->data, w->dt, N, NULL, DSP_DTYPE_F32, y);
    /* strided weight: gather a panel of rows at a time instead of copying
     * the whole matrix */
    int64_t P = panel_rows(K);
    if (P > N)
        P = N;
    float *panel = malloc((size_t)(P * K > 0 ? P * K : 1) * sizeof *panel);
    if (!panel)
        return DSP_ENOMEM;
    for (int64_t n0 = 0; n0 < N; n0 += P) {
        int64_t np = N - n0 < P ? N - n0 : P;
        for (int64_t r = 0; r < np; r++)
            dspi_load_f32(panel + r * K, w->data, w->dt, (n0 + r) * w->s0, w->s1, K);
        dspi_sgemm(1, M, np, K, x, K, panel, K, y + n0, N);
    }
    free(panel);
    return 0;
}

/* y[M, dim] = down(silu(gate x) * up x) for the M rows of x; h and u are
 * [M, inter] scratch. */
static int mlp(const float *x, int64_t M, const dspi_moe_mlp *e, float *h, float *u, float *y)
{
    int rc;
    int64_t inter = e->gate.rows;
    if ((rc = dspi_cpu_wmat_linear(x, M, &e->gate, h)) < 0 ||
        (rc = dspi_cpu_wmat_linear(x, M, &e->up, u)) < 0)
        return rc;
    dspi_cpu_swiglu(h, u, M * inter, h);
    return dspi_cpu_wmat_linear(h, M, &e->down, y);
}

/* Scores in place over one token's n logits. */
static void score_row(float *s, int n, dsp_moe_score kind)
{
    if (kind == DSP_MOE_SIGMOID) {
        for (int i = 0; i < n; i++)
            s[i] = 1.0f / (1.0f + expf(-s[i]));
        return;
    }
    float mx = s[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        mx = s[i] > mx ? s[i] : mx;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - mx);
        sum += s[i];
    }
    for (int i = 0; i < n; i++)
        s[i] /= sum;
}

/* The k best of s[0..n) into idx/val, best first; equal scores keep the
 * lower expert index first (as torch.topk on CPU does for small n). */
static void top_k(const float *s, int n, int k, int *idx, float *val)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int t = 0; t < j && !taken; t++)
                taken = idx[t] == i;
            if (!taken && (best < 0 || s[i] > s[best]))
                best = i;
        }
        idx[j] = best;
        val[j] = s[best];
    }
}

int dspi_cpu_moe(const float *x, int64_t T, int64_t dim, const dspi_wmat *router,
                 const dspi_moe_mlp *experts, int n_experts, const dspi_moe_mlp *shared,
                 int n_shared, int top_k_, dsp_moe_score score, int renormalize,
                 float routed_scale, float *out)
{
    int rc = DSP_ENOMEM;
    int64_t E = n_experts, K = top_k_, A = T * K, max_inter = 0;
    for (int e = 0; e < n_experts; e++)
        max_inter = experts[e].gate.rows > max_inter ? experts[e].gate.rows : max_inter;
    for (int e = 0; e < n_shared; e++)
        max_inter = shared[e].gate.rows > max_inter ? shared[e].gate.rows : max_inter;
    float *logits = malloc((size_t)(T * E > 0 ? T * E : 1) * sizeof(float));
    int *sel = malloc((size_t)(A > 0 ? A : 1) * sizeof(int));
    float *wt = malloc((size_t)(A > 0 ? A : 1) * sizeof(float));
    int64_t *start = calloc((size_t)E + 1, sizeof(int64_t));
    int64_t *order = malloc((size_t)(A > 0 ? A : 1) * sizeof(int64_t)); /* assignment ids */
    /* per-expert scratch sized for the worst case: every token on one expert */
    int64_t rows = T > 0 ? T : 1;
    float *xe = malloc((size_t)(rows * dim > 0 ? rows * dim : 1) * sizeof(float));
    float *ye = malloc((size_t)(rows * dim > 0 ? rows * dim : 1) * sizeof(float));
    float *h = malloc((size_t)(rows * max_inter > 0 ? rows * max_inter : 1) * sizeof(float));
    float *u = malloc((size_t)(rows * max_inter > 0 ? rows * max_inter : 1) * sizeof(float));
    if (!logits || !sel || !wt || !start || !order || !xe || !ye || !h || !u)
        goto done;

    /* routing: scores, top-k, optional renormalisation, routed_scale */
    if ((rc = dspi_cpu_wmat_linear(x, T, router, logits)) < 0)
        goto done;
    for (int64_t t = 0; t < T; t++) {
        float *s = logits + t * E;
        score_row(s, n_experts, score);
        top_k(s, n_experts, top_k_, sel + t * K, wt + t * K);
        float sum = 0.0f;
        for (int64_t j = 0; j < K; j++)
            sum += wt[t * K + j];
        for (int64_t j = 0; j < K; j++) {
            float v = wt[t * K + j];
            if (renormalize && sum > 0.0f)
                v /= sum;
            wt[t * K + j] = v * routed_scale;
        }
    }

    /* group assignments by expert (counting sort, stable in token order) */
    for (int64_t a = 0; a < A; a++)
        start[sel[a] + 1]++;
    for (int64_t e = 0; e < E; e++)
        start[e + 1] += start[e];
    {
        int64_t *fill = malloc((size_t)E * sizeof *fill);
        if (!fill) {
            rc = DSP_ENOMEM;
            goto done;
        }
        memcpy(fill, start, (size_t)E * sizeof *fill);
        for (int64_t a = 0; a < A; a++)
            order[fill[sel[a]]++] = a;
        free(fill);
    }

    memset(out, 0, (size_t)(T * dim) * sizeof *out);
    /* shared experts see every token: straight on x, no gather */
    for (int e = 0; e < n_shared; e++) {
        if ((rc = mlp(x, T, &shared[e], h, u, ye)) < 0)
            goto done;
        for (int64_t i = 0; i < T * dim; i++)
            out[i] += ye[i];
    }
    /* one GEMM chain per expert over all of its tokens, then a weighted scatter */
    for (int64_t e = 0; e < E; e++) {
        int64_t n = start[e + 1] - start[e];
        if (n == 0)
            continue;
        const int64_t *as = order + start[e];
        for (int64_t r = 0; r < n; r++)
            memcpy(xe + r * dim, x + (as[r] / K) * dim, (size_t)dim * sizeof *xe);
        if ((rc = mlp(xe, n, &experts[e], h, u, ye)) < 0)
            goto done;
        for (int64_t r = 0; r < n; r++) {
            float g = wt[as[r]], *o = out + (as[r] / K) * dim;
            const float *yr = ye + r * dim;
            for (int64_t i = 0; i < dim; i++)
                o[i] += g * yr[i];
        }
    }
    rc = 0;
done:
    free(logits);
    free(sel);
    free(wt);
    free(start);
    free(order);
    free(xe);
    free(ye);
    free(h);
    free(u);
    return rc;
}
