/* cuda_int.h - what the CUDA module's kernel files share: the ops table's kernels, launch helpers, broadcast views on the device (not API). */
#ifndef DSPIPE_CUDA_INT_H
#define DSPIPE_CUDA_INT_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cublas_v2.h>

extern "C" {
#include "internal.h"
#include "ops/ops_int.h"
}

/* The operator table the module exports through dspi_backend.ops. */
extern const dspi_ops_backend dspi_ops_cuda;

/* Kernels see no device index: make the device that owns p current (the
 * output's memory decides where the call runs). 0 or DSP_EDEVICE. */
int dspi_cuda_enter(const void *p);
/* After launches: DSP_EDEVICE when a launch failed (the error is cleared). */
int dspi_cuda_launched(void);

/* Streams: the module is compiled with --default-stream per-thread, so
 * every host thread (every pipeline worker) queues its kernels, copies and
 * cuBLAS calls on its own stream and threads do not serialise each other.
 * Launch kernels with this stream explicitly or with none (the same). */
#define DSPI_CUDA_STREAM cudaStreamPerThread

/* Device scratch on the current device from the stream-ordered memory pool
 * (cheap: no cudaMalloc per call); NULL when out of memory. Free it with
 * dspi_cuda_scratch_free after the last launch that reads it; the free is
 * ordered on the stream, no synchronisation needed. */
void *dspi_cuda_scratch(size_t n);
void dspi_cuda_scratch_free(void *p);

/* Threads per block and a grid for a grid-stride loop over n elements. */
#define DSPI_CUDA_THREADS 256
static inline unsigned dspi_cuda_blocks(int64_t n)
{
    int64_t b = (n + DSPI_CUDA_THREADS - 1) / DSPI_CUDA_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* A dspi_bview passed by value to kernels. */
typedef struct dspi_cuda_view {
    int ndim;
    int64_t shape[DSP_MAX_DIMS];
    int64_t stride[DSP_MAX_DIMS];
} dspi_cuda_view;

static inline dspi_cuda_view dspi_cuda_view_of(const dspi_bview *v)
{
    dspi_cuda_view d;
    d.ndim = v->ndim;
    for (int i = 0; i < DSP_MAX_DIMS; i++) {
        d.shape[i] = i < v->ndim ? v->shape[i] : 1;
        d.stride[i] = i < v->ndim ? v->stride[i] : 0;
    }
    return d;
}

/* Element offset into the viewed operand of the output's flat index i. */
static __device__ __forceinline__ int64_t dspi_cuda_view_offset(const dspi_cuda_view &v, int64_t i)
{
    int64_t off = 0;
    for (int d = v.ndim - 1; d >= 0 && i > 0; d--) {
        int64_t s = v.shape[d];
        off += (i % s) * v.stride[d];
        i /= s;
    }
    return off;
}

/* A float in f32, f16 or bf16 storage. */
static __device__ __forceinline__ float dspi_cuda_load(const void *p, dsp_dtype dt, int64_t i)
{
    if (dt == DSP_DTYPE_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dt == DSP_DTYPE_BF16)
        return __uint_as_float((unsigned)h << 16);
    return __half2float(__ushort_as_half(h));
}

/* The cuBLAS handle of the calling thread for the current device, bound to
 * DSPI_CUDA_STREAM, in pedantic f32 math (no TF32); NULL on failure. */
cublasHandle_t dspi_cuda_blas(void);

int dspi_cuda_linear(const float *x, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                     int64_t N, const void *b, dsp_dtype bdt, float *y);
int dspi_cuda_matmul(const float *a, const float *b, int64_t nbatch, const int64_t *a_off,
                     const int64_t *b_off, int64_t m, int64_t k, int64_t n, int transpose_b,
                     float *c);
int dspi_cuda_softmax(const float *x, const dspi_bview *mask, int64_t rows, int64_t n,
                      float *out);
int dspi_cuda_layernorm(const float *x, int64_t rows, int64_t n, const void *w, const void *b,
                        dsp_dtype wdt, dsp_dtype bdt, float eps, float *out);
int dspi_cuda_rmsnorm(const float *x, int64_t rows, int64_t n, const void *w, dsp_dtype wdt,
                      float eps, float *out);
int dspi_cuda_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *out);
int dspi_cuda_silu(const float *x, int64_t n, float *out);
int dspi_cuda_relu(const float *x, int64_t n, float *out);
int dspi_cuda_swiglu(const float *gate, const float *up, int64_t n, float *out);
int dspi_cuda_add(const float *a, const dspi_bview *b, float *out);
int dspi_cuda_mul(const float *a, const dspi_bview *b, float *out);
int dspi_cuda_rope(const float *x, int64_t batch, int64_t heads, int64_t seq, int64_t hd,
                   const void *pos, dsp_dtype pdt, int pos_batched, float base, int rot_dims,
                   float *out);
/* y[M,N] += b[N] (b in bdt) */
int dspi_cuda_add_bias(float *y, int64_t M, int64_t N, const void *b, dsp_dtype bdt);

/* The embedding, convolution and sequence families (ops_embed.cu,
 * ops_conv.cu, ops_seq.cu), signatures as in the ops table. dspi_cuda_lstm
 * takes lengths as a host array (the dispatcher reads and checks them on
 * the host); every other pointer is device memory. */
int dspi_cuda_embedding(const void *ids, dsp_dtype idt, int64_t nids, const void *table,
                        dsp_dtype tdt, int64_t s0, int64_t s1, int64_t dim, float *out);
int dspi_cuda_conv(const float *x, const void *w, dsp_dtype wdt, const void *b, dsp_dtype bdt,
                   const struct dspi_conv_geom *g, float *y);
int dspi_cuda_pool(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g, float *y);
int dspi_cuda_adaptive_pool(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g,
                            float *y);
int dspi_cuda_batchnorm(const float *x, int64_t n, int64_t c, int64_t inner, const void *mean,
                        dsp_dtype mdt, const void *var, dsp_dtype vdt, const void *w,
                        dsp_dtype wdt, const void *b, dsp_dtype bdt, float eps, float *y);
int dspi_cuda_upsample(const float *x, const struct dspi_conv_geom *g, dsp_upsample_mode mode,
                       int align_corners, float *y);
int dspi_cuda_csr_aggregate(const void *indptr, dsp_dtype ptr_dt, const void *indices,
                            dsp_dtype idx_dt, int64_t n, const float *x, int64_t f,
                            const float *ew, dsp_agg_kind kind, float *out);
int dspi_cuda_lstm(const float *x, int64_t batch, int64_t seq, int64_t in, int64_t h,
                   const struct dspi_lstm_dir *dirs, int ndirs, const int64_t *lengths,
                   float *out);
/* n elements of src (f32/f16/bf16) as f32 in new pooled scratch (*out, to
 * free with dspi_cuda_scratch_free): weights for f32-only cuBLAS calls. */
int dspi_cuda_f32_copy(const void *src, dsp_dtype dt, int64_t n, float **out);

/* The quantized linear and the MoE layer (ops_quant.cu, ops_moe.cu),
 * signatures as in the ops table; w's codes and scales, the wmat data and
 * every activation are device memory (the structs themselves are on the
 * host). dspi_cuda_wmat_linear: y[M, N] = x[M, K] · wᵀ for a weight matrix
 * in any dtype and strides or quantized, on the current device (call after
 * dspi_cuda_enter); the MoE layer's GEMMs. */
int dspi_cuda_linear_q(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                       dsp_dtype bdt, float *y);
int dspi_cuda_moe(const float *x, int64_t T, int64_t dim, const struct dspi_wmat *router,
                  const struct dspi_moe_mlp *experts, int n_experts,
                  const struct dspi_moe_mlp *shared, int n_shared, int top_k,
                  dsp_moe_score score, int renormalize, float routed_scale, float *out);
int dspi_cuda_wmat_linear(const float *x, int64_t M, const struct dspi_wmat *w, float *y);

/* Attention (ops_attn.cu), the ops table's entry: q/k/v/key_mask/out in
 * device memory read through a's strides, a->global on the host. */
struct dspi_attn_args;
int dspi_cuda_attention(const struct dspi_attn_args *a);

#endif /* DSPIPE_CUDA_INT_H */
