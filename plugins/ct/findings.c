/* findings.c - meta "findings" (a JSON array) from the rows of the nodules tensor, for ct.nodules and ct.classify. */
#include "ct.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

char *ct_findings_json(const double *rows, int64_t n)
{
    size_t cap = 256 + (size_t)n * 640, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    len += (size_t)snprintf(s + len, cap - len, "[");
    for (int64_t x = 0; x < n && len + 640 < cap; x++) {
        const double *r = rows + x * CT_F_COUNT;
        len += (size_t)snprintf(s + len, cap - len,
            "%s{\"id\":%" PRId64 ",\"center_voxel\":[%.2f,%.2f,%.2f],\"center_mm\":[%.2f,%.2f,%.2f],"
            "\"diameter_mm\":%.2f,\"volume_mm3\":%.1f,\"mean_hu\":%.1f,\"max_hu\":%.1f,"
            "\"core_hu\":%.1f,\"background_hu\":%.1f,\"sphericity\":%.3f,\"elongation\":%.3f,"
            "\"shell_fraction\":%.3f,\"type\":\"%s\",\"confidence\":%.3f}",
            x ? "," : "", x + 1, r[CT_F_SLICE], r[CT_F_ROW], r[CT_F_COL], r[CT_F_X], r[CT_F_Y],
            r[CT_F_Z], r[CT_F_DIAMETER], r[CT_F_VOLUME], r[CT_F_MEAN_HU], r[CT_F_MAX_HU],
            r[CT_F_CORE_HU], r[CT_F_BG_HU], 1.0 / r[CT_F_ELONGATION], r[CT_F_ELONGATION],
            r[CT_F_SHELL], r[CT_F_SOLID] ? "solid" : "subsolid", r[CT_F_CONFIDENCE]);
    }
    snprintf(s + len, cap - len, "]");
    return s;
}
