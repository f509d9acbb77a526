/* test_loader.c - the plugin loader refuses broken plugins with messages that name the file and the versions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dspipe/dspipe.h>

static const char *bad_dir(void)
{
    const char *d = getenv("BAD_PLUGIN_DIR");
    ck_assert_msg(d != NULL, "BAD_PLUGIN_DIR is not set (run through make check)");
    return d;
}

static int load(dsp_context *ctx, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", bad_dir(), name);
    return dsp_context_load_plugin(ctx, path);
}

static void assert_msg_has(dsp_context *ctx, const char *needle)
{
    ck_assert_msg(strstr(dsp_context_errmsg(ctx), needle) != NULL, "message '%s' lacks '%s'",
                  dsp_context_errmsg(ctx), needle);
}

START_TEST(test_abi_mismatch)
{
    dsp_context *ctx;
    char want[64];
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(load(ctx, "abi_mismatch.so"), DSP_EABI);
    assert_msg_has(ctx, "abi_mismatch.so");
    assert_msg_has(ctx, "'future' 9.9.9");
    snprintf(want, sizeof(want), "ABI %d", DSP_PLUGIN_ABI_VERSION + 41);
    assert_msg_has(ctx, want);
    snprintf(want, sizeof(want), "expects ABI %d", DSP_PLUGIN_ABI_VERSION);
    assert_msg_has(ctx, want);
    ck_assert_ptr_null(dsp_context_find_op(ctx, "bad.abi"));
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_no_entry_symbol)
{
    dsp_context *ctx;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(load(ctx, "no_entry.so"), DSP_ENOENT);
    assert_msg_has(ctx, "no_entry.so");
    assert_msg_has(ctx, "dsp_plugin_entry");
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_duplicate_operator)
{
    dsp_context *ctx;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(load(ctx, "dup_a.so"), 0);
    ck_assert_int_eq(load(ctx, "dup_b.so"), DSP_EEXIST);
    assert_msg_has(ctx, "dup_b.so");
    assert_msg_has(ctx, "dup_a.so");
    assert_msg_has(ctx, "'dup.op'");
    assert_msg_has(ctx, "'dup_a' 1.0");
    assert_msg_has(ctx, "'dup_b' 2.0");
    /* refused whole: its other operator is not registered either */
    ck_assert_ptr_null(dsp_context_find_op(ctx, "dup.other"));
    ck_assert_ptr_nonnull(dsp_context_find_op(ctx, "dup.op"));
    ck_assert_str_eq(dsp_context_plugin_at(ctx, 0, NULL)->name, "dup_a");
    ck_assert_ptr_null(dsp_context_plugin_at(ctx, 1, NULL));
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_bad_tables)
{
    dsp_context *ctx;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(load(ctx, "bad_param.so"), DSP_EABI);
    assert_msg_has(ctx, "bad_param.so");
    assert_msg_has(ctx, "bad.param");
    assert_msg_has(ctx, "level");
    ck_assert_int_eq(load(ctx, "bad_source.so"), DSP_EABI);
    assert_msg_has(ctx, "bad.source");
    assert_msg_has(ctx, "source");
    ck_assert_int_eq(dsp_context_load_plugin(ctx, "/nonexistent/plugin.so"), DSP_ENOENT);
    assert_msg_has(ctx, "/nonexistent/plugin.so");
    dsp_context_free(&ctx);
}
END_TEST

/* A directory scan loads what it can and counts what it refused. */
START_TEST(test_directory_scan)
{
    dsp_context *ctx;
    const char *origin;
    const dsp_plugin_desc *d;
    int good = 0;

    unsetenv("DSPIPE_PLUGIN_PATH");
    setenv("DSPIPE_NO_DEFAULT_PLUGINS", "1", 1);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_add_plugin_dir(ctx, bad_dir()), 0);
    /* abi_mismatch, bad_param, bad_source, dup_b (after dup_a), no_entry */
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 5);
    ck_assert_ptr_nonnull(dsp_context_find_op(ctx, "good.pass"));
    ck_assert_ptr_nonnull(dsp_context_find_op(ctx, "dup.op"));
    for (int i = 0; (d = dsp_context_plugin_at(ctx, i, &origin)); i++)
        if (!strcmp(d->name, "good")) {
            good++;
            ck_assert_ptr_nonnull(strstr(origin, "good.so"));
            ck_assert_str_eq(d->version, "1.2.3");
        }
    ck_assert_int_eq(good, 1);
    ck_assert_str_eq(dsp_context_op_origin(ctx, dsp_context_find_op(ctx, "good.pass")),
                     origin ? dsp_context_op_origin(ctx, dsp_context_find_op(ctx, "good.pass"))
                            : "");
    dsp_context_free(&ctx);
}
END_TEST

/* The same file name in two directories: the first directory wins, and
 * the second copy is skipped rather than refused as a duplicate. */
START_TEST(test_search_order)
{
    dsp_context *ctx;
    char d1[] = "/tmp/dsp_load1_XXXXXX", d2[] = "/tmp/dsp_load2_XXXXXX", cmd[2048];
    const char *origin = NULL;

    ck_assert_ptr_nonnull(mkdtemp(d1));
    ck_assert_ptr_nonnull(mkdtemp(d2));
    snprintf(cmd, sizeof(cmd), "cp %s/good.so %s/ && cp %s/good.so %s/", bad_dir(), d1,
             bad_dir(), d2);
    ck_assert_int_eq(system(cmd), 0);
    setenv("DSPIPE_PLUGIN_PATH", d2, 1);
    setenv("DSPIPE_NO_DEFAULT_PLUGINS", "1", 1);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_add_plugin_dir(ctx, d1), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_ptr_nonnull(dsp_context_plugin_at(ctx, 0, &origin));
    ck_assert_ptr_null(dsp_context_plugin_at(ctx, 1, NULL));
    ck_assert_int_eq(strncmp(origin, d1, strlen(d1)), 0);
    dsp_context_free(&ctx);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", d1, d2);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_device_selection)
{
    dsp_context *ctx;
    dsp_device dev;
    char name[64];

    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_device_open(ctx, "cpu", &dev), 0);
    ck_assert_int_eq(dev.type, DSP_DEVICE_CPU);
    ck_assert_int_eq(dsp_device_open(ctx, "tpu", &dev), DSP_EINVAL);
    assert_msg_has(ctx, "'tpu'");
    ck_assert_int_eq(dsp_device_open(ctx, "cuda:x", &dev), DSP_EINVAL);
    /* auto always gives a usable device */
    ck_assert_int_eq(dsp_device_open(ctx, "auto", &dev), 0);
    if (dev.type == DSP_DEVICE_CPU) {
        /* no GPU here: cuda must fail and say why */
        ck_assert_int_eq(dsp_device_open(ctx, "cuda", &dev), DSP_EDEVICE);
        assert_msg_has(ctx, "--device cuda");
    }
    ck_assert_str_eq(dsp_device_name((dsp_device){ DSP_DEVICE_CUDA, 1 }, name, sizeof(name)),
                     "cuda:1");
    dsp_context_free(&ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("plugins");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_abi_mismatch);
    tcase_add_test(tc, test_no_entry_symbol);
    tcase_add_test(tc, test_duplicate_operator);
    tcase_add_test(tc, test_bad_tables);
    tcase_add_test(tc, test_directory_scan);
    tcase_add_test(tc, test_search_order);
    tcase_add_test(tc, test_device_selection);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
