/* attn_int.h - the attention kernels behind dsp_attention (not API). */
#ifndef DSPIPE_ATTN_INT_H
#define DSPIPE_ATTN_INT_H

#include <stdint.h>
#include "ops/ops_int.h"

/* One attention call as the kernel sees it. q, k and v are read through
 * element strides over [batch, heads, len] (their last dim is unit-stride),
 * so KV-cache views need no copy. The caller has checked every shape and
 * option; scale is already resolved (never 0). */
typedef struct dspi_attn_args {
    const float *q, *k, *v;
    int64_t qs[3], ks[3], vs[3];    /* strides of dims 0..2, elements */
    const uint8_t *key_mask;        /* NULL or contiguous [batch, k_len] */
    int64_t batch, q_heads, kv_heads, q_len, k_len, head_dim;
    dsp_attn_kind kind;
    float scale;
    int causal;                     /* forced on for DSP_ATTN_CAUSAL */
    int64_t window;
    const int64_t *global;          /* positions, any order, may repeat */
    int n_global;
    int64_t topk;
    int64_t q_offset;
    float *out;                     /* contiguous [batch, q_heads, q_len, head_dim] */
} dspi_attn_args;

/* Returns 0 or DSP_ENOMEM (scratch). */
int dspi_cpu_attention(const dspi_attn_args *a);

#endif /* DSPIPE_ATTN_INT_H */
