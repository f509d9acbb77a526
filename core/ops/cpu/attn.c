/* attn.c - CPU attention kernels: flash-style tiles for full/causal, visible-key loops for local/hybrid, block-wise heaps for top-k. */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/attn_int.h"

/* Tile sizes: a QB x KB score tile plus the QB x head_dim accumulators stay
 * in L1/L2 for head_dim up to 128, and the tiles are big enough that
 * dspi_sgemm hands them to OpenBLAS rather than its direct loop. */
#define QB 32
#define KB 64

static const float *qrow(const dspi_attn_args *a, int64_t b, int64_t h, int64_t i)
{
    return a->q + b * a->qs[0] + h * a->qs[1] + i * a->qs[2];
}

static const float *krow(const dspi_attn_args *a, int64_t b, int64_t h, int64_t j)
{
    return a->k + b * a->ks[0] + h * a->ks[1] + j * a->ks[2];
}

static const float *vrow(const dspi_attn_args *a, int64_t b, int64_t h, int64_t j)
{
    return a->v + b * a->vs[0] + h * a->vs[1] + j * a->vs[2];
}

/* 8 independent partial sums so the loop vectorises without -ffast-math. */
static float dot(const float *x, const float *y, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int t = 0; t < 8; t++)
            acc[t] += x[i + t] * y[i + t];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

static int key_allowed(const dspi_attn_args *a, int64_t b, int64_t j, int64_t p)
{
    if (a->key_mask && !a->key_mask[b * a->k_len + j])
        return 0;
    return !a->causal || j <= p;
}

/* Keys past the last query of a causal block can never be seen: the key
 * loop stops there instead of masking whole tiles. */
static int64_t key_end(const dspi_attn_args *a, int64_t last_query)
{
    if (!a->causal)
        return a->k_len;
    int64_t p = a->q_offset + last_query + 1;
    return p < a->k_len ? p : a->k_len;
}

/* ---- full and causal: online softmax over key tiles ----------------------
 * Each query row keeps a running max m, a running sum l and an unnormalised
 * accumulator; a new tile rescales them by exp(m_old - m_new). Memory is
 * O(QB * (KB + head_dim)), never q_len x k_len. */
static void flash_block(const dspi_attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t nq,
                        float *S, float *PV, float *acc, float *m, float *l)
{
    int64_t hd = a->head_dim, kvh = h / (a->q_heads / a->kv_heads);
    int64_t kend = key_end(a, i0 + nq - 1);
    const float *Q = qrow(a, b, h, i0);
    for (int64_t r = 0; r < nq; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)(nq * hd));
    for (int64_t j0 = 0; j0 < kend; j0 += KB) {
        int64_t nk = kend - j0 < KB ? kend - j0 : KB;
        dspi_sgemm(1, nq, nk, hd, Q, a->qs[2], krow(a, b, kvh, j0), a->ks[2], S, nk);
        for (int64_t r = 0; r < nq; r++) {
            float *row = S + r * nk, mx = -INFINITY;
            int64_t p = a->q_offset + i0 + r;
            for (int64_t c = 0; c < nk; c++) {
                if (key_allowed(a, b, j0 + c, p)) {
                    row[c] *= a->scale;
                    if (row[c] > mx)
                        mx = row[c];
                } else {
                    row[c] = -INFINITY;
                }
            }
            if (mx == -INFINITY) {      /* nothing visible in this tile */
                memset(row, 0, sizeof(float) * (size_t)nk);
                continue;
            }
            float mnew = mx > m[r] ? mx : m[r];
            float alpha = expf(m[r] - mnew), sum = 0.0f;
            for (int64_t c = 0; c < nk; c++) {
                float e = row[c] == -INFINITY ? 0.0f : expf(row[c] - mnew);
                row[c] = e;
                sum += e;
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mnew;
            if (alpha != 1.0f)
                for (int64_t d = 0; d < hd; d++)
                    acc[r * hd + d] *= alpha;
        }
        dspi_sgemm(0, nq, hd, nk, S, nk, vrow(a, b, kvh, j0), a->vs[2], PV, hd);
        for (int64_t t = 0; t < nq * hd; t++)
            acc[t] += PV[t];
    }
    float *o = a->out + ((b * a->q_heads + h) * a->q_len + i0) * hd;
    for (int64_t r = 0; r < nq; r++) {
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (int64_t d = 0; d < hd; d++)
            o[r * hd + d] = acc[r * hd + d] * inv;
    }
}

static int attn_flash(const dspi_attn_args *a)
{
    int64_t hd = a->head_dim;
    float *S = malloc(sizeof(float) * (size_t)(QB * KB + 3 * QB * hd + 2 * QB));
    if (!S)
        return DSP_ENOMEM;
    float *PV = S + QB * KB, *acc = PV + QB * hd, *m = acc + QB * hd, *l = m + QB;
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->q_heads; h++)
            for (int64_t i0 = 0; i0 < a->q_len; i0 += QB)
                flash_block(a, b, h, i0, a->q_len - i0 < QB ? a->q_len - i0 : QB, S, PV, acc,
                            m, l);
    free(S);
    return 0;
}

/* ---- a softmax over a gathered list of keys (local, hybrid, top-k) ------- */
static void softmax_gather(const dspi_attn_args *a, int64_t b, int64_t kvh, const int64_t *idx,
                           float *sc, int64_t n, float *o)
{
    int64_t hd = a->head_dim;
    memset(o, 0, sizeof(float) * (size_t)hd);
    if (n == 0)
        return;                         /* a query that sees no key: zeros */
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t t = 0; t < n; t++)
        if (sc[t] > mx)
            mx = sc[t];
    for (int64_t t = 0; t < n; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    for (int64_t t = 0; t < n; t++) {
        const float *vr = vrow(a, b, kvh, idx[t]);
        float w = sc[t] / sum;
        for (int64_t d = 0; d < hd; d++)
            o[d] += w * vr[d];
    }
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t u = *(const int64_t *)x, w = *(const int64_t *)y;
    return (u > w) - (u < w);
}

/* ---- local and hybrid: only the window band and the global keys ---------- */
static int attn_sparse(const dspi_attn_args *a)
{
    int64_t n = a->k_len > 0 ? a->k_len : 1, ng = a->n_global;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(n + ng + 1));
    float *sc = malloc(sizeof(float) * (size_t)n);
    if (!idx || !sc) {
        free(idx);
        free(sc);
        return DSP_ENOMEM;
    }
    /* globals sorted and deduplicated, after the index list's room */
    int64_t *g = idx + n, gn = 0;
    if (a->kind == DSP_ATTN_HYBRID && ng > 0) {
        memcpy(g, a->global, sizeof(int64_t) * (size_t)ng);
        qsort(g, (size_t)ng, sizeof *g, cmp_i64);
        for (int64_t t = 0; t < ng; t++)
            if (gn == 0 || g[gn - 1] != g[t])
                g[gn++] = g[t];
    }
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->q_heads; h++) {
            int64_t kvh = h / (a->q_heads / a->kv_heads);
            for (int64_t i = 0; i < a->q_len; i++) {
                int64_t p = a->q_offset + i, cnt = 0;
                int64_t hi = a->k_len - 1;
                if (a->causal && p < hi)
                    hi = p;
                int qglobal = gn > 0 && bsearch(&p, g, (size_t)gn, sizeof *g, cmp_i64);
                if (qglobal) {
                    for (int64_t j = 0; j <= hi; j++)
                        if (key_allowed(a, b, j, p))
                            idx[cnt++] = j;
                } else {
                    int64_t lo_b = p - a->window + 1, hi_b = p + a->window - 1;
                    if (lo_b < 0)
                        lo_b = 0;
                    if (hi_b > hi)
                        hi_b = hi;
                    for (int64_t j = lo_b; j <= hi_b; j++)
                        if (key_allowed(a, b, j, p))
                            idx[cnt++] = j;
                    for (int64_t t = 0; t < gn; t++)
                        if (g[t] >= 0 && g[t] <= hi && (g[t] < lo_b || g[t] > hi_b) &&
                            key_allowed(a, b, g[t], p))
                            idx[cnt++] = g[t];
                }
                const float *qr = qrow(a, b, h, i);
                for (int64_t t = 0; t < cnt; t++)
                    sc[t] = dot(qr, krow(a, b, kvh, idx[t]), a->head_dim) * a->scale;
                softmax_gather(a, b, kvh, idx, sc, cnt,
                               a->out + ((b * a->q_heads + h) * a->q_len + i) * a->head_dim);
            }
        }
    free(idx);
    free(sc);
    return 0;
}

/* ---- top-k: per query a min-heap of its best keys so far ------------------
 * The heap's root is the worst kept key: the lowest score, and among equal
 * scores the highest position (ties keep the lower j). Keys arrive in
 * increasing j, so a newcomer that only ties the root never replaces it. */
static int heap_worse(float s1, int64_t j1, float s2, int64_t j2)
{
    return s1 < s2 || (s1 == s2 && j1 > j2);
}

static void heap_sift_down(float *hs, int64_t *hj, int64_t n, int64_t i)
{
    for (;;) {
        int64_t w = i, c1 = 2 * i + 1, c2 = 2 * i + 2;
        if (c1 < n && heap_worse(hs[c1], hj[c1], hs[w], hj[w]))
            w = c1;
        if (c2 < n && heap_worse(hs[c2], hj[c2], hs[w], hj[w]))
            w = c2;
        if (w == i)
            return;
        float ts = hs[i];
        int64_t tj = hj[i];
        hs[i] = hs[w];
        hj[i] = hj[w];
        hs[w] = ts;
        hj[w] = tj;
        i = w;
    }
}

static void heap_offer(float *hs, int64_t *hj, int64_t *n, int64_t cap, float s, int64_t j)
{
    if (*n < cap) {
        int64_t i = (*n)++;
        hs[i] = s;
        hj[i] = j;
        while (i > 0) {
            int64_t up = (i - 1) / 2;
            if (!heap_worse(hs[i], hj[i], hs[up], hj[up]))
                break;
            float ts = hs[i];
            int64_t tj = hj[i];
            hs[i] = hs[up];
            hj[i] = hj[up];
            hs[up] = ts;
            hj[up] = tj;
            i = up;
        }
    } else if (heap_worse(hs[0], hj[0], s, j)) {
        hs[0] = s;
        hj[0] = j;
        heap_sift_down(hs, hj, cap, 0);
    }
}

static int attn_topk(const dspi_attn_args *a)
{
    int64_t cap = a->topk < a->k_len ? a->topk : a->k_len, hd = a->head_dim;
    if (cap < 1)
        cap = 1;
    float *S = malloc(sizeof(float) * (size_t)(QB * KB + QB * cap));
    int64_t *hj = malloc(sizeof(int64_t) * (size_t)(QB * cap + QB));
    if (!S || !hj) {
        free(S);
        free(hj);
        return DSP_ENOMEM;
    }
    float *hs = S + QB * KB;
    int64_t *hn = hj + QB * cap;
    for (int64_t b = 0; b < a->batch; b++)
        for (int64_t h = 0; h < a->q_heads; h++) {
            int64_t kvh = h / (a->q_heads / a->kv_heads);
            for (int64_t i0 = 0; i0 < a->q_len; i0 += QB) {
                int64_t nq = a->q_len - i0 < QB ? a->q_len - i0 : QB;
                int64_t kend = key_end(a, i0 + nq - 1);
                memset(hn, 0, sizeof(int64_t) * (size_t)nq);
                for (int64_t j0 = 0; j0 < kend; j0 += KB) {
                    int64_t nk = kend - j0 < KB ? kend - j0 : KB;
                    dspi_sgemm(1, nq, nk, hd, qrow(a, b, h, i0), a->qs[2], krow(a, b, kvh, j0),
                               a->ks[2], S, nk);
                    for (int64_t r = 0; r < nq; r++) {
                        int64_t p = a->q_offset + i0 + r;
                        for (int64_t c = 0; c < nk; c++)
                            if (key_allowed(a, b, j0 + c, p))
                                heap_offer(hs + r * cap, hj + r * cap, &hn[r], cap,
                                           S[r * nk + c] * a->scale, j0 + c);
                    }
                }
                for (int64_t r = 0; r < nq; r++)
                    softmax_gather(a, b, kvh, hj + r * cap, hs + r * cap, hn[r],
                                   a->out + ((b * a->q_heads + h) * a->q_len + i0 + r) * hd);
            }
        }
    free(S);
    free(hj);
    return 0;
}

int dspi_cpu_attention(const dspi_attn_args *a)
{
    if (a->batch == 0 || a->q_heads == 0 || a->q_len == 0 || a->head_dim == 0)
        return 0;
    switch (a->kind) {
    case DSP_ATTN_FULL:
    case DSP_ATTN_CAUSAL:
        return attn_flash(a);
    case DSP_ATTN_LOCAL:
    case DSP_ATTN_HYBRID:
        return attn_sparse(a);
    case DSP_ATTN_TOPK:
        return attn_topk(a);
    }
    return DSP_EINVAL;
}
