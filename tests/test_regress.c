/* test_regress.c - regression tests for bugs found in review: each test fails on the code before its fix. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dspipe/dspipe.h>

#include "testutil.h"
#include <dspipe/harness.h>
#include <dspipe/tensorio.h>

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dsp_regress_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    tu_remove_tree(tmpdir);
}

static dsp_context *ctx_with_plugins(void)
{
    dsp_context *ctx;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_ptr_nonnull(dsp_context_find_op(ctx, "tensor.source"));
    return ctx;
}

/* Merging a dictionary into the dictionary that contains it: the write of
 * its own key used to free it while it was being iterated. */
START_TEST(test_meta_update_from_nested)
{
    dsp_meta *m = dsp_meta_new();
    dsp_meta *d = dsp_meta_dict(m, "x");
    int64_t v;

    ck_assert_int_eq(dsp_meta_set_int(d, "x", 1), 0);
    ck_assert_int_eq(dsp_meta_set_int(d, "y", 2), 0);
    ck_assert_int_eq(dsp_meta_update(m, d), 0);
    ck_assert_int_eq(dsp_meta_get_int(m, "x", &v), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(dsp_meta_get_int(m, "y", &v), 0);
    ck_assert_int_eq(v, 2);
    dsp_meta_free(&m);
}
END_TEST

/* A zero dim used to skip the overflow check of the others: the strides
 * then overflowed (undefined behaviour; UBSan aborts). */
START_TEST(test_shape_overflow_with_zero_dim)
{
    int64_t shape[3] = { 0, INT64_C(4611686018427387904), INT64_C(4611686018427387904) };
    dsp_tensor *t = NULL;
    char path[512], *why = NULL;
    const char hdr[] = "{\"z\":{\"dtype\":\"F64\",\"shape\":[0,4611686018427387904,"
                       "4611686018427387904],\"data_offsets\":[0,0]}}";
    uint64_t n = sizeof(hdr) - 1;
    dsp_safetensors *st = NULL;
    FILE *f;

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F64, 3, shape, &t), DSP_EINVAL);
    ck_assert_ptr_null(t);
    snprintf(path, sizeof(path), "%s/z.safetensors", tmpdir);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(&n, 8, 1, f);            /* little-endian host */
    fwrite(hdr, 1, n, f);
    fclose(f);
    if (dsp_safetensors_open(path, &st, &why) == 0) {
        /* accepted as a header: then reading the tensor must refuse it */
        ck_assert_int_lt(dsp_safetensors_get(st, "z", &t), 0);
        dsp_safetensors_close(&st);
    }
    free(why);
}
END_TEST

/* A harness with fewer slots than the operator's inputs used to hand
 * process() an uninitialised pointer. */
START_TEST(test_harness_checks_input_count)
{
    dsp_context *ctx = ctx_with_plugins();
    dsp_harness *h = NULL;

    ck_assert_int_eq(dsp_harness_new(ctx, "test.noop", NULL, 2, &h), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "test.noop"));
    ck_assert_int_eq(dsp_harness_new(ctx, "test.gen", NULL, 1, &h), DSP_EINVAL);
    /* a variadic input takes any number of slots */
    ck_assert_int_eq(dsp_harness_new(ctx, "test.merge", NULL, 5, &h), 0);
    dsp_harness_free(&h);
    dsp_context_free(&ctx);
}
END_TEST

/* Lists in harness parameters: more than 256 items, and quoted commas. */
START_TEST(test_harness_long_quoted_list)
{
    dsp_context *ctx = ctx_with_plugins();
    dsp_harness *h = NULL;
    size_t cap = 1 << 16, len = 0;
    char *spec = malloc(cap);
    const char *params[2] = { spec, NULL };
    int64_t shape[1] = { 2 };
    dsp_tensor *t;
    char path[512];
    int n = 0, err;

    /* 300 files, the last one with a comma in its name */
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &t), 0);
    memset(dsp_tensor_data(t), 0, 8);
    len += snprintf(spec + len, cap - len, "path=[");
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof(path), "%s/f%d%s.npy", tmpdir, i, i == 299 ? ",x" : "");
        ck_assert_int_eq(dsp_npy_write(path, t, NULL), 0);
        len += snprintf(spec + len, cap - len, "%s\"%s\"", i ? ", " : "", path);
    }
    snprintf(spec + len, cap - len, "]");
    dsp_tensor_unref(&t);
    ck_assert_int_eq(dsp_harness_new(ctx, "tensor.source", params, 0, &h), 0);
    while ((err = dsp_harness_step(h)) == 0) {
        dsp_packet *p;
        while ((p = dsp_harness_pull(h, 0))) {
            n++;
            dsp_packet_unref(&p);
        }
    }
    ck_assert_int_eq(err, DSP_EOF);
    ck_assert_int_eq(n, 300);
    dsp_harness_free(&h);
    dsp_context_free(&ctx);
    free(spec);
}
END_TEST

/* A FIFO used to block the reader forever. */
START_TEST(test_fifo_is_refused)
{
    dsp_context *ctx = ctx_with_plugins();
    dsp_buffer *b = NULL;
    dsp_tensor *t = NULL;
    dsp_harness *h = NULL;
    char path[512], spec[600];
    const char *params[2] = { spec, NULL };

    snprintf(path, sizeof(path), "%s/fifo.npy", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(dsp_buffer_map_file(path, &b), DSP_EINVAL);
    ck_assert_int_lt(dsp_npy_read(path, &t, NULL), 0);
    snprintf(spec, sizeof(spec), "path=[%s]", path);
    ck_assert_int_eq(dsp_harness_new(ctx, "tensor.source", params, 0, &h), 0);
    ck_assert_int_lt(dsp_harness_step(h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_harness_errmsg(h), "not a regular file"));
    dsp_harness_free(&h);
    dsp_context_free(&ctx);
}
END_TEST

/* An output name near NAME_MAX used to leave no room for the temporary
 * file's decoration. */
START_TEST(test_long_output_name)
{
    int64_t shape[1] = { 1 };
    dsp_tensor *t;
    char path[600], name[256];
    struct stat st;

    memset(name, 'n', 250);
    strcpy(name + 250, ".npy");
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &t), 0);
    memset(dsp_tensor_data(t), 0, sizeof(float));
    ck_assert_int_eq(dsp_npy_write(path, t, NULL), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    dsp_tensor_unref(&t);
}
END_TEST

/* {stem} from an upstream path of ".." used to write outside the
 * template's directory. */
START_TEST(test_stem_cannot_escape)
{
    dsp_context *ctx = ctx_with_plugins();
    dsp_harness *h = NULL;
    dsp_packet *p;
    dsp_tensor *t;
    int64_t shape[1] = { 1 };
    char spec[600], escaped[600], inside[600];
    const char *params[2] = { spec, NULL };
    struct stat st;

    snprintf(spec, sizeof(spec), "path=%s/out/{stem}/x.npy", tmpdir);
    ck_assert_int_eq(dsp_harness_new(ctx, "tensor.write", params, 1, &h), 0);
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", "dir/...npy"), 0);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &t), 0);
    memset(dsp_tensor_data(t), 0, sizeof(float));
    ck_assert_int_eq(dsp_packet_set_tensor(p, "x", t), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, p), 0);
    ck_assert_int_eq(dsp_harness_flush(h), 0);
    snprintf(escaped, sizeof(escaped), "%s/x.npy", tmpdir);        /* out/../x.npy */
    snprintf(inside, sizeof(inside), "%s/out/_/x.npy", tmpdir);
    ck_assert_int_ne(stat(escaped, &st), 0);
    ck_assert_int_eq(stat(inside, &st), 0);
    dsp_harness_free(&h);
    dsp_context_free(&ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("regressions");
    TCase *tc = tcase_create("review");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_meta_update_from_nested);
    tcase_add_test(tc, test_shape_overflow_with_zero_dim);
    tcase_add_test(tc, test_harness_checks_input_count);
    tcase_add_test(tc, test_harness_long_quoted_list);
    tcase_add_test(tc, test_fifo_is_refused);
    tcase_add_test(tc, test_long_output_name);
    tcase_add_test(tc, test_stem_cannot_escape);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
