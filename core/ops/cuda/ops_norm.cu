/* ops_norm.cu - row-wise kernels (softmax, layernorm, rmsnorm): one thread block per row, warp-shuffle reductions. */
#include <math.h>

#include "cuda_int.h"

#define ROW_THREADS 256

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread of the block gets the block's sum (or max); scratch holds
 * one value per warp. Called by all threads, uniformly. */
static __device__ float block_sum(float v, float *scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();            /* scratch may still be read by a previous reduction */
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ float block_max(float v, float *scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

/* Masks: none, u8/bool (0 = masked out) or f32 (added to the logit). */
enum { MASK_NONE, MASK_U8, MASK_F32 };

static __device__ __forceinline__ float masked(float x, int kind, const void *m,
                                               const dspi_cuda_view &v, int64_t flat)
{
    if (kind == MASK_NONE)
        return x;
    int64_t off = dspi_cuda_view_offset(v, flat);
    if (kind == MASK_F32)
        return x + ((const float *)m)[off];
    return ((const uint8_t *)m)[off] ? x : -INFINITY;
}

__global__ static void softmax_kernel(const float *x, int64_t n, int kind, const void *m,
                                      dspi_cuda_view mv, float *out)
{
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float *o = out + r * n;

    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        mx = fmaxf(mx, masked(xr[j], kind, m, mv, r * n + j));
    mx = block_max(mx, scratch);
    if (mx == -INFINITY) {
        /* every entry masked out: zeros, as on the CPU */
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
            o[j] = 0.0f;
        return;
    }
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        s += expf(masked(xr[j], kind, m, mv, r * n + j) - mx);
    float inv = 1.0f / block_sum(s, scratch);
    /* out may be x: each element is read, then written, by the same thread */
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        o[j] = expf(masked(xr[j], kind, m, mv, r * n + j) - mx) * inv;
}

static unsigned row_threads(int64_t n)
{
    /* a warp multiple, no more threads than elements (small rows) */
    int64_t t = (n + 31) / 32 * 32;
    return (unsigned)(t < 32 ? 32 : t > ROW_THREADS ? ROW_THREADS : t);
}

static bool rows_fit(int64_t rows)
{
    return rows <= 2147483647;
}

int dspi_cuda_softmax(const float *x, const dspi_bview *mask, int64_t rows, int64_t n,
                      float *out)
{
    int rc, kind = MASK_NONE;
    dspi_cuda_view mv = {};
    if (!rows_fit(rows))
        return DSP_EUNSUPPORTED;
    if ((rc = dspi_cuda_enter(out)) < 0)
        return rc;
    if (rows == 0 || n == 0)
        return 0;
    if (mask) {
        kind = mask->dtype == DSP_DTYPE_F32 ? MASK_F32 : MASK_U8;
        mv = dspi_cuda_view_of(mask);
    }
    softmax_kernel<<<(unsigned)rows, row_threads(n)>>>(x, n, kind, mask ? mask->data : NULL,
                                                        mv, out);
    return dspi_cuda_launched();
}

/* Two passes over the row (mean, then squared deviations) as the CPU does:
 * no catastrophic cancellation for rows with a large mean. */
__global__ static void layernorm_kernel(const float *x, int64_t n, const void *w, const void *b,
                                        dsp_dtype wdt, dsp_dtype bdt, float eps, float *out)
{
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float *o = out + r * n;

    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        s += xr[j];
    float mean = block_sum(s, scratch) / (float)n;
    float v = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float d = xr[j] - mean;
        v += d * d;
    }
    float rstd = rsqrtf(block_sum(v, scratch) / (float)n + eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float y = (xr[j] - mean) * rstd * dspi_cuda_load(w, wdt, j);
        o[j] = b ? y + dspi_cuda_load(b, bdt, j) : y;
    }
}

__global__ static void rmsnorm_kernel(const float *x, int64_t n, const void *w, dsp_dtype wdt,
                                      float eps, float *out)
{
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * n;
    float *o = out + r * n;

    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        s += xr[j] * xr[j];
    float rms = rsqrtf(block_sum(s, scratch) / (float)n + eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        o[j] = xr[j] * rms * dspi_cuda_load(w, wdt, j);
}

int dspi_cuda_layernorm(const float *x, int64_t rows, int64_t n, const void *w, const void *b,
                        dsp_dtype wdt, dsp_dtype bdt, float eps, float *out)
{
    int rc;
    if (!rows_fit(rows))
        return DSP_EUNSUPPORTED;
    if ((rc = dspi_cuda_enter(out)) < 0)
        return rc;
    if (rows == 0 || n == 0)
        return 0;
    layernorm_kernel<<<(unsigned)rows, row_threads(n)>>>(x, n, w, b, wdt, bdt, eps, out);
    return dspi_cuda_launched();
}

int dspi_cuda_rmsnorm(const float *x, int64_t rows, int64_t n, const void *w, dsp_dtype wdt,
                      float eps, float *out)
{
    int rc;
    if (!rows_fit(rows))
        return DSP_EUNSUPPORTED;
    if ((rc = dspi_cuda_enter(out)) < 0)
        return rc;
    if (rows == 0 || n == 0)
        return 0;
    rmsnorm_kernel<<<(unsigned)rows, row_threads(n)>>>(x, n, w, wdt, eps, out);
    return dspi_cuda_launched();
}
