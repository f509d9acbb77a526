/* test_ops_moe.c - dsp_moe past the PyTorch fixtures: quantized experts against their dequantized f32 layer, W8A8 against a plain-C reference of its quantization, and a naive double-precision layer at sizes the fixtures do not reach. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dspipe/ops.h"
#include "ops_fixture.h"
#include "ops/quant_int.h"
#include "ops/cpu/simd.h"

/* ops_compare with this file's report width and comparison rules. */
static double compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol)
{
    return ops_compare(what, got, exp, tol, 34, OPS_CMP_TERSE_SHAPE);
}

/* ops_transposed_view of a matrix (2 dims only). */
static dsp_tensor *transposed_view(const dsp_tensor *t)
{
    ck_assert_int_eq(t->ndim, 2);
    return ops_transposed_view(t);
}

/* ---- quantized experts ---------------------------------------------------
 * dsp_moe on quantized experts must equal dsp_moe on the f32 matrices
 * dsp_dequantize gives for them: the kernels read a quantized matrix a few
 * rows at a time, dequantized exactly as dsp_dequantize does, and run the
 * same products, so only the order of the sums may differ: TOL_QMOE. */
#define TOL_QMOE 1e-6

/* Deterministic weights ~ normal(0, std): a sum of 4 uniforms (Irwin-Hall,
 * variance 1/3) from a 64-bit LCG, scaled. */
static dsp_tensor *gauss(int64_t rows, int64_t cols, double std, uint64_t seed)
{
    int64_t shape[2] = {rows, cols};
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, shape, &t), 0);
    float *d = dsp_tensor_data(t);
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < rows * cols; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++) {
            z = z * 6364136223846793005ull + 1442695040888963407ull;
            u += (double)(z >> 11) / 9007199254740992.0 - 0.5;
        }
        d[i] = (float)(u * sqrt(3.0) * std);
    }
    return t;
}

enum { QE = 6, QS = 1 };

/* A layer of QE routed experts and QS shared ones, dim and inter given. */
typedef struct qmoe {
    int64_t dim, inter;
    dsp_tensor *router, *w[QE + QS][3], *deq[QE + QS][3];
    dsp_qweight *q[QE + QS][3];
} qmoe;

static void qmoe_init(qmoe *L, int64_t dim, int64_t inter, dsp_quant_kind kind, int group)
{
    memset(L, 0, sizeof *L);
    L->dim = dim;
    L->inter = inter;
    /* a router spread wide enough that every expert gets tokens */
    L->router = gauss(QE, dim, 2.0 / sqrt((double)dim), 7);
    for (int e = 0; e < QE + QS; e++)
        for (int k = 0; k < 3; k++) {
            L->w[e][k] = k < 2 ? gauss(inter, dim, 0.02, 100 + 3 * e + k)
                               : gauss(dim, inter, 0.02, 100 + 3 * e + k);
            ck_assert_msg(dsp_quantize(L->w[e][k], kind, group, &L->q[e][k]) == 0, "%s",
                          dsp_ops_error());
            ck_assert_int_eq(dsp_dequantize(L->q[e][k], &L->deq[e][k]), 0);
        }
}

static void qmoe_free(qmoe *L)
{
    dsp_tensor_unref(&L->router);
    for (int e = 0; e < QE + QS; e++)
        for (int k = 0; k < 3; k++) {
            dsp_tensor_unref(&L->w[e][k]);
            dsp_tensor_unref(&L->deq[e][k]);
            dsp_qweight_free(&L->q[e][k]);
        }
}

/* Expert e of L with matrix k quantized where mask bit k is set, else the
 * dequantized f32 tensor (so both spell the same numbers). */
static dsp_moe_expert qmoe_expert(const qmoe *L, int e, unsigned mask)
{
    dsp_moe_expert x = {0};
    const dsp_tensor **t[3] = {&x.gate, &x.up, &x.down};
    const dsp_qweight **q[3] = {&x.qgate, &x.qup, &x.qdown};
    for (int k = 0; k < 3; k++) {
        if (mask & (1u << k))
            *q[k] = L->q[e][k];
        else
            *t[k] = L->deq[e][k];
    }
    return x;
}

/* dsp_moe with experts given per masks[] against the all-f32 layer, T tokens. */
static void qmoe_check(const qmoe *L, int64_t T, int top_k, const unsigned *masks,
                       const char *what)
{
    int64_t xs[2] = {T, L->dim};
    dsp_tensor *x = NULL, *yq = NULL, *yf = NULL, *again = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, xs, &x), 0);
    dsp_tensor *xg = gauss(T, L->dim, 1.0, (uint64_t)T);
    memcpy(dsp_tensor_data(x), dsp_tensor_data(xg), dsp_tensor_nbytes(x));
    dsp_moe_expert eq[QE + QS], ef[QE + QS];
    for (int e = 0; e < QE + QS; e++) {
        eq[e] = qmoe_expert(L, e, masks[e]);
        ef[e] = qmoe_expert(L, e, 0);
    }
    /* f32 activations: exact against the dequantized weights, whatever
     * DSPIPE_MOE_ACT says */
    dsp_moe_opts o = {top_k, DSP_MOE_SOFTMAX, 1, 0.0f, DSP_MOE_ACT_F32};
    ck_assert_msg(dsp_moe(x, L->router, eq, QE, eq + QE, QS, &o, &yq) == 0, "%s",
                  dsp_ops_error());
    ck_assert_int_eq(dsp_moe(x, L->router, ef, QE, ef + QE, QS, &o, &yf), 0);
    char name[96];
    snprintf(name, sizeof name, "%s T%lld k%d", what, (long long)T, top_k);
    compare(name, yq, yf, TOL_QMOE);
    /* the same call twice gives the same bits */
    ck_assert_int_eq(dsp_moe(x, L->router, eq, QE, eq + QE, QS, &o, &again), 0);
    ck_assert_int_eq(memcmp(dsp_tensor_data(again), dsp_tensor_data(yq), dsp_tensor_nbytes(yq)),
                     0);
    dsp_tensor *ts[] = {x, xg, yq, yf, again};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        dsp_tensor_unref(&ts[k]);
}

/* Token counts that take every kernel path: 1 and 3 tokens (a few per
 * expert: the dot-product path), 37 and 150 (panels of 16 with short and
 * long last panels). */
static const int64_t qmoe_tokens[] = {1, 3, 37, 150};

static void quantized_layers(const char *tag)
{
    static const struct { dsp_quant_kind kind; int group; const char *name; } qs[] = {
        {DSP_QUANT_INT8, 32, "int8 g32"}, {DSP_QUANT_INT8, 128, "int8 g128"},
        {DSP_QUANT_INT4, 32, "int4 g32"}, {DSP_QUANT_INT4, 128, "int4 g128"}};
    unsigned all[QE + QS];
    for (int e = 0; e < QE + QS; e++)
        all[e] = 7;
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        qmoe L;
        /* dim and inter differ so a swapped matrix cannot pass */
        qmoe_init(&L, 128, 256, qs[i].kind, qs[i].group);
        char what[64];
        snprintf(what, sizeof what, "%smoe %s vs dequantized", tag, qs[i].name);
        for (size_t t = 0; t < sizeof qmoe_tokens / sizeof qmoe_tokens[0]; t++)
            qmoe_check(&L, qmoe_tokens[t], 2, all, what);
        qmoe_check(&L, 37, 4, all, what);
        qmoe_free(&L);
    }
}

START_TEST(test_moe_quantized)
{
    quantized_layers("");
}
END_TEST

/* The same with the AVX2 kernels switched off (DSPIPE_OPS_SIMD=0 is read
 * once per process; check runs each test in a fresh child, so this one
 * sees it). */
START_TEST(test_moe_quantized_portable)
{
    setenv("DSPIPE_OPS_SIMD", "0", 1);
    quantized_layers("portable ");
}
END_TEST

START_TEST(test_moe_mixed)
{
    qmoe L;
    qmoe_init(&L, 64, 96, DSP_QUANT_INT4, 32);
    /* expert 0 all f32, 1 only gate quantized, 2 only down, 3 up and down,
     * 4 gate and up, 5 all; the shared expert only gate and down */
    unsigned masks[QE + QS] = {0, 1, 4, 6, 3, 7, 5};
    for (size_t t = 0; t < sizeof qmoe_tokens / sizeof qmoe_tokens[0]; t++)
        qmoe_check(&L, qmoe_tokens[t], 3, masks, "moe mixed f32/int4");
    qmoe_free(&L);
    /* int8 experts next to int4 ones in one call */
    qmoe A, B;
    qmoe_init(&A, 64, 96, DSP_QUANT_INT8, 32);
    qmoe_init(&B, 64, 96, DSP_QUANT_INT4, 32);
    int64_t xs[2] = {21, 64};
    dsp_tensor *x = gauss(xs[0], xs[1], 1.0, 5), *yq = NULL, *yf = NULL;
    dsp_moe_expert eq[QE], ef[QE];
    for (int e = 0; e < QE; e++) {
        const qmoe *S = e % 2 ? &A : &B;
        eq[e] = qmoe_expert(S, e, 7);
        ef[e] = qmoe_expert(S, e, 0);
    }
    dsp_moe_opts o = {2, DSP_MOE_SIGMOID, 0, 1.5f, DSP_MOE_ACT_F32};
    ck_assert_msg(dsp_moe(x, A.router, eq, QE, NULL, 0, &o, &yq) == 0, "%s", dsp_ops_error());
    ck_assert_int_eq(dsp_moe(x, A.router, ef, QE, NULL, 0, &o, &yf), 0);
    compare("moe int8 and int4 experts", yq, yf, TOL_QMOE);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&yq);
    dsp_tensor_unref(&yf);
    qmoe_free(&A);
    qmoe_free(&B);
}
END_TEST

/* ---- W8A8: quantized experts on int8 activations ----------------------
 * With act = DSP_MOE_ACT_INT8 an int8 (or int4, widened) matrix multiplies
 * activations quantized per token (blocks of 32, quant_int.h). q8_moe_ref
 * computes the layer from that definition written out again in plain C, each dot
 * product the same fmaf chain over exact integer block sums, so gate, up
 * and down come out with the kernels' bits; SwiGLU is the library's own
 * (the one the path under test uses, elementwise), routing and the sum
 * over experts are in double. What is left is f32-vs-double routing
 * weights and the order of the final sum: TOL_Q8_EXACT, relative to
 * max |y|; a wrong index, scale or sign is orders of magnitude above it.
 * Against f32 activations on the same (dequantized) weights the error is
 * that of quantizing the activations, bounded per token by TOL_Q8_ACT
 * (relative L2; ~1% is typical at these sizes, see MOE_RESULTS.md). */
#define TOL_Q8_EXACT 1e-5
#define TOL_Q8_ACT 0.03

static void ref_q8_row(const float *x, int64_t n, int8_t *q, float *d)
{
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        d[b] = amax / 127.0f;
        float id = d[b] > 0.0f ? 1.0f / d[b] : 0.0f;
        for (int i = 0; i < 32; i++)
            q[b * 32 + i] = (int8_t)rintf(x[b * 32 + i] * id);
    }
}

/* Code k of row r of an int8 or int4 matrix (quant_int.h's layout). */
static int ref_code(const dsp_qweight *w, int64_t r, int64_t k)
{
    if (w->kind == DSP_QUANT_INT8)
        return ((const int8_t *)w->codes)[r * w->in + k];
    int nib = (w->codes[r * (w->in / 2) + k / 2] >> (k % 2 ? 4 : 0)) & 15;
    return nib < 8 ? nib : nib - 16;
}

static float ref_q8_dot(const int8_t *qx, const float *dx, const dsp_qweight *w, int64_t r)
{
    const float *s = w->scales + r * (w->in / w->group_size);
    float y = 0.0f;
    for (int64_t k = 0; k < w->in; k += 32) {
        int32_t isum = 0;
        for (int i = 0; i < 32; i++)
            isum += (int32_t)qx[k + i] * ref_code(w, r, k + i);
        y = fmaf(dx[k / 32] * s[k / w->group_size], (float)isum, y);
    }
    return y;
}

/* The SwiGLU the experts' path uses: the AVX2 kernel (no tail: inter is a
 * multiple of 32) or the portable loop. */
static void lib_swiglu(const float *g, const float *u, int64_t n, float *a)
{
    if (dspi_cpu_use_avx2())
        dspi_avx2_swiglu(g, u, n, a);
    else
        dspi_cpu_swiglu(g, u, n, a);
}

/* y [dim] = down(swiglu(gate x, up x)) of int8 expert q on token x, W8A8. */
static void ref_q8_expert(dsp_qweight *const *q, const float *x, int64_t dim, int64_t inter,
                          float *y)
{
    int8_t qx[1024];
    float dx[32], g[1024], u[1024], a[1024];
    ck_assert(dim <= 1024 && inter <= 1024);
    ref_q8_row(x, dim, qx, dx);
    for (int64_t r = 0; r < inter; r++) {
        g[r] = ref_q8_dot(qx, dx, q[0], r);
        u[r] = ref_q8_dot(qx, dx, q[1], r);
    }
    lib_swiglu(g, u, inter, a);
    ref_q8_row(a, inter, qx, dx);
    for (int64_t c = 0; c < dim; c++)
        y[c] = ref_q8_dot(qx, dx, q[2], c);
}

/* The layer of L (softmax, renormalised top_k, the shared expert) in
 * W8A8 on x [T, dim] into out; returns the smallest gap between a
 * token's k-th and (k+1)-th score. */
static double q8_moe_ref(const qmoe *L, const float *x, int64_t T, int top_k, double *out)
{
    int64_t dim = L->dim;
    const float *router = dsp_tensor_data(L->router);
    double gap = 1e9;
    float y[1024];
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * dim;
        double s[QE], mx = -1e300, sum = 0, wsum = 0;
        for (int e = 0; e < QE; e++) {
            s[e] = 0;
            for (int64_t i = 0; i < dim; i++)
                s[e] += (double)router[e * dim + i] * xt[i];
            mx = s[e] > mx ? s[e] : mx;
        }
        for (int e = 0; e < QE; e++)
            sum += s[e] = exp(s[e] - mx);
        int sel[QE + QS], used[QE] = {0};
        for (int j = 0; j <= top_k && j < QE; j++) {
            int best = -1;
            for (int e = 0; e < QE; e++)
                if (!used[e] && (best < 0 || s[e] > s[best]))
                    best = e;
            if (j == top_k) {
                double gp = (s[sel[top_k - 1]] - s[best]) / sum;
                gap = gp < gap ? gp : gap;
                break;
            }
            sel[j] = best;
            used[best] = 1;
            wsum += s[best];
        }
        double *o = out + t * dim;
        memset(o, 0, (size_t)dim * sizeof *o);
        for (int j = 0; j < top_k + QS; j++) {
            int e = j < top_k ? sel[j] : QE + j - top_k;
            double wt = j < top_k ? s[e] / wsum : 1.0;
            ref_q8_expert(L->q[e], xt, dim, L->inter, y);
            for (int64_t c = 0; c < dim; c++)
                o[c] += wt * y[c];
        }
    }
    return gap;
}

/* Per-token relative L2 error of got [T, dim] against ref: max into
 * *mx, mean returned. */
static double token_rel_l2(const float *got, const double *ref, const float *reff, int64_t T,
                           int64_t dim, double *mx)
{
    double mean = 0;
    *mx = 0;
    for (int64_t t = 0; t < T; t++) {
        double e2 = 0, r2 = 0;
        for (int64_t c = 0; c < dim; c++) {
            double r = ref ? ref[t * dim + c] : reff[t * dim + c];
            e2 += (got[t * dim + c] - r) * (got[t * dim + c] - r);
            r2 += r * r;
        }
        double rel = sqrt(e2 / (r2 > 0 ? r2 : 1e-300));
        *mx = rel > *mx ? rel : *mx;
        mean += rel / (double)T;
    }
    return mean;
}

/* W8A8 dsp_moe on the all-int8 layer L against q8_moe_ref (exact) and
 * against f32 activations (loose), T tokens. */
static void q8_check(const qmoe *L, int64_t T, int top_k, const char *what)
{
    int64_t dim = L->dim;
    dsp_tensor *x = gauss(T, dim, 1.0, 900 + (uint64_t)T), *yq = NULL, *yf = NULL, *again = NULL;
    dsp_moe_expert eq[QE + QS];
    unsigned all = 7;
    for (int e = 0; e < QE + QS; e++)
        eq[e] = qmoe_expert(L, e, all);
    dsp_moe_opts o = {top_k, DSP_MOE_SOFTMAX, 1, 0.0f, DSP_MOE_ACT_INT8};
    ck_assert_msg(dsp_moe(x, L->router, eq, QE, eq + QE, QS, &o, &yq) == 0, "%s",
                  dsp_ops_error());
    double *ref = malloc((size_t)(T * dim) * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    double gap = q8_moe_ref(L, dsp_tensor_data(x), T, top_k, ref);
    ck_assert_msg(gap > 1e-5, "routing near a tie (gap %g): pick other seeds", gap);
    const float *g = dsp_tensor_data(yq);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < T * dim; i++) {
        err = fmax(err, fabs(g[i] - ref[i]));
        mx = fmax(mx, fabs(ref[i]));
    }
    printf("%-40s T%-4lld k%d  max abs err / max|y| %.2e (limit %.0e)\n", what, (long long)T,
           top_k, err / mx, TOL_Q8_EXACT);
    ck_assert_msg(err <= TOL_Q8_EXACT * mx, "%s T%lld k%d: W8A8 vs reference: err %g, max|y| %g",
                  what, (long long)T, top_k, err, mx);
    /* against f32 activations on the same weights */
    o.act = DSP_MOE_ACT_F32;
    ck_assert_int_eq(dsp_moe(x, L->router, eq, QE, eq + QE, QS, &o, &yf), 0);
    double tmax, tmean = token_rel_l2(g, NULL, dsp_tensor_data(yf), T, dim, &tmax);
    printf("%-40s T%-4lld k%d  vs f32 activations: token rel L2 max %.2e mean %.2e (limit %.2g)\n",
           what, (long long)T, top_k, tmax, tmean, TOL_Q8_ACT);
    ck_assert_msg(tmax <= TOL_Q8_ACT, "%s: W8A8 vs f32 activations: token rel L2 %g", what,
                  tmax);
    /* the same call twice gives the same bits */
    o.act = DSP_MOE_ACT_INT8;
    ck_assert_int_eq(dsp_moe(x, L->router, eq, QE, eq + QE, QS, &o, &again), 0);
    ck_assert_int_eq(memcmp(dsp_tensor_data(again), g, dsp_tensor_nbytes(yq)), 0);
    free(ref);
    dsp_tensor *ts[] = {x, yq, yf, again};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        dsp_tensor_unref(&ts[k]);
}

static void q8_layers(const char *tag)
{
    static const struct { dsp_quant_kind kind; int group; const char *name; } qs[] = {
        {DSP_QUANT_INT8, 32, "int8 g32"}, {DSP_QUANT_INT8, 128, "int8 g128"},
        {DSP_QUANT_INT4, 32, "int4 g32"}, {DSP_QUANT_INT4, 128, "int4 g128"}};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        qmoe L;
        qmoe_init(&L, 128, 256, qs[i].kind, qs[i].group);
        char what[64];
        snprintf(what, sizeof what, "%smoe W8A8 %s", tag, qs[i].name);
        for (size_t t = 0; t < sizeof qmoe_tokens / sizeof qmoe_tokens[0]; t++)
            q8_check(&L, qmoe_tokens[t], 2, what);
        q8_check(&L, 37, 4, what);
        qmoe_free(&L);
    }
}

START_TEST(test_moe_w8a8)
{
    q8_layers("");
}
END_TEST

/* The portable kernels (DSPIPE_OPS_SIMD=0, read once per process; check
 * runs each test in a fresh child). */
START_TEST(test_moe_w8a8_portable)
{
    setenv("DSPIPE_OPS_SIMD", "0", 1);
    q8_layers("portable ");
}
END_TEST

/* int8 activations only where a matrix is quantized: experts with int8
 * gate and up only, int8 down only, int4 and f32 ones next to them, within
 * the loose bound of f32 activations; DSPIPE_MOE_ACT=int8 is the default's
 * switch, and with nothing quantized the choice changes nothing. */
START_TEST(test_moe_w8a8_mixed)
{
    qmoe A, B;
    qmoe_init(&A, 64, 96, DSP_QUANT_INT8, 32);
    qmoe_init(&B, 64, 96, DSP_QUANT_INT4, 32);
    /* expert 0 all f32, 1 gate and up int8, 2 down int8, 3 up and down,
     * 4 all int4, 5 all int8; the shared expert gate and down int8 */
    unsigned masks[QE + QS] = {0, 3, 4, 6, 7, 7, 5};
    for (size_t t = 0; t < sizeof qmoe_tokens / sizeof qmoe_tokens[0]; t++) {
        int64_t T = qmoe_tokens[t];
        dsp_tensor *x = gauss(T, 64, 1.0, 77 + (uint64_t)T), *y8 = NULL, *yf = NULL, *yd = NULL;
        dsp_moe_expert ex[QE + QS];
        for (int e = 0; e < QE + QS; e++)
            ex[e] = qmoe_expert(e == 4 ? &B : &A, e, masks[e]);
        dsp_moe_opts o = {3, DSP_MOE_SOFTMAX, 1, 0.0f, DSP_MOE_ACT_INT8};
        ck_assert_msg(dsp_moe(x, A.router, ex, QE, ex + QE, QS, &o, &y8) == 0, "%s",
                      dsp_ops_error());
        o.act = DSP_MOE_ACT_F32;
        ck_assert_int_eq(dsp_moe(x, A.router, ex, QE, ex + QE, QS, &o, &yf), 0);
        double tmax, tmean = token_rel_l2(dsp_tensor_data(y8), NULL, dsp_tensor_data(yf), T, 64,
                                          &tmax);
        printf("moe W8A8 mixed T%-4lld vs f32 activations: token rel L2 max %.2e mean %.2e\n",
               (long long)T, tmax, tmean);
        ck_assert_msg(tmax <= TOL_Q8_ACT && tmax > 0, "mixed W8A8 T%lld: %g", (long long)T, tmax);
        setenv("DSPIPE_MOE_ACT", "int8", 1);
        o.act = DSP_MOE_ACT_DEFAULT;
        ck_assert_int_eq(dsp_moe(x, A.router, ex, QE, ex + QE, QS, &o, &yd), 0);
        unsetenv("DSPIPE_MOE_ACT");
        ck_assert_int_eq(memcmp(dsp_tensor_data(yd), dsp_tensor_data(y8), dsp_tensor_nbytes(y8)),
                         0);
        dsp_tensor *ts[] = {x, y8, yf, yd};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            dsp_tensor_unref(&ts[k]);
    }
    /* no quantized matrix: INT8 is F32 */
    dsp_tensor *x = gauss(37, 64, 1.0, 5), *y8 = NULL, *yf = NULL;
    dsp_moe_expert ex[QE];
    for (int e = 0; e < QE; e++)
        ex[e] = qmoe_expert(&B, e, 0);
    dsp_moe_opts o = {2, DSP_MOE_SOFTMAX, 1, 0.0f, DSP_MOE_ACT_INT8};
    ck_assert_int_eq(dsp_moe(x, B.router, ex, QE, NULL, 0, &o, &y8), 0);
    o.act = DSP_MOE_ACT_F32;
    ck_assert_int_eq(dsp_moe(x, B.router, ex, QE, NULL, 0, &o, &yf), 0);
    ck_assert_int_eq(memcmp(dsp_tensor_data(yf), dsp_tensor_data(y8), dsp_tensor_nbytes(y8)), 0);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&y8);
    dsp_tensor_unref(&yf);
    qmoe_free(&A);
    qmoe_free(&B);
}
END_TEST

/* ---- a naive double-precision reference -------------------------------
 * Sizes past the kernels' K slice (256) and panel block (8 x 16 tokens),
 * which the PyTorch fixtures (dims <= 53) do not reach, checked against a
 * plain triple loop in double: f32, bf16 and strided weights, quantized
 * experts (the reference multiplies their dequantized matrices). */
#define TOL_NAIVE 5e-6
enum { NE = 4, NS = 1, NDIM = 288, NINTER = 320 };

/* bf16 copy of an f32 matrix (round to nearest even) and, in place, the
 * f32 values it stands for */
static dsp_tensor *to_bf16(dsp_tensor *t)
{
    dsp_tensor *b = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_BF16, t->ndim, t->shape, &b), 0);
    float *f = dsp_tensor_data(t);
    uint16_t *h = dsp_tensor_data(b);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        u += 0x7fff + ((u >> 16) & 1);
        h[i] = (uint16_t)(u >> 16);
        u = (uint32_t)h[i] << 16;
        memcpy(&f[i], &u, 4);
    }
    return b;
}

/* out[t] = sum over the top_k experts (softmax, renormalised) and the
 * shared ones of down(silu(gate x) * up x), in double; w[e][0..2] are
 * contiguous f32 [inter, dim], [inter, dim], [dim, inter]. Returns the
 * smallest gap between a token's k-th and (k+1)-th score, so a test can
 * tell a routing tie from an error. */
static double moe_naive(const float *x, int64_t T, const float *router, float *const (*w)[3],
                        int top_k, double *out)
{
    double gap = 1e9;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * NDIM;
        double s[NE], mx = -1e300, sum = 0;
        for (int e = 0; e < NE; e++) {
            s[e] = 0;
            for (int64_t i = 0; i < NDIM; i++)
                s[e] += (double)router[e * NDIM + i] * xt[i];
            mx = s[e] > mx ? s[e] : mx;
        }
        for (int e = 0; e < NE; e++)
            sum += s[e] = exp(s[e] - mx);
        int sel[NE], used[NE] = {0};
        double wsum = 0;
        for (int j = 0; j <= top_k && j < NE; j++) {
            int best = -1;
            for (int e = 0; e < NE; e++)
                if (!used[e] && (best < 0 || s[e] > s[best]))
                    best = e;
            if (j == top_k) {
                double g = (s[sel[top_k - 1]] - s[best]) / sum;
                gap = g < gap ? g : gap;
                break;
            }
            sel[j] = best;
            used[best] = 1;
            wsum += s[best];
        }
        double *o = out + t * NDIM;
        memset(o, 0, NDIM * sizeof *o);
        for (int j = 0; j < top_k + NS; j++) {
            int e = j < top_k ? sel[j] : NE + j - top_k;
            double g = j < top_k ? s[e] / wsum : 1.0, a[NINTER];
            for (int64_t r = 0; r < NINTER; r++) {
                double hg = 0, hu = 0;
                for (int64_t i = 0; i < NDIM; i++) {
                    hg += (double)w[e][0][r * NDIM + i] * xt[i];
                    hu += (double)w[e][1][r * NDIM + i] * xt[i];
                }
                a[r] = hg / (1 + exp(-hg)) * hu;
            }
            for (int64_t c = 0; c < NDIM; c++) {
                double y = 0;
                for (int64_t r = 0; r < NINTER; r++)
                    y += (double)w[e][2][c * NINTER + r] * a[r];
                o[c] += g * y;
            }
        }
    }
    return gap;
}

static void naive_compare(const char *what, const dsp_tensor *y, const double *ref, int64_t n)
{
    const float *g = dsp_tensor_data(y);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        err = fabs(g[i] - ref[i]) > err ? fabs(g[i] - ref[i]) : err;
        mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    }
    printf("%-34s max abs err %.3g (limit %.3g)\n", what, err, TOL_NAIVE * (1 + mx));
    ck_assert_msg(err <= TOL_NAIVE * (1 + mx), "%s: err %g", what, err);
}

START_TEST(test_moe_naive)
{
    enum { F32, BF16, STRIDED, INT8, INT4, NKIND };
    static const char *const names[NKIND] = {"f32", "bf16", "strided f32", "int8 g32",
                                             "int4 g32"};
    dsp_tensor *router = gauss(NE, NDIM, 2.0 / sqrt((double)NDIM), 11);
    for (int kind = 0; kind < NKIND; kind++) {
        dsp_tensor *w[NE + NS][3], *given[NE + NS][3] = {{0}};
        dsp_qweight *q[NE + NS][3] = {{0}};
        float *ref_w[NE + NS][3];
        dsp_moe_expert ex[NE + NS];
        for (int e = 0; e < NE + NS; e++) {
            dsp_moe_expert m = {0};
            for (int k = 0; k < 3; k++) {
                w[e][k] = k < 2 ? gauss(NINTER, NDIM, 0.05, 300 + 3 * e + k)
                                : gauss(NDIM, NINTER, 0.05, 300 + 3 * e + k);
                if (kind == BF16) {
                    given[e][k] = to_bf16(w[e][k]);
                } else if (kind == STRIDED) {
                    given[e][k] = transposed_view(w[e][k]);
                } else if (kind == INT8 || kind == INT4) {
                    dsp_tensor *d = NULL;
                    ck_assert_int_eq(dsp_quantize(w[e][k], kind == INT8 ? DSP_QUANT_INT8
                                                                        : DSP_QUANT_INT4, 32,
                                                  &q[e][k]), 0);
                    ck_assert_int_eq(dsp_dequantize(q[e][k], &d), 0);
                    dsp_tensor_unref(&w[e][k]);
                    w[e][k] = d;
                } else {
                    given[e][k] = dsp_tensor_ref(w[e][k]);
                }
                ref_w[e][k] = dsp_tensor_data(w[e][k]);
            }
            m.gate = given[e][0];
            m.up = given[e][1];
            m.down = given[e][2];
            m.qgate = q[e][0];
            m.qup = q[e][1];
            m.qdown = q[e][2];
            ex[e] = m;
        }
        /* 2 tokens: the dot path; 150: panels, the shared expert's more
         * than 8 of them */
        for (int64_t T = 2; T <= 150; T += 148) {
            dsp_tensor *x = gauss(T, NDIM, 1.0, 40 + (uint64_t)T), *y = NULL;
            double *ref = malloc((size_t)(T * NDIM) * sizeof *ref);
            ck_assert_ptr_nonnull(ref);
            double gap = moe_naive(dsp_tensor_data(x), T, dsp_tensor_data(router), ref_w, 2,
                                   ref);
            ck_assert_msg(gap > 1e-5, "routing near a tie (gap %g): pick other seeds", gap);
            dsp_moe_opts o = {2, DSP_MOE_SOFTMAX, 1, 0.0f, DSP_MOE_ACT_F32};
            ck_assert_msg(dsp_moe(x, router, ex, NE, ex + NE, NS, &o, &y) == 0, "%s",
                          dsp_ops_error());
            char what[64];
            snprintf(what, sizeof what, "moe naive %s T%lld", names[kind], (long long)T);
            naive_compare(what, y, ref, T * NDIM);
            free(ref);
            dsp_tensor_unref(&x);
            dsp_tensor_unref(&y);
        }
        for (int e = 0; e < NE + NS; e++)
            for (int k = 0; k < 3; k++) {
                dsp_tensor_unref(&w[e][k]);
                dsp_tensor_unref(&given[e][k]);
                dsp_qweight_free(&q[e][k]);
            }
    }
    dsp_tensor_unref(&router);
}
END_TEST


static Suite *moe_suite(void)
{
    Suite *s = suite_create("ops_moe");
    TCase *tc = tcase_create("quantized experts");
    tcase_add_test(tc, test_moe_quantized);
    tcase_add_test(tc, test_moe_quantized_portable);
    tcase_add_test(tc, test_moe_mixed);
    tcase_add_test(tc, test_moe_naive);
    suite_add_tcase(s, tc);
    tc = tcase_create("w8a8");
    tcase_add_test(tc, test_moe_w8a8);
    tcase_add_test(tc, test_moe_w8a8_portable);
    tcase_add_test(tc, test_moe_w8a8_mixed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(moe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
