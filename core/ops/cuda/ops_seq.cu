/* ops_seq.cu - graph and sequence operators on the GPU: CSR aggregation (a warp per destination row) and the LSTM layer (cuBLAS projections + a fused cell kernel per step). */
#include <climits>
#include <math.h>

#include "cuda_int.h"

extern "C" {
#include "ops/seq_int.h"
}

#define GRID_STRIDE(i, n)                                                       \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

static __device__ __forceinline__ int64_t idx_at(const void *p, bool i64, int64_t i)
{
    return i64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

/* ---- CSR aggregation ------------------------------------------------------ */

#define CSR_WARPS 8     /* destination rows per block of 256 threads */

/* One warp per destination row, its lanes across the features; every
 * feature sums its edges in CSR order, one rounding per product and per
 * sum as on the CPU (the _rn intrinsics forbid fused multiply-adds), so
 * both backends give the same bits. The CSR structure was validated by
 * the dispatcher. */
__global__ static void csr_kernel(const void *indptr, bool ptr64, const void *indices,
                                  bool idx64, int64_t n, const float *x, int64_t f,
                                  const float *ew, dsp_agg_kind kind, float *out)
{
    const int lane = threadIdx.x & 31;
    for (int64_t row = (int64_t)blockIdx.x * CSR_WARPS + (threadIdx.x >> 5); row < n;
         row += (int64_t)gridDim.x * CSR_WARPS) {
        const int64_t lo = idx_at(indptr, ptr64, row), hi = idx_at(indptr, ptr64, row + 1);
        float *o = out + row * f;
        for (int64_t k = lane; k < f; k += 32) {
            float acc = 0.0f;     /* no neighbours: zeros for every kind */
            if (lo < hi && kind == DSP_AGG_MAX) {
                /* seeded with the first neighbour: all -inf messages stay -inf */
                acc = x[idx_at(indices, idx64, lo) * f + k];
                if (ew)
                    acc = __fmul_rn(ew[lo], acc);
                for (int64_t j = lo + 1; j < hi; j++) {
                    float v = x[idx_at(indices, idx64, j) * f + k];
                    if (ew)
                        v = __fmul_rn(ew[j], v);
                    if (v > acc || isnan(v))
                        acc = v;
                }
            } else if (lo < hi) {
                for (int64_t j = lo; j < hi; j++) {
                    float v = x[idx_at(indices, idx64, j) * f + k];
                    acc = __fadd_rn(acc, ew ? __fmul_rn(ew[j], v) : v);
                }
                if (kind == DSP_AGG_MEAN)
                    acc = acc / (float)(hi - lo);
            }
            o[k] = acc;
        }
    }
}

int dspi_cuda_csr_aggregate(const void *indptr, dsp_dtype ptr_dt, const void *indices,
                            dsp_dtype idx_dt, int64_t n, const float *x, int64_t f,
                            const float *ew, dsp_agg_kind kind, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || n == 0 || f == 0)
        return rc;
    int64_t blocks = (n + CSR_WARPS - 1) / CSR_WARPS;
    if (blocks > (1 << 20))
        blocks = 1 << 20;       /* the kernel strides over the rest */
    csr_kernel<<<(unsigned)blocks, 32 * CSR_WARPS>>>(indptr, ptr_dt == DSP_DTYPE_I64, indices,
                                                     idx_dt == DSP_DTYPE_I64, n, x, f, ew, kind,
                                                     out);
    return dspi_cuda_launched();
}

/* ---- LSTM ------------------------------------------------------------------- */

static __device__ __forceinline__ float sigmoid(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

/* One cell update for every (sequence, unit) of step t, gates i, f, g, o
 * as torch.nn.LSTM. gx [batch * seq, 4h] is the input projection, gr
 * [batch, 4h] the recurrent one; the biases are added here, in the CPU's
 * order. A sequence whose length is <= t keeps its state and output. */
__global__ static void lstm_cell_kernel(const float *gx, const float *gr, int64_t batch,
                                        int64_t seq, int64_t h, int64_t t, const int64_t *lens,
                                        const void *b_ih, dsp_dtype bdt_ih, int64_t bs_ih,
                                        const void *b_hh, dsp_dtype bdt_hh, int64_t bs_hh,
                                        float *hs, float *cs, float *out, int64_t out_stride,
                                        int64_t out_off)
{
    GRID_STRIDE(i, batch * h) {
        const int64_t b = i / h, j = i % h;
        if (t >= (lens ? lens[b] : seq))
            continue;
        const float *gi = gx + (b * seq + t) * 4 * h, *r = gr + b * 4 * h;
        float pre[4];
        for (int q = 0; q < 4; q++) {
            const int64_t k = q * h + j;
            float a = gi[k], rr = r[k];
            if (b_ih)
                a += dspi_cuda_load(b_ih, bdt_ih, k * bs_ih);
            if (b_hh)
                rr += dspi_cuda_load(b_hh, bdt_hh, k * bs_hh);
            pre[q] = a + rr;
        }
        const float ig = sigmoid(pre[0]), fg = sigmoid(pre[1]);
        const float gg = tanhf(pre[2]), og = sigmoid(pre[3]);
        const float c = __fadd_rn(__fmul_rn(fg, cs[i]), __fmul_rn(ig, gg));
        const float hv = __fmul_rn(og, tanhf(c));
        cs[i] = c;
        hs[i] = hv;
        out[(b * seq + t) * out_stride + out_off + j] = hv;
    }
}

/* Row-major y [M, N] = a [M, K] · w [N, K]ᵀ: column-major yᵀ = w · aᵀ. */
static int project(cublasHandle_t hb, const float *a, int64_t M, int64_t K, const float *w,
                   int64_t N, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    if (M == 0)
        return 0;
    return cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w, (int)K,
                       a, (int)K, &zero, y, (int)N) == CUBLAS_STATUS_SUCCESS ? 0 : DSP_EDEVICE;
}

/* A weight matrix as f32: w itself, or a converted copy in *conv. */
static int f32_weights(const void *w, dsp_dtype dt, int64_t n, const float **wf, float **conv)
{
    *conv = NULL;
    *wf = (const float *)w;
    if (dt == DSP_DTYPE_F32)
        return 0;
    int rc = dspi_cuda_f32_copy(w, dt, n, conv);
    *wf = *conv;
    return rc;
}

/* One direction over the whole batch: every step's input projection in
 * one GEMM, then per step the recurrent GEMM and the cell kernel. Steps no
 * sequence reaches (t >= the longest length) change nothing and are
 * skipped. */
static int lstm_direction(cublasHandle_t hb, const float *x, int64_t batch, int64_t seq,
                          int64_t in, int64_t h, const dspi_lstm_dir *d, bool reverse,
                          const int64_t *lens, int64_t maxlen, float *gx, float *gr, float *hs,
                          float *cs, float *out, int64_t out_stride, int64_t out_off)
{
    const int64_t g4 = 4 * h;
    const float *wih, *whh;
    float *cih = NULL, *chh = NULL;
    int rc;
    if ((rc = f32_weights(d->w_ih, d->wdt_ih, g4 * in, &wih, &cih)) < 0 ||
        (rc = f32_weights(d->w_hh, d->wdt_hh, g4 * h, &whh, &chh)) < 0)
        goto done;
    if ((rc = project(hb, x, batch * seq, in, wih, g4, gx)) < 0)
        goto done;
    if (cudaMemsetAsync(hs, 0, (size_t)(batch * h) * sizeof(float), DSPI_CUDA_STREAM) !=
            cudaSuccess ||
        cudaMemsetAsync(cs, 0, (size_t)(batch * h) * sizeof(float), DSPI_CUDA_STREAM) !=
            cudaSuccess) {
        rc = DSP_EDEVICE;
        goto done;
    }
    for (int64_t s = reverse ? seq - maxlen : 0; s < (reverse ? seq : maxlen); s++) {
        const int64_t t = reverse ? seq - 1 - s : s;
        if ((rc = project(hb, hs, batch, h, whh, g4, gr)) < 0)
            goto done;
        lstm_cell_kernel<<<dspi_cuda_blocks(batch * h), DSPI_CUDA_THREADS>>>(
            gx, gr, batch, seq, h, t, lens, d->b_ih, d->bdt_ih, d->bs_ih, d->b_hh, d->bdt_hh,
            d->bs_hh, hs, cs, out, out_stride, out_off);
        if ((rc = dspi_cuda_launched()) < 0)
            goto done;
    }
done:
    dspi_cuda_scratch_free(cih);
    dspi_cuda_scratch_free(chh);
    return rc;
}

/* lengths is a host array (the dispatcher reads and checks it on the
 * host); it is copied to the device for the cell kernel. f16/bf16 weight
 * matrices are converted to f32 per call in pooled scratch (2x their own
 * size). */
int dspi_cuda_lstm(const float *x, int64_t batch, int64_t seq, int64_t in, int64_t h,
                   const struct dspi_lstm_dir *dirs, int ndirs, const int64_t *lengths,
                   float *out)
{
    const int64_t g4 = 4 * h, rows = batch * seq;
    float *gx = NULL, *gr = NULL, *hs = NULL, *cs = NULL;
    int64_t *lens = NULL, maxlen = seq;
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || rows == 0 || h == 0)
        return rc;
    if (!fits_int(g4) || !fits_int(rows) || !fits_int(in))
        return DSP_EUNSUPPORTED;
    cublasHandle_t hb = dspi_cuda_blas();
    if (!hb)
        return DSP_EDEVICE;
    if (!(gx = (float *)dspi_cuda_scratch((size_t)(rows * g4) * sizeof(float))) ||
        !(gr = (float *)dspi_cuda_scratch((size_t)(batch * g4) * sizeof(float))) ||
        !(hs = (float *)dspi_cuda_scratch((size_t)(batch * h) * sizeof(float))) ||
        !(cs = (float *)dspi_cuda_scratch((size_t)(batch * h) * sizeof(float)))) {
        rc = DSP_ENOMEM;
        goto done;
    }
    if (lengths) {
        maxlen = 0;
        for (int64_t b = 0; b < batch; b++)
            maxlen = lengths[b] > maxlen ? lengths[b] : maxlen;
        if (!(lens = (int64_t *)dspi_cuda_scratch((size_t)batch * sizeof(int64_t)))) {
            rc = DSP_ENOMEM;
            goto done;
        }
        /* from pageable memory: returns once the host buffer has been read */
        if (cudaMemcpyAsync(lens, lengths, (size_t)batch * sizeof(int64_t),
                            cudaMemcpyHostToDevice, DSPI_CUDA_STREAM) != cudaSuccess ||
            /* steps past a length stay zero */
            cudaMemsetAsync(out, 0, (size_t)(rows * ndirs * h) * sizeof(float),
                            DSPI_CUDA_STREAM) != cudaSuccess) {
            rc = DSP_EDEVICE;
            goto done;
        }
    }
    for (int d = 0; d < ndirs; d++)
        if ((rc = lstm_direction(hb, x, batch, seq, in, h, &dirs[d], d == 1, lens, maxlen, gx,
                                 gr, hs, cs, out, ndirs * h, d * h)) < 0)
            goto done;
done:
    dspi_cuda_scratch_free(gx);
    dspi_cuda_scratch_free(gr);
    dspi_cuda_scratch_free(hs);
    dspi_cuda_scratch_free(cs);
    dspi_cuda_scratch_free(lens);
    return rc;
}
