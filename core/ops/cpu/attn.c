/* attn.c - CPU attention: query blocks x key tiles with an online softmax (full, causal, local, hybrid) or a running per-query top-k, on the ops thread pool; portable kernels here, AVX2/FMA ones in attn_avx2.c. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "ops/attn_int.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/simd.h"

/* How it is laid out, and why (the constants are in attn_int.h):
 * - One work item is a block of queries of one (batch, head). Its queries
 *   are packed transposed, Qt [head_dim][LD], so each query owns a vector
 *   lane. A key tile's scores are S [KB keys][LD] = K·Qᵀ and the output
 *   accumulator is Ot [head_dim][LD]. Everything per query (running max,
 *   running sum, the rescale of the accumulator, the top-k threshold) is
 *   then a plain lane-wise vector operation, never a horizontal one.
 * - A block is QB_FULL (256) queries for unmasked attention: each K/V tile,
 *   read from L2/L3 (a head's K and V outgrow L2 from n ~ 1024), then
 *   serves 256 queries instead of 64 (~15% faster at n = 2048, 1 thread).
 *   Under causal, window and top-k it is QB (64), since a taller block
 *   computes more of the tiles the mask then discards (causal with 128 or
 *   256 measured slower at n = 512, no clearer than noise at 2048).
 * - Per key tile the block goes one strip of 16 query lanes at a time
 *   through scores, softmax step and P·V, so the strip's scores are still
 *   in L1 when the softmax and P·V read them (all of S is 68 KiB at
 *   QB_FULL). For a tile with nothing masked, the score kernel also hands
 *   over each lane's max, sparing the softmax a pass and its -inf care.
 * - Both products use one register-blocked shape, 6 rows x 16 query lanes
 *   (12 accumulators): rows are keys for S = K·Qᵀ, head dims for
 *   Ot += Vᵀ·P. K and V are read in place through their row strides (KV
 *   cache views included), broadcast one element at a time, so nothing but
 *   the block's queries is ever packed. No BLAS call: at these tile sizes
 *   OpenBLAS's sgemm measured ~40-50 GFLOP/s here, the micro-kernels ~70.
 * - 1 to ROWS_MAX queries (decode) would leave most lanes idle: they take
 *   a row path (a dot product over head_dim per key, head dims in lanes).
 * - Scratch is per thread and independent of the sequence length:
 *   (2·head_dim + KB)·LD floats (207 KiB at head_dim 64), plus 2·topk
 *   candidates per query for top-k (185 KiB at topk 32). No q_len x k_len
 *   matrix exists for any kind.
 * - Key tiles no query of the block can see are never computed (causal:
 *   past the block's last position; local: outside the window band;
 *   hybrid: outside the band unless they hold a global key or the block a
 *   global query). Visibility masks are applied only to tiles that need
 *   one (the diagonal, the band's edges, key_mask holes). */
#define QB DSPI_ATTN_QB
#define QB_FULL DSPI_ATTN_QB_FULL
#define KB DSPI_ATTN_KB
#define LD DSPI_ATTN_LD
#define LANES DSPI_ATTN_LANES
#define ROWS_MAX DSPI_ATTN_ROWS_MAX
#define LOG2E 1.44269504088896341f

typedef struct attn_plan {
    const dspi_attn_args *a;
    int64_t group;              /* query heads per kv head */
    int64_t qb;                 /* queries per block: QB_FULL or QB */
    int64_t nqb;                /* query blocks per (batch, head) */
    const int64_t *glob;        /* hybrid: global positions, sorted, distinct */
    int64_t nglob;
    int64_t cap;                /* top-k: keys kept per query */
    int topk;                   /* 1: the running top-k path; 0: online softmax */
    int avx2;
    size_t ws_bytes;            /* scratch of one slice of items */
    atomic_int failed;
} attn_plan;

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

/* ---- portable micro-kernels (same layout; DSPIPE_OPS_SIMD=0, non-x86) --- */

/* S[r][i] = Σ_t K[r][t] · Qt[t][i] for r < nk, i < lanes */
static void scores_c(const float *Qt, const float *K, int64_t ks, int nk, int64_t d, int lanes,
                     float *S)
{
    for (int r = 0; r < nk; r++) {
        float *s = S + (int64_t)r * LD;
        const float *kr = K + r * ks;
        for (int i = 0; i < lanes; i++)
            s[i] = 0.0f;
        for (int64_t t = 0; t < d; t++) {
            float kv = kr[t];
            const float *q = Qt + t * LD;
            for (int i = 0; i < lanes; i++)
                s[i] += kv * q[i];
        }
    }
}

/* The online softmax step of one tile, in base 2 (scores carry log2(e)):
 * per lane the new running max m, the factor al = 2^(m_old - m_new) that
 * rescales the old sum and accumulator, and S turned into 2^(S - m_new).
 * A lane that has seen no visible key keeps m = -inf and gets zeros. */
static void softmax_tile_c(float *S, int nk, int lanes, float *m, float *l, float *al)
{
    for (int i = 0; i < lanes; i++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int r = 0; r < nk; r++)
            mx = S[r * LD + i] > mx ? S[r * LD + i] : mx;
        float mn = mx > m[i] ? mx : m[i], ms = mn == -INFINITY ? 0.0f : mn;
        for (int r = 0; r < nk; r++) {
            float p = exp2f(S[r * LD + i] - ms);
            S[r * LD + i] = p;
            sum += p;
        }
        al[i] = exp2f(m[i] - ms);
        l[i] = l[i] * al[i] + sum;
        m[i] = mn;
    }
}

/* Ot[c][i] = Ot[c][i] · al[i] + Σ_r V[r][c] · P[r][i] */
static void pv_c(const float *P, const float *V, int64_t vs, int nk, int64_t d, int lanes,
                 const float *al, float *Ot)
{
    for (int64_t c = 0; c < d; c++)
        for (int i = 0; i < lanes; i++)
            Ot[c * LD + i] *= al[i];
    for (int r = 0; r < nk; r++) {
        const float *vr = V + r * vs, *p = P + (int64_t)r * LD;
        for (int64_t c = 0; c < d; c++) {
            float vv = vr[c];
            float *o = Ot + c * LD;
            for (int i = 0; i < lanes; i++)
                o[i] += vv * p[i];
        }
    }
}


/* ---- which keys a block of queries sees ---------------------------------- */

static int is_global(const attn_plan *pl, int64_t pos)
{
    int64_t lo = 0, hi = pl->nglob;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (pl->glob[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pl->nglob && pl->glob[lo] == pos;
}

/* Any global key in [j0, j1]. */
static int global_in(const attn_plan *pl, int64_t j0, int64_t j1)
{
    int64_t lo = 0, hi = pl->nglob;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (pl->glob[mid] < j0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pl->nglob && pl->glob[lo] <= j1;
}

/* Keys [*lo, *hi) worth visiting for queries at positions p0..p1. */
static void key_range(const dspi_attn_args *a, int64_t p0, int64_t p1, int64_t *lo, int64_t *hi)
{
    int64_t b = 0, e = a->k_len;
    if (a->causal && p1 + 1 < e)
        e = p1 + 1;
    if (a->kind == DSP_ATTN_LOCAL) {
        if (p0 - a->window + 1 > b)
            b = p0 - a->window + 1;
        if (p1 + a->window < e)
            e = p1 + a->window;
    }
    *lo = b;
    *hi = e > b ? e : b;
}

/* Whether some key of [j0, j0 + nk) is hidden from some query of p0..p1. */
static int tile_masked(const attn_plan *pl, int64_t b, int64_t j0, int nk, int64_t p0, int64_t p1)
{
    const dspi_attn_args *a = pl->a;
    int64_t j1 = j0 + nk - 1;
    if (a->key_mask && memchr(a->key_mask + b * a->k_len + j0, 0, (size_t)nk))
        return 1;
    if (a->causal && j1 > p0)
        return 1;
    if ((a->kind == DSP_ATTN_LOCAL || a->kind == DSP_ATTN_HYBRID) &&
        (j0 < p1 - a->window + 1 || j1 > p0 + a->window - 1))
        return 1;
    return 0;
}

/* Scores of keys a query cannot see become -inf. Without global tokens
 * the lanes that see key j form one interval (causal: i >= j - p0; window:
 * |p0 + i - j| < window). gq[i]: query lane i is a global token. */
static void mask_tile(const attn_plan *pl, int64_t b, int64_t j0, int nk, int64_t p0, int lanes,
                      const unsigned char *gq, float *S)
{
    const dspi_attn_args *a = pl->a;
    int local = a->kind == DSP_ATTN_LOCAL || a->kind == DSP_ATTN_HYBRID;
    for (int r = 0; r < nk; r++) {
        int64_t j = j0 + r;
        float *row = S + (int64_t)r * LD;
        if (a->key_mask && !a->key_mask[b * a->k_len + j]) {
            for (int i = 0; i < lanes; i++)
                row[i] = -INFINITY;
            continue;
        }
        if (a->kind == DSP_ATTN_HYBRID) {
            int gk = is_global(pl, j);
            for (int i = 0; i < lanes; i++) {
                int64_t p = p0 + i;
                int vis = (!a->causal || j <= p) &&
                          (gk || gq[i] || (p - j < a->window && j - p < a->window));
                if (!vis)
                    row[i] = -INFINITY;
            }
            continue;
        }
        int64_t lo = 0, hi = lanes - 1;
        if (a->causal && j - p0 > lo)
            lo = j - p0;
        if (local) {
            if (j - a->window + 1 - p0 > lo)
                lo = j - a->window + 1 - p0;
            if (j + a->window - 1 - p0 < hi)
                hi = j + a->window - 1 - p0;
        }
        if (lo <= 0 && hi >= lanes - 1)
            continue;
        if (lo > lanes)
            lo = lanes;
        if (hi < -1)
            hi = -1;
#ifdef DSPI_ATTN_AVX2
        if (pl->avx2) {
            dspi_attn_avx2_mask_row(row, lanes, (int)lo, (int)hi);
            continue;
        }
#endif
        for (int i = 0; i < lanes; i++)
            if (i < lo || i > hi)
                row[i] = -INFINITY;
    }
}

/* Qt[t][i] = q[i0 + i][t] · mul; lanes past nq are zero. */
static void pack_q(const attn_plan *pl, int64_t b, int64_t h, int64_t i0, int nq, int lanes,
                   float mul, float *Qt)
{
    const dspi_attn_args *a = pl->a;
    int64_t d = a->head_dim;
#ifdef DSPI_ATTN_AVX2
    if (pl->avx2)
        dspi_attn_avx2_pack_q(qrow(a, b, h, i0), a->qs[2], nq, d, mul, Qt);
    else
#endif
        for (int i = 0; i < nq; i++) {
            const float *q = qrow(a, b, h, i0 + i);
            for (int64_t t = 0; t < d; t++)
                Qt[t * LD + i] = q[t] * mul;
        }
    for (int64_t t = 0; t < d; t++)
        for (int i = nq; i < lanes; i++)
            Qt[t * LD + i] = 0.0f;
}

static void scores(const attn_plan *pl, const float *Qt, const float *K, int nk, int lanes,
                   float *S)
{
#ifdef DSPI_ATTN_AVX2
    if (pl->avx2) {
        dspi_attn_avx2_scores(Qt, K, pl->a->ks[2], nk, pl->a->head_dim, lanes / LANES, S, NULL);
        return;
    }
#endif
    scores_c(Qt, K, pl->a->ks[2], nk, pl->a->head_dim, lanes, S);
}

static void prefetch_rows(const float *x, int64_t stride, int n, int64_t d)
{
    for (int r = 0; r < n; r++)
        for (int64_t c = 0; c < d; c += 16)
            __builtin_prefetch(x + r * stride + c, 0, 3);
}

/* Whether a block of nq queries takes the row path (see dspi_attn_avx2_scores_rows). */
static int use_rows(const attn_plan *pl, int nq)
{
#ifdef DSPI_ATTN_AVX2
    return pl->avx2 && nq <= ROWS_MAX && pl->a->head_dim % 8 == 0;
#else
    (void)pl;
    (void)nq;
    return 0;
#endif
}

/* Row path: Qr[i][t] = q[i0 + i][t] · mul, and S's 8 lanes zeroed (lanes
 * past nq then stay finite through masks and softmax). */
static void pack_rows(const dspi_attn_args *a, int64_t b, int64_t h, int64_t i0, int nq,
                      float mul, float *Qr, float *S)
{
    int64_t d = a->head_dim;
    for (int i = 0; i < nq; i++) {
        const float *q = qrow(a, b, h, i0 + i);
        for (int64_t t = 0; t < d; t++)
            Qr[i * d + t] = q[t] * mul;
    }
    for (int r = 0; r < KB; r++)
        memset(S + (int64_t)r * LD, 0, 8 * sizeof(float));
}

/* ---- full, causal, local, hybrid: online softmax over key tiles ---------- */

/* A block's scratch (see flash_block); lane i of every per-lane array is at
 * offset i, so strip g's lanes start at offset g. tmax: one strip's tile
 * max per lane. */
typedef struct flash_ws {
    float *Qt, *Ot, *S, *m, *l, *al, *tmax;
    unsigned char *gq;
} flash_ws;

/* One key tile (K, V at its first row) for the strip of LANES query lanes
 * at lane g: scores, mask, online softmax step, P·V. */
static void flash_strip(const attn_plan *pl, const flash_ws *w, int g, int64_t b, int64_t j0,
                        int nk, int64_t p0, int masked, const float *K, const float *V)
{
    const dspi_attn_args *a = pl->a;
    int64_t d = a->head_dim;
    float *S = w->S + g;
#ifdef DSPI_ATTN_AVX2
    if (pl->avx2) {
        float *tmax = masked ? NULL : w->tmax;
        dspi_attn_avx2_scores(w->Qt + g, K, a->ks[2], nk, d, 1, S, tmax);
        if (masked)
            mask_tile(pl, b, j0, nk, p0 + g, LANES, w->gq + g, S);
        dspi_attn_avx2_softmax(S, nk, LANES, w->m + g, w->l + g, w->al + g, tmax);
        dspi_attn_avx2_pv(S, V, a->vs[2], nk, d, 1, w->al + g, w->Ot + g);
        return;
    }
#endif
    scores_c(w->Qt + g, K, a->ks[2], nk, d, LANES, S);
    if (masked)
        mask_tile(pl, b, j0, nk, p0 + g, LANES, w->gq + g, S);
    softmax_tile_c(S, nk, LANES, w->m + g, w->l + g, w->al + g);
    pv_c(S, V, a->vs[2], nk, d, LANES, w->al + g, w->Ot + g);
}

static void flash_block(const attn_plan *pl, int64_t b, int64_t h, int64_t i0, int nq, float *ws)
{
    const dspi_attn_args *a = pl->a;
    int64_t d = a->head_dim, kvh = h / pl->group;
    int rows = use_rows(pl, nq), lanes = rows ? 8 : (nq + LANES - 1) / LANES * LANES;
    float *Qt = ws, *Ot = Qt + d * LD, *S = Ot + d * LD, *m = S + KB * LD, *l = m + QB_FULL;
    float *al = l + QB_FULL, *tmax = al + QB_FULL;
    unsigned char *gq = (unsigned char *)(tmax + LANES);
    const flash_ws w = {Qt, Ot, S, m, l, al, tmax, gq};
    int64_t p0 = a->q_offset + i0, p1 = p0 + nq - 1, lo, hi;
    int hybrid = a->kind == DSP_ATTN_HYBRID, gq_any = 0;

    for (int i = 0; i < lanes; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        gq[i] = hybrid && i < nq && is_global(pl, p0 + i);
        gq_any |= gq[i];
    }
    if (rows) {
        pack_rows(a, b, h, i0, nq, a->scale * LOG2E, Qt, S);
        memset(Ot, 0, sizeof(float) * (size_t)(nq * d));     /* Or [nq][d] */
    } else {
        pack_q(pl, b, h, i0, nq, lanes, a->scale * LOG2E, Qt);
        for (int64_t c = 0; c < d; c++)
            memset(Ot + c * LD, 0, sizeof(float) * (size_t)lanes);
    }
    key_range(a, p0, p1, &lo, &hi);
    const float *K = krow(a, b, kvh, 0), *V = vrow(a, b, kvh, 0);
    for (int64_t j0 = lo; j0 < hi; j0 += KB) {
        int nk = (int)(hi - j0 < KB ? hi - j0 : KB);
        /* hybrid: a tile outside the window band matters only for its globals */
        if (hybrid && !gq_any && (j0 + nk - 1 < p0 - a->window + 1 || j0 > p1 + a->window - 1) &&
            !global_in(pl, j0, j0 + nk - 1))
            continue;
        /* V's rows are read 6 floats at a time, a row apart: ask for the
         * tile now, to have it in L1 once the scores are done */
        prefetch_rows(V + j0 * a->vs[2], a->vs[2], nk, d);
#ifdef DSPI_ATTN_AVX2
        if (rows) {
            dspi_attn_avx2_scores_rows(Qt, nq, K + j0 * a->ks[2], a->ks[2], nk, d, S);
            if (tile_masked(pl, b, j0, nk, p0, p1))
                mask_tile(pl, b, j0, nk, p0, lanes, gq, S);
            dspi_attn_avx2_softmax(S, nk, lanes, m, l, al, NULL);
            dspi_attn_avx2_pv_rows(S, V + j0 * a->vs[2], a->vs[2], nk, d, nq, al, Ot);
            continue;
        }
#endif
        int masked = tile_masked(pl, b, j0, nk, p0, p1);
        for (int g = 0; g < lanes; g += LANES)
            flash_strip(pl, &w, g, b, j0, nk, p0, masked, K + j0 * a->ks[2],
                        V + j0 * a->vs[2]);
    }
    float *o = a->out + ((b * a->q_heads + h) * a->q_len + i0) * d;
#ifdef DSPI_ATTN_AVX2
    if (pl->avx2 && !rows) {
        dspi_attn_avx2_unpack_o(Ot, l, nq, d, o);
        return;
    }
#endif
    for (int i = 0; i < nq; i++) {
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        for (int64_t c = 0; c < d; c++)
            o[i * d + c] = (rows ? Ot[i * d + c] : Ot[c * LD + i]) * inv;
    }
}

/* ---- top-k: per query a buffer of candidates and a threshold -------------
 * Order: a higher score first, among equal scores the lower position (the
 * reference's stable sort). A query's buffer holds up to 2·cap candidates;
 * when it is full, a quickselect keeps its best cap and the worst of those
 * becomes the lane's threshold. Keys arrive in increasing j, so a later key
 * that only ties the threshold ranks below the kept one and is rightly
 * refused: a key enters only when its score beats the threshold, tested
 * 8 lanes at a time. That is O(1) amortised per accepted key and, for
 * random scores, about cap·(1 + ln(n / cap)) accepted keys per query. */
static int better(float s1, int64_t j1, float s2, int64_t j2)
{
    return s1 > s2 || (s1 == s2 && j1 < j2);
}

static void cand_swap(float *s, int64_t *j, int64_t x, int64_t y)
{
    float ts = s[x];
    int64_t tj = j[x];
    s[x] = s[y];
    j[x] = j[y];
    s[y] = ts;
    j[y] = tj;
}

/* Reorders n candidates so the best k (1 <= k < n) come first, the k-th
 * best at k - 1: quickselect with median-of-three pivots and a branch-free
 * partition (random scores would mispredict half of the branches). */
static void keep_best(float *s, int64_t *j, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, st = lo;
        if (better(s[mid], j[mid], s[lo], j[lo]))
            cand_swap(s, j, mid, lo);
        if (better(s[hi], j[hi], s[lo], j[lo]))
            cand_swap(s, j, hi, lo);
        if (better(s[mid], j[mid], s[hi], j[hi]))
            cand_swap(s, j, mid, hi);           /* the median is the pivot, at hi */
        float ps = s[hi];
        int64_t pj = j[hi];
        /* [lo, st) beat the pivot, [st, i) do not; a[i] swaps with a[st]
         * either way and st advances only past a winner */
        for (int64_t i = lo; i < hi; i++) {
            float xs = s[i];
            int64_t xj = j[i];
            s[i] = s[st];
            j[i] = j[st];
            s[st] = xs;
            j[st] = xj;
            st += (xs > ps) | ((xs == ps) & (xj < pj));
        }
        cand_swap(s, j, st, hi);
        if (st == want)
            return;
        if (st < want)
            lo = st + 1;
        else
            hi = st - 1;
    }
}


/* softmax over the n kept scores (natural units; sc is overwritten), then
 * the weighted sum of their v rows */
static void softmax_gather(const attn_plan *pl, int64_t b, int64_t kvh, const int64_t *idx,
                           float *sc, int64_t n, float *o)
{
    const dspi_attn_args *a = pl->a;
    int64_t d = a->head_dim;
    memset(o, 0, sizeof(float) * (size_t)d);
    if (n == 0)
        return;                         /* a query that sees no key: zeros */
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t t = 0; t < n; t++)
        mx = sc[t] > mx ? sc[t] : mx;
    for (int64_t t = 0; t < n; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    for (int64_t t = 0; t < n; t++) {
        const float *vr = vrow(a, b, kvh, idx[t]);
        float w = sc[t] / sum;
#ifdef DSPI_ATTN_AVX2
        if (pl->avx2) {
            dspi_attn_avx2_axpy(o, vr, w, d);
            continue;
        }
#endif
        for (int64_t c = 0; c < d; c++)
            o[c] += w * vr[c];
    }
}

static void topk_select(const attn_plan *pl, const float *S, int nk, int64_t j0, int lanes,
                        float *thr, float *cs, int64_t *cj, int64_t *cn)
{
    int64_t cap = pl->cap, room = 2 * cap;
    for (int v = 0; v < lanes; v += 8)
        for (int r = 0; r < nk; r++) {
            const float *s = S + (int64_t)r * LD + v;
            int bits = 0;
#ifdef DSPI_ATTN_AVX2
            if (pl->avx2)
                bits = dspi_attn_avx2_above(s, thr + v);
            else
#endif
                for (int t = 0; t < 8; t++)
                    bits |= (s[t] > thr[v + t]) << t;
            for (; bits; bits &= bits - 1) {
                int i = v + __builtin_ctz((unsigned)bits);
                float *qs = cs + i * room;
                int64_t *qj = cj + i * room;
                qs[cn[i]] = s[i - v];
                qj[cn[i]++] = j0 + r;
                if (cn[i] == room) {
                    keep_best(qs, qj, room, cap);
                    cn[i] = cap;
                    thr[i] = qs[cap - 1];
                }
            }
        }
}

static void topk_block(const attn_plan *pl, int64_t b, int64_t h, int64_t i0, int nq, float *ws)
{
    const dspi_attn_args *a = pl->a;
    int64_t d = a->head_dim, kvh = h / pl->group, cap = pl->cap, room = 2 * cap;
    int rows = use_rows(pl, nq), lanes = rows ? 8 : (nq + LANES - 1) / LANES * LANES;
    float *Qt = ws, *S = Qt + d * LD, *thr = S + KB * LD, *cs = thr + QB;
    int64_t *cj = (int64_t *)(cs + QB * room), *cn = cj + QB * room;
    int64_t p0 = a->q_offset + i0, p1 = p0 + nq - 1, lo, hi;

    /* unscaled q: scores are then rounded exactly as (q·k)·scale, so ties
     * are ties in the same places as in the reference */
    if (rows)
        pack_rows(a, b, h, i0, nq, 1.0f, Qt, S);
    else
        pack_q(pl, b, h, i0, nq, lanes, 1.0f, Qt);
    for (int i = 0; i < lanes; i++) {
        thr[i] = i < nq ? -INFINITY : INFINITY;     /* padding lanes keep nothing */
        cn[i] = 0;
    }
    key_range(a, p0, p1, &lo, &hi);
    const float *K = krow(a, b, kvh, 0);
    for (int64_t j0 = lo; j0 < hi; j0 += KB) {
        int nk = (int)(hi - j0 < KB ? hi - j0 : KB);
#ifdef DSPI_ATTN_AVX2
        if (rows)
            dspi_attn_avx2_scores_rows(Qt, nq, K + j0 * a->ks[2], a->ks[2], nk, d, S);
        else
#endif
            scores(pl, Qt, K + j0 * a->ks[2], nk, lanes, S);
        for (int r = 0; r < nk; r++)
            for (int i = 0; i < lanes; i++)
                S[r * LD + i] *= a->scale;
        if (tile_masked(pl, b, j0, nk, p0, p1))
            mask_tile(pl, b, j0, nk, p0, lanes, NULL, S);
        topk_select(pl, S, nk, j0, lanes, thr, cs, cj, cn);
    }
    float *o = a->out + ((b * a->q_heads + h) * a->q_len + i0) * d;
    for (int i = 0; i < nq; i++) {
        if (cn[i] > cap)
            keep_best(cs + i * room, cj + i * room, cn[i], cap);
        softmax_gather(pl, b, kvh, cj + i * room, cs + i * room, cn[i] < cap ? cn[i] : cap,
                       o + i * d);
    }
}

/* Items t = 0.. run the longest query blocks first (the last ones, under a
 * causal mask), so the pool's last slices are the short ones. */
static void attn_range(void *ctx, int64_t begin, int64_t end)
{
    attn_plan *pl = ctx;
    const dspi_attn_args *a = pl->a;
    float *ws = aligned_alloc(64, pl->ws_bytes);
    if (!ws) {
        atomic_store(&pl->failed, 1);
        return;
    }
    int64_t bh = a->batch * a->q_heads;
    for (int64_t t = begin; t < end; t++) {
        int64_t qb = pl->nqb - 1 - t / bh, b = (t % bh) / a->q_heads, h = t % a->q_heads;
        int64_t i0 = qb * pl->qb;
        int nq = (int)(a->q_len - i0 < pl->qb ? a->q_len - i0 : pl->qb);
        if (pl->topk)
            topk_block(pl, b, h, i0, nq, ws);
        else
            flash_block(pl, b, h, i0, nq, ws);
    }
    free(ws);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t u = *(const int64_t *)x, w = *(const int64_t *)y;
    return (u > w) - (u < w);
}

int dspi_cpu_attention(const dspi_attn_args *a)
{
    attn_plan pl;
    int64_t *glob = NULL;
    if (a->batch == 0 || a->q_heads == 0 || a->q_len == 0 || a->head_dim == 0)
        return 0;
    memset(&pl, 0, sizeof pl);
    pl.a = a;
    pl.group = a->q_heads / a->kv_heads;
    pl.avx2 = dspi_cpu_use_avx2();
    atomic_init(&pl.failed, 0);
    /* top-k that keeps every key is plain attention under causal/key_mask */
    pl.topk = a->kind == DSP_ATTN_TOPK && a->topk < a->k_len;
    pl.qb = a->kind == DSP_ATTN_FULL && !a->causal ? QB_FULL : QB;
    pl.nqb = (a->q_len + pl.qb - 1) / pl.qb;
    int64_t d = a->head_dim, span = a->k_len;
    size_t bytes;
    if (pl.topk) {
        pl.cap = a->topk;
        if ((uint64_t)pl.cap > (SIZE_MAX / 4 - (uint64_t)(d + KB + 1) * LD) / (QB * 24))
            return DSP_ENOMEM;
        bytes = sizeof(float) * (size_t)((d + KB) * LD + QB + QB * 2 * pl.cap) +
                sizeof(int64_t) * (size_t)(QB * 2 * pl.cap + QB);
    } else {
        if ((uint64_t)d > SIZE_MAX / 16 / LD)
            return DSP_ENOMEM;
        bytes = sizeof(float) * (size_t)((2 * d + KB) * LD + 3 * QB_FULL + LANES) + QB_FULL;
    }
    pl.ws_bytes = (bytes + 63) / 64 * 64;
    if (a->kind == DSP_ATTN_HYBRID && a->n_global > 0) {
        if (!(glob = malloc(sizeof(int64_t) * (size_t)a->n_global)))
            return DSP_ENOMEM;
        memcpy(glob, a->global, sizeof(int64_t) * (size_t)a->n_global);
        qsort(glob, (size_t)a->n_global, sizeof *glob, cmp_i64);
        for (int64_t t = 0; t < a->n_global; t++)
            if (pl.nglob == 0 || glob[pl.nglob - 1] != glob[t])
                glob[pl.nglob++] = glob[t];
        pl.glob = glob;
    }
    if (a->kind == DSP_ATTN_LOCAL && 2 * (int64_t)a->window + QB < span)
        span = 2 * (int64_t)a->window + QB;
    /* work in units of ~0.15 ns: about two multiply-adds per (query, key, dim) */
    double work = (double)a->batch * (double)a->q_heads * (double)a->q_len * (double)span *
                  (double)d / 2.0;
    int64_t items = a->batch * a->q_heads * pl.nqb;
    dspi_parallel_for(items, 1, work > 4e18 ? (int64_t)4e18 : (int64_t)work, attn_range, &pl);
    free(glob);
    return atomic_load(&pl.failed) ? DSP_ENOMEM : 0;
}
