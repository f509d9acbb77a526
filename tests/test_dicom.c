/* test_dicom.c - dicom.read / dicom.window / dicom.resample through the harness, against pydicom and generated series. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "testutil.h"

/* pydicom's test files, installed by Debian's python3-pydicom (install-deps.sh) */
#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

static dsp_context *ctx;
static char tmpdir[256];

static const char *fixture(const char *name)
{
    return tu_fixture("dicom", name);
}

static const char *tp(const char *name)
{
    return tu_join(tmpdir, name);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmpdir, sizeof tmpdir, "dicom"));
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "dicom.read") != NULL,
                  "dicom.read not found: is plugins/dicom/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
    tu_remove_tree(tmpdir);
}

static uint64_t fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- running dicom.read over a list of files ------------------------------ */

typedef struct run {
    dsp_packet *out[8];         /* emitted series */
    int n_out;
    int fails;                  /* items that failed */
    char errs[4096];            /* their messages, one per line */
    int flush_err;
    char flush_msg[2048];
} run;

static void run_free(run *r)
{
    for (int i = 0; i < r->n_out; i++)
        dsp_packet_unref(&r->out[i]);
    r->n_out = 0;
}

static void read_files(const char *const *params, const char *const *paths, int n, run *r)
{
    memset(r, 0, sizeof *r);
    dsp_harness *h = NULL;
    int err = dsp_harness_new(ctx, "dicom.read", params, 1, &h);
    ck_assert_msg(err == 0, "dicom.read: %s", dsp_context_errmsg(ctx));
    for (int i = 0; i < n; i++) {
        dsp_packet *p = NULL;
        ck_assert_int_eq(dsp_packet_new(&p), 0);
        dsp_packet_set_pos(p, i, 0, 1);
        ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", paths[i]), 0);
        if (dsp_harness_push(h, 0, p) < 0) {
            r->fails++;
            size_t l = strlen(r->errs);
            snprintf(r->errs + l, sizeof r->errs - l, "%s\n", dsp_harness_errmsg(h));
        }
    }
    r->flush_err = dsp_harness_flush(h);
    if (r->flush_err < 0)
        snprintf(r->flush_msg, sizeof r->flush_msg, "%s", dsp_harness_errmsg(h));
    dsp_packet *p;
    while ((p = dsp_harness_pull(h, 0)) && r->n_out < 8)
        r->out[r->n_out++] = p;
    dsp_harness_free(&h);
}

/* The files of a generated case folder, in file-name order. */
static int case_files(const char *dir, char paths[][1024], int max)
{
    static const char *names[] = { "f00_q", "f01_z", "f02_a", "f03_m", "f04_k", "f05_x",
                                   "mr0.dcm", "mr1.dcm", "mr2.dcm", "n0.dcm", "n1.dcm",
                                   "n2.dcm", "m1.dcm", "mf.dcm", "README.txt", "DICOMDIR" };
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < max; i++) {
        snprintf(paths[n], 1024, "%s/%s", fixture(dir), names[i]);
        if (access(paths[n], R_OK) == 0)
            n++;
    }
    return n;
}

static void read_cases(const char *const *params, const char *const *dirs, run *r)
{
    static char paths[64][1024];
    const char *ptr[64];
    int n = 0;
    for (int d = 0; dirs[d]; d++)
        n += case_files(dirs[d], paths + n, 64 - n);
    for (int i = 0; i < n; i++)
        ptr[i] = paths[i];
    read_files(params, ptr, n, r);
}

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", path, e.text);
    return j;
}

/* Compare a tensor with an expected summary (shape, dtype, hash or samples). */
static void check_expected(const char *what, const dsp_tensor *t, json_t *e)
{
    char desc[96];
    json_t *shape = json_object_get(e, "shape");
    ck_assert_msg((size_t)t->ndim == json_array_size(shape), "%s: got %s", what,
                  dsp_tensor_describe(t, desc, sizeof desc));
    for (int d = 0; d < t->ndim; d++)
        ck_assert_msg(t->shape[d] == json_integer_value(json_array_get(shape, d)),
                      "%s: got %s", what, dsp_tensor_describe(t, desc, sizeof desc));
    ck_assert_msg(!strcmp(dsp_dtype_name(t->dtype), json_string_value(json_object_get(e, "dtype"))),
                  "%s: dtype %s, want %s", what, dsp_dtype_name(t->dtype),
                  json_string_value(json_object_get(e, "dtype")));
    double tol = json_number_value(json_object_get(e, "tol"));
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx",
             (unsigned long long)fnv1a64(dsp_tensor_data(t), dsp_tensor_nbytes(t)));
    if (tol == 0)
        ck_assert_msg(!strcmp(hash, json_string_value(json_object_get(e, "fnv"))),
                      "%s: not bit-equal to pydicom's array (hash %s, want %s)", what, hash,
                      json_string_value(json_object_get(e, "fnv")));
    json_t *idx = json_object_get(e, "index"), *val = json_object_get(e, "value");
    double sum = 0, worst = 0;
    int64_t n = dsp_tensor_numel(t);
    for (size_t i = 0; i < json_array_size(idx); i++) {
        int64_t k = json_integer_value(json_array_get(idx, i));
        ck_assert(k < n);
        double got;
        switch (t->dtype) {
        case DSP_DTYPE_F32: got = ((const float *)dsp_tensor_data(t))[k]; break;
        case DSP_DTYPE_U8: got = ((const uint8_t *)dsp_tensor_data(t))[k]; break;
        case DSP_DTYPE_U16: got = ((const uint16_t *)dsp_tensor_data(t))[k]; break;
        default: got = ((const uint32_t *)dsp_tensor_data(t))[k]; break;
        }
        double d = fabs(got - json_number_value(json_array_get(val, i)));
        worst = d > worst ? d : worst;
    }
    ck_assert_msg(worst <= tol, "%s: largest difference %g > %g", what, worst, tol);
    (void)sum;
}

static void meta_floats(dsp_packet *p, const char *key, double *v, size_t n)
{
    size_t got = 0;
    ck_assert_int_eq(dsp_meta_get_floats(dsp_packet_meta_const(p), key, v, n, &got), 0);
    ck_assert_int_eq(got, n);
}

static const char *meta_str(dsp_packet *p, const char *key)
{
    const char *s = NULL;
    ck_assert_msg(dsp_meta_get_str(dsp_packet_meta_const(p), key, &s) == 0, "no meta %s", key);
    return s;
}

/* ---- pydicom's files: every transfer syntax ---------------------------------- */

START_TEST(test_pydicom_files_match)
{
    if (access(PYDICOM_FILES "/CT_small.dcm", R_OK) != 0) {
        fprintf(stderr, "test_dicom: %s missing (apt-get install python3-pydicom); the "
                "pydicom comparison is skipped\n", PYDICOM_FILES);
        return;
    }
    json_t *root = load_json(fixture("expected.json")), *files = json_object_get(root, "files");
    const char *name;
    json_t *e;
    int checked = 0;
    json_object_foreach(files, name, e) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", PYDICOM_FILES, name);
        const char *paths[] = { path };
        run r;
        read_files(NULL, paths, 1, &r);
        if (strstr(r.errs, "built without OpenJPEG")) {
            fprintf(stderr, "test_dicom: %s skipped: no OpenJPEG in this build\n", name);
            run_free(&r);
            checked++;
            continue;
        }
        ck_assert_msg(r.fails == 0 && r.flush_err == 0 && r.n_out == 1, "%s: %s%s", name,
                      r.errs, r.flush_msg);
        ck_assert_str_eq(meta_str(r.out[0], "transfer_syntax"),
                         json_string_value(json_object_get(e, "transfer_syntax")));
        check_expected(name, dsp_packet_tensor(r.out[0], "volume"), e);
        run_free(&r);
        checked++;
    }
    ck_assert_int_ge(checked, 30);
    json_decref(root);
}
END_TEST

/* ---- generated series ----------------------------------------------------------- */

static json_t *gen_expected(const char *key)
{
    static json_t *root;
    if (!root)
        root = load_json(fixture("gen/gen.json"));
    json_t *e = json_object_get(root, key);
    ck_assert_ptr_nonnull(e);
    return e;
}

START_TEST(test_ct_series_sorted_in_hu)
{
    const char *dirs[] = { "gen/ct", NULL };
    run r;
    read_cases(NULL, dirs, &r);
    ck_assert_msg(r.fails == 0 && r.flush_err == 0 && r.n_out == 1, "%s%s", r.errs, r.flush_msg);
    dsp_packet *p = r.out[0];
    json_t *e = gen_expected("ct");
    check_expected("ct", dsp_packet_tensor(p, "volume"), e);
    double v[9];
    meta_floats(p, "spacing_mm", v, 3);
    ck_assert_double_eq_tol(v[0], 2.5, 1e-9);
    ck_assert_double_eq_tol(v[1], 0.7, 1e-9);
    ck_assert_double_eq_tol(v[2], 0.8, 1e-9);
    meta_floats(p, "origin_mm", v, 3);
    ck_assert_double_eq_tol(v[2], -2.5, 1e-9);
    meta_floats(p, "direction", v, 9);
    ck_assert_double_eq_tol(v[8], 1.0, 1e-9);
    ck_assert_str_eq(meta_str(p, "sort"), "position");
    ck_assert_str_eq(meta_str(p, "units"), "HU");
    ck_assert_str_eq(meta_str(p, "modality"), "CT");
    ck_assert_str_eq(meta_str(p, "series_uid"), "1.2.826.0.1.3680043.10.543.2.1");
    /* no patient-identifying attribute by default */
    char *json = dsp_meta_to_json(dsp_packet_meta_const(p));
    ck_assert_ptr_null(strstr(json, "DOE"));
    ck_assert_ptr_null(strstr(json, "PID12345"));
    ck_assert_ptr_null(strstr(json, "19700101"));
    ck_assert_ptr_null(strstr(json, "patient"));
    dsp_free(json);
    run_free(&r);

    const char *keep[] = { "phi=keep", NULL };
    read_cases(keep, dirs, &r);
    ck_assert_int_eq(r.n_out, 1);
    const dsp_meta *pat = dsp_meta_get_dict(dsp_packet_meta_const(r.out[0]), "patient");
    ck_assert_ptr_nonnull(pat);
    const char *s = NULL;
    ck_assert_int_eq(dsp_meta_get_str(pat, "patient_name", &s), 0);
    ck_assert_str_eq(s, "DOE^JOHN");
    ck_assert_int_eq(dsp_meta_get_str(pat, "patient_id", &s), 0);
    ck_assert_str_eq(s, "PID12345");
    run_free(&r);
}
END_TEST

START_TEST(test_mr_bits_rescale_tilt)
{
    const char *dirs[] = { "gen/mr", NULL };
    run r;
    read_cases(NULL, dirs, &r);
    ck_assert_msg(r.fails == 0 && r.flush_err == 0 && r.n_out == 1, "%s%s", r.errs, r.flush_msg);
    check_expected("mr", dsp_packet_tensor(r.out[0], "volume"), gen_expected("mr"));
    double v[3];
    meta_floats(r.out[0], "spacing_mm", v, 3);
    ck_assert_double_eq_tol(v[0], 4.0, 1e-6);
    ck_assert_str_eq(meta_str(r.out[0], "units"), "rescaled");
    run_free(&r);
}
END_TEST

START_TEST(test_enhanced_multiframe)
{
    const char *dirs[] = { "gen/enhanced", NULL };
    run r;
    read_cases(NULL, dirs, &r);
    ck_assert_msg(r.fails == 0 && r.flush_err == 0 && r.n_out == 1, "%s%s", r.errs, r.flush_msg);
    check_expected("enhanced", dsp_packet_tensor(r.out[0], "volume"), gen_expected("enhanced"));
    double v[3];
    meta_floats(r.out[0], "spacing_mm", v, 3);
    ck_assert_double_eq_tol(v[0], 5.0, 1e-9);
    ck_assert_double_eq_tol(v[1], 0.5, 1e-9);
    ck_assert_double_eq_tol(v[2], 0.6, 1e-9);
    ck_assert_str_eq(meta_str(r.out[0], "sort"), "position");
    ck_assert_str_eq(meta_str(r.out[0], "units"), "HU");
    run_free(&r);
}
END_TEST

START_TEST(test_inconsistent_series_refused)
{
    static const struct { const char *dir, *needle; } cases[] = {
        { "gen/gap", "missing slice" },
        { "gen/dup", "duplicate slice position" },
        { "gen/mixed", "mixed sizes" },
        { "gen/shear", "offset in-plane by 1.000 mm" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dirs[] = { cases[i].dir, NULL };
        run r;
        read_cases(NULL, dirs, &r);
        ck_assert_int_eq(r.n_out, 0);
        ck_assert_msg(r.flush_err < 0 && strstr(r.flush_msg, cases[i].needle),
                      "%s: '%s' not in: %s", cases[i].dir, cases[i].needle, r.flush_msg);
        /* the message names the files */
        ck_assert_msg(strstr(r.flush_msg, "f0") != NULL, "%s", r.flush_msg);
        run_free(&r);
    }
    /* allow_shear stacks the tilted series with a note */
    const char *shear[] = { "gen/shear", NULL }, *allow[] = { "allow_shear=true", NULL };
    run r;
    read_cases(allow, shear, &r);
    ck_assert_msg(r.n_out == 1, "%s", r.flush_msg);
    char *json = dsp_meta_to_json(dsp_packet_meta_const(r.out[0]));
    ck_assert_msg(strstr(json, "without shear correction") != NULL, "%s", json);
    dsp_free(json);
    run_free(&r);
}
END_TEST

START_TEST(test_instance_number_fallback_and_mono1)
{
    const char *dirs[] = { "gen/noipp", NULL };
    run r;
    read_cases(NULL, dirs, &r);
    ck_assert_msg(r.n_out == 1, "%s%s", r.errs, r.flush_msg);
    check_expected("noipp", dsp_packet_tensor(r.out[0], "volume"), gen_expected("noipp"));
    ck_assert_str_eq(meta_str(r.out[0], "sort"), "instance_number");
    char *json = dsp_meta_to_json(dsp_packet_meta_const(r.out[0]));
    ck_assert_msg(strstr(json, "sorted by InstanceNumber") != NULL, "%s", json);
    dsp_free(json);
    run_free(&r);

    const char *m1[] = { "gen/mono1", NULL };
    read_cases(NULL, m1, &r);
    ck_assert_int_eq(r.n_out, 1);
    check_expected("mono1", dsp_packet_tensor(r.out[0], "volume"), gen_expected("mono1"));
    ck_assert_str_eq(meta_str(r.out[0], "photometric"), "MONOCHROME1");
    /* dicom.window inverts MONOCHROME1: the smallest value becomes the brightest */
    const char *wp[] = { "center=0", "width=256", NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.window", wp, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, dsp_packet_ref(r.out[0])), 0);
    dsp_packet *w = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(w);
    const float *x = dsp_tensor_data(dsp_packet_tensor(r.out[0], "volume"));
    const float *y = dsp_tensor_data(dsp_packet_tensor(w, "volume"));
    for (int i = 0; i < 30; i++)
        ck_assert_float_eq_tol(y[i], 1.0f - (float)((x[i] + 128.0) / 256.0), 1e-6f);
    dsp_packet_unref(&w);
    dsp_harness_free(&h);
    run_free(&r);
}
END_TEST

START_TEST(test_skips_with_notes_and_bad_files)
{
    /* a folder run: good series, a text file, a DICOMDIR, and broken files */
    FILE *fp = fopen(tp("empty.dcm"), "wb");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    fp = fopen(tp("fake.dcm"), "wb");
    fputs("<html>not dicom</html>\n", fp);
    fclose(fp);
    /* a CT slice cut in its pixel data */
    FILE *in = fopen(fixture("gen/ct/f00_q"), "rb");
    ck_assert_ptr_nonnull(in);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    fp = fopen(tp("cut"), "wb");
    fwrite(buf, 1, n - 200, fp);
    fclose(fp);
    /* cut in its header */
    fp = fopen(tp("cut_header"), "wb");
    fwrite(buf, 1, 300, fp);
    fclose(fp);

    /* cut exactly before the pixel data element: a valid dataset without pixels */
    size_t at = n;
    while (at >= 4 && memcmp(buf + at - 4, "\xe0\x7f\x10\x00", 4) != 0)
        at--;
    ck_assert_int_ge(at, 4);
    fp = fopen(tp("nopixels"), "wb");
    fwrite(buf, 1, at - 4, fp);
    fclose(fp);

    static char paths[32][1024];
    int k = case_files("gen/ct", paths, 32);
    k += case_files("gen/notes", paths + k, 32 - k);
    const char *extra[] = { tp("empty.dcm"), tp("fake.dcm"), tp("cut"), tp("cut_header"),
                            tp("nopixels") };
    const char *ptr[40];
    for (int i = 0; i < k; i++)
        ptr[i] = paths[i];
    for (int i = 0; i < 5; i++)
        ptr[k++] = extra[i];
    run r;
    read_files(NULL, ptr, k, &r);
    ck_assert_msg(r.fails == 5, "%d failures: %s", r.fails, r.errs);
    ck_assert_msg(strstr(r.errs, "nopixels: an image (Rows 16) without pixel data"), "%s",
                  r.errs);
    ck_assert_msg(strstr(r.errs, "empty.dcm: empty (0 bytes)") != NULL, "%s", r.errs);
    ck_assert_msg(strstr(r.errs, "fake.dcm: not a DICOM file (text) although its name ends in "
                                 "a DICOM extension") != NULL, "%s", r.errs);
    ck_assert_msg(strstr(r.errs, "/cut: ") && strstr(r.errs, "corrupt or truncated DICOM file"),
                  "%s", r.errs);
    ck_assert_msg(strstr(r.errs, "/cut_header: ") != NULL, "%s", r.errs);
    /* the rest is still read */
    ck_assert_msg(r.flush_err == 0 && r.n_out == 1, "%s", r.flush_msg);
    check_expected("ct", dsp_packet_tensor(r.out[0], "volume"), gen_expected("ct"));
    char *json = dsp_meta_to_json(dsp_packet_meta_const(r.out[0]));
    ck_assert_msg(strstr(json, "README.txt: skipped: not a DICOM file") != NULL, "%s", json);
    ck_assert_msg(strstr(json, "DICOMDIR: skipped: a DICOMDIR") != NULL, "%s", json);
    dsp_free(json);
    run_free(&r);

    /* a transfer syntax that is not decoded is refused by name */
    const char *mpeg[] = { fixture("gen/unsupported/mpeg2.dcm") };
    read_files(NULL, mpeg, 1, &r);
    ck_assert_msg(r.fails == 1 && strstr(r.errs, "mpeg2.dcm: unsupported transfer syntax "
                                                 "1.2.840.10008.1.2.4.100"), "%s", r.errs);
    run_free(&r);

    /* a mutated RLE file that crashed DCMTK's RLE decoder (found by fuzz_dicom) */
    const char *rle[] = { fixture("regress/rle_decodeframe_crash.dcm") };
    read_files(NULL, rle, 1, &r);
    ck_assert_msg(r.fails == 1 && strstr(r.errs, "rle_decodeframe_crash.dcm: RLE: "), "%s",
                  r.errs);
    run_free(&r);

    if (access(PYDICOM_FILES "/MR_truncated.dcm", R_OK) == 0) {
        const char *bad[] = { PYDICOM_FILES "/MR_truncated.dcm", PYDICOM_FILES "/liver_1frame.dcm",
                              PYDICOM_FILES "/rtplan.dcm" };
        read_files(NULL, bad, 3, &r);
        ck_assert_msg(r.fails == 2, "%s", r.errs);
        ck_assert_msg(strstr(r.errs, "MR_truncated.dcm: ") != NULL, "%s", r.errs);
        ck_assert_msg(strstr(r.errs, "liver_1frame.dcm: unsupported sample size: "
                                     "BitsAllocated 1") != NULL, "%s", r.errs);
        run_free(&r);
    }
}
END_TEST

START_TEST(test_series_selection)
{
    const char *dirs[] = { "gen/mr", "gen/ct", "gen/noipp", NULL };
    run r;
    read_cases(NULL, dirs, &r);
    ck_assert_msg(r.n_out == 1, "%s", r.flush_msg);
    ck_assert_str_eq(meta_str(r.out[0], "modality"), "CT");
    const char *sel = meta_str(r.out[0], "selection");
    ck_assert_msg(strstr(sel, "the largest of the series that pass the rules") &&
                  strstr(sel, "not chosen") && strstr(sel, "smaller"), "%s", sel);
    run_free(&r);

    const char *mr[] = { "modality=MR", NULL };
    read_cases(mr, dirs, &r);
    ck_assert_int_eq(r.n_out, 1);
    ck_assert_str_eq(meta_str(r.out[0], "modality"), "MR");
    ck_assert_msg(strstr(meta_str(r.out[0], "selection"), "modality CT, not MR"), "%s",
                  meta_str(r.out[0], "selection"));
    run_free(&r);

    const char *desc[] = { "description=*TILTED*", NULL };
    read_cases(desc, dirs, &r);
    ck_assert_int_eq(r.n_out, 1);
    ck_assert_str_eq(meta_str(r.out[0], "series_description"), "T1 tilted");
    run_free(&r);

    const char *all[] = { "select=all", NULL };
    read_cases(all, dirs, &r);
    ck_assert_int_eq(r.n_out, 3);
    ck_assert_int_le(dsp_packet_item(r.out[0]), dsp_packet_item(r.out[1]));
    run_free(&r);

    /* select=all: a broken series does not stop the others, and is reported */
    const char *broken[] = { "gen/ct", "gen/gap", NULL };
    read_cases(all, broken, &r);
    ck_assert_int_eq(r.n_out, 0 + 1);
    ck_assert_msg(r.flush_err < 0 && strstr(r.flush_msg, "missing slice"), "%s", r.flush_msg);
    run_free(&r);

    const char *none[] = { "min_slices=7", NULL };
    read_cases(none, dirs, &r);
    ck_assert_int_eq(r.n_out, 0);
    ck_assert_msg(strstr(r.flush_msg, "no series passes the rules") &&
                  strstr(r.flush_msg, "fewer than min_slices=7"), "%s", r.flush_msg);
    run_free(&r);
}
END_TEST

START_TEST(test_limits)
{
    const char *dirs[] = { "gen/ct", NULL };
    const char *px[] = { "max_pixels=100", NULL };
    run r;
    read_cases(px, dirs, &r);
    ck_assert_int_eq(r.fails, 6);
    ck_assert_msg(strstr(r.errs, "more than max_pixels=100"), "%s", r.errs);
    run_free(&r);
    const char *sl[] = { "max_slices=3", NULL };
    read_cases(sl, dirs, &r);
    ck_assert_msg(r.flush_err < 0 && strstr(r.flush_msg, "more than max_slices=3"), "%s",
                  r.flush_msg);
    run_free(&r);
    const char *by[] = { "max_bytes=1000", NULL };
    read_cases(by, dirs, &r);
    ck_assert_int_eq(r.fails, 6);
    ck_assert_msg(strstr(r.errs, "max_bytes=1000"), "%s", r.errs);
    run_free(&r);
    if (access(PYDICOM_FILES "/rtdose.dcm", R_OK) == 0) {
        const char *fr[] = { "max_frames=4", NULL };
        const char *paths[] = { PYDICOM_FILES "/rtdose.dcm" };
        read_files(fr, paths, 1, &r);
        ck_assert_msg(r.fails == 1 && strstr(r.errs, "15 frames is more than max_frames=4"),
                      "%s", r.errs);
        run_free(&r);
    }
}
END_TEST

/* ---- window and resample -------------------------------------------------------- */

static dsp_packet *volume_packet(int64_t d, int64_t hgt, int64_t w, const double *spacing,
                                 float (*f)(int64_t, int64_t, int64_t))
{
    dsp_tensor *t = NULL;
    int64_t shape[3] = { d, hgt, w };
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape, &t), 0);
    float *x = dsp_tensor_data(t);
    for (int64_t z = 0; z < d; z++)
        for (int64_t y = 0; y < hgt; y++)
            for (int64_t i = 0; i < w; i++)
                *x++ = f(z, y, i);
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "volume", t), 0);
    ck_assert_int_eq(dsp_meta_set_floats(dsp_packet_meta(p), "spacing_mm", spacing, 3), 0);
    return p;
}

static float ramp_hu(int64_t z, int64_t y, int64_t x)
{
    return (float)(-1000 + 100 * z + 10 * y + x);
}

START_TEST(test_window_presets)
{
    static const struct { const char *preset; double c, w; } presets[] = {
        { "preset=lung", -600, 1500 }, { "preset=mediastinum", 50, 350 },
        { "preset=bone", 400, 1800 }, { "preset=brain", 40, 80 },
        { "preset=soft_tissue", 40, 400 },
    };
    double sp[3] = { 1, 1, 1 };
    for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++) {
        const char *params[] = { presets[k].preset, NULL };
        dsp_harness *h = NULL;
        ck_assert_int_eq(dsp_harness_new(ctx, "dicom.window", params, 1, &h), 0);
        dsp_packet *in = volume_packet(25, 10, 10, sp, ramp_hu);
        ck_assert_int_eq(dsp_harness_push(h, 0, dsp_packet_ref(in)), 0);
        dsp_packet *out = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(out);
        const float *x = dsp_tensor_data(dsp_packet_tensor(in, "volume"));
        const float *y = dsp_tensor_data(dsp_packet_tensor(out, "volume"));
        for (int i = 0; i < 2500; i++) {
            double want = (x[i] - (presets[k].c - presets[k].w / 2)) / presets[k].w;
            want = want < 0 ? 0 : want > 1 ? 1 : want;
            ck_assert_float_eq_tol(y[i], (float)want, 1e-6f);
        }
        dsp_packet_unref(&in);
        dsp_packet_unref(&out);
        dsp_harness_free(&h);
    }
    /* u8 output, custom window */
    const char *params[] = { "center=0", "width=2000", "dtype=u8", NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.window", params, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, volume_packet(2, 2, 2, sp, ramp_hu)), 0);
    dsp_packet *out = dsp_harness_pull(h, 0);
    const uint8_t *u = dsp_tensor_data(dsp_packet_tensor(out, "volume"));
    ck_assert_int_eq(u[0], 0);                      /* -1000 */
    ck_assert_int_eq(u[7], 14);                     /* -889: round(255 * 0.0555) */
    dsp_packet_unref(&out);
    dsp_harness_free(&h);
    /* a bad width is refused before any work */
    const char *bad[] = { "width=0", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "dicom.window", bad, 1, &h), 0);
}
END_TEST

static float linear(int64_t z, int64_t y, int64_t x)
{
    return (float)(3.0 * z * 2.5 + 2.0 * y * 0.7 - 1.0 * x * 0.8);
}

START_TEST(test_resample_trilinear)
{
    /* trilinear interpolation is exact on a function linear in mm */
    double sp[3] = { 2.5, 0.7, 0.8 };
    const char *params[] = { "spacing_mm=1.0", NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.resample", params, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, volume_packet(6, 16, 20, sp, linear)), 0);
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    dsp_tensor *t = dsp_packet_tensor(out, "volume");
    ck_assert_int_eq(t->shape[0], 15);             /* 6 x 2.5 mm */
    ck_assert_int_eq(t->shape[1], 11);             /* round(16 x 0.7) */
    ck_assert_int_eq(t->shape[2], 16);             /* 20 x 0.8 */
    const float *y = dsp_tensor_data(t);
    for (int64_t z = 0; z < t->shape[0]; z++)
        for (int64_t r = 0; r < t->shape[1]; r++)
            for (int64_t c = 0; c < t->shape[2]; c++) {
                /* positions past the last input voxel are clamped to it */
                double mz = fmin(z * 1.0, 5 * 2.5), my = fmin(r * 1.0, 15 * 0.7),
                       mx = fmin(c * 1.0, 19 * 0.8);
                double want = 3.0 * mz + 2.0 * my - 1.0 * mx;
                ck_assert_float_eq_tol(y[(z * t->shape[1] + r) * t->shape[2] + c],
                                       (float)want, 1e-4f);
            }
    double nsp[3];
    meta_floats(out, "spacing_mm", nsp, 3);
    ck_assert_double_eq(nsp[1], 1.0);
    dsp_packet_unref(&out);
    dsp_harness_free(&h);
}
END_TEST

static Suite *dicom_suite(void)
{
    Suite *s = suite_create("dicom");
    TCase *tc = tcase_create("read");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_pydicom_files_match);
    tcase_add_test(tc, test_ct_series_sorted_in_hu);
    tcase_add_test(tc, test_mr_bits_rescale_tilt);
    tcase_add_test(tc, test_enhanced_multiframe);
    tcase_add_test(tc, test_inconsistent_series_refused);
    tcase_add_test(tc, test_instance_number_fallback_and_mono1);
    tcase_add_test(tc, test_skips_with_notes_and_bad_files);
    tcase_add_test(tc, test_series_selection);
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    tc = tcase_create("ops");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_window_presets);
    tcase_add_test(tc, test_resample_trilinear);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dicom_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
