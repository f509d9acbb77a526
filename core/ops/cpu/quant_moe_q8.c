/* quant_moe_q8.c - AVX2 kernels of the MoE experts on int8 weights and int8 activations (W8A8): integer dot products, fused SwiGLU and weighted scatter. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"
#include "ops/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Compiled for AVX2 only here, as in quant_moe_avx2.c. */
#define AVX2 __attribute__((target("avx2,fma")))

/* QR: weight rows a tile kernel call covers (3 gate + 3 up, or 6 down);
 * the dot kernel uses the first 4. */
enum { TILE = DSPI_MOE_TILE, QB = DSPI_Q8_BLOCK, QR = 6 };

/* Int8 weight rows (from one or two matrices): codes, scales, and log2 of
 * the group size (32 or 128), so that the scale of input k is s[k >> sh]
 * without a division in the kernels. */
typedef struct q8rows {
    const int8_t *c[QR];
    const float *s[QR];
    int sh[QR];
} q8rows;

/* K int4 codes (K a multiple of 32) widened to int8 into dst: nibbles
 * split and put back in element order, (n ^ 8) - 8 extends the sign. */
AVX2 static void widen_int4(const uint8_t *c, int64_t K, int8_t *dst)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    for (int64_t k = 0; k < K; k += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(c + k / 2));
        __m128i l = _mm_and_si128(b, lo4), h = _mm_and_si128(_mm_srli_epi16(b, 4), lo4);
        __m128i e0 = _mm_unpacklo_epi8(l, h), e1 = _mm_unpackhi_epi8(l, h);
        _mm_storeu_si128((__m128i *)(dst + k), _mm_sub_epi8(_mm_xor_si128(e0, eight), eight));
        _mm_storeu_si128((__m128i *)(dst + k + 16), _mm_sub_epi8(_mm_xor_si128(e1, eight), eight));
    }
}

/* Row r of m into slot i of w: int8 codes read in place, int4 ones
 * widened into buf (in codes, the slot's own), so the kernels see int8. */
static void q8row(q8rows *w, int i, const dspi_wmat *m, int64_t r, int8_t *buf)
{
    const dsp_qweight *q = m->q;
    if (q->kind == DSP_QUANT_INT4) {
        widen_int4(q->codes + r * dspi_qrow_bytes(q), q->in, buf);
        w->c[i] = buf;
    } else {
        w->c[i] = (const int8_t *)q->codes + r * q->in;
    }
    w->s[i] = q->scales + r * (q->in / q->group_size);
    w->sh[i] = __builtin_ctz((unsigned)q->group_size);
}

static inline int64_t tok_of(const dspi_moe_job *j, int64_t i)
{
    return j->tok ? j->tok[i] : i;
}

/* Per 32-bit lane, the sum of 4 byte products x·w. maddubs multiplies
 * unsigned by signed bytes, so it gets |x| and w with x's sign moved onto
 * it (llama.cpp's trick); codes lie in [-127, 127], so a pair of products
 * stays within 2 * 127 * 127 < 32767 and nothing saturates. */
AVX2 static inline __m256i dot_bytes(__m256i ax, __m256i x, __m256i w, __m256i ones)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x)), ones);
}

/* Sums of the 8 lanes of each of a..d into lanes 0..3, exactly. */
AVX2 static inline __m128i hsum4_epi32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

static inline int32_t load4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* c[r][m] = row r · token m, m < 8, for the 6 rows of w and 8 tokens of
 * a panel: a points at their first codes in the panel layout ([K/4][16][4]
 * bytes, the 8 tokens' 4 codes a step together), ad at their first scale
 * ([K/32][16]), c rows 16 floats apart. Per block of 32 inputs, 8 steps of
 * 4 inputs give each (row, token) its exact i32 block sum; the sums are
 * then scaled and added in f32 in block order, as quant_int.h defines.
 * 8 tokens, not 16, per call: 16 would need twice the sums, which GCC
 * spilled inside the loop, while the ops per product stay the same (a
 * 16-token panel is two calls, the second reading the 6 rows from L1).
 * Measured on Zen 3 (1 thread): 6 rows beat 4 slightly; an int16 variant
 * (vpmaddwd only, no sign op, x widened per load) was ~12% slower, the
 * instruction count per product being higher. */
AVX2 static void tile_q8(const int8_t *a, const float *ad, const q8rows *w, int64_t K, float *c)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *w0 = w->c[0], *w1 = w->c[1], *w2 = w->c[2], *w3 = w->c[3], *w4 = w->c[4],
                 *w5 = w->c[5];
    __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0, f4 = f0, f5 = f0;
    for (int64_t k0 = 0; k0 < K; k0 += QB, a += QB * TILE, ad += TILE) {
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
        /* two steps an iteration: fewer register copies from GCC */
        for (int k = 0; k < QB; k += 8) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + k * TILE));
            __m256i ax = _mm256_abs_epi8(x);
            __m256i y = _mm256_loadu_si256((const __m256i *)(a + (k + 4) * TILE));
            __m256i ay = _mm256_abs_epi8(y);
#define ROW(wr, sum)                                                                       \
            sum = _mm256_add_epi32(                                                        \
                _mm256_add_epi32(dot_bytes(ax, x, _mm256_set1_epi32(load4(wr + k0 + k)), ones), \
                                 dot_bytes(ay, y, _mm256_set1_epi32(load4(wr + k0 + k + 4)), ones)), \
                sum);
            ROW(w0, s0)
            ROW(w1, s1)
            ROW(w2, s2)
            ROW(w3, s3)
            ROW(w4, s4)
            ROW(w5, s5)
#undef ROW
        }
        /* the block's exact sums, scaled, into the f32 sums so far */
        __m256 d = _mm256_loadu_ps(ad);
#define FLUSH(acc, sum, r)                                                               \
        acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(w->s[r][k0 >> w->sh[r]])),  \
                              _mm256_cvtepi32_ps(sum), acc);
        FLUSH(f0, s0, 0)
        FLUSH(f1, s1, 1)
        FLUSH(f2, s2, 2)
        FLUSH(f3, s3, 3)
        FLUSH(f4, s4, 4)
        FLUSH(f5, s5, 5)
#undef FLUSH
    }
    _mm256_storeu_ps(c, f0);
    _mm256_storeu_ps(c + TILE, f1);
    _mm256_storeu_ps(c + 2 * TILE, f2);
    _mm256_storeu_ps(c + 3 * TILE, f3);
    _mm256_storeu_ps(c + 4 * TILE, f4);
    _mm256_storeu_ps(c + 5 * TILE, f5);
}

/* c [6][16] for a whole panel; with half set only its first 8 tokens are
 * real and lanes 8..15 get 0 (the SwiGLU after the gate/up tiles reads
 * all 16). */
static void tile_q8_panel(const int8_t *a, const float *ad, const q8rows *w, int64_t K,
                          float *c, int half)
{
    tile_q8(a, ad, w, K, c);
    if (!half) {
        tile_q8(a + 32, ad + 8, w, K, c + 8);
        return;
    }
    for (int r = 0; r < QR; r++)
        memset(c + r * TILE + 8, 0, 8 * sizeof *c);
}

/* s[r] = row r · x0 and s[4 + r] = row r · x1 (x1 may be NULL) for the 4
 * rows of w and token rows x0/d0, x1/d1 of K codes: the dot path. Each
 * block's four exact sums are reduced across lanes before the f32 step,
 * so the order is the one quant_int.h defines. */
AVX2 static void dot_q8(const int8_t *x0, const float *d0, const int8_t *x1, const float *d1,
                        const q8rows *w, int64_t K, float *s)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m128 acc0 = _mm_setzero_ps(), acc1 = acc0;
    for (int64_t k = 0, b = 0; k < K; k += QB, b++) {
        __m128 sw = _mm_setr_ps(w->s[0][k >> w->sh[0]], w->s[1][k >> w->sh[1]],
                                w->s[2][k >> w->sh[2]], w->s[3][k >> w->sh[3]]);
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(w->c[0] + k));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(w->c[1] + k));
        __m256i v2 = _mm256_loadu_si256((const __m256i *)(w->c[2] + k));
        __m256i v3 = _mm256_loadu_si256((const __m256i *)(w->c[3] + k));
        __m256i x = _mm256_loadu_si256((const __m256i *)(x0 + k)), ax = _mm256_abs_epi8(x);
        __m128i is = hsum4_epi32(dot_bytes(ax, x, v0, ones), dot_bytes(ax, x, v1, ones),
                                 dot_bytes(ax, x, v2, ones), dot_bytes(ax, x, v3, ones));
        acc0 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(d0[b]), sw), _mm_cvtepi32_ps(is), acc0);
        if (x1) {
            x = _mm256_loadu_si256((const __m256i *)(x1 + k));
            ax = _mm256_abs_epi8(x);
            is = hsum4_epi32(dot_bytes(ax, x, v0, ones), dot_bytes(ax, x, v1, ones),
                             dot_bytes(ax, x, v2, ones), dot_bytes(ax, x, v3, ones));
            acc1 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(d1[b]), sw), _mm_cvtepi32_ps(is), acc1);
        }
    }
    _mm_storeu_ps(s, acc0);
    _mm_storeu_ps(s + 4, acc1);
}

/* Codes of 8 lanes for inverse scales id: x * id rounded to nearest even
 * (the default MXCSR mode, as dspi_q8_code), clamped to [-127, 127], and
 * 0 where the product is NaN (dspi_q8_code's rule). */
AVX2 static inline __m256i q8_codes(__m256 x, __m256 id)
{
    __m256 v = _mm256_mul_ps(x, id);
    __m256i q = _mm256_cvtps_epi32(v);
    q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
    return _mm256_and_si256(q, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_ORD_Q)));
}

/* 4 rows of 8 token codes (i32) into [token][4] bytes: packs give, per
 * 128-bit lane, rows 0..3 of 4 tokens; a byte shuffle transposes them. */
AVX2 static inline __m256i q8_interleave4(__m256i r0, __m256i r1, __m256i r2, __m256i r3)
{
    const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(r0, r1), _mm256_packs_epi32(r2, r3));
    return _mm256_shuffle_epi8(b, tr);
}

AVX2 void dspi_avx2_q8_quantize(const float *x, int64_t n, int8_t *q, float *d)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* packs interleave the 128-bit lanes: this puts the 4-byte groups back */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / QB; b++, x += QB, q += QB) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            /* NaN in the first operand yields the second: skipped, as in
             * dspi_q8_quantize */
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), m);
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        __m256 id = _mm256_set1_ps(dspi_q8_scale(_mm_cvtss_f32(h), &d[b]));
        __m256i c = _mm256_packs_epi16(_mm256_packs_epi32(q8_codes(v[0], id), q8_codes(v[1], id)),
                                       _mm256_packs_epi32(q8_codes(v[2], id), q8_codes(v[3], id)));
        _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(c, order));
    }
}

/* dspi_q8_pack_act for a job's panels, vectorised over the 16 tokens of a
 * panel: the same codes and scales bit for bit (max of magnitudes skips
 * NaN as the scalar loop does; lanes past the last token get 0). */
AVX2 void dspi_avx2_q8_pack_act(const dspi_moe_job *j, int64_t i0, int64_t i1, int64_t p0,
                                int64_t p1)
{
    int64_t inter = j->mlp->down.cols, nb = inter / QB;
    const __m256 sign = _mm256_set1_ps(-0.0f), c127 = _mm256_set1_ps(127.0f);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t p = p0; p < p1; p++) {
        const float *a = j->act + p * inter * TILE;
        int8_t *q = j->aq + p * inter * TILE;
        float *dd = j->ad + p * nb * TILE;
        int64_t valid = j->n - p * TILE < TILE ? j->n - p * TILE : TILE;
        __m256i v = _mm256_set1_epi32((int)valid);
        __m256 ok[2] = {_mm256_castsi256_ps(_mm256_cmpgt_epi32(v, lane)),
                        _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                            v, _mm256_add_epi32(lane, _mm256_set1_epi32(8))))};
        for (int64_t k0 = i0; k0 < i1; k0 += QB) {
            __m256 id[2];
            for (int h = 0; h < 2; h++) {
                __m256 amax = _mm256_setzero_ps();
                for (int64_t k = k0; k < k0 + QB; k++)
                    amax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(a + k * TILE + 8 * h)),
                                         amax);
                amax = _mm256_and_ps(amax, ok[h]);
                __m256 d = _mm256_div_ps(amax, c127);
                _mm256_storeu_ps(dd + k0 / QB * TILE + 8 * h, d);
                id[h] = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d),
                                      _mm256_and_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_GT_OQ),
                                                    ok[h]));
            }
            for (int64_t k = k0; k < k0 + QB; k += 4) {
                const float *r = a + k * TILE;
                for (int h = 0; h < 2; h++)
                    _mm256_storeu_si256((__m256i *)(q + k * TILE + 32 * h),
                                        q8_interleave4(q8_codes(_mm256_loadu_ps(r + 8 * h), id[h]),
                                                       q8_codes(_mm256_loadu_ps(r + TILE + 8 * h), id[h]),
                                                       q8_codes(_mm256_loadu_ps(r + 2 * TILE + 8 * h), id[h]),
                                                       q8_codes(_mm256_loadu_ps(r + 3 * TILE + 8 * h), id[h])));
            }
        }
    }
}

/* Scratch, in floats: a result tile and the dot path's pre-activations;
 * then QR rows of K bytes for widened int4 codes. */
enum { C_FLOATS = QR * TILE, PRE_FLOATS = 2 * DSPI_MOE_DOT_MAX * DSPI_MOE_UP_BLOCK };

size_t dspi_avx2_q8_scratch(int64_t kmax)
{
    return (size_t)(C_FLOATS + PRE_FLOATS) * sizeof(float) + (size_t)(QR * kmax);
}

static int8_t *int4_rows(float *scratch)
{
    return (int8_t *)(scratch + C_FLOATS + PRE_FLOATS);
}

/* The dot path of dspi_avx2_q8_up: rows gate i, gate i+1, up i, up i+1
 * against every token, then one vector SwiGLU per token. */
static void up_dot(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, float *scratch)
{
    const dspi_moe_mlp *e = j->mlp;
    int64_t inter = e->gate.rows, n = j->n, nb = i1 - i0, xb = dim / QB;
    float *G = scratch + C_FLOATS, *U = G + DSPI_MOE_DOT_MAX * DSPI_MOE_UP_BLOCK;
    int8_t *wb = int4_rows(scratch);
    for (int64_t i = 0; i < nb; i += 2) {
        int cnt = nb - i < 2 ? 1 : 2;
        q8rows w;
        q8row(&w, 0, &e->gate, i0 + i, wb);
        q8row(&w, 1, &e->gate, i0 + i + cnt - 1, wb + dim);
        q8row(&w, 2, &e->up, i0 + i, wb + 2 * dim);
        q8row(&w, 3, &e->up, i0 + i + cnt - 1, wb + 3 * dim);
        for (int64_t t = 0; t < n; t += 2) {
            float s[8];
            int two = t + 1 < n;
            dot_q8(j->xq + t * dim, j->xd + t * xb, two ? j->xq + (t + 1) * dim : NULL,
                   two ? j->xd + (t + 1) * xb : NULL, &w, dim, s);
            /* s: g_i(t), g_i+1(t), u_i(t), u_i+1(t), then token t+1 */
            for (int tt = 0; tt < 1 + two; tt++)
                for (int q = 0; q < cnt; q++) {
                    G[(t + tt) * nb + i + q] = s[4 * tt + q];
                    U[(t + tt) * nb + i + q] = s[4 * tt + 2 + q];
                }
        }
    }
    for (int64_t t = 0; t < n; t++)
        dspi_avx2_swiglu(G + t * nb, U + t * nb, nb, j->act + t * inter + i0);
}

void dspi_avx2_q8_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                     int64_t p1, float *scratch)
{
    if (j->n <= DSPI_MOE_DOT_MAX) {
        up_dot(j, dim, i0, i1, scratch);
        return;
    }
    const dspi_moe_mlp *e = j->mlp;
    int64_t inter = e->gate.rows, n = j->n, xb = dim / QB;
    float *c = scratch;
    int8_t *wb = int4_rows(scratch);
    /* a panel's codes (16 KiB at dim 1024) stay in L1 while the block's
     * gate and up rows (192 KiB) come from L2, over the whole K at once:
     * integer sums need no K slices. int4 rows are widened again for each
     * panel (~5% of the tile's work at dim 1024). */
    for (int64_t p = p0; p < p1; p++) {
        const int8_t *a = j->xq + p * dim * TILE;
        const float *ad = j->xd + p * xb * TILE;
        int half = n - p * TILE <= 8;
        for (int64_t i = i0; i < i1; i += 3) {
            /* gate rows 0-2, up rows 3-5; a missing row repeats the first */
            int64_t cnt = i1 - i < 3 ? i1 - i : 3;
            q8rows w;
            for (int q = 0; q < 3; q++) {
                q8row(&w, q, &e->gate, i + (q < cnt ? q : 0), wb + q * dim);
                q8row(&w, 3 + q, &e->up, i + (q < cnt ? q : 0), wb + (3 + q) * dim);
            }
            tile_q8_panel(a, ad, &w, dim, c, half);
            dspi_avx2_swiglu(c, c + 3 * TILE, cnt * TILE, j->act + (p * inter + i) * TILE);
        }
    }
}

/* The dot path of dspi_avx2_q8_down. */
static void down_dot(const dspi_moe_job *j, int64_t dim, int64_t d0, int64_t d1, float *out,
                     int8_t *wb)
{
    const dspi_wmat *down = &j->mlp->down;
    int64_t inter = down->cols, n = j->n, ab = inter / QB;
    for (int64_t d = d0; d < d1; d += 4) {
        int cnt = d1 - d < 4 ? (int)(d1 - d) : 4;
        q8rows w;
        for (int q = 0; q < 4; q++)
            q8row(&w, q, down, d + (q < cnt ? q : 0), wb + q * inter);
        for (int64_t t = 0; t < n; t += 2) {
            float s[8];
            int two = t + 1 < n;
            dot_q8(j->aq + t * inter, j->ad + t * ab, two ? j->aq + (t + 1) * inter : NULL,
                   two ? j->ad + (t + 1) * ab : NULL, &w, inter, s);
            for (int tt = 0; tt < 1 + two; tt++) {
                float wt = j->wt ? j->wt[t + tt] : 1.0f, *o = out + tok_of(j, t + tt) * dim + d;
                for (int q = 0; q < cnt; q++)
                    o[q] += wt * s[4 * tt + q];
            }
        }
    }
}

void dspi_avx2_q8_down(const dspi_moe_job *j, int64_t dim, int64_t d0, int64_t d1, float *out,
                       float *scratch)
{
    if (j->n <= DSPI_MOE_DOT_MAX) {
        down_dot(j, dim, d0, d1, out, int4_rows(scratch));
        return;
    }
    const dspi_wmat *down = &j->mlp->down;
    int64_t inter = down->cols, n = j->n, ab = inter / QB, ntile = (n + TILE - 1) / TILE;
    float *c = scratch;
    int8_t *wb = int4_rows(scratch);
    /* the d1 - d0 rows (up to 192 KiB) stay in L2 while each panel, in
     * L1, meets all of them; this call owns out[:, d0:d1) */
    for (int64_t p = 0; p < ntile; p++) {
        const int8_t *a = j->aq + p * inter * TILE;
        const float *ad = j->ad + p * ab * TILE;
        int64_t valid = n - p * TILE < TILE ? n - p * TILE : TILE;
        for (int64_t d = d0; d < d1; d += QR) {
            int64_t cnt = d1 - d < QR ? d1 - d : QR;
            q8rows w;
            for (int q = 0; q < QR; q++)
                q8row(&w, q, down, d + (q < cnt ? q : 0), wb + q * inter);
            tile_q8_panel(a, ad, &w, inter, c, valid <= 8);
            for (int64_t m = 0; m < valid; m++) {
                int64_t row = p * TILE + m;
                float wt = j->wt ? j->wt[row] : 1.0f, *o = out + tok_of(j, row) * dim + d;
                for (int64_t q = 0; q < cnt; q++)
                    o[q] += wt * c[q * TILE + m];
            }
        }
    }
}

#else /* not x86: dspi_cpu_use_avx2() is 0, so these are never called */

void dspi_avx2_q8_up(const dspi_moe_job *j, int64_t dim, int64_t i0, int64_t i1, int64_t p0,
                     int64_t p1, float *scratch)
{
    abort();
}

void dspi_avx2_q8_down(const dspi_moe_job *j, int64_t dim, int64_t d0, int64_t d1, float *out,
                       float *scratch)
{
    abort();
}

void dspi_avx2_q8_pack_act(const dspi_moe_job *j, int64_t i0, int64_t i1, int64_t p0,
                           int64_t p1)
{
    abort();
}

size_t dspi_avx2_q8_scratch(int64_t kmax)
{
    return 0;
}

void dspi_avx2_q8_quantize(const float *x, int64_t n, int8_t *q, float *d)
{
    abort();
}

#endif
