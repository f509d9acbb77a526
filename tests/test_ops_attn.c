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
 * (exp(m_old - m_new)), so results differ from the one-shot softmax by a few
 * f32 ulps per tile: TOL_ATTN (observed: fixtures <= 4.8e-7, the 2048-token
 * prompt 1.7e-6 against a double reference, limit there 3 * TOL_ATTN).
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

static Suite *attn_suite(void)
{
    Suite *s = suite_create("ops_attn");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_fixtures);
    tcase_add_test(tc, test_kv_cache_decode);
    tcase_add_test(tc, test_long_causal_prompt);
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
