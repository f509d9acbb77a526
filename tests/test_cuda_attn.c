/* test_cuda_attn.c - cross-backend test of dsp_attention: every kind, GQA/MQA, key masks, decode offsets, odd lengths and head dims, KV-cache-style strided device views, CPU vs cuda:0 within stated tolerances; plus the CUDA-only limits and their messages. Exits 77 (skip) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudatest.h"

/* Tolerances: |gpu - cpu| <= atol + rtol * |cpu|.
 *   flash kinds  (full, causal, local, hybrid, top-k keeping every key)
 *                both sides in f32: scores summed in another order (AVX2
 *                micro-kernel vs per-lane partial sums and shuffles), the
 *                online softmax rescaled at other tile edges, the CPU's
 *                polynomial exp2 (~2e-7 rel) vs CUDA's exp2f (2 ulp);
 *                inputs in [-1, 1), outputs |o| < 1: 2e-5 + 1e-4 rel
 *   top-k        small-integer q and k and a power-of-two scale, so every
 *                score is exact on both sides and the kept keys must be
 *                the same ones (ties to the lower position); then expf of
 *                libm vs CUDA and the weighted sum: 2e-5 + 1e-4 rel. A
 *                different key kept would differ by ~0.1. */
#define TOL_FLASH 2e-5, 1e-4
#define TOL_TOPK 2e-5, 1e-4

typedef struct shape {
    int64_t B, Hq, Hk, Lq, Lk, D;
} shape;

static dsp_tensor *make(int64_t b, int64_t h, int64_t l, int64_t d, int ints, int lo, int hi)
{
    int64_t s[4] = {b, h, l, d};
    dsp_tensor *t = rand_f32(4, s);
    if (ints) {
        float *p = dsp_tensor_data(t);
        for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
            p[i] = (float)(lo + (int)floorf((p[i] + 1.0f) * 0.5f * (float)(hi - lo + 1) * 0.9999f));
    }
    return t;
}

/* [B, Lk] u8 with holes (every 7th key and keys 40..79); batch 1 hides
 * everything when all_hidden (its queries see no key: zeros). */
static dsp_tensor *key_mask(int64_t B, int64_t Lk, int all_hidden)
{
    dsp_tensor *m = host(DSP_DTYPE_U8, 2, (int64_t[]){B, Lk});
    uint8_t *p = dsp_tensor_data(m);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < Lk; j++)
            p[b * Lk + j] = all_hidden && b == 1 ? 0 : !(j % 7 == 3 || (j >= 40 && j < 80));
    return m;
}

/* o on the CPU (host tensors) and on cuda:0 (copies, the mask too), compared. */
static void attn_cross(const char *what, const dsp_tensor *q, const dsp_tensor *k,
                       const dsp_tensor *v, const dsp_tensor *mask, dsp_attn_opts o, double atol,
                       double rtol)
{
    dsp_tensor *c = NULL, *g = NULL;
    dsp_tensor *dq = to(q, gpu), *dk = to(k, gpu), *dv = to(v, gpu), *dm = to(mask, gpu);
    o.key_mask = mask;
    if (dsp_attention(q, k, v, &o, &c) < 0)
        FAIL("%s on the CPU: %s", what, dsp_ops_error());
    o.key_mask = dm;
    if (dsp_attention(dq, dk, dv, &o, &g) < 0)
        FAIL("%s on cuda:%d: %s", what, gpu.index, dsp_ops_error());
    compare(what, c, g, atol, rtol);
    dsp_tensor_unref(&dq);
    dsp_tensor_unref(&dk);
    dsp_tensor_unref(&dv);
    dsp_tensor_unref(&dm);
}

static dsp_attn_opts opts(dsp_attn_kind kind, int causal, int window, int topk, int64_t q_offset)
{
    dsp_attn_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.causal = causal;
    o.window = window;
    o.topk = topk;
    o.q_offset = q_offset;
    return o;
}

/* One shape through every kind. */
static void all_kinds(const shape *s, int64_t q_offset, int masked)
{
    static const int64_t glob[] = {0, 5, 36, 299, 5, 4000};
    char what[160];
    dsp_tensor *q = make(s->B, s->Hq, s->Lq, s->D, 0, 0, 0);
    dsp_tensor *k = make(s->B, s->Hk, s->Lk, s->D, 0, 0, 0);
    dsp_tensor *v = make(s->B, s->Hk, s->Lk, s->D, 0, 0, 0);
    dsp_tensor *qi = make(s->B, s->Hq, s->Lq, s->D, 1, -2, 2);
    dsp_tensor *ki = make(s->B, s->Hk, s->Lk, s->D, 1, -1, 1);
    dsp_tensor *m = masked ? key_mask(s->B, s->Lk, s->B > 1) : NULL;
    struct {
        const char *name;
        dsp_attn_opts o;
        int ints;
    } kinds[] = {
        {"full", opts(DSP_ATTN_FULL, 0, 0, 0, q_offset), 0},
        {"causal", opts(DSP_ATTN_CAUSAL, 0, 0, 0, q_offset), 0},
        {"local w16", opts(DSP_ATTN_LOCAL, 0, 16, 0, q_offset), 0},
        {"local causal w128", opts(DSP_ATTN_LOCAL, 1, 128, 0, q_offset), 0},
        {"hybrid w4", opts(DSP_ATTN_HYBRID, 0, 4, 0, q_offset), 0},
        {"hybrid causal w9", opts(DSP_ATTN_HYBRID, 1, 9, 0, q_offset), 0},
        {"topk 8", opts(DSP_ATTN_TOPK, 0, 0, 8, q_offset), 1},
        {"topk causal 32", opts(DSP_ATTN_TOPK, 1, 0, 32, q_offset), 1},
        {"topk causal 256", opts(DSP_ATTN_TOPK, 1, 0, 256, q_offset), 1},
        {"topk >= k_len (flash)", opts(DSP_ATTN_TOPK, 1, 0, 1 << 20, q_offset), 0},
    };
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        dsp_attn_opts o = kinds[t].o;
        if (o.kind == DSP_ATTN_HYBRID) {
            o.global = glob;
            o.n_global = 6;
        }
        if (kinds[t].ints)
            o.scale = 0.125f;
        snprintf(what, sizeof what, "%s B%lld H%lld/%lld Lq%lld Lk%lld D%lld off%lld%s",
                 kinds[t].name, (long long)s->B, (long long)s->Hq, (long long)s->Hk,
                 (long long)s->Lq, (long long)s->Lk, (long long)s->D, (long long)q_offset,
                 masked ? " masked" : "");
        if (kinds[t].ints)
            attn_cross(what, qi, ki, v, m, o, TOL_TOPK);
        else
            attn_cross(what, q, k, v, m, o, TOL_FLASH);
    }
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    dsp_tensor_unref(&qi);
    dsp_tensor_unref(&ki);
    dsp_tensor_unref(&m);
}

static void test_kinds(void)
{
    static const shape shapes[] = {
        {1, 1, 1, 1, 1, 64},            /* n = 1 */
        {1, 4, 1, 37, 37, 32},          /* MQA, odd n */
        {2, 8, 2, 300, 300, 64},        /* GQA, batch 2, n across tiles */
        {1, 2, 2, 300, 300, 128},
        {1, 2, 1, 70, 70, 5},           /* odd head_dim */
        {1, 2, 2, 65, 65, 200},         /* 16 lanes per query row */
        {1, 2, 2, 129, 129, 16},        /* 1 lane per query row */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        all_kinds(&shapes[i], 0, 0);
    all_kinds(&shapes[2], 0, 1);        /* key_mask; batch 1 sees no key */
    /* a chunk after a prefix, and a one-token decode (q_offset = k_len - 1) */
    all_kinds(&(shape){1, 8, 2, 37, 300, 64}, 263, 0);
    all_kinds(&(shape){1, 8, 2, 1, 300, 64}, 299, 1);
    all_kinds(&(shape){1, 4, 4, 1, 1000, 128}, 999, 0);
    /* long enough for many key tiles, query blocks and top-k compactions */
    all_kinds(&(shape){1, 8, 2, 1024, 1024, 64}, 0, 0);
}

/* A KV-cache-style device view: k/v rows strided by a capacity of 80
 * positions, read in place; and q as the [B, L, H, D] output of a
 * projection viewed as [B, H, L, D]. Against the same on the CPU. */
static void test_strided_views(void)
{
    const int64_t H = 2, cap = 80, L = 53, D = 64, Hq = 4;
    dsp_tensor *kc = make(1, H, cap, D, 0, 0, 0), *vc = make(1, H, cap, D, 0, 0, 0);
    dsp_tensor *qp = rand_f32(SHAPE(1, L, Hq, D));
    dsp_tensor *dkc = to(kc, gpu), *dvc = to(vc, gpu), *dqp = to(qp, gpu);
    int64_t kshape[4] = {1, H, L, D}, kstride[4] = {H * cap * D, cap * D, D, 1};
    int64_t qshape[4] = {1, Hq, L, D}, qstride[4] = {L * Hq * D, D, Hq * D, 1};
    dsp_tensor *views[6] = {NULL};      /* host k, v, q, device k, v, q */
    int rc = 0;
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, kshape, kstride, kc->buf, kc->offset, &views[0]);
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, kshape, kstride, vc->buf, vc->offset, &views[1]);
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, qshape, qstride, qp->buf, qp->offset, &views[2]);
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, kshape, kstride, dkc->buf, dkc->offset,
                                 &views[3]);
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, kshape, kstride, dvc->buf, dvc->offset,
                                 &views[4]);
    rc |= dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, qshape, qstride, dqp->buf, dqp->offset,
                                 &views[5]);
    if (rc < 0) {
        FAIL("cannot make the strided views");
    } else {
        dsp_attn_opts kinds[] = {opts(DSP_ATTN_CAUSAL, 0, 0, 0, cap - L),
                                 opts(DSP_ATTN_LOCAL, 1, 8, 0, 0),
                                 opts(DSP_ATTN_FULL, 0, 0, 0, 0)};
        for (int t = 0; t < 3; t++) {
            dsp_tensor *c = NULL, *g = NULL;
            char what[80];
            snprintf(what, sizeof what, "strided views, kind %d", (int)kinds[t].kind);
            if (dsp_attention(views[2], views[0], views[1], &kinds[t], &c) < 0)
                FAIL("%s on the CPU: %s", what, dsp_ops_error());
            if (dsp_attention(views[5], views[3], views[4], &kinds[t], &g) < 0)
                FAIL("%s on cuda:%d: %s", what, gpu.index, dsp_ops_error());
            compare(what, c, g, TOL_FLASH);
        }
        /* a preallocated device output is written in place */
        dsp_tensor *c = NULL, *pre = NULL, *keep;
        if (dsp_tensor_new(DSP_DTYPE_F32, 4, qshape, &c) < 0 ||
            dsp_tensor_to_device(ctx, c, gpu, &pre) < 0) {
            FAIL("cannot preallocate a device output");
            dsp_tensor_unref(&c);
        } else {
            keep = pre;
            dsp_tensor_unref(&c);
            EXPECT_RC(dsp_attention(views[5], views[3], views[4], &kinds[0], &pre), 0);
            checks++;
            if (pre != keep)
                FAIL("the preallocated device output was replaced");
            EXPECT_RC(dsp_attention(views[2], views[0], views[1], &kinds[0], &c), 0);
            compare("strided views, preallocated device output", c, pre, TOL_FLASH);
        }
    }
    for (int i = 0; i < 6; i++)
        dsp_tensor_unref(&views[i]);
    dsp_tensor *ts[] = {kc, vc, qp, dkc, dvc, dqp};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        dsp_tensor_unref(&ts[i]);
}

/* What CUDA refuses, with the message naming the limit. */
static void test_errors(void)
{
    dsp_tensor *q = make(1, 2, 4, 16, 0, 0, 0), *k = make(1, 2, 400, 16, 0, 0, 0);
    dsp_tensor *big = make(1, 1, 4, 300, 0, 0, 0);
    dsp_tensor *dq = to(q, gpu), *dk = to(k, gpu), *dbig = to(big, gpu), *out = NULL, *view = NULL;
    dsp_attn_opts o = opts(DSP_ATTN_TOPK, 0, 0, 300, 0);
    EXPECT_RC(dsp_attention(dq, dk, dk, &o, &out), DSP_EUNSUPPORTED);
    expect_msg("top-k 300 of 400 keys", "top-k with topk 300 of 400 keys is not implemented on CUDA");
    o.topk = 400;                       /* keeps every key: plain attention, runs */
    EXPECT_RC(dsp_attention(dq, dk, dk, &o, &out), 0);
    dsp_tensor_unref(&out);
    o = opts(DSP_ATTN_FULL, 0, 0, 0, 0);
    EXPECT_RC(dsp_attention(dbig, dbig, dbig, &o, &out), DSP_EUNSUPPORTED);
    expect_msg("head_dim 300", "head_dim 300 is more than CUDA attention's 256");
    /* a device q whose rows are not unit-stride (last two dims swapped) */
    if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 4, (int64_t[]){1, 2, 16, 4},
                               (int64_t[]){128, 64, 1, 16}, dq->buf, dq->offset, &view) < 0)
        FAIL("cannot make a transposed device view");
    else {
        dsp_tensor *k16 = make(1, 2, 7, 4, 0, 0, 0), *dk16 = to(k16, gpu);
        EXPECT_RC(dsp_attention(view, dk16, dk16, &o, &out), DSP_EUNSUPPORTED);
        expect_msg("transposed device q", "strided input");
        dsp_tensor_unref(&k16);
        dsp_tensor_unref(&dk16);
    }
    if (out)
        FAIL("a failed call left a result");
    dsp_tensor *ts[] = {q, k, big, dq, dk, dbig, view};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        dsp_tensor_unref(&ts[i]);
}

int main(void)
{
    int rc = cudatest_open();
    if (rc)
        return rc;
    test_kinds();
    test_strided_views();
    test_errors();
    return cudatest_close();
}
