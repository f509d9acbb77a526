/* ops.c - the public numeric operators of dspipe/ops.h: argument checks and backend calls (the machinery is in call.c). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ops/ops_int.h"

/* ---- operators ----------------------------------------------------------- */

int dsp_linear(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "linear");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 || (rc = dspi_op_need(&c, w, "w")) < 0)
        return dspi_op_finish(&c, rc, out);
    if ((rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, w, "w", dspi_is_float_dtype(w->dtype), "f32, f16 or bf16")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (w->ndim != 2 || x->ndim < 1) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects x [..., in] and w [out, in], got x %s and w %s",
                  dspi_shape_str(x).s, dspi_shape_str(w).s);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t K = w->shape[1], N = w->shape[0];
    if (x->shape[x->ndim - 1] != K) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "x %s has %lld features, w %s expects %lld", dspi_shape_str(x).s,
                  (long long)x->shape[x->ndim - 1], dspi_shape_str(w).s, (long long)K);
        return dspi_op_finish(&c, rc, out);
    }
    if (b) {
        if ((rc = dspi_op_need(&c, b, "b")) < 0 ||
            (rc = dspi_op_need_dtype(&c, b, "b", dspi_is_float_dtype(b->dtype), "f32, f16 or bf16")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (b->ndim != 1 || b->shape[0] != N) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "b %s does not match w %s (expects [%lld])",
                      dspi_shape_str(b).s, dspi_shape_str(w).s, (long long)N);
            return dspi_op_finish(&c, rc, out);
        }
    }
    const dsp_tensor *ts[] = {x, w, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 3, &rc);
    if (!be)
        return dspi_op_finish(&c, rc, out);
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    if ((rc = dspi_op_output(&c, out, x->ndim, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *wd, *bd = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(wd = dspi_op_contig(&c, w, &rc)) ||
        (b && !(bd = dspi_op_contig(&c, b, &rc))))
        return dspi_op_finish(&c, rc, out);
    rc = be->linear(xd, dspi_prod(x->shape, x->ndim - 1), K, wd, w->dtype, N, bd,
                    b ? b->dtype : DSP_DTYPE_F32, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_matmul(const dsp_tensor *a, const dsp_tensor *b, int transpose_b, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    int64_t *offs = NULL;
    dspi_op_begin(&c, "matmul");
    if ((rc = dspi_op_need(&c, a, "a")) < 0 || (rc = dspi_op_need(&c, b, "b")) < 0 ||
        (rc = dspi_op_need_dtype(&c, a, "a", a->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, b, "b", b->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (a->ndim < 2 || b->ndim < 2) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "a %s and b %s dspi_op_need at least 2 dims each", dspi_shape_str(a).s,
                  dspi_shape_str(b).s);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t bk = b->shape[b->ndim - (transpose_b ? 1 : 2)];
    int64_t n = b->shape[b->ndim - (transpose_b ? 2 : 1)];
    if (bk != k) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "a %s and b %s%s do not match: a has k = %lld, b has %lld",
                  dspi_shape_str(a).s, dspi_shape_str(b).s, transpose_b ? " (transposed)" : "",
                  (long long)k, (long long)bk);
        return dspi_op_finish(&c, rc, out);
    }
    /* broadcast batch dims, right-aligned as in torch.matmul */
    int abn = a->ndim - 2, bbn = b->ndim - 2, nb = abn > bbn ? abn : bbn;
    int64_t shape[DSP_MAX_DIMS], astr[DSP_MAX_DIMS], bstr[DSP_MAX_DIMS];
    int64_t as = m * k, bs = k * n;
    for (int d = nb - 1; d >= 0; d--) {
        int ad = d - (nb - abn), bd = d - (nb - bbn);
        int64_t ea = ad >= 0 ? a->shape[ad] : 1, eb = bd >= 0 ? b->shape[bd] : 1;
        if (ea != eb && ea != 1 && eb != 1) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "batch dims of a %s and b %s do not broadcast",
                      dspi_shape_str(a).s, dspi_shape_str(b).s);
            return dspi_op_finish(&c, rc, out);
        }
        shape[d] = ea > eb ? ea : eb;
        if (ea == 0 || eb == 0)
            shape[d] = 0;
        astr[d] = ea == 1 ? 0 : as;
        bstr[d] = eb == 1 ? 0 : bs;
        as *= ea;
        bs *= eb;
    }
    shape[nb] = m;
    shape[nb + 1] = n;
    const dsp_tensor *ts[] = {a, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, nb + 2, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *ad, *bdat;
    if (!(ad = dspi_op_contig(&c, a, &rc)) || !(bdat = dspi_op_contig(&c, b, &rc)))
        return dspi_op_finish(&c, rc, out);
    int64_t nbatch = dspi_prod(shape, nb);
    offs = malloc((size_t)(nbatch > 0 ? 2 * nbatch : 1) * sizeof *offs);
    if (!offs)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_ENOMEM, "out of memory"), out);
    for (int64_t i = 0; i < nbatch; i++) {
        int64_t r = i, ao = 0, bo = 0;
        for (int d = nb - 1; d >= 0; d--) {
            int64_t idx = r % shape[d];
            r /= shape[d];
            ao += idx * astr[d];
            bo += idx * bstr[d];
        }
        offs[i] = ao;
        offs[nbatch + i] = bo;
    }
    rc = be->matmul(ad, bdat, nbatch, offs, offs + nbatch, m, k, n, transpose_b, dspi_op_res(&c));
    free(offs);
    return dspi_op_finish(&c, rc, out);
}

int dsp_embedding(const dsp_tensor *ids, const dsp_tensor *table, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "embedding");
    if ((rc = dspi_op_need(&c, ids, "ids")) < 0 || (rc = dspi_op_need(&c, table, "table")) < 0 ||
        (rc = dspi_op_need_dtype(&c, ids, "ids",
                         ids->dtype == DSP_DTYPE_I32 || ids->dtype == DSP_DTYPE_I64,
                         "i32 or i64")) < 0 ||
        (rc = dspi_op_need_dtype(&c, table, "table", dspi_is_float_dtype(table->dtype),
                         "f32, f16 or bf16")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (table->ndim != 2 || ids->ndim >= DSP_MAX_DIMS) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects table [vocab, dim] and ids of at most %d dims, got "
                  "table %s and ids %s", DSP_MAX_DIMS - 1, dspi_shape_str(table).s,
                  dspi_shape_str(ids).s);
        return dspi_op_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {ids, table};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be)
        return dspi_op_finish(&c, rc, out);
    const void *idd = dspi_op_contig(&c, ids, &rc), *idh = idd;
    if (!idd)
        return dspi_op_finish(&c, rc, out);
    int64_t nids = dspi_prod(ids->shape, ids->ndim), vocab = table->shape[0];
    /* device ids: the range check reads a host copy (ids are small next to
     * the table), so a bad id never reaches the gather kernel */
    if (!(idh = dspi_op_host(&c, ids, idd, "ids", &rc)))
        return dspi_op_finish(&c, rc, out);
    for (int64_t i = 0; i < nids; i++) {
        int64_t id = ids->dtype == DSP_DTYPE_I64 ? ((const int64_t *)idh)[i]
                                                 : ((const int32_t *)idh)[i];
        if (id < 0 || id >= vocab) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "id %lld at position %lld of ids %s is outside [0, %lld)"
                      " of table %s", (long long)id, (long long)i, dspi_shape_str(ids).s,
                      (long long)vocab, dspi_shape_str(table).s);
            return dspi_op_finish(&c, rc, out);
        }
    }
    int64_t shape[DSP_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = table->shape[1];
    if ((rc = dspi_op_output(&c, out, ids->ndim + 1, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    /* the table is read through its strides: no copy of a big matrix */
    rc = be->embedding(idd, ids->dtype, nids, dsp_tensor_data(table), table->dtype,
                       table->stride[0], table->stride[1], table->shape[1], dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_softmax(const dsp_tensor *x, const dsp_tensor *mask, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_bview mv;
    dspi_op_begin(&c, "softmax");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (x->ndim < 1) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "x is a scalar, expected at least 1 dim");
        return dspi_op_finish(&c, rc, out);
    }
    if (mask) {
        if ((rc = dspi_op_need(&c, mask, "mask")) < 0 ||
            (rc = dspi_op_need_dtype(&c, mask, "mask",
                             mask->dtype == DSP_DTYPE_U8 || mask->dtype == DSP_DTYPE_BOOL ||
                                 mask->dtype == DSP_DTYPE_F32, "bool, u8 or f32")) < 0 ||
            (rc = dspi_op_broadcast(&c, mask, "mask", x, "x", &mv)) < 0)
            return dspi_op_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {x, mask};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, x->ndim, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd = dspi_op_contig(&c, x, &rc);
    if (!xd)
        return dspi_op_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->softmax(xd, mask ? &mv : NULL, dspi_prod(x->shape, x->ndim - 1), n, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* Shared checks of layernorm and rmsnorm: x f32 [..., dim], v NULL or [dim]. */
static int norm_check(dspi_opcall *c, const dsp_tensor *x, const dsp_tensor *v, const char *name)
{
    int rc;
    if ((rc = dspi_op_need(c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return rc;
    if (x->ndim < 1)
        return dspi_op_fail(c, DSP_EINVAL, "x is a scalar, expected at least 1 dim");
    if (!v)
        return 0;
    if ((rc = dspi_op_need(c, v, name)) < 0 ||
        (rc = dspi_op_need_dtype(c, v, name, dspi_is_float_dtype(v->dtype), "f32, f16 or bf16")) < 0)
        return rc;
    if (v->ndim != 1 || v->shape[0] != x->shape[x->ndim - 1])
        return dspi_op_fail(c, DSP_EINVAL, "%s %s does not match x %s (expects [%lld])", name,
                    dspi_shape_str(v).s, dspi_shape_str(x).s, (long long)x->shape[x->ndim - 1]);
    return 0;
}

int dsp_layernorm(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b, float eps,
                  dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "layernorm");
    if (!w)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "w is NULL"), out);
    if ((rc = norm_check(&c, x, w, "w")) < 0 || (rc = norm_check(&c, x, b, "b")) < 0)
        return dspi_op_finish(&c, rc, out);
    const dsp_tensor *ts[] = {x, w, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 3, &rc);
    if (!be || (rc = dspi_op_output(&c, out, x->ndim, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *wd, *bd = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(wd = dspi_op_contig(&c, w, &rc)) ||
        (b && !(bd = dspi_op_contig(&c, b, &rc))))
        return dspi_op_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->layernorm(xd, dspi_prod(x->shape, x->ndim - 1), n, wd, bd, w->dtype,
                       b ? b->dtype : DSP_DTYPE_F32, eps, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_rmsnorm(const dsp_tensor *x, const dsp_tensor *w, float eps, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "rmsnorm");
    if (!w)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "w is NULL"), out);
    if ((rc = norm_check(&c, x, w, "w")) < 0)
        return dspi_op_finish(&c, rc, out);
    const dsp_tensor *ts[] = {x, w};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, x->ndim, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *wd;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(wd = dspi_op_contig(&c, w, &rc)))
        return dspi_op_finish(&c, rc, out);
    int64_t n = x->shape[x->ndim - 1];
    rc = be->rmsnorm(xd, dspi_prod(x->shape, x->ndim - 1), n, wd, w->dtype, eps, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* unary()'s kind for the activations that have none */
#define UNARY_SILU (-1)
#define UNARY_RELU (-2)

/* gelu, silu and relu (up == NULL) and swiglu share their checks and plumbing. */
static int unary(const char *op, const dsp_tensor *x, const dsp_tensor *up, int kind,
                 dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    const char *xn = up ? "gate" : "x";
    dspi_op_begin(&c, op);
    if ((rc = dspi_op_need(&c, x, xn)) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, xn, x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (up) {
        if ((rc = dspi_op_need(&c, up, "up")) < 0 ||
            (rc = dspi_op_need_dtype(&c, up, "up", up->dtype == DSP_DTYPE_F32, "f32")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (up->ndim != x->ndim ||
            memcmp(up->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "gate %s and up %s differ in shape", dspi_shape_str(x).s,
                      dspi_shape_str(up).s);
            return dspi_op_finish(&c, rc, out);
        }
    }
    if (strcmp(op, "gelu") == 0 && kind != DSP_GELU_EXACT && kind != DSP_GELU_TANH)
        return dspi_op_finish(&c, dspi_op_fail(&c, DSP_EINVAL, "unknown gelu kind %d", kind), out);
    const dsp_tensor *ts[] = {x, up};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, x->ndim, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *ud = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || (up && !(ud = dspi_op_contig(&c, up, &rc))))
        return dspi_op_finish(&c, rc, out);
    int64_t n = dspi_prod(x->shape, x->ndim);
    if (up)
        rc = be->swiglu(xd, ud, n, dspi_op_res(&c));
    else if (kind >= 0)
        rc = be->gelu(xd, n, (dsp_gelu_kind)kind, dspi_op_res(&c));
    else if (kind == UNARY_RELU)
        rc = be->relu(xd, n, dspi_op_res(&c));
    else
        rc = be->silu(xd, n, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_gelu(const dsp_tensor *x, dsp_gelu_kind kind, dsp_tensor **out)
{
    return unary("gelu", x, NULL, (int)kind, out);
}

int dsp_silu(const dsp_tensor *x, dsp_tensor **out)
{
    return unary("silu", x, NULL, UNARY_SILU, out);
}

int dsp_relu(const dsp_tensor *x, dsp_tensor **out)
{
    return unary("relu", x, NULL, UNARY_RELU, out);
}

int dsp_swiglu(const dsp_tensor *gate, const dsp_tensor *up, dsp_tensor **out)
{
    if (!up) {
        dspi_opcall c;
        dspi_op_begin(&c, "swiglu");
        return dspi_op_fail(&c, DSP_EINVAL, "up is NULL");
    }
    return unary("swiglu", gate, up, -1, out);
}

static int binary(const char *op, const dsp_tensor *a, const dsp_tensor *b, int is_mul,
                  dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_bview bv;
    dspi_op_begin(&c, op);
    if ((rc = dspi_op_need(&c, a, "a")) < 0 || (rc = dspi_op_need(&c, b, "b")) < 0 ||
        (rc = dspi_op_need_dtype(&c, a, "a", a->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, b, "b", b->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_broadcast(&c, b, "b", a, "a", &bv)) < 0)
        return dspi_op_finish(&c, rc, out);
    const dsp_tensor *ts[] = {a, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, a->ndim, a->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *ad = dspi_op_contig(&c, a, &rc);
    if (!ad)
        return dspi_op_finish(&c, rc, out);
    rc = is_mul ? be->mul(ad, &bv, dspi_op_res(&c)) : be->add(ad, &bv, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_add(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out)
{
    return binary("add", a, b, 0, out);
}

int dsp_mul(const dsp_tensor *a, const dsp_tensor *b, dsp_tensor **out)
{
    return binary("mul", a, b, 1, out);
}

int dsp_rope(const dsp_tensor *x, const dsp_tensor *pos, float base, int rot_dims,
             dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "rope");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 || (rc = dspi_op_need(&c, pos, "pos")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, pos, "pos",
                         pos->dtype == DSP_DTYPE_I32 || pos->dtype == DSP_DTYPE_I64,
                         "i32 or i64")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (x->ndim != 4) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "x %s must be [batch, heads, seq, head_dim]", dspi_shape_str(x).s);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t B = x->shape[0], S = x->shape[2], hd = x->shape[3];
    int batched = pos->ndim == 2;
    if (!((pos->ndim == 1 && pos->shape[0] == S) ||
          (batched && pos->shape[0] == B && pos->shape[1] == S))) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "pos %s does not match x %s (expects [%lld] or [%lld, %lld])",
                  dspi_shape_str(pos).s, dspi_shape_str(x).s, (long long)S, (long long)B, (long long)S);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t rd = rot_dims == 0 ? hd : rot_dims;
    if (rd < 0 || rd > hd || rd % 2) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "rot_dims %d must be even and at most head_dim %lld of x %s",
                  rot_dims, (long long)hd, dspi_shape_str(x).s);
        return dspi_op_finish(&c, rc, out);
    }
    if (!(base > 0.0f)) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "base %g must be positive", (double)base);
        return dspi_op_finish(&c, rc, out);
    }
    const dsp_tensor *ts[] = {x, pos};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 2, &rc);
    if (!be || (rc = dspi_op_output(&c, out, 4, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *pd;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(pd = dspi_op_contig(&c, pos, &rc)))
        return dspi_op_finish(&c, rc, out);
    rc = be->rope(xd, B, x->shape[1], S, hd, pd, pos->dtype, batched, base, (int)rd,
                  dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}
