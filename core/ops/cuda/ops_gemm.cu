/* ops_gemm.cu - linear and matmul on the GPU through cuBLAS, row-major as the rest of dspipe. */
#include <climits>

#include <cstdlib>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "cuda_int.h"

/* One cuBLAS handle per thread and device, as NVIDIA recommends (a handle
 * is not meant to switch streams under concurrent use). The handles are
 * created on first use and destroyed when their thread exits. */
#define MAX_DEVICES 16

namespace {
struct thread_handles {
    cublasHandle_t h[MAX_DEVICES] = {};
    ~thread_handles()
    {
        for (int i = 0; i < MAX_DEVICES; i++)
            if (h[i]) {
                cudaSetDevice(i);
                cublasDestroy(h[i]);
            }
    }
};
thread_local thread_handles tls_handles;
} // namespace

/* f32 GEMMs: exact f32 (pedantic) by default; DSPIPE_CUDA_TF32=1 allows
 * TF32 tensor cores (10-bit mantissa inputs, about 8x the f32 rate on
 * A100/H100), the trade PyTorch makes with allow_tf32. */
static cublasMath_t f32_math(void)
{
    const char *e = getenv("DSPIPE_CUDA_TF32");
    return e && !strcmp(e, "1") ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH;
}

cublasHandle_t dspi_cuda_blas(void)
{
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= MAX_DEVICES)
        return NULL;
    cublasHandle_t &h = tls_handles.h[dev];
    if (!h) {
        if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
            h = NULL;
            return NULL;
        }
        /* plain f32 FMA, no TF32 tensor cores: results within f32 rounding
         * of the CPU path (NVIDIA_TF32_OVERRIDE cannot turn TF32 on here) */
        cublasSetMathMode(h, f32_math());
        cublasSetStream(h, DSPI_CUDA_STREAM);
    }
    return h;
}

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

__global__ static void add_bias_kernel(float *y, int64_t total, int64_t N, const void *b,
                                       dsp_dtype bdt)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] += dspi_cuda_load(b, bdt, i % N);
}

int dspi_cuda_add_bias(float *y, int64_t M, int64_t N, const void *b, dsp_dtype bdt)
{
    int64_t total = M * N;
    if (total == 0)
        return 0;
    add_bias_kernel<<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(y, total, N, b, bdt);
    return dspi_cuda_launched();
}

/* x (f32) rounded to the weights' 16-bit type, for cublasGemmEx. */
__global__ static void to_half_kernel(const float *x, int64_t n, int bf16, uint16_t *out)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x[i]))
                      : __half_as_ushort(__float2half_rn(x[i]));
}

/* y[M,N] = x · wᵀ with w f16 or bf16: the activations (M x K, never the
 * weights) are rounded to w's type in pooled scratch and the product runs
 * in cublasGemmEx with f32 accumulation and an f32 result, on tensor cores
 * (the handle leaves pedantic mode for this call only). */
static int linear_half(cublasHandle_t h, const float *x, int64_t M, int64_t K, const void *w,
                       dsp_dtype wdt, int64_t N, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    int bf16 = wdt == DSP_DTYPE_BF16;
    cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    uint16_t *xh = (uint16_t *)dspi_cuda_scratch((size_t)(M * K) * sizeof(uint16_t));
    if (!xh)
        return DSP_ENOMEM;
    to_half_kernel<<<dspi_cuda_blocks(M * K), DSPI_CUDA_THREADS>>>(x, M * K, bf16, xh);
    int rc = dspi_cuda_launched();
    if (rc == 0) {
        cublasMath_t mode;
        cublasGetMathMode(h, &mode);
        cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
        if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w, t,
                         (int)K, xh, t, (int)K, &zero, y, CUDA_R_32F, (int)N,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            rc = DSP_EDEVICE;
        cublasSetMathMode(h, mode);
    }
    dspi_cuda_scratch_free(xh);
    return rc;
}

int dspi_cuda_linear(const float *x, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                     int64_t N, const void *b, dsp_dtype bdt, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    int rc;
    if (wdt != DSP_DTYPE_F32 && wdt != DSP_DTYPE_F16 && wdt != DSP_DTYPE_BF16)
        return DSP_EUNSUPPORTED;
    if (!fits_int(M) || !fits_int(N) || !fits_int(K))
        return DSP_EUNSUPPORTED;
    if ((rc = dspi_cuda_enter(y)) < 0)
        return rc;
    if (M == 0 || N == 0)
        return 0;
    if (K == 0) {
        if (cudaMemset(y, 0, (size_t)(M * N) * sizeof(float)) != cudaSuccess)
            return DSP_EDEVICE;
    } else {
        cublasHandle_t h = dspi_cuda_blas();
        if (!h)
            return DSP_EDEVICE;
        if (wdt != DSP_DTYPE_F32) {
            if ((rc = linear_half(h, x, M, K, w, wdt, N, y)) < 0)
                return rc;
            return b ? dspi_cuda_add_bias(y, M, N, b, bdt) : 0;
        }
        /* column-major view: yᵀ [N, M] = w [N, K] · xᵀ [K, M]; w row-major
         * [N, K] is the column-major K x N matrix wᵀ, hence OP_T */
        if (cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one,
                        (const float *)w, (int)K, x, (int)K, &zero, y, (int)N) !=
            CUBLAS_STATUS_SUCCESS)
            return DSP_EDEVICE;
    }
    return b ? dspi_cuda_add_bias(y, M, N, b, bdt) : 0;
}

/* off[i] == off[0] + i * step for every batch i: one strided-batched call. */
static bool arithmetic(const int64_t *off, int64_t n, int64_t *step)
{
    *step = n > 1 ? off[1] - off[0] : 0;
    for (int64_t i = 2; i < n; i++)
        if (off[i] - off[i - 1] != *step)
            return false;
    return true;
}

int dspi_cuda_matmul(const float *a, const float *b, int64_t nbatch, const int64_t *a_off,
                     const int64_t *b_off, int64_t m, int64_t k, int64_t n, int transpose_b,
                     float *c)
{
    const float one = 1.0f, zero = 0.0f;
    int64_t sa, sb;
    int rc;
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(nbatch))
        return DSP_EUNSUPPORTED;
    if ((rc = dspi_cuda_enter(c)) < 0)
        return rc;
    if (nbatch == 0 || m == 0 || n == 0)
        return 0;
    if (k == 0)
        return cudaMemset(c, 0, (size_t)(nbatch * m * n) * sizeof(float)) == cudaSuccess
                   ? 0 : DSP_EDEVICE;
    cublasHandle_t h = dspi_cuda_blas();
    if (!h)
        return DSP_EDEVICE;
    /* column-major: cᵀ [n, m] = op(b)ᵀ · aᵀ. b row-major [k, n] reads as the
     * column-major n x k matrix bᵀ (OP_N, ld n); b stored [n, k] (transpose_b)
     * reads as k x n, hence OP_T with ld k. */
    cublasOperation_t opb = transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    int ldb = transpose_b ? (int)k : (int)n;
    if (arithmetic(a_off, nbatch, &sa) && arithmetic(b_off, nbatch, &sb)) {
        if (cublasSgemmStridedBatched(h, opb, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one,
                                      b + b_off[0], ldb, sb, a + a_off[0], (int)k, sa, &zero,
                                      c, (int)n, m * n, (int)nbatch) != CUBLAS_STATUS_SUCCESS)
            return DSP_EDEVICE;
        return 0;
    }
    /* irregular broadcast of batch dims: one call per batch */
    for (int64_t i = 0; i < nbatch; i++)
        if (cublasSgemm(h, opb, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b + b_off[i], ldb,
                        a + a_off[i], (int)k, &zero, c + i * m * n, (int)n) !=
            CUBLAS_STATUS_SUCCESS)
            return DSP_EDEVICE;
    return 0;
}
