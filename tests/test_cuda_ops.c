/* test_cuda_ops.c - cross-backend test: every operator the CUDA module implements, run on the CPU and on cuda:0 with the same seeded inputs, compared within stated tolerances; plus the device error paths. Exits 77 (skip) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudatest.h"

/* Tolerances: |gpu - cpu| <= atol + rtol * |cpu|.
 *   add, mul                 exact arithmetic on both sides: 1e-6 + 1e-6 rel
 *   gelu, silu, swiglu, rope libm (CPU, maybe vectorised) vs CUDA's expf/erff/
 *                            tanhf/sincosf, a few ulp each: 1e-5 + 1e-5 rel
 *   softmax, norms           other summation order: 1e-5 + 1e-4 rel
 *   linear, matmul           cuBLAS in pedantic f32 (no TF32), K <= 96,
 *                            inputs in [-1, 1]: 1e-4 + 1e-4 rel */
#define TOL_EXACT 1e-6, 1e-6
#define TOL_ELEM 1e-5, 1e-5
#define TOL_ROW 1e-5, 1e-4
#define TOL_GEMM 1e-4, 1e-4
/*   linear, f16 / bf16 weights: the GPU rounds x to the weight type
 *                            (rel 2^-11 / 2^-8), K = 64 products of size
 *                            <= 1 summed: 3e-3 + 2e-3 rel / 2e-2 + 1e-2 rel */
#define TOL_F16_GEMM 3e-3, 2e-3
#define TOL_BF16_GEMM 2e-2, 1e-2

static int do_linear(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                     const void *arg, dsp_tensor **out)
{
    (void)arg;
    return dsp_linear(x, w, b, out);
}

static int do_matmul(const dsp_tensor *a, const dsp_tensor *b, const dsp_tensor *z,
                     const void *arg, dsp_tensor **out)
{
    (void)z;
    return dsp_matmul(a, b, *(const int *)arg, out);
}

static int do_softmax(const dsp_tensor *x, const dsp_tensor *m, const dsp_tensor *z,
                      const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_softmax(x, m, out);
}

static int do_layernorm(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                        const void *arg, dsp_tensor **out)
{
    (void)arg;
    return dsp_layernorm(x, w, b, 1e-5f, out);
}

static int do_rmsnorm(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *z,
                      const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_rmsnorm(x, w, 1e-6f, out);
}

static int do_gelu(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                   const void *arg, dsp_tensor **out)
{
    (void)y;
    (void)z;
    return dsp_gelu(x, *(const dsp_gelu_kind *)arg, out);
}

static int do_silu(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                   const void *arg, dsp_tensor **out)
{
    (void)y;
    (void)z;
    (void)arg;
    return dsp_silu(x, out);
}

static int do_relu(const dsp_tensor *x, const dsp_tensor *y, const dsp_tensor *z,
                   const void *arg, dsp_tensor **out)
{
    (void)y;
    (void)z;
    (void)arg;
    return dsp_relu(x, out);
}

static int do_swiglu(const dsp_tensor *g, const dsp_tensor *u, const dsp_tensor *z,
                     const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_swiglu(g, u, out);
}

static int do_add(const dsp_tensor *a, const dsp_tensor *b, const dsp_tensor *z,
                  const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_add(a, b, out);
}

static int do_mul(const dsp_tensor *a, const dsp_tensor *b, const dsp_tensor *z,
                  const void *arg, dsp_tensor **out)
{
    (void)z;
    (void)arg;
    return dsp_mul(a, b, out);
}

typedef struct rope_arg {
    float base;
    int rot_dims;
} rope_arg;

static int do_rope(const dsp_tensor *x, const dsp_tensor *pos, const dsp_tensor *z,
                   const void *arg, dsp_tensor **out)
{
    const rope_arg *r = arg;
    (void)z;
    return dsp_rope(x, pos, r->base, r->rot_dims, out);
}


static void test_gemm(void)
{
    dsp_tensor *x = rand_f32(SHAPE(37, 64)), *w = rand_f32(SHAPE(48, 64));
    dsp_tensor *b = rand_f32(SHAPE(48)), *x3 = rand_f32(SHAPE(2, 5, 64));
    cross("linear x[37,64] w[48,64] b[48]", do_linear, x, w, b, NULL, TOL_GEMM);
    cross("linear without bias", do_linear, x, w, NULL, NULL, TOL_GEMM);
    cross("linear x[2,5,64]", do_linear, x3, w, b, NULL, TOL_GEMM);

    /* bf16 bias, f32 weight */
    dsp_tensor *bb = host(DSP_DTYPE_BF16, SHAPE(48));
    uint16_t *bp = dsp_tensor_data(bb);
    for (int i = 0; i < 48; i++)
        bp[i] = (uint16_t)(0x3f80 + i);     /* 1.0 and a little above */
    cross("linear with a bf16 bias", do_linear, x, w, bb, NULL, TOL_GEMM);

    /* f16 and bf16 weights: x is rounded to the weight type on the GPU
     * (cublasGemmEx, f32 accumulation), read exactly on the CPU */
    dsp_tensor *wf16 = host(DSP_DTYPE_F16, SHAPE(48, 64)), *wbf16 = host(DSP_DTYPE_BF16, SHAPE(48, 64));
    const float *wsrc = dsp_tensor_data(w);
    for (int i = 0; i < 48 * 64; i++) {
        uint32_t u;
        memcpy(&u, &wsrc[i], sizeof u);
        ((uint16_t *)dsp_tensor_data(wbf16))[i] = (uint16_t)(u >> 16);
        int e = (int)((u >> 23) & 0xff) - 127 + 15;   /* |w| < 1: no overflow */
        ((uint16_t *)dsp_tensor_data(wf16))[i] =
            (uint16_t)(((u >> 16) & 0x8000) | (e > 0 ? ((uint32_t)e << 10) | ((u >> 13) & 0x3ff) : 0));
    }
    cross("linear f16 weights", do_linear, x, wf16, b, NULL, TOL_F16_GEMM);
    cross("linear bf16 weights", do_linear, x3, wbf16, NULL, NULL, TOL_BF16_GEMM);
    dsp_tensor_unref(&wf16);
    dsp_tensor_unref(&wbf16);

    int tn = 0, tt = 1;
    dsp_tensor *a = rand_f32(SHAPE(3, 17, 33)), *bm = rand_f32(SHAPE(3, 33, 19));
    dsp_tensor *bt = rand_f32(SHAPE(3, 19, 33)), *b2 = rand_f32(SHAPE(33, 19));
    dsp_tensor *a4 = rand_f32(SHAPE(2, 1, 5, 7)), *b4 = rand_f32(SHAPE(3, 7, 4));
    cross("matmul [3,17,33]x[3,33,19]", do_matmul, a, bm, NULL, &tn, TOL_GEMM);
    cross("matmul transpose_b [3,17,33]x[3,19,33]^T", do_matmul, a, bt, NULL, &tt, TOL_GEMM);
    cross("matmul broadcast b [33,19]", do_matmul, a, b2, NULL, &tn, TOL_GEMM);
    /* batches [2,1] x [3]: irregular offsets, one cuBLAS call per batch */
    cross("matmul broadcast [2,1,5,7]x[3,7,4]", do_matmul, a4, b4, NULL, &tn, TOL_GEMM);
    dsp_tensor *tensors[] = {x, w, b, x3, bb, a, bm, bt, b2, a4, b4};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        dsp_tensor_unref(&tensors[i]);
}

static void test_rows(void)
{
    dsp_tensor *x = rand_f32(SHAPE(6, 5, 300)), *small = rand_f32(SHAPE(7, 3));
    dsp_tensor *w = rand_f32(SHAPE(300)), *b = rand_f32(SHAPE(300));
    dsp_tensor *mu8 = host(DSP_DTYPE_U8, SHAPE(5, 300)), *mf = host(DSP_DTYPE_F32, SHAPE(300));
    uint8_t *m = dsp_tensor_data(mu8);
    float *mfp = dsp_tensor_data(mf);
    for (int r = 0; r < 5; r++)
        for (int j = 0; j < 300; j++)
            m[r * 300 + j] = r == 2 ? 0 : (uint8_t)((j * 7 + r) % 3 != 0);   /* row 2: all masked */
    for (int j = 0; j < 300; j++)
        mfp[j] = j % 5 == 0 ? -INFINITY : frand();

    cross("softmax [6,5,300]", do_softmax, x, NULL, NULL, NULL, TOL_ROW);
    cross("softmax [7,3]", do_softmax, small, NULL, NULL, NULL, TOL_ROW);
    cross("softmax with a u8 mask [5,300]", do_softmax, x, mu8, NULL, NULL, TOL_ROW);
    cross("softmax with an f32 mask [300]", do_softmax, x, mf, NULL, NULL, TOL_ROW);
    cross("layernorm [6,5,300]", do_layernorm, x, w, b, NULL, TOL_ROW);
    cross("layernorm without bias", do_layernorm, x, w, NULL, NULL, TOL_ROW);
    cross("rmsnorm [6,5,300]", do_rmsnorm, x, w, NULL, NULL, TOL_ROW);

    dsp_tensor *wb = host(DSP_DTYPE_BF16, SHAPE(300));
    uint16_t *wp = dsp_tensor_data(wb);
    for (int j = 0; j < 300; j++)
        wp[j] = (uint16_t)(0x3f00 + (j % 200));     /* 0.5 .. ~1.9 */
    cross("rmsnorm with a bf16 weight", do_rmsnorm, x, wb, NULL, NULL, TOL_ROW);
    dsp_tensor *tensors[] = {x, small, w, b, mu8, mf, wb};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        dsp_tensor_unref(&tensors[i]);
}

static void test_elementwise(void)
{
    dsp_tensor *x = rand_f32(SHAPE(4, 33, 65)), *y = rand_f32(SHAPE(4, 33, 65));
    dsp_tensor *bias = rand_f32(SHAPE(65)), *col = rand_f32(SHAPE(33, 1));
    dsp_gelu_kind exact = DSP_GELU_EXACT, tanh_kind = DSP_GELU_TANH;
    float *xp = dsp_tensor_data(x);
    xp[0] = 6.0f;       /* the tails of the activations */
    xp[1] = -6.0f;
    cross("gelu exact", do_gelu, x, NULL, NULL, &exact, TOL_ELEM);
    cross("gelu tanh", do_gelu, x, NULL, NULL, &tanh_kind, TOL_ELEM);
    cross("silu", do_silu, x, NULL, NULL, NULL, TOL_ELEM);
    cross("relu", do_relu, x, NULL, NULL, NULL, TOL_EXACT);
    cross("swiglu", do_swiglu, x, y, NULL, NULL, TOL_ELEM);
    cross("add same shape", do_add, x, y, NULL, NULL, TOL_EXACT);
    cross("add bias [65]", do_add, x, bias, NULL, NULL, TOL_EXACT);
    cross("add column [33,1]", do_add, x, col, NULL, NULL, TOL_EXACT);
    cross("mul same shape", do_mul, x, y, NULL, NULL, TOL_EXACT);
    cross("mul bias [65]", do_mul, x, bias, NULL, NULL, TOL_EXACT);
    cross("mul column [33,1]", do_mul, x, col, NULL, NULL, TOL_EXACT);

    dsp_tensor *q = rand_f32(SHAPE(2, 3, 9, 16));
    dsp_tensor *p32 = host(DSP_DTYPE_I32, SHAPE(9)), *p64 = host(DSP_DTYPE_I64, SHAPE(2, 9));
    for (int s = 0; s < 9; s++) {
        ((int32_t *)dsp_tensor_data(p32))[s] = s * 5;
        ((int64_t *)dsp_tensor_data(p64))[s] = s;
        ((int64_t *)dsp_tensor_data(p64))[9 + s] = 40 + 3 * s;
    }
    rope_arg full = {10000.0f, 0}, part = {500000.0f, 8};
    cross("rope i32 pos [9]", do_rope, q, p32, NULL, &full, TOL_ELEM);
    cross("rope i64 pos [2,9], rot_dims 8", do_rope, q, p64, NULL, &part, TOL_ELEM);
    dsp_tensor *tensors[] = {x, y, bias, col, q, p32, p64};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        dsp_tensor_unref(&tensors[i]);
}

/* A preallocated device output, written in place (out == a). */
static void test_out_on_device(void)
{
    dsp_tensor *a = rand_f32(SHAPE(8, 40)), *b = rand_f32(SHAPE(40)), *c = NULL;
    dsp_tensor *da = to(a, gpu), *db = to(b, gpu), *dout = da;
    EXPECT_RC(dsp_add(a, b, &c), 0);
    EXPECT_RC(dsp_add(da, db, &dout), 0);
    if (dout != da)
        FAIL("add into a preallocated device out replaced the tensor");
    compare("add in place on the device", c, dsp_tensor_ref(da), TOL_EXACT);
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&b);
    dsp_tensor_unref(&da);
    dsp_tensor_unref(&db);
}

static void test_errors(void)
{
    dsp_tensor *x = rand_f32(SHAPE(4, 6)), *w = rand_f32(SHAPE(3, 6)), *out = NULL;
    dsp_tensor *dx = to(x, gpu), *dw = to(w, gpu), *view = NULL;

    /* mixed devices */
    EXPECT_RC(dsp_linear(dx, w, NULL, &out), DSP_EDEVICE);
    expect_msg("mixed devices", "different devices");

    /* (every operator family has a CUDA kernel now: the "not implemented on
     * CUDA yet" path is left without a real operator to check it with) */

    /* a weight dtype linear does not take */
    dsp_tensor *wh = host(DSP_DTYPE_I32, SHAPE(3, 6)), *dwh;
    memset(dsp_tensor_data(wh), 0, 18 * sizeof(int32_t));
    dwh = to(wh, gpu);
    EXPECT_RC(dsp_linear(dx, dwh, NULL, &out), DSP_EINVAL);
    expect_msg("linear i32 weights", "f32, f16 or bf16");

    /* a strided (transposed) view of device memory */
    if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){6, 4}, (int64_t[]){1, 6}, dx->buf,
                               0, &view) < 0)
        FAIL("cannot make a transposed device view");
    else {
        EXPECT_RC(dsp_silu(view, &out), DSP_EUNSUPPORTED);
        expect_msg("strided device input", "strided input");
        dsp_tensor *back = NULL;
        checks++;
        if (dsp_tensor_to_device(ctx, view, cpu, &back) != DSP_EUNSUPPORTED)
            FAIL("copying a strided device tensor to the CPU did not fail");
        dsp_tensor_unref(&back);
    }
    if (out)
        FAIL("a failed call left a result in *out");

    /* a device that does not exist */
    dsp_tensor *none = NULL;
    checks++;
    if (dsp_tensor_to_device(ctx, x, (dsp_device){DSP_DEVICE_CUDA, 999}, &none) != DSP_EDEVICE ||
        none)
        FAIL("copy to cuda:999 did not fail with DSP_EDEVICE");
    else if (!strstr(dsp_context_errmsg(ctx), "cuda:999"))
        FAIL("cuda:999: message '%s' does not name the device", dsp_context_errmsg(ctx));

    /* round trip keeps every bit, strided CPU input included */
    dsp_tensor *xt = NULL, *dxt, *back;
    dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, (int64_t[]){6, 4}, (int64_t[]){1, 6}, x->buf, 0,
                           &xt);
    dxt = to(xt, gpu);
    back = to(dxt, cpu);
    checks++;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++)
            if (((float *)dsp_tensor_data(back))[i * 4 + j] !=
                ((float *)dsp_tensor_data(x))[j * 6 + i])
                FAIL("round trip of a transposed tensor differs at [%d, %d]", i, j);
    dsp_tensor *tensors[] = {x, w, dx, dw, view, wh, dwh, xt, dxt, back};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        dsp_tensor_unref(&tensors[i]);
}

int main(void)
{
    int rc = cudatest_open();
    if (rc)
        return rc;
    test_gemm();
    test_rows();
    test_elementwise();
    test_out_on_device();
    test_errors();
    return cudatest_close();
}
