/* ct.h - helpers shared by the operators of the chest CT plugin (not API). */
#ifndef DSP_CT_H
#define DSP_CT_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <dspipe/plugin.h>

/* The operators, each defined in its own file and listed in plugin.c
 * (ct.classify is in encoders/ct, which links the helpers below). */
extern const dsp_op_def ct_lung_mask_op;
extern const dsp_op_def ct_nodules_op;
extern const dsp_op_def ct_report_op;
extern const dsp_op_def ct_classify_op;     /* dsp_ct_classifier.so */

/* Columns of the f64 "nodules" tensor [n, CT_F_COUNT] that ct.nodules adds
 * and ct.report reads (meta "findings" holds the same as JSON). */
enum {
    CT_F_SLICE, CT_F_ROW, CT_F_COL,     /* centre, voxel indices */
    CT_F_X, CT_F_Y, CT_F_Z,             /* centre, patient LPS mm */
    CT_F_DIAMETER, CT_F_VOLUME,         /* equivalent diameter mm, mm^3 */
    CT_F_MEAN_HU, CT_F_MAX_HU, CT_F_CORE_HU, CT_F_BG_HU,
    CT_F_ELONGATION, CT_F_SHELL,        /* longest/shortest axis; tissue in the shell */
    CT_F_SOLID, CT_F_CONFIDENCE,
    CT_F_COUNT
};

/* Meta "findings" of ct.nodules: the n rows of a nodules tensor as a JSON
 * array of objects (id = row + 1), malloc'd; NULL on OOM. */
char *ct_findings_json(const double *rows, int64_t n);

/* The shortest series (slices x slice spacing, mm) the operators analyse. */
#define CT_MIN_EXTENT_MM 30.0

/* A CT volume as the operators see it: HU values [d, h, w] (slice, row,
 * column), contiguous, borrowed from the packet's tensor, and its geometry
 * from the packet's meta (dicom.read's contract):
 *   spacing_mm  [slice, row, column] in mm
 *   origin_mm   centre of voxel (0, 0, 0), patient LPS mm
 *   direction   9 cosines: row direction (column index grows), column
 *               direction (row index grows), slice direction */
typedef struct ct_volume {
    const float *hu;
    int64_t d, h, w;
    double sp[3];
    double origin[3];
    double dir[9];
} ct_volume;

/* An axis-aligned box of voxels [lo, hi) per axis (slice, row, column). */
typedef struct ct_box {
    int64_t lo[3], hi[3];
} ct_box;

/* Find the f32 3-D tensor `name` in p and its geometry. Missing geometry
 * keys default to 1 mm / origin 0 / identity with a warning. Fails the item
 * (dsp_node_fail) with a message naming what is wrong. *t is borrowed. */
int ct_volume_find(dsp_node *node, const dsp_packet *p, const char *name, ct_volume *v,
                   dsp_tensor **t);

/* Patient coordinates (LPS mm) of the continuous voxel index (slice, row, col). */
void ct_voxel_to_mm(const ct_volume *v, double k, double j, double i, double mm[3]);

/* "what we are working on" for messages: meta source, else "item N". */
const char *ct_where(const dsp_packet *p, char *buf, size_t n);

/* Run fn(ctx, begin, end) over slices of [0, n) on up to `threads` threads
 * (0: online cores); returns after all finished. Small n runs inline. */
typedef void (*ct_range_fn)(void *ctx, int64_t begin, int64_t end);
void ct_parallel_for(int64_t n, int threads, ct_range_fn fn, void *ctx);

/* Squared Euclidean distance (mm^2) from every voxel of a [d, h, w] grid
 * with spacing sp to the nearest voxel where m == 0 (0 there; a very large
 * value when there is none). Felzenszwalb & Huttenlocher's separable exact
 * transform, one pass per axis, lines in parallel. out has d*h*w floats.
 * Returns 0 or DSP_ENOMEM. */
int ct_edt(const uint8_t *m, int64_t d, int64_t h, int64_t w, const double sp[3], int threads,
           float *out);

/* Label the 6-connected components of m != 0 (union-find, two passes).
 * labels[v] = 0 for background, 1..*n otherwise; sizes (allocated with
 * malloc, n+1 entries, [0] unused) receives the voxel count of each.
 * Returns 0 or DSP_ENOMEM. */
int ct_label(const uint8_t *m, int64_t d, int64_t h, int64_t w, int32_t *labels,
             int64_t **sizes, int32_t *n);

/* In every slice, set to `value` the pixels with m == 0 that are not
 * 4-connected to the slice border through m == 0 pixels (holes). */
void ct_fill_holes_2d(uint8_t *m, int64_t d, int64_t h, int64_t w, uint8_t value, int threads);

/* Monotonic seconds, for the stage timings logged at verbose level. */
double ct_now(void);

/* Lung-RADS v2022 size category of a nodule (baseline screening; see
 * docs/ct.md). Returns a static string. */
const char *ct_lungrads(int solid, double diameter_mm, const char **size_class);

/* Write an 8-bit gray (c = 1) or RGB (c = 3) image [h, w, c] as PNG to an
 * open stream. 0 or a negative code with a reason in why (256 bytes). */
int ct_png_write(void *fp, const uint8_t *px, int64_t h, int64_t w, int c, char *why);

#endif /* DSP_CT_H */
