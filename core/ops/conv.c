/* conv.c - the public convolution-family operators of dspipe/ops.h: conv2d/3d, pooling, batch norm, upsampling (checks and backend calls). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "ops/conv_int.h"

static const char *const dim_names2[] = {"h", "w"};
static const char *const dim_names3[] = {"d", "h", "w"};

/* Name of spatial dim d (of nsp) for messages. */
static const char *sp_name(int nsp, int d)
{
    return nsp == 2 ? dim_names2[d] : dim_names3[d];
}

/* Fill g->in from x [n, c, spatial...] as 3-D (depth 1 for 2-D) and the
 * per-dim parameters with their neutral values. */
static void geom_init(dspi_conv_geom *g, const dsp_tensor *x, int nsp)
{
    memset(g, 0, sizeof *g);
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->groups = 1;
    for (int d = 0; d < 3; d++) {
        g->in[d] = g->k[d] = g->out[d] = 1;
        g->stride[d] = g->dil[d] = 1;
    }
    for (int d = 0; d < nsp; d++)
        g->in[3 - nsp + d] = x->shape[2 + d];
}

/* Output length of a (dilated) window sliding over a padded dim, or -1
 * when the window does not fit even once. */
static int64_t slide_len(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil)
{
    int64_t span = dil * (k - 1) + 1;
    if (in + 2 * p < span)
        return -1;
    return (in + 2 * p - span) / s + 1;
}

/* DSPIPE_CONV into *algo; fails naming the setting when it is unknown. */
static int conv_algo_from_env(dspi_opcall *c, int *algo)
{
    static const char *const names[] = {"auto", "im2col", "winograd"};
    const char *env = getenv("DSPIPE_CONV");
    *algo = DSPI_CONV_AUTO;
    if (!env || !*env)
        return 0;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(env, names[i])) {
            *algo = i;
            return 0;
        }
    return dspi_op_fail(c, DSP_EINVAL, "DSPIPE_CONV=%s: expected auto, im2col or winograd", env);
}

static int conv_nd(const char *op, int nsp, const dsp_tensor *x, const dsp_tensor *w,
                   const dsp_tensor *b, const dsp_conv_opts *opts, dsp_tensor **out)
{
    static const dsp_conv_opts defaults;
    dspi_opcall c;
    dspi_conv_geom g;
    int rc;
    dspi_op_begin(&c, op);
    if (!opts)
        opts = &defaults;
    if ((rc = dspi_op_need(&c, x, "x")) < 0 || (rc = dspi_op_need(&c, w, "w")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0 ||
        (rc = dspi_op_need_dtype(&c, w, "w", dspi_is_float_dtype(w->dtype),
                                 "f32, f16 or bf16")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (x->ndim != nsp + 2 || w->ndim != nsp + 2) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects x %s and w %s, got x %s and w %s",
                          nsp == 2 ? "[n, c, h, w]" : "[n, c, d, h, w]",
                          nsp == 2 ? "[oc, c / groups, kh, kw]" : "[oc, c / groups, kd, kh, kw]",
                          dspi_shape_str(x).s, dspi_shape_str(w).s);
        return dspi_op_finish(&c, rc, out);
    }
    geom_init(&g, x, nsp);
    if ((rc = conv_algo_from_env(&c, &g.algo)) < 0)
        return dspi_op_finish(&c, rc, out);
    g.groups = opts->groups ? opts->groups : 1;
    g.oc = w->shape[0];
    if (g.groups < 1) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "groups is %d, expected at least 1", opts->groups);
        return dspi_op_finish(&c, rc, out);
    }
    if (g.c % g.groups || g.oc % g.groups) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "channels not divisible by groups %lld: x %s has %lld,"
                          " w %s has %lld output channels", (long long)g.groups,
                          dspi_shape_str(x).s, (long long)g.c, dspi_shape_str(w).s,
                          (long long)g.oc);
        return dspi_op_finish(&c, rc, out);
    }
    if (w->shape[1] != g.c / g.groups) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "w %s expects %lld input channels per group, x %s has"
                          " %lld (%lld channels / %lld groups)", dspi_shape_str(w).s,
                          (long long)w->shape[1], dspi_shape_str(x).s,
                          (long long)(g.c / g.groups), (long long)g.c, (long long)g.groups);
        return dspi_op_finish(&c, rc, out);
    }
    int64_t shape[5] = {g.n, g.oc};
    for (int d = 0; d < nsp; d++) {
        int gd = 3 - nsp + d;
        int s = opts->stride[d] ? opts->stride[d] : 1, dl = opts->dilation[d] ? opts->dilation[d] : 1;
        if (s < 0 || dl < 0 || opts->padding[d] < 0 || w->shape[2 + d] < 1) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "dim %s: stride %d, padding %d, dilation %d and"
                              " kernel %lld must not be negative (kernel at least 1)",
                              sp_name(nsp, d), opts->stride[d], opts->padding[d],
                              opts->dilation[d], (long long)w->shape[2 + d]);
            return dspi_op_finish(&c, rc, out);
        }
        g.k[gd] = w->shape[2 + d];
        g.stride[gd] = s;
        g.pad[gd] = opts->padding[d];
        g.dil[gd] = dl;
        g.out[gd] = slide_len(g.in[gd], g.k[gd], s, g.pad[gd], dl);
        if (g.out[gd] < 1) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "kernel larger than the padded input at dim %s:"
                              " w %s spans %lld (dilation %d), x %s padded by %d gives %lld",
                              sp_name(nsp, d), dspi_shape_str(w).s,
                              (long long)(dl * (g.k[gd] - 1) + 1), dl, dspi_shape_str(x).s,
                              opts->padding[d], (long long)(g.in[gd] + 2 * g.pad[gd]));
            return dspi_op_finish(&c, rc, out);
        }
        shape[2 + d] = g.out[gd];
    }
    if (b) {
        if ((rc = dspi_op_need(&c, b, "b")) < 0 ||
            (rc = dspi_op_need_dtype(&c, b, "b", dspi_is_float_dtype(b->dtype),
                                     "f32, f16 or bf16")) < 0)
            return dspi_op_finish(&c, rc, out);
        if (b->ndim != 1 || b->shape[0] != g.oc) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "b %s does not match w %s (expects [%lld])",
                              dspi_shape_str(b).s, dspi_shape_str(w).s, (long long)g.oc);
            return dspi_op_finish(&c, rc, out);
        }
    }
    const dsp_tensor *ts[] = {x, w, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 3, &rc);
    if (!be || (rc = dspi_op_output(&c, out, nsp + 2, shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *wd, *bd = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(wd = dspi_op_contig(&c, w, &rc)) ||
        (b && !(bd = dspi_op_contig(&c, b, &rc))))
        return dspi_op_finish(&c, rc, out);
    g.w_src = wd == dsp_tensor_data(w) ? w : NULL;
    rc = be->conv(xd, wd, w->dtype, bd, b ? b->dtype : DSP_DTYPE_F32, &g, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_conv2d(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
               const dsp_conv_opts *opts, dsp_tensor **out)
{
    return conv_nd("conv2d", 2, x, w, b, opts, out);
}

int dsp_conv3d(const dsp_tensor *x, const dsp_tensor *w, const dsp_tensor *b,
               const dsp_conv_opts *opts, dsp_tensor **out)
{
    return conv_nd("conv3d", 3, x, w, b, opts, out);
}

/* The checks every spatial operator shares: x f32 and 4-D or 5-D. Returns
 * the number of spatial dims, or a negative code with the message set. */
static int need_spatial_x(dspi_opcall *c, const dsp_tensor *x)
{
    int rc;
    if ((rc = dspi_op_need(c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return rc;
    if (x->ndim != 4 && x->ndim != 5)
        return dspi_op_fail(c, DSP_EINVAL, "expects x [n, c, h, w] or [n, c, d, h, w], got x %s",
                            dspi_shape_str(x).s);
    return x->ndim - 2;
}

/* Output of a spatial operator: [n, c, g->out (last nsp dims)], then the
 * contiguous input; *be is the backend. NULL with *rc set on failure. */
static const float *spatial_io(dspi_opcall *c, const dsp_tensor *x, const dspi_conv_geom *g,
                               int nsp, dsp_tensor **out, const dspi_ops_backend **be, int *rc)
{
    int64_t shape[5] = {g->n, g->c};
    for (int d = 0; d < nsp; d++)
        shape[2 + d] = g->out[3 - nsp + d];
    const dsp_tensor *ts[] = {x};
    if (!(*be = dspi_op_backend(c, out, ts, 1, rc)) ||
        (*rc = dspi_op_output(c, out, nsp + 2, shape)) < 0)
        return NULL;
    return dspi_op_contig(c, x, rc);
}

int dsp_pool(const dsp_tensor *x, dsp_pool_kind kind, const int *kernel, const int *stride,
             const int *padding, dsp_tensor **out)
{
    dspi_opcall c;
    dspi_conv_geom g;
    int rc, nsp;
    dspi_op_begin(&c, "pool");
    if ((rc = nsp = need_spatial_x(&c, x)) < 0)
        return dspi_op_finish(&c, rc, out);
    if (kind != DSP_POOL_MAX && kind != DSP_POOL_AVG) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "unknown pool kind %d", (int)kind);
        return dspi_op_finish(&c, rc, out);
    }
    if (!kernel) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "kernel is NULL");
        return dspi_op_finish(&c, rc, out);
    }
    geom_init(&g, x, nsp);
    for (int d = 0; d < nsp; d++) {
        int gd = 3 - nsp + d, k = kernel[d], s = stride && stride[d] ? stride[d] : k;
        int p = padding ? padding[d] : 0;
        if (k < 1 || s < 1 || p < 0 || p > k / 2) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "dim %s: kernel %d, stride %d, padding %d (expects"
                              " kernel and stride >= 1 and 0 <= padding <= kernel / 2)",
                              sp_name(nsp, d), k, s, p);
            return dspi_op_finish(&c, rc, out);
        }
        g.k[gd] = k;
        g.stride[gd] = s;
        g.pad[gd] = p;
        g.out[gd] = slide_len(g.in[gd], k, s, p, 1);
        if (g.out[gd] < 1) {
            rc = dspi_op_fail(&c, DSP_EINVAL, "kernel larger than the padded input at dim %s:"
                              " kernel %d, x %s padded by %d gives %lld", sp_name(nsp, d), k,
                              dspi_shape_str(x).s, p, (long long)(g.in[gd] + 2 * p));
            return dspi_op_finish(&c, rc, out);
        }
    }
    const dspi_ops_backend *be = NULL;
    const float *xd = spatial_io(&c, x, &g, nsp, out, &be, &rc);
    if (!xd)
        return dspi_op_finish(&c, rc, out);
    rc = be->pool(xd, kind, &g, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* Read out_size[0..nsp) into g->out, each at least 1; the spatial dims of
 * x (already in g->in) must not be empty: there is nothing to resize. */
static int need_out_size(dspi_opcall *c, const dsp_tensor *x, const int *out_size, int nsp,
                         dspi_conv_geom *g)
{
    if (!out_size)
        return dspi_op_fail(c, DSP_EINVAL, "out_size is NULL");
    for (int d = 0; d < nsp; d++) {
        if (out_size[d] < 1)
            return dspi_op_fail(c, DSP_EINVAL, "out_size %d at dim %s, expected at least 1",
                                out_size[d], sp_name(nsp, d));
        g->out[3 - nsp + d] = out_size[d];
    }
    for (int d = 0; d < nsp; d++)
        if (g->in[3 - nsp + d] < 1)
            return dspi_op_fail(c, DSP_EINVAL, "x %s is empty at dim %s",
                                dspi_shape_str(x).s, sp_name(nsp, d));
    return 0;
}

/* The common start of the ops whose output size is given (adaptive pooling,
 * upsampling): checks x, the mode (mode_ok false: "unknown <what> <mode>")
 * and out_size, makes the output and returns x's data; NULL with *rc set on
 * an error. */
static const float *sized_io(dspi_opcall *c, const dsp_tensor *x, int mode_ok, const char *what,
                             int mode, const int *out_size, dspi_conv_geom *g, dsp_tensor **out,
                             const dspi_ops_backend **be, int *rc)
{
    int nsp;
    if ((*rc = nsp = need_spatial_x(c, x)) < 0)
        return NULL;
    if (!mode_ok) {
        *rc = dspi_op_fail(c, DSP_EINVAL, "unknown %s %d", what, mode);
        return NULL;
    }
    geom_init(g, x, nsp);
    if ((*rc = need_out_size(c, x, out_size, nsp, g)) < 0)
        return NULL;
    return spatial_io(c, x, g, nsp, out, be, rc);
}

int dsp_adaptive_pool(const dsp_tensor *x, dsp_pool_kind kind, const int *out_size,
                      dsp_tensor **out)
{
    dspi_opcall c;
    dspi_conv_geom g;
    const dspi_ops_backend *be = NULL;
    int rc;
    dspi_op_begin(&c, "adaptive_pool");
    const float *xd = sized_io(&c, x, kind == DSP_POOL_MAX || kind == DSP_POOL_AVG, "pool kind",
                               (int)kind, out_size, &g, out, &be, &rc);
    if (xd)
        rc = be->adaptive_pool(xd, kind, &g, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

int dsp_upsample(const dsp_tensor *x, const int *out_size, dsp_upsample_mode mode,
                 int align_corners, dsp_tensor **out)
{
    dspi_opcall c;
    dspi_conv_geom g;
    const dspi_ops_backend *be = NULL;
    int rc;
    dspi_op_begin(&c, "upsample");
    const float *xd = sized_io(&c, x, mode == DSP_UPSAMPLE_NEAREST || mode == DSP_UPSAMPLE_LINEAR,
                               "upsample mode", (int)mode, out_size, &g, out, &be, &rc);
    if (xd)
        rc = be->upsample(xd, &g, mode, align_corners, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}

/* A per-channel batch-norm parameter: float dtype, shape [c]. */
static int need_channel_param(dspi_opcall *c, const dsp_tensor *p, const char *name,
                              const dsp_tensor *x)
{
    int rc;
    if ((rc = dspi_op_need(c, p, name)) < 0 ||
        (rc = dspi_op_need_dtype(c, p, name, dspi_is_float_dtype(p->dtype),
                                 "f32, f16 or bf16")) < 0)
        return rc;
    if (p->ndim != 1 || p->shape[0] != x->shape[1])
        return dspi_op_fail(c, DSP_EINVAL, "%s %s does not match the %lld channels of x %s",
                            name, dspi_shape_str(p).s, (long long)x->shape[1],
                            dspi_shape_str(x).s);
    return 0;
}

int dsp_batchnorm(const dsp_tensor *x, const dsp_tensor *mean, const dsp_tensor *var,
                  const dsp_tensor *w, const dsp_tensor *b, float eps, dsp_tensor **out)
{
    dspi_opcall c;
    int rc;
    dspi_op_begin(&c, "batchnorm");
    if ((rc = dspi_op_need(&c, x, "x")) < 0 ||
        (rc = dspi_op_need_dtype(&c, x, "x", x->dtype == DSP_DTYPE_F32, "f32")) < 0)
        return dspi_op_finish(&c, rc, out);
    if (x->ndim < 2) {
        rc = dspi_op_fail(&c, DSP_EINVAL, "expects x [n, c, ...], got x %s", dspi_shape_str(x).s);
        return dspi_op_finish(&c, rc, out);
    }
    if ((rc = need_channel_param(&c, mean, "mean", x)) < 0 ||
        (rc = need_channel_param(&c, var, "var", x)) < 0 ||
        (w && (rc = need_channel_param(&c, w, "w", x)) < 0) ||
        (b && (rc = need_channel_param(&c, b, "b", x)) < 0))
        return dspi_op_finish(&c, rc, out);
    const dsp_tensor *ts[] = {x, mean, var, w, b};
    const dspi_ops_backend *be = dspi_op_backend(&c, out, ts, 5, &rc);
    if (!be || (rc = dspi_op_output(&c, out, x->ndim, x->shape)) < 0)
        return dspi_op_finish(&c, rc, out);
    const void *xd, *md, *vd, *wd = NULL, *bd = NULL;
    if (!(xd = dspi_op_contig(&c, x, &rc)) || !(md = dspi_op_contig(&c, mean, &rc)) ||
        !(vd = dspi_op_contig(&c, var, &rc)) || (w && !(wd = dspi_op_contig(&c, w, &rc))) ||
        (b && !(bd = dspi_op_contig(&c, b, &rc))))
        return dspi_op_finish(&c, rc, out);
    rc = be->batchnorm(xd, x->shape[0], x->shape[1], dspi_prod(x->shape + 2, x->ndim - 2),
                            md, mean->dtype, vd, var->dtype, wd, w ? w->dtype : DSP_DTYPE_F32,
                            bd, b ? b->dtype : DSP_DTYPE_F32, eps, dspi_op_res(&c));
    return dspi_op_finish(&c, rc, out);
}
