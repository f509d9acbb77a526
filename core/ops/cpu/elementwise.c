/* elementwise.c - CPU elementwise kernels: gelu (erf and tanh), silu, swiglu, broadcasting add and mul. */
#include <math.h>
#include <string.h>
#include "ops/ops_int.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/simd.h"

/* Flat kernels hand threads slices of at least this many elements (a
 * multiple of 8, so only the last slice has a scalar tail). */
#define FLAT_GRAIN 4096
/* Work units per element (see DSPI_PARALLEL_MIN_WORK): exp/erf kernels. */
#define EXP_COST 4

typedef struct flat_job {
    const float *x, *y;
    float *out;
    dsp_gelu_kind kind;
    int avx2;
} flat_job;

static void gelu_range(void *arg, int64_t i0, int64_t i1)
{
    const flat_job *jb = arg;
    const float *x = jb->x;
    float *out = jb->out;
    if (jb->avx2) {
        dspi_avx2_gelu(x + i0, i1 - i0, jb->kind, out + i0);
    } else if (jb->kind == DSP_GELU_EXACT) {
        const float inv_sqrt2 = 0.70710678118654752f;
        for (int64_t i = i0; i < i1; i++)
            out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
    } else {
        const float k = 0.79788456080286536f; /* sqrt(2/pi) */
        for (int64_t i = i0; i < i1; i++) {
            float v = x[i];
            out[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    }
}

int dspi_cpu_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *out)
{
    flat_job jb = {x, NULL, out, kind, dspi_cpu_use_avx2()};
    dspi_parallel_for(n, FLAT_GRAIN, n * EXP_COST, gelu_range, &jb);
    return 0;
}

static inline float silu1(float v)
{
    return v / (1.0f + expf(-v));
}

static void silu_range(void *arg, int64_t i0, int64_t i1)
{
    const flat_job *jb = arg;
    if (jb->avx2) {
        dspi_avx2_silu(jb->x + i0, i1 - i0, jb->out + i0);
        return;
    }
    for (int64_t i = i0; i < i1; i++)
        jb->out[i] = silu1(jb->x[i]);
}

int dspi_cpu_silu(const float *x, int64_t n, float *out)
{
    flat_job jb = {x, NULL, out, DSP_GELU_EXACT, dspi_cpu_use_avx2()};
    dspi_parallel_for(n, FLAT_GRAIN, n * EXP_COST, silu_range, &jb);
    return 0;
}

/* v > 0 ? v : 0 would turn NaN into 0; torch.relu keeps NaN (and -0) */
/* Through a local block of 8: out may be x (in place), and with the
 * aliasing possible GCC left the plain loop scalar (4% of r3d_18's CPU
 * time, against 1.4% for the batch norm before it). */
static void relu_range(void *arg, int64_t i0, int64_t i1)
{
    const flat_job *jb = arg;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        float v[8];
        memcpy(v, jb->x + i, sizeof v);
        for (int j = 0; j < 8; j++)
            v[j] = v[j] < 0.0f ? 0.0f : v[j];
        memcpy(jb->out + i, v, sizeof v);
    }
    for (; i < i1; i++)
        jb->out[i] = jb->x[i] < 0.0f ? 0.0f : jb->x[i];
}

int dspi_cpu_relu(const float *x, int64_t n, float *out)
{
    flat_job jb = {x, NULL, out, DSP_GELU_EXACT, 0};
    dspi_parallel_for(n, FLAT_GRAIN, n, relu_range, &jb);
    return 0;
}

static void swiglu_range(void *arg, int64_t i0, int64_t i1)
{
    const flat_job *jb = arg;
    if (jb->avx2) {
        dspi_avx2_swiglu(jb->x + i0, jb->y + i0, i1 - i0, jb->out + i0);
        return;
    }
    for (int64_t i = i0; i < i1; i++)
        jb->out[i] = silu1(jb->x[i]) * jb->y[i];
}

int dspi_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out)
{
    flat_job jb = {gate, up, out, DSP_GELU_EXACT, dspi_cpu_use_avx2()};
    dspi_parallel_for(n, FLAT_GRAIN, n * EXP_COST, swiglu_range, &jb);
    return 0;
}

typedef struct binary_job {
    const float *a;
    const dspi_bview *b;
    float *out;
    int64_t inner;
    int is_mul, avx2;
} binary_job;

/* out = a op b over rows [r0, r1) of the view's shape: a and out
 * contiguous, b walked with its (possibly zero) strides; rows of the last
 * dim are the inner loop. out may be a: each element is read before it is
 * written. */
static void binary_rows(void *arg, int64_t r0, int64_t r1)
{
    const binary_job *jb = arg;
    const dspi_bview *b = jb->b;
    int nd = b->ndim;
    int64_t inner = jb->inner;
    int64_t bs = nd > 0 ? b->stride[nd - 1] : 0;
    const float *bd = b->data;
    int64_t idx[DSP_MAX_DIMS] = {0};
    int64_t boff = 0;

    /* the odometer's start: r0 unravelled over the leading dims */
    int64_t rem = r0;
    for (int d = nd - 2; d >= 0; d--) {
        idx[d] = rem % b->shape[d];
        rem /= b->shape[d];
        boff += idx[d] * b->stride[d];
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *ar = jb->a + r * inner;
        const float *br = bd + boff;
        float *o = jb->out + r * inner;
        if (jb->avx2) {
            if (jb->is_mul)
                dspi_avx2_mul_row(ar, br, bs, inner, o);
            else
                dspi_avx2_add_row(ar, br, bs, inner, o);
        } else if (jb->is_mul) {
            for (int64_t j = 0; j < inner; j++)
                o[j] = ar[j] * br[j * bs];
        } else {
            for (int64_t j = 0; j < inner; j++)
                o[j] = ar[j] + br[j * bs];
        }
        /* odometer over the leading dims */
        for (int d = nd - 2; d >= 0; d--) {
            boff += b->stride[d];
            if (++idx[d] < b->shape[d])
                break;
            boff -= b->stride[d] * b->shape[d];
            idx[d] = 0;
        }
    }
}

static int binary(const float *a, const dspi_bview *b, float *out, int is_mul)
{
    int nd = b->ndim;
    int64_t inner = nd > 0 ? b->shape[nd - 1] : 1;
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++)
        rows *= b->shape[d];
    if (inner == 0 || rows == 0)
        return 0;
    binary_job jb = {a, b, out, inner, is_mul, dspi_cpu_use_avx2()};
    int64_t grain = (FLAT_GRAIN + inner - 1) / inner;
    dspi_parallel_for(rows, grain, rows * inner, binary_rows, &jb);
    return 0;
}

int dspi_cpu_add(const float *a, const dspi_bview *b, float *out)
{
    return binary(a, b, out, 0);
}

int dspi_cpu_mul(const float *a, const dspi_bview *b, float *out)
{
    return binary(a, b, out, 1);
}
