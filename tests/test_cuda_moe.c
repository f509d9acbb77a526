/* test_cuda_moe.c - cross-backend test of the quantized linear and the MoE layer: CPU vs cuda:0 with the same seeded inputs, within stated tolerances; dsp_qweight_to_device checks that need no GPU run first. Exits 77 (skip) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudatest.h"

/* Tolerances: |gpu - cpu| <= atol + rtol * |cpu|.
 *   linear_q   both sides multiply the same dequantized weights (code * scale,
 *              one f32 product) in f32; only the summation order differs
 *              (the GEMV kernel's lanes and warp reduction, cuBLAS in
 *              pedantic f32, against OpenBLAS): K <= 384, x and w in
 *              [-1, 1], |y| up to ~20: 1e-4 + 1e-4 rel
 *   moe        router, expert GEMMs and the weighted sum in other orders,
 *              expf of CUDA and of libm a few ulp apart; outputs ~1:
 *              1e-4 + 1e-4 rel. The routing itself must agree exactly: a
 *              token sent to another expert differs by ~0.1, far above
 *              this. Top-k ties could legitimately break differently when
 *              two logits are within rounding of each other, so every
 *              token's input is redrawn until the gaps between its five
 *              largest router logits are all >= 1e-3 (rounding differs by
 *              ~1e-6), see untie(). */
#define TOL_LINQ 1e-4, 1e-4
#define TOL_MOE 1e-4, 1e-4

/* ---- dsp_qweight_to_device without a GPU --------------------------------- */

/* Both dequantize to the same bits. */
static int same_qweight(const dsp_qweight *a, const dsp_qweight *b)
{
    dsp_tensor *da = NULL, *db = NULL;
    int same = dsp_dequantize(a, &da) == 0 && dsp_dequantize(b, &db) == 0 &&
               dsp_tensor_nbytes(da) == dsp_tensor_nbytes(db) &&
               memcmp(dsp_tensor_data(da), dsp_tensor_data(db), dsp_tensor_nbytes(da)) == 0;
    dsp_tensor_unref(&da);
    dsp_tensor_unref(&db);
    return same;
}

/* Copies to the CPU, and the failures that need no GPU, on a context of
 * their own (cudatest_open frees its context when there is no GPU). */
static void test_qweight_host(void)
{
    dsp_context *c = NULL;
    dsp_tensor *w = rand_f32(SHAPE(6, 64));
    dsp_qweight *q = NULL, *q2 = NULL, *bad = NULL;
    if (dsp_context_new(&c) < 0) {
        FAIL("cannot create a context");
        dsp_tensor_unref(&w);
        return;
    }
    EXPECT_RC(dsp_quantize(w, DSP_QUANT_INT4, 32, &q), 0);
    EXPECT_RC(dsp_qweight_to_device(c, q, cpu, &q2), 0);
    checks++;
    if (!q2 || q2 == q || dsp_qweight_bytes(q2) != dsp_qweight_bytes(q) || !same_qweight(q, q2))
        FAIL("a CPU to CPU copy of a qweight is not an equal, separate qweight");

    checks++;
    if (dsp_qweight_to_device(c, q, (dsp_device){(dsp_device_type)7, 0}, &bad) != DSP_EINVAL ||
        bad || !strstr(dsp_context_errmsg(c), "unknown device type"))
        FAIL("an unknown device type: '%s'", dsp_context_errmsg(c));
    checks++;
    if (dsp_qweight_to_device(c, NULL, cpu, &bad) != DSP_EINVAL || bad ||
        dsp_qweight_to_device(c, q, cpu, NULL) != DSP_EINVAL)
        FAIL("NULL arguments were not refused with DSP_EINVAL");
    /* cuda:999 exists nowhere: not usable without a GPU, no such index with one */
    checks++;
    if (dsp_qweight_to_device(c, q, (dsp_device){DSP_DEVICE_CUDA, 999}, &bad) != DSP_EDEVICE ||
        bad || !strstr(dsp_context_errmsg(c), "cuda:999"))
        FAIL("a copy to cuda:999: '%s'", dsp_context_errmsg(c));
    else
        printf("qweight to cuda:999 fails as it should: %s\n", dsp_context_errmsg(c));

    dsp_qweight_free(&q2);
    checks++;
    if (q2)
        FAIL("dsp_qweight_free did not clear the pointer");
    dsp_qweight_free(&q2);      /* NULL: no-op */
    dsp_qweight_free(NULL);
    dsp_qweight_free(&q);
    dsp_tensor_unref(&w);
    dsp_context_free(&c);
}

/* ---- quantized linear ---------------------------------------------------- */

typedef struct qpair {
    const dsp_qweight *cpu, *gpu;
} qpair;

/* cross() passes one arg to both calls: pick the weight on x's device. */
static int do_linear_q(const dsp_tensor *x, const dsp_tensor *b, const dsp_tensor *z,
                       const void *arg, dsp_tensor **out)
{
    const qpair *p = arg;
    (void)z;
    return dsp_linear_q(x, x->device.type == DSP_DEVICE_CPU ? p->cpu : p->gpu, b, out);
}

static dsp_qweight *qto(const dsp_qweight *q, dsp_device dev)
{
    dsp_qweight *d = NULL;
    if (dsp_qweight_to_device(ctx, q, dev, &d) < 0) {
        fprintf(stderr, "dsp_qweight_to_device: %s\n", dsp_context_errmsg(ctx));
        exit(99);
    }
    return d;
}

/* f32 values as bf16 (truncated) or f16 (|v| < 1, truncated, tiny -> 0) */
static dsp_tensor *as_half(const dsp_tensor *t, dsp_dtype dt)
{
    dsp_tensor *h = host(dt, t->ndim, t->shape);
    const float *src = dsp_tensor_data(t);
    uint16_t *dst = dsp_tensor_data(h);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        int e = (int)((u >> 23) & 0xff) - 127 + 15;
        dst[i] = dt == DSP_DTYPE_BF16 ? (uint16_t)(u >> 16)
                 : (uint16_t)(((u >> 16) & 0x8000) |
                              (e > 0 ? ((uint32_t)e << 10) | ((u >> 13) & 0x3ff) : 0));
    }
    return h;
}

static void test_linear_q(void)
{
    static const dsp_quant_kind kinds[] = {DSP_QUANT_INT8, DSP_QUANT_INT4};
    static const int groups[] = {32, 128};
    /* 1, 3, 8: the GEMV kernel (MT = 1, 4, 8); 9 and up: dequantized panels + cuBLAS */
    static const int64_t ms[] = {1, 3, 8, 9, 64, 300};
    const int64_t N = 70;
    char what[160];
    for (int ki = 0; ki < 2; ki++) {
        for (int gi = 0; gi < 2; gi++) {
            int64_t K = 3 * groups[gi];
            const char *kn = kinds[ki] == DSP_QUANT_INT4 ? "int4" : "int8";
            dsp_tensor *w = rand_f32(SHAPE(N, K)), *b = rand_f32(SHAPE(N));
            dsp_tensor *bh = as_half(b, DSP_DTYPE_BF16), *bf = as_half(b, DSP_DTYPE_F16);
            dsp_qweight *q = NULL;
            if (dsp_quantize(w, kinds[ki], groups[gi], &q) < 0) {
                fprintf(stderr, "dsp_quantize: %s\n", dsp_ops_error());
                exit(99);
            }
            qpair p = {q, qto(q, gpu)};
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                dsp_tensor *x = rand_f32(SHAPE(ms[mi], K));
                snprintf(what, sizeof what, "linear_q %s g%d x[%lld,%lld] w[%lld,%lld]", kn,
                         groups[gi], (long long)ms[mi], (long long)K, (long long)N, (long long)K);
                cross(what, do_linear_q, x, NULL, NULL, &p, TOL_LINQ);
                snprintf(what + strlen(what), sizeof what - strlen(what), " + b");
                cross(what, do_linear_q, x, b, NULL, &p, TOL_LINQ);
                dsp_tensor_unref(&x);
            }
            /* bias in f16 / bf16, a 3-D x (rows from the leading dims) */
            dsp_tensor *x3 = rand_f32(SHAPE(2, 5, K)), *x1 = rand_f32(SHAPE(1, K));
            snprintf(what, sizeof what, "linear_q %s g%d x[2,5,%lld] bf16 b", kn, groups[gi],
                     (long long)K);
            cross(what, do_linear_q, x3, bh, NULL, &p, TOL_LINQ);
            snprintf(what, sizeof what, "linear_q %s g%d x[1,%lld] f16 b", kn, groups[gi],
                     (long long)K);
            cross(what, do_linear_q, x1, bf, NULL, &p, TOL_LINQ);

            /* x that is not 16-byte aligned on the device (a view one float
             * into its buffer): the GEMV kernel's scalar loads */
            dsp_tensor *db = to(b, gpu);
            dsp_tensor *xs = rand_f32(SHAPE(3 * K + 1)), *dxs = to(xs, gpu), *vx = NULL, *vh = NULL;
            dsp_tensor *c = NULL, *g = NULL;
            if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){3, K}, NULL, dxs->buf,
                                       sizeof(float), &vx) < 0 ||
                dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){3, K}, NULL, xs->buf,
                                       sizeof(float), &vh) < 0) {
                FAIL("cannot make offset views");
            } else {
                EXPECT_RC(dsp_linear_q(vh, q, b, &c), 0);
                EXPECT_RC(dsp_linear_q(vx, p.gpu, db, &g), 0);
                snprintf(what, sizeof what, "linear_q %s g%d unaligned x", kn, groups[gi]);
                compare(what, c, g, TOL_LINQ);
            }
            dsp_tensor_unref(&vx);
            dsp_tensor_unref(&vh);
            dsp_tensor_unref(&xs);
            dsp_tensor_unref(&dxs);

            /* a preallocated device out is written in place */
            dsp_tensor *x4 = rand_f32(SHAPE(4, K)), *dx4 = to(x4, gpu);
            dsp_tensor *o4 = rand_f32(SHAPE(4, N)), *dout = to(o4, gpu), *keep = dout;
            c = NULL;
            EXPECT_RC(dsp_linear_q(x4, q, b, &c), 0);
            EXPECT_RC(dsp_linear_q(dx4, p.gpu, db, &dout), 0);
            checks++;
            if (dout != keep)
                FAIL("linear_q into a preallocated device out replaced the tensor");
            snprintf(what, sizeof what, "linear_q %s g%d into a device out", kn, groups[gi]);
            compare(what, c, dout, TOL_LINQ);

            /* back to the CPU, and GPU to GPU: the same codes and scales */
            dsp_qweight *back = qto(p.gpu, cpu), *gg = qto(p.gpu, gpu), *back2 = qto(gg, cpu);
            checks++;
            if (!same_qweight(q, back) ||
                !same_qweight(q, back2) || dsp_qweight_bytes(gg) != dsp_qweight_bytes(q))
                FAIL("%s g%d: a round trip through the GPU changed the qweight", kn, groups[gi]);
            dsp_qweight_free(&back);
            dsp_qweight_free(&back2);
            dsp_qweight_free(&gg);

            dsp_qweight *gw = (dsp_qweight *)p.gpu;
            dsp_tensor *tensors[] = {w, b, bh, bf, x3, x1, x4, dx4, db, o4};
            for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
                dsp_tensor_unref(&tensors[i]);
            dsp_qweight_free(&q);
            dsp_qweight_free(&gw);
        }
    }
}

static void test_linear_q_errors(void)
{
    dsp_tensor *w = rand_f32(SHAPE(8, 32)), *x = rand_f32(SHAPE(2, 32)), *dx = to(x, gpu);
    dsp_tensor *out = NULL, *deq = NULL;
    dsp_qweight *q = NULL;
    EXPECT_RC(dsp_quantize(w, DSP_QUANT_INT8, 32, &q), 0);
    dsp_qweight *dq = qto(q, gpu);
    EXPECT_RC(dsp_linear_q(x, dq, NULL, &out), DSP_EDEVICE);
    expect_msg("linear_q, x on the CPU, w on the GPU", "w is on cuda:0, x on cpu:0");
    EXPECT_RC(dsp_linear_q(dx, q, NULL, &out), DSP_EDEVICE);
    expect_msg("linear_q, x on the GPU, w on the CPU", "w is on cpu:0, x on cuda:0");
    EXPECT_RC(dsp_dequantize(dq, &deq), DSP_EUNSUPPORTED);
    expect_msg("dequantize of a device qweight", "dsp_qweight_to_device");
    checks++;
    if (out || deq)
        FAIL("a failed call left a result in *out");
    dsp_qweight_free(&q);
    dsp_qweight_free(&dq);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&dx);
}

/* ---- mixture of experts ---------------------------------------------------- */

/* How one expert matrix is stored. */
typedef enum mat_kind { M_F32, M_F16, M_BF16, M_STRIDED, M_Q8_32, M_Q8_128, M_Q4_32, M_Q4_128 } mat_kind;

/* A weight matrix on the CPU and its copy on the GPU: a tensor (t) or a
 * quantized matrix (q). */
typedef struct mat {
    dsp_tensor *t[2];
    dsp_qweight *q[2];
} mat;

#define MAX_EXPERTS 24

typedef struct moe_model {
    int E, S;                   /* routed and shared experts */
    int64_t dim;
    dsp_tensor *router[2];
    mat m[MAX_EXPERTS][3];      /* gate, up, down; routed first, then shared */
} moe_model;

/* rows x cols of uniform values in [-scale, scale) in the given storage */
static void mat_make(mat *m, mat_kind kind, int64_t rows, int64_t cols, float scale)
{
    dsp_tensor *f = rand_f32(SHAPE(rows, cols));
    float *p = dsp_tensor_data(f);
    memset(m, 0, sizeof *m);
    for (int64_t i = 0; i < rows * cols; i++)
        p[i] *= scale;
    switch (kind) {
    case M_F32:
        m->t[0] = f;
        m->t[1] = to(f, gpu);
        return;
    case M_F16:
    case M_BF16:
        m->t[0] = as_half(f, kind == M_F16 ? DSP_DTYPE_F16 : DSP_DTYPE_BF16);
        m->t[1] = to(m->t[0], gpu);
        break;
    case M_STRIDED: {
        /* [rows, cols] read through strides {1, rows} from a [cols, rows]
         * block, on both devices */
        dsp_tensor *store = rand_f32(SHAPE(cols, rows)), *dstore;
        float *s = dsp_tensor_data(store);
        for (int64_t i = 0; i < rows * cols; i++)
            s[i] *= scale;
        dstore = to(store, gpu);
        if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){rows, cols},
                                   (int64_t[]){1, rows}, store->buf, 0, &m->t[0]) < 0 ||
            dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){rows, cols},
                                   (int64_t[]){1, rows}, dstore->buf, 0, &m->t[1]) < 0) {
            fprintf(stderr, "cannot make strided views\n");
            exit(99);
        }
        dsp_tensor_unref(&store);
        dsp_tensor_unref(&dstore);
        break;
    }
    default: {
        dsp_quant_kind qk = kind == M_Q4_32 || kind == M_Q4_128 ? DSP_QUANT_INT4 : DSP_QUANT_INT8;
        int gs = kind == M_Q8_32 || kind == M_Q4_32 ? 32 : 128;
        if (dsp_quantize(f, qk, gs, &m->q[0]) < 0) {
            fprintf(stderr, "dsp_quantize: %s\n", dsp_ops_error());
            exit(99);
        }
        m->q[1] = qto(m->q[0], gpu);
        break;
    }
    }
    dsp_tensor_unref(&f);
}

static void mat_free(mat *m)
{
    for (int d = 0; d < 2; d++) {
        dsp_tensor_unref(&m->t[d]);
        dsp_qweight_free(&m->q[d]);
    }
}

/* kinds[e][0..2]: gate, up, down of expert e (routed, then shared). */
static void model_make(moe_model *mo, int E, int S, int64_t dim, const int64_t *inter,
                       mat_kind (*kinds)[3], dsp_dtype router_dt)
{
    memset(mo, 0, sizeof *mo);
    mo->E = E;
    mo->S = S;
    mo->dim = dim;
    /* router logits ~ +-1: sigmoid scores well away from saturation */
    dsp_tensor *r = rand_f32(SHAPE(E, dim));
    float *rp = dsp_tensor_data(r);
    for (int64_t i = 0; i < E * dim; i++)
        rp[i] *= 0.3f;
    mo->router[0] = router_dt == DSP_DTYPE_F32 ? dsp_tensor_ref(r) : as_half(r, router_dt);
    mo->router[1] = to(mo->router[0], gpu);
    dsp_tensor_unref(&r);
    /* weights scaled so that every stage stays ~1 */
    for (int e = 0; e < E + S; e++) {
        mat_make(&mo->m[e][0], kinds[e][0], inter[e], dim, 0.25f);
        mat_make(&mo->m[e][1], kinds[e][1], inter[e], dim, 0.25f);
        mat_make(&mo->m[e][2], kinds[e][2], dim, inter[e], 0.25f);
    }
}

static void model_free(moe_model *mo)
{
    for (int d = 0; d < 2; d++)
        dsp_tensor_unref(&mo->router[d]);
    for (int e = 0; e < mo->E + mo->S; e++)
        for (int k = 0; k < 3; k++)
            mat_free(&mo->m[e][k]);
}

static dsp_moe_expert expert_of(const moe_model *mo, int e, int d)
{
    dsp_moe_expert x = {mo->m[e][0].t[d], mo->m[e][1].t[d], mo->m[e][2].t[d],
                        mo->m[e][0].q[d], mo->m[e][1].q[d], mo->m[e][2].q[d]};
    return x;
}

/* x [T, dim] with no near tie among any token's five largest router
 * logits (see the tolerances at the top). */
static dsp_tensor *untied_x(const moe_model *mo, int64_t T)
{
    dsp_tensor *x = rand_f32(SHAPE(T, mo->dim));
    float *xp = dsp_tensor_data(x);
    int E = mo->E, top = E - 1 < 5 ? E - 1 : 5, redrawn = 0;
    for (int round = 0; round < 1000; round++) {
        dsp_tensor *lg = NULL;
        if (dsp_linear(x, mo->router[0], NULL, &lg) < 0) {
            fprintf(stderr, "router logits: %s\n", dsp_ops_error());
            exit(99);
        }
        const float *l = dsp_tensor_data(lg);
        int bad = 0;
        for (int64_t t = 0; t < T; t++) {
            float s[MAX_EXPERTS];
            memcpy(s, l + t * E, (size_t)E * sizeof *s);
            for (int i = 1; i < E; i++)         /* descending insertion sort */
                for (int j = i; j > 0 && s[j] > s[j - 1]; j--) {
                    float v = s[j];
                    s[j] = s[j - 1];
                    s[j - 1] = v;
                }
            int tie = 0;
            for (int i = 0; i < top; i++)
                tie |= s[i] - s[i + 1] < 1e-3f;
            if (tie) {
                for (int64_t c = 0; c < mo->dim; c++)
                    xp[t * mo->dim + c] = frand();
                bad++;
            }
        }
        dsp_tensor_unref(&lg);
        redrawn += bad;
        if (!bad) {
            if (redrawn)
                printf("  (T=%lld: %d token rows redrawn to avoid top-k near ties)\n",
                       (long long)T, redrawn);
            return x;
        }
    }
    fprintf(stderr, "could not draw inputs without near ties\n");
    exit(99);
}

/* dsp_moe on the CPU and on the GPU (dx: x on the GPU; dout: a
 * preallocated GPU output or NULL), compared. */
static void cross_moe(const char *what, const moe_model *mo, const dsp_tensor *x,
                      const dsp_tensor *dx, const dsp_moe_opts *o, dsp_tensor *dout)
{
    dsp_moe_expert ex[2][MAX_EXPERTS];
    dsp_tensor *c = NULL, *g = dout;
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < mo->E + mo->S; e++)
            ex[d][e] = expert_of(mo, e, d);
    if (dsp_moe(x, mo->router[0], ex[0], mo->E, ex[0] + mo->E, mo->S, o, &c) < 0)
        FAIL("%s on the CPU: %s", what, dsp_ops_error());
    if (dsp_moe(dx, mo->router[1], ex[1], mo->E, ex[1] + mo->E, mo->S, o, &g) < 0)
        FAIL("%s on cuda:%d: %s", what, gpu.index, dsp_ops_error());
    if (dout) {
        checks++;
        if (g != dout)
            FAIL("%s: a preallocated device out was replaced", what);
        dsp_tensor_ref(dout);   /* compare consumes one reference */
    }
    compare(what, c, g, TOL_MOE);
}

/* Every routing option on f32 experts: softmax/sigmoid, top 1/2/4,
 * renormalisation, routed_scale, with and without shared experts; T = 1
 * (top-1 leaves 7 of 8 experts without tokens), 7, 257 (1028 assignments
 * at top-4: several chunks of the counting sort). */
static void test_moe_routing(void)
{
    enum { E = 8, S = 2 };
    int64_t inter[E + S];
    mat_kind kinds[E + S][3];
    for (int e = 0; e < E + S; e++) {
        inter[e] = e < E ? 32 : 48;
        kinds[e][0] = kinds[e][1] = kinds[e][2] = M_F32;
    }
    moe_model mo, mo_noshared;
    model_make(&mo, E, S, 64, inter, kinds, DSP_DTYPE_F32);
    mo_noshared = mo;
    mo_noshared.S = 0;          /* the same routed experts, no shared ones */
    static const int64_t Ts[] = {1, 7, 257};
    static const int ks[] = {1, 2, 4};
    char what[200];
    int n = 0;
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        dsp_tensor *x = untied_x(&mo, Ts[ti]), *dx = to(x, gpu);
        for (int sc = 0; sc < 2; sc++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (int rn = 0; rn < 2; rn++)
                    for (int rs = 0; rs < 2; rs++)
                        for (int sh = 0; sh < 2; sh++) {
                            dsp_moe_opts o = {0};
                            o.top_k = ks[ki];
                            o.score = sc ? DSP_MOE_SIGMOID : DSP_MOE_SOFTMAX;
                            o.renormalize = rn;
                            o.routed_scale = rs ? 2.5f : 0.0f;
                            snprintf(what, sizeof what, "moe T=%lld %s top-%d%s%s%s",
                                     (long long)Ts[ti], sc ? "sigmoid" : "softmax", ks[ki],
                                     rn ? " renorm" : "", rs ? " scale 2.5" : "",
                                     sh ? " + 2 shared" : "");
                            cross_moe(what, sh ? &mo : &mo_noshared, x, dx, &o, NULL);
                            n++;
                        }
        /* into a preallocated device out */
        dsp_moe_opts o = {0};
        o.top_k = 2;
        o.renormalize = 1;
        dsp_tensor *dout = to(x, gpu);
        snprintf(what, sizeof what, "moe T=%lld into a device out", (long long)Ts[ti]);
        cross_moe(what, &mo, x, dx, &o, dout);
        dsp_tensor_unref(&dout);
        dsp_tensor_unref(&x);
        dsp_tensor_unref(&dx);
    }
    printf("moe routing: %d option sets compared\n", n);
    model_free(&mo);
}

/* Quantized experts (int8/int4, groups 32/128, mixed with f32 within one
 * expert), f16/bf16 and strided expert weights, an f16 router, and a
 * larger layer. Few tokens per expert take the GEMV kernel, more the
 * dequantized panels. */
static void test_moe_weights(void)
{
    char what[160];
    {
        enum { E = 6, S = 1 };
        int64_t inter[E + S];
        mat_kind kinds[E + S][3] = {
            {M_Q8_32, M_Q8_32, M_Q8_32},   {M_Q4_128, M_Q4_128, M_Q4_128},
            {M_Q4_32, M_F32, M_Q8_128},    {M_Q8_128, M_Q4_32, M_F32},
            {M_F32, M_F32, M_Q4_128},      {M_Q4_32, M_Q4_32, M_Q4_32},
            {M_Q8_128, M_Q8_128, M_Q4_128},
        };
        for (int e = 0; e < E + S; e++)
            inter[e] = e % 2 ? 128 : 256;
        moe_model mo;
        model_make(&mo, E, S, 128, inter, kinds, DSP_DTYPE_F32);
        static const int64_t Ts[] = {1, 5, 40, 257};
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            dsp_tensor *x = untied_x(&mo, Ts[ti]), *dx = to(x, gpu);
            dsp_moe_opts o = {0};
            o.top_k = 2;
            o.renormalize = 1;
            snprintf(what, sizeof what, "moe quantized experts T=%lld softmax top-2",
                     (long long)Ts[ti]);
            cross_moe(what, &mo, x, dx, &o, NULL);
            o.top_k = 3;
            o.score = DSP_MOE_SIGMOID;
            o.routed_scale = 1.5f;
            snprintf(what, sizeof what, "moe quantized experts T=%lld sigmoid top-3",
                     (long long)Ts[ti]);
            cross_moe(what, &mo, x, dx, &o, NULL);
            dsp_tensor_unref(&x);
            dsp_tensor_unref(&dx);
        }

        /* a quantized expert left on the CPU while x is on the GPU */
        dsp_tensor *x = untied_x(&mo, 3), *dx = to(x, gpu), *g = NULL;
        dsp_moe_expert ex[E + S];
        for (int e = 0; e < E + S; e++)
            ex[e] = expert_of(&mo, e, 1);
        ex[1].qup = mo.m[1][1].q[0];
        dsp_moe_opts o = {0};
        o.top_k = 2;
        EXPECT_RC(dsp_moe(dx, mo.router[1], ex, E, ex + E, S, &o, &g), DSP_EDEVICE);
        expect_msg("moe with a CPU qweight", "experts[1].qup is on cpu:0");
        checks++;
        if (g)
            FAIL("a failed moe left a result in *out");
        dsp_tensor_unref(&x);
        dsp_tensor_unref(&dx);
        model_free(&mo);
    }
    {
        enum { E = 4, S = 1 };
        int64_t inter[E + S] = {32, 48, 32, 16, 40};
        mat_kind kinds[E + S][3] = {
            {M_F16, M_BF16, M_STRIDED}, {M_STRIDED, M_F32, M_F16}, {M_BF16, M_BF16, M_BF16},
            {M_F32, M_STRIDED, M_F32},  {M_F16, M_STRIDED, M_BF16},
        };
        moe_model mo;
        model_make(&mo, E, S, 64, inter, kinds, DSP_DTYPE_F16);
        static const int64_t Ts[] = {1, 33};
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            dsp_tensor *x = untied_x(&mo, Ts[ti]), *dx = to(x, gpu);
            dsp_moe_opts o = {0};
            o.top_k = 2;
            snprintf(what, sizeof what, "moe f16/bf16/strided experts, f16 router T=%lld",
                     (long long)Ts[ti]);
            cross_moe(what, &mo, x, dx, &o, NULL);
            dsp_tensor_unref(&x);
            dsp_tensor_unref(&dx);
        }
        model_free(&mo);
    }
    {
        enum { E = 16, S = 1 };
        int64_t inter[E + S];
        mat_kind kinds[E + S][3];
        for (int e = 0; e < E + S; e++) {
            inter[e] = e < E ? 128 : 256;
            kinds[e][0] = kinds[e][1] = kinds[e][2] = M_F32;
        }
        moe_model mo;
        model_make(&mo, E, S, 256, inter, kinds, DSP_DTYPE_F32);
        dsp_tensor *x = untied_x(&mo, 300), *dx = to(x, gpu);
        dsp_moe_opts o = {0};
        o.top_k = 4;
        o.score = DSP_MOE_SIGMOID;
        o.renormalize = 1;
        o.routed_scale = 2.5f;
        cross_moe("moe E=16 dim=256 T=300 sigmoid top-4 + shared", &mo, x, dx, &o, NULL);
        dsp_tensor_unref(&x);
        dsp_tensor_unref(&dx);
        model_free(&mo);
    }
}

int main(void)
{
    /* the copies that need no GPU run everywhere, before the skip */
    test_qweight_host();
    int host_failures = failures;
    int rc = cudatest_open();
    if (rc)
        return host_failures ? 1 : rc;
    test_linear_q();
    test_linear_q_errors();
    test_moe_routing();
    test_moe_weights();
    return cudatest_close();
}
