/* seq_csr.c - CPU sum / mean / max aggregation of feature rows over CSR neighbourhoods (GNN message passing). */
#include <math.h>
#include <string.h>
#include "ops/seq_int.h"

static inline int64_t idx_at(const void *p, dsp_dtype dt, int64_t i)
{
    return dt == DSP_DTYPE_I64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

int dspi_cpu_csr_aggregate(const void *indptr, dsp_dtype ptr_dt, const void *indices,
                           dsp_dtype idx_dt, int64_t n, const float *x, int64_t f,
                           const float *ew, dsp_agg_kind kind, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = idx_at(indptr, ptr_dt, i), hi = idx_at(indptr, ptr_dt, i + 1);
        float *o = out + i * f;
        if (lo == hi) {
            memset(o, 0, (size_t)f * sizeof *o);   /* no neighbours: zeros for every kind */
            continue;
        }
        if (kind == DSP_AGG_MAX) {
            /* seeded with the first neighbour, not -inf, so that a node whose
             * messages are all -inf still reports -inf like scatter_reduce */
            const float *r = x + idx_at(indices, idx_dt, lo) * f;
            float w = ew ? ew[lo] : 1.0f;
            for (int64_t k = 0; k < f; k++)
                o[k] = w * r[k];
            for (int64_t j = lo + 1; j < hi; j++) {
                r = x + idx_at(indices, idx_dt, j) * f;
                w = ew ? ew[j] : 1.0f;
                for (int64_t k = 0; k < f; k++) {
                    float v = w * r[k];
                    if (v > o[k] || isnan(v))   /* NaN propagates as in torch.amax */
                        o[k] = v;
                }
            }
            continue;
        }
        /* edges in CSR order: the same summation order as index_add_ */
        memset(o, 0, (size_t)f * sizeof *o);
        for (int64_t j = lo; j < hi; j++) {
            const float *r = x + idx_at(indices, idx_dt, j) * f;
            if (ew) {
                float w = ew[j];
                for (int64_t k = 0; k < f; k++)
                    o[k] += w * r[k];
            } else {
                for (int64_t k = 0; k < f; k++)
                    o[k] += r[k];
            }
        }
        if (kind == DSP_AGG_MEAN) {
            float cnt = (float)(hi - lo);
            for (int64_t k = 0; k < f; k++)
                o[k] /= cnt;
        }
    }
    return 0;
}
