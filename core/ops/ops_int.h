/* ops_int.h - the compute-backend table behind dspipe/ops.h and the CPU kernels' helpers (not API). */
#ifndef DSPIPE_OPS_INT_H
#define DSPIPE_OPS_INT_H

#include <stdint.h>
#include "dspipe/ops.h"

/* A broadcast operand: base pointer and element strides aligned to the
 * output's dims (0 where the operand is broadcast). ndim is the output's. */
typedef struct dspi_bview {
    const void *data;
    dsp_dtype dtype;
    int ndim;
    int64_t shape[DSP_MAX_DIMS];    /* the output's shape */
    int64_t stride[DSP_MAX_DIMS];   /* elements, 0 on broadcast dims */
} dspi_bview;

/* Argument blocks of the operator families, defined in their own headers
 * (attn_int.h, quant_int.h, conv_int.h, seq_int.h). */
struct dspi_attn_args;
struct dspi_wmat;
struct dspi_moe_mlp;
struct dspi_conv_geom;
struct dspi_lstm_dir;

/* One compute backend: ops.c checks arguments, shapes, dtypes and devices,
 * allocates the output, makes strided operands contiguous where a kernel
 * needs that, and then calls one of these. Kernels see plain pointers:
 * f32 activations, weights as f32/f16/bf16 (wdt), contiguous unless a
 * dspi_bview says otherwise. They return 0 or a negative DSP_E* code
 * (DSP_ENOMEM for scratch) and never set the error message themselves.
 * A NULL entry means "not supported here" so a dispatcher can fall back. */
typedef struct dspi_ops_backend {
    const char *name;
    /* y[M,N] = x[M,K] · w[N,K]ᵀ (+ b[N], b in bdt, may be NULL) */
    int (*linear)(const float *x, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                  int64_t N, const void *b, dsp_dtype bdt, float *y);
    /* c[batch][m,n] = a[batch][m,k] · b[batch]; a_off/b_off give each batch's
     * element offset (broadcast batches repeat offsets); b is [k,n] or [n,k] */
    int (*matmul)(const float *a, const float *b, int64_t nbatch, const int64_t *a_off,
                  const int64_t *b_off, int64_t m, int64_t k, int64_t n, int transpose_b,
                  float *c);
    /* out[i,:] = table[ids[i],:]; ids already range-checked; table strides s0/s1 */
    int (*embedding)(const void *ids, dsp_dtype idt, int64_t nids, const void *table,
                     dsp_dtype tdt, int64_t s0, int64_t s1, int64_t dim, float *out);
    /* rows of x [rows, n] with an optional mask view over x's shape */
    int (*softmax)(const float *x, const dspi_bview *mask, int64_t rows, int64_t n,
                   float *out);
    int (*layernorm)(const float *x, int64_t rows, int64_t n, const void *w, const void *b,
                     dsp_dtype wdt, dsp_dtype bdt, float eps, float *out);
    int (*rmsnorm)(const float *x, int64_t rows, int64_t n, const void *w, dsp_dtype wdt,
                   float eps, float *out);
    int (*gelu)(const float *x, int64_t n, dsp_gelu_kind kind, float *out);
    int (*silu)(const float *x, int64_t n, float *out);
    int (*swiglu)(const float *gate, const float *up, int64_t n, float *out);
    /* out = a (contiguous, total elements of the view's shape) op b (view) */
    int (*add)(const float *a, const dspi_bview *b, float *out);
    int (*mul)(const float *a, const dspi_bview *b, float *out);
    /* x [batch, heads, seq, hd] contiguous; pos (i32/i64) [seq] or [batch, seq] */
    int (*rope)(const float *x, int64_t batch, int64_t heads, int64_t seq, int64_t hd,
                const void *pos, dsp_dtype pdt, int pos_batched, float base, int rot_dims,
                float *out);

    /* The operator families; each entry has the signature of its CPU
     * kernel, documented in the family's header. */
    int (*attention)(const struct dspi_attn_args *a);
    int (*linear_q)(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                    dsp_dtype bdt, float *y);
    int (*moe)(const float *x, int64_t T, int64_t dim, const struct dspi_wmat *router,
               const struct dspi_moe_mlp *experts, int n_experts,
               const struct dspi_moe_mlp *shared, int n_shared, int top_k,
               dsp_moe_score score, int renormalize, float routed_scale, float *out);
    int (*conv)(const float *x, const void *w, dsp_dtype wdt, const void *b, dsp_dtype bdt,
                const struct dspi_conv_geom *g, float *y);
    int (*pool)(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g, float *y);
    int (*adaptive_pool)(const float *x, dsp_pool_kind kind, const struct dspi_conv_geom *g,
                         float *y);
    int (*batchnorm)(const float *x, int64_t n, int64_t c, int64_t inner, const void *mean,
                     dsp_dtype mdt, const void *var, dsp_dtype vdt, const void *w,
                     dsp_dtype wdt, const void *b, dsp_dtype bdt, float eps, float *y);
    int (*upsample)(const float *x, const struct dspi_conv_geom *g, dsp_upsample_mode mode,
                    int align_corners, float *y);
    int (*csr_aggregate)(const void *indptr, dsp_dtype ptr_dt, const void *indices,
                         dsp_dtype idx_dt, int64_t n, const float *x, int64_t f,
                         const float *ew, dsp_agg_kind kind, float *out);
    int (*lstm)(const float *x, int64_t batch, int64_t seq, int64_t in, int64_t h,
                const struct dspi_lstm_dir *dirs, int ndirs, const int64_t *lengths,
                float *out);
    int (*relu)(const float *x, int64_t n, float *out);
} dspi_ops_backend;

extern const dspi_ops_backend dspi_ops_cpu;

/* ---- one operator call (call.c): every entry point runs
 *   dspi_op_begin -> checks (dspi_op_need*, dspi_op_fail) -> dspi_op_backend
 *   -> dspi_op_output -> kernel -> dspi_op_finish,
 * so messages, device checks and output rules are the same everywhere. */
/* State of one operator call: the result tensor and the contiguous copies
 * made of strided inputs, released together by dspi_op_finish. */
typedef struct dspi_opcall {
    const char *op;
    dsp_tensor *res;
    int allocated;              /* res is ours until handed to *out */
    dsp_tensor *tmp[8];
    int ntmp;
    dsp_device dev;             /* where the call runs (set by dspi_op_backend) */
    const struct dspi_backend *mem; /* device memory for a CUDA call, else NULL */
} dspi_opcall;

/* "[64, 32]" */
typedef struct dspi_shapestr {
    char s[160];
} dspi_shapestr;

void dspi_op_begin(dspi_opcall *c, const char *op);
/* Set the thread's message to "op: ..." and return code. */
int dspi_op_fail(dspi_opcall *c, int code, const char *fmt, ...) DSP_PRINTF(3, 4);
dspi_shapestr dspi_dims_str(int ndim, const int64_t *shape);
dspi_shapestr dspi_shape_str(const dsp_tensor *t);
int dspi_is_float_dtype(dsp_dtype dt);
int64_t dspi_prod(const int64_t *shape, int n);
int dspi_op_need(dspi_opcall *c, const dsp_tensor *t, const char *name);
int dspi_op_need_dtype(dspi_opcall *c, const dsp_tensor *t, const char *name, int ok,
                       const char *expected);
/* The backend for the tensors ts[0..n) and *out (all on one device). */
const dspi_ops_backend *dspi_op_backend(dspi_opcall *c, dsp_tensor **out,
                                        const dsp_tensor *const *ts, int n, int *rc);
/* t's data laid out contiguously (a copy kept until dspi_op_finish). A
 * strided device tensor is refused (DSP_EUNSUPPORTED) for now. */
const void *dspi_op_contig(dspi_opcall *c, const dsp_tensor *t, int *rc);
/* The result: *out when given (checked), else a new contiguous f32 tensor
 * on the call's device. */
int dspi_op_output(dspi_opcall *c, dsp_tensor **out, int ndim, const int64_t *shape);
/* For checks on the host: d (t's data from dspi_op_contig) on a CPU call, a
 * host copy of it (kept until dspi_op_finish) on a device call; name is for
 * messages. NULL with *rc set on failure. */
const void *dspi_op_host(dspi_opcall *c, const dsp_tensor *t, const void *d, const char *name,
                         int *rc);
int dspi_op_finish(dspi_opcall *c, int rc, dsp_tensor **out);
float *dspi_op_res(dspi_opcall *c);
/* View of b broadcast to a's shape (b's dims align with a's trailing dims). */
int dspi_op_broadcast(dspi_opcall *c, const dsp_tensor *b, const char *bname,
                      const dsp_tensor *a, const char *aname, dspi_bview *v);


/* ---- CPU helpers shared by the kernel files (cpu/convert.c) ------------- */
float dspi_f16_to_f32(uint16_t h);
float dspi_bf16_to_f32(uint16_t h);
/* n elements of a float vector in dt (f32/f16/bf16) starting at element
 * offset first, element stride step, into dst as f32. */
void dspi_load_f32(float *dst, const void *src, dsp_dtype dt, int64_t first, int64_t step,
                   int64_t n);

/* y[M,N] = A[M,K] · op(B) with B [N,K] (trans_b) or [K,N], row-major, ldc = N;
 * OpenBLAS above a measured size, a direct loop below it (cpu/gemm.c). */
void dspi_sgemm(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                const float *B, int64_t ldb, float *C, int64_t ldc);
/* The same, accumulating: C += A · op(B). */
void dspi_sgemm_acc(int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float *C, int64_t ldc);

/* The CPU kernels (files under cpu/), gathered into dspi_ops_cpu by cpu/backend.c. */
int dspi_cpu_linear(const float *x, int64_t M, int64_t K, const void *w, dsp_dtype wdt,
                    int64_t N, const void *b, dsp_dtype bdt, float *y);
int dspi_cpu_matmul(const float *a, const float *b, int64_t nbatch, const int64_t *a_off,
                    const int64_t *b_off, int64_t m, int64_t k, int64_t n, int transpose_b,
                    float *c);
int dspi_cpu_softmax(const float *x, const dspi_bview *mask, int64_t rows, int64_t n,
                     float *out);
int dspi_cpu_layernorm(const float *x, int64_t rows, int64_t n, const void *w, const void *b,
                       dsp_dtype wdt, dsp_dtype bdt, float eps, float *out);
int dspi_cpu_rmsnorm(const float *x, int64_t rows, int64_t n, const void *w, dsp_dtype wdt,
                     float eps, float *out);
int dspi_cpu_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *out);
int dspi_cpu_silu(const float *x, int64_t n, float *out);
int dspi_cpu_relu(const float *x, int64_t n, float *out);
int dspi_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out);
int dspi_cpu_add(const float *a, const dspi_bview *b, float *out);
int dspi_cpu_mul(const float *a, const dspi_bview *b, float *out);
int dspi_cpu_embedding(const void *ids, dsp_dtype idt, int64_t nids, const void *table,
                       dsp_dtype tdt, int64_t s0, int64_t s1, int64_t dim, float *out);
int dspi_cpu_rope(const float *x, int64_t batch, int64_t heads, int64_t seq, int64_t hd,
                  const void *pos, dsp_dtype pdt, int pos_batched, float base, int rot_dims,
                  float *out);

#endif /* DSPIPE_OPS_INT_H */
