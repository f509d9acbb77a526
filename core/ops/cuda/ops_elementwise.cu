/* ops_elementwise.cu - activations, broadcast add/mul and rotary embedding: grid-stride loops, one element per step. */
#include <math.h>

#include "cuda_int.h"

#define GRID_STRIDE(i, n)                                                       \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ static void gelu_kernel(const float *x, int64_t n, int tanh_form, float *out)
{
    GRID_STRIDE(i, n) {
        float v = x[i];
        if (tanh_form) {
            const float k = 0.7978845608028654f;        /* sqrt(2 / pi) */
            out[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        } else {
            out[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        }
    }
}

static __device__ __forceinline__ float silu(float v)
{
    return v / (1.0f + expf(-v));
}

__global__ static void silu_kernel(const float *x, int64_t n, float *out)
{
    GRID_STRIDE(i, n) out[i] = silu(x[i]);
}

/* not fmaxf: torch.relu keeps NaN */
__global__ static void relu_kernel(const float *x, int64_t n, float *out)
{
    GRID_STRIDE(i, n) out[i] = x[i] < 0.0f ? 0.0f : x[i];
}

__global__ static void swiglu_kernel(const float *gate, const float *up, int64_t n, float *out)
{
    GRID_STRIDE(i, n) out[i] = silu(gate[i]) * up[i];
}

int dspi_cuda_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || n == 0)
        return rc;
    gelu_kernel<<<dspi_cuda_blocks(n), DSPI_CUDA_THREADS>>>(x, n, kind == DSP_GELU_TANH, out);
    return dspi_cuda_launched();
}

int dspi_cuda_silu(const float *x, int64_t n, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || n == 0)
        return rc;
    silu_kernel<<<dspi_cuda_blocks(n), DSPI_CUDA_THREADS>>>(x, n, out);
    return dspi_cuda_launched();
}

int dspi_cuda_relu(const float *x, int64_t n, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || n == 0)
        return rc;
    relu_kernel<<<dspi_cuda_blocks(n), DSPI_CUDA_THREADS>>>(x, n, out);
    return dspi_cuda_launched();
}

int dspi_cuda_swiglu(const float *gate, const float *up, int64_t n, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || n == 0)
        return rc;
    swiglu_kernel<<<dspi_cuda_blocks(n), DSPI_CUDA_THREADS>>>(gate, up, n, out);
    return dspi_cuda_launched();
}

/* ---- a (contiguous) op b (broadcast view) ------------------------------- */

/* b repeats with period p over a's flat index: b contiguous over a's
 * trailing dims and broadcast (stride 0) over the leading ones, which
 * covers same-shape operands (p = numel) and bias-like vectors. Other
 * views (strided, middle dims broadcast) take the general path. */
static int64_t view_period(const dspi_bview *v)
{
    int d = v->ndim - 1;
    int64_t expect = 1;
    for (; d >= 0; d--) {
        if (v->shape[d] != 1 && v->stride[d] != expect)
            break;
        expect *= v->shape[d];
    }
    for (int e = d; e >= 0; e--)
        if (v->shape[e] != 1 && v->stride[e] != 0)
            return -1;
    return expect;
}

template <bool MUL>
__global__ static void binary_periodic(const float *a, const float *b, int64_t total,
                                       int64_t period, float *out)
{
    GRID_STRIDE(i, total) {
        float y = b[period == total ? i : i % period];
        out[i] = MUL ? a[i] * y : a[i] + y;
    }
}

template <bool MUL>
__global__ static void binary_view(const float *a, const float *b, dspi_cuda_view v,
                                   int64_t total, float *out)
{
    GRID_STRIDE(i, total) {
        float y = b[dspi_cuda_view_offset(v, i)];
        out[i] = MUL ? a[i] * y : a[i] + y;
    }
}

template <bool MUL>
static int binary(const float *a, const dspi_bview *b, float *out)
{
    int64_t total = 1, period;
    int rc;
    for (int d = 0; d < b->ndim; d++)
        total *= b->shape[d];
    if ((rc = dspi_cuda_enter(out)) < 0 || total == 0)
        return rc;
    period = view_period(b);
    if (period > 0)
        binary_periodic<MUL><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            a, (const float *)b->data, total, period, out);
    else
        binary_view<MUL><<<dspi_cuda_blocks(total), DSPI_CUDA_THREADS>>>(
            a, (const float *)b->data, dspi_cuda_view_of(b), total, out);
    return dspi_cuda_launched();
}

int dspi_cuda_add(const float *a, const dspi_bview *b, float *out)
{
    return binary<false>(a, b, out);
}

int dspi_cuda_mul(const float *a, const dspi_bview *b, float *out)
{
    return binary<true>(a, b, out);
}

/* ---- rotary position embedding ------------------------------------------ */

/* One thread per (row, i) pair of a rotated half, plus the pass-through
 * tail; the angle is computed in f32 as the CPU (and Hugging Face) does. */
__global__ static void rope_kernel(const float *x, int64_t heads, int64_t seq, int64_t hd,
                                   const void *pos, int pos_i64, int pos_batched, float base,
                                   int rot_dims, int64_t rows, float *out)
{
    int64_t half = rot_dims / 2, tail = hd - rot_dims, per_row = half + tail;
    GRID_STRIDE(t, rows * per_row) {
        int64_t row = t / per_row, i = t % per_row;
        const float *xr = x + row * hd;
        float *o = out + row * hd;
        if (i >= half) {
            int64_t j = rot_dims + (i - half);
            o[j] = xr[j];
            continue;
        }
        int64_t s = row % seq, b = row / (heads * seq);
        int64_t pi = pos_batched ? b * seq + s : s;
        int64_t p = pos_i64 ? ((const int64_t *)pos)[pi] : ((const int32_t *)pos)[pi];
        float inv_freq = 1.0f / powf(base, (float)(2 * i) / (float)rot_dims);
        float ang = (float)p * inv_freq, sn, c;
        sincosf(ang, &sn, &c);
        float x1 = xr[i], x2 = xr[i + half];
        o[i] = x1 * c - x2 * sn;
        o[i + half] = x2 * c + x1 * sn;
    }
}

int dspi_cuda_rope(const float *x, int64_t batch, int64_t heads, int64_t seq, int64_t hd,
                   const void *pos, dsp_dtype pdt, int pos_batched, float base, int rot_dims,
                   float *out)
{
    int64_t rows = batch * heads * seq, work = rows * (rot_dims / 2 + hd - rot_dims);
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || work == 0)
        return rc;
    rope_kernel<<<dspi_cuda_blocks(work), DSPI_CUDA_THREADS>>>(
        x, heads, seq, hd, pos, pdt == DSP_DTYPE_I64, pos_batched, base, rot_dims, rows, out);
    return dspi_cuda_launched();
}
