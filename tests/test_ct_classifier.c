/* test_ct_classifier.c - the nodule CNN against PyTorch (train.py --fixture), bad model folders, and ct.classify through the harness. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dspipe/harness.h>
#include <dspipe/ops.h>
#include <dspipe/plugin.h>
#include <dspipe/tensorio.h>

#include "ctcnn.h"
#include "testutil.h"

/* f32 convolutions summed in another order than PyTorch's: logits agree to
 * about 1e-6 of their scale; a wrong weight, layout or padding is off by
 * far more than this */
#define TOL_LOGITS 1e-4
/* one patch alone or in the batch: the same sums, so nearly bit-equal */
#define TOL_BATCH 1e-6

static const char *model_dir(void)
{
    return tu_fixture("ct_classifier", "model");
}

typedef struct fixture {
    ctcnn *m;
    dsp_safetensors *io;
    dsp_tensor *volume, *centres, *patches, *logits;
    int64_t n, p;
} fixture;

static dsp_tensor *get(dsp_safetensors *st, const char *name)
{
    dsp_tensor *t = NULL;
    ck_assert_msg(dsp_safetensors_get(st, name, &t) == 0, "io.safetensors has no %s", name);
    return t;
}

static void fixture_open(fixture *f)
{
    memset(f, 0, sizeof *f);
    char why[CTCNN_WHY], *ewhy = NULL;
    int rc = ctcnn_open(model_dir(), &f->m, why, sizeof why);
    ck_assert_msg(rc == 0, "ctcnn_open %s: %s", model_dir(), why);
    rc = dsp_safetensors_open(tu_fixture("ct_classifier", "io.safetensors"), &f->io, &ewhy);
    ck_assert_msg(rc == 0, "io.safetensors: %s", ewhy ? ewhy : "?");
    f->volume = get(f->io, "volume");
    f->centres = get(f->io, "centres");
    f->patches = get(f->io, "patches");
    f->logits = get(f->io, "logits");
    f->n = f->patches->shape[0];
    f->p = f->patches->shape[2];
    ck_assert_int_eq(f->p, ctcnn_get_config(f->m)->patch);
}

static void fixture_close(fixture *f)
{
    dsp_tensor_unref(&f->volume);
    dsp_tensor_unref(&f->centres);
    dsp_tensor_unref(&f->patches);
    dsp_tensor_unref(&f->logits);
    dsp_safetensors_close(&f->io);
    ctcnn_close(&f->m);
}

/* largest |a - b| over n floats, divided by the largest |b| (at least 1) */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return worst / scale;
}

/* The patches cut by ctcnn_cut_patch, borders included, are PyTorch's inputs. */
START_TEST(test_patches_match_python)
{
    fixture f;
    fixture_open(&f);
    const float *vol = dsp_tensor_data(f.volume);
    const double *c = dsp_tensor_data(f.centres);
    int64_t p3 = f.p * f.p * f.p, border = 0;
    float *mine = malloc((size_t)p3 * sizeof *mine);
    for (int64_t q = 0; q < f.n; q++) {
        ctcnn_cut_patch(ctcnn_get_config(f.m), vol, f.volume->shape[0], f.volume->shape[1],
                        f.volume->shape[2], c + 3 * q, f.p, mine);
        const float *ref = (const float *)dsp_tensor_data(f.patches) + q * p3;
        for (int64_t i = 0; i < p3; i++) {
            ck_assert_msg(fabsf(mine[i] - ref[i]) <= 1e-6f, "patch %lld voxel %lld: %g, python %g",
                          (long long)q, (long long)i, mine[i], ref[i]);
            border += ref[i] == 0.0f;   /* air padding: -1000 HU is 0 after scaling */
        }
    }
    /* the fixture's centres at the volume's corners must have needed padding */
    ck_assert_int_gt(border, p3);
    free(mine);
    fixture_close(&f);
}
END_TEST

START_TEST(test_logits_match_pytorch)
{
    fixture f;
    fixture_open(&f);
    dsp_tensor *out = NULL;
    ck_assert_msg(ctcnn_forward(f.m, f.patches, &out) == 0, "forward: %s", dsp_ops_error());
    ck_assert_int_eq(out->ndim, 2);
    ck_assert_int_eq(out->shape[0], f.n);
    ck_assert_int_eq(out->shape[1], 2);
    double e = rel_err(dsp_tensor_data(out), dsp_tensor_data(f.logits), 2 * f.n);
    printf("ct classifier: logits rel err %.2e (tol %.0e)\n", e, TOL_LOGITS);
    ck_assert_msg(e <= TOL_LOGITS, "logits off by %.3e", e);
    dsp_tensor_unref(&out);
    fixture_close(&f);
}
END_TEST

/* Each patch alone gives what it gives in the batch. */
START_TEST(test_batch_equals_single)
{
    fixture f;
    fixture_open(&f);
    dsp_tensor *all = NULL;
    ck_assert_int_eq(ctcnn_forward(f.m, f.patches, &all), 0);
    int64_t p3 = f.p * f.p * f.p, shape[5] = { 1, 1, f.p, f.p, f.p };
    for (int64_t q = 0; q < f.n; q++) {
        dsp_tensor *one = NULL, *out = NULL;
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 5, shape, &one), 0);
        memcpy(dsp_tensor_data(one), (const float *)dsp_tensor_data(f.patches) + q * p3,
               (size_t)p3 * sizeof(float));
        ck_assert_int_eq(ctcnn_forward(f.m, one, &out), 0);
        double e = rel_err(dsp_tensor_data(out), (const float *)dsp_tensor_data(all) + 2 * q, 2);
        ck_assert_msg(e <= TOL_BATCH, "patch %lld alone vs in the batch: %.3e", (long long)q, e);
        dsp_tensor_unref(&one);
        dsp_tensor_unref(&out);
    }
    dsp_tensor_unref(&all);
    fixture_close(&f);
}
END_TEST

/* ---- broken model folders ------------------------------------------------ */
static char tmp[512];

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

/* A copy of the fixture model whose config.json has `from` replaced by `to`;
 * opening it must fail with code and a message naming the folder and holding want. */
static void expect_broken(const char *from, const char *to, int code, const char *want)
{
    char dir[600], path[700], why[CTCNN_WHY];
    snprintf(dir, sizeof dir, "%s/m", tmp);
    tu_remove_tree(dir);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    copy_file(tu_join(model_dir(), "model.safetensors"), path);
    FILE *f = fopen(tu_join(model_dir(), "config.json"), "r");
    char cfg[4096];
    size_t n = fread(cfg, 1, sizeof cfg - 1, f);
    fclose(f);
    cfg[n] = 0;
    char *at = strstr(cfg, from);
    ck_assert_msg(at != NULL, "the fixture's config.json has no %s", from);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    fprintf(f, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    fclose(f);
    ctcnn *m = NULL;
    int rc = ctcnn_open(dir, &m, why, sizeof why);
    ck_assert_msg(rc == code, "%s -> %s: code %d (%s), expected %d", from, to, rc, why, code);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(why, dir) && strstr(why, want), "%s -> %s: message '%s' lacks "
                  "the folder or '%s'", from, to, why, want);
    printf("  %s\n", why);
}

START_TEST(test_bad_folders)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmp, sizeof tmp, "ctcnn"));
    char why[CTCNN_WHY];
    ctcnn *m = NULL;
    /* no folder; a folder without config.json */
    ck_assert_int_eq(ctcnn_open(tu_join(tmp, "none"), &m, why, sizeof why), DSP_ENOENT);
    ck_assert_ptr_nonnull(strstr(why, "none"));
    ck_assert_int_lt(ctcnn_open(tmp, &m, why, sizeof why), 0);
    ck_assert_ptr_nonnull(strstr(why, "config.json"));
    expect_broken("\"ct_nodule_cnn\"", "\"bert\"", DSP_EFORMAT, "model_type is \"bert\"");
    expect_broken("\"patch_size\"", "\"patch_side\"", DSP_EFORMAT, "\"patch_size\" is missing");
    expect_broken("\"patch_size\": 12", "\"patch_size\": 3", DSP_EFORMAT, "expected 4 to 256");
    expect_broken("\"hu_max\": 400.0", "\"hu_max\": -2000", DSP_EFORMAT, "not above hu_min");
    expect_broken("\"kernel\": 1", "\"kernel\": 3", DSP_EFORMAT,
                  "'blocks.2.conv.weight' is f32[4,5,1,1,1], config.json expects "
                  "f32[4,5,3,3,3]");
    expect_broken("\"kernel\": 1", "\"kernel\": 2", DSP_EFORMAT, "only odd kernels");
    expect_broken("\"channels\": 4", "\"channels\": 6", DSP_EFORMAT, "blocks.2.conv.weight");
    expect_broken("\"blocks\": [", "\"blocks\": [{\"channels\": 2, \"kernel\": 3, \"stride\": 1, "
                  "\"pool\": 1},", DSP_EFORMAT, "blocks.0.conv.weight");
    expect_broken("\"blocks\": [", "\"blocks\": [], \"x\": [", DSP_EFORMAT, "\"blocks\" is missing");
    expect_broken("\"stride\": 2", "\"stride\": \"two\"", DSP_EFORMAT, "is not an integer");
    expect_broken("\"labels\"", "\"training\": {\"screening_min_prob\": 7}, \"labels\"", DSP_EFORMAT,
                  "\"training.screening_min_prob\" is 7, expected 0 to 1");
    tu_remove_tree(tmp);
}
END_TEST

/* ---- ct.classify through the harness ----------------------------------------- */
static dsp_context *ctx;

static void setup_op(void)
{
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    int err = dsp_context_load_plugin(ctx, CT_CLASSIFIER_DIR "/dsp_ct_classifier.so");
    ck_assert_msg(err == 0, "loading the classifier plugin: %s", dsp_context_errmsg(ctx));
}

static void teardown_op(void)
{
    dsp_context_free(&ctx);
}

/* ct.nodules' packet for the fixture volume: one row per centre, confidence 0.75. */
static dsp_packet *candidates(const fixture *f, double spacing)
{
    dsp_packet *p;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "volume", dsp_tensor_ref(f->volume)), 0);
    int64_t shape[2] = { f->n, 16 };
    dsp_tensor *t;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F64, 2, shape, &t), 0);
    double *r = dsp_tensor_data(t);
    const double *c = dsp_tensor_data(f->centres);
    for (int64_t q = 0; q < f->n; q++, r += 16) {
        for (int a = 0; a < 16; a++)
            r[a] = 100 * q + a;         /* every column recognisable */
        memcpy(r, c + 3 * q, 3 * sizeof *r);
        r[12] = 1.1;                    /* elongation (sphericity is its inverse) */
        r[14] = q % 2;                  /* solid */
        r[15] = 0.75;                   /* confidence */
    }
    ck_assert_int_eq(dsp_packet_set_tensor(p, "nodules", t), 0);
    double sp[3] = { spacing, spacing, spacing };
    dsp_meta *m = dsp_packet_meta(p);
    ck_assert_int_eq(dsp_meta_set_floats(m, "spacing_mm", sp, 3), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "classifier", "none"), 0);
    return p;
}

static dsp_packet *run(const char *const *params, dsp_packet *in, char *why)
{
    dsp_harness *h;
    int err = dsp_harness_new(ctx, "ct.classify", params, 1, &h);
    ck_assert_msg(err == 0, "ct.classify: %s", dsp_context_errmsg(ctx));
    err = dsp_harness_push(h, 0, in);
    dsp_packet *out = dsp_harness_pull(h, 0);
    snprintf(why, 512, "%s", err ? dsp_harness_errmsg(h) : "");
    dsp_harness_free(&h);
    return out;
}

START_TEST(test_op_scores_and_drops)
{
    fixture f;
    fixture_open(&f);
    /* the nodule probabilities PyTorch gives; min_prob between two of them */
    double prob[16], sorted[16];
    const float *lg = dsp_tensor_data(f.logits);
    for (int64_t q = 0; q < f.n; q++)
        sorted[q] = prob[q] = 1 / (1 + exp((double)lg[2 * q] - lg[2 * q + 1]));
    for (int64_t a = 0; a < f.n; a++)
        for (int64_t b = a + 1; b < f.n; b++)
            if (sorted[b] < sorted[a]) {
                double x = sorted[a]; sorted[a] = sorted[b]; sorted[b] = x;
            }
    double min_prob = 0.5 * (sorted[1] + sorted[2]);
    ck_assert_msg(sorted[2] - sorted[1] > 1e-3, "fixture probabilities too close to split");
    char param[1200], mp[64], why[512];
    snprintf(param, sizeof param, "model=%s", model_dir());
    snprintf(mp, sizeof mp, "min_prob=%.6f", min_prob);
    const char *params[] = { param, mp, NULL };
    dsp_packet *out = run(params, candidates(&f, 1.0), why);
    ck_assert_msg(out != NULL, "ct.classify failed: %s", why);
    dsp_tensor *t = dsp_packet_tensor(out, "nodules");
    ck_assert_int_eq(t->shape[0], f.n - 2);
    ck_assert_int_eq(t->shape[1], 16);
    const double *r = dsp_tensor_data(t);
    int64_t row = 0;
    for (int64_t q = 0; q < f.n; q++) {
        if (prob[q] < min_prob)
            continue;
        const double *k = r + 16 * row++;
        ck_assert_msg(fabs(k[15] - prob[q]) < 1e-5, "finding %lld: confidence %g, PyTorch %g",
                      (long long)q, k[15], prob[q]);
        ck_assert_double_eq(k[6], 100 * q + 6);     /* the other columns kept, in order */
    }
    /* meta findings say the same */
    char *js = dsp_meta_to_json(dsp_packet_meta_const(out));
    json_t *root = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_t *arr = json_object_get(root, "findings");
    ck_assert_int_eq(json_array_size(arr), f.n - 2);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "id")), (json_int_t)i + 1);
        ck_assert(fabs(json_real_value(json_object_get(o, "confidence")) - r[16 * i + 15]) < 1e-3);
    }
    ck_assert_int_eq(json_integer_value(json_object_get(root, "classifier_dropped")), 2);
    const char *cls = json_string_value(json_object_get(root, "classifier"));
    ck_assert_msg(cls && strstr(cls, "ct_nodule_cnn"), "meta classifier: %s", cls ? cls : "none");
    json_decref(root);
    dsp_free(js);
    dsp_packet_unref(&out);

    /* a study without candidates: an empty tensor and list, nothing dropped */
    dsp_packet *none = candidates(&f, 1.0);
    int64_t empty[2] = { 0, 16 };
    dsp_tensor *t0 = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F64, 2, empty, &t0), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(none, "nodules", t0), 0);
    out = run(params, none, why);
    ck_assert_msg(out != NULL, "no candidates: %s", why);
    ck_assert_int_eq(dsp_packet_tensor(out, "nodules")->shape[0], 0);
    int64_t dropped = -1;
    ck_assert_int_eq(dsp_meta_get_int(dsp_packet_meta_const(out), "classifier_dropped", &dropped), 0);
    ck_assert_int_eq(dropped, 0);
    dsp_packet_unref(&out);

    /* another spacing than the model's: refused, saying what to do */
    out = run(params, candidates(&f, 0.7), why);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(why, "trained on 1 mm") && strstr(why, "dicom.resample"), "%s", why);
    fixture_close(&f);
}
END_TEST

START_TEST(test_op_without_weights)
{
    fixture f;
    fixture_open(&f);
    char why[512];
    const char *params[] = { "model=", NULL };
    dsp_packet *in = candidates(&f, 0.7);
    dsp_tensor *before = dsp_packet_tensor(in, "nodules");
    dsp_packet *out = run(params, in, why);
    ck_assert_msg(out != NULL, "%s", why);
    ck_assert_ptr_eq(dsp_packet_tensor(out, "nodules"), before);   /* unchanged */
    const char *cls = NULL;
    ck_assert_int_eq(dsp_meta_get_str(dsp_packet_meta_const(out), "classifier", &cls), 0);
    ck_assert_str_eq(cls, "none");
    dsp_packet_unref(&out);

    /* a broken folder is an init error naming it */
    dsp_harness *h;
    const char *bad[] = { "model=/nonexistent/ct_model", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "ct.classify", bad, 1, &h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "/nonexistent/ct_model"));

    /* screening=true needs the operating point in config.json (the fixture has none) */
    char param[1200];
    snprintf(param, sizeof param, "model=%s", model_dir());
    const char *scr[] = { param, "screening=true", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "ct.classify", scr, 1, &h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "training.screening_min_prob"));

    /* model=auto takes $DSPIPE_CT_CLASSIFIER */
    setenv("DSPIPE_CT_CLASSIFIER", model_dir(), 1);
    const char *autop[] = { "model=auto", "min_prob=0", NULL };
    out = run(autop, candidates(&f, 1.0), why);
    unsetenv("DSPIPE_CT_CLASSIFIER");
    ck_assert_msg(out != NULL, "%s", why);
    ck_assert_int_eq(dsp_packet_tensor(out, "nodules")->shape[0], f.n);
    ck_assert_double_ne(((const double *)dsp_tensor_data(dsp_packet_tensor(out, "nodules")))[15],
                        0.75);
    dsp_packet_unref(&out);
    fixture_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ct_classifier");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_patches_match_python);
    tcase_add_test(tc, test_logits_match_pytorch);
    tcase_add_test(tc, test_batch_equals_single);
    tcase_add_test(tc, test_bad_folders);
    suite_add_tcase(s, tc);
    TCase *op = tcase_create("op");
    tcase_add_checked_fixture(op, setup_op, teardown_op);
    tcase_add_test(op, test_op_scores_and_drops);
    tcase_add_test(op, test_op_without_weights);
    suite_add_tcase(s, op);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
