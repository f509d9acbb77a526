/* window.c - dicom.window: a CT/MR window (presets or centre/width) that maps a volume to [0, 1] or u8. */
#include "dicom.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { PRESET_CUSTOM, PRESET_LUNG, PRESET_MEDIASTINUM, PRESET_BONE, PRESET_BRAIN,
       PRESET_SOFT_TISSUE, PRESET_FILE };
static const char *const preset_names[] = { "custom", "lung", "mediastinum", "bone", "brain",
                                            "soft_tissue", "file", NULL };
/* centre, width in HU: the usual radiology presets */
static const double presets[][2] = {
    { 0, 0 }, { -600, 1500 }, { 50, 350 }, { 400, 1800 }, { 40, 80 }, { 40, 400 }, { 0, 0 }
};
enum { OUT_F32, OUT_U8 };
static const char *const out_names[] = { "f32", "u8", NULL };
enum { INVERT_AUTO, INVERT_NO, INVERT_YES };
static const char *const invert_names[] = { "auto", "no", "yes", NULL };

typedef struct window_ctx {
    char *name;
    int preset;
    double center, width;
    int dtype;
    int invert;
} window_ctx;

static const dsp_param_def window_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(window_ctx, name), .doc = "the tensor to window (replaced)" },
    { .name = "preset", .type = DSP_PARAM_ENUM, .def = "custom", .choices = preset_names,
      .offset = offsetof(window_ctx, preset),
      .doc = "lung (-600/1500), mediastinum (50/350), bone (400/1800), brain (40/80), "
             "soft_tissue (40/400), file (meta window_center/width from the DICOM file) or "
             "custom (center=, width=)" },
    { .name = "center", .type = DSP_PARAM_FLOAT, .def = "40", .min = -1e9, .max = 1e9,
      .offset = offsetof(window_ctx, center), .doc = "window centre (custom)" },
    { .name = "width", .type = DSP_PARAM_FLOAT, .def = "400", .min = 1e-6, .max = 1e9,
      .offset = offsetof(window_ctx, width), .doc = "window width (custom), > 0" },
    { .name = "dtype", .type = DSP_PARAM_ENUM, .def = "f32", .choices = out_names,
      .offset = offsetof(window_ctx, dtype),
      .doc = "f32 in [0, 1], or u8 in [0, 255] (round(255 y))" },
    { .name = "invert", .type = DSP_PARAM_ENUM, .def = "auto", .choices = invert_names,
      .offset = offsetof(window_ctx, invert),
      .doc = "auto: invert when meta photometric is MONOCHROME1 (high values dark)" },
    { NULL }
};

static const dsp_port_def window_in[] = {
    { "in", "any", "a packet with an f32 volume (dicom.read, dicom.resample)" }, { NULL }
};
static const dsp_port_def window_out[] = {
    { "out", "tensor", "the volume windowed to [0, 1] (f32) or [0, 255] (u8)" }, { NULL }
};

static int window_process(dsp_node *node, dsp_packet **in)
{
    window_ctx *c = dsp_node_priv(node);
    dsp_tensor *x = dsp_packet_tensor(in[0], c->name);
    char desc[96];
    const dsp_meta *m = dsp_packet_meta_const(in[0]);
    if (!x || x->dtype != DSP_DTYPE_F32 || x->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EINVAL, "item %lld: %s; dicom.window takes an f32 CPU "
                             "tensor '%s' (a monochrome dicom.read volume)",
                             (long long)dsp_packet_item(in[0]),
                             x ? dsp_tensor_describe(x, desc, sizeof desc) : "no such tensor",
                             c->name);
    double center = c->center, width = c->width;
    if (c->preset == PRESET_FILE) {
        if (dsp_meta_get_float(m, "window_center", &center) < 0 ||
            dsp_meta_get_float(m, "window_width", &width) < 0 || !(width > 0))
            return dsp_node_fail(node, DSP_ENOENT, "item %lld: preset=file but the series has "
                                 "no usable WindowCenter/WindowWidth; choose another preset",
                                 (long long)dsp_packet_item(in[0]));
    } else if (c->preset != PRESET_CUSTOM) {
        center = presets[c->preset][0];
        width = presets[c->preset][1];
    }
    const char *pi = NULL;
    int inv = c->invert == INVERT_YES ||
              (c->invert == INVERT_AUTO && dsp_meta_get_str(m, "photometric", &pi) == 0 &&
               !strcmp(pi, "MONOCHROME1"));
    dsp_tensor *src = NULL, *o = NULL;
    int err = dsp_tensor_contiguous(x, &src);
    if (!err)
        err = dsp_tensor_new(c->dtype == OUT_U8 ? DSP_DTYPE_U8 : DSP_DTYPE_F32, src->ndim,
                             src->shape, &o);
    if (err < 0) {
        dsp_tensor_unref(&src);
        return dsp_node_fail(node, err, "out of memory");
    }
    const float *s = dsp_tensor_data(src);
    int64_t n = dsp_tensor_numel(src);
    double lo = center - width / 2;
    for (int64_t i = 0; i < n; i++) {
        double y = (s[i] - lo) / width;
        y = y < 0 ? 0 : y > 1 ? 1 : y != y ? 0 : y;
        if (inv)
            y = 1 - y;
        if (c->dtype == OUT_U8)
            ((uint8_t *)dsp_tensor_data(o))[i] = (uint8_t)lrint(255 * y);
        else
            ((float *)dsp_tensor_data(o))[i] = (float)y;
    }
    dsp_tensor_unref(&src);
    dsp_packet *p = dsp_packet_ref(in[0]);
    if ((err = dsp_packet_make_writable(&p)) < 0) {
        dsp_tensor_unref(&o);
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "out of memory");
    }
    dsp_meta *pm = dsp_packet_meta(p);
    err = dsp_packet_set_tensor(p, c->name, o);
    err = err ? err : dsp_meta_set_float(pm, "window_center", center);
    err = err ? err : dsp_meta_set_float(pm, "window_width", width);
    err = err ? err : dsp_meta_set_str(pm, "units", c->dtype == OUT_U8 ? "window_u8"
                                                                       : "window_unit");
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "cannot update the packet: %s", dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, p);
}

const dsp_op_def dicom_window_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.window",
    .doc = "window a HU volume (lung, mediastinum, bone, brain, soft tissue or centre/width) to [0, 1]",
    .inputs = window_in,
    .outputs = window_out,
    .params = window_params,
    .priv_size = sizeof(window_ctx),
    .process = window_process,
};
