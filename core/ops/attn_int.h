/* attn_int.h - the attention kernels behind dsp_attention (not API). */
#ifndef DSPIPE_ATTN_INT_H
#define DSPIPE_ATTN_INT_H

#include <stdint.h>
#include "ops/ops_int.h"

/* One attention call as the kernel sees it. q, k and v are read through
 * element strides over [batch, heads, len] (their last dim is unit-stride),
 * so KV-cache views need no copy, on the CPU and on CUDA alike. The caller
 * has checked every shape and option; scale is already resolved (never 0).
 * On CUDA every tensor pointer is device memory; global stays a host array
 * (the kernel copies it). */
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

/* ---- the CPU kernel's layout (cpu/attn.c drives, cpu/attn_avx2.c computes)
 * A block of queries is packed transposed, Qt [head_dim][LD], so each
 * query owns a vector lane; a tile of DSPI_ATTN_KB keys gives scores
 * S [KB][LD] and the accumulator is Ot [head_dim][LD]. A block holds
 * DSPI_ATTN_QB_FULL queries for unmasked (full) attention, where a larger
 * block reads each K/V tile from L2/L3 for more queries, and DSPI_ATTN_QB
 * under causal, window and top-k, where a larger block would compute more
 * of the tiles the mask then discards. LD is the larger block plus one
 * cache line: rows a multiple of 256 bytes apart would fall into a
 * fraction of L1's sets (and P·V's rows into the same ones as V's).
 * Micro-kernels cover DSPI_ATTN_MR rows (keys, or head dims) x LANES query
 * lanes. 1 to ROWS_MAX queries take the row path instead (Qr [nq][head_dim],
 * Or [nq][head_dim], S with 8 lanes). */
#define DSPI_ATTN_QB 64
#define DSPI_ATTN_QB_FULL 256
#define DSPI_ATTN_KB 64
#define DSPI_ATTN_LD (DSPI_ATTN_QB_FULL + 16)
#define DSPI_ATTN_LANES 16
#define DSPI_ATTN_MR 6
#define DSPI_ATTN_ROWS_MAX 4

#if defined(__x86_64__) || defined(__i386__)
#define DSPI_ATTN_AVX2 1
/* AVX2/FMA only: call when dspi_cpu_use_avx2(). Buffers 32-byte aligned
 * (rows LD apart); ng = lanes / 16; scores are in base 2 for the softmax. */
/* S[r][i] = K[r]·Qt[:, i] for r < nk, i < 16·ng (K rows ks apart); mx:
 * NULL, or 16·ng floats that get each lane's max over the nk rows */
void dspi_attn_avx2_scores(const float *Qt, const float *K, int64_t ks, int nk, int64_t d,
                           int ng, float *S, float *mx);
/* one online-softmax step per lane i < lanes (a multiple of 8): m, l
 * updated, al[i] = 2^(m_old - m_new), S turned into 2^(S - m_new);
 * tmax: NULL (S may hold -inf) or the max per lane of an unmasked S */
void dspi_attn_avx2_softmax(float *S, int nk, int lanes, float *m, float *l, float *al,
                            const float *tmax);
/* Ot[c][i] = Ot[c][i]·al[i] + Σ_r V[r][c]·P[r][i] (V rows vs apart) */
void dspi_attn_avx2_pv(const float *P, const float *V, int64_t vs, int nk, int64_t d, int ng,
                       const float *al, float *Ot);
/* Qt[t][i] = q[i·qs + t]·mul for i < nq, t < d (the lanes past nq are
 * left alone); o[i·d + c] = Ot[c][i] / l[i] (0 where l[i] is 0), i < nq */
void dspi_attn_avx2_pack_q(const float *q, int64_t qs, int nq, int64_t d, float mul, float *Qt);
void dspi_attn_avx2_unpack_o(const float *Ot, const float *l, int nq, int64_t d, float *o);
/* row[i] = -inf outside lanes [lo, hi] */
void dspi_attn_avx2_mask_row(float *row, int lanes, int lo, int hi);
/* bit t set where s[t] > thr[t], t < 8 */
int dspi_attn_avx2_above(const float *s, const float *thr);
/* o[c] += w·x[c], c < d */
void dspi_attn_avx2_axpy(float *o, const float *x, float w, int64_t d);
/* row path (d a multiple of 8): S[r][i] = K[r]·Qr[i] for i < nq, and
 * Or[i][:] = Or[i][:]·al[i] + Σ_r P[r][i]·V[r][:] */
void dspi_attn_avx2_scores_rows(const float *Qr, int nq, const float *K, int64_t ks, int nk,
                                int64_t d, float *S);
void dspi_attn_avx2_pv_rows(const float *P, const float *V, int64_t vs, int nk, int64_t d,
                            int nq, const float *al, float *Or);
#endif

/* What the CUDA kernels (cuda/ops_attn.cu) take: top-k keeps at most this
 * many keys per query when fewer than k_len (a shared-memory sort), and
 * head_dim is at most DSPI_CUDA_ATTN_MAX_DIM (registers per query row).
 * attn.c refuses anything larger with a message before the kernel runs. */
#define DSPI_CUDA_ATTN_MAX_TOPK 256
#define DSPI_CUDA_ATTN_MAX_DIM 256

#endif /* DSPIPE_ATTN_INT_H */
