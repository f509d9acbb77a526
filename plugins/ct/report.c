/* report.c - ct.report: findings.json, PNG key images and a stdout summary, one folder per study; key images and findings passed on for the DICOM writers. */
#include "ct.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct report_ctx {
    char *dir;
    char *name;
    char *mask;
    int images;
    int summary;
    int include_patient;
    int forward;
    double window_center;
    double window_width;
} report_ctx;

static const dsp_param_def report_params[] = {
    { .name = "dir", .type = DSP_PARAM_STRING, .offset = offsetof(report_ctx, dir),
      .doc = "output root: each study goes to DIR/<study_uid> (else DIR/item<N>)" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(report_ctx, name), .doc = "the f32 HU volume" },
    { .name = "mask", .type = DSP_PARAM_STRING, .def = "lung_mask",
      .offset = offsetof(report_ctx, mask), .doc = "the u8 lung mask" },
    { .name = "images", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(report_ctx, images),
      .doc = "write PNG key images: one axial slice per finding and a MIP overview" },
    { .name = "summary", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(report_ctx, summary), .doc = "print a short summary on stdout" },
    { .name = "include_patient", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(report_ctx, include_patient),
      .doc = "copy meta \"patient\" (dicom.read phi=keep) into findings.json; off: no "
             "patient-identifying attribute is written" },
    { .name = "forward", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(report_ctx, forward),
      .doc = "send the packet on output 'out' with key_images, key_findings and report_dir, "
             "for dicom.write_sc / dicom.write_sr (dropped when nothing is connected); "
             "false: a plain sink" },
    { .name = "window_center", .type = DSP_PARAM_FLOAT, .def = "-600", .min = -2000,
      .max = 4000, .offset = offsetof(report_ctx, window_center),
      .doc = "key images: window centre (HU), lung window" },
    { .name = "window_width", .type = DSP_PARAM_FLOAT, .def = "1500", .min = 1, .max = 8000,
      .offset = offsetof(report_ctx, window_width), .doc = "key images: window width (HU)" },
    { NULL }
};

static const dsp_port_def report_in[] = {
    { "in", "any", "a CT volume with lung mask and findings (ct.nodules)" }, { NULL }
};
/* with forward=true: what the DICOM writers (dicom.write_sc, dicom.write_sr) need */
static const dsp_port_def report_out[] = {
    { "out", "any", "the input with key_images (u8 [n, rows, cols, 3]), meta key_findings and "
      "report_dir" },
    { NULL }
};

/* ---- JSON helpers ---------------------------------------------------------- */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const char *meta_str(const dsp_packet *p, const char *key)
{
    const char *s = NULL;
    return dsp_meta_get_str(dsp_packet_meta_const(p), key, &s) == 0 ? s : NULL;
}

/* A folder name from the study UID: digits, letters, '.', '-', '_' only. */
static void study_folder(const dsp_packet *p, char *out, size_t n)
{
    if (!dsp_path_component(meta_str(p, "study_uid"), out, n))
        snprintf(out, n, "item%" PRId64, dsp_packet_item(p));
}

/* ---- images ---------------------------------------------------------------- */
static uint8_t window_px(const report_ctx *c, float hu)
{
    double v = (hu - (c->window_center - c->window_width / 2)) / c->window_width * 255.0;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

static void put_rgb(uint8_t *img, int64_t h, int64_t w, int64_t y, int64_t x, uint8_t r,
                    uint8_t g, uint8_t b)
{
    if (y < 0 || x < 0 || y >= h || x >= w)
        return;
    uint8_t *q = img + (y * w + x) * 3;
    q[0] = r; q[1] = g; q[2] = b;
}

static void circle(uint8_t *img, int64_t h, int64_t w, double cy, double cx, double ry,
                   double rx, uint8_t r, uint8_t g, uint8_t b)
{
    int steps = (int)(8 * (rx + ry)) + 16;
    for (int s = 0; s < steps; s++) {
        double a = 2 * M_PI * s / steps;
        put_rgb(img, h, w, (int64_t)lround(cy + ry * sin(a)), (int64_t)lround(cx + rx * cos(a)),
                r, g, b);
    }
}

typedef struct key_img {
    const ct_volume *v;
    const uint8_t *mask;
    const double *f;            /* one row of the nodules tensor */
} key_img;

/* The axial slice through a finding, lung window, the finding's outline in
 * red: pixels above the half-way level between the surrounding lung and its
 * core, within its radius plus two pixels, that border a pixel below it. */
static uint8_t *key_image(const report_ctx *c, const key_img *k)
{
    const ct_volume *v = k->v;
    int64_t h = v->h, w = v->w, s = lround(k->f[CT_F_SLICE]);
    if (s < 0) s = 0;
    if (s >= v->d) s = v->d - 1;
    uint8_t *img = malloc((size_t)(h * w * 3));
    uint8_t *in = calloc((size_t)(h * w), 1);
    if (!img || !in) {
        free(img);
        free(in);
        return NULL;
    }
    const float *hu = v->hu + s * h * w;
    for (int64_t p = 0; p < h * w; p++)
        img[3 * p] = img[3 * p + 1] = img[3 * p + 2] = window_px(c, hu[p]);
    double level = 0.5 * (k->f[CT_F_CORE_HU] + k->f[CT_F_BG_HU]);
    double rad = k->f[CT_F_DIAMETER] / 2;
    double cy = k->f[CT_F_ROW], cx = k->f[CT_F_COL];
    double ry = rad / v->sp[1] + 2, rx = rad / v->sp[2] + 2;
    for (int64_t y = (int64_t)(cy - ry); y <= (int64_t)(cy + ry) + 1; y++)
        for (int64_t x = (int64_t)(cx - rx); x <= (int64_t)(cx + rx) + 1; x++) {
            if (y < 0 || x < 0 || y >= h || x >= w)
                continue;
            double ny = (y - cy) / ry, nx = (x - cx) / rx;
            if (ny * ny + nx * nx <= 1 && hu[y * w + x] > level)
                in[y * w + x] = 1;
        }
    int64_t outline = 0;
    for (int64_t y = 1; y < h - 1; y++)
        for (int64_t x = 1; x < w - 1; x++) {
            int64_t p = y * w + x;
            if (in[p] && (!in[p - 1] || !in[p + 1] || !in[p - w] || !in[p + w])) {
                put_rgb(img, h, w, y, x, 255, 32, 32);
                outline++;
            }
        }
    /* a finding thinner than a slice may not cross this one: mark it anyway */
    if (!outline)
        circle(img, h, w, cy, cx, rad / v->sp[1], rad / v->sp[2], 255, 32, 32);
    /* a yellow ring well outside, so the finding is found at a glance */
    circle(img, h, w, cy, cx, ry + 6, rx + 6, 255, 220, 0);
    free(in);
    return img;
}

/* Coronal maximum-intensity projection of the lungs (the rest dark), head
 * at the top, rows scaled to square pixels, each finding ringed. */
static uint8_t *mip_image(const report_ctx *c, const ct_volume *v, const uint8_t *mask,
                          const double *f, int64_t nf, int64_t *oh)
{
    int64_t w = v->w, d = v->d, h = v->h;
    double scale = v->sp[0] / v->sp[2];
    int64_t rows = (int64_t)lround(d * scale);
    if (rows < 1)
        rows = 1;
    float *mip = malloc((size_t)(d * w) * sizeof *mip);
    uint8_t *img = malloc((size_t)(rows * w * 3));
    if (!mip || !img) {
        free(mip);
        free(img);
        return NULL;
    }
    for (int64_t k = 0; k < d; k++)
        for (int64_t i = 0; i < w; i++) {
            float m = -1000.0f;
            for (int64_t j = 0; j < h; j++) {
                int64_t x = (k * h + j) * w + i;
                if (mask[x] && v->hu[x] > m)
                    m = v->hu[x];
            }
            mip[k * w + i] = m;
        }
    int top_last = v->dir[8] >= 0;
    for (int64_t y = 0; y < rows; y++) {
        int64_t k = (int64_t)((y + 0.5) / scale);
        if (k >= d) k = d - 1;
        if (top_last) k = d - 1 - k;
        for (int64_t i = 0; i < w; i++) {
            uint8_t g = window_px(c, mip[k * w + i]);
            put_rgb(img, rows, w, y, i, g, g, g);
        }
    }
    for (int64_t q = 0; q < nf; q++) {
        const double *r = f + q * CT_F_COUNT;
        double k = r[CT_F_SLICE];
        if (top_last) k = d - 1 - k;
        double rad = r[CT_F_DIAMETER] / 2 / v->sp[2] + 4;
        circle(img, rows, w, (k + 0.5) * scale - 0.5, r[CT_F_COL], rad, rad, 255, 32, 32);
    }
    free(mip);
    *oh = rows;
    return img;
}

static int write_png(dsp_node *node, const char *path, const uint8_t *img, int64_t h, int64_t w)
{
    char why[256];
    dsp_outfile *f = NULL;
    int err = dsp_node_claim_output(node, path);
    if (err == DSP_EEXIST)
        return dsp_node_fail(node, err, "%s: already written for an earlier item in this run "
                             "(two series of one study?); give each its own dir=", path);
    if (err < 0 || (err = dsp_outfile_open(node, path, &f)) < 0)
        return err == DSP_ENOMEM ? dsp_node_fail(node, err, "out of memory") : err;
    if ((err = ct_png_write(dsp_outfile_stream(f), img, h, w, 3, why)) < 0) {
        dsp_outfile_discard(&f);
        return dsp_node_fail(node, err, "%s: cannot write PNG: %s", path, why);
    }
    return dsp_outfile_commit(node, &f);
}

/* ---- findings.json ---------------------------------------------------------- */
static void write_json(const report_ctx *c, FILE *o, const dsp_packet *p, const ct_volume *v,
                       const double *f, int64_t nf, int images)
{
    const dsp_meta *m = dsp_packet_meta_const(p);
    static const char *const ids[] = { "study_uid", "series_uid", "frame_of_reference_uid",
                                       "modality", NULL };
    fprintf(o, "{\n  \"format\": \"dspipe ct findings 1\",\n");
    for (int x = 0; ids[x]; x++) {
        const char *s = meta_str(p, ids[x]);
        if (s) {
            fprintf(o, "  \"%s\": ", ids[x]);
            json_str(o, s);
            fprintf(o, ",\n");
        }
    }
    int64_t sn;
    if (dsp_meta_get_int(m, "series_number", &sn) == 0)
        fprintf(o, "  \"series_number\": %" PRId64 ",\n", sn);
    const char *det = meta_str(p, "detector"), *cls = meta_str(p, "classifier");
    fprintf(o, "  \"detector\": ");
    json_str(o, det ? det : "classical");
    fprintf(o, ",\n  \"classifier\": ");
    json_str(o, cls && strcmp(cls, "none") ? cls : "none: no classifier weights, the classical "
             "detector alone");
    int64_t dropped;
    if (dsp_meta_get_int(m, "classifier_dropped", &dropped) == 0)
        fprintf(o, ",\n  \"classifier_dropped\": %" PRId64, dropped);
    fprintf(o, ",\n  \"volume\": {\"shape\": [%" PRId64 ", %" PRId64 ", %" PRId64 "], "
            "\"spacing_mm\": [%g, %g, %g], \"origin_mm\": [%g, %g, %g], \"direction\": "
            "[%g, %g, %g, %g, %g, %g, %g, %g, %g], \"axes\": \"slice, row, column\"},\n",
            v->d, v->h, v->w, v->sp[0], v->sp[1], v->sp[2], v->origin[0], v->origin[1],
            v->origin[2], v->dir[0], v->dir[1], v->dir[2], v->dir[3], v->dir[4], v->dir[5],
            v->dir[6], v->dir[7], v->dir[8]);
    double ml;
    if (dsp_meta_get_float(m, "lung_volume_ml", &ml) == 0)
        fprintf(o, "  \"lung_volume_ml\": %.1f,\n", ml);
    fprintf(o, "  \"lung_rads\": \"ACR Lung-RADS v2022 baseline size categories from the "
            "equivalent diameter; sub-solid findings as part-solid (solid component not "
            "measured)\",\n");
    if (images)
        fprintf(o, "  \"overview_image\": \"overview_mip.png\",\n");
    if (c->include_patient) {
        const dsp_meta *pt = dsp_meta_get_dict(m, "patient");
        char *js = pt ? dsp_meta_to_json(pt) : NULL;
        if (js)
            fprintf(o, "  \"patient\": %s,\n", js);
        dsp_free(js);
    }
    const char *series = meta_str(p, "series_uid");
    fprintf(o, "  \"findings\": [");
    for (int64_t q = 0; q < nf; q++) {
        const double *r = f + q * CT_F_COUNT;
        const char *size_class, *cat = ct_lungrads(r[CT_F_SOLID] != 0, r[CT_F_DIAMETER],
                                                   &size_class);
        fprintf(o, "%s\n    {\"id\": %" PRId64 ", \"type\": \"%s\", "
                "\"center_mm\": [%.2f, %.2f, %.2f], \"center_voxel\": [%.2f, %.2f, %.2f], "
                "\"diameter_mm\": %.2f, \"volume_mm3\": %.1f, \"size_category\": \"%s\", "
                "\"lung_rads\": \"%s\", \"mean_hu\": %.1f, \"max_hu\": %.1f, "
                "\"sphericity\": %.3f, \"confidence\": %.3f",
                q ? "," : "", q + 1, r[CT_F_SOLID] ? "solid" : "subsolid", r[CT_F_X], r[CT_F_Y],
                r[CT_F_Z], r[CT_F_SLICE], r[CT_F_ROW], r[CT_F_COL], r[CT_F_DIAMETER],
                r[CT_F_VOLUME], size_class, cat, r[CT_F_MEAN_HU], r[CT_F_MAX_HU],
                1.0 / r[CT_F_ELONGATION], r[CT_F_CONFIDENCE]);
        if (series) {
            fprintf(o, ", \"series_uid\": ");
            json_str(o, series);
        }
        if (images)
            fprintf(o, ", \"key_image\": \"finding_%" PRId64 ".png\"", q + 1);
        fprintf(o, "}");
    }
    fprintf(o, "%s]\n}\n", nf ? "\n  " : "");
}

static void print_summary(const dsp_packet *p, const double *f, int64_t nf, const char *dir)
{
    const char *uid = meta_str(p, "study_uid"), *cls = meta_str(p, "classifier");
    double ml = 0;
    int64_t dropped = 0;
    dsp_meta_get_float(dsp_packet_meta_const(p), "lung_volume_ml", &ml);
    dsp_meta_get_int(dsp_packet_meta_const(p), "classifier_dropped", &dropped);
    printf("study %s: lungs %.0f ml, %" PRId64 " finding%s ", uid ? uid : "(no UID)", ml, nf,
           nf == 1 ? "" : "s");
    if (cls && strcmp(cls, "none"))
        printf("(classifier: %s; %" PRId64 " dropped)\n", cls, dropped);
    else
        printf("(classical detector only: no classifier weights)\n");
    for (int64_t q = 0; q < nf; q++) {
        const double *r = f + q * CT_F_COUNT;
        const char *size_class, *cat = ct_lungrads(r[CT_F_SOLID] != 0, r[CT_F_DIAMETER],
                                                   &size_class);
        printf("  #%" PRId64 " %-8s %5.1f mm at (%.1f, %.1f, %.1f) mm LPS, slice %.0f: "
               "Lung-RADS %s (%s), confidence %.2f\n", q + 1,
               r[CT_F_SOLID] ? "solid" : "subsolid", r[CT_F_DIAMETER], r[CT_F_X], r[CT_F_Y],
               r[CT_F_Z], r[CT_F_SLICE], cat, size_class, r[CT_F_CONFIDENCE]);
    }
    printf("  -> %s/findings.json\n", dir);
    fflush(stdout);
}

/* ---- for the DICOM writers ------------------------------------------------ */
/* Meta key_findings: {"1": {center_mm, diameter_mm, volume_mm3, mean_hu,
 * type, lung_rads, size_category, confidence}, "2": ...}, what findings.json
 * says, so a writer needs no knowledge of the nodules tensor's columns. */
static int set_key_findings(dsp_meta *m, const double *f, int64_t nf)
{
    dsp_meta *kf = dsp_meta_dict(m, "key_findings");
    int err = kf ? 0 : DSP_ENOMEM;
    for (int64_t q = 0; !err && q < nf; q++) {
        const double *r = f + q * CT_F_COUNT;
        char key[24];
        snprintf(key, sizeof key, "%" PRId64, q + 1);
        dsp_meta *d = dsp_meta_dict(kf, key);
        if (!d)
            return DSP_ENOMEM;
        const char *size_class, *cat = ct_lungrads(r[CT_F_SOLID] != 0, r[CT_F_DIAMETER],
                                                   &size_class);
        err = dsp_meta_set_floats(d, "center_mm", r + CT_F_X, 3);
        err = err ? err : dsp_meta_set_float(d, "diameter_mm", r[CT_F_DIAMETER]);
        err = err ? err : dsp_meta_set_float(d, "volume_mm3", r[CT_F_VOLUME]);
        err = err ? err : dsp_meta_set_float(d, "mean_hu", r[CT_F_MEAN_HU]);
        err = err ? err : dsp_meta_set_float(d, "confidence", r[CT_F_CONFIDENCE]);
        err = err ? err : dsp_meta_set_str(d, "type", r[CT_F_SOLID] ? "solid" : "subsolid");
        err = err ? err : dsp_meta_set_str(d, "lung_rads", cat);
        err = err ? err : dsp_meta_set_str(d, "size_category", size_class);
    }
    return err;
}

/* Pass the input on with the key images (transfer full of keys, which may
 * be NULL), the findings and the study folder. */
static int emit_for_writers(dsp_node *node, dsp_packet *in, dsp_tensor *keys, const double *f,
                            int64_t nf, const char *dir)
{
    dsp_packet *out = NULL;
    int err = dsp_packet_derive(in, &out);
    if (err) {
        dsp_tensor_unref(&keys);
        return dsp_node_fail(node, err, "out of memory");
    }
    err = keys ? dsp_packet_set_tensor(out, "key_images", keys) : 0;
    err = err ? err : dsp_meta_set_str(dsp_packet_meta(out), "report_dir", dir);
    err = err ? err : set_key_findings(dsp_packet_meta(out), f, nf);
    if (err) {
        dsp_packet_unref(&out);
        return dsp_node_fail(node, err, "out of memory");
    }
    return dsp_node_emit(node, 0, out);
}

static int report_process(dsp_node *node, dsp_packet **in)
{
    report_ctx *c = dsp_node_priv(node);
    ct_volume v;
    dsp_tensor *t;
    char wb[64], folder[128], desc[96];
    const char *where = ct_where(in[0], wb, sizeof wb);
    int err = ct_volume_find(node, in[0], c->name, &v, &t);
    if (err < 0)
        return err;
    dsp_tensor *ft = dsp_packet_tensor(in[0], "nodules");
    dsp_tensor *mt = dsp_packet_tensor(in[0], c->mask);
    if (!ft)
        return dsp_node_fail(node, DSP_ENOENT, "%s: no \"nodules\" tensor: run ct.nodules "
                             "before ct.report", where);
    dsp_tensor_describe(ft, desc, sizeof desc);
    if (ft->dtype != DSP_DTYPE_F64 || ft->ndim != 2 || ft->shape[1] != CT_F_COUNT ||
        !dsp_tensor_is_contiguous(ft))
        return dsp_node_fail(node, DSP_EINVAL, "%s: \"nodules\" is %s, not ct.nodules' f64 "
                             "[n, %d]", where, desc, CT_F_COUNT);
    if (!mt || mt->dtype != DSP_DTYPE_U8 || mt->ndim != 3 || mt->shape[0] != v.d ||
        mt->shape[1] != v.h || mt->shape[2] != v.w || !dsp_tensor_is_contiguous(mt))
        return dsp_node_fail(node, DSP_EINVAL, "%s: no u8 lung mask '%s' shaped like the "
                             "volume: run ct.lung_mask first", where, c->mask);
    const double *f = dsp_tensor_data(ft);
    int64_t nf = ft->shape[0];
    const uint8_t *mask = dsp_tensor_data(mt);
    study_folder(in[0], folder, sizeof folder);
    size_t plen = strlen(c->dir) + strlen(folder) + 64;
    char *dir = malloc(plen), *path = malloc(plen);
    if (!dir || !path) {
        free(dir);
        free(path);
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    snprintf(dir, plen, "%s/%s", c->dir, folder);
    int images = c->images;
#ifndef HAVE_PNG
    if (images) {
        dsp_node_log(node, DSP_LOG_WARNING, "built without libpng: no key images");
        images = 0;
    }
#endif
    /* key images go to PNG files and, with forward=true, downstream to the
     * DICOM Secondary Capture writer (PNG or not): one rendering for both */
    dsp_tensor *keys = NULL;
    int64_t kshape[4] = { nf, v.h, v.w, 3 };
    if (nf > 0 && (images || c->forward) && dsp_tensor_new(DSP_DTYPE_U8, 4, kshape, &keys) < 0)
        err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    for (int64_t q = 0; keys && !err && q < nf; q++) {
        key_img k = { &v, mask, f + q * CT_F_COUNT };
        uint8_t *img = key_image(c, &k);
        snprintf(path, plen, "%s/finding_%" PRId64 ".png", dir, q + 1);
        if (!img)
            err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        else if (images)
            err = write_png(node, path, img, v.h, v.w);
        if (img)
            memcpy((uint8_t *)dsp_tensor_data(keys) + q * v.h * v.w * 3, img,
                   (size_t)(v.h * v.w * 3));
        free(img);
    }
    if (images && !err) {
        int64_t rows = 0;
        uint8_t *img = mip_image(c, &v, mask, f, nf, &rows);
        snprintf(path, plen, "%s/overview_mip.png", dir);
        err = img ? write_png(node, path, img, rows, v.w)
                  : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        free(img);
    }
    dsp_outfile *o = NULL;
    snprintf(path, plen, "%s/findings.json", dir);
    if (!err && (err = dsp_node_claim_output(node, path)) < 0)
        err = err == DSP_EEXIST
            ? dsp_node_fail(node, err, "%s: already written for an earlier item in this run "
                            "(two series of one study?); give each its own dir=", path)
            : dsp_node_fail(node, err, "out of memory");
    if (!err && (err = dsp_outfile_open(node, path, &o)) == 0) {
        write_json(c, dsp_outfile_stream(o), in[0], &v, f, nf, images);
        err = dsp_outfile_commit(node, &o);
    }
    if (!err && c->summary)
        print_summary(in[0], f, nf, dir);
    if (!err && c->forward)
        err = emit_for_writers(node, in[0], keys, f, nf, dir);
    else
        dsp_tensor_unref(&keys);
    free(dir);
    free(path);
    return err;
}

const dsp_op_def ct_report_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "ct.report",
    .doc = "per-study folder with findings.json (Lung-RADS size categories), PNG key images "
           "and a stdout summary; with forward=true passes key images and findings on to the "
           "DICOM writers",
    .inputs = report_in,
    .outputs = report_out,
    .params = report_params,
    .priv_size = sizeof(report_ctx),
    .flags = DSP_OP_SINK,
    .init = NULL,
    .process = report_process,
};
