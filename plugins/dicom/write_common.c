/* write_common.c - what dicom.write_sc and dicom.write_sr share: output folder, patient attributes, atomic files. */
#include "dicom.h"
#include "dcmw.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *meta_str(const dsp_packet *p, const char *key)
{
    const char *s = NULL;
    return dsp_meta_get_str(dsp_packet_meta_const(p), key, &s) == 0 ? s : NULL;
}

/* A folder name from the study UID, as ct.report makes it: digits,
 * letters, '.', '-', '_' only, else item<N>. */
static void study_folder(const dsp_packet *p, char *out, size_t n)
{
    if (!dsp_path_component(meta_str(p, "study_uid"), out, n))
        snprintf(out, n, "item%" PRId64, dsp_packet_item(p));
}

int dicom_out_dir(dsp_node *node, const dsp_packet *p, const char *dir, char **out)
{
    char folder[128];
    const char *rd = meta_str(p, "report_dir");
    *out = NULL;
    if (dir && *dir) {
        study_folder(p, folder, sizeof folder);
        size_t n = strlen(dir) + strlen(folder) + 2;
        if ((*out = malloc(n)))
            snprintf(*out, n, "%s/%s", dir, folder);
    } else if (rd && *rd) {
        *out = strdup(rd);
    } else {
        return dsp_node_fail(node, DSP_EINVAL, "no output folder: set dir= or run ct.report "
                             "forward=true (which sets meta report_dir) before this node");
    }
    return *out ? 0 : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
}

void dicom_patient_from_meta(const dsp_packet *p, int keep, dcmw_patient *pt)
{
    memset(pt, 0, sizeof *pt);
    const dsp_meta *m = keep ? dsp_meta_get_dict(dsp_packet_meta_const(p), "patient") : NULL;
    if (!m)
        return;
    /* the keys dicom.read phi=keep sets (dicom_phi_keys) */
    dsp_meta_get_str(m, "patient_name", &pt->name);
    dsp_meta_get_str(m, "patient_id", &pt->id);
    dsp_meta_get_str(m, "patient_birth_date", &pt->birth_date);
    dsp_meta_get_str(m, "patient_sex", &pt->sex);
    dsp_meta_get_str(m, "patient_age", &pt->age);
    dsp_meta_get_str(m, "study_date", &pt->study_date);
    dsp_meta_get_str(m, "study_time", &pt->study_time);
    dsp_meta_get_str(m, "study_id", &pt->study_id);
    dsp_meta_get_str(m, "accession_number", &pt->accession);
    dsp_meta_get_str(m, "referring_physician", &pt->referring);
}

int dicom_write_file(dsp_node *node, const char *path, dicom_write_fn fn, const void *arg)
{
    char why[DICOM_WHY] = "";
    dsp_outfile *f = NULL;
    int err = dsp_node_claim_output(node, path);
    if (err == DSP_EEXIST)
        return dsp_node_fail(node, err, "%s: already written for an earlier item in this run "
                             "(two series of one study?); give each its own dir=", path);
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    if ((err = dsp_outfile_open(node, path, &f)) < 0)
        return err;
    if ((err = fn(dsp_outfile_stream(f), arg, why, sizeof why)) < 0) {
        dsp_outfile_discard(&f);
        return dsp_node_fail(node, err, "%s: %s", path, why[0] ? why : dsp_strerror(err));
    }
    return dsp_outfile_commit(node, &f);
}

int dicom_uid_root_check(dsp_node *node, const char *root)
{
    size_t n = root ? strlen(root) : 0;
    int ok = n <= 24 && (n == 0 || (isdigit((unsigned char)root[0]) && root[n - 1] != '.'));
    for (size_t i = 0; ok && i < n; i++)
        ok = isdigit((unsigned char)root[i]) || (root[i] == '.' && root[i + 1] != '.');
    if (ok)
        return 0;
    return dsp_node_fail(node, DSP_EINVAL, "uid_root=%s is not a UID root: digits and single "
                         "dots, at most 24 characters (your organisation's registered root); "
                         "leave it empty for DCMTK's", root);
}
