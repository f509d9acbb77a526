/* embed_rope.c - CPU embedding lookup (f32/f16/bf16 tables) and rotary position embedding. */
#include <math.h>
#include <stdlib.h>
#include "ops/ops_int.h"

static inline int64_t id_at(const void *ids, dsp_dtype idt, int64_t i)
{
    return idt == DSP_DTYPE_I64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
}

int dspi_cpu_embedding(const void *ids, dsp_dtype idt, int64_t nids, const void *table,
                       dsp_dtype tdt, int64_t s0, int64_t s1, int64_t dim, float *out)
{
    /* one row converted at a time, straight into the output */
    for (int64_t i = 0; i < nids; i++)
        dspi_load_f32(out + i * dim, table, tdt, id_at(ids, idt, i) * s0, s1, dim);
    return 0;
}

int dspi_cpu_rope(const float *x, int64_t batch, int64_t heads, int64_t seq, int64_t hd,
                  const void *pos, dsp_dtype pdt, int pos_batched, float base, int rot_dims,
                  float *out)
{
    int64_t half = rot_dims / 2;
    float *inv_freq = malloc((size_t)(half > 0 ? half : 1) * sizeof *inv_freq);
    float *cs = malloc((size_t)(half > 0 ? 2 * half : 1) * sizeof *cs);
    if (!inv_freq || !cs) {
        free(inv_freq);
        free(cs);
        return DSP_ENOMEM;
    }
    /* computed in f32 step by step as Hugging Face does
     * (1 / base ** (arange(0, dim, 2).float() / dim)), so the angles match
     * the reference bit for bit where libm agrees */
    for (int64_t i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)rot_dims);

    for (int64_t b = 0; b < batch; b++) {
        for (int64_t s = 0; s < seq; s++) {
            int64_t p = id_at(pos, pdt, pos_batched ? b * seq + s : s);
            for (int64_t i = 0; i < half; i++) {
                float ang = (float)p * inv_freq[i];
                cs[2 * i] = cosf(ang);
                cs[2 * i + 1] = sinf(ang);
            }
            /* the same angles serve every head of this token */
            for (int64_t h = 0; h < heads; h++) {
                int64_t off = ((b * heads + h) * seq + s) * hd;
                const float *xr = x + off;
                float *o = out + off;
                for (int64_t i = 0; i < half; i++) {
                    float x1 = xr[i], x2 = xr[i + half];
                    float c = cs[2 * i], sn = cs[2 * i + 1];
                    o[i] = x1 * c - x2 * sn;            /* rotate_half: (-x2, x1) */
                    o[i + half] = x2 * c + x1 * sn;
                }
                for (int64_t i = rot_dims; i < hd; i++)
                    o[i] = xr[i];
            }
        }
    }
    free(inv_freq);
    free(cs);
    return 0;
}
