/* read.c - dicom.read: files from files.list (series built at end of stream) or studies from dicom.studies (one at a time) in, HU volumes out. */
/* FNM_CASEFOLD */
#define _GNU_SOURCE
#include "dicom.h"
#include "dcmw.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dspipe/ops.h>

enum { SELECT_LARGEST, SELECT_ALL };
static const char *const select_names[] = { "largest", "all", NULL };
enum { PHI_DROP, PHI_KEEP };
static const char *const phi_names[] = { "drop", "keep", NULL };
enum { INPUT_AUTO, INPUT_FILES, INPUT_STUDIES };
static const char *const input_names[] = { "auto", "files", "studies", NULL };

typedef struct read_ctx {
    /* parameters */
    char *name;
    char *modality;
    char *description;
    int64_t min_slices;
    int select;
    double spacing_tolerance;
    int allow_shear;
    int phi;
    dicom_limits lim;
    /* state: every image read so far, and notes about skipped files */
    dicom_image **img;
    int n_img, cap_img;
    char *notes;                /* JSON array text, malloc'd */
    int n_skipped;
    int per_item;               /* fed studies (meta "paths"): one item each */
    int input;                  /* INPUT_*: what the packets are */
    dicom_arena *arena;         /* the images' pixels: one arena per pool thread */
    int n_arena;
} read_ctx;

static const dsp_param_def read_params[] = {
    { .name = "input", .type = DSP_PARAM_ENUM, .def = "auto", .choices = input_names,
      .offset = offsetof(read_ctx, input),
      .doc = "files: one file per packet (files.list), series built at the end of the stream; "
             "studies: one study per packet (dicom.studies), emitted at once, so a run can be "
             "resumed; auto: by each packet's meta (path or paths)" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(read_ctx, name), .doc = "name of the output tensor" },
    { .name = "modality", .type = DSP_PARAM_STRING, .def = "",
      .offset = offsetof(read_ctx, modality),
      .doc = "keep only series of this Modality (CT, MR, ...); empty: any" },
    { .name = "description", .type = DSP_PARAM_STRING, .def = "",
      .offset = offsetof(read_ctx, description),
      .doc = "keep only series whose SeriesDescription matches this shell pattern "
             "(case-insensitive, e.g. \"*axial*\"); empty: any" },
    { .name = "min_slices", .type = DSP_PARAM_INT, .def = "1", .min = 1, .max = 1e9,
      .offset = offsetof(read_ctx, min_slices),
      .doc = "keep only series with at least this many slices (frames)" },
    { .name = "select", .type = DSP_PARAM_ENUM, .def = "largest", .choices = select_names,
      .offset = offsetof(read_ctx, select),
      .doc = "among the series that pass the rules: largest (most slices; one volume) or all" },
    { .name = "spacing_tolerance", .type = DSP_PARAM_FLOAT, .def = "0.1", .min = 0.001,
      .max = 0.99, .offset = offsetof(read_ctx, spacing_tolerance),
      .doc = "relative deviation from the median slice spacing that counts as a missing "
             "slice (larger) or uneven spacing (smaller)" },
    { .name = "allow_shear", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(read_ctx, allow_shear),
      .doc = "stack slices that are offset in-plane (gantry tilt) with a note instead of "
             "refusing the series; the volume is then not shear-corrected" },
    { .name = "phi", .type = DSP_PARAM_ENUM, .def = "drop", .choices = phi_names,
      .offset = offsetof(read_ctx, phi),
      .doc = "drop: no patient-identifying attributes downstream; keep: meta \"patient\" "
             "holds name, ID, birth date, sex, age, accession, institution, study date..." },
    { .name = "max_pixels", .type = DSP_PARAM_INT, .def = "1073741824", .min = 1, .max = 1e13,
      .offset = offsetof(read_ctx, lim.max_pixels),
      .doc = "refuse frames with more pixels (rows x columns), before decoding" },
    { .name = "max_frames", .type = DSP_PARAM_INT, .def = "100000", .min = 1, .max = 1e9,
      .offset = offsetof(read_ctx, lim.max_frames),
      .doc = "refuse files with more frames (NumberOfFrames)" },
    { .name = "max_slices", .type = DSP_PARAM_INT, .def = "100000", .min = 1, .max = 1e9,
      .offset = offsetof(read_ctx, lim.max_slices),
      .doc = "refuse series with more slices" },
    { .name = "max_bytes", .type = DSP_PARAM_INT, .def = "17179869184", .min = 1, .max = 1e15,
      .offset = offsetof(read_ctx, lim.max_bytes),
      .doc = "refuse files, decoded files and volumes larger than this many bytes" },
    { NULL }
};

static const dsp_port_def read_in[] = {
    { "in", "any", "records with meta \"path\" (files.list): the files of one or more series" },
    { NULL }
};
static const dsp_port_def read_out[] = {
    { "out", "volume", "one packet per selected series: tensor volume (f32 HU [slices, rows, "
      "cols], or u8/u16/u32 [slices, rows, cols, 3] for colour) and its geometry and UIDs" },
    { NULL }
};

static int read_init(dsp_node *node)
{
    read_ctx *c = dsp_node_priv(node);
    if (!c->name || !c->name[0])
        return dsp_node_fail(node, DSP_EINVAL, "name must not be empty");
    /* without DCMTK's dictionary every file would fail: refuse to start */
    /* one study per item keeps nothing past its item: --resume can journal it */
    if (c->input == INPUT_STUDIES)
        dsp_node_set_gather(node, 0);
    /* a study's files are read on the ops pool, each thread cutting pixels
     * from its own arena */
    c->n_arena = dsp_ops_threads();
    if (!(c->arena = calloc((size_t)c->n_arena, sizeof *c->arena)))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    char why[DICOM_WHY];
    int err = dcmw_init(why, sizeof why);
    return err < 0 ? dsp_node_fail(node, err, "%s", why) : 0;
}

static int add_note(dsp_node *node, read_ctx *c, const char *fmt, const char *a, const char *b)
{
    char buf[DICOM_WHY + 1024];
    snprintf(buf, sizeof buf, fmt, a, b);
    /* one line per skipped file only when asked (-v): a CD export has many */
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s", buf);
    return dicom_json_append(&c->notes, buf);
}

/* One file read, possibly on a pool thread: its image and the outcome. */
typedef struct file_read {
    const char *path;
    dicom_image *img;
    int err;
    char why[DICOM_WHY];
} file_read;

typedef struct read_job {
    dsp_node *node;
    read_ctx *c;
    file_read *f;
} read_job;

static void read_task(void *ctx, int i, int thread)
{
    read_job *j = ctx;
    file_read *f = &j->f[i];
    if (dsp_node_stopping(j->node)) {
        f->err = DSP_EINTR;
        snprintf(f->why, DICOM_WHY, "stopped");
    } else if (!(f->img = calloc(1, sizeof *f->img))) {
        f->err = DSP_ENOMEM;
        snprintf(f->why, DICOM_WHY, "out of memory");
    } else {
        f->err = dicom_read_file(f->path, &j->c->lim, j->c->phi == PHI_KEEP,
                                 &j->c->arena[thread], f->img, f->why);
    }
}

/* Read f[0..n) on the ops pool (DSPIPE_OPS_THREADS; decoding a file is
 * independent of the others), then keep them in order with keep_file. */
static void read_files(dsp_node *node, read_ctx *c, file_read *f, int n)
{
    read_job j = { node, c, f };
    dsp_parallel_tasks(n, read_task, &j);
}

/* Keep f's image in c->img as part of item, or note a skipped file: 0, or
 * f->err with the reason in f->why. The image is taken either way. */
static int keep_file(dsp_node *node, read_ctx *c, file_read *f, int64_t item)
{
    int err = f->err;
    if (err == 0 && c->n_img == c->cap_img) {
        int cap = c->cap_img ? 2 * c->cap_img : 64;
        dicom_image **p = realloc(c->img, (size_t)cap * sizeof *p);
        if (p) {
            c->img = p;
            c->cap_img = cap;
        } else {
            err = DSP_ENOMEM;
            snprintf(f->why, DICOM_WHY, "out of memory");
        }
    }
    if (err == 0) {
        f->img->item = item;
        c->img[c->n_img++] = f->img;
        f->img = NULL;
        return 0;
    }
    if (f->img) {
        dicom_image_clear(f->img);
        free(f->img);
        f->img = NULL;
    }
    if (err == DICOM_SKIP) {
        c->n_skipped++;
        if (add_note(node, c, "%s: skipped: %s", f->path, f->why) < 0)
            return snprintf(f->why, DICOM_WHY, "out of memory"), DSP_ENOMEM;
        return 0;
    }
    return err;
}

static void drop_images(read_ctx *c);
static int select_and_emit(dsp_node *node, read_ctx *c, int64_t item);

/* Per-item mode: one study (dicom.studies) in, its selected series out as
 * that item, at once. A file of the study that cannot be read is a note,
 * not a failure: the series checks catch a slice it leaves missing. */
static int read_study(dsp_node *node, read_ctx *c, const dsp_packet *in)
{
    const dsp_meta *m = dsp_packet_meta_const(in);
    int64_t item = dsp_packet_item(in);
    const char *uid = "", *bad = NULL, *src = "";
    dsp_meta_get_str(m, "study_uid", &uid);
    dsp_meta_get_str(m, "source", &src);
    if (c->n_img)
        return dsp_node_fail(node, DSP_EINVAL, "item %" PRId64 " has meta \"paths\" (a study) "
                             "but earlier items were single files (meta \"path\"); feed "
                             "dicom.read from files.list or from dicom.studies, not both",
                             item);
    c->per_item = 1;
    size_t n = 0, n_notes = 0;
    if (dsp_meta_get_str(m, "unreadable", &bad) == 0)
        return dsp_node_fail(node, DSP_EFORMAT, "%s: %s", src, bad);
    if (dsp_meta_get_strs(m, "paths", NULL, 0, &n) < 0 || n == 0)
        return dsp_node_fail(node, DSP_EINVAL, "item %" PRId64 ": meta \"paths\" must be a "
                             "non-empty array of file names", item);
    const char **paths = calloc(n, sizeof *paths);
    const char **notes = NULL;
    if (!paths)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    dsp_meta_get_strs(m, "paths", paths, n, &n);
    /* the source's notes (files skipped while grouping) go on with the study */
    int err = 0;
    if (dsp_meta_get_strs(m, "notes", NULL, 0, &n_notes) == 0 && n_notes &&
        (notes = calloc(n_notes, sizeof *notes)) != NULL) {
        dsp_meta_get_strs(m, "notes", notes, n_notes, &n_notes);
        for (size_t i = 0; i < n_notes && !err; i++)
            err = dicom_json_append(&c->notes, notes[i]);
    }
    char first[DICOM_WHY + 1024] = "";
    int n_bad = 0;
    file_read *f = err ? NULL : calloc(n, sizeof *f);
    if (!err && !f)
        err = DSP_ENOMEM;
    for (size_t i = 0; f && i < n; i++)
        f[i].path = paths[i];
    if (f)
        read_files(node, c, f, (int)n);
    for (size_t i = 0; f && i < n; i++) {
        int rc = keep_file(node, c, &f[i], item);  /* takes every image, also after a failure */
        if (err || rc == DSP_EINTR)
            continue;
        if ((err = rc) == DSP_ENOMEM)
            continue;
        if (err < 0) {
            char msg[DICOM_WHY + 1024];
            snprintf(msg, sizeof msg, "%s: not read: %s", paths[i], f[i].why);
            dsp_node_log(node, DSP_LOG_WARNING, "%s", msg);
            if (!n_bad++)
                snprintf(first, sizeof first, "%s", msg);
            err = dicom_json_append(&c->notes, msg);
        }
    }
    if (err < 0)
        err = dsp_node_fail(node, err, "study %s: %s", uid, dsp_strerror(err));
    else if (dsp_node_stopping(node))
        err = dsp_node_fail(node, DSP_EINTR, "study %s: stopped while reading it", uid);
    else if (c->n_img == 0)
        err = dsp_node_fail(node, n_bad ? DSP_EFORMAT : DSP_ENOENT, "study %s (%s): no DICOM "
                            "image could be read from its %zu file%s%s%s", uid, src, n,
                            n == 1 ? "" : "s", n_bad ? "; first: " : "", first);
    else
        err = select_and_emit(node, c, item);
    drop_images(c);
    free(c->notes);
    c->notes = NULL;
    c->n_skipped = 0;
    free(f);
    free(paths);
    free(notes);
    return err;
}

static int read_process(dsp_node *node, dsp_packet **in)
{
    read_ctx *c = dsp_node_priv(node);
    const char *path = NULL;
    if (dsp_meta_has(dsp_packet_meta_const(in[0]), "paths") && c->input != INPUT_FILES)
        return read_study(node, c, in[0]);
    if (c->input == INPUT_STUDIES)
        return dsp_node_fail(node, DSP_EINVAL, "not a study: no array meta \"paths\" (input=studies "
                             "takes what dicom.studies emits)");
    if (dsp_meta_get_str(dsp_packet_meta_const(in[0]), "path", &path) < 0)
        return dsp_node_fail(node, DSP_EINVAL, "item %" PRId64 " has neither string meta "
                             "\"path\" nor array meta \"paths\"; connect dicom.read to "
                             "files.list or dicom.studies", dsp_packet_item(in[0]));
    if (c->per_item)
        return dsp_node_fail(node, DSP_EINVAL, "%s: a single file after studies (meta "
                             "\"paths\"); feed dicom.read from files.list or from "
                             "dicom.studies, not both", path);
    file_read f = { .path = path };
    read_files(node, c, &f, 1);
    int err = keep_file(node, c, &f, dsp_packet_item(in[0]));
    return err < 0 ? dsp_node_fail(node, err, "%s: %s", path, f.why) : 0;
}

/* ---- grouping and selection ---------------------------------------------- */

static int same_series(const dicom_image *a, const dicom_image *b)
{
    return !strcmp(a->study_uid, b->study_uid) && !strcmp(a->series_uid, b->series_uid);
}

static int cmp_first_item(const void *x, const void *y)
{
    const dicom_series *a = x, *b = y;
    int64_t ia = a->img[0]->item, ib = b->img[0]->item;
    return ia < ib ? -1 : ia > ib;
}

/* Group images by (StudyInstanceUID, SeriesInstanceUID); the images stay in
 * input order inside a group, so img[0] has the smallest item. Each group's
 * img points into *slots_out (malloc'd, one array for all groups). */
static int group(read_ctx *c, dicom_series **out, int *n_out, dicom_image ***slots_out)
{
    dicom_series *s = calloc((size_t)c->n_img, sizeof *s);
    dicom_image **slots = calloc((size_t)c->n_img, sizeof *slots);
    int *gid = calloc((size_t)c->n_img, sizeof *gid);
    if (!s || !slots || !gid) {
        free(s), free(slots), free(gid);
        return DSP_ENOMEM;
    }
    int n = 0;
    for (int i = 0; i < c->n_img; i++) {
        int g = 0;
        while (g < n && !same_series(s[g].img ? s[g].img[0] : NULL, c->img[i]))
            g++;
        if (g == n)
            s[n++].n_img = 0;
        gid[i] = g;
        s[g].n_img++;
        s[g].slices += c->img[i]->frames;
        if (!s[g].img)
            s[g].img = &c->img[i];   /* temporary: the first image, for comparing */
    }
    /* lay the groups out contiguously in slots */
    int off = 0;
    for (int g = 0; g < n; g++) {
        int cnt = s[g].n_img;
        s[g].img = slots + off;
        s[g].n_img = 0;
        off += cnt;
    }
    for (int i = 0; i < c->n_img; i++)
        s[gid[i]].img[s[gid[i]].n_img++] = c->img[i];
    free(gid);
    qsort(s, (size_t)n, sizeof *s, cmp_first_item);
    *out = s;
    *slots_out = slots;
    *n_out = n;
    return 0;
}

/* Why series s does not pass the rules, or NULL. */
static const char *rejected(const read_ctx *c, const dicom_series *s, char *buf, size_t n)
{
    const dicom_image *a = s->img[0];
    if (c->modality && c->modality[0] && strcasecmp(a->modality, c->modality)) {
        snprintf(buf, n, "modality %s, not %s", a->modality[0] ? a->modality : "(none)",
                 c->modality);
        return buf;
    }
    if (c->description && c->description[0] &&
        fnmatch(c->description, a->series_desc, FNM_CASEFOLD) != 0) {
        snprintf(buf, n, "description '%s' does not match '%s'", a->series_desc, c->description);
        return buf;
    }
    if (s->slices < c->min_slices) {
        snprintf(buf, n, "%lld slices, fewer than min_slices=%lld", (long long)s->slices,
                 (long long)c->min_slices);
        return buf;
    }
    return NULL;
}

static void describe(const dicom_series *s, char *buf, size_t n)
{
    const dicom_image *a = s->img[0];
    snprintf(buf, n, "series %s (%s, '%s', %lld slice%s in %d file%s)",
             a->series_uid[0] ? a->series_uid : "(no SeriesInstanceUID)",
             a->modality[0] ? a->modality : "no modality", a->series_desc,
             (long long)s->slices, s->slices == 1 ? "" : "s", s->n_img, s->n_img == 1 ? "" : "s");
}

static void strcat_bounded(char *dst, size_t n, const char *src)
{
    size_t l = strlen(dst);
    if (l + 1 < n)
        snprintf(dst + l, n - l, "%s", src);
}

/* ---- the output packet ----------------------------------------------------- */

/* The source instances, for writers that must reference them (an SR's
 * evidence): meta "sop_class_uid" (the first file's) and
 * "sop_instance_uids", every file's SOPInstanceUID joined by '\\' as in a
 * DICOM multi-valued attribute (UIDs never contain a backslash). */
static int set_instance_refs(dsp_meta *m, const dicom_series *s)
{
    size_t len = 1;
    for (int i = 0; i < s->n_img; i++)
        len += strlen(s->img[i]->sop_uid) + 1;
    char *uids = malloc(len), *q = uids;
    if (!uids)
        return DSP_ENOMEM;
    *q = '\0';
    for (int i = 0; i < s->n_img; i++) {
        if (!s->img[i]->sop_uid[0])
            continue;
        q += sprintf(q, "%s%s", q == uids ? "" : "\\", s->img[i]->sop_uid);
    }
    int err = dsp_meta_set_str(m, "sop_instance_uids", uids);
    free(uids);
    if (!err && s->n_img && s->img[0]->sop_class[0])
        err = dsp_meta_set_str(m, "sop_class_uid", s->img[0]->sop_class);
    return err;
}

static int set_meta(read_ctx *c, dsp_meta *m, const dicom_series *s, const dicom_volume *v,
                    const char *selection)
{
    const dicom_image *a = s->img[0];
    /* the directory every file of the series lies under */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", a->path);
    for (int i = 1; i < s->n_img; i++) {
        size_t k = 0;
        while (dir[k] && dir[k] == s->img[i]->path[k])
            k++;
        dir[k] = '\0';
    }
    char *sl = strrchr(dir, '/');
    if (sl && sl != dir)
        *sl = '\0';
    else
        snprintf(dir, sizeof dir, "%s", sl ? "/" : ".");
    int err = dsp_meta_set_str(m, "source", dir);
    err = err ? err : dsp_meta_set_str(m, "study_uid", a->study_uid);
    err = err ? err : dsp_meta_set_str(m, "series_uid", a->series_uid);
    err = err ? err : dsp_meta_set_str(m, "frame_of_reference_uid", a->for_uid);
    err = err ? err : dsp_meta_set_str(m, "modality", a->modality);
    err = err ? err : dsp_meta_set_str(m, "series_description", a->series_desc);
    if (!err && a->has_series_number)
        err = dsp_meta_set_int(m, "series_number", a->series_number);
    err = err ? err : dsp_meta_set_int(m, "files", s->n_img);
    err = err ? err : dsp_meta_set_int(m, "slices", v->t->shape[0]);
    err = err ? err : dsp_meta_set_int(m, "rows", v->t->shape[1]);
    err = err ? err : dsp_meta_set_int(m, "cols", v->t->shape[2]);
    err = err ? err : dsp_meta_set_floats(m, "spacing_mm", v->spacing, 3);
    err = err ? err : dsp_meta_set_floats(m, "origin_mm", v->origin, 3);
    err = err ? err : dsp_meta_set_floats(m, "direction", v->direction, 9);
    err = err ? err : dsp_meta_set_str(m, "layout", a->spp == 3 ? "dhwc" : "dhw");
    err = err ? err : dsp_meta_set_str(m, "photometric", a->photometric);
    err = err ? err : dsp_meta_set_str(m, "sort", v->sort);
    err = err ? err : dsp_meta_set_str(m, "transfer_syntax", a->transfer_syntax);
    err = err ? err : dsp_meta_set_int(m, "bits_stored", a->bits_stored);
    int uniform = 1, rescaled = 0;
    for (int i = 0; i < s->n_img; i++) {
        uniform &= s->img[i]->slope == a->slope && s->img[i]->intercept == a->intercept;
        rescaled |= s->img[i]->has_rescale;
    }
    if (!err && a->spp == 1 && uniform) {
        err = dsp_meta_set_float(m, "rescale_slope", a->slope);
        err = err ? err : dsp_meta_set_float(m, "rescale_intercept", a->intercept);
    }
    if (!err && a->spp == 1)
        err = dsp_meta_set_str(m, "units", !strcmp(a->modality, "CT") && rescaled ? "HU"
                                           : rescaled ? "rescaled" : "stored");
    if (!err && a->has_window) {
        err = dsp_meta_set_float(m, "window_center", a->window_center);
        err = err ? err : dsp_meta_set_float(m, "window_width", a->window_width);
    }
    err = err ? err : dsp_meta_set_str(m, "selection", selection);
    err = err ? err : set_instance_refs(m, s);
    char *notes = c->notes ? strdup(c->notes) : NULL;
    if (!err && v->note[0])
        err = dicom_json_append(&notes, v->note);
    if (!err)
        err = dsp_meta_set_json(m, "notes", notes ? notes : "[]");
    free(notes);
    if (!err && c->phi == PHI_KEEP) {
        dsp_meta *p = dsp_meta_dict(m, "patient");
        if (!p)
            return DSP_ENOMEM;
        for (int i = 0; i < PHI_COUNT && !err; i++)
            if (a->phi[i])
                err = dsp_meta_set_str(p, dicom_phi_keys[i], a->phi[i]);
    }
    return err;
}

/* Build one series into a new packet at (item, part, last). On failure the
 * reason is in msg and the code is returned (the caller decides whether it
 * ends the run or the item). */
static int build_series(dsp_node *node, read_ctx *c, const dicom_series *s, const char *selection,
                        int64_t item, int64_t part, int last, dsp_packet **out, char *msg,
                        size_t msg_n)
{
    dicom_volume v;
    char why[DICOM_WHY], what[512];
    *out = NULL;
    describe(s, what, sizeof what);
    int err = dicom_series_build(s, c->spacing_tolerance, c->allow_shear, &c->lim, &v, why);
    if (err < 0) {
        dsp_tensor_unref(&v.t);
        snprintf(msg, msg_n, "%s in %s: %s; no volume is built from it", what, s->img[0]->path,
                 why);
        return err;
    }
    if (v.note[0])
        dsp_node_log(node, DSP_LOG_WARNING, "%s: %s", what, v.note);
    dsp_packet *p = dsp_node_packet_new(node);
    if (!p) {
        dsp_tensor_unref(&v.t);
        snprintf(msg, msg_n, "out of memory");
        return DSP_ENOMEM;
    }
    dsp_packet_set_pos(p, item, part, last);
    err = dsp_packet_set_tensor(p, c->name, v.t);
    if (!err)
        err = set_meta(c, dsp_packet_meta(p), s, &v, selection);
    if (err < 0) {
        dsp_packet_unref(&p);
        snprintf(msg, msg_n, "%s: cannot set metadata: %s", what, dsp_strerror(err));
        return err;
    }
    dsp_node_log(node, DSP_LOG_INFO, "%s", selection);
    *out = p;
    return 0;
}

/* The images read so far, grouped into series; the selected ones built and
 * emitted. Folder mode (item < 0): each series is its own item, numbered
 * after its first file, and a series that cannot be built is reported after
 * the others are out. Per-item mode (item >= 0): every selected series is a
 * part of that item, and any failure fails the item before anything is
 * emitted. Returns 0 or the failure recorded on the node. */
static int select_and_emit(dsp_node *node, read_ctx *c, int64_t item)
{
    dicom_series *s = NULL;
    dicom_image **slots = NULL;
    int n = 0, err = group(c, &s, &n, &slots);
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    char *sel = calloc(1, 8192), buf[768], why[256];
    const char **rej = calloc((size_t)n, sizeof *rej);
    char (*rejbuf)[256] = calloc((size_t)n, sizeof *rejbuf);
    dsp_packet **built = calloc((size_t)n, sizeof *built);
    int best = -1, n_ok = 0, n_built = 0;
    if (!sel || !rej || !rejbuf || !built) {
        err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        rej[i] = rejected(c, &s[i], rejbuf[i], sizeof rejbuf[i]);
        if (!rej[i]) {
            n_ok++;
            if (best < 0 || s[i].slices > s[best].slices)
                best = i;
        }
    }
    if (best < 0) {
        snprintf(sel, 8192, "no series passes the rules (modality='%s' description='%s' "
                 "min_slices=%lld); found:", c->modality ? c->modality : "",
                 c->description ? c->description : "", (long long)c->min_slices);
        for (int i = 0; i < n; i++) {
            describe(&s[i], buf, sizeof buf);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ": %s;", rej[i]);
            strcat_bounded(sel, 8192, " ");
            strcat_bounded(sel, 8192, buf);
        }
        err = dsp_node_fail(node, DSP_ENOENT, "%s", sel);
        goto out;
    }
    int n_sel = c->select == SELECT_ALL ? n_ok : 1;
    int first_err = 0;
    char first_msg[DICOM_WHY + 1024] = "";
    for (int i = 0; i < n; i++) {
        if (rej[i] || (c->select == SELECT_LARGEST && i != best))
            continue;
        describe(&s[i], buf, sizeof buf);
        snprintf(sel, 8192, "chose %s: %s", buf,
                 c->select == SELECT_ALL ? "select=all and it passes the rules"
                 : n_ok == 1 ? "the only series that passes the rules"
                             : "the largest of the series that pass the rules");
        int listed = 0;
        for (int j = 0; j < n; j++) {
            if (j == i || (c->select == SELECT_ALL && !rej[j]))
                continue;
            if (!listed++)
                strcat_bounded(sel, 8192, "; not chosen:");
            describe(&s[j], buf, sizeof buf);
            snprintf(why, sizeof why, ": %s;", rej[j] ? rej[j] : "smaller");
            strcat_bounded(sel, 8192, " ");
            strcat_bounded(sel, 8192, buf);
            strcat_bounded(sel, 8192, why);
        }
        /* with select=all a broken series does not stop the others; the first
         * failure is still reported when the rest are out */
        char msg[DICOM_WHY + 1024];
        dsp_packet *p = NULL;
        err = build_series(node, c, &s[i], sel, item >= 0 ? item : s[i].img[0]->item,
                           item >= 0 ? n_built : 0, item < 0 || n_built == n_sel - 1, &p, msg,
                           sizeof msg);
        if (!err && item >= 0)
            built[n_built++] = p;
        else if (!err && (err = dsp_node_emit(node, 0, p)) < 0)
            snprintf(msg, sizeof msg, "cannot emit: %s", dsp_strerror(err));
        if (err < 0 && !first_err) {
            first_err = err;
            snprintf(first_msg, sizeof first_msg, "%s", msg);
        } else if (err < 0) {
            dsp_node_log(node, DSP_LOG_ERROR, "%s", msg);
        }
    }
    /* per item: all of the item, or a failure and nothing */
    for (int i = 0; i < n_built && !first_err; i++) {
        if ((err = dsp_node_emit(node, 0, built[i])) < 0) {
            first_err = err;
            snprintf(first_msg, sizeof first_msg, "cannot emit: %s", dsp_strerror(err));
        }
        built[i] = NULL;
    }
    err = first_err ? dsp_node_fail(node, first_err, "%s", first_msg) : 0;
out:
    for (int i = 0; built && i < n_built; i++)
        dsp_packet_unref(&built[i]);
    free(built);
    free(sel);
    free(rej);
    free(rejbuf);
    free(slots);
    free(s);
    return err;
}

/* Release the images held (the volumes own copies). */
static void drop_images(read_ctx *c)
{
    for (int i = 0; i < c->n_img; i++) {
        dicom_image_clear(c->img[i]);
        free(c->img[i]);
    }
    c->n_img = 0;
    for (int i = 0; i < c->n_arena; i++)
        dicom_arena_release(&c->arena[i]);  /* what was emitted holds its own references */
}

static int read_flush(dsp_node *node)
{
    read_ctx *c = dsp_node_priv(node);
    if (c->per_item)
        return 0;
    if (c->n_skipped)
        dsp_node_log(node, DSP_LOG_INFO, "%d file%s skipped (not DICOM images; listed in meta "
                     "notes)", c->n_skipped, c->n_skipped == 1 ? "" : "s");
    if (c->n_img == 0) {
        dsp_node_log(node, DSP_LOG_WARNING, "no DICOM images among the inputs (%d skipped)",
                     c->n_skipped);
        return 0;
    }
    int err = select_and_emit(node, c, -1);
    drop_images(c);
    return err;
}

static void read_fini(dsp_node *node)
{
    read_ctx *c = dsp_node_priv(node);
    drop_images(c);
    free(c->img);
    free(c->notes);
    free(c->arena);
    c->arena = NULL;
    c->n_arena = 0;
    c->img = NULL;
    c->notes = NULL;
    c->n_img = 0;
}

const dsp_op_def dicom_read_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.read",
    .doc = "read DICOM files (files.list), group into series, select, sort and build HU volumes",
    .inputs = read_in,
    .outputs = read_out,
    .params = read_params,
    .priv_size = sizeof(read_ctx),
    /* every file is held until the end of the stream, where series form */
    .flags = DSP_OP_GATHER,
    .init = read_init,
    .process = read_process,
    .flush = read_flush,
    .fini = read_fini,
};
