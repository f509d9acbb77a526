/* ops_quant.cu - linear on int8/int4 group-quantized weights on the GPU (a GEMV kernel for decode, dequantized panels + cuBLAS above it) and the weight-matrix product the MoE layer shares. */
#include <climits>
#include <cstdint>

#include <cublas_v2.h>

#include "cuda_int.h"

extern "C" {
#include "ops/quant_int.h"
}

/* Inputs up to this many rows take the GEMV kernel: each weight code is
 * read once for all of them, so the kernel streams the codes at memory
 * speed; above it the product is compute-bound and goes to cuBLAS. */
#define QGEMV_MAX_M 8
/* Warps (output rows) per block of the GEMV kernel. */
#define QGEMV_WARPS 8
/* f32 elements of one dequantized (or converted) weight panel: 16 MiB,
 * enough rows for an efficient sgemm, far less than a large matrix. */
#define PANEL_FLOATS ((int64_t)4 << 20)

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

/* ---- GEMV: y[m, n] = x[m, :] · dequant(w)[n, :] + b[n], m < MT ----------
 * One warp per output row n. Each lane takes 16 bytes of the row's codes at
 * a time (16 int8 codes or 32 int4 codes, always inside one group since
 * groups are 32 or 128 codes and the chunks are aligned to 16 bytes),
 * dequantizes them in registers with the group's scale (the same f32
 * product code * scale as the CPU) and multiplies them into MT running
 * sums, one per input row. The sums are reduced across the warp at the end.
 * Rows are K floats with K a multiple of 32, so a row of x starts 128-byte
 * aligned whenever x does: XVEC reads it as float4. */

template <bool XVEC>
static __device__ __forceinline__ float4 load4(const float *p)
{
    if (XVEC)
        return *reinterpret_cast<const float4 *>(p);
    return make_float4(p[0], p[1], p[2], p[3]);
}

/* acc[m] += sum over 4 weights w[0..3] times x[m, k..k+3]. */
template <int MT, bool XVEC>
static __device__ __forceinline__ void fma4(float (&acc)[MT], const float *x, int64_t K,
                                            int64_t k, int M, float w0, float w1, float w2,
                                            float w3)
{
#pragma unroll
    for (int m = 0; m < MT; m++) {
        if (m < M) {
            float4 v = load4<XVEC>(x + m * K + k);
            acc[m] = fmaf(w0, v.x, acc[m]);
            acc[m] = fmaf(w1, v.y, acc[m]);
            acc[m] = fmaf(w2, v.z, acc[m]);
            acc[m] = fmaf(w3, v.w, acc[m]);
        }
    }
}

/* Sign-extended int4 code i (0..7) of a 32-bit word holding 8 nibbles. */
static __device__ __forceinline__ float nib(uint32_t word, int i)
{
    return (float)((int)(word << (28 - 4 * i)) >> 28);
}

/* Sign-extended int8 code i (0..3) of a 32-bit word. */
static __device__ __forceinline__ float byt(uint32_t word, int i)
{
    return (float)((int)(word << (24 - 8 * i)) >> 24);
}

template <int MT, bool INT4, bool XVEC>
__global__ static void __launch_bounds__(QGEMV_WARPS * 32)
qgemv_kernel(const float *x, int M, int64_t K, int64_t N, const uint8_t *codes,
             const float *scales, int gs, const void *b, dsp_dtype bdt, float *y)
{
    int lane = threadIdx.x & 31;
    int64_t n = (int64_t)blockIdx.x * QGEMV_WARPS + (threadIdx.x >> 5);
    if (n >= N)
        return;                 /* a whole warp leaves: no block-wide sync follows */
    const int64_t row_bytes = INT4 ? K / 2 : K, chunks = row_bytes / 16, ng = K / gs;
    const uint4 *wrow = reinterpret_cast<const uint4 *>(codes + n * row_bytes);
    const float *srow = scales + n * ng;
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m] = 0.0f;
    for (int64_t c = lane; c < chunks; c += 32) {
        uint4 q = __ldg(wrow + c);
        uint32_t words[4] = {q.x, q.y, q.z, q.w};
        if (INT4) {
            /* 32 codes: element 2j in the low nibble of byte j, so word i
             * holds elements 8i..8i+7 in nibble order */
            int64_t k0 = c * 32;
            float s = __ldg(srow + k0 / gs);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint32_t wd = words[i];
                fma4<MT, XVEC>(acc, x, K, k0 + 8 * i, M, nib(wd, 0) * s, nib(wd, 1) * s,
                               nib(wd, 2) * s, nib(wd, 3) * s);
                fma4<MT, XVEC>(acc, x, K, k0 + 8 * i + 4, M, nib(wd, 4) * s, nib(wd, 5) * s,
                               nib(wd, 6) * s, nib(wd, 7) * s);
            }
        } else {
            int64_t k0 = c * 16;
            float s = __ldg(srow + k0 / gs);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint32_t wd = words[i];
                fma4<MT, XVEC>(acc, x, K, k0 + 4 * i, M, byt(wd, 0) * s, byt(wd, 1) * s,
                               byt(wd, 2) * s, byt(wd, 3) * s);
            }
        }
    }
    float bias = b ? dspi_cuda_load(b, bdt, n) : 0.0f;
#pragma unroll
    for (int m = 0; m < MT; m++) {
        float v = acc[m];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && m < M)
            y[m * N + n] = v + bias;
    }
}

template <bool INT4, bool XVEC>
static void launch_qgemv(const float *x, int M, const dsp_qweight *w, const void *b,
                         dsp_dtype bdt, float *y, unsigned blocks)
{
    /* MT is M rounded up to 1, 2, 4 or 8: registers for the sums stay few
     * for decode, and only four instantiations per kind exist */
#define QGEMV(MT)                                                                          \
    qgemv_kernel<MT, INT4, XVEC><<<blocks, QGEMV_WARPS * 32, 0, DSPI_CUDA_STREAM>>>(       \
        x, M, w->in, w->out, w->codes, w->scales, w->group_size, b, bdt, y)
    if (M <= 1)
        QGEMV(1);
    else if (M <= 2)
        QGEMV(2);
    else if (M <= 4)
        QGEMV(4);
    else
        QGEMV(8);
#undef QGEMV
}

static int qgemv(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                 dsp_dtype bdt, float *y)
{
    int64_t blocks = (w->out + QGEMV_WARPS - 1) / QGEMV_WARPS;
    if (blocks > INT_MAX)
        return DSP_EUNSUPPORTED;
    bool xvec = ((uintptr_t)x % 16) == 0;
    bool int4 = w->kind == DSP_QUANT_INT4;
    if (int4 && xvec)
        launch_qgemv<true, true>(x, (int)M, w, b, bdt, y, (unsigned)blocks);
    else if (int4)
        launch_qgemv<true, false>(x, (int)M, w, b, bdt, y, (unsigned)blocks);
    else if (xvec)
        launch_qgemv<false, true>(x, (int)M, w, b, bdt, y, (unsigned)blocks);
    else
        launch_qgemv<false, false>(x, (int)M, w, b, bdt, y, (unsigned)blocks);
    return dspi_cuda_launched();
}

/* ---- panels: rows [r0, r0 + np) of a weight as f32, then cuBLAS ---------- */

/* dst[r, k] = dequant(w)[r0 + r, k], one element per step of the loop. */
__global__ static void dequant_panel_kernel(const uint8_t *codes, const float *scales, int int4,
                                            int gs, int64_t K, int64_t r0, int64_t np,
                                            float *dst)
{
    int64_t total = np * K, ng = K / gs, rb = int4 ? K / 2 : K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = r0 + i / K, k = i % K;
        float s = scales[r * ng + k / gs];
        int code;
        if (int4) {
            int byte = codes[r * rb + k / 2];
            int nb = (k & 1) ? byte >> 4 : byte & 0xf;
            code = (nb ^ 8) - 8;
        } else {
            code = (int)(int8_t)codes[r * rb + k];
        }
        dst[i] = (float)code * s;
    }
}

/* dst[r, k] = w[r0 + r, k] for a float matrix in any dtype and strides. */
__global__ static void convert_panel_kernel(const void *data, dsp_dtype dt, int64_t s0,
                                            int64_t s1, int64_t K, int64_t r0, int64_t np,
                                            float *dst)
{
    int64_t total = np * K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = r0 + i / K, k = i % K;
        dst[i] = dspi_cuda_load(data, dt, r * s0 + k * s1);
    }
}

/* Weight rows per panel: PANEL_FLOATS / K, at least one, at most N. */
static int64_t panel_rows(int64_t K, int64_t N)
{
    int64_t p = PANEL_FLOATS / (K > 0 ? K : 1);
    p = p < 1 ? 1 : p;
    return p > N ? N : p;
}

/* y[M, N] = x[M, K] · wᵀ, w [N, K] given panel by panel: fill(r0, np, panel)
 * writes rows [r0, r0 + np) as f32, one sgemm per panel writes y's columns
 * [r0, r0 + np) (ldc N). The panel is pooled scratch, reused in stream
 * order, so the whole matrix never exists in f32. */
template <typename Fill>
static int panel_gemm(const float *x, int64_t M, int64_t K, int64_t N, Fill fill, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = 0;
    if (!fits_int(M) || !fits_int(N) || !fits_int(K))
        return DSP_EUNSUPPORTED;
    cublasHandle_t h = dspi_cuda_blas();
    if (!h)
        return DSP_EDEVICE;
    int64_t P = panel_rows(K, N);
    float *panel = (float *)dspi_cuda_scratch((size_t)(P * K) * sizeof(float));
    if (!panel)
        return DSP_ENOMEM;
    for (int64_t r0 = 0; r0 < N && rc == 0; r0 += P) {
        int64_t np = N - r0 < P ? N - r0 : P;
        fill(r0, np, panel);
        if ((rc = dspi_cuda_launched()) < 0)
            break;
        /* column-major: y[:, r0:r0+np]ᵀ = panel (np x K, row-major = K x np
         * column-major, hence OP_T) · xᵀ */
        if (cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)np, (int)M, (int)K, &one, panel,
                        (int)K, x, (int)K, &zero, y + r0, (int)N) != CUBLAS_STATUS_SUCCESS)
            rc = DSP_EDEVICE;
    }
    dspi_cuda_scratch_free(panel);
    return rc;
}

/* y = x · dequant(w)ᵀ (+ b) on the current device, M > 0. */
static int qlinear(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                   dsp_dtype bdt, float *y)
{
    int rc;
    int64_t N = w->out, K = w->in;
    if (N == 0)
        return 0;
    /* codes and scales come from the pool allocator (256-byte aligned); a
     * row is a multiple of 16 bytes, so every row's codes can be read as
     * uint4 */
    if ((uintptr_t)w->codes % 16 || K % 32 || w->group_size % 32)
        return DSP_EUNSUPPORTED;
    if (M <= QGEMV_MAX_M)
        return qgemv(x, M, w, b, bdt, y);
    const uint8_t *codes = w->codes;
    const float *scales = w->scales;
    int int4 = w->kind == DSP_QUANT_INT4, gs = w->group_size;
    rc = panel_gemm(x, M, K, N, [=](int64_t r0, int64_t np, float *panel) {
        dequant_panel_kernel<<<dspi_cuda_blocks(np * K), DSPI_CUDA_THREADS, 0,
                               DSPI_CUDA_STREAM>>>(codes, scales, int4, gs, K, r0, np, panel);
    }, y);
    if (rc == 0 && b)
        rc = dspi_cuda_add_bias(y, M, N, b, bdt);
    return rc;
}

int dspi_cuda_linear_q(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                       dsp_dtype bdt, float *y)
{
    int rc;
    if (w->device.type != DSP_DEVICE_CUDA)
        return DSP_EDEVICE;
    if ((rc = dspi_cuda_enter(y)) < 0)
        return rc;
    if (M == 0)
        return 0;
    return qlinear(x, M, w, b, bdt, y);
}

int dspi_cuda_wmat_linear(const float *x, int64_t M, const dspi_wmat *w, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    int64_t N = w->rows, K = w->cols;
    if (M == 0 || N == 0)
        return 0;
    if (w->q)
        return w->q->device.type == DSP_DEVICE_CUDA ? qlinear(x, M, w->q, NULL, DSP_DTYPE_F32, y)
                                                    : DSP_EDEVICE;
    if (K == 0)
        return cudaMemsetAsync(y, 0, (size_t)(M * N) * sizeof(float), DSPI_CUDA_STREAM) ==
                       cudaSuccess ? 0 : DSP_EDEVICE;
    if (w->dt == DSP_DTYPE_F32 && w->s1 == 1 && w->s0 >= K && fits_int(w->s0) &&
        fits_int(M) && fits_int(N) && fits_int(K)) {
        /* f32 rows with unit stride: cuBLAS reads w in place, ld = s0 */
        cublasHandle_t h = dspi_cuda_blas();
        if (!h)
            return DSP_EDEVICE;
        return cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one,
                           (const float *)w->data, (int)w->s0, x, (int)K, &zero, y, (int)N) ==
                       CUBLAS_STATUS_SUCCESS ? 0 : DSP_EDEVICE;
    }
    /* f16/bf16 or strided: converted to f32 a panel of rows at a time, as
     * the CPU does, so the product is the same f32 arithmetic */
    const void *data = w->data;
    dsp_dtype dt = w->dt;
    int64_t s0 = w->s0, s1 = w->s1;
    return panel_gemm(x, M, K, N, [=](int64_t r0, int64_t np, float *panel) {
        convert_panel_kernel<<<dspi_cuda_blocks(np * K), DSPI_CUDA_THREADS, 0,
                               DSPI_CUDA_STREAM>>>(data, dt, s0, s1, K, r0, np, panel);
    }, y);
}
