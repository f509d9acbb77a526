/* seq.c - the graph and sequence operators of dspipe/ops.h (dsp_csr_aggregate, dsp_lstm): argument checks and backend calls. */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops/seq_int.h"

static int is_index_dtype(dsp_dtype dt)
{
    return dt == DSP_DTYPE_I32 || dt == DSP_DTYPE_I64;
}

static inline int64_t idx_at(const void *p, dsp_dtype dt, int64_t i)
{
    return dt == DSP_DTYPE_I64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

/* ---- dsp_csr_aggregate --------------------------------------------------- */

/* The CSR structure itself: every message names the offending position,
 * since a bad graph usually comes from a bug far upstream. */
static int csr_validate(dspi_opcall *c, const void *ip, dsp_dtype pdt, int64_t n,
                        const void *ix, dsp_dtype idt, int64_t nnz, int64_t num_src)
{
    if (idx_at(ip, pdt, 0) != 0)
        return dspi_op_fail(c, DSP_EINVAL, "indptr[0] is %lld, expected 0",
                            (long long)idx_at(ip, pdt, 0));
    for (int64_t i = 0; i < n; i++) {
        int64_t a = idx_at(ip, pdt, i), b = idx_at(ip, pdt, i + 1);
        if (b < a)
            return dspi_op_fail(c, DSP_EINVAL, "indptr decreases at position %lld: "
                                "indptr[%lld] = %lld < indptr[%lld] = %lld", (long long)(i + 1),
                                (long long)(i + 1), (long long)b, (long long)i, (long long)a);
    }
    if (idx_at(ip, pdt, n) != nnz)
        return dspi_op_fail(c, DSP_EINVAL, "indptr[%lld] (the last) is %lld, expected nnz = %lld "
                            "(the length of indices)", (long long)n,
                            (long long)idx_at(ip, pdt, n), (long long)nnz);
    for (int64_t j = 0; j < nnz; j++) {
        int64_t v = idx_at(ix, idt, j);
        if (v < 0 || v >= num_src)
            return dspi_op_fail(c, DSP_EINVAL, "index %lld at position %lld of indices is "
                                "outside [0, %lld) (x has %lld rows)", (long long)v,
                                (long long)j, (long long)num_src, (long long)num_src);
    }
    return 0;
}

int dsp_csr_aggregate(const dsp_tensor *indptr, const dsp_tensor *indices, const dsp_tensor *x,
                      const dsp_tensor *edge_weight, dsp_agg_kind kind, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "csr_aggregate");
    if ((rc = dspi_op_need(&c, indptr, "indptr")) < 0 ||
        (rc = dspi_op_need(&c, indices, "indices")) < 0 || (rc = dspi_op_need(&c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(&c, indptr, "indptr", is_index_dtype(indptr->dtype),
                                 "i32 or i64")) < 0 ||
        (rc = dspi_op_need_dtype(&c, indices, "indices", is_index_dtype(indices->dtype),
                                 "i32 or i64")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (indptr->ndim != 1 || indptr->shape[0] < 1 || indices->ndim != 1 || x->ndim != 2) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects indptr [n + 1], indices [nnz] and x "
                          "[num_src, f], got indptr %s, indices %s and x %s",
                          dspi_shape_str(indptr).s, dspi_shape_str(indices).s,
                          dspi_shape_str(x).s);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t n = indptr->shape[0] - 1, nnz = indices->shape[0];
    if (edge_weight) {
        if ((rc = dspi_op_need(&c, edge_weight, "edge_weight")) < 0 ||
            (rc = dspi_op_need_dtype(&c, edge_weight, "edge_weight",
                                     edge_weight->dtype == DSP_DTYPE_F32, "f32")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (edge_weight->ndim != 1 || edge_weight->shape[0] != nnz) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "edge_weight %s does not match indices %s "
                              "(expects [%lld])", dspi_shape_str(edge_weight).s,
                              dspi_shape_str(indices).s, (long long)nnz);
            return dspi_op_finish(&c, rc, out);
        }
    }
    if (kind != DSP_AGG_SUM && kind != DSP_AGG_MEAN && kind != DSP_AGG_MAX)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "unknown aggregation kind %d",
                                               (int)kind), out);
    const dsp_tensor *ts[] = {indptr, indices, x, edge_weight};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 4, &rc);
    if (!be)
        return dspi_op_finish(&c, rc, out);
    const void *ipd, *ixd, *xd, *ewd = NULL, *iph, *ixh;
    if (!(ipd = dspi_op_contig(&c, indptr, &rc)) || !(ixd = dspi_op_contig(&c, indices, &rc)) ||
        !(xd = dspi_op_contig(&c, x, &rc)) ||
        (edge_weight && !(ewd = dspi_op_contig(&c, edge_weight, &rc))))
        return dspi_op_finish(&c, rc, out);
    /* on CUDA the structure is checked on a host copy: a bad index must
     * never reach a kernel, and the message names it as on the CPU */
    if (!(iph = dspi_op_host(&c, indptr, ipd, "indptr", &rc)) ||
        !(ixh = dspi_op_host(&c, indices, ixd, "indices", &rc)))
        return dspi_op_finish(&c, rc, out);
    if ((rc = csr_validate(&c, iph, indptr->dtype, n, ixh, indices->dtype, nnz,
                           x->shape[0])) < 0)
        return dspi_op_finish(&c, rc, out);
    int64_t shape[2] = {n, x->shape[1]};
    if ((rc = dspi_op_output(&c, out, 2, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    rc = be->csr_aggregate(ipd, indptr->dtype, ixd, indices->dtype, n, xd, x->shape[1],
                                ewd, kind, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* ---- dsp_lstm ------------------------------------------------------------ */

/* One direction's weights against x's input size; sets *h on the first
 * direction and checks the second against it. */
static int lstm_check_dir(dspi_opcall *c, const dsp_lstm_weights *w, const char *dir,
                          int64_t in, int64_t *h)
{
    int rc;
    char nm[4][24];
    const dsp_tensor *ts[4] = {w->w_ih, w->w_hh, w->b_ih, w->b_hh};
    static const char *const base[4] = {"w_ih", "w_hh", "b_ih", "b_hh"};
    for (int k = 0; k < 4; k++) {
        snprintf(nm[k], sizeof nm[k], "%s%s", base[k], dir);
        if (k >= 2 && !ts[k])
            continue;
        if ((rc = dspi_op_need(c, ts[k], nm[k])) < 0 ||
            (rc = dspi_op_need_dtype(c, ts[k], nm[k], dspi_is_float_dtype(ts[k]->dtype),
                                     "f32, f16 or bf16")) < 0)
            return rc;
    }
    const dsp_tensor *wi = w->w_ih, *wh = w->w_hh;
    if (wi->ndim != 2 || wi->shape[0] < 4 || wi->shape[0] % 4 || wi->shape[1] != in ||
        (*h && wi->shape[0] != 4 * *h))
        return dspi_op_fail(c, DSP_EINVAL, "%s %s must be [4h, in] with in = %lld from x%s",
                            nm[0], dspi_shape_str(wi).s, (long long)in,
                            *h ? " and h from the forward weights" : "");
    int64_t hh = wi->shape[0] / 4;
    if (wh->ndim != 2 || wh->shape[0] != 4 * hh || wh->shape[1] != hh)
        return dspi_op_fail(c, DSP_EINVAL, "%s %s does not match %s %s (expects [%lld, %lld])",
                            nm[1], dspi_shape_str(wh).s, nm[0], dspi_shape_str(wi).s,
                            (long long)(4 * hh), (long long)hh);
    for (int k = 2; k < 4; k++)
        if (ts[k] && (ts[k]->ndim != 1 || ts[k]->shape[0] != 4 * hh))
            return dspi_op_fail(c, DSP_EINVAL, "%s %s does not match %s %s (expects [%lld])",
                                nm[k], dspi_shape_str(ts[k]).s, nm[0], dspi_shape_str(wi).s,
                                (long long)(4 * hh));
    *h = hh;
    return 0;
}

/* The matrices contiguous; the biases are read through their stride, which
 * also keeps the call within the opcall's eight temporaries (x, lengths and
 * two matrices per direction at most). */
static int lstm_dir_data(dspi_opcall *c, const dsp_lstm_weights *w, dspi_lstm_dir *d)
{
    int rc = 0;
    memset(d, 0, sizeof *d);
    if (!(d->w_ih = dspi_op_contig(c, w->w_ih, &rc)) ||
        !(d->w_hh = dspi_op_contig(c, w->w_hh, &rc)))
        return rc;
    d->b_ih = w->b_ih ? dsp_tensor_data(w->b_ih) : NULL;
    d->b_hh = w->b_hh ? dsp_tensor_data(w->b_hh) : NULL;
    d->bs_ih = w->b_ih ? w->b_ih->stride[0] : 1;
    d->bs_hh = w->b_hh ? w->b_hh->stride[0] : 1;
    d->wdt_ih = w->w_ih->dtype;
    d->wdt_hh = w->w_hh->dtype;
    d->bdt_ih = w->b_ih ? w->b_ih->dtype : DSP_DTYPE_F32;
    d->bdt_hh = w->b_hh ? w->b_hh->dtype : DSP_DTYPE_F32;
    return 0;
}

int dsp_lstm(const dsp_tensor *x, const dsp_lstm_weights *fwd, const dsp_lstm_weights *bwd,
             const dsp_tensor *lengths, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    int64_t *lens = NULL;
    dspi_op_begin(&c, "lstm");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (!fwd)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "fwd is NULL"), out);
    if (x->ndim != 3 || x->shape[2] < 1) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "x %s must be [batch, seq, in] (batch_first)",
                          dspi_shape_str(x).s);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t B = x->shape[0], T = x->shape[1], in = x->shape[2], h = 0;
    if ((rc = lstm_check_dir(&c, fwd, "", in, &h)) < 0 ||
        (bwd && (rc = lstm_check_dir(&c, bwd, "_reverse", in, &h)) < 0))
        return dspi_op_finish(&c, rc, out);
    if (lengths) {
        if ((rc = dspi_op_need(&c, lengths, "lengths")) < 0 ||
            (rc = dspi_op_need_dtype(&c, lengths, "lengths", is_index_dtype(lengths->dtype),
                                     "i32 or i64")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (lengths->ndim != 1 || lengths->shape[0] != B) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "lengths %s does not match x %s (expects [%lld])",
                              dspi_shape_str(lengths).s, dspi_shape_str(x).s, (long long)B);
            return dspi_op_finish(&c, rc, out);
        }
    }
    const dsp_tensor *ts[] = {x, fwd->w_ih, fwd->w_hh, fwd->b_ih, fwd->b_hh, lengths,
                              bwd ? bwd->w_ih : NULL, bwd ? bwd->w_hh : NULL,
                              bwd ? bwd->b_ih : NULL, bwd ? bwd->b_hh : NULL};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 10, &rc);
    if (!be)
        return dspi_op_finish(&c, rc, out);
    if (lengths) {
        const void *ld = dspi_op_contig(&c, lengths, &rc);
        if (!ld || !(ld = dspi_op_host(&c, lengths, ld, "lengths", &rc)))
            return dspi_op_finish(&c, rc, out);
        lens = malloc((size_t)(B > 0 ? B : 1) * sizeof *lens);
        if (!lens)
            return dspi_op_finish(&c, dspi_op_fail(&c, DSP_ENOMEM, "out of memory"), out);
        for (int64_t b = 0; b < B; b++) {
            lens[b] = idx_at(ld, lengths->dtype, b);
            if (lens[b] < 0 || lens[b] > T) {
                rc = dspi_op_fail(&c, DSP_EINVAL, "length %lld at position %lld of lengths is "
                                  "outside [0, %lld] (seq of x %s)", (long long)lens[b],
                                  (long long)b, (long long)T, dspi_shape_str(x).s);
                goto done;
            }
        }
    }
    int ndirs = bwd ? 2 : 1;
    int64_t shape[3] = {B, T, ndirs * h};
    dspi_lstm_dir dirs[2];
    const void *xd;
    if ((rc = dspi_op_output(&c, out, 3, shape)) < 0 || !(xd = dspi_op_contig(&c, x, &rc)) ||
        (rc = lstm_dir_data(&c, fwd, &dirs[0])) < 0 ||
        (bwd && (rc = lstm_dir_data(&c, bwd, &dirs[1])) < 0))
        goto done;
    rc = be->lstm(xd, B, T, in, h, dirs, ndirs, lens, dspi_op_res(&c));
done:
    free(lens);
    return dspi_op_finish(&c, rc, out);
}
