/* backend.cu - the CUDA backend module: device discovery, memory, copies and the operator table, through the CUDA runtime. */
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda_int.h"

/* Without a driver cudaGetDeviceCount says cudaErrorInsufficientDriver (35),
 * without a GPU cudaErrorNoDevice (100): both mean "no GPU", not a failure. */
static int cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why)
            *why = cudaGetErrorString(e);
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why)
        *why = "the CUDA runtime reports no devices";
    return n;
}

static int cuda_device_name(int index, char *dst, size_t n)
{
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess)
        return DSP_EDEVICE;
    snprintf(dst, n, "%s", prop.name);
    return 0;
}

/* Device memory comes from each device's stream-ordered pool
 * (cudaMallocAsync): freed blocks stay in the pool for the next tensor of
 * the same thread's stream instead of going back to the driver, so the
 * per-call activations of a pipeline cost no cudaMalloc/cudaFree
 * round trips. The release threshold keeps everything pooled until the
 * process exits. */
static int pool_ready[64];

static void setup_pool(int index)
{
    cudaMemPool_t pool;
    if (index < 0 || index >= 64 || __atomic_load_n(&pool_ready[index], __ATOMIC_ACQUIRE))
        return;
    if (cudaDeviceGetDefaultMemPool(&pool, index) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
    __atomic_store_n(&pool_ready[index], 1, __ATOMIC_RELEASE);
}

static int cuda_malloc(int index, size_t size, void **out)
{
    if (cudaSetDevice(index) != cudaSuccess)
        return DSP_EDEVICE;
    setup_pool(index);
    if (cudaMallocAsync(out, size ? size : 1, DSPI_CUDA_STREAM) != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return DSP_ENOMEM;
    }
    return 0;
}

static void cuda_free(int index, void *p)
{
    cudaSetDevice(index);
    cudaFreeAsync(p, DSPI_CUDA_STREAM);
}

void *dspi_cuda_scratch(size_t n)
{
    int dev = 0;
    void *p = NULL;
    if (cudaGetDevice(&dev) != cudaSuccess || cuda_malloc(dev, n, &p) < 0)
        return NULL;
    return p;
}

void dspi_cuda_scratch_free(void *p)
{
    if (p)
        cudaFreeAsync(p, DSPI_CUDA_STREAM);
}

static int cuda_h2d(int index, void *dst, const void *src, size_t n)
{
    cudaSetDevice(index);
    return cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : DSP_EDEVICE;
}

static int cuda_d2h(int index, void *dst, const void *src, size_t n)
{
    cudaSetDevice(index);
    return cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : DSP_EDEVICE;
}

/* Wait for the calling thread's work on the device. */
static int cuda_sync(int index)
{
    cudaSetDevice(index);
    return cudaStreamSynchronize(DSPI_CUDA_STREAM) == cudaSuccess ? 0 : DSP_EDEVICE;
}

int dspi_cuda_enter(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess || a.type != cudaMemoryTypeDevice) {
        cudaGetLastError();
        return DSP_EDEVICE;
    }
    return cudaSetDevice(a.device) == cudaSuccess ? 0 : DSP_EDEVICE;
}

int dspi_cuda_launched(void)
{
    return cudaGetLastError() == cudaSuccess ? 0 : DSP_EDEVICE;
}

/* NULL: not ported yet; call.c refuses the operator on CUDA tensors. */
const dspi_ops_backend dspi_ops_cuda = {
    "cuda",
    dspi_cuda_linear,
    dspi_cuda_matmul,
    dspi_cuda_embedding,
    dspi_cuda_softmax,
    dspi_cuda_layernorm,
    dspi_cuda_rmsnorm,
    dspi_cuda_gelu,
    dspi_cuda_silu,
    dspi_cuda_swiglu,
    dspi_cuda_add,
    dspi_cuda_mul,
    dspi_cuda_rope,
    dspi_cuda_attention,
    dspi_cuda_linear_q,
    dspi_cuda_moe,
    dspi_cuda_conv,
    dspi_cuda_pool,
    dspi_cuda_adaptive_pool,
    dspi_cuda_batchnorm,
    dspi_cuda_upsample,
    dspi_cuda_csr_aggregate,
    dspi_cuda_lstm,
    dspi_cuda_relu,
};

static const dspi_backend cuda_backend = {
    sizeof(dspi_backend), "cuda", cuda_device_count, cuda_device_name, cuda_malloc,
    cuda_free, cuda_h2d, cuda_d2h, cuda_sync, &dspi_ops_cuda,
};

extern "C" __attribute__((visibility("default"))) const dspi_backend *dspi_cuda_backend(void);
extern "C" const dspi_backend *dspi_cuda_backend(void)
{
    return &cuda_backend;
}
