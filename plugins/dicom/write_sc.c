/* write_sc.c - dicom.write_sc: RGB key images as a DICOM Secondary Capture series of the source study. */
#include "dicom.h"
#include "dcmw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sc_ctx {
    char *dir;
    char *name;
    char *uid_root;
    int64_t series_number;
    int include_patient;
} sc_ctx;

static const dsp_param_def sc_params[] = {
    { .name = "dir", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(sc_ctx, dir),
      .doc = "output root: files go to DIR/<study_uid>/sc/; empty: meta report_dir (set by "
             "ct.report)/sc/" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "key_images",
      .offset = offsetof(sc_ctx, name), .doc = "the u8 RGB images [n, rows, cols, 3]" },
    { .name = "uid_root", .type = DSP_PARAM_STRING, .def = "",
      .offset = offsetof(sc_ctx, uid_root),
      .doc = "root of the generated UIDs (your organisation's); empty: DCMTK's" },
    { .name = "series_number", .type = DSP_PARAM_INT, .def = "901", .min = 0, .max = 99999,
      .offset = offsetof(sc_ctx, series_number), .doc = "SeriesNumber of the new series" },
    { .name = "include_patient", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(sc_ctx, include_patient),
      .doc = "fill the patient and study attributes from meta \"patient\" (dicom.read "
             "phi=keep); off: written empty" },
    { NULL }
};

static const dsp_port_def sc_in[] = {
    { "in", "any", "key images (ct.report's out) with meta study_uid" }, { NULL }
};
static const dsp_port_def sc_out[] = {
    { "out", "any", "the input with meta sc_series_uid and sc_sop_uids (for dicom.write_sr)" },
    { NULL }
};

static int sc_init(dsp_node *node)
{
    sc_ctx *c = dsp_node_priv(node);
    return dicom_uid_root_check(node, c->uid_root);
}

static int write_one(void *fp, const void *arg, char *why, size_t n)
{
    return dcmw_write_sc(fp, arg, why, n);
}

/* Write every image; their SOP instance UIDs joined by '\' go to *uids. */
static int write_series(dsp_node *node, const sc_ctx *c, const dsp_tensor *t, const char *dir,
                        dcmw_sc *sc, char *uids)
{
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    if (!path)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    const uint8_t *px = dsp_tensor_data(t);
    size_t img_bytes = (size_t)(t->shape[1] * t->shape[2] * 3);
    char sop[68], desc[96];
    int err = 0;
    uids[0] = '\0';
    for (int64_t i = 0; !err && i < t->shape[0]; i++) {
        dcmw_new_uid(c->uid_root, sop);
        snprintf(desc, sizeof desc, "Key image of finding %" PRId64 ", lung window, outline "
                 "in red, ring in yellow", i + 1);
        sc->sop_uid = sop;
        sc->instance_number = (int)i + 1;
        sc->comments = desc;
        sc->rgb = px + (size_t)i * img_bytes;
        snprintf(path, plen, "%s/sc/finding_%" PRId64 ".dcm", dir, i + 1);
        err = dicom_write_file(node, path, write_one, sc);
        if (!err)
            sprintf(uids + strlen(uids), "%s%s", i ? "\\" : "", sop);
    }
    free(path);
    return err;
}

static int sc_process(dsp_node *node, dsp_packet **in)
{
    sc_ctx *c = dsp_node_priv(node);
    const dsp_meta *m = dsp_packet_meta_const(in[0]);
    const char *study = NULL;
    dsp_tensor *t = dsp_packet_tensor(in[0], c->name);
    if (!t) {
        dsp_node_log(node, DSP_LOG_INFO, "item %" PRId64 ": no '%s' tensor (no finding, or no "
                     "ct.report forward=true before): no Secondary Capture written",
                     dsp_packet_item(in[0]), c->name);
        return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
    }
    if (t->dtype != DSP_DTYPE_U8 || t->ndim != 4 || t->shape[3] != 3 ||
        t->shape[1] > 65535 || t->shape[2] > 65535 || !dsp_tensor_is_contiguous(t))
        return dsp_node_fail(node, DSP_EINVAL, "'%s' is not u8 RGB [n, rows, cols, 3] (rows, "
                             "cols <= 65535)", c->name);
    if (dsp_meta_get_str(m, "study_uid", &study) || !*study)
        return dsp_node_fail(node, DSP_EINVAL, "no meta study_uid: the key images must come "
                             "from a DICOM study (dicom.read)");
    char *dir = NULL, series[68];
    int err = dicom_out_dir(node, in[0], c->dir, &dir);
    if (err < 0)
        return err;
    dcmw_patient pt;
    dicom_patient_from_meta(in[0], c->include_patient, &pt);
    dcmw_new_uid(c->uid_root, series);
    dcmw_sc sc = { .study_uid = study, .series_uid = series,
                   .series_number = (int)c->series_number,
                   .series_description = "Lung nodule key images (dspipe)",
                   .derivation = "axial slice of the resampled CT, lung window, finding "
                                 "outline burnt in",
                   .rows = (int)t->shape[1], .cols = (int)t->shape[2], .patient = &pt };
    char *uids = malloc((size_t)t->shape[0] * 66 + 1);
    dsp_packet *out = NULL;
    err = uids ? write_series(node, c, t, dir, &sc, uids)
               : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    if (!err && (err = dsp_packet_derive(in[0], &out)) == 0) {
        dsp_meta *om = dsp_packet_meta(out);
        err = dsp_meta_set_str(om, "sc_series_uid", series);
        err = err ? err : dsp_meta_set_str(om, "sc_sop_uids", uids);
        if (err)
            dsp_packet_unref(&out);
        else
            err = dsp_node_emit(node, 0, out);     /* transfer full, also on failure */
    }
    free(uids);
    free(dir);
    return err;
}

const dsp_op_def dicom_write_sc_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.write_sc",
    .doc = "write RGB key images as a DICOM Secondary Capture series of the source study",
    .inputs = sc_in,
    .outputs = sc_out,
    .params = sc_params,
    .priv_size = sizeof(sc_ctx),
    .flags = DSP_OP_SINK,
    .init = sc_init,
    .process = sc_process,
};
