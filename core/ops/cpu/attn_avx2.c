/* attn_avx2.c - AVX2/FMA micro-kernels of the CPU attention (cpu/attn.c): the 6 x 16-lane score and P·V blocks, the online softmax with a vector exp2, masks, block transposes in and out, and the row path for a few queries. */
#include "config.h"
#include <math.h>
#include <stdint.h>
#include "ops/attn_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Compiled for AVX2 only here; run only after dspi_cpu_use_avx2() said yes
 * (the library itself stays baseline x86-64). */
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((target("avx2,fma"), always_inline))
#define LD DSPI_ATTN_LD
#define LANES DSPI_ATTN_LANES
#define MR DSPI_ATTN_MR

/* 2^x for x <= 0 (a score minus its running max): Cephes exp2f, n =
 * round(x), 2^(x - n) by its degree-6 polynomial (relative error ~2e-7),
 * 2^n added to the exponent bits. x below -126, where the exponent trick
 * would leave the normal range, gives 2^-126: next to the running sum
 * (>= 1) that is as good as 0, but a masked score (-inf) needs exp2_neg.
 * NaN stays NaN (vmaxps returns its second operand for a NaN). */
AVX2_INLINE __m256 exp2_clamped(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-126.0f);
    __m256 xc = _mm256_max_ps(lo, x);
    __m256 n = _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(xc, n);
    __m256 y = _mm256_set1_ps(1.535336188319500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.339887440266574e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(9.618437357674640e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.550332471162809e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(2.402264791363012e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(6.931472028550421e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
}

/* exp2_clamped, but exactly 0 below -126 and for -inf (masked scores) */
AVX2_INLINE __m256 exp2_neg(__m256 x)
{
    return _mm256_and_ps(exp2_clamped(x), _mm256_cmp_ps(x, _mm256_set1_ps(-126.0f), _CMP_NLT_UQ));
}

/* One MR x 16 block of S = K·Qᵀ: mr key rows (a constant after inlining,
 * so unused rows vanish), 16 query lanes, 2 accumulators per row. */
#define SC_ROW(r)                                                              \
    if (mr > r) {                                                              \
        __m256 av = _mm256_broadcast_ss(k##r + t);                             \
        s##r##a = _mm256_fmadd_ps(av, b0, s##r##a);                            \
        s##r##b = _mm256_fmadd_ps(av, b1, s##r##b);                            \
    }
#define SC_STORE(r)                                                            \
    if (mr > r) {                                                              \
        _mm256_store_ps(S + r * LD, s##r##a);                                  \
        _mm256_store_ps(S + r * LD + 8, s##r##b);                              \
    }
#define SC_MAX(r)                                                              \
    if (mr > r) {                                                              \
        m0 = _mm256_max_ps(m0, s##r##a);                                       \
        m1 = _mm256_max_ps(m1, s##r##b);                                       \
    }

AVX2_INLINE void scores_mr(const int mr, const float *Qt, const float *K, int64_t ks, int64_t d,
                           float *S, float *mx)
{
    const float *k0 = K, *k1 = K + (mr > 1 ? ks : 0), *k2 = K + (mr > 2 ? 2 * ks : 0);
    const float *k3 = K + (mr > 3 ? 3 * ks : 0), *k4 = K + (mr > 4 ? 4 * ks : 0);
    const float *k5 = K + (mr > 5 ? 5 * ks : 0);
    __m256 s0a = _mm256_setzero_ps(), s0b = s0a, s1a = s0a, s1b = s0a, s2a = s0a, s2b = s0a;
    __m256 s3a = s0a, s3b = s0a, s4a = s0a, s4b = s0a, s5a = s0a, s5b = s0a;
    for (int64_t t = 0; t < d; t++) {
        __m256 b0 = _mm256_load_ps(Qt + t * LD), b1 = _mm256_load_ps(Qt + t * LD + 8);
        SC_ROW(0) SC_ROW(1) SC_ROW(2) SC_ROW(3) SC_ROW(4) SC_ROW(5)
    }
    SC_STORE(0) SC_STORE(1) SC_STORE(2) SC_STORE(3) SC_STORE(4) SC_STORE(5)
    if (mx) {
        __m256 m0 = _mm256_load_ps(mx), m1 = _mm256_load_ps(mx + 8);
        SC_MAX(0) SC_MAX(1) SC_MAX(2) SC_MAX(3) SC_MAX(4) SC_MAX(5)
        _mm256_store_ps(mx, m0);
        _mm256_store_ps(mx + 8, m1);
    }
}

AVX2 void dspi_attn_avx2_scores(const float *Qt, const float *K, int64_t ks, int nk, int64_t d,
                             int ng, float *S, float *mx)
{
    for (int g = 0; g < ng; g++) {
        float *gm = mx ? mx + g * LANES : NULL;
        if (gm) {
            _mm256_store_ps(gm, _mm256_set1_ps(-INFINITY));
            _mm256_store_ps(gm + 8, _mm256_set1_ps(-INFINITY));
        }
        for (int r = 0; r < nk; r += MR) {
            const float *kr = K + r * ks, *q = Qt + g * LANES;
            float *s = S + (int64_t)r * LD + g * LANES;
            int mr = nk - r < MR ? nk - r : MR;
            switch (mr) {
            case 6: scores_mr(6, q, kr, ks, d, s, gm); break;
            case 5: scores_mr(5, q, kr, ks, d, s, gm); break;
            case 4: scores_mr(4, q, kr, ks, d, s, gm); break;
            case 3: scores_mr(3, q, kr, ks, d, s, gm); break;
            case 2: scores_mr(2, q, kr, ks, d, s, gm); break;
            default: scores_mr(1, q, kr, ks, d, s, gm); break;
            }
        }
    }
}

/* The tile's max per lane: given (tmax, an unmasked tile), or read. */
AVX2_INLINE __m256 tile_max(const float *s, int nk, const float *tmax)
{
    if (tmax)
        return _mm256_load_ps(tmax);
    __m256 mx0 = _mm256_set1_ps(-INFINITY), mx1 = mx0;
    int r = 0;
    for (; r + 2 <= nk; r += 2) {
        mx0 = _mm256_max_ps(mx0, _mm256_load_ps(s + r * LD));
        mx1 = _mm256_max_ps(mx1, _mm256_load_ps(s + (r + 1) * LD));
    }
    if (r < nk)
        mx0 = _mm256_max_ps(mx0, _mm256_load_ps(s + r * LD));
    return _mm256_max_ps(mx0, mx1);
}

/* S[r] = 2^(S[r] - ms) for r < nk (8 lanes), returning their sum. masked
 * (a constant after inlining): S may hold -inf, so exp2_neg. */
AVX2_INLINE __m256 exp_rows(float *s, int nk, __m256 ms, const int masked)
{
    __m256 sum0 = _mm256_setzero_ps(), sum1 = sum0;
    int r = 0;
    for (; r + 2 <= nk; r += 2) {
        __m256 x0 = _mm256_sub_ps(_mm256_load_ps(s + r * LD), ms);
        __m256 x1 = _mm256_sub_ps(_mm256_load_ps(s + (r + 1) * LD), ms);
        __m256 p0 = masked ? exp2_neg(x0) : exp2_clamped(x0);
        __m256 p1 = masked ? exp2_neg(x1) : exp2_clamped(x1);
        _mm256_store_ps(s + r * LD, p0);
        _mm256_store_ps(s + (r + 1) * LD, p1);
        sum0 = _mm256_add_ps(sum0, p0);
        sum1 = _mm256_add_ps(sum1, p1);
    }
    if (r < nk) {
        __m256 x0 = _mm256_sub_ps(_mm256_load_ps(s + r * LD), ms);
        __m256 p0 = masked ? exp2_neg(x0) : exp2_clamped(x0);
        _mm256_store_ps(s + r * LD, p0);
        sum0 = _mm256_add_ps(sum0, p0);
    }
    return _mm256_add_ps(sum0, sum1);
}

/* softmax_tile_c, 8 lanes at a time. tmax: NULL for a tile with masked
 * scores (-inf must give exactly 0), else its max per lane from the score
 * kernel: no pass to find it and no -inf to handle. */
AVX2 void dspi_attn_avx2_softmax(float *S, int nk, int lanes, float *m, float *l, float *al,
                                 const float *tmax)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    for (int v = 0; v < lanes; v += 8) {
        float *s = S + v;
        __m256 mo = _mm256_load_ps(m + v);
        __m256 mn = _mm256_max_ps(mo, tile_max(s, nk, tmax ? tmax + v : NULL));
        __m256 ms = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, ninf, _CMP_EQ_OQ));
        __m256 sum = tmax ? exp_rows(s, nk, ms, 0) : exp_rows(s, nk, ms, 1);
        __m256 a = exp2_neg(_mm256_sub_ps(mo, ms));
        _mm256_store_ps(al + v, a);
        _mm256_store_ps(l + v, _mm256_fmadd_ps(_mm256_load_ps(l + v), a, sum));
        _mm256_store_ps(m + v, mn);
    }
}

/* One MR x 16 block of Ot = Ot·al + Vᵀ·P: mr head dims, 16 query lanes. */
#define PV_ROW(c)                                                              \
    if (mr > c) {                                                              \
        __m256 av = _mm256_broadcast_ss(vr + c);                               \
        o##c##a = _mm256_fmadd_ps(av, b0, o##c##a);                            \
        o##c##b = _mm256_fmadd_ps(av, b1, o##c##b);                            \
    }
#define PV_STORE(c)                                                            \
    if (mr > c) {                                                              \
        float *oc = Ot + c * LD;                                               \
        _mm256_store_ps(oc, _mm256_fmadd_ps(_mm256_load_ps(oc), a0, o##c##a)); \
        _mm256_store_ps(oc + 8, _mm256_fmadd_ps(_mm256_load_ps(oc + 8), a1, o##c##b)); \
    }

AVX2_INLINE void pv_mr(const int mr, const float *P, const float *V, int64_t vs, int nk,
                       const float *al, float *Ot)
{
    __m256 o0a = _mm256_setzero_ps(), o0b = o0a, o1a = o0a, o1b = o0a, o2a = o0a, o2b = o0a;
    __m256 o3a = o0a, o3b = o0a, o4a = o0a, o4b = o0a, o5a = o0a, o5b = o0a;
    for (int r = 0; r < nk; r++) {
        const float *vr = V + r * vs;
        __m256 b0 = _mm256_load_ps(P + (int64_t)r * LD), b1 = _mm256_load_ps(P + (int64_t)r * LD + 8);
        PV_ROW(0) PV_ROW(1) PV_ROW(2) PV_ROW(3) PV_ROW(4) PV_ROW(5)
    }
    __m256 a0 = _mm256_load_ps(al), a1 = _mm256_load_ps(al + 8);
    PV_STORE(0) PV_STORE(1) PV_STORE(2) PV_STORE(3) PV_STORE(4) PV_STORE(5)
}

AVX2 void dspi_attn_avx2_pv(const float *P, const float *V, int64_t vs, int nk, int64_t d, int ng,
                         const float *al, float *Ot)
{
    /* one 16-lane strip of P (nk rows) stays in L1 while every head dim
     * block passes over it */
    for (int g = 0; g < ng; g++)
        for (int64_t c = 0; c < d; c += MR) {
            int mr = d - c < MR ? (int)(d - c) : MR;
            const float *p = P + g * LANES, *a = al + g * LANES;
            float *o = Ot + c * LD + g * LANES;
            switch (mr) {
            case 6: pv_mr(6, p, V + c, vs, nk, a, o); break;
            case 5: pv_mr(5, p, V + c, vs, nk, a, o); break;
            case 4: pv_mr(4, p, V + c, vs, nk, a, o); break;
            case 3: pv_mr(3, p, V + c, vs, nk, a, o); break;
            case 2: pv_mr(2, p, V + c, vs, nk, a, o); break;
            default: pv_mr(1, p, V + c, vs, nk, a, o); break;
            }
        }
}

/* ---- moving query blocks in and out of the lane layout --------------------
 * Qt [head_dim][LD] and Ot [head_dim][LD] hold a block transposed; at
 * QB_FULL the scalar copies in and out cost ~4% at n = 512. These move
 * 8 queries x 8 head dims per 8x8 transpose; partial blocks go one by one. */

/* rows r[0..7] become columns */
AVX2_INLINE void transpose8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

AVX2 void dspi_attn_avx2_pack_q(const float *q, int64_t qs, int nq, int64_t d, float mul,
                                float *Qt)
{
    const __m256 vm = _mm256_set1_ps(mul);
    int i = 0;
    for (; i + 8 <= nq; i += 8) {
        int64_t t = 0;
        for (; t + 8 <= d; t += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++)
                r[k] = _mm256_mul_ps(_mm256_loadu_ps(q + (i + k) * qs + t), vm);
            transpose8(r);
            for (int k = 0; k < 8; k++)
                _mm256_storeu_ps(Qt + (t + k) * LD + i, r[k]);
        }
        for (; t < d; t++)
            for (int k = 0; k < 8; k++)
                Qt[t * LD + i + k] = q[(i + k) * qs + t] * mul;
    }
    for (; i < nq; i++)
        for (int64_t t = 0; t < d; t++)
            Qt[t * LD + i] = q[i * qs + t] * mul;
}

AVX2 void dspi_attn_avx2_unpack_o(const float *Ot, const float *l, int nq, int64_t d, float *o)
{
    int i = 0;
    for (; i + 8 <= nq; i += 8) {
        /* 1 / l, or 0 for a query that saw no key */
        __m256 lv = _mm256_loadu_ps(l + i), zero = _mm256_setzero_ps();
        __m256 inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), lv),
                                   _mm256_cmp_ps(lv, zero, _CMP_GT_OQ));
        int64_t c = 0;
        for (; c + 8 <= d; c += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++)
                r[k] = _mm256_mul_ps(_mm256_loadu_ps(Ot + (c + k) * LD + i), inv);
            transpose8(r);
            for (int k = 0; k < 8; k++)
                _mm256_storeu_ps(o + (i + k) * d + c, r[k]);
        }
        for (; c < d; c++)
            for (int k = 0; k < 8; k++)
                o[(i + k) * d + c] = Ot[c * LD + i + k] * (l[i + k] > 0.0f ? 1.0f / l[i + k] : 0.0f);
    }
    for (; i < nq; i++) {
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        for (int64_t c = 0; c < d; c++)
            o[i * d + c] = Ot[c * LD + i] * inv;
    }
}

/* Lanes [lo, hi] of one score row stay, the others become -inf. */
AVX2 void dspi_attn_avx2_mask_row(float *row, int lanes, int lo, int hi)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i vlo = _mm256_set1_epi32(lo - 1), vhi = _mm256_set1_epi32(hi + 1);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int v = 0; v < lanes; v += 8) {
        __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(idx, vlo), _mm256_cmpgt_epi32(vhi, idx));
        _mm256_store_ps(row + v, _mm256_blendv_ps(ninf, _mm256_load_ps(row + v),
                                                  _mm256_castsi256_ps(in)));
        idx = _mm256_add_epi32(idx, _mm256_set1_epi32(8));
    }
}

/* Lanes whose score beats their threshold, as a bit mask over 8 lanes. */
AVX2 int dspi_attn_avx2_above(const float *s, const float *thr)
{
    return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(s), _mm256_load_ps(thr), _CMP_GT_OQ));
}

/* ---- the row path: a few queries (decode), head_dim a multiple of 8 -----
 * With 1 to ROWS_MAX queries, 16 query lanes would be mostly idle. Here
 * each query keeps its row layout: a score is a dot product over head_dim
 * (8 keys at a time, 8 accumulators summed across lanes by hadds), and P·V
 * adds p·v rows into the query's accumulator, head dims in vector lanes.
 * S keeps its [key][query] layout (8 lanes), so masks, the online softmax
 * and the top-k selection are shared with the lane path. */

/* the 8 sums of a0..a7's lanes, in order */
AVX2_INLINE __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                         __m256 a6, __m256 a7)
{
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* S[r][i] = K[r]·Qr[i] for r < nk, i < nq; Qr rows are d apart */
AVX2 void dspi_attn_avx2_scores_rows(const float *Qr, int nq, const float *K, int64_t ks, int nk,
                                  int64_t d, float *S)
{
    for (int i = 0; i < nq; i++) {
        const float *q = Qr + i * d;
        int r = 0;
        for (; r + 8 <= nk; r += 8) {
            const float *k0 = K + r * ks;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
            __m256 a6 = a0, a7 = a0;
            for (int64_t c = 0; c < d; c += 8) {
                __m256 qv = _mm256_loadu_ps(q + c);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + c), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + ks + c), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * ks + c), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * ks + c), a3);
                a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 4 * ks + c), a4);
                a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 5 * ks + c), a5);
                a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 6 * ks + c), a6);
                a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 7 * ks + c), a7);
            }
            float sc[8];
            _mm256_storeu_ps(sc, hsum8(a0, a1, a2, a3, a4, a5, a6, a7));
            for (int t = 0; t < 8; t++)
                S[(int64_t)(r + t) * LD + i] = sc[t];
        }
        for (; r < nk; r++) {
            const float *kr = K + r * ks;
            __m256 a0 = _mm256_setzero_ps(), z = a0;
            for (int64_t c = 0; c < d; c += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(kr + c), a0);
            float sc[8];
            _mm256_storeu_ps(sc, hsum8(a0, z, z, z, z, z, z, z));
            S[(int64_t)r * LD + i] = sc[0];
        }
    }
}

/* One chunk of NV·8 head dims: o = o·al + Σ_r p[r]·V[r] (NV a constant
 * after inlining: the accumulators stay in registers). */
#define PVR(v)                                                                 \
    if (NV > v)                                                                \
        o##v = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 8 * v), o##v);
#define PVR_STORE(v)                                                           \
    if (NV > v)                                                                \
        _mm256_storeu_ps(O + 8 * v, _mm256_fmadd_ps(_mm256_loadu_ps(O + 8 * v), av, o##v));

AVX2_INLINE void pv_rows_chunk(const int NV, const float *P, const float *V, int64_t vs, int nk,
                               float al, float *O)
{
    __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0, o4 = o0, o5 = o0, o6 = o0;
    __m256 o7 = o0;
    for (int r = 0; r < nk; r++) {
        const float *vr = V + r * vs;
        __m256 pv = _mm256_broadcast_ss(P + (int64_t)r * LD);
        PVR(0) PVR(1) PVR(2) PVR(3) PVR(4) PVR(5) PVR(6) PVR(7)
    }
    __m256 av = _mm256_set1_ps(al);
    PVR_STORE(0) PVR_STORE(1) PVR_STORE(2) PVR_STORE(3) PVR_STORE(4) PVR_STORE(5)
    PVR_STORE(6) PVR_STORE(7)
}

/* Or[i][:] = Or[i][:]·al[i] + Σ_r P[r][i]·V[r][:] for i < nq */
AVX2 void dspi_attn_avx2_pv_rows(const float *P, const float *V, int64_t vs, int nk, int64_t d,
                              int nq, const float *al, float *Or)
{
    for (int i = 0; i < nq; i++)
        for (int64_t c = 0; c < d; c += 64) {
            const float *p = P + i, *v = V + c;
            float *o = Or + i * d + c;
            switch (d - c >= 64 ? 8 : (int)(d - c) / 8) {
            case 8: pv_rows_chunk(8, p, v, vs, nk, al[i], o); break;
            case 7: pv_rows_chunk(7, p, v, vs, nk, al[i], o); break;
            case 6: pv_rows_chunk(6, p, v, vs, nk, al[i], o); break;
            case 5: pv_rows_chunk(5, p, v, vs, nk, al[i], o); break;
            case 4: pv_rows_chunk(4, p, v, vs, nk, al[i], o); break;
            case 3: pv_rows_chunk(3, p, v, vs, nk, al[i], o); break;
            case 2: pv_rows_chunk(2, p, v, vs, nk, al[i], o); break;
            default: pv_rows_chunk(1, p, v, vs, nk, al[i], o); break;
            }
        }
}
AVX2 void dspi_attn_avx2_axpy(float *o, const float *x, float w, int64_t d)
{
    const __m256 vw = _mm256_set1_ps(w);
    int64_t c = 0;
    for (; c + 8 <= d; c += 8)
        _mm256_storeu_ps(o + c, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + c), _mm256_loadu_ps(o + c)));
    for (; c < d; c++)
        o[c] += w * x[c];
}
#endif /* x86 */
