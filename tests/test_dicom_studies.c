/* test_dicom_studies.c - dicom.studies (grouping a folder by study from the headers) and dicom.read's per-study mode, through the harness. */
#include <check.h>
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
/* the generated series (tests/data/dicom/gen) are all of this study */
#define GEN_STUDY "1.2.826.0.1.3680043.10.543.1"

static dsp_context *ctx;
static char tmpdir[256];
static int have_pydicom;

static void setup(void)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmpdir, sizeof tmpdir, "dicom_studies"));
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "dicom.studies") != NULL,
                  "dicom.studies not found: is plugins/dicom/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
    tu_remove_tree(tmpdir);
}

static void copy(const char *src, const char *dst_rel, long max_bytes)
{
    ck_assert_msg(tu_copy_file(src, tu_join(tmpdir, dst_rel), max_bytes) == 0,
                  "cannot copy %s", src);
}

/* A folder of studies, in path order:
 *   a/CT_small.dcm              study of pydicom's CT_small (when installed)
 *   s1/DICOMDIR                 skipped with a note
 *   s1/ct/cut.dcm               a slice without its last 100 bytes: its own item
 *   s1/ct/f00_q ... f05_x       the generated study: a CT series ...
 *   s1/mr/mr0.dcm ... mr2.dcm   ... and an MR series (same study)
 *   README.txt                  skipped with a note (for every study)
 *   z/MR_small.dcm              study of pydicom's MR_small (when installed) */
static void make_folder(void)
{
    static const char *ct[] = { "f00_q", "f01_z", "f02_a", "f03_m", "f04_k", "f05_x" };
    char rel[64];
    for (int i = 0; i < 6; i++) {
        snprintf(rel, sizeof rel, "s1/ct/%s", ct[i]);
        copy(tu_fixture("dicom", tu_join("gen/ct", ct[i])), rel, -1);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "s1/mr/mr%d.dcm", i);
        copy(tu_fixture("dicom", tu_join("gen/mr", rel + 6)), rel, -1);
    }
    struct stat sb;
    ck_assert_int_eq(stat(tu_fixture("dicom", "gen/ct/f00_q"), &sb), 0);
    copy(tu_fixture("dicom", "gen/ct/f00_q"), "s1/ct/cut.dcm", (long)sb.st_size - 100);
    copy(tu_fixture("dicom", "gen/notes/DICOMDIR"), "s1/DICOMDIR", -1);
    copy(tu_fixture("dicom", "gen/notes/README.txt"), "README.txt", -1);
    have_pydicom = access(PYDICOM_FILES "/CT_small.dcm", R_OK) == 0 &&
                   access(PYDICOM_FILES "/MR_small.dcm", R_OK) == 0;
    if (have_pydicom) {
        copy(PYDICOM_FILES "/CT_small.dcm", "a/CT_small.dcm", -1);
        copy(PYDICOM_FILES "/MR_small.dcm", "z/MR_small.dcm", -1);
    }
}

/* Run dicom.studies over the folder; the items in out (at most max). */
static int list_studies(dsp_packet **out, int max)
{
    char param[512];
    snprintf(param, sizeof param, "dir=%s", tmpdir);
    const char *params[] = { param, NULL };
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "dicom.studies", params, 0, &h) == 0, "%s",
                  dsp_context_errmsg(ctx));
    int n = 0, err;
    while ((err = dsp_harness_step(h)) == 0)
        ;
    ck_assert_int_eq(err, DSP_EOF);
    dsp_packet *p;
    while ((p = dsp_harness_pull(h, 0))) {
        ck_assert_int_lt(n, max);
        out[n++] = p;
    }
    dsp_harness_free(&h);
    return n;
}

static const char *meta_str(const dsp_packet *p, const char *key)
{
    const char *s = NULL;
    if (dsp_meta_get_str(dsp_packet_meta_const(p), key, &s) < 0)
        return NULL;
    return s;
}

/* Meta "notes" of p as JSON text (to search), malloc'd. */
static char *notes_text(const dsp_packet *p)
{
    char *all = dsp_meta_to_json(dsp_packet_meta_const(p));
    ck_assert_ptr_nonnull(all);
    char *notes = strstr(all, "\"notes\":");
    ck_assert_ptr_nonnull(notes);
    char *copy = strndup(notes, (size_t)(strchr(notes, ']') - notes + 1));
    dsp_free(all);
    return copy;
}

START_TEST(test_studies_grouped_by_uid)
{
    make_folder();
    dsp_packet *st[8];
    int n = list_studies(st, 8);
    int k = 0;
    ck_assert_int_eq(n, have_pydicom ? 4 : 2);
    if (have_pydicom) {
        /* CT_small's study comes first (path order), one file */
        ck_assert_str_eq(meta_str(st[k], "key"), meta_str(st[k], "study_uid"));
        ck_assert_str_ne(meta_str(st[k], "study_uid"), GEN_STUDY);
        ck_assert_ptr_nonnull(strstr(meta_str(st[k], "source"), "/a"));
        k++;
    }
    /* the cut copy: its own item, the reason given, the file as key and source */
    ck_assert_int_eq(dsp_packet_item(st[k]), k);
    ck_assert_ptr_nonnull(meta_str(st[k], "unreadable"));
    ck_assert_ptr_nonnull(strstr(meta_str(st[k], "key"), "s1/ct/cut.dcm"));
    ck_assert_ptr_null(meta_str(st[k], "study_uid"));
    k++;
    /* the generated study: CT and MR series together, nine files */
    const dsp_meta *m = dsp_packet_meta_const(st[k]);
    ck_assert_int_eq(dsp_packet_item(st[k]), k);
    ck_assert_str_eq(meta_str(st[k], "key"), GEN_STUDY);
    ck_assert_str_eq(meta_str(st[k], "study_uid"), GEN_STUDY);
    ck_assert_ptr_nonnull(strstr(meta_str(st[k], "source"), "/s1"));
    const char *paths[16];
    size_t np = 0;
    int64_t files = 0;
    ck_assert_int_eq(dsp_meta_get_strs(m, "paths", paths, 16, &np), 0);
    ck_assert_int_eq(np, 9);
    ck_assert_int_eq(dsp_meta_get_int(m, "files", &files), 0);
    ck_assert_int_eq(files, 9);
    ck_assert_ptr_nonnull(strstr(paths[0], "s1/ct/f00_q"));
    ck_assert_ptr_nonnull(strstr(paths[8], "s1/mr/mr2.dcm"));
    char *notes = notes_text(st[k]);
    ck_assert_msg(strstr(notes, "DICOMDIR: skipped: a DICOMDIR") != NULL, "%s", notes);
    ck_assert_msg(strstr(notes, "README.txt: skipped: not a DICOM file") != NULL, "%s", notes);
    free(notes);
    k++;
    if (have_pydicom) {
        ck_assert_ptr_nonnull(strstr(meta_str(st[k], "source"), "/z"));
        /* the README at the top is in every study's tree, the DICOMDIR only in s1's */
        notes = notes_text(st[k]);
        ck_assert_msg(strstr(notes, "README.txt") && !strstr(notes, "DICOMDIR"), "%s", notes);
        free(notes);
    }
    for (int i = 0; i < n; i++)
        dsp_packet_unref(&st[i]);
}
END_TEST

START_TEST(test_read_one_study_per_item)
{
    make_folder();
    dsp_packet *st[8];
    int n = list_studies(st, 8);
    const char *params[] = { "modality=CT", NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.read", params, 1, &h), 0);
    int fails = 0;
    for (int i = 0; i < n; i++) {
        char uid_buf[68];
        const char *uid = meta_str(st[i], "study_uid");
        if (uid)
            uid = strcpy(uid_buf, uid);   /* the packet goes to the harness */
        int64_t item = dsp_packet_item(st[i]);
        int err = dsp_harness_push(h, 0, st[i]);
        const char *msg = dsp_harness_errmsg(h);
        if (!uid) {
            /* the cut copy fails its item, naming the file */
            ck_assert_int_lt(err, 0);
            ck_assert_msg(strstr(msg, "cut.dcm") != NULL, "%s", msg);
            fails++;
            continue;
        }
        if (have_pydicom && strcmp(uid, GEN_STUDY) && i == n - 1) {
            /* MR_small's study has no CT series: that item fails, saying why */
            ck_assert_int_lt(err, 0);
            ck_assert_msg(strstr(msg, "modality MR, not CT") != NULL, "%s", msg);
            fails++;
            continue;
        }
        ck_assert_msg(err == 0, "%s", msg);
        /* the study's volume is out at once, as the same item */
        dsp_packet *v = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(dsp_packet_item(v), item);
        ck_assert_int_eq(dsp_packet_last(v), 1);
        ck_assert_str_eq(meta_str(v, "study_uid"), uid);
        ck_assert_str_eq(meta_str(v, "modality"), "CT");
        ck_assert_ptr_null(dsp_harness_pull(h, 0));
        if (!strcmp(uid, GEN_STUDY)) {
            int64_t slices = 0;
            ck_assert_int_eq(dsp_meta_get_int(dsp_packet_meta_const(v), "slices", &slices), 0);
            ck_assert_int_eq(slices, 6);
            /* the source's notes go on with the volume */
            char *notes = notes_text(v);
            ck_assert_msg(strstr(notes, "DICOMDIR: skipped") != NULL, "%s", notes);
            free(notes);
        }
        dsp_packet_unref(&v);
    }
    ck_assert_int_eq(fails, have_pydicom ? 2 : 1);
    ck_assert_int_eq(dsp_harness_flush(h), 0);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    dsp_harness_free(&h);
}
END_TEST

/* A study whose files cannot be read at all, and a single file after a
 * study: clear failures of that item, never a crash. */
START_TEST(test_read_study_errors)
{
    copy(tu_fixture("dicom", "gen/ct/f00_q"), "cut/f00_q", 200);
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.read", NULL, 1, &h), 0);
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    const char *paths[] = { tu_join(tmpdir, "cut/f00_q"), tu_join(tmpdir, "missing.dcm") };
    ck_assert_int_eq(dsp_meta_set_strs(dsp_packet_meta(p), "paths", paths, 2), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "study_uid", "1.2.3"), 0);
    ck_assert_int_lt(dsp_harness_push(h, 0, p), 0);
    const char *msg = dsp_harness_errmsg(h);
    ck_assert_msg(strstr(msg, "study 1.2.3") && strstr(msg, "no DICOM image could be read") &&
                  strstr(msg, "f00_q"), "%s", msg);
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_packet_set_pos(p, 1, 0, 1);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", paths[0]), 0);
    ck_assert_int_lt(dsp_harness_push(h, 0, p), 0);
    msg = dsp_harness_errmsg(h);
    ck_assert_msg(strstr(msg, "not both") != NULL, "%s", msg);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    dsp_harness_free(&h);
    /* input=studies takes studies only: a single file fails, saying what it takes */
    const char *studies_only[] = { "input=studies", NULL };
    ck_assert_int_eq(dsp_harness_new(ctx, "dicom.read", studies_only, 1, &h), 0);
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", paths[0]), 0);
    ck_assert_int_lt(dsp_harness_push(h, 0, p), 0);
    msg = dsp_harness_errmsg(h);
    ck_assert_msg(strstr(msg, "not a study") && strstr(msg, "dicom.studies"), "%s", msg);
    dsp_harness_free(&h);
}
END_TEST

static Suite *studies_suite(void)
{
    Suite *s = suite_create("dicom_studies");
    TCase *tc = tcase_create("studies");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_studies_grouped_by_uid);
    tcase_add_test(tc, test_read_one_study_per_item);
    tcase_add_test(tc, test_read_study_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(studies_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
