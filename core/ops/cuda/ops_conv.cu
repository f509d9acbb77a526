/* ops_conv.cu - the convolution family on the GPU: conv2d/3d (im2col + cuBLAS per group), pooling, adaptive pooling, batch norm and upsampling. */
#include <climits>
#include <math.h>

#include "cuda_int.h"

extern "C" {
#include "ops/conv_int.h"
}

#define GRID_STRIDE(i, n)                                                       \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

/* cuBLAS takes int sizes; its batched calls are split below this count. */
#define MAX_BATCH 65535

static bool fits_int(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

static int64_t volume(const int64_t *d)
{
    return d[0] * d[1] * d[2];
}

/* ---- f16/bf16 to f32 ----------------------------------------------------- */

__global__ static void to_f32_kernel(const void *src, dsp_dtype dt, int64_t n, float *dst)
{
    GRID_STRIDE(i, n) dst[i] = dspi_cuda_load(src, dt, i);
}

int dspi_cuda_f32_copy(const void *src, dsp_dtype dt, int64_t n, float **out)
{
    int rc;
    *out = NULL;
    float *p = (float *)dspi_cuda_scratch((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p)
        return DSP_ENOMEM;
    if (n > 0) {
        to_f32_kernel<<<dspi_cuda_blocks(n), DSPI_CUDA_THREADS>>>(src, dt, n, p);
        if ((rc = dspi_cuda_launched()) < 0) {
            dspi_cuda_scratch_free(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

/* ---- convolution ---------------------------------------------------------- */

/* col [nb][c * kvol][np]: for image i of the chunk (x already points at the
 * chunk's first image), row (ci, a, b, cc) of the kernel volume and column
 * q, the input value feeding output position p0 + q, or zero where the
 * dilated tap falls into the padding. Columns are the fastest index, so
 * writes are coalesced. I is the type of the index decomposition: 32-bit
 * whenever the chunk and P fit (always, short of a column buffer past
 * 16 GiB), since 64-bit division costs several times more than the
 * copy itself; coordinates and addresses stay 64-bit. */
template <typename I>
__global__ static void im2col_kernel(const float *x, dspi_conv_geom g, int64_t nb, int64_t p0,
                                     int64_t np, float *col)
{
    const I K2 = (I)g.k[2], K1 = (I)g.k[1], kvol = (I)(g.k[0] * g.k[1] * g.k[2]);
    const I rows = (I)g.c * kvol, OH = (I)g.out[1], OW = (I)g.out[2], n = (I)np;
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], IP = ID * IH * IW;
    GRID_STRIDE(t, nb * rows * np) {
        const I ir = (I)t / n, q = (I)t - ir * n;
        const I i = ir / rows, r = ir - i * rows;
        const I ci = r / kvol, kk = r - ci * kvol;
        const I kab = kk / K2, kc = kk - kab * K2, ka = kab / K1, kb = kab - ka * K1;
        const I p = (I)p0 + q, pdh = p / OW, ow = p - pdh * OW, od = pdh / OH, oh = pdh - od * OH;
        const int64_t id = (int64_t)od * g.stride[0] + (int64_t)ka * g.dil[0] - g.pad[0];
        const int64_t ih = (int64_t)oh * g.stride[1] + (int64_t)kb * g.dil[1] - g.pad[1];
        const int64_t iw = (int64_t)ow * g.stride[2] + (int64_t)kc * g.dil[2] - g.pad[2];
        float v = 0.0f;
        if (id >= 0 && id < ID && ih >= 0 && ih < IH && iw >= 0 && iw < IW)
            v = x[((int64_t)i * g.c + ci) * IP + (id * IH + ih) * IW + iw];
        col[t] = v;
    }
}

static int im2col(const float *x, const dspi_conv_geom *g, int64_t cnt, int64_t rows, int64_t p0,
                  int64_t m, float *col)
{
    const int64_t total = cnt * rows * m, P = volume(g->out);
    if (total <= (int64_t)UINT_MAX && P <= (int64_t)UINT_MAX)
        im2col_kernel<uint32_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            x, *g, cnt, p0, m, col);
    else
        im2col_kernel<int64_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            x, *g, cnt, p0, m, col);
    return dspi_cuda_launched();
}

/* y [n, oc, P] += b[oc]; I as in im2col_kernel (the channel of an element
 * costs two divisions, the update itself one load and one store) */
template <typename I>
__global__ static void channel_bias_kernel(float *y, int64_t total, int64_t P, int64_t oc,
                                           const void *b, dsp_dtype bdt)
{
    GRID_STRIDE(i, total) y[i] += dspi_cuda_load(b, bdt, (int64_t)((I)i / (I)P % (I)oc));
}

/* One strided-batched product, split into batches cuBLAS surely takes. In
 * the column-major view: C (m x n, ldc) = A (m x k, lda) · B (k x n, ldb). */
static int gemm_batched(cublasHandle_t h, int m, int n, int k, const float *A, int lda,
                        int64_t sA, const float *B, int ldb, int64_t sB, float *C, int ldc,
                        int64_t sC, int64_t batch)
{
    const float one = 1.0f, zero = 0.0f;
    for (int64_t b0 = 0; b0 < batch; b0 += MAX_BATCH) {
        int nb = (int)(batch - b0 < MAX_BATCH ? batch - b0 : MAX_BATCH);
        if (cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one,
                                      A + b0 * sA, lda, sA, B + b0 * sB, ldb, sB, &zero,
                                      C + b0 * sC, ldc, sC, nb) != CUBLAS_STATUS_SUCCESS)
            return DSP_EDEVICE;
    }
    return 0;
}

/* y[img][gi*ocg + r][p0 + q] = sum_k w[gi*ocg + r][k] · col[img][gi*K + k][q]
 * for the cnt images of a chunk (col laid out as im2col_kernel writes it,
 * np columns, rows = c * kvol per image). Row-major Y (ocg x np, ld P) =
 * W (ocg x K) · col (K x np) is, column-major, Yᵀ = colᵀ · Wᵀ with both
 * operands untransposed. One call batched over the images (one group) or
 * over the groups (one call per image). */
static int conv_gemm(cublasHandle_t h, const float *col, int64_t np, int64_t rows, int64_t cnt,
                     const float *w, int64_t K, int64_t ocg, int64_t G, float *y, int64_t P,
                     int64_t oc)
{
    if (G == 1)
        return gemm_batched(h, (int)np, (int)ocg, (int)K, col, (int)np, rows * np, w, (int)K, 0,
                            y, (int)P, oc * P, cnt);
    for (int64_t i = 0; i < cnt; i++) {
        int rc = gemm_batched(h, (int)np, (int)ocg, (int)K, col + i * rows * np, (int)np, K * np,
                              w, (int)K, ocg * K, y + i * oc * P, (int)P, ocg * P, G);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A 1x1(x1) kernel with stride 1 and no padding reads x as the column
 * matrix itself. */
static bool is_pointwise(const dspi_conv_geom *g)
{
    for (int d = 0; d < 3; d++)
        if (g->k[d] != 1 || g->stride[d] != 1 || g->pad[d] != 0)
            return false;
    return true;
}

/* The column buffer holds every group's rows for a chunk of output
 * positions (or of whole images when one image's columns fit), bounded by
 * DSPI_CONV_COL_BYTES as on the CPU. f16/bf16 weights are converted to f32
 * once per call into pooled scratch (2x the weight's own size). */
int dspi_cuda_conv(const float *x, const void *w, dsp_dtype wdt, const void *b, dsp_dtype bdt,
                   const struct dspi_conv_geom *g, float *y)
{
    const int64_t G = g->groups, cg = g->c / G, ocg = g->oc / G;
    const int64_t kvol = volume(g->k), K = cg * kvol, rows = g->c * kvol;
    const int64_t P = volume(g->out), IP = volume(g->in);
    const bool pointwise = is_pointwise(g);
    float *col = NULL, *wconv = NULL;
    const float *wf = (const float *)w;
    int rc;
    if ((rc = dspi_cuda_enter(y)) < 0)
        return rc;
    if (g->n == 0 || g->oc == 0 || P == 0)
        return 0;
    if (!fits_int(P) || !fits_int(K) || !fits_int(ocg) || !fits_int(g->n))
        return DSP_EUNSUPPORTED;
    if (K == 0) {
        /* no input channels: the bias alone */
        if (cudaMemsetAsync(y, 0, (size_t)(g->n * g->oc * P) * sizeof(float),
                            DSPI_CUDA_STREAM) != cudaSuccess)
            return DSP_EDEVICE;
    } else {
        cublasHandle_t h = dspi_cuda_blas();
        if (!h)
            return DSP_EDEVICE;
        /* np columns per image, nb whole images per chunk when np == P */
        int64_t cols = DSPI_CONV_COL_BYTES / (int64_t)sizeof(float) / rows;
        if (cols < 1)
            cols = 1;
        int64_t np = pointwise || cols > P ? P : cols;
        int64_t nb = pointwise ? g->n : np == P ? cols / P : 1;
        if (nb < 1)
            nb = 1;
        if (nb > g->n)
            nb = g->n;
        if (wdt != DSP_DTYPE_F32) {
            if ((rc = dspi_cuda_f32_copy(w, wdt, g->oc * K, &wconv)) < 0)
                return rc;
            wf = wconv;
        }
        if (!pointwise && !(col = (float *)dspi_cuda_scratch((size_t)(nb * rows * np) *
                                                             sizeof(float)))) {
            rc = DSP_ENOMEM;
            goto done;
        }
        for (int64_t n0 = 0; n0 < g->n; n0 += nb) {
            const int64_t cnt = g->n - n0 < nb ? g->n - n0 : nb;
            const float *xc = x + n0 * g->c * IP;
            for (int64_t p0 = 0; p0 < P; p0 += np) {
                const int64_t m = P - p0 < np ? P - p0 : np;
                if (!pointwise && (rc = im2col(xc, g, cnt, rows, p0, m, col)) < 0)
                    goto done;
                /* pointwise: x [cnt][c][P] is already col with m == P */
                if ((rc = conv_gemm(h, pointwise ? xc : col, m, rows, cnt, wf, K, ocg, G,
                                    y + n0 * g->oc * P + p0, P, g->oc)) < 0)
                    goto done;
            }
        }
    }
    if (b) {
        int64_t total = g->n * g->oc * P;
        if (total <= (int64_t)UINT_MAX)
            channel_bias_kernel<uint32_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
                y, total, P, g->oc, b, bdt);
        else
            channel_bias_kernel<int64_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
                y, total, P, g->oc, b, bdt);
        rc = dspi_cuda_launched();
    }
done:
    dspi_cuda_scratch_free(col);
    dspi_cuda_scratch_free(wconv);
    return rc;
}

/* ---- pooling ------------------------------------------------------------- */

/* Max that lets NaN win, as PyTorch's pooling (and the CPU kernel) does. */
static __device__ __forceinline__ float max_nan(float m, float v)
{
    return (v > m || isnan(v)) ? v : m;
}

/* The window [s, e) of one plane, in the CPU kernel's order (d, h, w), so
 * sums round the same way. */
static __device__ float window_reduce(const float *plane, const int64_t *in, const int64_t *s,
                                      const int64_t *e, bool max)
{
    float m = -INFINITY, sum = 0.0f;
    for (int64_t d = s[0]; d < e[0]; d++)
        for (int64_t h = s[1]; h < e[1]; h++) {
            const float *row = plane + (d * in[1] + h) * in[2];
            for (int64_t w = s[2]; w < e[2]; w++) {
                if (max)
                    m = max_nan(m, row[w]);
                else
                    sum += row[w];
            }
        }
    return max ? m : sum;
}

/* Output flat index r of a plane as (d, h, w). */
static __device__ __forceinline__ void out_pos(const dspi_conv_geom &g, int64_t r, int64_t *o)
{
    o[2] = r % g.out[2];
    o[1] = (r / g.out[2]) % g.out[1];
    o[0] = r / (g.out[2] * g.out[1]);
}

/* One thread per output element; avg divides by the window clipped to the
 * padded input (count_include_pad), as the CPU kernel. */
__global__ static void pool_kernel(const float *x, bool max, dspi_conv_geom g, int64_t total,
                                   float *y)
{
    const int64_t OV = g.out[0] * g.out[1] * g.out[2], IP = g.in[0] * g.in[1] * g.in[2];
    GRID_STRIDE(t, total) {
        int64_t o[3], s[3], e[3], div = 1;
        out_pos(g, t % OV, o);
        for (int d = 0; d < 3; d++) {
            s[d] = o[d] * g.stride[d] - g.pad[d];
            e[d] = s[d] + g.k[d];
            int64_t pe = e[d] < g.in[d] + g.pad[d] ? e[d] : g.in[d] + g.pad[d];
            div *= pe - s[d];
            if (s[d] < 0)
                s[d] = 0;
            if (e[d] > g.in[d])
                e[d] = g.in[d];
        }
        float v = window_reduce(x + (t / OV) * IP, g.in, s, e, max);
        y[t] = max ? v : v / (float)div;
    }
}

/* Windows [floor(i*in/out), ceil((i+1)*in/out)). */
__global__ static void adaptive_pool_kernel(const float *x, bool max, dspi_conv_geom g,
                                            int64_t total, float *y)
{
    const int64_t OV = g.out[0] * g.out[1] * g.out[2], IP = g.in[0] * g.in[1] * g.in[2];
    GRID_STRIDE(t, total) {
        int64_t o[3], s[3], e[3], cnt = 1;
        out_pos(g, t % OV, o);
        for (int d = 0; d < 3; d++) {
            s[d] = o[d] * g.in[d] / g.out[d];
            e[d] = ((o[d] + 1) * g.in[d] + g.out[d] - 1) / g.out[d];
            cnt *= e[d] - s[d];
        }
        float v = window_reduce(x + (t / OV) * IP, g.in, s, e, max);
        y[t] = max ? v : v / (float)cnt;
    }
}

int dspi_cuda_pool(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g, float *y)
{
    int64_t total = g->n * g->c * volume(g->out);
    int rc;
    if ((rc = dspi_cuda_enter(y)) < 0 || total == 0)
        return rc;
    pool_kernel<<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(x, kind == DSP_POOL_MAX, *g,
                                                                 total, y);
    return dspi_cuda_launched();
}

int dspi_cuda_adaptive_pool(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g,
                            float *y)
{
    int64_t total = g->n * g->c * volume(g->out);
    int rc;
    if ((rc = dspi_cuda_enter(y)) < 0 || total == 0)
        return rc;
    adaptive_pool_kernel<<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
        x, kind == DSP_POOL_MAX, *g, total, y);
    return dspi_cuda_launched();
}

/* ---- batch norm ------------------------------------------------------------ */

/* Folded as on the CPU: alpha = w / sqrt(var + eps), beta = b - mean *
 * alpha, y = x * alpha + beta. The _rn intrinsics keep nvcc from fusing
 * multiply-adds the CPU rounds twice, so both give the same bits. */
template <typename I>
__global__ static void batchnorm_kernel(const float *x, int64_t total, int64_t c, int64_t inner,
                                        const void *mean, dsp_dtype mdt, const void *var,
                                        dsp_dtype vdt, const void *w, dsp_dtype wdt,
                                        const void *b, dsp_dtype bdt, float eps, float *y)
{
    GRID_STRIDE(i, total) {
        const int64_t ch = (int64_t)((I)i / (I)inner % (I)c);
        float alpha = (w ? dspi_cuda_load(w, wdt, ch) : 1.0f) /
                      sqrtf(__fadd_rn(dspi_cuda_load(var, vdt, ch), eps));
        float beta = __fsub_rn(b ? dspi_cuda_load(b, bdt, ch) : 0.0f,
                               __fmul_rn(dspi_cuda_load(mean, mdt, ch), alpha));
        y[i] = __fadd_rn(__fmul_rn(x[i], alpha), beta);
    }
}

int dspi_cuda_batchnorm(const float *x, int64_t n, int64_t c, int64_t inner, const void *mean,
                        dsp_dtype mdt, const void *var, dsp_dtype vdt, const void *w,
                        dsp_dtype wdt, const void *b, dsp_dtype bdt, float eps, float *y)
{
    int64_t total = n * c * inner;
    int rc;
    if ((rc = dspi_cuda_enter(y)) < 0 || total == 0)
        return rc;
    /* 32-bit index math where it fits: see im2col_kernel */
    if (total <= (int64_t)UINT_MAX)
        batchnorm_kernel<uint32_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            x, total, c, inner, mean, mdt, var, vdt, w, wdt, b, bdt, eps, y);
    else
        batchnorm_kernel<int64_t><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            x, total, c, inner, mean, mdt, var, vdt, w, wdt, b, bdt, eps, y);
    return dspi_cuda_launched();
}

/* ---- upsampling ------------------------------------------------------------ */

/* Source indices and the second one's weight for output index o along one
 * dim, in f32 step by step as the CPU kernel and PyTorch's
 * area_pixel_compute_source_index: the _rn intrinsics forbid fused
 * multiply-adds, which could move a source index across an integer. */
static __device__ void linear_src(int64_t o, int64_t in, int64_t out, bool align, int64_t *i0,
                                  int64_t *i1, float *l1)
{
    float src;
    if (align) {
        float scale = out > 1 ? __fdiv_rn((float)(in - 1), (float)(out - 1)) : 0.0f;
        src = __fmul_rn(scale, (float)o);
    } else {
        float scale = __fdiv_rn((float)in, (float)out);
        src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)o, 0.5f)), 0.5f);
        if (src < 0)
            src = 0;
    }
    int64_t i = (int64_t)src;
    if (i > in - 1)
        i = in - 1;
    float l = __fsub_rn(src, (float)i);
    *i0 = i;
    *i1 = i < in - 1 ? i + 1 : i;
    *l1 = l < 0 ? 0 : (l > 1 ? 1 : l);
}

static __device__ int64_t nearest_src(int64_t o, int64_t in, int64_t out)
{
    float scale = __fdiv_rn((float)in, (float)out);
    int64_t i = (int64_t)floorf(__fmul_rn((float)o, scale));
    return i < in - 1 ? i : in - 1;
}

/* l0 * a + l1 * b, each product rounded as the CPU does */
static __device__ __forceinline__ float lerp2(float l0, float a, float l1, float b)
{
    return __fadd_rn(__fmul_rn(l0, a), __fmul_rn(l1, b));
}

/* One thread per output element; the 2-D case (depth 1 in and out) has no
 * depth term, as on the CPU. */
__global__ static void upsample_kernel(const float *x, dspi_conv_geom g, bool linear,
                                       bool align, int64_t total, float *y)
{
    const int64_t OV = g.out[0] * g.out[1] * g.out[2], IP = g.in[0] * g.in[1] * g.in[2];
    const int64_t IH = g.in[1], IW = g.in[2];
    GRID_STRIDE(t, total) {
        int64_t o[3], i0[3], i1[3];
        float l1[3];
        out_pos(g, t % OV, o);
        const float *p = x + (t / OV) * IP;
        for (int d = 0; d < 3; d++) {
            if (linear) {
                linear_src(o[d], g.in[d], g.out[d], align, &i0[d], &i1[d], &l1[d]);
            } else {
                i0[d] = i1[d] = nearest_src(o[d], g.in[d], g.out[d]);
                l1[d] = 0.0f;
            }
        }
        const float *pd0 = p + i0[0] * IH * IW, *pd1 = p + i1[0] * IH * IW;
        const int64_t h0 = i0[1] * IW, h1 = i1[1] * IW, w0 = i0[2], w1 = i1[2];
        if (!linear) {
            y[t] = pd0[h0 + w0];
            continue;
        }
        const float lh1 = l1[1], lh0 = 1.0f - lh1, lw1 = l1[2], lw0 = 1.0f - lw1;
        float a = lerp2(lh0, lerp2(lw0, pd0[h0 + w0], lw1, pd0[h0 + w1]), lh1,
                        lerp2(lw0, pd0[h1 + w0], lw1, pd0[h1 + w1]));
        if (g.in[0] == 1 && g.out[0] == 1) {
            y[t] = a;
            continue;
        }
        float bq = lerp2(lh0, lerp2(lw0, pd1[h0 + w0], lw1, pd1[h0 + w1]), lh1,
                         lerp2(lw0, pd1[h1 + w0], lw1, pd1[h1 + w1]));
        const float ld1 = l1[0], ld0 = 1.0f - ld1;
        y[t] = lerp2(ld0, a, ld1, bq);
    }
}

int dspi_cuda_upsample(const float *x, const struct dspi_conv_geom *g, dsp_upsample_mode mode,
                       int align_corners, float *y)
{
    int64_t total = g->n * g->c * volume(g->out);
    int rc;
    if ((rc = dspi_cuda_enter(y)) < 0 || total == 0)
        return rc;
    upsample_kernel<<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
        x, *g, mode == DSP_UPSAMPLE_LINEAR, align_corners != 0, total, y);
    return dspi_cuda_launched();
}
