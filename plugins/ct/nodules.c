/* nodules.c - ct.nodules: lung nodule candidates by distance-transform peaks, measured and filtered against vessels. */
#include "ct.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nod_ctx {
    char *name;
    char *mask;
    double dense_hu;
    double solid_hu;
    double min_diameter;
    double min_subsolid;
    double max_diameter;
    double shell_max;
    double shell_max_blob;
    double max_elongation;
    double min_contrast;
    int ridge_test;
    int64_t max_findings;
    int64_t threads;
} nod_ctx;

static const dsp_param_def nod_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(nod_ctx, name), .doc = "the f32 HU volume" },
    { .name = "mask", .type = DSP_PARAM_STRING, .def = "lung_mask",
      .offset = offsetof(nod_ctx, mask), .doc = "the u8 lung mask (ct.lung_mask)" },
    { .name = "dense_hu", .type = DSP_PARAM_FLOAT, .def = "-700", .min = -1000, .max = 500,
      .offset = offsetof(nod_ctx, dense_hu),
      .doc = "lung voxels above this are tissue: solid and ground-glass nodules, vessels" },
    { .name = "solid_hu", .type = DSP_PARAM_FLOAT, .def = "-300", .min = -1000, .max = 500,
      .offset = offsetof(nod_ctx, solid_hu),
      .doc = "a finding whose core is at least this dense is solid, else sub-solid" },
    { .name = "min_diameter_mm", .type = DSP_PARAM_FLOAT, .def = "3.5", .min = 0.5, .max = 100,
      .offset = offsetof(nod_ctx, min_diameter), .doc = "smallest equivalent diameter reported" },
    { .name = "min_subsolid_mm", .type = DSP_PARAM_FLOAT, .def = "5", .min = 0.5, .max = 100,
      .offset = offsetof(nod_ctx, min_subsolid),
      .doc = "smallest sub-solid finding reported: below it a faint blob is mostly a thin "
             "vessel's partial volume (and Lung-RADS calls such ground glass category 2)" },
    { .name = "max_diameter_mm", .type = DSP_PARAM_FLOAT, .def = "40", .min = 1, .max = 200,
      .offset = offsetof(nod_ctx, max_diameter),
      .doc = "largest equivalent diameter reported (beyond: a mass, not a nodule)" },
    { .name = "shell_max", .type = DSP_PARAM_FLOAT, .def = "0.18", .min = 0, .max = 1,
      .offset = offsetof(nod_ctx, shell_max),
      .doc = "most tissue allowed in the shell 1.5-2 radii around a blob (an isolated "
             "nodule about 0, a tube through it about 0.16: tubes are left to "
             "max_elongation, branchings exceed it)" },
    { .name = "shell_max_blob", .type = DSP_PARAM_FLOAT, .def = "0.25", .min = 0, .max = 1,
      .offset = offsetof(nod_ctx, shell_max_blob),
      .doc = "more tissue allowed in the shell when the depth falls off in every direction "
             "from the peak (a nodule touching vessels, not a vessel)" },
    { .name = "max_elongation", .type = DSP_PARAM_FLOAT, .def = "1.4", .min = 1, .max = 100,
      .offset = offsetof(nod_ctx, max_elongation),
      .doc = "largest ratio of the longest to the shortest principal axis" },
    { .name = "min_contrast_hu", .type = DSP_PARAM_FLOAT, .def = "100", .min = 0, .max = 2000,
      .offset = offsetof(nod_ctx, min_contrast),
      .doc = "core minus surrounding lung, at least" },
    { .name = "ridge_test", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(nod_ctx, ridge_test),
      .doc = "also reject candidates below shell_max whose depth stays level in some "
             "direction (blunt tube ends); off: it rejects some small juxtapleural nodules" },
    { .name = "max_findings", .type = DSP_PARAM_INT, .def = "50", .min = 1, .max = 10000,
      .offset = offsetof(nod_ctx, max_findings), .doc = "keep at most this many (largest first)" },
    { .name = "threads", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 64,
      .offset = offsetof(nod_ctx, threads), .doc = "worker threads (0: online cores)" },
    { NULL }
};

static const dsp_port_def nod_in[] = {
    { "in", "any", "a CT volume with its lung mask (ct.lung_mask)" }, { NULL }
};
static const dsp_port_def nod_out[] = {
    { "out", "volume", "the input with meta findings (array), candidates, detector" },
    { NULL }
};

/* The analysed sub-volume: the lungs' bounding box with one voxel of
 * background around it, so distances never run off the edge. */
typedef struct nod_box {
    const ct_volume *v;
    const uint8_t *mask;        /* full volume */
    int64_t lo[3];              /* full-volume index of box voxel (1, 1, 1) */
    int64_t dim[3];             /* box size with the padding */
    uint8_t *dense;             /* box: mask && hu > dense_hu */
    float *dist2;               /* box: squared mm to the nearest non-dense voxel */
    uint8_t *done;              /* box: suppressed by an earlier candidate */
} nod_box;

typedef struct finding {
    double c[3];                /* centre, voxel indices (slice, row, col) */
    double mm[3];
    double diameter, volume, mean_hu, max_hu, core_hu, bg_hu;
    double elongation, shell;
    double confidence;
    int solid;
} finding;

typedef struct cand {
    int64_t at;                 /* box index */
    float d2;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    float x = ((const cand *)a)->d2, y = ((const cand *)b)->d2;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int find_cmp(const void *a, const void *b)
{
    double x = ((const finding *)a)->diameter, y = ((const finding *)b)->diameter;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Hounsfield value and lung-mask bit at box coordinates (k, j, i); outside
 * the volume: air, not lung. */
static float box_hu(const nod_box *b, int64_t k, int64_t j, int64_t i, int *in_mask)
{
    const ct_volume *v = b->v;
    k += b->lo[0] - 1;
    j += b->lo[1] - 1;
    i += b->lo[2] - 1;
    if (k < 0 || j < 0 || i < 0 || k >= v->d || j >= v->h || i >= v->w) {
        *in_mask = 0;
        return -1000.0f;
    }
    int64_t x = (k * v->h + j) * v->w + i;
    *in_mask = b->mask[x] != 0;
    return v->hu[x];
}

/* Local maxima of the distance map at least rmin2 deep: blob and tube centres. */
static cand *find_peaks(const nod_box *b, float rmin2, int64_t *n_out)
{
    int64_t d = b->dim[0], h = b->dim[1], w = b->dim[2], hw = h * w, n = 0, cap = 1024;
    cand *c = malloc((size_t)cap * sizeof *c);
    if (!c)
        return NULL;
    for (int64_t k = 1; k < d - 1; k++)
        for (int64_t j = 1; j < h - 1; j++)
            for (int64_t i = 1; i < w - 1; i++) {
                int64_t x = k * hw + j * w + i;
                float v = b->dist2[x];
                if (v < rmin2)
                    continue;
                int peak = 1;
                for (int dk = -1; dk <= 1 && peak; dk++)
                    for (int dj = -1; dj <= 1 && peak; dj++)
                        for (int di = -1; di <= 1; di++)
                            if (b->dist2[x + dk * hw + dj * w + di] > v) {
                                peak = 0;
                                break;
                            }
                if (!peak)
                    continue;
                if (n == cap) {
                    cand *nc = realloc(c, (size_t)cap * 2 * sizeof *nc);
                    if (!nc) {
                        free(c);
                        return NULL;
                    }
                    c = nc;
                    cap *= 2;
                }
                c[n++] = (cand){ x, v };
            }
    *n_out = n;
    return c;
}

/* Mark the box voxels within r mm of (k, j, i) as handled. */
static void suppress(nod_box *b, int64_t k, int64_t j, int64_t i, double r)
{
    const double *sp = b->v->sp;
    int64_t e[3];
    for (int a = 0; a < 3; a++)
        e[a] = (int64_t)(r / sp[a]);
    for (int64_t z = k - e[0]; z <= k + e[0]; z++)
        for (int64_t y = j - e[1]; y <= j + e[1]; y++)
            for (int64_t x = i - e[2]; x <= i + e[2]; x++) {
                if (z < 0 || y < 0 || x < 0 || z >= b->dim[0] || y >= b->dim[1] ||
                    x >= b->dim[2])
                    continue;
                double dz = (z - k) * sp[0], dy = (y - j) * sp[1], dx = (x - i) * sp[2];
                if (dz * dz + dy * dy + dx * dx <= r * r)
                    b->done[(z * b->dim[1] + y) * b->dim[2] + x] = 1;
            }
}

/* Eigenvalues of a symmetric 3x3 matrix (closed form, Smith 1961), ascending. */
static void eig3(const double a[6], double ev[3])
{
    /* a = xx, yy, zz, xy, xz, yz */
    double p1 = a[3] * a[3] + a[4] * a[4] + a[5] * a[5];
    double q = (a[0] + a[1] + a[2]) / 3;
    if (p1 < 1e-18) {
        ev[0] = a[0]; ev[1] = a[1]; ev[2] = a[2];
    } else {
        double p2 = (a[0] - q) * (a[0] - q) + (a[1] - q) * (a[1] - q) + (a[2] - q) * (a[2] - q) +
                    2 * p1;
        double p = sqrt(p2 / 6);
        double b[6] = { (a[0] - q) / p, (a[1] - q) / p, (a[2] - q) / p, a[3] / p, a[4] / p,
                        a[5] / p };
        double r = (b[0] * (b[1] * b[2] - b[5] * b[5]) - b[3] * (b[3] * b[2] - b[5] * b[4]) +
                    b[4] * (b[3] * b[5] - b[1] * b[4])) / 2;
        double phi = r <= -1 ? M_PI / 3 : r >= 1 ? 0 : acos(r) / 3;
        ev[2] = q + 2 * p * cos(phi);
        ev[0] = q + 2 * p * cos(phi + 2 * M_PI / 3);
        ev[1] = 3 * q - ev[0] - ev[2];
    }
    for (int x = 0; x < 2; x++)
        for (int y = x + 1; y < 3; y++)
            if (ev[y] < ev[x]) {
                double t = ev[x]; ev[x] = ev[y]; ev[y] = t;
            }
}

/* A blob's distance peak falls off in every direction (by d mm at d mm from
 * a sphere's centre); along a tube, or into the branches of a bifurcation,
 * it stays level. Returns 1 when the deepest voxel on the sphere of radius
 * delta = max(r/2, 3.5 voxels) around the peak is deeper than r - 3/4 delta:
 * a ridge, whatever its orientation. The quarter delta left covers the peak
 * voxel being up to 0.87 voxel off a sphere's true centre. */
static int is_ridge(const nod_box *b, int64_t k, int64_t j, int64_t i, double r)
{
    const double *sp = b->v->sp;
    double spmax = fmax(sp[0], fmax(sp[1], sp[2]));
    double delta = fmax(0.5 * r, 3.5 * spmax), best = 0;
    int64_t e[3];
    for (int a = 0; a < 3; a++)
        e[a] = (int64_t)ceil((delta + spmax) / sp[a]);
    for (int64_t z = k - e[0]; z <= k + e[0]; z++)
        for (int64_t y = j - e[1]; y <= j + e[1]; y++)
            for (int64_t x = i - e[2]; x <= i + e[2]; x++) {
                if (z < 0 || y < 0 || x < 0 || z >= b->dim[0] || y >= b->dim[1] ||
                    x >= b->dim[2])
                    continue;
                double dz = (z - k) * sp[0], dy = (y - j) * sp[1], dx = (x - i) * sp[2];
                double dd = sqrt(dz * dz + dy * dy + dx * dx);
                if (fabs(dd - delta) > 0.5 * spmax)
                    continue;
                double v = b->dist2[(z * b->dim[1] + y) * b->dim[2] + x];
                if (v > best)
                    best = v;
            }
    return sqrt(best) > r - 0.75 * delta;
}

/* Measure the blob centred at box voxel (k, j, i) whose distance peak is r
 * mm. Returns 1 with f filled when it passes the rules, 0 when rejected. */
static int measure(dsp_node *node, const nod_ctx *c, const nod_box *b, int64_t k, int64_t j, int64_t i, double r,
                   finding *f)
{
    const double *sp = b->v->sp;
    double spmax = fmax(sp[0], fmax(sp[1], sp[2]));
    double r_in = 1.5 * r, r_out = fmax(2.0 * r, r_in + 1.5 * spmax);
    double r_core = fmax(0.5 * r, 0.0), r_ball = r + 1.5 * spmax;
    int64_t e[3];
    for (int a = 0; a < 3; a++)
        e[a] = (int64_t)ceil(r_out / sp[a]);
    /* first sweep: the shell (tube test, background level) and the core */
    int64_t shell_lung = 0, shell_dense = 0, n_core = 0, n_bg = 0;
    double core = 0, bg = 0;
    for (int64_t z = k - e[0]; z <= k + e[0]; z++)
        for (int64_t y = j - e[1]; y <= j + e[1]; y++)
            for (int64_t x = i - e[2]; x <= i + e[2]; x++) {
                double dz = (z - k) * sp[0], dy = (y - j) * sp[1], dx = (x - i) * sp[2];
                double dd = sqrt(dz * dz + dy * dy + dx * dx);
                if (dd > r_out)
                    continue;
                int in;
                float hu = box_hu(b, z, y, x, &in);
                if (dd <= r_core) {
                    core += hu;
                    n_core++;
                }
                if (dd >= r_in && in) {
                    shell_lung++;
                    if (hu > c->dense_hu)
                        shell_dense++;
                    else {
                        bg += hu;
                        n_bg++;
                    }
                }
            }
    double at[3];
    ct_voxel_to_mm(b->v, (double)(k + b->lo[0] - 1), (double)(j + b->lo[1] - 1),
                   (double)(i + b->lo[2] - 1), at);
    if (!shell_lung || !n_bg || !n_core)
        return 0;
    core /= (double)n_core;
    bg /= (double)n_bg;
    f->shell = (double)shell_dense / (double)shell_lung;
    if (c->ridge_test && is_ridge(b, k, j, i, r)) {
        dsp_node_log(node, DSP_LOG_DEBUG, "reject (%.1f, %.1f, %.1f) r %.2f: ridge (tube)",
                     at[0], at[1], at[2], r);
        return 0;
    }
    /* between shell_max and shell_max_blob only a peak with no level
     * direction (not a tube, not a branching) passes */
    int crowded = f->shell > c->shell_max &&
                  (f->shell > c->shell_max_blob || is_ridge(b, k, j, i, r));
    if (crowded || core - bg < c->min_contrast) {
        dsp_node_log(node, DSP_LOG_DEBUG, "reject (%.1f, %.1f, %.1f) r %.2f: shell %.3f, "
                     "contrast %.0f", at[0], at[1], at[2], r, f->shell, core - bg);
        return 0;
    }
    /* second sweep: partial-volume weighted volume, centre and moments
     * inside the ball; weights below 0 are kept (down to -1) so noise in the
     * lung around the nodule averages out instead of adding volume */
    double sw = 0, s1[3] = { 0 }, s2[6] = { 0 }, wsum = 0, hu_sum = 0, hu_max = -1e9;
    int64_t n_in = 0;
    for (int64_t z = k - e[0]; z <= k + e[0]; z++)
        for (int64_t y = j - e[1]; y <= j + e[1]; y++)
            for (int64_t x = i - e[2]; x <= i + e[2]; x++) {
                double dz = (z - k) * sp[0], dy = (y - j) * sp[1], dx = (x - i) * sp[2];
                if (dz * dz + dy * dy + dx * dx > r_ball * r_ball)
                    continue;
                int in;
                float hu = box_hu(b, z, y, x, &in);
                if (!in)
                    continue;
                double wv = (hu - bg) / (core - bg);
                wv = wv > 1 ? 1 : wv < -1 ? -1 : wv;
                sw += wv;
                if (wv > 0) {
                    double p[3] = { dz, dy, dx };
                    wsum += wv;
                    for (int a = 0; a < 3; a++)
                        s1[a] += wv * p[a];
                    s2[0] += wv * dz * dz; s2[1] += wv * dy * dy; s2[2] += wv * dx * dx;
                    s2[3] += wv * dz * dy; s2[4] += wv * dz * dx; s2[5] += wv * dy * dx;
                }
                if (wv >= 0.5) {
                    hu_sum += hu;
                    n_in++;
                    if (hu > hu_max)
                        hu_max = hu;
                }
            }
    if (wsum <= 0 || n_in == 0 || sw <= 0)
        return 0;
    double vox = sp[0] * sp[1] * sp[2];
    f->volume = sw * vox;
    f->diameter = cbrt(6.0 * f->volume / M_PI);
    double m[3] = { s1[0] / wsum, s1[1] / wsum, s1[2] / wsum };
    double cov[6] = { s2[0] / wsum - m[0] * m[0], s2[1] / wsum - m[1] * m[1],
                      s2[2] / wsum - m[2] * m[2], s2[3] / wsum - m[0] * m[1],
                      s2[4] / wsum - m[0] * m[2], s2[5] / wsum - m[1] * m[2] };
    double ev[3];
    eig3(cov, ev);
    f->elongation = ev[0] > 1e-9 ? sqrt(ev[2] / ev[0]) : 1e9;
    if (f->diameter < c->min_diameter || f->diameter > c->max_diameter ||
        f->elongation > c->max_elongation) {
        dsp_node_log(node, DSP_LOG_DEBUG, "reject (%.1f, %.1f, %.1f) r %.2f: diameter %.1f, "
                     "elongation %.2f, shell %.3f", at[0], at[1], at[2], r, f->diameter,
                     f->elongation, f->shell);
        return 0;
    }
    f->c[0] = (double)(k + b->lo[0] - 1) + m[0] / sp[0];
    f->c[1] = (double)(j + b->lo[1] - 1) + m[1] / sp[1];
    f->c[2] = (double)(i + b->lo[2] - 1) + m[2] / sp[2];
    ct_voxel_to_mm(b->v, f->c[0], f->c[1], f->c[2], f->mm);
    f->core_hu = core;
    f->bg_hu = bg;
    f->mean_hu = hu_sum / (double)n_in;
    f->max_hu = hu_max;
    f->solid = core >= c->solid_hu;
    if (!f->solid && f->diameter < c->min_subsolid) {
        dsp_node_log(node, DSP_LOG_DEBUG, "reject (%.1f, %.1f, %.1f) r %.2f: sub-solid %.1f mm",
                     at[0], at[1], at[2], r, f->diameter);
        return 0;
    }
    /* a heuristic score, not a probability: how clearly it is isolated and round */
    double iso = c->shell_max > 0 ? fmax(0.0, 1.0 - f->shell / c->shell_max) : 1.0;
    double round = c->max_elongation > 1 ? 1.0 - (f->elongation - 1) / (c->max_elongation - 1)
                                         : 1.0;
    f->confidence = 0.5 + 0.25 * iso + 0.25 * round;
    return 1;
}

/* The findings as an f64 tensor [n, CT_F_COUNT] (see ct.h); NULL on OOM. */
static dsp_tensor *findings_tensor(const finding *f, int n)
{
    int64_t shape[2] = { n, CT_F_COUNT };
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(DSP_DTYPE_F64, 2, shape, &t) < 0)
        return NULL;
    double *r = dsp_tensor_data(t);
    for (int x = 0; x < n; x++, r += CT_F_COUNT) {
        const finding *g = f + x;
        r[CT_F_SLICE] = g->c[0]; r[CT_F_ROW] = g->c[1]; r[CT_F_COL] = g->c[2];
        r[CT_F_X] = g->mm[0]; r[CT_F_Y] = g->mm[1]; r[CT_F_Z] = g->mm[2];
        r[CT_F_DIAMETER] = g->diameter; r[CT_F_VOLUME] = g->volume;
        r[CT_F_MEAN_HU] = g->mean_hu; r[CT_F_MAX_HU] = g->max_hu;
        r[CT_F_CORE_HU] = g->core_hu; r[CT_F_BG_HU] = g->bg_hu;
        r[CT_F_ELONGATION] = g->elongation; r[CT_F_SHELL] = g->shell;
        r[CT_F_SOLID] = g->solid; r[CT_F_CONFIDENCE] = g->confidence;
    }
    return t;
}

static int box_from_mask(const ct_volume *v, const uint8_t *mask, nod_box *b)
{
    int64_t lo[3] = { INT64_MAX, INT64_MAX, INT64_MAX }, hi[3] = { -1, -1, -1 };
    for (int64_t k = 0; k < v->d; k++)
        for (int64_t j = 0; j < v->h; j++) {
            const uint8_t *r = mask + (k * v->h + j) * v->w;
            for (int64_t i = 0; i < v->w; i++) {
                if (!r[i])
                    continue;
                int64_t c[3] = { k, j, i };
                for (int a = 0; a < 3; a++) {
                    if (c[a] < lo[a]) lo[a] = c[a];
                    if (c[a] > hi[a]) hi[a] = c[a];
                }
            }
        }
    if (hi[0] < 0)
        return 0;
    for (int a = 0; a < 3; a++) {
        b->lo[a] = lo[a];
        b->dim[a] = hi[a] - lo[a] + 1 + 2;
    }
    return 1;
}

static int nod_process(dsp_node *node, dsp_packet **in)
{
    nod_ctx *c = dsp_node_priv(node);
    ct_volume v;
    dsp_tensor *t;
    char wb[64], desc[96];
    const char *where = ct_where(in[0], wb, sizeof wb);
    int threads = (int)c->threads, err = ct_volume_find(node, in[0], c->name, &v, &t);
    if (err < 0)
        return err;
    dsp_tensor *mt = dsp_packet_tensor(in[0], c->mask);
    if (!mt)
        return dsp_node_fail(node, DSP_ENOENT, "%s: no lung mask '%s' in the packet: run "
                             "ct.lung_mask before ct.nodules", where, c->mask);
    dsp_tensor_describe(mt, desc, sizeof desc);
    if (mt->dtype != DSP_DTYPE_U8 || mt->ndim != 3 || mt->shape[0] != v.d ||
        mt->shape[1] != v.h || mt->shape[2] != v.w || !dsp_tensor_is_contiguous(mt))
        return dsp_node_fail(node, DSP_EINVAL, "%s: lung mask '%s' is %s; expected u8 "
                             "[%lld, %lld, %lld] like the volume", where, c->mask, desc,
                             (long long)v.d, (long long)v.h, (long long)v.w);
    nod_box b = { .v = &v, .mask = dsp_tensor_data(mt) };
    finding *found = NULL;
    cand *cs = NULL;
    int64_t ncand = 0, tested = 0;
    int nf = 0;
    double t0 = ct_now(), t_edt = t0, t_peaks = t0;
    if (box_from_mask(&v, b.mask, &b)) {
        int64_t n = b.dim[0] * b.dim[1] * b.dim[2];
        b.dense = calloc((size_t)n, 1);
        b.done = calloc((size_t)n, 1);
        b.dist2 = malloc((size_t)n * sizeof *b.dist2);
        if (!b.dense || !b.done || !b.dist2)
            goto oom;
        for (int64_t k = 1; k < b.dim[0] - 1; k++)
            for (int64_t j = 1; j < b.dim[1] - 1; j++)
                for (int64_t i = 1; i < b.dim[2] - 1; i++) {
                    int64_t x = ((k + b.lo[0] - 1) * v.h + (j + b.lo[1] - 1)) * v.w +
                                (i + b.lo[2] - 1);
                    b.dense[(k * b.dim[1] + j) * b.dim[2] + i] =
                        b.mask[x] && v.hu[x] > c->dense_hu;
                }
        if (ct_edt(b.dense, b.dim[0], b.dim[1], b.dim[2], v.sp, threads, b.dist2) < 0)
            goto oom;
        t_edt = ct_now();
        /* a blob of the smallest reported diameter peaks at about its radius */
        double rmin = 0.4 * c->min_diameter;
        if (!(cs = find_peaks(&b, (float)(rmin * rmin), &ncand)))
            goto oom;
        t_peaks = ct_now();
        qsort(cs, (size_t)ncand, sizeof *cs, cand_cmp);
        int cap = 16;
        if (!(found = malloc((size_t)cap * sizeof *found)))
            goto oom;
        for (int64_t q = 0; q < ncand; q++) {
            if (b.done[cs[q].at])
                continue;
            int64_t hw = b.dim[1] * b.dim[2];
            int64_t k = cs[q].at / hw, j = (cs[q].at / b.dim[2]) % b.dim[1],
                    i = cs[q].at % b.dim[2];
            double r = sqrt((double)cs[q].d2);
            finding f;
            tested++;
            int ok = measure(node, c, &b, k, j, i, r, &f);
            suppress(&b, k, j, i, ok ? fmax(r * 1.5, f.diameter / 2) : r);
            if (!ok)
                continue;
            if (nf == cap) {
                finding *nfp = realloc(found, (size_t)cap * 2 * sizeof *nfp);
                if (!nfp)
                    goto oom;
                found = nfp;
                cap *= 2;
            }
            found[nf++] = f;
        }
        qsort(found, (size_t)nf, sizeof *found, find_cmp);
        if (nf > c->max_findings)
            nf = (int)c->max_findings;
    }
    free(b.dense);
    free(b.done);
    free(b.dist2);
    free(cs);
    b.dense = b.done = NULL;
    b.dist2 = NULL;
    cs = NULL;

    dsp_tensor *ft = findings_tensor(found, nf);
    char *json = ft ? ct_findings_json(dsp_tensor_data(ft), nf) : NULL;
    free(found);
    found = NULL;
    dsp_packet *p = NULL;
    if (!json || !ft || dsp_packet_derive(in[0], &p) < 0) {
        free(json);
        dsp_tensor_unref(&ft);
        goto oom;
    }
    dsp_meta *m = dsp_packet_meta(p);
    err = dsp_packet_set_tensor(p, "nodules", ft);
    err = err ? err : dsp_meta_set_json(m, "findings", json);
    err = err ? err : dsp_meta_set_int(m, "nodule_candidates", tested);
    err = err ? err : dsp_meta_set_str(m, "detector", "classical");
    err = err ? err : dsp_meta_set_str(m, "classifier", "none");
    free(json);
    if (err < 0) {
        dsp_packet_unref(&p);
        goto oom;
    }
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %d finding(s) from %lld peak(s), %lld tested; "
                 "times (s): distance map %.2f, peaks %.2f, measuring %.2f", where, nf,
                 (long long)ncand, (long long)tested, t_edt - t0, t_peaks - t_edt,
                 ct_now() - t_peaks);
    return dsp_node_emit(node, 0, p);
oom:
    free(b.dense);
    free(b.done);
    free(b.dist2);
    free(cs);
    free(found);
    return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory looking for nodules", where);
}

const dsp_op_def ct_nodules_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "ct.nodules",
    .doc = "lung nodule candidates inside the lung mask: distance-transform blobs, "
           "partial-volume size, vessel rejection",
    .inputs = nod_in,
    .outputs = nod_out,
    .params = nod_params,
    .priv_size = sizeof(nod_ctx),
    .process = nod_process,
};
