/* write_sr.c - dicom.write_sr: ct.report's findings as a DICOM Comprehensive 3D SR in the source study. */
#include "dicom.h"
#include "dcmw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sr_ctx {
    char *dir;
    char *uid_root;
    int64_t series_number;
    int include_patient;
} sr_ctx;

static const dsp_param_def sr_params[] = {
    { .name = "dir", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(sr_ctx, dir),
      .doc = "output root: the report goes to DIR/<study_uid>/sr.dcm; empty: meta report_dir "
             "(set by ct.report)/sr.dcm" },
    { .name = "uid_root", .type = DSP_PARAM_STRING, .def = "",
      .offset = offsetof(sr_ctx, uid_root),
      .doc = "root of the generated UIDs (your organisation's); empty: DCMTK's" },
    { .name = "series_number", .type = DSP_PARAM_INT, .def = "902", .min = 0, .max = 99999,
      .offset = offsetof(sr_ctx, series_number), .doc = "SeriesNumber of the new series" },
    { .name = "include_patient", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(sr_ctx, include_patient),
      .doc = "fill the patient and study attributes from meta \"patient\" (dicom.read "
             "phi=keep); off: written empty" },
    { NULL }
};

static const dsp_port_def sr_in[] = {
    { "in", "any", "ct.report's out (meta key_findings), through dicom.write_sc for key image "
      "references" },
    { NULL }
};

static int sr_init(dsp_node *node)
{
    sr_ctx *c = dsp_node_priv(node);
    return dicom_uid_root_check(node, c->uid_root);
}

static const char *meta_str(const dsp_meta *m, const char *key)
{
    const char *s = NULL;
    return dsp_meta_get_str(m, key, &s) == 0 ? s : NULL;
}

/* Split a '\'-joined list (a copy in *buf, malloc'd) into *out (malloc'd). */
static int split_uids(const char *s, char **buf, const char ***out, int *n)
{
    *buf = NULL;
    *out = NULL;
    *n = 0;
    if (!s || !*s)
        return 0;
    int cap = 1;
    for (const char *q = s; *q; q++)
        cap += *q == '\\';
    if (!(*buf = strdup(s)) || !(*out = malloc((size_t)cap * sizeof **out))) {
        free(*buf);
        *buf = NULL;
        return DSP_ENOMEM;
    }
    char *save = NULL;
    for (char *tok = strtok_r(*buf, "\\", &save); tok; tok = strtok_r(NULL, "\\", &save))
        (*out)[(*n)++] = tok;
    return 0;
}

/* Findings from meta key_findings {"1": {...}, "2": ...} (ct.report). */
static int read_findings(const dsp_meta *kf, const char *const *sc, int n_sc, dcmw_finding **out,
                         int *nf)
{
    int n = 0;
    char key[24];
    *out = NULL;
    while (snprintf(key, sizeof key, "%d", n + 1), kf && dsp_meta_get_dict(kf, key))
        n++;
    *nf = n;
    if (!n)
        return 0;
    dcmw_finding *f = calloc((size_t)n, sizeof *f);
    if (!f)
        return DSP_ENOMEM;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%d", i + 1);
        const dsp_meta *d = dsp_meta_get_dict(kf, key);
        size_t k = 0;
        dsp_meta_get_floats(d, "center_mm", f[i].center_mm, 3, &k);
        dsp_meta_get_float(d, "diameter_mm", &f[i].diameter_mm);
        dsp_meta_get_float(d, "volume_mm3", &f[i].volume_mm3);
        dsp_meta_get_float(d, "mean_hu", &f[i].mean_hu);
        dsp_meta_get_float(d, "confidence", &f[i].confidence);
        f[i].type = meta_str(d, "type");
        f[i].lung_rads = meta_str(d, "lung_rads");
        f[i].key_image_uid = i < n_sc ? sc[i] : NULL;
    }
    *out = f;
    return 0;
}

static int write_one(void *fp, const void *arg, char *why, size_t n)
{
    return dcmw_write_sr(fp, arg, why, n);
}

static int sr_process(dsp_node *node, dsp_packet **in)
{
    sr_ctx *c = dsp_node_priv(node);
    const dsp_meta *m = dsp_packet_meta_const(in[0]);
    const char *study = meta_str(m, "study_uid"), *series = meta_str(m, "series_uid");
    const char *cls = meta_str(m, "sop_class_uid");
    int64_t item = dsp_packet_item(in[0]);
    if (!study || !series || !cls)
        return dsp_node_fail(node, DSP_EINVAL, "meta study_uid, series_uid or sop_class_uid "
                             "missing: the findings must come from a DICOM series read by "
                             "dicom.read");
    const dsp_meta *kf = dsp_meta_get_dict(m, "key_findings");
    if (!kf)
        return dsp_node_fail(node, DSP_EINVAL, "no meta key_findings: run ct.report "
                             "forward=true before this node");
    char *dir = NULL, *src_buf = NULL, *sc_buf = NULL, *path = NULL;
    const char **src = NULL, **sc = NULL;
    int n_src = 0, n_sc = 0, nf = 0;
    dcmw_finding *f = NULL;
    int err = dicom_out_dir(node, in[0], c->dir, &dir);
    if (err < 0)
        return err;
    err = split_uids(meta_str(m, "sop_instance_uids"), &src_buf, &src, &n_src);
    err = err ? err : split_uids(meta_str(m, "sc_sop_uids"), &sc_buf, &sc, &n_sc);
    err = err ? err : read_findings(kf, sc, n_sc, &f, &nf);
    if (!err && !(path = malloc(strlen(dir) + 16)))
        err = DSP_ENOMEM;
    if (err) {
        err = dsp_node_fail(node, err, "out of memory");
        goto done;
    }
    if (!n_src)
        dsp_node_log(node, DSP_LOG_WARNING, "item %" PRId64 ": no meta sop_instance_uids: "
                     "the SR's evidence lists no source instance", item);
    char series_uid[68], sop_uid[68];
    dcmw_new_uid(c->uid_root, series_uid);
    dcmw_new_uid(c->uid_root, sop_uid);
    const char *det = meta_str(m, "detector");
    dcmw_patient pt;
    dicom_patient_from_meta(in[0], c->include_patient, &pt);
    dcmw_sr sr = { .study_uid = study, .series_uid = series_uid, .sop_uid = sop_uid,
                   .for_uid = meta_str(m, "frame_of_reference_uid"),
                   .series_number = (int)c->series_number, .source_series_uid = series,
                   .source_sop_class = cls, .source_sops = src, .n_source = n_src,
                   .sc_series_uid = meta_str(m, "sc_series_uid"), .f = f, .nf = nf,
                   .detector = det ? det : "dspipe", .patient = &pt };
    sprintf(path, "%s/sr.dcm", dir);
    err = dicom_write_file(node, path, write_one, &sr);
done:
    free(path);
    free(f);
    free(src);
    free(src_buf);
    free(sc);
    free(sc_buf);
    free(dir);
    return err;
}

const dsp_op_def dicom_write_sr_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.write_sr",
    .doc = "write ct.report's findings as a DICOM Comprehensive 3D SR referencing the source "
           "study, series and key images",
    .inputs = sr_in,
    .params = sr_params,
    .priv_size = sizeof(sr_ctx),
    .flags = DSP_OP_SINK,
    .init = sr_init,
    .process = sr_process,
};
