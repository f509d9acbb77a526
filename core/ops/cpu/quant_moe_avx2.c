/* quant_moe_avx2.c - AVX2/FMA kernels of the MoE experts: gate and up with a fused SwiGLU, down with a fused weighted scatter. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"
#include "ops/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Compiled for AVX2 only here: the library stays baseline x86-64 and the
 * caller runs these only after dspi_cpu_use_avx2() said yes. */
#define AVX2 __attribute__((target("avx2,fma")))

/* KC: the K slice the tile path works on at a time. A slice of a panel is
 * 16 KiB (stays in L1 while every row group of a block passes over it),
 * the weight rows' slices of a block are up to 192 KiB (stay in L2 while
 * the panels pass), and each panel is read once per block of rows instead
 * of once per 6 rows. A multiple of both group sizes, so quantized rows
 * can be dequantized a slice at a time. */
enum { TILE = DSPI_MOE_TILE, NR = 6, KC = 256 };

/* c[r][m] (+)= sum_k w[r][k] a[k][m] for 6 weight rows and the 16 tokens of
 * a panel slice a [K][16], k < K; acc adds to c instead of overwriting it.
 * The weights are broadcast straight from their rows, so f32 rows need no
 * packing; 12 accumulators, 2 panel loads and 6 broadcasts per k keep both
 * FMA pipes busy. */
AVX2 static void tile_16x6(const float *a, const float *const *w, int64_t K, float *c, int acc)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (acc) {
        c00 = _mm256_loadu_ps(c + 0);
        c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + 16);
        c11 = _mm256_loadu_ps(c + 24);
        c20 = _mm256_loadu_ps(c + 32);
        c21 = _mm256_loadu_ps(c + 40);
        c30 = _mm256_loadu_ps(c + 48);
        c31 = _mm256_loadu_ps(c + 56);
        c40 = _mm256_loadu_ps(c + 64);
        c41 = _mm256_loadu_ps(c + 72);
        c50 = _mm256_loadu_ps(c + 80);
        c51 = _mm256_loadu_ps(c + 88);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];
    for (int64_t k = 0; k < K; k++, a += TILE) {
        __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8), b;
        b = _mm256_broadcast_ss(w0 + k);
        c00 = _mm256_fmadd_ps(a0, b, c00);
        c01 = _mm256_fmadd_ps(a1, b, c01);
        b = _mm256_broadcast_ss(w1 + k);
        c10 = _mm256_fmadd_ps(a0, b, c10);
        c11 = _mm256_fmadd_ps(a1, b, c11);
        b = _mm256_broadcast_ss(w2 + k);
        c20 = _mm256_fmadd_ps(a0, b, c20);
        c21 = _mm256_fmadd_ps(a1, b, c21);
        b = _mm256_broadcast_ss(w3 + k);
        c30 = _mm256_fmadd_ps(a0, b, c30);
        c31 = _mm256_fmadd_ps(a1, b, c31);
        b = _mm256_broadcast_ss(w4 + k);
        c40 = _mm256_fmadd_ps(a0, b, c40);
        c41 = _mm256_fmadd_ps(a1, b, c41);
        b = _mm256_broadcast_ss(w5 + k);
        c50 = _mm256_fmadd_ps(a0, b, c50);
        c51 = _mm256_fmadd_ps(a1, b, c51);
    }
    _mm256_storeu_ps(c + 0, c00);
    _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + 16, c10);
    _mm256_storeu_ps(c + 24, c11);
    _mm256_storeu_ps(c + 32, c20);
    _mm256_storeu_ps(c + 40, c21);
    _mm256_storeu_ps(c + 48, c30);
    _mm256_storeu_ps(c + 56, c31);
    _mm256_storeu_ps(c + 64, c40);
    _mm256_storeu_ps(c + 72, c41);
    _mm256_storeu_ps(c + 80, c50);
    _mm256_storeu_ps(c + 88, c51);
}

/* The same for a panel whose tokens all sit in its first 8 lanes (the last
 * panel of an expert with n % 16 <= 8): half the FMAs. c[r][m], m < 8,
 * keeps the 16-float row stride of tile_16x6. */
AVX2 static void tile_8x6(const float *a, const float *const *w, int64_t K, float *c, int acc)
{
    __m256 c0, c1, c2, c3, c4, c5;
    if (acc) {
        c0 = _mm256_loadu_ps(c + 0);
        c1 = _mm256_loadu_ps(c + 16);
        c2 = _mm256_loadu_ps(c + 32);
        c3 = _mm256_loadu_ps(c + 48);
        c4 = _mm256_loadu_ps(c + 64);
        c5 = _mm256_loadu_ps(c + 80);
    } else {
        c0 = c1 = c2 = c3 = c4 = c5 = _mm256_setzero_ps();
    }
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];
    for (int64_t k = 0; k < K; k++, a += TILE) {
        __m256 a0 = _mm256_loadu_ps(a);
        c0 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w0 + k), c0);
        c1 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w1 + k), c1);
        c2 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w2 + k), c2);
        c3 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w3 + k), c3);
        c4 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w4 + k), c4);
        c5 = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(w5 + k), c5);
    }
    _mm256_storeu_ps(c + 0, c0);
    _mm256_storeu_ps(c + 16, c1);
    _mm256_storeu_ps(c + 32, c2);
    _mm256_storeu_ps(c + 48, c3);
    _mm256_storeu_ps(c + 64, c4);
    _mm256_storeu_ps(c + 80, c5);
}

/* Sums of the 8 lanes of each of a..d into one vector's lanes 0..3. */
AVX2 static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    __m256 s = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* s[r] = w[r] · x0 and s[4 + r] = w[r] · x1 for 4 weight rows and 2 token
 * rows of K floats: each weight vector is loaded once for both tokens. */
AVX2 static void dot_4x2(const float *x0, const float *x1, const float *const *w, int64_t K,
                         float *s)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 x = _mm256_loadu_ps(x0 + k), y = _mm256_loadu_ps(x1 + k), v;
        v = _mm256_loadu_ps(w0 + k);
        a0 = _mm256_fmadd_ps(v, x, a0);
        b0 = _mm256_fmadd_ps(v, y, b0);
        v = _mm256_loadu_ps(w1 + k);
        a1 = _mm256_fmadd_ps(v, x, a1);
        b1 = _mm256_fmadd_ps(v, y, b1);
        v = _mm256_loadu_ps(w2 + k);
        a2 = _mm256_fmadd_ps(v, x, a2);
        b2 = _mm256_fmadd_ps(v, y, b2);
        v = _mm256_loadu_ps(w3 + k);
        a3 = _mm256_fmadd_ps(v, x, a3);
        b3 = _mm256_fmadd_ps(v, y, b3);
    }
    if (k < K) {
        /* the tail: lanes past K load as zero */
        static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
        __m256i m = _mm256_loadu_si256((const __m256i *)(ones + 8 - (K - k)));
        __m256 x = _mm256_maskload_ps(x0 + k, m), y = _mm256_maskload_ps(x1 + k, m), v;
        v = _mm256_maskload_ps(w0 + k, m);
        a0 = _mm256_fmadd_ps(v, x, a0);
        b0 = _mm256_fmadd_ps(v, y, b0);
        v = _mm256_maskload_ps(w1 + k, m);
        a1 = _mm256_fmadd_ps(v, x, a1);
        b1 = _mm256_fmadd_ps(v, y, b1);
        v = _mm256_maskload_ps(w2 + k, m);
        a2 = _mm256_fmadd_ps(v, x, a2);
        b2 = _mm256_fmadd_ps(v, y, b2);
        v = _mm256_maskload_ps(w3 + k, m);
        a3 = _mm256_fmadd_ps(v, x, a3);
        b3 = _mm256_fmadd_ps(v, y, b3);
    }
    _mm_storeu_ps(s, hsum4(a0, a1, a2, a3));
    _mm_storeu_ps(s + 4, hsum4(b0, b1, b2, b3));
}

/* Four quantized weight rows of one kind and group size (from one or two
 * matrices): their codes and scales, for the fused dot kernels below. */
typedef struct qrows4 {
    dsp_quant_kind kind;
    int64_t gs;
    const uint8_t *c[4];
    const float *s[4];
} qrows4;

/* 16 weights of row c from element k, decoded and scaled: lo gets
 * elements k..k+7, hi k+8..k+15. code * scale is the same float multiply
 * dsp_dequantize does, so the weights are exactly the dequantized ones. */
AVX2 static inline __attribute__((always_inline)) void
decode16(dsp_quant_kind kind, const uint8_t *c, int64_t k, __m256 s, __m256 *lo, __m256 *hi)
{
    __m128i e;
    if (kind == DSP_QUANT_INT8) {
        e = _mm_loadu_si128((const __m128i *)(c + k));
    } else {
        /* 8 bytes = 16 nibbles, the low nibble first: split, interleave
         * back into element order, sign-extend by table */
        const __m128i mask = _mm_set1_epi8(0x0f);
        const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
        __m128i b = _mm_loadl_epi64((const __m128i *)(c + k / 2));
        __m128i l = _mm_and_si128(b, mask), h = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
        e = _mm_shuffle_epi8(lut, _mm_unpacklo_epi8(l, h));
    }
    *lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e)), s);
    *hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e, 8))), s);
}

/* As dot_4x2 (x1 may be NULL: one token) on quantized rows, decoded in
 * registers: the decode happens once per weight for both tokens and the
 * rows are read as codes, 1 or 1/2 byte a weight instead of 4. With one
 * token, separate accumulators for the two halves keep enough FMA chains
 * in flight. */
AVX2 static inline __attribute__((always_inline)) void
dot_q(const float *x0, const float *x1, const qrows4 *w, int64_t K, float *s,
      dsp_quant_kind kind)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const uint8_t *c0 = w->c[0], *c1 = w->c[1], *c2 = w->c[2], *c3 = w->c[3];
    int64_t gs = w->gs;
    for (int64_t k0 = 0, g = 0; k0 < K; k0 += gs, g++) {
        __m256 s0 = _mm256_set1_ps(w->s[0][g]), s1 = _mm256_set1_ps(w->s[1][g]);
        __m256 s2 = _mm256_set1_ps(w->s[2][g]), s3 = _mm256_set1_ps(w->s[3][g]);
        for (int64_t k = k0; k < k0 + gs; k += 16) {
            __m256 xl = _mm256_loadu_ps(x0 + k), xh = _mm256_loadu_ps(x0 + k + 8), lo, hi;
            /* row r into a_r (and b_r for token x1); with one token, b_r
             * takes the upper halves so eight FMA chains stay in flight */
#define ROW(c, sc, a, b)                                                                 \
            decode16(kind, c, k, sc, &lo, &hi);                                          \
            if (x1) {                                                                    \
                a = _mm256_fmadd_ps(hi, xh, _mm256_fmadd_ps(lo, xl, a));                 \
                b = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x1 + k + 8),                     \
                                    _mm256_fmadd_ps(lo, _mm256_loadu_ps(x1 + k), b));    \
            } else {                                                                     \
                a = _mm256_fmadd_ps(lo, xl, a);                                          \
                b = _mm256_fmadd_ps(hi, xh, b);                                          \
            }
            ROW(c0, s0, a0, b0)
            ROW(c1, s1, a1, b1)
            ROW(c2, s2, a2, b2)
            ROW(c3, s3, a3, b3)
#undef ROW
        }
    }
    if (x1) {
        _mm_storeu_ps(s, hsum4(a0, a1, a2, a3));
        _mm_storeu_ps(s + 4, hsum4(b0, b1, b2, b3));
    } else {
        _mm_storeu_ps(s, hsum4(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1),
                               _mm256_add_ps(a2, b2), _mm256_add_ps(a3, b3)));
    }
}

/* One instance per kind and token count, so the branches above fold. */
AVX2 static void dot_q8_1(const float *x0, const qrows4 *w, int64_t K, float *s)
{
    dot_q(x0, NULL, w, K, s, DSP_QUANT_INT8);
}

AVX2 static void dot_q8_2(const float *x0, const float *x1, const qrows4 *w, int64_t K, float *s)
{
    dot_q(x0, x1, w, K, s, DSP_QUANT_INT8);
}

AVX2 static void dot_q4_1(const float *x0, const qrows4 *w, int64_t K, float *s)
{
    dot_q(x0, NULL, w, K, s, DSP_QUANT_INT4);
}

AVX2 static void dot_q4_2(const float *x0, const float *x1, const qrows4 *w, int64_t K, float *s)
{
    dot_q(x0, x1, w, K, s, DSP_QUANT_INT4);
}

/* s[r] (token x0) and s[4 + r] (token x1, when given) for 4 rows: fused
 * decode for quantized rows, else plain f32 dot products. */
static void dot4(const float *x0, const float *x1, const qrows4 *q, const float *const *w,
                 int64_t K, float *s)
{
    if (q && q->kind == DSP_QUANT_INT8 && x1)
        dot_q8_2(x0, x1, q, K, s);
    else if (q && q->kind == DSP_QUANT_INT8)
        dot_q8_1(x0, q, K, s);
    else if (q && x1)
        dot_q4_2(x0, x1, q, K, s);
    else if (q)
        dot_q4_1(x0, q, K, s);
    else
        dot_4x2(x0, x1 ? x1 : x0, w, K, s);
}

/* Both matrices quantized the same way: the dot path can decode their
 * rows in registers. */
static int same_q(const dspi_wmat *a, const dspi_wmat *b)
{
    return a->q && b->q && a->q->kind == b->q->kind && a->q->group_size == b->q->group_size;
}

/* Quantized row r of w into slot i of q. */
static void qrow(qrows4 *q, int i, const dspi_wmat *w, int64_t r)
{
    const dsp_qweight *m = w->q;
    q->kind = m->kind;
    q->gs = m->group_size;
    q->c[i] = m->codes + r * dspi_qrow_bytes(m);
    q->s[i] = m->scales + r * (m->in / m->group_size);
}

static inline int64_t tok_of(const dspi_moe_job *j, int64_t i)
{
    return j->tok ? j->tok[i] : i;
}

static int plain_f32(const dspi_wmat *w)
{
    return !w->q && w->dt == DSP_DTYPE_F32 && w->s1 == 1;
}

/* Scratch of one thread, in floats: converted weight slices (up to
 * DSPI_MOE_DOWN_BLOCK or 2 * DSPI_MOE_UP_BLOCK rows of KC), result tiles
 * (DSPI_MOE_TILES panels x 32 row groups x 6 x 16), the dot path's
 * pre-activations and its 4 converted row slices. */
enum {
    CONV_FLOATS = 2 * DSPI_MOE_UP_BLOCK * KC,
    C_FLOATS = DSPI_MOE_TILES * 32 * NR * TILE,
    PRE_FLOATS = 2 * DSPI_MOE_DOT_MAX * DSPI_MOE_UP_BLOCK,
    DOT_FLOATS = 4 * KC,
};

size_t dspi_avx2_moe_scratch(void)
{
    return (size_t)(CONV_FLOATS + C_FLOATS + PRE_FLOATS + DOT_FLOATS) * sizeof(float);
}

/* s[r] = row r · x0 and s[4 + r] = row r · x1 (x1 may be NULL) for rows
 * r[i] of matrices m[i], K long: decoded in registers when all four are
 * quantized alike, read in place when all are plain f32, else converted a
 * KC slice at a time into conv (4 * KC floats). */
static void dot_rows4(const dspi_wmat *const *m, const int64_t *r, const float *x0,
                      const float *x1, int64_t K, float *conv, float *s)
{
    int quant = 1, plain = 1;
    for (int i = 0; i < 4; i++) {
        quant &= same_q(m[i], m[0]);
        plain &= plain_f32(m[i]);
    }
    if (quant) {
        qrows4 q;
        for (int i = 0; i < 4; i++)
            qrow(&q, i, m[i], r[i]);
        dot4(x0, x1, &q, NULL, K, s);
        return;
    }
    const float *w[4];
    if (plain) {
        for (int i = 0; i < 4; i++)
            w[i] = dspi_wmat_row(m[i], r[i], 0, K, NULL);
        dot4(x0, x1, NULL, w, K, s);
        return;
    }
    memset(s, 0, 8 * sizeof *s);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        float part[8];
        for (int i = 0; i < 4; i++)
            w[i] = dspi_wmat_row(m[i], r[i], k0, kc, conv + i * KC);
        dot4(x0 + k0, x1 ? x1 + k0 : NULL, NULL, w, kc, part);
        for (int i = 0; i < 8; i++)
            s[i] += part[i];
    }
}

void dspi_avx2_moe_router(const float *x, int64_t t0, int64_t t1, int64_t dim,
                          const dspi_wmat *router, float *logits)
{
    int64_t E = router->rows;
    for (int64_t t = t0; t < t1; t += 2) {
        const float *x0 = x + t * dim, *x1 = t + 1 < t1 ? x0 + dim : x0;
        for (int64_t e = 0; e < E; e += 4) {
            const float *w[4];
            float s[8];
            for (int r = 0; r < 4; r++)
                w[r] = (const float *)router->data + (e + r < E ? e + r : e) * router->s0;
            dot_4x2(x0, x1, w, dim, s);
            for (int r = 0; r < 4 && e + r < E; r++) {
                logits[t * E + e + r] = s[r];
                if (t + 1 < t1)
                    logits[(t + 1) * E + e + r] = s[4 + r];
            }
        }
    }
}

/* The dot path of dspi_avx2_moe_up: rows gate i, gate i+1, up i, up i+1
 * against every token at once, the pre-activations of the block gathered
 * for one vector SwiGLU per token. */
static void up_dot(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, float *scratch)
{
    const dspi_moe_mlp *e = j->mlp;
    int64_t inter = e->gate.rows, n = j->n, nb = i1 - i0;
    float *G = scratch + CONV_FLOATS + C_FLOATS, *U = G + DSPI_MOE_DOT_MAX * DSPI_MOE_UP_BLOCK;
    float *conv = U + DSPI_MOE_DOT_MAX * DSPI_MOE_UP_BLOCK;
    const dspi_wmat *m[4] = {&e->gate, &e->gate, &e->up, &e->up};
    for (int64_t i = 0; i < nb; i += 2) {
        int cnt = nb - i < 2 ? 1 : 2;
        int64_t r[4] = {i0 + i, i0 + i + cnt - 1, i0 + i, i0 + i + cnt - 1};
        for (int64_t t = 0; t < n; t += 2) {
            float s[8];
            dot_rows4(m, r, j->x + t * dim, t + 1 < n ? j->x + (t + 1) * dim : NULL, dim, conv, s);
            /* s: g_i(t), g_i+1(t), u_i(t), u_i+1(t), then token t+1 */
            for (int tt = 0; tt < 2 && t + tt < n; tt++)
                for (int q = 0; q < cnt; q++) {
                    G[(t + tt) * nb + i + q] = s[4 * tt + q];
                    U[(t + tt) * nb + i + q] = s[4 * tt + 2 + q];
                }
        }
    }
    for (int64_t t = 0; t < n; t++)
        dspi_avx2_swiglu(G + t * nb, U + t * nb, nb, j->act + t * inter + i0);
}

/* The tile path of dspi_avx2_moe_up. */
static void up_tile(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                    int64_t p1, float *scratch)
{
    const dspi_moe_mlp *e = j->mlp;
    int64_t inter = e->gate.rows, n = j->n, nb = i1 - i0, ngr = (nb + 2) / 3;
    float *conv = scratch, *C = scratch + CONV_FLOATS;
    const float *g[DSPI_MOE_UP_BLOCK], *u[DSPI_MOE_UP_BLOCK], *w[NR];
    /* Goto's order: per K slice, the block's gate and up row slices stay
     * in L2 while each panel slice, in L1, meets every row group */
    for (int64_t k0 = 0; k0 < dim; k0 += KC) {
        int64_t kc = dim - k0 < KC ? dim - k0 : KC;
        for (int64_t r = 0; r < nb; r++) {
            g[r] = dspi_wmat_row(&e->gate, i0 + r, k0, kc, conv + r * KC);
            u[r] = dspi_wmat_row(&e->up, i0 + r, k0, kc, conv + (nb + r) * KC);
        }
        for (int64_t p = p0; p < p1; p++) {
            const float *a = j->x + (p * dim + k0) * TILE;
            int half = n - p * TILE <= 8;
            for (int64_t gi = 0; gi < ngr; gi++) {
                /* gate rows 0-2, up rows 3-5; missing rows repeat the first */
                int64_t i = 3 * gi, cnt = nb - i < 3 ? nb - i : 3;
                for (int q = 0; q < 3; q++) {
                    w[q] = g[i + (q < cnt ? q : 0)];
                    w[3 + q] = u[i + (q < cnt ? q : 0)];
                }
                float *c = C + ((p - p0) * ngr + gi) * NR * TILE;
                if (half)
                    tile_8x6(a, w, kc, c, k0 > 0);
                else
                    tile_16x6(a, w, kc, c, k0 > 0);
            }
        }
    }
    /* the fused SwiGLU: rows 0-2 of a result tile are gate, 3-5 up */
    for (int64_t p = p0; p < p1; p++)
        for (int64_t gi = 0; gi < ngr; gi++) {
            int64_t i = 3 * gi, cnt = nb - i < 3 ? nb - i : 3;
            float *c = C + ((p - p0) * ngr + gi) * NR * TILE;
            dspi_avx2_swiglu(c, c + 3 * TILE, cnt * TILE, j->act + (p * inter + i0 + i) * TILE);
        }
}

void dspi_avx2_moe_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                      int64_t p1, float *scratch)
{
    if (j->q8_up)
        dspi_avx2_q8_up(j, dim, i0, i1, p0, p1, scratch);
    else if (j->n <= DSPI_MOE_DOT_MAX)
        up_dot(j, dim, i0, i1, scratch);
    else
        up_tile(j, dim, i0, i1, p0, p1, scratch);
    /* down multiplies int8 activations: quantize this block while it is
     * still in cache */
    if (j->q8_down && j->n > DSPI_MOE_DOT_MAX)
        dspi_avx2_q8_pack_act(j, i0, i1, p0, p1);
    else if (j->q8_down)
        dspi_q8_pack_act(j, i0, i1, p0, p1);
}

/* The dot path of dspi_avx2_moe_down for one job. */
static void down_dot(const dspi_moe_job *j, int64_t dim, int64_t d0, int64_t d1, float *out,
                     float *scratch)
{
    const dspi_wmat *down = &j->mlp->down;
    int64_t inter = down->cols, n = j->n;
    float *conv = scratch + CONV_FLOATS + C_FLOATS + PRE_FLOATS;
    const dspi_wmat *m[4] = {down, down, down, down};
    for (int64_t d = d0; d < d1; d += 4) {
        int cnt = d1 - d < 4 ? (int)(d1 - d) : 4;
        int64_t r[4];
        for (int q = 0; q < 4; q++)
            r[q] = d + (q < cnt ? q : 0);
        for (int64_t t = 0; t < n; t += 2) {
            float s[8];
            dot_rows4(m, r, j->act + t * inter, t + 1 < n ? j->act + (t + 1) * inter : NULL,
                      inter, conv, s);
            for (int tt = 0; tt < 2 && t + tt < n; tt++) {
                float wt = j->wt ? j->wt[t + tt] : 1.0f, *o = out + tok_of(j, t + tt) * dim + d;
                for (int q = 0; q < cnt; q++)
                    o[q] += wt * s[4 * tt + q];
            }
        }
    }
}

void dspi_avx2_moe_down(const dspi_moe_job *jobs, int njobs, int64_t dim, int64_t d0,
                        int64_t d1, float *out, float *scratch)
{
    int64_t nd = d1 - d0, ngr = (nd + NR - 1) / NR;
    float *conv = scratch, *C = scratch + CONV_FLOATS;
    const float *dw[DSPI_MOE_DOWN_BLOCK], *w[NR];
    for (int jn = 0; jn < njobs; jn++) {
        const dspi_moe_job *j = &jobs[jn];
        if (j->q8_down) {
            dspi_avx2_q8_down(j, dim, d0, d1, out, scratch);
            continue;
        }
        if (j->n <= DSPI_MOE_DOT_MAX) {
            down_dot(j, dim, d0, d1, out, scratch);
            continue;
        }
        const dspi_wmat *down = &j->mlp->down;
        int64_t inter = down->cols, n = j->n, ntile = (n + TILE - 1) / TILE;
        for (int64_t pb = 0; pb < ntile; pb += DSPI_MOE_TILES) {
            int64_t pe = ntile - pb < DSPI_MOE_TILES ? ntile : pb + DSPI_MOE_TILES;
            for (int64_t k0 = 0; k0 < inter; k0 += KC) {
                int64_t kc = inter - k0 < KC ? inter - k0 : KC;
                for (int64_t r = 0; r < nd; r++)
                    dw[r] = dspi_wmat_row(down, d0 + r, k0, kc, conv + r * KC);
                for (int64_t p = pb; p < pe; p++) {
                    const float *a = j->act + (p * inter + k0) * TILE;
                    int half = n - p * TILE <= 8;
                    for (int64_t gi = 0; gi < ngr; gi++) {
                        int64_t d = NR * gi, cnt = nd - d < NR ? nd - d : NR;
                        for (int q = 0; q < NR; q++)
                            w[q] = dw[d + (q < cnt ? q : 0)];
                        float *c = C + ((p - pb) * ngr + gi) * NR * TILE;
                        if (half)
                            tile_8x6(a, w, kc, c, k0 > 0);
                        else
                            tile_16x6(a, w, kc, c, k0 > 0);
                    }
                }
            }
            /* the weighted scatter, straight from the result tiles: this
             * call owns out[:, d0:d1), so no other thread writes here */
            for (int64_t p = pb; p < pe; p++) {
                int64_t valid = n - p * TILE < TILE ? n - p * TILE : TILE;
                for (int64_t m = 0; m < valid; m++) {
                    int64_t row = p * TILE + m;
                    float wt = j->wt ? j->wt[row] : 1.0f, *o = out + tok_of(j, row) * dim + d0;
                    for (int64_t gi = 0; gi < ngr; gi++) {
                        const float *c = C + ((p - pb) * ngr + gi) * NR * TILE + m;
                        int64_t d = NR * gi, cnt = nd - d < NR ? nd - d : NR;
                        for (int64_t q = 0; q < cnt; q++)
                            o[d + q] += wt * c[q * TILE];
                    }
                }
            }
        }
    }
}

#else /* not x86: dspi_cpu_use_avx2() is 0, so these are never called */

size_t dspi_avx2_moe_scratch(void)
{
    return 0;
}

void dspi_avx2_moe_router(const float *x, int64_t t0, int64_t t1, int64_t dim,
                          const dspi_wmat *router, float *logits)
{
    abort();
}

void dspi_avx2_moe_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                      int64_t p1, float *scratch)
{
    abort();
}

void dspi_avx2_moe_down(const dspi_moe_job *jobs, int njobs, int64_t dim, int64_t d0,
                        int64_t d1, float *out, float *scratch)
{
    abort();
}

#endif
