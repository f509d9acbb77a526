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

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_OPS_H */
