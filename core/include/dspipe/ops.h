/* dspipe/ops.h - numeric operators on tensors: one API, dispatched on the tensors' device.
 *
 * Every operator keeps the same contract:
 *   - Inputs are borrowed and never modified. Strided (non-contiguous)
 *     inputs are accepted.
 *   - The result goes to *out. When *out is NULL a new contiguous tensor is
 *     allocated and the caller owns the reference. Otherwise *out must
 *     already have the result's dtype and shape and be contiguous and
 *     writable; it is overwritten without allocating (the pattern for
 *     preallocated activations). *out may not alias an input unless the
 *     operator says so.
 *   - Compute is in f32. Activations are f32; weights (w, table) may also be
 *     f16 or bf16 and are converted a row or tile at a time, never as a
 *     whole matrix.
 *   - On failure a negative DSP_E* code is returned, *out is left as it
 *     was, and dsp_ops_error() gives a one-line message naming the operator
 *     and the offending shapes ("linear: x has 37 features, w [64, 32]
 *     expects 32").
 *   - All tensors of one call are on the same device (DSP_EDEVICE
 *     otherwise). Built without CUDA, everything runs on the CPU.
 *
 * A BERT feed-forward block, for example:
 *
 *     dsp_tensor *h = NULL, *a = NULL, *y = NULL;
 *     if (dsp_linear(x, w1, b1, &h) < 0 || dsp_gelu(h, DSP_GELU_EXACT, &a) < 0 ||
 *         dsp_linear(a, w2, b2, &y) < 0)
 *         return dsp_node_fail(node, DSP_EINVAL, "%s", dsp_ops_error());
 */
#ifndef DSPIPE_OPS_H
#define DSPIPE_OPS_H

#include <dspipe/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last failed operator on this thread ("" if none).
 * Valid until the next operator call on the same thread. */
DSP_API const char *dsp_ops_error(void);

/* y = x · wᵀ + b, as torch.nn.Linear with its weight as Hugging Face stores
 * it: x [..., in], w [out, in], b [out] or NULL. Result [..., out]. */
DSP_API int dsp_linear(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                       dsp_tensor **out);

/* Batched matrix product: a [..., m, k] · b [..., k, n], or b [..., n, k]
 * when transpose_b. Leading (batch) dims broadcast as in torch.matmul. */
DSP_API int dsp_matmul(const dsp_tensor *a, const dsp_tensor *b, int transpose_b,
                       dsp_tensor **out);

/* Rows of table [vocab, dim] for ids (i32 or i64, any shape): [..., dim].
 * An id outside [0, vocab) is DSP_EINVAL naming the id and its position. */
DSP_API int dsp_embedding(const dsp_tensor *ids, const dsp_tensor *table, dsp_tensor **out);

/* Numerically stable softmax over the last dimension. mask is NULL or
 * broadcastable to x: u8/bool (0 = masked out) or f32 (added to the logits,
 * -inf allowed). A row with every entry masked gives zeros, not NaN.
 * *out may be x's own storage only when x is contiguous and writable. */
DSP_API int dsp_softmax(const dsp_tensor *x, const dsp_tensor *mask, dsp_tensor **out);

/* Layer normalisation over the last dimension (torch.nn.LayerNorm):
 * (x - mean) / sqrt(var + eps) * w + b; w and b [dim], b may be NULL. */
DSP_API int dsp_layernorm(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                          float eps, dsp_tensor **out);

/* RMS normalisation over the last dimension (Llama / DeepSeek):
 * x / sqrt(mean(x²) + eps) * w; w [dim]. */
DSP_API int dsp_rmsnorm(const dsp_tensor *x, const dsp_tensor *w, float eps,
                        dsp_tensor **out);

typedef enum dsp_gelu_kind {
    DSP_GELU_EXACT = 0,         /* x·Φ(x), erf form (BERT "gelu") */
    DSP_GELU_TANH               /* tanh approximation ("gelu_new", "gelu_pytorch_tanh") */
} dsp_gelu_kind;

/* Elementwise activations. *out may be x itself when x is writable. */
DSP_API int dsp_gelu(const dsp_tensor *x, dsp_gelu_kind kind, dsp_tensor **out);
DSP_API int dsp_silu(const dsp_tensor *x, dsp_tensor **out);
/* max(x, 0) (torch.relu; -0 and NaN pass through as torch keeps them). */
DSP_API int dsp_relu(const dsp_tensor *x, dsp_tensor **out);
/* silu(gate) * up, both the same shape (the SwiGLU feed-forward). */
DSP_API int dsp_swiglu(const dsp_tensor *gate, const dsp_tensor *up, dsp_tensor **out);

/* a + b and a * b, with b broadcast to a's shape by NumPy rules (b's dims
 * align with a's trailing dims; size-1 dims stretch). *out may be a. */
DSP_API int dsp_add(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out);
DSP_API int dsp_mul(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out);

/* Rotary position embedding, Hugging Face's rotate_half convention:
 * x [batch, heads, seq, head_dim]; pos (i32/i64) [seq] or [batch, seq]
 * gives each token's position; the first rot_dims of head_dim are rotated
 * (rot_dims even, <= head_dim; 0 means all: partial rotary as in GPT-NeoX /
 * Phi), the rest pass through. inv_freq[i] = base^(-2i/rot_dims). */
DSP_API int dsp_rope(const dsp_tensor *x, const dsp_tensor *pos, float base, int rot_dims,
                     dsp_tensor **out);


/* ---------------------------------------------------------------------------
 * Attention. q [batch, q_heads, q_len, head_dim]; k and v [batch, kv_heads,
 * k_len, head_dim] with q_heads a multiple of kv_heads (grouped / multi-query
 * attention: query head h reads kv head h / (q_heads / kv_heads)). Result
 * [batch, q_heads, q_len, head_dim]. Query i sits at key position
 * q_offset + i (0 for a prompt; the cache length when decoding). Memory stays
 * linear in the sequence length: full and causal attention are tiled over
 * keys with an online softmax (no q_len x k_len matrix), local, hybrid and
 * top-k attention touch only the keys a query can see.
 * ------------------------------------------------------------------------- */
typedef enum dsp_attn_kind {
    DSP_ATTN_FULL = 0,          /* every key (minus key_mask)                 */
    DSP_ATTN_CAUSAL,            /* keys at positions <= the query's           */
    DSP_ATTN_LOCAL,             /* |query pos - key pos| < window (and causal
                                   when .causal): sliding-window attention   */
    DSP_ATTN_HYBRID,            /* LOCAL, plus global tokens: the positions in
                                   .global see and are seen by every token   */
    DSP_ATTN_TOPK               /* each query keeps its .topk best-scoring keys
                                   (among those causal/key_mask allow)        */
} dsp_attn_kind;

typedef struct dsp_attn_opts {
    dsp_attn_kind kind;
    float scale;                /* 0: 1/sqrt(head_dim)                         */
    int causal;                 /* LOCAL/HYBRID/TOPK: also keys <= query only  */
    int window;                 /* LOCAL/HYBRID                                */
    const int64_t *global;      /* HYBRID: key/query positions that are global */
    int n_global;
    int topk;                   /* TOPK                                        */
    int64_t q_offset;
    const dsp_tensor *key_mask; /* NULL or u8 [batch, k_len]: 0 = padding      */
} dsp_attn_opts;

/* A query that can see no key at all gets zeros. */
DSP_API int dsp_attention(const dsp_tensor *q, const dsp_tensor *k, const dsp_tensor *v,
                          const dsp_attn_opts *opts, dsp_tensor **out);

/* A KV cache: per sequence, keys and values [kv_heads, len, head_dim] that
 * grow by appends up to a fixed capacity (no reallocation while decoding). */
typedef struct dsp_kv_cache dsp_kv_cache;
DSP_API int dsp_kv_cache_new(int n_seqs, int kv_heads, int head_dim, int64_t capacity,
                             dsp_kv_cache **out);
DSP_API void dsp_kv_cache_free(dsp_kv_cache **c);
/* Append k and v [kv_heads, t, head_dim] (f32) to sequence seq. DSP_ELIMIT
 * past the capacity (nothing appended). */
DSP_API int dsp_kv_cache_append(dsp_kv_cache *c, int seq, const dsp_tensor *k,
                                const dsp_tensor *v);
DSP_API int64_t dsp_kv_cache_len(const dsp_kv_cache *c, int seq);
DSP_API void dsp_kv_cache_reset(dsp_kv_cache *c, int seq);
/* Views [1, kv_heads, len, head_dim] of what sequence seq holds (new
 * references, valid until the next append or reset of that sequence). */
DSP_API int dsp_kv_cache_view(const dsp_kv_cache *c, int seq, dsp_tensor **k,
                              dsp_tensor **v);

/* ---------------------------------------------------------------------------
 * Weight-only quantization: a [out, in] weight matrix stored as int8 or
 * int4 with one scale per group of group_size (32 or 128) consecutive
 * inputs (symmetric, round to nearest). dsp_linear_q multiplies without
 * dequantizing the whole matrix (a row block at a time).
 * ------------------------------------------------------------------------- */
typedef enum dsp_quant_kind {
    DSP_QUANT_INT8 = 1,
    DSP_QUANT_INT4 = 2
} dsp_quant_kind;

typedef struct dsp_qweight dsp_qweight;
/* w f32/f16/bf16 [out, in], in a multiple of group_size. */
DSP_API int dsp_quantize(const dsp_tensor *w, dsp_quant_kind kind, int group_size,
                         dsp_qweight **out);
/* Frees w, codes and scales, wherever they live (device memory goes back
 * through the CUDA backend); sets *w to NULL; NULL is a no-op. */
DSP_API void dsp_qweight_free(dsp_qweight **w);
/* Bytes held (codes and scales), for memory reports. */
DSP_API size_t dsp_qweight_bytes(const dsp_qweight *w);
DSP_API int dsp_qweight_shape(const dsp_qweight *w, int64_t *out_features,
                              int64_t *in_features);
/* The f32 matrix the codes stand for (tests and accuracy reports), on the
 * CPU: a w on a GPU is refused (DSP_EUNSUPPORTED; copy it back with
 * dsp_qweight_to_device first). */
DSP_API int dsp_dequantize(const dsp_qweight *w, dsp_tensor **out);
/* y = x · dequant(w)ᵀ + b, x [..., in], b [out] or NULL. */
DSP_API int dsp_linear_q(const dsp_tensor *x, const dsp_qweight *w, const dsp_tensor *b,
                         dsp_tensor **out);
/* A copy of w on dev: its codes and scales copied to cuda:N (or back to
 * the CPU, or CPU to CPU), for dsp_linear_q and dsp_moe on tensors of that
 * device. *out is new and the caller's (dsp_qweight_free); w is only read.
 * Like dsp_tensor_to_device, the copy is complete when this returns, so
 * any thread may use it. Fails with DSP_EINVAL (NULL argument, unknown
 * device type), DSP_EDEVICE (no CUDA module, driver or GPU, no such
 * index, a failed copy) or DSP_ENOMEM, with the reason in
 * dsp_context_errmsg(ctx); *out is then NULL. */
DSP_API int dsp_qweight_to_device(struct dsp_context *ctx, const dsp_qweight *w,
                                  dsp_device dev, dsp_qweight **out);

/* ---------------------------------------------------------------------------
 * Mixture of experts (Mixtral / DeepSeek): a router scores n_experts per
 * token, each token goes to its top_k experts; tokens are grouped by expert
 * so each expert runs one GEMM over its tokens, and the results are
 * scattered back weighted by their scores. Shared experts see every token.
 * Experts are SwiGLU MLPs: down(silu(gate(x)) * up(x)), weights as Hugging
 * Face stores them: gate and up [inter, dim], down [dim, inter]. Any of the
 * three may be quantized (dsp_quantize); it is then read a few rows at a
 * time and never dequantized whole.
 * ------------------------------------------------------------------------- */
typedef enum dsp_moe_score {
    DSP_MOE_SOFTMAX = 0,        /* Mixtral, DeepSeek-V2                        */
    DSP_MOE_SIGMOID             /* DeepSeek-V3                                 */
} dsp_moe_score;

/* One expert. Each of its three matrices is given exactly once: as a
 * tensor (gate, up, down: f32, f16 or bf16, any strides) or as a quantized
 * weight (qgate, qup, qdown, on the same device as x), so a struct that
 * sets only the tensors and leaves the rest zero is an unquantized expert.
 * Experts may mix the two. All of them are borrowed for the call. */
typedef struct dsp_moe_expert {
    const dsp_tensor *gate, *up, *down;
    const dsp_qweight *qgate, *qup, *qdown;
} dsp_moe_expert;

/* What a quantized expert matrix multiplies (dsp_moe_opts.act). With
 * DSP_MOE_ACT_INT8 the activations entering an int8 or int4 matrix are
 * quantized per token to int8, one scale per 32 inputs, and multiplied in
 * integers (W8A8, llama.cpp's Q8_0 x Q8_0; gate and up only when both are
 * quantized): 1.3-2x faster than f32 activations on the CPU from 64
 * tokens, at a larger error (on a Mixtral-sized layer, relative L2 per
 * token against f32 weights: ~1.5% instead of ~0.9% for int8 g32 weights
 * alone); see docs/compute.md. F32 is exact: the layer equals dsp_moe on
 * the dequantized weights. f32/f16/bf16 matrices always take f32
 * activations, and the CUDA backend ignores the choice. */
typedef enum dsp_moe_act {
    DSP_MOE_ACT_DEFAULT = 0,    /* DSPIPE_MOE_ACT=int8 in the environment
                                 * selects INT8, anything else F32             */
    DSP_MOE_ACT_F32,            /* exact: equals dsp_moe on dequantized weights */
    DSP_MOE_ACT_INT8            /* int8 activations (W8A8, W4A8) on the CPU    */
} dsp_moe_act;

typedef struct dsp_moe_opts {
    int top_k;
    dsp_moe_score score;
    int renormalize;            /* divide the top_k weights by their sum       */
    float routed_scale;         /* multiplies the routed output; 0 means 1     */
    dsp_moe_act act;            /* activations of int8 experts                 */
} dsp_moe_opts;

/* x [tokens, dim]; router [n_experts, dim]; experts[n_experts];
 * shared[n_shared] (n_shared may be 0). Result [tokens, dim], under the
 * operator contract above. Fails with DSP_EINVAL (shapes, a matrix missing
 * or given both ways, bad opts; the message names the expert and matrix),
 * DSP_EDEVICE (a weight on another device) or DSP_ENOMEM. */
DSP_API int dsp_moe(const dsp_tensor *x, const dsp_tensor *router,
                    const dsp_moe_expert *experts, int n_experts,
                    const dsp_moe_expert *shared, int n_shared,
                    const dsp_moe_opts *opts, dsp_tensor **out);

/* ---------------------------------------------------------------------------
 * Convolutions and friends, NCHW / NCDHW as in PyTorch.
 * ------------------------------------------------------------------------- */
typedef struct dsp_conv_opts {
    int stride[3];              /* per spatial dim (d, h, w or h, w); 0 = 1    */
    int padding[3];             /* zero padding on both sides                  */
    int dilation[3];            /* 0 = 1                                       */
    int groups;                 /* 0 = 1                                       */
} dsp_conv_opts;

/* x [n, c, h, w], w [oc, c / groups, kh, kw], b [oc] or NULL. On the CPU a
 * stride-1, undilated, ungrouped 3x3 (or 3x3x3 / 1x3x3) convolution runs as
 * Winograd F(2,3), anything else as im2col + GEMM (docs/compute.md);
 * DSPIPE_CONV=im2col or =winograd forces one, and any other value than
 * those and auto fails the call with DSP_EINVAL. Weights in a read-only
 * buffer (a mapped model) keep their Winograd transform with that buffer. */
DSP_API int dsp_conv2d(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                       const dsp_conv_opts *opts, dsp_tensor **out);
/* x [n, c, d, h, w], w [oc, c / groups, kd, kh, kw], b [oc] or NULL. */
DSP_API int dsp_conv3d(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
                       const dsp_conv_opts *opts, dsp_tensor **out);

typedef enum dsp_pool_kind {
    DSP_POOL_MAX = 0,
    DSP_POOL_AVG                /* padding counts in the divisor, as PyTorch's
                                   default count_include_pad=True             */
} dsp_pool_kind;

/* 2-D or 3-D pooling, by x's rank (4 or 5). kernel, stride (0 = kernel) and
 * padding per spatial dim. */
DSP_API int dsp_pool(const dsp_tensor *x, dsp_pool_kind kind, const int *kernel,
                     const int *stride, const int *padding, dsp_tensor **out);
/* Adaptive pooling to out_size per spatial dim (as nn.AdaptiveAvgPool2d/3d). */
DSP_API int dsp_adaptive_pool(const dsp_tensor *x, dsp_pool_kind kind, const int *out_size,
                              dsp_tensor **out);
/* Inference batch norm over dim 1: (x - mean) / sqrt(var + eps) * w + b. */
DSP_API int dsp_batchnorm(const dsp_tensor *x, const dsp_tensor *mean, const dsp_tensor *var,
                          const dsp_tensor *w, const dsp_tensor *b, float eps,
                          dsp_tensor **out);

typedef enum dsp_upsample_mode {
    DSP_UPSAMPLE_NEAREST = 0,
    DSP_UPSAMPLE_LINEAR         /* bilinear (4-D) or trilinear (5-D)           */
} dsp_upsample_mode;

/* Resize the spatial dims of x (4-D or 5-D) to out_size, as
 * F.interpolate(mode=nearest | bilinear | trilinear, align_corners). */
DSP_API int dsp_upsample(const dsp_tensor *x, const int *out_size, dsp_upsample_mode mode,
                         int align_corners, dsp_tensor **out);

/* ---------------------------------------------------------------------------
 * Graphs and sequences.
 * ------------------------------------------------------------------------- */
typedef enum dsp_agg_kind {
    DSP_AGG_SUM = 0,
    DSP_AGG_MEAN,
    DSP_AGG_MAX                 /* a node without neighbours gets zeros        */
} dsp_agg_kind;

/* For each of n nodes, aggregate the feature rows x[indices[j]] of its
 * neighbours j in [indptr[i], indptr[i+1]) (CSR, i32 or i64), each scaled
 * by edge_weight[j] when given (f32 [nnz]). x [num_src, f] -> [n, f]. */
DSP_API int dsp_csr_aggregate(const dsp_tensor *indptr, const dsp_tensor *indices,
                              const dsp_tensor *x, const dsp_tensor *edge_weight,
                              dsp_agg_kind kind, dsp_tensor **out);

/* One LSTM layer's weights, as torch.nn.LSTM names them (weight_ih_l0 ...):
 * w_ih [4h, in], w_hh [4h, h], b_ih and b_hh [4h] or NULL; gates i, f, g, o. */
typedef struct dsp_lstm_weights {
    const dsp_tensor *w_ih, *w_hh, *b_ih, *b_hh;
} dsp_lstm_weights;

/* x [batch, seq, in] (batch_first), zero initial state. bwd NULL for one
 * direction; else the reverse direction's weights (..._reverse) and the
 * result is [batch, seq, 2h] (forward then backward, as PyTorch). lengths
 * (i32/i64 [batch]) or NULL: a sequence's steps past its length are zeros
 * and the reverse direction starts at its last real step (packed-sequence
 * semantics). */
DSP_API int dsp_lstm(const dsp_tensor *x, const dsp_lstm_weights *fwd,
                     const dsp_lstm_weights *bwd, const dsp_tensor *lengths,
                     dsp_tensor **out);

/* Threads the CPU operators use: DSPIPE_OPS_THREADS, else the online cores, read once per process. */
DSP_API int dsp_ops_threads(void);

/* One task of dsp_parallel_tasks: task in [0, n), thread in
 * [0, dsp_ops_threads()) names the thread running it, so per-thread
 * scratch (a workspace per thread) needs no lock. */
typedef void (*dsp_task_fn)(void *ctx, int task, int thread);

/* Runs fn for every task in [0, n), each exactly once, on the operators'
 * thread pool (the caller's thread included) and returns when all are
 * done. For independent pieces of work made of many small operator calls,
 * such as the length buckets of a text batch: each task runs on one
 * thread, and the operators it calls run there too (their loops inline,
 * their GEMMs on one OpenBLAS thread), so the cores stay busy without a
 * fork and join inside every small GEMM. Tasks are started in index order:
 * put the longest first. When the pool is busy with another caller's work,
 * or there is one thread, the tasks run on the calling thread in order
 * (thread 0). fn must not fail in a way that needs the others stopped:
 * record errors in ctx. While the tasks run, GEMMs called from other
 * threads also run on one thread (OpenBLAS's thread count is global). */
DSP_API void dsp_parallel_tasks(int n, dsp_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_OPS_H */
