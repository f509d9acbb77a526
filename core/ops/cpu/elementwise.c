/* elementwise.c - CPU elementwise kernels: gelu (erf and tanh), silu, swiglu, broadcasting add and mul. */
#include <math.h>
#include "ops/ops_int.h"

int dspi_cpu_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *out)
{
    if (kind == DSP_GELU_EXACT) {
        const float inv_sqrt2 = 0.70710678118654752f;
        for (int64_t i = 0; i < n; i++)
            out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
    } else {
        const float k = 0.79788456080286536f; /* sqrt(2/pi) */
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            out[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    }
    return 0;
}

static inline float silu1(float v)
{
    return v / (1.0f + expf(-v));
}

int dspi_cpu_silu(const float *x, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = silu1(x[i]);
    return 0;
}

int dspi_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = silu1(gate[i]) * up[i];
    return 0;
}

/* out = a op b over the view's shape: a and out contiguous, b walked with
 * its (possibly zero) strides; rows of the last dim are the inner loop.
 * out may be a: each element is read before it is written. */
static int binary(const float *a, const dspi_bview *b, float *out, int is_mul)
{
    int nd = b->ndim;
    int64_t inner = nd > 0 ? b->shape[nd - 1] : 1;
    int64_t bs = nd > 0 ? b->stride[nd - 1] : 0;
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++)
        rows *= b->shape[d];
    if (inner == 0)
        return 0;
    const float *bd = b->data;
    int64_t idx[DSP_MAX_DIMS] = {0};
    int64_t boff = 0;

    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * inner;
        const float *br = bd + boff;
        float *o = out + r * inner;
        if (is_mul) {
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
