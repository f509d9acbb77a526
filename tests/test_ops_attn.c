/* test_ops_attn.c - dsp_attention (all kinds, GQA/MQA, decode) and the KV cache against PyTorch fixtures, plus their error contract. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "dspipe/tensorio.h"
#include "ops_fixture.h"

/* Tolerances: max |got - expected| <= TOL * (1 + max |expected|).
 * Scores are dot products of up to 64 terms summed in another order than
 * PyTorch's, and the online softmax rescales partial sums tile by tile
 * (2^(m_old - m_new), a vector exp2 with ~2e-7 relative error), so results
 * differ from the one-shot softmax by a few f32 ulps per tile: TOL_ATTN
 * (observed: fixtures <= 6e-7, the 2048-token prompt 2.5e-6 against a double
 * reference, limit there 3 * TOL_ATTN; the tile-edge cases <= 1e-6).
 * The KV-cache path reads the very same numbers through strided views and
 * must agree with attention over the contiguous k/v to TOL_SAME. */
#define TOL_ATTN 2e-5
#define TOL_SAME 1e-6

#define FIXTURE_DIR "ops_attn"

/* ops_compare with this file's report width and comparison rules. */
static double compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol)
{
    return ops_compare(what, got, exp, tol, 34, OPS_CMP_EXP_CONTIG | OPS_CMP_TERSE_SHAPE);
}

/* Options of case i; *glob receives the global tensor (caller unrefs). */
static dsp_attn_opts case_opts(const dsp_safetensors *st, int i, dsp_tensor **glob,
                               dsp_tensor **mask)
{
    dsp_attn_opts o;
    memset(&o, 0, sizeof o);
    o.kind = (dsp_attn_kind)ops_scalar(st, i, "kind");
    o.scale = (float)ops_scalar(st, i, "scale");
    o.causal = (int)ops_scalar(st, i, "causal");
    o.window = (int)ops_scalar(st, i, "window");
    o.topk = (int)ops_scalar(st, i, "topk");
    o.q_offset = (int64_t)ops_scalar(st, i, "q_offset");
    *glob = ops_get(st, i, "global");
    *mask = ops_get(st, i, "key_mask");
    if (*glob) {
        o.global = dsp_tensor_data(*glob);
        o.n_global = (int)dsp_tensor_numel(*glob);
    }
    o.key_mask = *mask;
    return o;
}

/* A copy of t whose rows sit pad floats apart: a strided view with a
 * unit-stride last dim, read in place by the kernel (like cache views). */
static dsp_tensor *padded_view(const dsp_tensor *t, int64_t pad)
{
    int64_t D = t->shape[3], rows = t->shape[0] * t->shape[1] * t->shape[2];
    int64_t ld = D + pad, shape[1] = {rows * ld};
    dsp_tensor *store = NULL, *view = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &store), 0);
    float *dst = dsp_tensor_data(store);
    const float *src = dsp_tensor_data(t);
    for (int64_t r = 0; r < rows; r++) {
        memcpy(dst + r * ld, src + r * D, sizeof(float) * (size_t)D);
        for (int64_t p = 0; p < pad; p++)
            dst[r * ld + D + p] = NAN;      /* never read */
    }
    int64_t stride[4] = {t->shape[1] * t->shape[2] * ld, t->shape[2] * ld, ld, 1};
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, t->shape, stride, store->buf, 0,
                                            &view), 0);
    dsp_tensor_unref(&store);
    return view;
}

/* Every fixture case: *out NULL, preallocated *out, row-padded k/v views
 * (read in place) and a transposed q (copied). */
START_TEST(test_fixtures)
{
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "attention");
    int n = ops_ncases(st);
    ck_assert_int_ge(n, 14);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        dsp_tensor *q = ops_get(st, i, "q"), *k = ops_get(st, i, "k"), *v = ops_get(st, i, "v");
        dsp_tensor *exp = ops_get(st, i, "expected"), *glob, *mask, *out = NULL;
        dsp_attn_opts o = case_opts(st, i, &glob, &mask);
        char what[64];
        snprintf(what, sizeof what, "attention case%d kind %d", i, (int)o.kind);
        int rc = dsp_attention(q, k, v, &o, &out);
        ck_assert_msg(rc == 0, "%s: rc %d: %s", what, rc, dsp_ops_error());
        double e = compare(what, out, exp, TOL_ATTN);
        worst = e > worst ? e : worst;

        dsp_tensor *pre = NULL, *keep;
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 4, exp->shape, &pre), 0);
        memset(dsp_tensor_data(pre), 0xff, dsp_tensor_nbytes(pre));   /* NaN garbage */
        keep = pre;
        ck_assert_int_eq(dsp_attention(q, k, v, &o, &pre), 0);
        ck_assert_ptr_eq(pre, keep);
        snprintf(what, sizeof what, "attention case%d prealloc", i);
        compare(what, pre, exp, TOL_ATTN);
        dsp_tensor_unref(&pre);

        dsp_tensor *kp = padded_view(k, 3), *vp = padded_view(v, 5), *qt = ops_transposed_view(q);
        dsp_tensor *sout = NULL;
        ck_assert_int_eq(dsp_attention(qt, kp, vp, &o, &sout), 0);
        snprintf(what, sizeof what, "attention case%d strided", i);
        compare(what, sout, exp, TOL_ATTN);
        dsp_tensor_unref(&sout);
        dsp_tensor_unref(&kp);
        dsp_tensor_unref(&vp);
        dsp_tensor_unref(&qt);

        dsp_tensor_unref(&q);
        dsp_tensor_unref(&k);
        dsp_tensor_unref(&v);
        dsp_tensor_unref(&exp);
        dsp_tensor_unref(&glob);
        dsp_tensor_unref(&mask);
        dsp_tensor_unref(&out);
    }
    printf("attention: %d cases, worst max abs err %.3g\n", n, worst);
    dsp_safetensors_close(&st);
}
END_TEST

/* Positions [from, from + t) of kv [1, H, L, D] as a [H, t, D] tensor. */
static dsp_tensor *slice_rows(const dsp_tensor *kv, int64_t from, int64_t t)
{
    int64_t H = kv->shape[1], L = kv->shape[2], D = kv->shape[3], shape[3] = {H, t, D};
    dsp_tensor *s = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape, &s), 0);
    for (int64_t h = 0; h < H; h++)
        memcpy((float *)dsp_tensor_data(s) + h * t * D,
               (const float *)dsp_tensor_data(kv) + (h * L + from) * D,
               sizeof(float) * (size_t)(t * D));
    return s;
}

/* Decode against a cache filled by several appends (case 11: one query,
 * 8 query heads over 2 kv heads, 21 keys): the prompt's 20 positions in
 * three chunks, q_offset = the cache length, then the new token's k/v. */
START_TEST(test_kv_cache_decode)
{
    dsp_safetensors *st = ops_fixture_open(FIXTURE_DIR, "attention");
    const int ci = 11;
    dsp_tensor *q = ops_get(st, ci, "q"), *k = ops_get(st, ci, "k"), *v = ops_get(st, ci, "v");
    dsp_tensor *exp = ops_get(st, ci, "expected"), *glob, *mask;
    dsp_attn_opts o = case_opts(st, ci, &glob, &mask);
    ck_assert_int_eq(k->shape[2], 21);
    dsp_kv_cache *c = NULL;
    ck_assert_int_eq(dsp_kv_cache_new(2, 2, 16, 32, &c), 0);
    const int64_t cuts[] = {0, 7, 13, 20, 21};
    for (int s = 0; s < 4; s++) {
        if (s == 3) {
            ck_assert_int_eq(dsp_kv_cache_len(c, 1), 20);
            o.q_offset = dsp_kv_cache_len(c, 1);
        }
        dsp_tensor *ks = slice_rows(k, cuts[s], cuts[s + 1] - cuts[s]);
        dsp_tensor *vs = slice_rows(v, cuts[s], cuts[s + 1] - cuts[s]);
        ck_assert_int_eq(dsp_kv_cache_append(c, 1, ks, vs), 0);
        dsp_tensor_unref(&ks);
        dsp_tensor_unref(&vs);
    }
    ck_assert_int_eq(dsp_kv_cache_len(c, 1), 21);
    ck_assert_int_eq(dsp_kv_cache_len(c, 0), 0);
    dsp_tensor *kv_k = NULL, *kv_v = NULL, *out = NULL, *direct = NULL;
    ck_assert_int_eq(dsp_kv_cache_view(c, 1, &kv_k, &kv_v), 0);
    ck_assert_int_eq(kv_k->shape[2], 21);
    ck_assert_int_eq(dsp_attention(q, kv_k, kv_v, &o, &out), 0);
    compare("kv cache decode vs pytorch", out, exp, TOL_ATTN);
    ck_assert_int_eq(dsp_attention(q, k, v, &o, &direct), 0);
    compare("kv cache decode vs concatenated", out, direct, TOL_SAME);
    dsp_tensor_unref(&out);

    /* a local-window decode over the same cache equals it over k/v too */
    o.kind = DSP_ATTN_LOCAL;
    o.causal = 1;
    o.window = 6;
    dsp_tensor_unref(&direct);
    ck_assert_int_eq(dsp_attention(q, kv_k, kv_v, &o, &out), 0);
    ck_assert_int_eq(dsp_attention(q, k, v, &o, &direct), 0);
    compare("kv cache local decode", out, direct, TOL_SAME);

    /* reset empties only that sequence */
    dsp_kv_cache_reset(c, 1);
    ck_assert_int_eq(dsp_kv_cache_len(c, 1), 0);
    dsp_tensor_unref(&kv_k);
    dsp_tensor_unref(&kv_v);
    ck_assert_int_eq(dsp_kv_cache_view(c, 1, &kv_k, &kv_v), 0);
    ck_assert_int_eq(kv_k->shape[2], 0);
    dsp_tensor_unref(&kv_k);
    dsp_tensor_unref(&kv_v);
    dsp_tensor_unref(&out);
    dsp_tensor_unref(&direct);
    dsp_kv_cache_free(&c);
    ck_assert_ptr_null(c);
    dsp_kv_cache_free(&c);          /* freeing NULL is a no-op */
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    dsp_tensor_unref(&exp);
    dsp_safetensors_close(&st);
}
END_TEST

static dsp_tensor *filled(int ndim, const int64_t *shape, unsigned seed)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    uint32_t s = 2463534242u + seed;
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        d[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 4.0 - 2.0);
    }
    return t;
}

START_TEST(test_kv_cache_errors)
{
    dsp_kv_cache *c = NULL;
    ops_assert_error(dsp_kv_cache_new(1, 0, 8, 4, &c), DSP_EINVAL, "kv_cache_new: n_seqs 1, kv_heads 0");
    ck_assert_int_eq(dsp_kv_cache_new(2, 2, 8, 10, &c), 0);
    int64_t s6[] = {2, 6, 8}, s5[] = {2, 5, 8}, sh[] = {3, 2, 8}, sd[] = {2, 2, 7};
    dsp_tensor *k6 = filled(3, s6, 1), *k5 = filled(3, s5, 2), *kh = filled(3, sh, 3);
    dsp_tensor *kd = filled(3, sd, 4);
    ck_assert_int_eq(dsp_kv_cache_append(c, 0, k6, k6), 0);
    ops_assert_error(dsp_kv_cache_append(c, 0, k5, k5), DSP_ELIMIT,
                     "kv_cache_append: sequence 0 holds 6 of 10 positions, cannot append 5 more");
    ck_assert_int_eq(dsp_kv_cache_len(c, 0), 6);        /* nothing appended */
    ops_assert_error(dsp_kv_cache_append(c, 1, kh, kh), DSP_EINVAL,
                     "k [3, 2, 8] does not match the cache (expects [2, t, 8])");
    ops_assert_error(dsp_kv_cache_append(c, 1, kd, kd), DSP_EINVAL,
                     "k [2, 2, 7] does not match the cache (expects [2, t, 8])");
    ops_assert_error(dsp_kv_cache_append(c, 1, k6, k5), DSP_EINVAL, "differ in length");
    ops_assert_error(dsp_kv_cache_append(c, 2, k6, k6), DSP_EINVAL, "sequence 2 outside [0, 2)");
    ops_assert_error(dsp_kv_cache_append(c, -1, k6, k6), DSP_EINVAL, "sequence -1 outside [0, 2)");
    ck_assert_int_eq(dsp_kv_cache_len(c, 1), 0);
    ops_assert_error((int)dsp_kv_cache_len(c, 5), DSP_EINVAL, "kv_cache_len: sequence 5");
    dsp_tensor *vk = NULL, *vv = NULL;
    ops_assert_error(dsp_kv_cache_view(c, 2, &vk, &vv), DSP_EINVAL, "kv_cache_view: sequence 2");
    ck_assert_ptr_null(vk);
    dsp_kv_cache_reset(c, 7);                           /* ignored */
    ck_assert_int_eq(dsp_kv_cache_len(c, 0), 6);
    /* filling exactly to capacity is fine */
    dsp_tensor *k4 = NULL;
    int64_t s4[] = {2, 4, 8};
    k4 = filled(3, s4, 5);
    ck_assert_int_eq(dsp_kv_cache_append(c, 0, k4, k4), 0);
    ck_assert_int_eq(dsp_kv_cache_len(c, 0), 10);
    dsp_tensor_unref(&k4);
    dsp_tensor_unref(&k6);
    dsp_tensor_unref(&k5);
    dsp_tensor_unref(&kh);
    dsp_tensor_unref(&kd);
    dsp_kv_cache_free(&c);
}
END_TEST

START_TEST(test_attention_errors)
{
    int64_t qs[] = {1, 6, 5, 8}, ks[] = {1, 4, 7, 8}, kbad[] = {1, 2, 7, 9}, os[] = {1, 6, 5, 7};
    int64_t k2[] = {1, 2, 7, 8}, ms[] = {1, 6};
    dsp_tensor *q = filled(4, qs, 1), *k = filled(4, ks, 2), *kb = filled(4, kbad, 3);
    dsp_tensor *kk = filled(4, k2, 4), *o = filled(4, os, 0), *keep = o, *none = NULL, *m = NULL;
    dsp_attn_opts opt;
    memset(&opt, 0, sizeof opt);
    ops_assert_error(dsp_attention(q, k, k, &opt, &none), DSP_EINVAL,
                     "attention: q [1, 6, 5, 8] has 6 heads, not a multiple of k [1, 4, 7, 8]'s 4");
    ops_assert_error(dsp_attention(q, kb, kb, &opt, &none), DSP_EINVAL,
                     "q [1, 6, 5, 8] and k [1, 2, 7, 9] differ in batch or head_dim");
    ops_assert_error(dsp_attention(q, kk, k, &opt, &none), DSP_EINVAL,
                     "k [1, 2, 7, 8] and v [1, 4, 7, 8] differ in shape");
    ck_assert_ptr_null(none);
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &o), DSP_EINVAL,
                     "attention: out is f32[1, 6, 5, 7], expected f32[1, 6, 5, 8]");
    ck_assert_ptr_eq(o, keep);
    ops_assert_error(dsp_attention(q, kk, kk, NULL, &none), DSP_EINVAL, "opts is NULL");
    opt.kind = DSP_ATTN_LOCAL;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "window 0 must be at least 1");
    opt.kind = DSP_ATTN_TOPK;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "topk 0 must be at least 1");
    opt.kind = DSP_ATTN_HYBRID;
    opt.window = 2;
    opt.n_global = 3;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "n_global 3 with global NULL");
    opt.kind = (dsp_attn_kind)9;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "unknown attention kind 9");
    opt.kind = DSP_ATTN_FULL;
    opt.q_offset = -1;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "q_offset -1 is negative");
    opt.q_offset = 0;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 2, ms, &m), 0);
    opt.key_mask = m;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL,
                     "key_mask [1, 6] does not match k [1, 2, 7, 8] (expects [1, 7])");
    opt.key_mask = q;
    ops_assert_error(dsp_attention(q, kk, kk, &opt, &none), DSP_EINVAL, "key_mask is f32, expected u8");
    ck_assert_ptr_null(none);
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&kb);
    dsp_tensor_unref(&kk);
    dsp_tensor_unref(&o);
    dsp_tensor_unref(&m);
}
END_TEST

/* A whole 2048-token causal prompt (head_dim 64, GQA 2 over 1): too big for
 * a fixture, so sampled rows are checked against a direct double-precision
 * softmax here. It crosses query tiles and key tiles at every boundary. */
START_TEST(test_long_causal_prompt)
{
    const int64_t L = 2048, D = 64;
    int64_t qs[] = {1, 2, L, D}, ks[] = {1, 1, L, D};
    dsp_tensor *q = filled(4, qs, 11), *k = filled(4, ks, 12), *v = filled(4, ks, 13), *out = NULL;
    dsp_attn_opts o;
    memset(&o, 0, sizeof o);
    o.kind = DSP_ATTN_CAUSAL;
    o.scale = 0.25f;            /* |scores| up to ~30: the running max matters */
    ck_assert_int_eq(dsp_attention(q, k, v, &o, &out), 0);
    const float *Q = dsp_tensor_data(q), *K = dsp_tensor_data(k), *V = dsp_tensor_data(v);
    const float *O = dsp_tensor_data(out);
    double *w = malloc(sizeof(double) * (size_t)L), err = 0;
    ck_assert_ptr_nonnull(w);
    for (int64_t h = 0; h < 2; h++)
        for (int64_t i = 0; i < L; i += (i < 70 ? 1 : 61)) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j <= i; j++) {
                double s = 0;
                for (int64_t d = 0; d < D; d++)
                    s += (double)Q[(h * L + i) * D + d] * K[j * D + d];
                w[j] = s * 0.25;
                mx = w[j] > mx ? w[j] : mx;
            }
            for (int64_t j = 0; j <= i; j++)
                sum += (w[j] = exp(w[j] - mx));
            for (int64_t d = 0; d < D; d++) {
                double r = 0;
                for (int64_t j = 0; j <= i; j++)
                    r += w[j] * V[j * D + d];
                double e = fabs(r / sum - O[(h * L + i) * D + d]);
                err = e > err ? e : err;
            }
        }
    printf("%-34s max abs err %.3g (limit %.3g)\n", "long causal prompt 2048x64", err,
           TOL_ATTN * 3);
    ck_assert(err <= TOL_ATTN * 3);     /* |values| <= 2 */
    free(w);
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    dsp_tensor_unref(&out);
}
END_TEST

/* ---- tile edges and every code path of the tiled kernel ------------------
 * The CPU kernel works in blocks of 256 queries (full attention) or 64
 * (every masked kind) x tiles of 64 keys, with
 * micro-kernels over 6 rows (keys or head dims) x 16 query lanes, or for 1
 * to 4 queries and head_dim a multiple of 8 a row path (dot products over
 * head_dim, 8 keys at a time). These
 * cases put lengths, offsets and head dims on and around those edges and
 * compare with a dense double-precision reference of the documented rules
 * (the fixture script's visibility mask). Top-k cases use small integers
 * and a power-of-two scale: every score is exact in f32 and in double and
 * ties are frequent, so the kept keys must match exactly (ties to the
 * lower position). */
typedef struct edge_case {
    const char *name;
    int64_t B, Hq, Hk, Lq, Lk, D;
    dsp_attn_kind kind;
    int causal, window, topk;
    int64_t q_offset;
    int integers;               /* q in -2..2, k in -1..1, scale 0.125 */
    int mask;                   /* key_mask: 1 holes incl. a whole tile, 2 batch 1 all hidden */
    const int64_t *glob;
    int n_global;
} edge_case;

static int edge_visible(const edge_case *c, const uint8_t *km, int64_t b, int64_t p, int64_t j)
{
    int vis = 1;
    if (km && !km[b * c->Lk + j])
        return 0;
    if (c->kind == DSP_ATTN_CAUSAL || (c->kind != DSP_ATTN_FULL && c->causal))
        vis = j <= p;
    if (c->kind == DSP_ATTN_LOCAL || c->kind == DSP_ATTN_HYBRID) {
        int near = p - j < c->window && j - p < c->window, g = 0;
        for (int t = 0; t < c->n_global && c->kind == DSP_ATTN_HYBRID; t++)
            g |= c->glob[t] == j || c->glob[t] == p;
        vis = vis && (near || g);
    }
    return vis;
}

/* out[b,h,i,:] in double, from contiguous q, k, v */
static void edge_reference(const edge_case *c, const float *Q, const float *K, const float *V,
                           const uint8_t *km, float scale, double *out)
{
    int64_t Lk = c->Lk, D = c->D;
    double *s = malloc(sizeof(double) * (size_t)(Lk + 1));
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(Lk + 1));
    ck_assert(s && idx);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t i = 0; i < c->Lq; i++) {
                int64_t kh = h / (c->Hq / c->Hk), n = 0, p = c->q_offset + i;
                const float *q = Q + ((b * c->Hq + h) * c->Lq + i) * D;
                double *o = out + ((b * c->Hq + h) * c->Lq + i) * D;
                for (int64_t j = 0; j < Lk; j++) {
                    if (!edge_visible(c, km, b, p, j))
                        continue;
                    double d = 0;
                    for (int64_t t = 0; t < D; t++)
                        d += (double)q[t] * K[((b * c->Hk + kh) * Lk + j) * D + t];
                    s[n] = d * scale;
                    idx[n++] = j;
                }
                if (c->kind == DSP_ATTN_TOPK && n > c->topk) {
                    /* stable selection: keep the topk best, ties to the lower j */
                    for (int64_t x = 0; x < c->topk; x++) {
                        int64_t best = x;
                        for (int64_t y = x + 1; y < n; y++)
                            if (s[y] > s[best] || (s[y] == s[best] && idx[y] < idx[best]))
                                best = y;
                        double ts = s[x];
                        int64_t tj = idx[x];
                        s[x] = s[best];
                        idx[x] = idx[best];
                        s[best] = ts;
                        idx[best] = tj;
                    }
                    n = c->topk;
                }
                double mx = -INFINITY, sum = 0;
                for (int64_t t = 0; t < n; t++)
                    mx = s[t] > mx ? s[t] : mx;
                for (int64_t t = 0; t < n; t++)
                    sum += (s[t] = exp(s[t] - mx));
                for (int64_t d = 0; d < D; d++) {
                    double r = 0;
                    for (int64_t t = 0; t < n; t++)
                        r += s[t] * V[((b * c->Hk + kh) * Lk + idx[t]) * D + d];
                    o[d] = n ? r / sum : 0.0;
                }
            }
    free(s);
    free(idx);
}

static dsp_tensor *small_ints(int ndim, const int64_t *shape, unsigned seed, int lo, int hi)
{
    dsp_tensor *t = filled(ndim, shape, seed);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = (float)(lo + (int)floorf((d[i] + 2.0f) / 4.0f * (float)(hi - lo + 1)));
    return t;
}

START_TEST(test_tile_edges)
{
    static const int64_t g1[] = {0, 100, 250, 999, 100}, g2[] = {130};
    static const edge_case cases[] = {
        {"full 65x129 d64 gqa", 1, 2, 1, 65, 129, 64, DSP_ATTN_FULL, 0, 0, 0, 0, 0, 0, NULL, 0},
        {"full 1x1", 1, 1, 1, 1, 1, 64, DSP_ATTN_FULL, 0, 0, 0, 0, 0, 0, NULL, 0},
        /* past one 256-query block: a second block of 1 and of 44 queries */
        {"full 257x70 d40 gqa", 1, 4, 2, 257, 70, 40, DSP_ATTN_FULL, 0, 0, 0, 0, 0, 0, NULL, 0},
        {"full 300x150 d64 key_mask", 2, 2, 1, 300, 150, 64, DSP_ATTN_FULL, 0, 0, 0, 0, 0, 1,
         NULL, 0},
        {"causal 130 d80 gqa", 1, 4, 2, 130, 130, 80, DSP_ATTN_CAUSAL, 0, 0, 0, 0, 0, 0, NULL, 0},
        {"causal decode q_offset 199 d128", 1, 8, 2, 1, 200, 128, DSP_ATTN_CAUSAL, 0, 0, 0, 199,
         0, 0, NULL, 0},
        {"causal chunk 37 after 263 d32", 2, 2, 2, 37, 300, 32, DSP_ATTN_CAUSAL, 0, 0, 0, 263, 0,
         2, NULL, 0},
        {"local causal w128 333", 1, 2, 2, 333, 333, 64, DSP_ATTN_LOCAL, 1, 128, 0, 0, 0, 0,
         NULL, 0},
        {"local w50 key_mask d16", 2, 2, 1, 150, 150, 16, DSP_ATTN_LOCAL, 0, 50, 0, 0, 0, 1, NULL,
         0},
        {"local decode w128 q_offset 999", 1, 4, 1, 1, 1000, 64, DSP_ATTN_LOCAL, 1, 128, 0, 999,
         0, 0, NULL, 0},
        {"hybrid causal w20 globals", 1, 2, 1, 260, 260, 24, DSP_ATTN_HYBRID, 1, 20, 0, 0, 0, 0,
         g1, 5},
        {"hybrid w7 global query q_offset 100", 1, 1, 1, 70, 200, 8, DSP_ATTN_HYBRID, 0, 7, 0, 100,
         0, 1, g2, 1},
        {"topk 32 causal 200 mqa ints", 1, 4, 1, 200, 200, 64, DSP_ATTN_TOPK, 1, 0, 32, 0, 1, 0,
         NULL, 0},
        {"topk 5 key_mask d7 ints", 2, 2, 2, 70, 150, 7, DSP_ATTN_TOPK, 0, 0, 5, 0, 1, 1, NULL, 0},
        {"topk 300 >= k_len causal", 1, 2, 2, 130, 130, 64, DSP_ATTN_TOPK, 1, 0, 300, 0, 0, 0,
         NULL, 0},
        {"topk 3 decode q_offset 129 ints", 1, 2, 1, 1, 130, 16, DSP_ATTN_TOPK, 1, 0, 3, 129, 1, 0,
         NULL, 0},
        /* 1 to 4 queries take the row path (head_dim a multiple of 8) */
        {"rows: causal 3 after 200 key_mask", 2, 4, 2, 3, 203, 64, DSP_ATTN_CAUSAL, 0, 0, 0, 200,
         0, 1, NULL, 0},
        {"rows: hybrid 4 queries w5 d32", 1, 2, 1, 4, 150, 32, DSP_ATTN_HYBRID, 1, 5, 0, 140, 0, 0,
         g1, 5},
        {"rows: local 2 queries w3 d8", 1, 2, 2, 2, 77, 8, DSP_ATTN_LOCAL, 0, 3, 0, 40, 0, 1, NULL,
         0},
        {"rows: topk 7 causal 2 queries ints d24", 1, 3, 1, 2, 133, 24, DSP_ATTN_TOPK, 1, 0, 7, 131,
         1, 0, NULL, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const edge_case *c = &cases[ci];
        int64_t qs[] = {c->B, c->Hq, c->Lq, c->D}, ks[] = {c->B, c->Hk, c->Lk, c->D};
        int64_t ms[] = {c->B, c->Lk};
        dsp_tensor *q = c->integers ? small_ints(4, qs, 100 + ci, -2, 2) : filled(4, qs, 100 + ci);
        dsp_tensor *k = c->integers ? small_ints(4, ks, 200 + ci, -1, 1) : filled(4, ks, 200 + ci);
        dsp_tensor *v = filled(4, ks, 300 + ci), *m = NULL, *out = NULL, *sout = NULL;
        if (c->mask) {
            ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 2, ms, &m), 0);
            uint8_t *md = dsp_tensor_data(m);
            for (int64_t b = 0; b < c->B; b++)
                for (int64_t j = 0; j < c->Lk; j++)
                    md[b * c->Lk + j] = c->mask == 2 ? b == 0 : !(j % 7 == 3 || (j >= 64 && j < 128));
        }
        dsp_attn_opts o;
        memset(&o, 0, sizeof o);
        o.kind = c->kind;
        o.causal = c->causal;
        o.window = c->window;
        o.topk = c->topk;
        o.q_offset = c->q_offset;
        o.key_mask = m;
        o.global = c->glob;
        o.n_global = c->n_global;
        o.scale = c->integers ? 0.125f : 0.0f;
        float scale = o.scale > 0 ? o.scale : 1.0f / sqrtf((float)c->D);
        double *ref = malloc(sizeof(double) * (size_t)dsp_tensor_numel(q)), mx = 0;
        ck_assert_ptr_nonnull(ref);
        edge_reference(c, dsp_tensor_data(q), dsp_tensor_data(k), dsp_tensor_data(v),
                       m ? dsp_tensor_data(m) : NULL, scale, ref);
        for (int64_t t = 0; t < dsp_tensor_numel(q); t++)
            mx = fabs(ref[t]) > mx ? fabs(ref[t]) : mx;
        int rc = dsp_attention(q, k, v, &o, &out);
        ck_assert_msg(rc == 0, "%s: %s", c->name, dsp_ops_error());
        /* and once more through row-padded k/v views, read in place */
        dsp_tensor *kp = padded_view(k, 3), *vp = padded_view(v, 5);
        ck_assert_int_eq(dsp_attention(q, kp, vp, &o, &sout), 0);
        double err = 0, serr = 0, lim = TOL_ATTN * (1 + mx);
        const float *got = dsp_tensor_data(out), *sgot = dsp_tensor_data(sout);
        for (int64_t t = 0; t < dsp_tensor_numel(q); t++) {
            double e = fabs(got[t] - ref[t]), se = fabs(sgot[t] - ref[t]);
            err = e > err || e != e ? e : err;
            serr = se > serr || se != se ? se : serr;
        }
        printf("edge %-32s max abs err %.3g, strided %.3g (limit %.3g)\n", c->name, err, serr,
               lim);
        ck_assert_msg(err <= lim && serr <= lim, "%s: err %g / %g > %g", c->name, err, serr, lim);
        free(ref);
        dsp_tensor_unref(&q);
        dsp_tensor_unref(&k);
        dsp_tensor_unref(&v);
        dsp_tensor_unref(&kp);
        dsp_tensor_unref(&vp);
        dsp_tensor_unref(&m);
        dsp_tensor_unref(&out);
        dsp_tensor_unref(&sout);
    }
}
END_TEST

static Suite *attn_suite(void)
{
    Suite *s = suite_create("ops_attn");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_fixtures);
    tcase_add_test(tc, test_kv_cache_decode);
    tcase_add_test(tc, test_long_causal_prompt);
    tcase_add_test(tc, test_tile_edges);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, test_kv_cache_errors);
    tcase_add_test(tc, test_attention_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(attn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
