/* seq_int.h - CPU kernels of the graph and sequence operators (CSR aggregation, LSTM) behind ops/seq.c (not API). */
#ifndef DSPIPE_SEQ_INT_H
#define DSPIPE_SEQ_INT_H

#include "ops/ops_int.h"

/* out[i,:] = aggregate over j in [indptr[i], indptr[i+1]) of
 * ew[j] * x[indices[j],:] (ew NULL: weight 1). indptr (ptr_dt) [n+1] and
 * indices (idx_dt) already validated; x [num_src, f] contiguous f32. */
int dspi_cpu_csr_aggregate(const void *indptr, dsp_dtype ptr_dt, const void *indices,
                           dsp_dtype idx_dt, int64_t n, const float *x, int64_t f,
                           const float *ew, dsp_agg_kind kind, float *out);

/* One direction's weights: w_ih [4h, in] and w_hh [4h, h] contiguous in
 * wdt_ih / wdt_hh (f32/f16/bf16); b_ih / b_hh [4h] or NULL, element
 * strides bs_ih / bs_hh. */
typedef struct dspi_lstm_dir {
    const void *w_ih, *w_hh, *b_ih, *b_hh;
    dsp_dtype wdt_ih, wdt_hh, bdt_ih, bdt_hh;
    int64_t bs_ih, bs_hh;
} dspi_lstm_dir;

/* x [batch, seq, in] contiguous f32; dirs[0] forward, dirs[1] (ndirs 2)
 * reverse; lengths [batch] already in [0, seq] or NULL (all seq).
 * out [batch, seq, ndirs * h]. */
int dspi_cpu_lstm(const float *x, int64_t batch, int64_t seq, int64_t in, int64_t h,
                  const dspi_lstm_dir *dirs, int ndirs, const int64_t *lengths, float *out);

#endif /* DSPIPE_SEQ_INT_H */
