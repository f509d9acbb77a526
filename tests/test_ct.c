/* test_ct.c - ct.lung_mask, ct.nodules and ct.report on synthetic chest volumes, through the harness. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dspipe/harness.h>
#include <dspipe/plugin.h>

#include "testutil.h"

static dsp_context *ctx;

static void setup(void)
{
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    int err = dsp_context_load_plugin(ctx, CT_PLUGIN_DIR "/dsp_ct.so");
    ck_assert_msg(err == 0, "loading the ct plugin: %s", dsp_context_errmsg(ctx));
}

static void teardown(void)
{
    dsp_context_free(&ctx);
}

/* The synthetic chest: 1 mm voxels [D, H, W], air outside an elliptic body
 * of soft tissue (40 HU) holding two ellipsoidal lungs (-850 HU), plus
 * +-15 HU of deterministic noise. Edges are partial-volume blended. */
enum { D = 80, H = 120, W = 160 };

typedef struct shape {
    int kind;                   /* 1 sphere, 2 tube along the slice axis */
    double c[3], r, hu;         /* centre (slice, row, col), radius mm */
} shape;

static double pv(double inside_mm)
{
    double f = inside_mm + 0.5;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

static double ellipsoid_depth(double k, double j, double i, const double c[3], const double a[3])
{
    double dk = (k - c[0]) / a[0], dj = (j - c[1]) / a[1], di = (i - c[2]) / a[2];
    double r = sqrt(dk * dk + dj * dj + di * di);
    double m = fmin(a[0], fmin(a[1], a[2]));
    return (1 - r) * m;
}

static dsp_packet *make_chest(int lungs, const shape *shapes, int n)
{
    int64_t shape3[3] = { D, H, W };
    dsp_tensor *t;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape3, &t), 0);
    float *x = dsp_tensor_data(t);
    uint32_t rng = 12345;
    static const double lung_c[2][3] = { { 40, 60, 45 }, { 40, 60, 115 } };
    static const double lung_a[3] = { 32, 38, 28 };
    for (int k = 0; k < D; k++)
        for (int j = 0; j < H; j++)
            for (int i = 0; i < W; i++) {
                double dj = (j - 60) / 56.0, di = (i - 80) / 76.0;
                double body = pv((1 - sqrt(dj * dj + di * di)) * 56);
                double v = -1000 * (1 - body) + 40 * body;
                for (int l = 0; lungs && l < 2; l++) {
                    double f = pv(ellipsoid_depth(k, j, i, lung_c[l], lung_a));
                    v = v * (1 - f) - 850 * f;
                }
                for (int s = 0; s < n; s++) {
                    const double *c = shapes[s].c;
                    double d = shapes[s].kind == 1
                                   ? sqrt((k - c[0]) * (k - c[0]) + (j - c[1]) * (j - c[1]) +
                                          (i - c[2]) * (i - c[2]))
                                   : sqrt((j - c[1]) * (j - c[1]) + (i - c[2]) * (i - c[2]));
                    /* tubes taper towards both ends, inside the lung, as
                     * vessels thin out towards the periphery */
                    double r = shapes[s].r;
                    if (shapes[s].kind == 2) {
                        if (fabs(k - c[0]) > 28)
                            continue;
                        r = fmax(0.5, r * (1 - fabs(k - c[0]) / 36.0));
                    }
                    double f = pv(r - d);
                    v = v * (1 - f) + shapes[s].hu * f;
                }
                rng = rng * 1664525u + 1013904223u;
                v += ((rng >> 8) / 16777216.0 - 0.5) * 30;
                x[((int64_t)k * H + j) * W + i] = (float)v;
            }
    dsp_packet *p;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "volume", t), 0);
    dsp_meta *m = dsp_packet_meta(p);
    double sp[3] = { 1, 1, 1 }, origin[3] = { -80, -60, -200 };
    double dir[9] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 };
    ck_assert_int_eq(dsp_meta_set_floats(m, "spacing_mm", sp, 3), 0);
    ck_assert_int_eq(dsp_meta_set_floats(m, "origin_mm", origin, 3), 0);
    ck_assert_int_eq(dsp_meta_set_floats(m, "direction", dir, 9), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "study_uid", "1.2.3.4"), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "series_uid", "1.2.3.4.5"), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "modality", "CT"), 0);
    return p;
}

/* Push p (transfer full) through op; returns the output, or NULL with the
 * failure message in errmsg. */
static dsp_packet *run_op(const char *op, const char *const *params, dsp_packet *p, char *errmsg)
{
    dsp_harness *h;
    int err = dsp_harness_new(ctx, op, params, 1, &h);
    ck_assert_msg(err == 0, "%s: %s", op, dsp_context_errmsg(ctx));
    err = dsp_harness_push(h, 0, p);
    dsp_packet *out = dsp_harness_pull(h, 0);
    if (errmsg)
        snprintf(errmsg, 512, "%s", err ? dsp_harness_errmsg(h) : "");
    dsp_harness_free(&h);
    return out;
}

static dsp_packet *detect(dsp_packet *chest)
{
    static const char *const lung_params[] = { "threads=2", NULL };
    static const char *const nod_params[] = { "threads=2", NULL };
    char why[512];
    dsp_packet *l = run_op("ct.lung_mask", lung_params, chest, why);
    ck_assert_msg(l != NULL, "ct.lung_mask failed: %s", why);
    dsp_packet *n = run_op("ct.nodules", nod_params, l, why);
    ck_assert_msg(n != NULL, "ct.nodules failed: %s", why);
    return n;
}

static const double *findings(dsp_packet *p, int64_t *n)
{
    dsp_tensor *t = dsp_packet_tensor(p, "nodules");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, DSP_DTYPE_F64);
    ck_assert_int_eq(t->ndim, 2);
    *n = t->shape[0];
    return dsp_tensor_data(t);
}

/* Columns of the nodules tensor (plugins/ct/ct.h) */
enum { F_SLICE, F_ROW, F_COL, F_X, F_Y, F_Z, F_DIAMETER, F_VOLUME, F_MEAN, F_MAX, F_CORE, F_BG,
       F_ELONG, F_SHELL, F_SOLID, F_CONF, F_COUNT };

START_TEST(test_sphere_found_with_centre_and_size)
{
    shape s = { 1, { 38.3, 55.6, 40.2 }, 4.5, 30 };    /* 9 mm solid nodule, left lung */
    dsp_packet *p = detect(make_chest(1, &s, 1));
    double vol;
    ck_assert_int_eq(dsp_meta_get_float(dsp_packet_meta_const(p), "lung_volume_ml", &vol), 0);
    /* two ellipsoids of 4/3 pi 32 38 28 mm^3 = 142.6 ml each */
    ck_assert_msg(vol > 250 && vol < 310, "lung volume %.1f ml", vol);
    int64_t n;
    const double *f = findings(p, &n);
    ck_assert_int_eq(n, 1);
    double e = sqrt((f[F_SLICE] - s.c[0]) * (f[F_SLICE] - s.c[0]) +
                    (f[F_ROW] - s.c[1]) * (f[F_ROW] - s.c[1]) +
                    (f[F_COL] - s.c[2]) * (f[F_COL] - s.c[2]));
    ck_assert_msg(e < 0.5, "centre off by %.2f mm", e);
    ck_assert_msg(fabs(f[F_DIAMETER] - 9.0) < 0.5, "diameter %.2f mm, not 9", f[F_DIAMETER]);
    ck_assert_double_eq_tol(f[F_X], -80 + f[F_COL], 1e-9);
    ck_assert_double_eq_tol(f[F_Z], -200 + f[F_SLICE], 1e-9);
    ck_assert(f[F_SOLID] == 1);
    ck_assert(f[F_ELONG] < 1.3);

    /* the report: findings.json with Lung-RADS 4A, key images, no patient data */
    char dir[] = "/tmp/test_ct_XXXXXX", path[512], why[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char dparam[600];
    snprintf(dparam, sizeof dparam, "dir=%s", dir);
    const char *rparams[] = { dparam, "summary=false", NULL };
    dsp_meta_set_str(dsp_packet_meta(p), "patient_name", "DOE^JANE");
    /* forwarded for the DICOM writers: the findings and the study folder */
    dsp_packet *fwd = run_op("ct.report", rparams, p, why);
    ck_assert_str_eq(why, "");
    ck_assert_ptr_nonnull(fwd);
    const char *rdir = NULL;
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(fwd), "report_dir", &rdir), 0);
    ck_assert_ptr_nonnull(strstr(rdir, "1.2.3.4"));
    dsp_packet_unref(&fwd);
    snprintf(path, sizeof path, "%s/1.2.3.4/findings.json", dir);
    FILE *fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, fp);
    text[len] = '\0';
    fclose(fp);
    ck_assert_ptr_nonnull(strstr(text, "\"lung_rads\": \"4A\""));
    ck_assert_ptr_nonnull(strstr(text, "\"size_category\": \"8-<15 mm\""));
    ck_assert_ptr_nonnull(strstr(text, "\"series_uid\": \"1.2.3.4.5\""));
    ck_assert_ptr_null(strstr(text, "DOE"));
#ifdef HAVE_PNG
    snprintf(path, sizeof path, "%s/1.2.3.4/finding_1.png", dir);
    ck_assert_int_eq(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/1.2.3.4/overview_mip.png", dir);
    ck_assert_int_eq(access(path, R_OK), 0);
#endif
    tu_remove_tree(dir);
}
END_TEST

START_TEST(test_tube_rejected)
{
    /* a vessel: 5 mm wide in the middle, 56 mm long, in the right lung */
    shape s = { 2, { 40, 60, 115 }, 2.5, 40 };
    dsp_packet *p = detect(make_chest(1, &s, 1));
    int64_t n;
    findings(p, &n);
    ck_assert_int_eq(n, 0);
    dsp_packet_unref(&p);
}
END_TEST

START_TEST(test_sphere_on_a_tube_found)
{
    /* a 10 mm nodule that a vessel runs into: found, the vessel not */
    shape s[2] = { { 2, { 40, 58, 112 }, 1.5, 40 }, { 1, { 40, 58, 117 }, 5, 30 } };
    dsp_packet *p = detect(make_chest(1, s, 2));
    int64_t n;
    const double *f = findings(p, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_msg(fabs(f[F_COL] - 117) < 1.0 && fabs(f[F_ROW] - 58) < 1.0,
                  "centre (%.1f, %.1f, %.1f)", f[F_SLICE], f[F_ROW], f[F_COL]);
    ck_assert_msg(fabs(f[F_DIAMETER] - 10) < 1.0, "diameter %.2f", f[F_DIAMETER]);
    dsp_packet_unref(&p);
}
END_TEST

START_TEST(test_empty_lungs_no_findings)
{
    dsp_packet *p = detect(make_chest(1, NULL, 0));
    int64_t n;
    findings(p, &n);
    ck_assert_int_eq(n, 0);
    const char *det;
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(p), "detector", &det), 0);
    ck_assert_str_eq(det, "classical");
    dsp_packet_unref(&p);
}
END_TEST

START_TEST(test_no_lungs_is_an_error)
{
    char why[512];
    dsp_packet *out = run_op("ct.lung_mask", NULL, make_chest(0, NULL, 0), why);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(why, "no lungs found") != NULL, "message: %s", why);

    /* not a volume at all */
    dsp_packet *p;
    int64_t shape2[2] = { 4, 4 };
    dsp_tensor *t;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, shape2, &t), 0);
    memset(dsp_tensor_data(t), 0, 64);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "volume", t), 0);
    ck_assert_ptr_null(run_op("ct.lung_mask", NULL, p, why));
    ck_assert_msg(strstr(why, "f32 HU volume") != NULL, "message: %s", why);

    /* one slice (what Debian's CT_small.dcm gives): a clear "needs a series" */
    int64_t shape3[3] = { 1, 64, 64 };
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape3, &t), 0);
    memset(dsp_tensor_data(t), 0, dsp_tensor_nbytes(t));
    ck_assert_int_eq(dsp_packet_set_tensor(p, "volume", t), 0);
    double sp[3] = { 5, 0.5, 0.5 };
    ck_assert_int_eq(dsp_meta_set_floats(dsp_packet_meta(p), "spacing_mm", sp, 3), 0);
    ck_assert_ptr_null(run_op("ct.lung_mask", NULL, p, why));
    ck_assert_msg(strstr(why, "1 slice covering 5.0 mm") && strstr(why, "every slice of the series"),
                  "message: %s", why);
}
END_TEST

static Suite *ct_suite(void)
{
    Suite *s = suite_create("ct");
    TCase *tc = tcase_create("detect");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sphere_found_with_centre_and_size);
    tcase_add_test(tc, test_tube_rejected);
    tcase_add_test(tc, test_sphere_on_a_tube_found);
    tcase_add_test(tc, test_empty_lungs_no_findings);
    tcase_add_test(tc, test_no_lungs_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ct_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
