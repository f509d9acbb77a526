/* ops_attn.cu - attention on CUDA: a flash-style kernel (online softmax over shared-memory K/V tiles, no q_len x k_len matrix) for full/causal/local/hybrid, and a streaming top-k kernel (a shared-memory candidate buffer per query, compacted by a bitonic sort). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_int.h"
extern "C" {
#include "ops/attn_int.h"
}

/* What a kernel needs of dspi_attn_args, by value; every pointer is device
 * memory (the host's global positions are copied into glob). */
struct attn_dev {
    const float *q, *k, *v;
    int64_t qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2;
    const uint8_t *km;          /* NULL or [batch, k_len] */
    int64_t q_heads, q_len, k_len, head_dim, group, q_offset, window, topk;
    int kind, causal;
    float scale;
    const long long *glob;      /* hybrid: sorted, distinct */
    int64_t nglob;
    float *out;
};

static __device__ bool is_global(const attn_dev &a, int64_t pos)
{
    int64_t lo = 0, hi = a.nglob;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a.glob[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < a.nglob && a.glob[lo] == pos;
}

/* any global position in [j0, j1] */
static __device__ bool global_in(const attn_dev &a, int64_t j0, int64_t j1)
{
    int64_t lo = 0, hi = a.nglob;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a.glob[mid] < j0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < a.nglob && a.glob[lo] <= j1;
}

/* The documented rules, key_mask aside: causal j <= p; local/hybrid
 * |p - j| < window, or (hybrid) p or j a global token. */
static __device__ bool visible(const attn_dev &a, int64_t p, int64_t j, bool gq, bool gk)
{
    if (a.causal && j > p)
        return false;
    if (a.kind == DSP_ATTN_LOCAL || a.kind == DSP_ATTN_HYBRID)
        return (p - j < a.window && j - p < a.window) || (a.kind == DSP_ATTN_HYBRID && (gq || gk));
    return true;
}

/* Keys [lo, hi) worth visiting for queries at positions p0..p1 (as the CPU's key_range). */
static __device__ void key_range(const attn_dev &a, int64_t p0, int64_t p1, int64_t *lo,
                                 int64_t *hi)
{
    int64_t b = 0, e = a.k_len;
    if (a.causal && p1 + 1 < e)
        e = p1 + 1;
    if (a.kind == DSP_ATTN_LOCAL) {
        if (p0 - a.window + 1 > b)
            b = p0 - a.window + 1;
        if (p1 + a.window < e)
            e = p1 + a.window;
    }
    *lo = b;
    *hi = e > b ? e : b;
}

/* ---- flash kernel ----------------------------------------------------------
 * A block of FA_THREADS threads takes R = FA_THREADS / G queries of one
 * (batch, head). Each query row is G consecutive lanes; lane sub holds the
 * head dims e·G + sub (e < FA_E) of q (scaled by scale·log2 e) and of the
 * accumulator in registers, so the G lanes of a row read G consecutive
 * shared-memory words (no bank conflicts; the other rows of the warp read
 * the same words: broadcasts). A score is the partial dot products summed
 * by log2(G) butterfly shuffles. A tile of BK keys and values sits in shared memory,
 * read by all rows at once (broadcasts). Per tile and row: the BK scores,
 * their max, one rescale of the accumulator by 2^(m_old - m_new), then
 * 2^(s - m_new)·v summed in. Shuffles run on every lane every time (masked
 * scores are -inf by value, never by a branch), so the full-warp masks hold. */
#define FA_THREADS 128
#define FA_E 16                         /* x 16 lanes = DSPI_CUDA_ATTN_MAX_DIM */

template <int G, int BK>
__global__ __launch_bounds__(FA_THREADS) void flash_kernel(attn_dev a, int64_t nqb)
{
    constexpr int R = FA_THREADS / G, W = G * FA_E;
    __shared__ float ksh[BK][W], vsh[BK][W];
    __shared__ unsigned char key_ok[BK], key_glob[BK];

    int64_t blk = blockIdx.x, qb = blk % nqb, bh = blk / nqb;
    int64_t h = bh % a.q_heads, b = bh / a.q_heads, kvh = h / a.group;
    int tid = threadIdx.x, row = tid / G, sub = tid % G;
    int64_t i0 = qb * R, i = i0 + row, D = a.head_dim;
    int64_t nq = a.q_len - i0 < R ? a.q_len - i0 : R;
    int64_t p = a.q_offset + i, p0 = a.q_offset + i0, p1 = p0 + nq - 1;
    bool valid = i < a.q_len, hybrid = a.kind == DSP_ATTN_HYBRID;

    float q[FA_E], o[FA_E], m = -INFINITY, l = 0.0f;
    const float qscale = a.scale * 1.44269504088896341f;
    const float *qr = a.q + b * a.qs0 + h * a.qs1 + (valid ? i : 0) * a.qs2;
#pragma unroll
    for (int e = 0; e < FA_E; e++) {
        int64_t d = e * G + sub;
        q[e] = valid && d < D ? qr[d] * qscale : 0.0f;
        o[e] = 0.0f;
    }
    bool gq = hybrid && valid && is_global(a, p);
    bool gq_any = __syncthreads_or(gq) != 0;

    int64_t lo, hi;
    key_range(a, p0, p1, &lo, &hi);
    const float *kb = a.k + b * a.ks0 + kvh * a.ks1, *vb = a.v + b * a.vs0 + kvh * a.vs1;
    for (int64_t j0 = lo; j0 < hi; j0 += BK) {
        int64_t nk = hi - j0 < BK ? hi - j0 : BK;
        /* hybrid: a tile outside the window band matters only for its globals */
        if (hybrid && !gq_any &&
            (j0 + nk - 1 < p0 - a.window + 1 || j0 > p1 + a.window - 1) &&
            !global_in(a, j0, j0 + nk - 1))
            continue;                               /* the same for the whole block */
        __syncthreads();                            /* the previous tile is consumed */
        for (int idx = tid; idx < BK * W; idx += FA_THREADS) {
            int r = idx / W, c = idx % W;
            bool in = r < nk && c < D;
            ksh[r][c] = in ? kb[(j0 + r) * a.ks2 + c] : 0.0f;
            vsh[r][c] = in ? vb[(j0 + r) * a.vs2 + c] : 0.0f;
        }
        for (int r = tid; r < BK; r += FA_THREADS) {
            int64_t j = j0 + r;
            key_ok[r] = r < nk && (!a.km || a.km[b * a.k_len + j]);
            key_glob[r] = hybrid && r < nk && is_global(a, j);
        }
        __syncthreads();

        float s[BK], mx = -INFINITY;
#pragma unroll
        for (int r = 0; r < BK; r++) {
            float part = 0.0f;
#pragma unroll
            for (int e = 0; e < FA_E; e++)
                part = fmaf(q[e], ksh[r][e * G + sub], part);
#pragma unroll
            for (int off = G / 2; off > 0; off >>= 1)
                part += __shfl_xor_sync(0xffffffffu, part, off);
            bool ok = key_ok[r] && visible(a, p, j0 + r, gq, key_glob[r]);
            s[r] = ok ? part : -INFINITY;
            mx = fmaxf(mx, s[r]);
        }
        float mn = fmaxf(m, mx);
        if (mn != -INFINITY) {                      /* per row; no shuffles inside */
            float alpha = exp2f(m - mn);            /* m = -inf: 0 */
            l *= alpha;
#pragma unroll
            for (int e = 0; e < FA_E; e++)
                o[e] *= alpha;
#pragma unroll
            for (int r = 0; r < BK; r++) {
                float pr = exp2f(s[r] - mn);        /* masked: exactly 0 */
                l += pr;
#pragma unroll
                for (int e = 0; e < FA_E; e++)
                    o[e] = fmaf(pr, vsh[r][e * G + sub], o[e]);
            }
            m = mn;
        }
    }
    if (!valid)
        return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;         /* no visible key: zeros */
    float *orow = a.out + ((b * a.q_heads + h) * a.q_len + i) * D;
#pragma unroll
    for (int e = 0; e < FA_E; e++) {
        int64_t d = e * G + sub;
        if (d < D)
            orow[d] = o[e] * inv;
    }
}

/* ---- top-k kernel ----------------------------------------------------------
 * One block per query row. Each pass scores TK_THREADS keys (one per
 * thread, from global memory) and appends those beating the threshold to a
 * shared buffer of TK_BUF candidates. When fewer than TK_THREADS slots are
 * left, a bitonic sort orders the buffer (higher score first, then lower
 * position: the reference's stable order), the best topk stay and the
 * topk-th score becomes the threshold. A later key only tying it ranks
 * below the kept one (keys arrive in increasing j), so strict > is exact.
 * Appends are unordered (atomics) but the sort makes the result not depend
 * on their order. */
#define TK_THREADS 256
#define TK_BUF 1024

static __device__ __forceinline__ bool tk_better(float s1, long long j1, float s2, long long j2)
{
    return s1 > s2 || (s1 == s2 && j1 < j2);
}

/* Sorts cs/cj[0, TK_BUF) best first; entries from n on are padding. Called
 * by the whole block. */
static __device__ void tk_sort(float *cs, long long *cj, int n)
{
    for (int t = n + threadIdx.x; t < TK_BUF; t += blockDim.x) {
        cs[t] = -INFINITY;
        cj[t] = LLONG_MAX;
    }
    __syncthreads();
    for (int k = 2; k <= TK_BUF; k <<= 1)
        for (int jj = k >> 1; jj > 0; jj >>= 1) {
            for (int t = threadIdx.x; t < TK_BUF; t += blockDim.x) {
                int u = t ^ jj;
                if (u <= t)
                    continue;
                bool swap = (t & k) == 0 ? tk_better(cs[u], cj[u], cs[t], cj[t])
                                         : tk_better(cs[t], cj[t], cs[u], cj[u]);
                if (swap) {
                    float ts = cs[t];
                    long long tj = cj[t];
                    cs[t] = cs[u];
                    cj[t] = cj[u];
                    cs[u] = ts;
                    cj[u] = tj;
                }
            }
            __syncthreads();
        }
}

static __device__ float tk_block_reduce(float v, bool is_max, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, off);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < TK_THREADS / 32; w++)
        v = is_max ? fmaxf(v, red[w]) : v + red[w];
    return v;
}

__global__ __launch_bounds__(TK_THREADS) void topk_kernel(attn_dev a)
{
    extern __shared__ float qsh[];                  /* head_dim floats */
    __shared__ float cs[TK_BUF];
    __shared__ long long cj[TK_BUF];
    __shared__ float red[TK_THREADS / 32];
    __shared__ int count;
    __shared__ float thr;

    int64_t rowid = blockIdx.x, i = rowid % a.q_len, bh = rowid / a.q_len;
    int64_t h = bh % a.q_heads, b = bh / a.q_heads, kvh = h / a.group, D = a.head_dim;
    int64_t p = a.q_offset + i;
    int tid = threadIdx.x, topk = (int)a.topk;
    const float *qr = a.q + b * a.qs0 + h * a.qs1 + i * a.qs2;
    const float *kb = a.k + b * a.ks0 + kvh * a.ks1, *vb = a.v + b * a.vs0 + kvh * a.vs1;
    for (int64_t d = tid; d < D; d += TK_THREADS)
        qsh[d] = qr[d];
    if (tid == 0) {
        count = 0;
        thr = -INFINITY;
    }
    __syncthreads();

    int64_t kend = a.causal && p + 1 < a.k_len ? p + 1 : a.k_len;
    for (int64_t j0 = 0; j0 < kend; j0 += TK_THREADS) {
        int64_t j = j0 + tid;
        if (j < kend && (!a.km || a.km[b * a.k_len + j])) {
            const float *kr = kb + j * a.ks2;
            float dot = 0.0f;
            for (int64_t d = 0; d < D; d++)
                dot = fmaf(qsh[d], __ldg(kr + d), dot);
            float s = dot * a.scale;                /* rounded as (q·k)·scale */
            if (s > thr) {
                int at = atomicAdd(&count, 1);
                cs[at] = s;
                cj[at] = j;
            }
        }
        __syncthreads();
        int n = count;
        __syncthreads();                            /* everyone has read count */
        if (n > TK_BUF - TK_THREADS) {
            tk_sort(cs, cj, n);
            if (tid == 0) {
                count = topk;
                thr = cs[topk - 1];
            }
            __syncthreads();
        }
    }
    int n = count;
    __syncthreads();
    if (n > topk) {
        tk_sort(cs, cj, n);
        n = topk;
    }
    /* softmax over the n <= topk <= TK_THREADS kept scores, natural units */
    float s = tid < n ? cs[tid] : -INFINITY;
    float mx = tk_block_reduce(s, true, red);
    float e = tid < n ? expf(s - mx) : 0.0f;
    float sum = tk_block_reduce(e, false, red);
    __syncthreads();
    if (tid < n)
        cs[tid] = e / sum;
    __syncthreads();
    float *orow = a.out + ((b * a.q_heads + h) * a.q_len + i) * D;
    for (int64_t d = tid; d < D; d += TK_THREADS) {
        float acc = 0.0f;                           /* n = 0: no visible key, zeros */
        for (int t = 0; t < n; t++)
            acc = fmaf(cs[t], vb[cj[t] * a.vs2 + d], acc);
        orow[d] = acc;
    }
}

static int cmp_ll(const void *x, const void *y)
{
    long long u = *(const long long *)x, w = *(const long long *)y;
    return (u > w) - (u < w);
}

template <int G, int BK>
static void launch_flash(const attn_dev &d, int64_t items, int64_t nqb)
{
    flash_kernel<G, BK><<<(unsigned)items, FA_THREADS, 0, DSPI_CUDA_STREAM>>>(d, nqb);
}

int dspi_cuda_attention(const dspi_attn_args *a)
{
    int rc;
    if ((rc = dspi_cuda_enter(a->out)) < 0)
        return rc;
    if (a->batch == 0 || a->q_heads == 0 || a->q_len == 0 || a->head_dim == 0)
        return 0;
    bool topk = a->kind == DSP_ATTN_TOPK && a->topk < a->k_len;
    /* attn.c names both limits in its message before calling here */
    if (a->head_dim > DSPI_CUDA_ATTN_MAX_DIM || (topk && a->topk > DSPI_CUDA_ATTN_MAX_TOPK))
        return DSP_EUNSUPPORTED;

    attn_dev d;
    memset(&d, 0, sizeof d);
    d.q = a->q;
    d.k = a->k;
    d.v = a->v;
    d.qs0 = a->qs[0];
    d.qs1 = a->qs[1];
    d.qs2 = a->qs[2];
    d.ks0 = a->ks[0];
    d.ks1 = a->ks[1];
    d.ks2 = a->ks[2];
    d.vs0 = a->vs[0];
    d.vs1 = a->vs[1];
    d.vs2 = a->vs[2];
    d.km = a->key_mask;
    d.q_heads = a->q_heads;
    d.q_len = a->q_len;
    d.k_len = a->k_len;
    d.head_dim = a->head_dim;
    d.group = a->q_heads / a->kv_heads;
    d.q_offset = a->q_offset;
    d.window = a->window;
    d.topk = a->topk;
    d.kind = (int)a->kind;
    d.causal = a->causal;
    d.scale = a->scale;
    d.out = a->out;

    long long *glob = NULL;
    if (a->kind == DSP_ATTN_HYBRID && a->n_global > 0) {
        long long *hg = (long long *)malloc(sizeof(long long) * (size_t)a->n_global);
        if (!hg)
            return DSP_ENOMEM;
        for (int t = 0; t < a->n_global; t++)
            hg[t] = (long long)a->global[t];
        qsort(hg, (size_t)a->n_global, sizeof *hg, cmp_ll);
        int64_t n = 0;
        for (int t = 0; t < a->n_global; t++)
            if (n == 0 || hg[n - 1] != hg[t])
                hg[n++] = hg[t];
        glob = (long long *)dspi_cuda_scratch(sizeof(long long) * (size_t)n);
        /* from pageable memory: returns once hg is staged, so it may be freed */
        if (!glob || cudaMemcpyAsync(glob, hg, sizeof(long long) * (size_t)n,
                                     cudaMemcpyHostToDevice, DSPI_CUDA_STREAM) != cudaSuccess) {
            cudaGetLastError();
            free(hg);
            dspi_cuda_scratch_free(glob);
            return glob ? DSP_EDEVICE : DSP_ENOMEM;
        }
        free(hg);
        d.glob = glob;
        d.nglob = n;
    }

    if (topk) {
        int64_t rows = a->batch * a->q_heads * a->q_len;
        if (rows > INT_MAX) {
            dspi_cuda_scratch_free(glob);
            return DSP_EUNSUPPORTED;
        }
        topk_kernel<<<(unsigned)rows, TK_THREADS, sizeof(float) * (size_t)a->head_dim,
                      DSPI_CUDA_STREAM>>>(d);
    } else {
        int g = a->head_dim <= 16 ? 1 : a->head_dim <= 32 ? 2 : a->head_dim <= 64 ? 4
              : a->head_dim <= 128 ? 8 : 16;
        int64_t rows_per_block = FA_THREADS / g, nqb = (a->q_len + rows_per_block - 1) / rows_per_block;
        int64_t items = a->batch * a->q_heads * nqb;
        if (items > INT_MAX) {
            dspi_cuda_scratch_free(glob);
            return DSP_EUNSUPPORTED;
        }
        switch (g) {
        case 1: launch_flash<1, 32>(d, items, nqb); break;
        case 2: launch_flash<2, 32>(d, items, nqb); break;
        case 4: launch_flash<4, 32>(d, items, nqb); break;
        case 8: launch_flash<8, 32>(d, items, nqb); break;
        default: launch_flash<16, 16>(d, items, nqb); break;
        }
    }
    rc = dspi_cuda_launched();
    dspi_cuda_scratch_free(glob);
    return rc;
}
