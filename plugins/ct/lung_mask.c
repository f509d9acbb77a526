/* lung_mask.c - ct.lung_mask: lungs of a chest CT by thresholds and connected components, no learned model. */
#include "ct.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lung_ctx {
    char *name;
    char *mask;
    double air_hu;
    double airway_hu;
    double min_lung_ml;
    double closing_mm;
    int64_t threads;
} lung_ctx;

static const dsp_param_def lung_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(lung_ctx, name), .doc = "the f32 HU volume [slices, rows, columns]" },
    { .name = "mask", .type = DSP_PARAM_STRING, .def = "lung_mask",
      .offset = offsetof(lung_ctx, mask), .doc = "name of the u8 mask tensor added (1 = lung)" },
    { .name = "air_hu", .type = DSP_PARAM_FLOAT, .def = "-400", .min = -1100, .max = 0,
      .offset = offsetof(lung_ctx, air_hu),
      .doc = "voxels below this are air or lung parenchyma" },
    { .name = "airway_hu", .type = DSP_PARAM_FLOAT, .def = "-950", .min = -1100, .max = -500,
      .offset = offsetof(lung_ctx, airway_hu),
      .doc = "trachea and main bronchi: air below this connected to the top of the scan" },
    { .name = "min_lung_ml", .type = DSP_PARAM_FLOAT, .def = "50", .min = 0, .max = 1e5,
      .offset = offsetof(lung_ctx, min_lung_ml),
      .doc = "air regions inside the body smaller than this are not lung" },
    { .name = "closing_mm", .type = DSP_PARAM_FLOAT, .def = "15", .min = 0, .max = 50,
      .offset = offsetof(lung_ctx, closing_mm),
      .doc = "radius of the morphological closing that keeps juxtapleural nodules (up to "
             "about twice this diameter) inside the mask; 0: none" },
    { .name = "threads", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 64,
      .offset = offsetof(lung_ctx, threads), .doc = "worker threads (0: online cores)" },
    { NULL }
};

static const dsp_port_def lung_in[] = {
    { "in", "any", "a CT volume (dicom.read / dicom.resample): f32 HU and its geometry" },
    { NULL }
};
static const dsp_port_def lung_out[] = {
    { "out", "volume", "the input with a u8 lung mask added and meta lung_volume_ml, "
      "lung_components, lung_bbox" },
    { NULL }
};

/* Air inside the body, per slice: air pixels with tissue on both sides
 * along their row and along their column. Cheaper than a flood fill from the
 * border and, unlike it, it does not leak through a chest wall that is
 * missing for a few pixels (partial volume, or a phantom whose lung pokes
 * out of the body): such a gap cuts off only the lung next to it. */
typedef struct air_ctx {
    const ct_volume *v;
    double air_hu;
    uint8_t *m;
} air_ctx;

static void air_slices(void *arg, int64_t k0, int64_t k1)
{
    air_ctx *c = arg;
    int64_t h = c->v->h, w = c->v->w;
    int64_t *top = malloc((size_t)w * sizeof *top), *bot = malloc((size_t)w * sizeof *bot);
    if (!top || !bot) {
        free(top);
        free(bot);
        return;     /* the slice stays empty: a smaller mask, never a crash */
    }
    float air = (float)c->air_hu;
    for (int64_t k = k0; k < k1; k++) {
        const float *s = c->v->hu + k * h * w;
        uint8_t *m = c->m + k * h * w;
        for (int64_t i = 0; i < w; i++) {
            top[i] = h;
            bot[i] = -1;
        }
        for (int64_t j = 0; j < h; j++)
            for (int64_t i = 0; i < w; i++)
                if (!(s[j * w + i] < air)) {
                    if (top[i] == h) top[i] = j;
                    bot[i] = j;
                }
        for (int64_t j = 0; j < h; j++) {
            const float *r = s + j * w;
            int64_t left = -1, right = -1;
            for (int64_t i = 0; i < w; i++)
                if (!(r[i] < air)) {
                    if (left < 0) left = i;
                    right = i;
                }
            for (int64_t i = 0; i < w; i++)
                m[j * w + i] = r[i] < air && i > left && i < right && left >= 0 &&
                               j > top[i] && j < bot[i];
        }
    }
    free(top);
    free(bot);
}

static uint8_t *inside_air(const ct_volume *v, double air_hu, int threads)
{
    uint8_t *m = calloc((size_t)(v->d * v->h * v->w), 1);
    if (!m)
        return NULL;
    air_ctx c = { v, air_hu, m };
    ct_parallel_for(v->d, threads, air_slices, &c);
    return m;
}

/* The slice index nearest the head: slices ascend along the slice
 * direction, whose z component says whether that is up (LPS +z is superior). */
static int top_is_last(const ct_volume *v)
{
    return v->dir[8] >= 0;
}

/* Remove the trachea and main bronchi from m: among the components of very
 * dark air (< airway_hu) inside the body, the one reaching the slice
 * nearest the head (the trachea enters the scan from above). Returns the
 * voxels removed, or -1 on OOM. */
static int64_t remove_airway(const ct_volume *v, uint8_t *m, int32_t *labels, double airway_hu)
{
    int64_t n = v->d * v->h * v->w, hw = v->h * v->w;
    uint8_t *dark = malloc((size_t)n);
    if (!dark)
        return -1;
    for (int64_t i = 0; i < n; i++)
        dark[i] = m[i] && v->hu[i] < airway_hu;
    int64_t *sizes = NULL;
    int32_t nl = 0;
    if (ct_label(dark, v->d, v->h, v->w, labels, &sizes, &nl) < 0) {
        free(dark);
        return -1;
    }
    free(dark);
    /* the component with a voxel in the topmost slice that has dark air;
     * small specks (under 0.5 ml) are noise, not an airway */
    double vox_ml = v->sp[0] * v->sp[1] * v->sp[2] / 1000.0;
    int last = top_is_last(v);
    int32_t best = 0;
    for (int64_t s = 0; s < v->d && !best; s++) {
        int64_t k = last ? v->d - 1 - s : s;
        for (int64_t p = 0; p < hw; p++) {
            int32_t l = labels[k * hw + p];
            if (l && sizes[l] * vox_ml >= 0.5 && (!best || sizes[l] > sizes[best]))
                best = l;
        }
    }
    int64_t removed = 0;
    if (best) {
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == best) {
                m[i] = 0;
                removed++;
            }
    }
    free(sizes);
    return removed;
}

/* Keep the components of m at least min_ml large and at least 5% of the
 * largest (two lungs, or one when they touch or one is missing). Returns
 * how many were kept, -1 on OOM. */
static int keep_lungs(const ct_volume *v, uint8_t *m, int32_t *labels, double min_ml)
{
    int64_t n = v->d * v->h * v->w;
    int64_t *sizes = NULL;
    int32_t nl = 0;
    if (ct_label(m, v->d, v->h, v->w, labels, &sizes, &nl) < 0)
        return -1;
    double vox_ml = v->sp[0] * v->sp[1] * v->sp[2] / 1000.0;
    int64_t largest = 0;
    for (int32_t l = 1; l <= nl; l++)
        if (sizes[l] > largest)
            largest = sizes[l];
    uint8_t *keep = calloc((size_t)nl + 1, 1);
    if (!keep) {
        free(sizes);
        return -1;
    }
    int kept = 0;
    for (int32_t l = 1; l <= nl; l++)
        if (sizes[l] * vox_ml >= min_ml && sizes[l] * 20 >= largest) {
            keep[l] = 1;
            kept++;
        }
    for (int64_t i = 0; i < n; i++)
        m[i] = keep[labels[i]];
    free(keep);
    free(sizes);
    return kept;
}

static void mask_bbox(const uint8_t *m, int64_t d, int64_t h, int64_t w, ct_box *b)
{
    for (int a = 0; a < 3; a++) {
        b->lo[a] = INT64_MAX;
        b->hi[a] = 0;
    }
    for (int64_t k = 0; k < d; k++)
        for (int64_t j = 0; j < h; j++) {
            const uint8_t *r = m + (k * h + j) * w;
            for (int64_t i = 0; i < w; i++) {
                if (!r[i])
                    continue;
                int64_t c[3] = { k, j, i };
                for (int a = 0; a < 3; a++) {
                    if (c[a] < b->lo[a]) b->lo[a] = c[a];
                    if (c[a] + 1 > b->hi[a]) b->hi[a] = c[a] + 1;
                }
            }
        }
}

/* Morphological closing with a ball of radius r mm, inside the lungs'
 * bounding box grown by r and padded with one voxel of background, so the
 * closing also shrinks back at the volume's edges. Two distance
 * transforms: dilation = within r of the mask, erosion = farther than r from
 * outside the dilation. Only adds voxels. */
static int close_mask(const ct_volume *v, uint8_t *m, const ct_box *lb, double r, int threads)
{
    int64_t lo[3], hi[3], dim[3], full[3] = { v->d, v->h, v->w };
    for (int a = 0; a < 3; a++) {
        int64_t g = (int64_t)ceil(r / v->sp[a]) + 1;
        lo[a] = lb->lo[a] - g < 0 ? 0 : lb->lo[a] - g;
        hi[a] = lb->hi[a] + g > full[a] ? full[a] : lb->hi[a] + g;
        dim[a] = hi[a] - lo[a] + 2;
    }
    int64_t n = dim[0] * dim[1] * dim[2];
    uint8_t *sub = malloc((size_t)n);
    float *dist = malloc((size_t)n * sizeof *dist);
    if (!sub || !dist) {
        free(sub);
        free(dist);
        return DSP_ENOMEM;
    }
#define SUB(k, j, i) ((((k) * dim[1]) + (j)) * dim[2] + (i))
    /* sub = 1 where not lung (the distance is to the nearest lung voxel) */
    memset(sub, 1, (size_t)n);
    for (int64_t k = lo[0]; k < hi[0]; k++)
        for (int64_t j = lo[1]; j < hi[1]; j++)
            for (int64_t i = lo[2]; i < hi[2]; i++)
                sub[SUB(k - lo[0] + 1, j - lo[1] + 1, i - lo[2] + 1)] =
                    !m[(k * v->h + j) * v->w + i];
    int err = ct_edt(sub, dim[0], dim[1], dim[2], v->sp, threads, dist);
    float r2 = (float)(r * r);
    if (!err) {
        for (int64_t x = 0; x < n; x++)
            sub[x] = dist[x] <= r2;     /* dilated */
        /* the padding stays background so erosion works from the edges */
        for (int64_t k = 0; k < dim[0]; k++)
            for (int64_t j = 0; j < dim[1]; j++)
                for (int64_t i = 0; i < dim[2]; i++)
                    if (k == 0 || j == 0 || i == 0 || k == dim[0] - 1 || j == dim[1] - 1 ||
                        i == dim[2] - 1)
                        sub[SUB(k, j, i)] = 0;
        err = ct_edt(sub, dim[0], dim[1], dim[2], v->sp, threads, dist);
    }
    if (!err) {
        for (int64_t k = lo[0]; k < hi[0]; k++)
            for (int64_t j = lo[1]; j < hi[1]; j++)
                for (int64_t i = lo[2]; i < hi[2]; i++)
                    if (dist[SUB(k - lo[0] + 1, j - lo[1] + 1, i - lo[2] + 1)] > r2)
                        m[(k * v->h + j) * v->w + i] = 1;
    }
#undef SUB
    free(sub);
    free(dist);
    return err;
}

static int lung_process(dsp_node *node, dsp_packet **in)
{
    lung_ctx *c = dsp_node_priv(node);
    ct_volume v;
    dsp_tensor *t, *mt = NULL;
    dsp_packet *p = NULL;
    uint8_t *m = NULL;
    int32_t *labels = NULL;
    char wb[64];
    const char *where = ct_where(in[0], wb, sizeof wb);
    int threads = (int)c->threads, err = ct_volume_find(node, in[0], c->name, &v, &t);
    if (err < 0)
        return err;
    int64_t n = v.d * v.h * v.w;
    double vox_ml = v.sp[0] * v.sp[1] * v.sp[2] / 1000.0;
    double t0 = ct_now(), t_air, t_airway, t_keep, t_fill, t_close;
    if (!(m = inside_air(&v, c->air_hu, threads)) ||
        !(labels = malloc((size_t)n * sizeof *labels)))
        goto oom;
    t_air = ct_now();
    int64_t airway = remove_airway(&v, m, labels, c->airway_hu);
    if (airway < 0)
        goto oom;
    t_airway = ct_now();
    int kept = keep_lungs(&v, m, labels, c->min_lung_ml);
    if (kept < 0)
        goto oom;
    t_keep = ct_now();
    free(labels);
    labels = NULL;
    if (kept == 0) {
        free(m);
        return dsp_node_fail(node, DSP_EFORMAT, "%s: no lungs found: no air region (< %g HU) "
                             "inside the body of at least %g ml. Is this a chest CT in "
                             "Hounsfield units (dicom.read's volume)? Lower min_lung_ml for "
                             "small volumes", where, c->air_hu, c->min_lung_ml);
    }
    ct_fill_holes_2d(m, v.d, v.h, v.w, 1, threads);
    t_fill = ct_now();
    ct_box lb;
    mask_bbox(m, v.d, v.h, v.w, &lb);
    if (c->closing_mm > 0 && (err = close_mask(&v, m, &lb, c->closing_mm, threads)) < 0)
        goto oom;
    t_close = ct_now();
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: times (s): body/air %.2f, airway %.2f, components "
                 "%.2f, holes %.2f, closing %.2f", where, t_air - t0, t_airway - t_air,
                 t_keep - t_airway, t_fill - t_keep, t_close - t_fill);
    mask_bbox(m, v.d, v.h, v.w, &lb);
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        count += m[i];

    int64_t shape[3] = { v.d, v.h, v.w };
    if ((err = dsp_tensor_new(DSP_DTYPE_U8, 3, shape, &mt)) < 0)
        goto oom;
    memcpy(dsp_tensor_data(mt), m, (size_t)n);
    free(m);
    m = NULL;
    if ((err = dsp_packet_derive(in[0], &p)) < 0) {
        dsp_tensor_unref(&mt);
        goto oom;
    }
    dsp_meta *meta = dsp_packet_meta(p);
    int64_t bbox[6] = { lb.lo[0], lb.lo[1], lb.lo[2], lb.hi[0], lb.hi[1], lb.hi[2] };
    err = dsp_packet_set_tensor(p, c->mask, mt);
    err = err ? err : dsp_meta_set_float(meta, "lung_volume_ml", count * vox_ml);
    err = err ? err : dsp_meta_set_int(meta, "lung_components", kept);
    err = err ? err : dsp_meta_set_ints(meta, "lung_bbox", bbox, 6);
    err = err ? err : dsp_meta_set_float(meta, "airway_removed_ml", airway * vox_ml);
    if (err < 0) {
        dsp_packet_unref(&p);
        goto oom;
    }
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: lungs %.0f ml in %d component(s), airway %.1f ml",
                 where, count * vox_ml, kept, airway * vox_ml);
    return dsp_node_emit(node, 0, p);
oom:
    free(m);
    free(labels);
    return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory for a %lldx%lldx%lld lung mask",
                         where, (long long)v.d, (long long)v.h, (long long)v.w);
}

const dsp_op_def ct_lung_mask_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "ct.lung_mask",
    .doc = "lung mask of a chest CT: air threshold, body, components, airway removal, hole "
           "filling and closing",
    .inputs = lung_in,
    .outputs = lung_out,
    .params = lung_params,
    .priv_size = sizeof(lung_ctx),
    .process = lung_process,
};
