/* quant_moe.c - CPU kernel of the mixture-of-experts block: routing, tokens grouped by expert, the experts' GEMMs on the thread pool. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/simd.h"

/* Rows of a converted weight panel, as in gemm.c: ~128 KiB of f32. */
static int64_t panel_rows(int64_t K)
{
    int64_t p = (32 * 1024) / (K > 0 ? K : 1);
    return p < 16 ? 16 : p;
}

int dspi_cpu_wmat_linear(const float *x, int64_t M, const dspi_wmat *w, float *y)
{
    int64_t N = w->rows, K = w->cols;
    if (w->q)
        return dspi_cpu_linear_q(x, M, w->q, NULL, DSP_DTYPE_F32, y);
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

/* ---- W8A8 reference math (quant_int.h), also the portable kernels ------ */

void dspi_q8_quantize(const float *x, int64_t n, int8_t *q, float *d)
{
    for (int64_t b = 0; b < n / DSPI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSPI_Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < DSPI_Q8_BLOCK; i++)
            amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float id = dspi_q8_scale(amax, &d[b]);
        for (int i = 0; i < DSPI_Q8_BLOCK; i++)
            q[b * DSPI_Q8_BLOCK + i] = dspi_q8_code(xb[i], id);
    }
}

float dspi_q8_dot(const int8_t *qx, const float *dx, const int8_t *codes, const float *scales,
                  int64_t gs, int64_t K)
{
    float y = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += DSPI_Q8_BLOCK) {
        int32_t isum = 0;
        for (int i = 0; i < DSPI_Q8_BLOCK; i++)
            isum += (int32_t)qx[k0 + i] * codes[k0 + i];
        y = fmaf(dx[k0 / DSPI_Q8_BLOCK] * scales[k0 / gs], (float)isum, y);
    }
    return y;
}

void dspi_q8_row_codes(const dsp_qweight *w, int64_t r, int8_t *dst)
{
    const uint8_t *c = w->codes + r * dspi_qrow_bytes(w);
    if (w->kind == DSP_QUANT_INT8) {
        memcpy(dst, c, (size_t)w->in);
        return;
    }
    /* two's-complement nibbles, the low one first: (n ^ 8) - 8 extends the sign */
    for (int64_t k = 0; k < w->in; k++)
        dst[k] = (int8_t)((((k & 1) ? c[k / 2] >> 4 : c[k / 2] & 15) ^ 8) - 8);
}

int dspi_q8_linear(const float *x, int64_t M, const dsp_qweight *w, float *y)
{
    int64_t K = w->in, N = w->out;
    int8_t *q = malloc((size_t)K), *wc = malloc((size_t)(N * K));
    float *d = malloc((size_t)(K / DSPI_Q8_BLOCK) * sizeof *d);
    if (!q || !wc || !d) {
        free(q);
        free(wc);
        free(d);
        return DSP_ENOMEM;
    }
    for (int64_t o = 0; o < N; o++)
        dspi_q8_row_codes(w, o, wc + o * K);
    for (int64_t m = 0; m < M; m++) {
        dspi_q8_quantize(x + m * K, K, q, d);
        for (int64_t o = 0; o < N; o++)
            y[m * N + o] = dspi_q8_dot(q, d, wc + o * K, w->scales + o * (K / w->group_size),
                                       w->group_size, K);
    }
    free(q);
    free(wc);
    free(d);
    return 0;
}

/* act of features [i0, i1) of a job's panels [p0, p1) (or of its rows, on
 * the dot path) quantized into aq/ad in the layout of quant_int.h: on
 * panels, the 32 features of a block of token m sit 16 floats apart. */
void dspi_q8_pack_act(const dspi_moe_job *j, int64_t i0, int64_t i1, int64_t p0, int64_t p1)
{
    enum { T = DSPI_MOE_TILE, B = DSPI_Q8_BLOCK };
    int64_t inter = j->mlp->down.cols, nb = inter / B;
    if (j->n <= DSPI_MOE_DOT_MAX) {
        for (int64_t t = 0; t < j->n; t++)
            dspi_q8_quantize(j->act + t * inter + i0, i1 - i0, j->aq + t * inter + i0,
                             j->ad + t * nb + i0 / B);
        return;
    }
    for (int64_t p = p0; p < p1; p++) {
        const float *a = j->act + p * inter * T;
        int8_t *q = j->aq + p * inter * T;
        float *d = j->ad + p * nb * T;
        /* lanes past the last token may hold anything (the f32 kernels
         * leave them stale): they get zero codes */
        int64_t valid = j->n - p * T < T ? j->n - p * T : T;
        for (int64_t k0 = i0; k0 < i1; k0 += B)
            for (int m = 0; m < T; m++) {
                float amax = 0.0f;
                for (int64_t k = k0; k < k0 + B && m < valid; k++)
                    amax = fabsf(a[k * T + m]) > amax ? fabsf(a[k * T + m]) : amax;
                float id = dspi_q8_scale(amax, &d[k0 / B * T + m]);
                for (int64_t k = k0; k < k0 + B; k++)
                    q[(k / 4 * T + m) * 4 + k % 4] = m < valid ? dspi_q8_code(a[k * T + m], id) : 0;
            }
    }
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

/* The routing of one call, grouped by expert: assignment a = t * top_k + j
 * (token t's j-th choice) has expert sel[a] and weight wt[a]; order[start[e]
 * .. start[e+1]) lists expert e's assignments in token order. */
typedef struct routing {
    int64_t T, K, E;
    float *logits;              /* [T, E] */
    int *sel;                   /* [T * K] */
    float *wt;                  /* [T * K] */
    int64_t *start;             /* [E + 1] */
    int64_t *order;             /* [T * K] */
} routing;

static void route(routing *r, int top_k_, dsp_moe_score score, int renormalize,
                  float routed_scale)
{
    int64_t T = r->T, K = r->K, E = r->E, A = T * K;
    for (int64_t t = 0; t < T; t++) {
        float *s = r->logits + t * E, *wt = r->wt + t * K;
        score_row(s, (int)E, score);
        top_k(s, (int)E, top_k_, r->sel + t * K, wt);
        float sum = 0.0f;
        for (int64_t j = 0; j < K; j++)
            sum += wt[j];
        for (int64_t j = 0; j < K; j++) {
            float v = wt[j];
            if (renormalize && sum > 0.0f)
                v /= sum;
            wt[j] = v * routed_scale;
        }
    }
    /* counting sort, stable in token order; start[] doubles as the cursor */
    memset(r->start, 0, (size_t)(E + 1) * sizeof *r->start);
    for (int64_t a = 0; a < A; a++)
        r->start[r->sel[a] + 1]++;
    for (int64_t e = 0; e < E; e++)
        r->start[e + 1] += r->start[e];
    for (int64_t a = 0; a < A; a++)
        r->order[r->start[r->sel[a]]++] = a;
    for (int64_t e = E; e > 0; e--)
        r->start[e] = r->start[e - 1];
    r->start[0] = 0;
}

/* ---- portable path: one GEMM chain per expert, OpenBLAS's threads ------- */

/* y[M, dim] = down(silu(gate x) * up x) for the M rows of x; h and u are
 * [M, inter] scratch. */
static int mlp_linear(const float *x, int64_t M, const dspi_wmat *w, int q8, float *y)
{
    return q8 ? dspi_q8_linear(x, M, w->q, y) : dspi_cpu_wmat_linear(x, M, w, y);
}

static int mlp(const float *x, int64_t M, const dspi_moe_mlp *e, float *h, float *u, float *y)
{
    int rc, q8 = dspi_moe_q8_up(e);
    int64_t inter = e->gate.rows;
    if ((rc = mlp_linear(x, M, &e->gate, q8, h)) < 0 ||
        (rc = mlp_linear(x, M, &e->up, q8, u)) < 0)
        return rc;
    dspi_cpu_swiglu(h, u, M * inter, h);
    return mlp_linear(h, M, &e->down, dspi_moe_q8_down(e), y);
}

static int experts_portable(const float *x, int64_t dim, const routing *r,
                            const dspi_moe_mlp *experts, const dspi_moe_mlp *shared,
                            int n_shared, int64_t max_inter, float *out)
{
    int rc = DSP_ENOMEM;
    int64_t T = r->T, K = r->K, rows = T > 0 ? T : 1;
    /* scratch for the worst case: every token on one expert */
    float *xe = malloc((size_t)(rows * dim) * sizeof(float));
    float *ye = malloc((size_t)(rows * dim) * sizeof(float));
    float *h = malloc((size_t)(rows * max_inter) * sizeof(float));
    float *u = malloc((size_t)(rows * max_inter) * sizeof(float));
    if (!xe || !ye || !h || !u)
        goto done;
    /* shared experts see every token: straight on x, no gather */
    for (int e = 0; e < n_shared; e++) {
        if ((rc = mlp(x, T, &shared[e], h, u, ye)) < 0)
            goto done;
        for (int64_t i = 0; i < T * dim; i++)
            out[i] += ye[i];
    }
    for (int64_t e = 0; e < r->E; e++) {
        int64_t n = r->start[e + 1] - r->start[e];
        if (n == 0)
            continue;
        const int64_t *as = r->order + r->start[e];
        for (int64_t i = 0; i < n; i++)
            memcpy(xe + i * dim, x + (as[i] / K) * dim, (size_t)dim * sizeof *xe);
        if ((rc = mlp(xe, n, &experts[e], h, u, ye)) < 0)
            goto done;
        for (int64_t i = 0; i < n; i++) {
            float g = r->wt[as[i]], *o = out + (as[i] / K) * dim;
            const float *yr = ye + i * dim;
            for (int64_t c = 0; c < dim; c++)
                o[c] += g * yr[c];
        }
    }
    rc = 0;
done:
    free(xe);
    free(ye);
    free(h);
    free(u);
    return rc;
}

/* ---- AVX2 path: the experts' work as slices for the thread pool --------- */

/* Scratch kept between calls. A call needs a few MiB for the gathered
 * tokens and activations and ~300 KiB per slice; fresh from malloc every
 * time, that is page faults on every call (glibc maps blocks this big),
 * which costs a decode-sized call (~1 ms) up to a tenth of its time. At
 * most CACHE_SLOTS blocks of up to CACHE_MAX_BYTES (128 MiB in all) are
 * kept, shared by all threads, and freed at exit; a fork()ed child starts
 * with an unlocked cache. */
enum { CACHE_SLOTS = 4 };
#define CACHE_MAX_BYTES ((size_t)32 << 20)

typedef struct block {
    void *p;
    size_t n;
} block;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static block cache[CACHE_SLOTS];
static int cache_on;            /* the exit hook is in place: blocks may be kept */

static void cache_drop(void)
{
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(cache[i].p);
        cache[i] = (block){NULL, 0};
    }
    cache_on = 0;
    pthread_mutex_unlock(&cache_mu);
}

static void cache_lock(void)
{
    pthread_mutex_lock(&cache_mu);
}

static void cache_unlock(void)
{
    pthread_mutex_unlock(&cache_mu);
}

static void cache_init(void)
{
    cache_on = atexit(cache_drop) == 0 &&
               pthread_atfork(cache_lock, cache_unlock, cache_unlock) == 0;
}

/* At least n bytes, 64-byte aligned; .p NULL when out of memory. */
static block scratch_get(size_t n)
{
    block b = {NULL, 0};
    int best = -1;
    pthread_once(&cache_once, cache_init);
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].p && cache[i].n >= n && (best < 0 || cache[i].n < cache[best].n))
            best = i;
    if (best >= 0) {
        b = cache[best];
        cache[best] = (block){NULL, 0};
    }
    pthread_mutex_unlock(&cache_mu);
    if (b.p)
        return b;
    if (posix_memalign(&b.p, 64, n > 0 ? n : 1) != 0)
        return (block){NULL, 0};
    b.n = n;
    return b;
}

/* Back to the cache, in place of a smaller block if it is full. */
static void scratch_put(block b)
{
    if (b.p && b.n <= CACHE_MAX_BYTES) {
        pthread_mutex_lock(&cache_mu);
        int slot = 0;           /* an empty slot, else the smallest block */
        for (int i = 0; i < CACHE_SLOTS; i++) {
            if (!cache[i].p) {
                slot = i;
                break;
            }
            if (cache[i].n < cache[slot].n)
                slot = i;
        }
        if (cache_on && (!cache[slot].p || cache[slot].n < b.n)) {
            block old = cache[slot];
            cache[slot] = b;
            b = old;
        }
        pthread_mutex_unlock(&cache_mu);
    }
    free(b.p);
}

/* Rows a job's packed input or act take: the dot path keeps plain rows,
 * panels round up to whole tiles. */
static int64_t packed_rows(int64_t n)
{
    return n <= DSPI_MOE_DOT_MAX ? n : (n + DSPI_MOE_TILE - 1) / DSPI_MOE_TILE * DSPI_MOE_TILE;
}

/* Row of x holding token i of job j. */
static int64_t tok_row(const dspi_moe_job *j, int64_t i)
{
    return j->tok ? j->tok[i] : i;
}

/* A slice of the gate/up work: features [i0, i0 + DSPI_MOE_UP_BLOCK) of
 * job `job` for its panels [p0, p0 + DSPI_MOE_TILES). */
typedef struct up_item {
    int job;
    int64_t i0, p0;
} up_item;

typedef struct pool_ctx {
    const float *x;
    const int8_t *xq;           /* x quantized (W8A8): [T][dim] codes, */
    const float *xd;            /* [T][dim / 32] scales; NULL when no job needs it */
    int64_t dim, down_block;
    size_t buf_bytes;
    dspi_moe_job *jobs;
    int njobs;
    const up_item *items;
    float *out;
    atomic_int failed;          /* a slice could not get its scratch */
} pool_ctx;

/* x quantized row by row for the W8A8 jobs (tokens [t0, t1)). */
static void quantize_range(void *arg, int64_t t0, int64_t t1)
{
    pool_ctx *c = arg;
    int64_t dim = c->dim;
    for (int64_t t = t0; t < t1; t++)
        dspi_avx2_q8_quantize(c->x + t * dim, dim, (int8_t *)c->xq + t * dim,
                              (float *)c->xd + t * (dim / DSPI_Q8_BLOCK));
}

/* pack_range for a W8A8 job: its tokens' quantized rows, or panels in the
 * layout of quant_int.h (zero codes and scales past the last token). */
static void pack_q8(const pool_ctx *c, const dspi_moe_job *j)
{
    enum { T = DSPI_MOE_TILE };
    int64_t dim = c->dim, nb = dim / DSPI_Q8_BLOCK;
    int8_t *q = (int8_t *)j->xq;
    float *d = (float *)j->xd;
    if (j->xq == c->xq)
        return;                 /* a shared expert reading xq in place */
    if (j->n <= DSPI_MOE_DOT_MAX) {
        for (int64_t i = 0; i < j->n; i++) {
            memcpy(q + i * dim, c->xq + tok_row(j, i) * dim, (size_t)dim);
            memcpy(d + i * nb, c->xd + tok_row(j, i) * nb, (size_t)nb * sizeof *d);
        }
        return;
    }
    for (int64_t t0 = 0; t0 < j->n; t0 += T, q += dim * T, d += nb * T)
        for (int m = 0; m < T; m++) {
            int have = t0 + m < j->n;
            const int8_t *sq = have ? c->xq + tok_row(j, t0 + m) * dim : NULL;
            const float *sd = have ? c->xd + tok_row(j, t0 + m) * nb : NULL;
            for (int64_t k = 0; k < dim; k += 4) {
                if (have)
                    memcpy(q + (k / 4 * T + m) * 4, sq + k, 4);
                else
                    memset(q + (k / 4 * T + m) * 4, 0, 4);
            }
            for (int64_t g = 0; g < nb; g++)
                d[g * T + m] = have ? sd[g] : 0.0f;
        }
}

/* Gather each job's tokens: plain rows for the dot path, else panels
 * [dim][16] (token m of a panel in lane m, zeros past the last token).
 * Written in chunks of 64 features so the panel lines being filled stay
 * in L1 while the 16 source rows are read. */
static void pack_range(void *arg, int64_t j0, int64_t j1)
{
    pool_ctx *c = arg;
    int64_t dim = c->dim;
    for (int64_t jn = j0; jn < j1; jn++) {
        dspi_moe_job *j = &c->jobs[jn];
        float *dst = (float *)j->x;
        if (j->q8_up) {
            pack_q8(c, j);
            continue;
        }
        if (j->x == c->x)
            continue;           /* a shared expert reading x in place */
        if (j->n <= DSPI_MOE_DOT_MAX) {
            for (int64_t i = 0; i < j->n; i++)
                memcpy(dst + i * dim, c->x + j->tok[i] * dim, (size_t)dim * sizeof *dst);
            continue;
        }
        for (int64_t t0 = 0; t0 < j->n; t0 += DSPI_MOE_TILE) {
            float *p = dst + t0 * dim;
            const float *src[DSPI_MOE_TILE];
            for (int m = 0; m < DSPI_MOE_TILE; m++)
                src[m] = t0 + m < j->n ? c->x + (j->tok ? j->tok[t0 + m] : t0 + m) * dim : NULL;
            for (int64_t k0 = 0; k0 < dim; k0 += 64) {
                int64_t k1 = dim - k0 < 64 ? dim : k0 + 64;
                for (int m = 0; m < DSPI_MOE_TILE; m++)
                    for (int64_t k = k0; k < k1; k++)
                        p[k * DSPI_MOE_TILE + m] = src[m] ? src[m][k] : 0.0f;
            }
        }
    }
}

static void up_range(void *arg, int64_t b, int64_t e)
{
    pool_ctx *c = arg;
    block buf = scratch_get(c->buf_bytes);
    if (!buf.p) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t it = b; it < e; it++) {
        const dspi_moe_job *j = &c->jobs[c->items[it].job];
        int64_t i0 = c->items[it].i0, inter = j->mlp->gate.rows, p0 = c->items[it].p0;
        int64_t i1 = inter - i0 < DSPI_MOE_UP_BLOCK ? inter : i0 + DSPI_MOE_UP_BLOCK;
        int64_t np = (j->n + DSPI_MOE_TILE - 1) / DSPI_MOE_TILE;
        int64_t p1 = np - p0 < DSPI_MOE_TILES ? np : p0 + DSPI_MOE_TILES;
        dspi_avx2_moe_up(j, c->dim, i0, i1, p0, p1, buf.p);
    }
    scratch_put(buf);
}

static void down_range(void *arg, int64_t b, int64_t e)
{
    pool_ctx *c = arg;
    block buf = scratch_get(c->buf_bytes);
    if (!buf.p) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t it = b; it < e; it++) {
        int64_t d0 = it * c->down_block;
        int64_t d1 = c->dim - d0 < c->down_block ? c->dim : d0 + c->down_block;
        dspi_avx2_moe_down(c->jobs, c->njobs, c->dim, d0, d1, c->out, buf.p);
    }
    scratch_put(buf);
}

/* Panel blocks of a job's tokens the gate/up slices split it into (1 on
 * the dot path). */
static int64_t panel_blocks(int64_t n)
{
    int64_t np = (n + DSPI_MOE_TILE - 1) / DSPI_MOE_TILE;
    return n <= DSPI_MOE_DOT_MAX ? 1 : (np + DSPI_MOE_TILES - 1) / DSPI_MOE_TILES;
}

static int experts_avx2(const float *x, int64_t dim, const routing *r,
                        const dspi_moe_mlp *experts, const dspi_moe_mlp *shared, int n_shared,
                        float *out)
{
    int64_t T = r->T, K = r->K, E = r->E, A = T * K;
    int njobs = 0, nitems = 0, any_q8 = 0;
    int64_t xfloats = 0, afloats = 0, macs = 0, qbytes = 0, B = DSPI_Q8_BLOCK, kmax = 0;
    /* sizes first, then one block for everything */
    for (int64_t e = 0; e < E + n_shared; e++) {
        const dspi_moe_mlp *m = e < E ? &experts[e] : &shared[e - E];
        int64_t n = e < E ? r->start[e + 1] - r->start[e] : T, inter = m->gate.rows;
        if (n == 0)
            continue;
        njobs++;
        nitems += (int)((inter + DSPI_MOE_UP_BLOCK - 1) / DSPI_MOE_UP_BLOCK * panel_blocks(n));
        xfloats += packed_rows(n) * dim;
        afloats += packed_rows(n) * inter;
        macs += 3 * n * inter * dim;
        kmax = inter > kmax ? inter : kmax;
        /* W8A8: a byte of code an input, a float of scale per 32 */
        if (dspi_moe_q8_up(m)) {
            any_q8 = 1;
            qbytes += packed_rows(n) * dim / B * (B + (int64_t)sizeof(float));
        }
        if (dspi_moe_q8_down(m))
            qbytes += packed_rows(n) * inter / B * (B + (int64_t)sizeof(float));
    }
    if (any_q8)
        qbytes += T * dim / B * (B + (int64_t)sizeof(float));
    /* output features per down slice: as many as fit (their K slices in
     * L2), but at least 8 slices so that every thread gets several */
    int64_t down_block = dim / 8 / 6 * 6;
    down_block = down_block < 6 ? 6 : down_block > DSPI_MOE_DOWN_BLOCK ? DSPI_MOE_DOWN_BLOCK
                                                                        : down_block;
    size_t sz_jobs = (size_t)njobs * sizeof(dspi_moe_job);
    size_t sz_items = (size_t)nitems * sizeof(up_item);
    size_t sz_rows = (size_t)A * (sizeof(int64_t) + sizeof(float));
    size_t head = (sz_jobs + sz_items + sz_rows + 63) / 64 * 64;
    block mem = scratch_get(head + (size_t)(xfloats + afloats) * sizeof(float) + (size_t)qbytes);
    if (!mem.p)
        return DSP_ENOMEM;
    char *base = mem.p;
    dspi_moe_job *jobs = (dspi_moe_job *)base;
    up_item *items = (up_item *)(base + sz_jobs);
    int64_t *tok = (int64_t *)(base + sz_jobs + sz_items);
    float *wt = (float *)(tok + A);
    float *xp = (float *)(base + head), *act = xp + xfloats;
    /* the W8A8 areas after the floats: scales (floats) from the front,
     * codes from the back, so no alignment is lost */
    float *qd = act + afloats;
    int8_t *qc = (int8_t *)base + mem.n;
    const int8_t *xq_all = NULL;
    const float *xd_all = NULL;
    if (any_q8) {
        qc -= T * dim;
        xq_all = qc;
        xd_all = qd;
        qd += T * dim / B;
    }

    /* tokens and weights of the assignments in expert order: each routed
     * job's rows are one contiguous run */
    for (int64_t i = 0; i < A; i++) {
        tok[i] = r->order[i] / K;
        wt[i] = r->wt[r->order[i]];
    }
    int jn = 0, it = 0;
    for (int64_t e = 0; e < E + n_shared; e++) {
        const dspi_moe_mlp *m = e < E ? &experts[e] : &shared[e - E];
        int64_t n = e < E ? r->start[e + 1] - r->start[e] : T;
        if (n == 0)
            continue;
        dspi_moe_job *j = &jobs[jn];
        j->mlp = m;
        j->n = n;
        j->tok = e < E ? tok + r->start[e] : NULL;
        j->wt = e < E ? wt + r->start[e] : NULL;
        /* a shared expert on a few tokens reads x itself */
        j->x = e >= E && n <= DSPI_MOE_DOT_MAX ? x : xp;
        j->act = act;
        j->q8_up = dspi_moe_q8_up(m);
        j->q8_down = dspi_moe_q8_down(m);
        j->xq = j->aq = NULL;
        j->xd = j->ad = NULL;
        if (j->q8_up && j->x == x) {
            j->xq = xq_all;
            j->xd = xd_all;
        } else if (j->q8_up) {
            j->xq = qc -= packed_rows(n) * dim;
            j->xd = qd;
            qd += packed_rows(n) * dim / B;
        }
        if (j->q8_down) {
            j->aq = qc -= packed_rows(n) * m->gate.rows;
            j->ad = qd;
            qd += packed_rows(n) * m->gate.rows / B;
        }
        if (j->x == xp)
            xp += packed_rows(n) * dim;
        act += packed_rows(n) * m->gate.rows;
        for (int64_t i0 = 0; i0 < m->gate.rows; i0 += DSPI_MOE_UP_BLOCK)
            for (int64_t b = 0; b < panel_blocks(n); b++)
                items[it++] = (up_item){jn, i0, b * DSPI_MOE_TILES};
        jn++;
    }

    size_t buf = dspi_avx2_moe_scratch(), qbuf = dspi_avx2_q8_scratch(dim > kmax ? dim : kmax);
    pool_ctx c = {x,    xq_all, xd_all, dim, down_block, buf > qbuf ? buf : qbuf,
                  jobs, njobs,  items,  out, 0};
    if (any_q8)
        dspi_parallel_for(T, 16, T * dim, quantize_range, &c);
    /* pack (a pass over the gathered tokens), then gate/up/SwiGLU sliced by
     * expert, feature block and panel block, then down + scatter sliced by
     * output feature block, each slice looping over every expert in order:
     * no two threads write the same output, and the sums do not depend on
     * the thread count */
    dspi_parallel_for(njobs, 1, A * dim, pack_range, &c);
    dspi_parallel_for(nitems, 1, macs / 8, up_range, &c);
    memset(out, 0, (size_t)(T * dim) * sizeof *out);
    dspi_parallel_for((dim + down_block - 1) / down_block, 1, macs / 16, down_range, &c);
    int rc = atomic_load(&c.failed) ? DSP_ENOMEM : 0;
    scratch_put(mem);
    return rc;
}

typedef struct router_ctx {
    const float *x;
    int64_t dim;
    const dspi_wmat *w;
    float *logits;
} router_ctx;

static void router_range(void *arg, int64_t t0, int64_t t1)
{
    router_ctx *c = arg;
    dspi_avx2_moe_router(c->x, t0, t1, c->dim, c->w, c->logits);
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
    routing r = {T, K, E, NULL, NULL, NULL, NULL, NULL};
    r.logits = malloc((size_t)(T * E > 0 ? T * E : 1) * sizeof(float));
    r.sel = malloc((size_t)(A > 0 ? A : 1) * sizeof(int));
    r.wt = malloc((size_t)(A > 0 ? A : 1) * sizeof(float));
    r.start = malloc((size_t)(E + 1) * sizeof(int64_t));
    r.order = malloc((size_t)(A > 0 ? A : 1) * sizeof(int64_t));
    if (!r.logits || !r.sel || !r.wt || !r.start || !r.order)
        goto done;
    /* With AVX2 the whole call stays on the pool and never wakes
     * OpenBLAS's threads: idle, they spin for a while and would compete
     * with the pool's for the same cores. */
    if (dspi_cpu_use_avx2() && !router->q && router->dt == DSP_DTYPE_F32 && router->s1 == 1) {
        router_ctx rctx = {x, dim, router, r.logits};
        dspi_parallel_for(T, 8, T * E * dim / 8, router_range, &rctx);
    } else if ((rc = dspi_cpu_wmat_linear(x, T, router, r.logits)) < 0) {
        goto done;
    }
    route(&r, top_k_, score, renormalize, routed_scale);
    if (dspi_cpu_use_avx2()) {
        rc = experts_avx2(x, dim, &r, experts, shared, n_shared, out);
    } else {
        memset(out, 0, (size_t)(T * dim) * sizeof *out);
        rc = experts_portable(x, dim, &r, experts, shared, n_shared, max_inter, out);
    }
done:
    free(r.logits);
    free(r.sel);
    free(r.wt);
    free(r.start);
    free(r.order);
    return rc;
}
