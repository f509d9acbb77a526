/* test_params.c - parameter values (every type, ranges, enums, lists) and the table checker. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>

#include "internal.h"

typedef struct prm {
    int64_t level;
    double gain;
    int on;
    char *label;
    char *model;
    int mode;
    dsp_list sizes;
    dsp_list scales;
    dsp_list names;
} prm;

static const char *const modes[] = { "lung", "bone", "soft", NULL };

static const dsp_param_def defs[] = {
    { "level", DSP_PARAM_INT, offsetof(prm, level), "5", 0, 255 },
    { "gain", DSP_PARAM_FLOAT, offsetof(prm, gain), "1.5", -2, 4 },
    { "on", DSP_PARAM_BOOL, offsetof(prm, on), "no" },
    { "label", DSP_PARAM_STRING, offsetof(prm, label), "\"two words\"" },
    { "model", DSP_PARAM_PATH, offsetof(prm, model), NULL },
    { "mode", DSP_PARAM_ENUM, offsetof(prm, mode), "bone", 0, 0, modes },
    { "sizes", DSP_PARAM_LIST, offsetof(prm, sizes), "[224, 256]", 1, 4096, NULL,
      DSP_PARAM_INT },
    { "scales", DSP_PARAM_LIST, offsetof(prm, scales), "[]", 0, 0, NULL,
      DSP_PARAM_FLOAT },
    { "names", DSP_PARAM_LIST, offsetof(prm, names), "[\"a b\", c]", 0, 0, NULL,
      DSP_PARAM_STRING },
    { "free_int", DSP_PARAM_INT, offsetof(prm, level), "0" },
    { NULL }
};

static const dsp_op_def op = {
    .struct_size = sizeof(dsp_op_def), .name = "test.params",
    .params = defs, .priv_size = sizeof(prm),
};

enum { P_LEVEL, P_GAIN, P_ON, P_LABEL, P_MODEL, P_MODE, P_SIZES, P_SCALES,
       P_NAMES, P_FREE_INT };

static prm st;
static char *err, *hint;

static void setup(void)
{
    memset(&st, 0, sizeof(st));
    err = hint = NULL;
}

static void teardown(void)
{
    dspi_params_free(&op, &st);
    free(err);
    free(hint);
}

/* Store one value; on failure err/hint hold the texts. */
static int put(int which, const char *text)
{
    free(err);
    free(hint);
    err = hint = NULL;
    return dspi_param_store(&defs[which], &st, &text, 1, ".", &err, &hint);
}

static int put_list(int which, const char *const *items, int n)
{
    free(err);
    free(hint);
    err = hint = NULL;
    return dspi_param_store(&defs[which], &st, items, n, ".", &err, &hint);
}

START_TEST(test_int_good)
{
    ck_assert_int_eq(put(P_FREE_INT, "42"), 0);
    ck_assert_int_eq(st.level, 42);
    ck_assert_int_eq(put(P_FREE_INT, "-17"), 0);
    ck_assert_int_eq(st.level, -17);
    ck_assert_int_eq(put(P_FREE_INT, "+8"), 0);
    ck_assert_int_eq(st.level, 8);
    ck_assert_int_eq(put(P_FREE_INT, "0x1F"), 0);
    ck_assert_int_eq(st.level, 31);
    ck_assert_int_eq(put(P_FREE_INT, "-0x10"), 0);
    ck_assert_int_eq(st.level, -16);
    /* a leading zero is decimal, not octal */
    ck_assert_int_eq(put(P_FREE_INT, "010"), 0);
    ck_assert_int_eq(st.level, 10);
    ck_assert_int_eq(put(P_FREE_INT, "9223372036854775807"), 0);
    ck_assert(st.level == INT64_MAX);
    ck_assert_int_eq(put(P_FREE_INT, "-9223372036854775808"), 0);
    ck_assert(st.level == INT64_MIN);
    ck_assert_ptr_null(err);
}
END_TEST

START_TEST(test_int_bad)
{
    static const char *const bad[] = { "", "abc", "12abc", "1.5", " 5", "5 ",
                                       "--5", "0x", "0xg", "1e3", "+-1" };
    for (size_t k = 0; k < DSPI_ARRAY_LEN(bad); k++) {
        ck_assert_int_eq(put(P_FREE_INT, bad[k]), DSP_EINVAL);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, "not an integer"), "%s -> %s", bad[k], err);
    }
    ck_assert_int_eq(put(P_FREE_INT, "9223372036854775808"), DSP_EINVAL);
    ck_assert_str_eq(err, "integer '9223372036854775808' does not fit in 64 bits");
    ck_assert_int_eq(put(P_FREE_INT, "-9223372036854775809"), DSP_EINVAL);
    ck_assert_int_eq(put(P_FREE_INT, "99999999999999999999999"), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "64 bits"));
}
END_TEST

START_TEST(test_int_range)
{
    ck_assert_int_eq(put(P_LEVEL, "0"), 0);
    ck_assert_int_eq(put(P_LEVEL, "255"), 0);
    ck_assert_int_eq(st.level, 255);
    ck_assert_int_eq(put(P_LEVEL, "256"), DSP_EINVAL);
    ck_assert_str_eq(err, "value 256 is out of range [0, 255]");
    ck_assert_str_eq(hint, "allowed: 0 to 255");
    ck_assert_int_eq(put(P_LEVEL, "-1"), DSP_EINVAL);
    ck_assert_int_eq(put(P_LEVEL, "0x100"), DSP_EINVAL);
    ck_assert_str_eq(err, "value 256 is out of range [0, 255]");
    ck_assert_int_eq(st.level, 255);    /* a failed store leaves the old value */
}
END_TEST

START_TEST(test_float)
{
    ck_assert_int_eq(put(P_GAIN, "2.5"), 0);
    ck_assert(st.gain == 2.5);
    ck_assert_int_eq(put(P_GAIN, "-1e0"), 0);
    ck_assert(st.gain == -1.0);
    ck_assert_int_eq(put(P_GAIN, ".25"), 0);
    ck_assert(st.gain == 0.25);
    ck_assert_int_eq(put(P_GAIN, "4"), 0);
    ck_assert_int_eq(put(P_GAIN, "4.001"), DSP_EINVAL);
    ck_assert_str_eq(err, "value 4.001 is out of range [-2, 4]");
    ck_assert_str_eq(hint, "allowed: -2 to 4");
    static const char *const bad[] = { "", "x", "1.5x", "nan", "inf", "-inf",
                                       " 1", "1 ", "1e" };
    for (size_t k = 0; k < DSPI_ARRAY_LEN(bad); k++) {
        ck_assert_int_eq(put(P_GAIN, bad[k]), DSP_EINVAL);
        ck_assert_msg(strstr(err, "not a number") || strstr(err, "finite"),
                      "%s -> %s", bad[k], err);
    }
    ck_assert_int_eq(put(P_GAIN, "1e999"), DSP_EINVAL);
    ck_assert_str_eq(err, "number '1e999' is too large");
}
END_TEST

START_TEST(test_bool)
{
    static const char *const yes[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
    static const char *const no[] = { "false", "no", "off", "0", "Off" };

    for (size_t k = 0; k < DSPI_ARRAY_LEN(yes); k++) {
        st.on = 0;
        ck_assert_int_eq(put(P_ON, yes[k]), 0);
        ck_assert_int_eq(st.on, 1);
    }
    for (size_t k = 0; k < DSPI_ARRAY_LEN(no); k++) {
        st.on = 1;
        ck_assert_int_eq(put(P_ON, no[k]), 0);
        ck_assert_int_eq(st.on, 0);
    }
    ck_assert_int_eq(put(P_ON, "maybe"), DSP_EINVAL);
    ck_assert_str_eq(err, "'maybe' is not a boolean");
    ck_assert_str_eq(hint, "use true/false, yes/no, on/off or 1/0");
    ck_assert_int_eq(put(P_ON, "2"), DSP_EINVAL);
}
END_TEST

START_TEST(test_string_and_path)
{
    ck_assert_int_eq(put(P_LABEL, "hello world"), 0);
    ck_assert_str_eq(st.label, "hello world");
    ck_assert_int_eq(put(P_LABEL, ""), 0);      /* replaces, no leak */
    ck_assert_str_eq(st.label, "");

    setenv("HOME", "/home/tester", 1);
    ck_assert_int_eq(put(P_MODEL, "~/models/m.safetensors"), 0);
    ck_assert_str_eq(st.model, "/home/tester/models/m.safetensors");
    ck_assert_int_eq(put(P_MODEL, "~"), 0);
    ck_assert_str_eq(st.model, "/home/tester");
    ck_assert_int_eq(put(P_MODEL, "rel/dir/x.bin"), 0);
    ck_assert_str_eq(st.model, "rel/dir/x.bin");     /* relative to cwd */
    ck_assert_int_eq(put(P_MODEL, "~user/x"), 0);     /* only "~/" expands */
    ck_assert_str_eq(st.model, "~user/x");
    ck_assert_int_eq(put(P_MODEL, ""), DSP_EINVAL);
    ck_assert_str_eq(err, "empty path");
}
END_TEST

START_TEST(test_path_must_exist)
{
    dsp_param_def d = { "weights", DSP_PARAM_PATH, 0, NULL };
    const char *text = "/nonexistent/dspipe/weights.bin";
    char *p = NULL;

    d.flags = DSP_PARAM_MUST_EXIST;
    ck_assert_int_eq(dspi_param_store(&d, &p, &text, 1, ".", &err, &hint), DSP_EINVAL);
    ck_assert_str_eq(err, "/nonexistent/dspipe/weights.bin: No such file or directory");
    ck_assert_ptr_nonnull(hint);
    ck_assert_ptr_null(p);
    free(err);
    free(hint);
    err = hint = NULL;
    text = "/";
    ck_assert_int_eq(dspi_param_store(&d, &p, &text, 1, ".", &err, &hint), 0);
    ck_assert_str_eq(p, "/");
    free(p);
}
END_TEST

START_TEST(test_enum)
{
    ck_assert_int_eq(put(P_MODE, "soft"), 0);
    ck_assert_int_eq(st.mode, 2);
    ck_assert_int_eq(put(P_MODE, "lung"), 0);
    ck_assert_int_eq(st.mode, 0);
    ck_assert_int_eq(put(P_MODE, "bnoe"), DSP_EINVAL);
    ck_assert_str_eq(err, "'bnoe' is not one of: lung, bone, soft");
    ck_assert_str_eq(hint, "did you mean 'bone'?");
    ck_assert_int_eq(put(P_MODE, "Lung"), DSP_EINVAL);   /* exact names only */
    ck_assert_int_eq(put(P_MODE, "xyzzyplugh"), DSP_EINVAL);
    ck_assert_ptr_null(hint);
}
END_TEST

START_TEST(test_lists)
{
    const char *ints[] = { "1", "0x10", "4096" };
    const char *bad_range[] = { "1", "5000" };
    const char *bad_int[] = { "1", "2", "x" };
    const char *floats[] = { "0.5", "1e2" };
    const char *strs[] = { "a b", "" };

    ck_assert_int_eq(put_list(P_SIZES, ints, 3), 0);
    ck_assert_int_eq(st.sizes.n, 3);
    ck_assert_ptr_nonnull(st.sizes.i);
    ck_assert_ptr_null(st.sizes.f);
    ck_assert_ptr_null(st.sizes.s);
    ck_assert_int_eq(st.sizes.i[1], 16);
    ck_assert_int_eq(st.sizes.i[2], 4096);
    ck_assert_int_eq(put_list(P_SIZES, bad_range, 2), DSP_EINVAL);
    ck_assert_str_eq(err, "list element 2: value 5000 is out of range [1, 4096]");
    ck_assert_str_eq(hint, "allowed: 1 to 4096");
    ck_assert_int_eq(st.sizes.n, 3);    /* unchanged */
    ck_assert_int_eq(put_list(P_SIZES, bad_int, 3), DSP_EINVAL);
    ck_assert_str_eq(err, "list element 3: 'x' is not an integer");
    ck_assert_int_eq(put_list(P_SIZES, ints, 0), 0);
    ck_assert_int_eq(st.sizes.n, 0);

    ck_assert_int_eq(put_list(P_SCALES, floats, 2), 0);
    ck_assert_int_eq(st.scales.n, 2);
    ck_assert(st.scales.f[0] == 0.5 && st.scales.f[1] == 100.0);
    ck_assert_int_eq(put_list(P_NAMES, strs, 2), 0);
    ck_assert_str_eq(st.names.s[0], "a b");
    ck_assert_str_eq(st.names.s[1], "");
    /* a scalar parameter refuses a list */
    ck_assert_int_eq(put_list(P_LEVEL, ints, 3), DSP_EINVAL);
    ck_assert_str_eq(err, "expects a single int, not a list");
}
END_TEST

START_TEST(test_defaults_and_format)
{
    unsigned char given[10] = { 0 };
    dspi_str s = { 0 };

    given[P_LEVEL] = 1;
    st.level = 77;
    ck_assert_int_eq(dspi_params_store_defaults(&op, &st, given), 0);
    ck_assert_int_eq(st.level, 0);      /* free_int's default shares the slot */
    ck_assert(st.gain == 1.5);
    ck_assert_int_eq(st.on, 0);
    ck_assert_str_eq(st.label, "two words");
    ck_assert_ptr_null(st.model);       /* required: no default */
    ck_assert_int_eq(st.mode, 1);
    ck_assert_int_eq(st.sizes.n, 2);
    ck_assert_int_eq(st.sizes.i[0], 224);
    ck_assert_int_eq(st.sizes.i[1], 256);
    ck_assert_int_eq(st.scales.n, 0);
    ck_assert_int_eq(st.names.n, 2);
    ck_assert_str_eq(st.names.s[0], "a b");
    ck_assert_str_eq(st.names.s[1], "c");

    dspi_param_format_value(&defs[P_GAIN], &st, &s);
    dspi_str_append(&s, "|");
    dspi_param_format_value(&defs[P_ON], &st, &s);
    dspi_str_append(&s, "|");
    dspi_param_format_value(&defs[P_MODE], &st, &s);
    dspi_str_append(&s, "|");
    dspi_param_format_value(&defs[P_SIZES], &st, &s);
    dspi_str_append(&s, "|");
    dspi_param_format_value(&defs[P_NAMES], &st, &s);
    dspi_str_append(&s, "|");
    dspi_param_format_value(&defs[P_LABEL], &st, &s);
    ck_assert_str_eq(s.s, "1.5|false|bone|[224, 256]|[a b, c]|two words");
    dspi_str_free(&s);

    st.gain = 0.1;
    dspi_param_format_value(&defs[P_GAIN], &st, &s);
    ck_assert_str_eq(s.s, "0.1");
    dspi_str_free(&s);
}
END_TEST

START_TEST(test_describe)
{
    static const char *const want[] = {
        "int in [0, 255]", "float in [-2, 4]", "bool", "string", "path",
        "enum: lung|bone|soft", "list of int in [1, 4096]", "list of float",
        "list of string", "int"
    };
    for (int k = 0; k < 10; k++) {
        dspi_str s = { 0 };
        dspi_param_describe_type(&defs[k], &s);
        ck_assert_str_eq(s.s, want[k]);
        dspi_str_free(&s);
    }
    dsp_param_def d = { "w", DSP_PARAM_PATH, 0, NULL };
    dspi_str s = { 0 };
    d.flags = DSP_PARAM_MUST_EXIST;
    dspi_param_describe_type(&d, &s);
    ck_assert_str_eq(s.s, "path (must exist)");
    dspi_str_free(&s);
}
END_TEST

/* ---- the table checker ----------------------------------------------------- */

typedef struct { int64_t a; double b; int c; char *d; dsp_list e; } tbl;

static const char *check_table(const dsp_param_def *params, size_t priv_size)
{
    static char msg[512];
    dsp_op_def o = { .struct_size = sizeof(dsp_op_def), .name = "bad.op",
                     .params = params, .priv_size = priv_size };
    char *e = NULL;
    int ret = dspi_params_check_table(&o, &e);

    if (ret == 0) {
        ck_assert_ptr_null(e);
        return NULL;
    }
    ck_assert_int_eq(ret, DSP_EABI);
    ck_assert_ptr_nonnull(e);
    snprintf(msg, sizeof(msg), "%s", e);
    free(e);
    return msg;
}

START_TEST(test_table_good)
{
    ck_assert_ptr_null(check_table(defs, sizeof(prm)));
    ck_assert_ptr_null(check_table(NULL, 0));
}
END_TEST

START_TEST(test_table_bad)
{
    static const char *const none[] = { NULL };
    const dsp_param_def dup[] = {
        { "a", DSP_PARAM_INT, offsetof(tbl, a), "1" },
        { "a", DSP_PARAM_FLOAT, offsetof(tbl, b), "1" }, { NULL } };
    const dsp_param_def badtype[] = {
        { "a", (dsp_param_type)42, offsetof(tbl, a), "1" }, { NULL } };
    const dsp_param_def baddef[] = {
        { "d", DSP_PARAM_STRING, offsetof(tbl, d), "x" },
        { "a", DSP_PARAM_INT, offsetof(tbl, a), "ten" }, { NULL } };
    const dsp_param_def range[] = {
        { "a", DSP_PARAM_INT, offsetof(tbl, a), "300", 0, 255 }, { NULL } };
    const dsp_param_def noenum[] = {
        { "c", DSP_PARAM_ENUM, offsetof(tbl, c), NULL, 0, 0, NULL }, { NULL } };
    const dsp_param_def emptyenum[] = {
        { "c", DSP_PARAM_ENUM, offsetof(tbl, c), NULL, 0, 0, none }, { NULL } };
    const dsp_param_def badenumdef[] = {
        { "c", DSP_PARAM_ENUM, offsetof(tbl, c), "fast", 0, 0, modes }, { NULL } };
    const dsp_param_def badelem[] = {
        { "e", DSP_PARAM_LIST, offsetof(tbl, e), NULL, 0, 0, NULL, DSP_PARAM_BOOL },
        { NULL } };
    const dsp_param_def noelem[] = {
        { "e", DSP_PARAM_LIST, offsetof(tbl, e), NULL }, { NULL } };
    const dsp_param_def badlistdef[] = {
        { "e", DSP_PARAM_LIST, offsetof(tbl, e), "[1, 2, 9]", 1, 4, NULL,
          DSP_PARAM_INT }, { NULL } };
    const dsp_param_def offset[] = {
        { "a", DSP_PARAM_INT, sizeof(tbl), "1" }, { NULL } };
    const dsp_param_def badname[] = {
        { "a-b", DSP_PARAM_INT, offsetof(tbl, a), "1" }, { NULL } };
    const dsp_param_def minmax[] = {
        { "a", DSP_PARAM_INT, offsetof(tbl, a), "1", 5, 1 }, { NULL } };
    const char *m;

    m = check_table(dup, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'a': declared twice "
                        "(entries 1 and 2)");
    m = check_table(badtype, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'a': unknown type 42");
    m = check_table(baddef, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'a': default 'ten' is "
                        "invalid: 'ten' is not an integer");
    m = check_table(range, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'a': default '300' is "
                        "invalid: value 300 is out of range [0, 255]");
    m = check_table(noenum, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'c': an enum without choices");
    m = check_table(emptyenum, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'c': an enum without choices");
    m = check_table(badenumdef, sizeof(tbl));
    ck_assert_ptr_nonnull(strstr(m, "parameter 'c': default 'fast' is invalid: "
                                    "'fast' is not one of: lung, bone, soft"));
    m = check_table(badelem, sizeof(tbl));
    ck_assert_ptr_nonnull(strstr(m, "parameter 'e': a list needs elem INT, FLOAT, "
                                    "STRING or PATH"));
    m = check_table(noelem, sizeof(tbl));
    ck_assert_ptr_nonnull(strstr(m, "parameter 'e': a list needs elem"));
    m = check_table(badlistdef, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'e': default '[1, 2, 9]' is "
                        "invalid: list element 3: value 9 is out of range [1, 4]");
    m = check_table(offset, sizeof(tbl));
    ck_assert_ptr_nonnull(strstr(m, "parameter 'a': offset"));
    ck_assert_ptr_nonnull(strstr(m, "outside priv_size"));
    m = check_table(badname, sizeof(tbl));
    ck_assert_ptr_nonnull(strstr(m, "parameter 'a-b': the name is not an identifier"));
    m = check_table(minmax, sizeof(tbl));
    ck_assert_str_eq(m, "operator 'bad.op': parameter 'a': min 5 is above max 1");
}
END_TEST

static Suite *params_suite(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("values");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_int_good);
    tcase_add_test(tc, test_int_bad);
    tcase_add_test(tc, test_int_range);
    tcase_add_test(tc, test_float);
    tcase_add_test(tc, test_bool);
    tcase_add_test(tc, test_string_and_path);
    tcase_add_test(tc, test_path_must_exist);
    tcase_add_test(tc, test_enum);
    tcase_add_test(tc, test_lists);
    tcase_add_test(tc, test_defaults_and_format);
    tcase_add_test(tc, test_describe);
    suite_add_tcase(s, tc);
    tc = tcase_create("table");
    tcase_add_test(tc, test_table_good);
    tcase_add_test(tc, test_table_bad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(params_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
