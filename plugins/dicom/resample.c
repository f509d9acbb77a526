/* resample.c - dicom.resample: trilinear resampling of a volume to a given voxel spacing. */
#include "dicom.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct resample_ctx {
    char *name;
    dsp_list spacing;
    int64_t max_voxels;
} resample_ctx;

static const dsp_param_def resample_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(resample_ctx, name), .doc = "the f32 [D, H, W] tensor to resample" },
    { .name = "spacing_mm", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_FLOAT, .def = "[1.0]",
      .min = 1e-3, .max = 1e4, .offset = offsetof(resample_ctx, spacing),
      .doc = "new spacing: one value for all axes, or [slice, row, column] in mm" },
    { .name = "max_voxels", .type = DSP_PARAM_INT, .def = "2147483648", .min = 1, .max = 1e13,
      .offset = offsetof(resample_ctx, max_voxels),
      .doc = "refuse outputs with more voxels (a tiny spacing on a large volume)" },
    { NULL }
};

static const dsp_port_def resample_in[] = {
    { "in", "any", "a packet with an f32 volume and meta spacing_mm (dicom.read)" }, { NULL }
};
static const dsp_port_def resample_out[] = {
    { "out", "volume", "the resampled volume; meta spacing_mm, slices, rows, cols updated" },
    { NULL }
};

static int resample_init(dsp_node *node)
{
    resample_ctx *c = dsp_node_priv(node);
    if (c->spacing.n != 1 && c->spacing.n != 3)
        return dsp_node_fail(node, DSP_EINVAL, "spacing_mm takes 1 or 3 values, got %d",
                             c->spacing.n);
    return 0;
}

/* Output voxel k sits at k * new_spacing from the first input voxel centre
 * (the origin is kept); the output covers the input extent n * spacing. */
static int64_t out_size(int64_t n, double sp, double nsp)
{
    int64_t m = (int64_t)floor(n * sp / nsp + 0.5);
    return m < 1 ? 1 : m;
}

static void axis_weights(int64_t n_in, double sp, double nsp, int64_t k, int64_t *i0, double *w)
{
    double x = k * nsp / sp;
    if (x > n_in - 1)
        x = (double)(n_in - 1);
    *i0 = (int64_t)floor(x);
    if (*i0 >= n_in - 1) {
        *i0 = n_in > 1 ? n_in - 2 : 0;
        *w = n_in > 1 ? 1.0 : 0.0;
    } else {
        *w = x - *i0;
    }
}

static int resample_process(dsp_node *node, dsp_packet **in)
{
    resample_ctx *c = dsp_node_priv(node);
    dsp_tensor *x = dsp_packet_tensor(in[0], c->name);
    char desc[96];
    long long item = (long long)dsp_packet_item(in[0]);
    if (!x || x->dtype != DSP_DTYPE_F32 || x->ndim != 3 || x->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EINVAL, "item %lld: %s; dicom.resample takes an f32 CPU "
                             "tensor '%s' of shape [slices, rows, cols]", item,
                             x ? dsp_tensor_describe(x, desc, sizeof desc) : "no such tensor",
                             c->name);
    double sp[3], nsp[3];
    size_t got = 0;
    if (dsp_meta_get_floats(dsp_packet_meta_const(in[0]), "spacing_mm", sp, 3, &got) < 0 ||
        got != 3 || !(sp[0] > 0 && sp[1] > 0 && sp[2] > 0))
        return dsp_node_fail(node, DSP_EINVAL, "item %lld: no valid meta spacing_mm "
                             "([slice, row, column] > 0); dicom.read sets it", item);
    for (int a = 0; a < 3; a++)
        nsp[a] = c->spacing.f[c->spacing.n == 3 ? a : 0];
    int64_t in_n[3] = { x->shape[0], x->shape[1], x->shape[2] }, on[3];
    for (int a = 0; a < 3; a++)
        on[a] = out_size(in_n[a], sp[a], nsp[a]);
    if ((double)on[0] * on[1] * on[2] > (double)c->max_voxels)
        return dsp_node_fail(node, DSP_ELIMIT, "item %lld: %lld x %lld x %lld voxels is more "
                             "than max_voxels=%lld", item, (long long)on[0], (long long)on[1],
                             (long long)on[2], (long long)c->max_voxels);
    dsp_tensor *src = NULL, *o = NULL;
    int err = dsp_tensor_contiguous(x, &src);
    if (!err)
        err = dsp_tensor_new(DSP_DTYPE_F32, 3, on, &o);
    if (err < 0) {
        dsp_tensor_unref(&src);
        return dsp_node_fail(node, err, "out of memory");
    }
    const float *s = dsp_tensor_data(src);
    float *d = dsp_tensor_data(o);
    int64_t H = in_n[1], W = in_n[2];
    for (int64_t z = 0; z < on[0]; z++) {
        int64_t z0;
        double wz;
        axis_weights(in_n[0], sp[0], nsp[0], z, &z0, &wz);
        int64_t z1 = in_n[0] > 1 ? z0 + 1 : z0;
        for (int64_t y = 0; y < on[1]; y++) {
            int64_t y0;
            double wy;
            axis_weights(H, sp[1], nsp[1], y, &y0, &wy);
            int64_t y1 = H > 1 ? y0 + 1 : y0;
            for (int64_t xx = 0; xx < on[2]; xx++) {
                int64_t x0;
                double wx;
                axis_weights(W, sp[2], nsp[2], xx, &x0, &wx);
                int64_t x1 = W > 1 ? x0 + 1 : x0;
#define V(zz, yy, xi) ((double)s[((zz) * H + (yy)) * W + (xi)])
                double c00 = V(z0, y0, x0) * (1 - wx) + V(z0, y0, x1) * wx;
                double c01 = V(z0, y1, x0) * (1 - wx) + V(z0, y1, x1) * wx;
                double c10 = V(z1, y0, x0) * (1 - wx) + V(z1, y0, x1) * wx;
                double c11 = V(z1, y1, x0) * (1 - wx) + V(z1, y1, x1) * wx;
#undef V
                double c0 = c00 * (1 - wy) + c01 * wy, c1 = c10 * (1 - wy) + c11 * wy;
                *d++ = (float)(c0 * (1 - wz) + c1 * wz);
            }
        }
    }
    dsp_tensor_unref(&src);
    dsp_packet *p = dsp_packet_ref(in[0]);
    if ((err = dsp_packet_make_writable(&p)) < 0) {
        dsp_tensor_unref(&o);
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "out of memory");
    }
    dsp_meta *m = dsp_packet_meta(p);
    err = dsp_packet_set_tensor(p, c->name, o);
    err = err ? err : dsp_meta_set_floats(m, "spacing_mm", nsp, 3);
    err = err ? err : dsp_meta_set_int(m, "slices", on[0]);
    err = err ? err : dsp_meta_set_int(m, "rows", on[1]);
    err = err ? err : dsp_meta_set_int(m, "cols", on[2]);
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "cannot update the packet: %s", dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, p);
}

const dsp_op_def dicom_resample_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.resample",
    .doc = "trilinear resampling of an f32 volume to a given spacing in mm",
    .inputs = resample_in,
    .outputs = resample_out,
    .params = resample_params,
    .priv_size = sizeof(resample_ctx),
    .init = resample_init,
    .process = resample_process,
};
