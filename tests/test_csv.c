/* test_csv.c - csv.write through the harness: exact bytes for quoting, numbers, JSON fields and missing keys; Python's csv module reads the rows back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "testutil.h"

static dsp_context *ctx;
static char tmpdir[256];

static void setup(void)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmpdir, sizeof tmpdir, "csv"));
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "csv.write") != NULL,
                  "csv.write not found: is plugins/builtin/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
    tu_remove_tree(tmpdir);
}

/* A packet of item `item` whose meta is the JSON object `json`. */
static dsp_packet *meta_packet(int64_t item, const char *json)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_packet_set_pos(p, item, 0, 1);
    ck_assert_int_eq(dsp_meta_set_json(dsp_packet_meta(p), "x", json), 0);
    /* the object's keys become the packet's top-level keys */
    const dsp_meta *x = dsp_meta_get_dict(dsp_packet_meta(p), "x");
    ck_assert_ptr_nonnull(x);
    dsp_meta *copy = dsp_meta_copy(x);
    ck_assert_int_eq(dsp_meta_remove(dsp_packet_meta(p), "x"), 0);
    ck_assert_int_eq(dsp_meta_update(dsp_packet_meta(p), copy), 0);
    dsp_meta_free(&copy);
    return p;
}

/* Run csv.write with params (path= is added) over n metas; return the file
 * (malloc'd, NUL-terminated). */
static char *write_csv(const char *const *params, const char *const *metas, int n)
{
    const char *path = tu_join(tmpdir, "out.csv");
    char pathp[512];
    snprintf(pathp, sizeof pathp, "path=%s", path);
    const char *all[16] = { pathp };
    int k = 1;
    for (int i = 0; params && params[i]; i++)
        all[k++] = params[i];
    all[k] = NULL;
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "csv.write", all, 1, &h) == 0, "%s",
                  dsp_context_errmsg(ctx));
    for (int i = 0; i < n; i++) {
        int err = dsp_harness_push(h, 0, meta_packet(i, metas[i]));
        ck_assert_msg(err == 0, "row %d: %s", i, dsp_harness_errmsg(h));
    }
    ck_assert_msg(access(path, F_OK) != 0, "%s exists before the end of the stream", path);
    ck_assert_int_eq(dsp_harness_flush(h), 0);
    dsp_harness_free(&h);
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    char *buf = calloc(1, 65536);
    ck_assert_ptr_nonnull(buf);
    size_t got = fread(buf, 1, 65535, fp);
    fclose(fp);
    buf[got] = '\0';
    return buf;
}

static void expect_csv(const char *const *params, const char *const *metas, int n,
                       const char *want)
{
    char *got = write_csv(params, metas, n);
    ck_assert_msg(strcmp(got, want) == 0, "got:\n%s\nwant:\n%s", got, want);
    free(got);
}

START_TEST(quoting_rfc4180)
{
    const char *params[] = { "columns=[a, b, c, d, e]", NULL };
    const char *metas[] = {
        "{\"a\":\"plain\",\"b\":\"with,comma\",\"c\":\"say \\\"hi\\\"\","
        "\"d\":\"line1\\nline2\",\"e\":\"cr\\rx\"}",
        "{\"a\":\"\\\"\",\"b\":\"\",\"c\":\" lead\",\"d\":\"x\",\"e\":\"\\r\\n\"}",
    };
    expect_csv(params, metas, 2,
               "a,b,c,d,e\r\n"
               "plain,\"with,comma\",\"say \"\"hi\"\"\",\"line1\nline2\",\"cr\rx\"\r\n"
               "\"\"\"\",, lead,x,\"\r\n\"\r\n");
}
END_TEST

START_TEST(numbers_round_trip)
{
    const char *params[] = { "columns=[i, big, f, third, tiny, whole, neg0, t, n]",
                             "newline=lf", NULL };
    const char *metas[] = {
        "{\"i\":-42,\"big\":9007199254740993,\"f\":0.1,\"third\":0.3333333333333333,"
        "\"tiny\":5e-324,\"whole\":2.0,\"neg0\":-0.0,\"t\":true,\"n\":null}",
    };
    expect_csv(params, metas, 1,
               "i,big,f,third,tiny,whole,neg0,t,n\n"
               "-42,9007199254740993,0.1,0.3333333333333333,5e-324,2.0,-0.0,true,\n");
}
END_TEST

START_TEST(json_fields_missing_and_unicode)
{
    const char *params[] = { "columns=[name, shape, info, absent]", NULL };
    const char *metas[] = {
        "{\"name\":\"n\\u00f6dule \\u65e5\\u672c\",\"shape\":[3,224,224],"
        "\"info\":{\"k\":\"v,w\"}}",
        "{\"shape\":[]}",
    };
    expect_csv(params, metas, 2,
               "name,shape,info,absent\r\n"
               "n\xc3\xb6" "dule \xe6\x97\xa5\xe6\x9c\xac,\"[3,224,224]\",\"{\"\"k\"\":\"\"v,w\"\"}\",\r\n"
               ",\"[]\",,\r\n");
}
END_TEST

START_TEST(default_columns_and_tabs)
{
    /* no columns=: the first packet's scalar keys, sorted; later keys ignored */
    /* the harness takes values as they are (no .pipe quoting): a real tab */
    const char *params[] = { "sep=\t", NULL };
    const char *metas[] = {
        "{\"zeta\":1,\"alpha\":\"a,b\",\"list\":[1],\"obj\":{}}",
        "{\"zeta\":2,\"extra\":5,\"alpha\":\"tab\\there\"}",
        "{\"alpha\":\"only\"}",
    };
    expect_csv(params, metas, 3,
               "alpha\tzeta\r\n"
               "a,b\t1\r\n"
               "\"tab\there\"\t2\r\n"
               "only\t\r\n");
}
END_TEST

START_TEST(no_header_no_rows)
{
    const char *params[] = { "columns=[a]", "header=false", NULL };
    expect_csv(params, NULL, 0, "");
    ck_assert_int_eq(unlink(tu_join(tmpdir, "out.csv")), 0);
    const char *with_header[] = { "columns=[a, \"b c\", \"d,e\"]", NULL };
    expect_csv(with_header, NULL, 0, "a,b c,\"d,e\"\r\n");
}
END_TEST

static void expect_init_fail(const char *param, const char *needle)
{
    char pathp[512];
    snprintf(pathp, sizeof pathp, "path=%s", tu_join(tmpdir, "bad.csv"));
    const char *params[] = { pathp, param, NULL };
    dsp_harness *h = NULL;
    ck_assert_int_lt(dsp_harness_new(ctx, "csv.write", params, 1, &h), 0);
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(dsp_context_errmsg(ctx), needle) != NULL, "'%s' not in: %s", needle,
                  dsp_context_errmsg(ctx));
}

START_TEST(bad_parameters_and_meta)
{
    expect_init_fail("sep=ab", "sep='ab': give one character");
    expect_init_fail("sep=\"", "other than a quote");
    expect_init_fail("sep=", "give one character");
    expect_init_fail("columns=[a, \"\"]", "columns[1] is empty");

    /* no columns= and a first packet without scalar keys: the item fails */
    char pathp[512];
    snprintf(pathp, sizeof pathp, "path=%s", tu_join(tmpdir, "none.csv"));
    const char *params[] = { pathp, NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "csv.write", params, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, meta_packet(7, "{\"a\":[1,2]}")), DSP_EINVAL);
    ck_assert_msg(strstr(dsp_harness_errmsg(h), "item 7 (the first packet) has no scalar meta keys") &&
                  strstr(dsp_harness_errmsg(h), "none.csv"), "%s", dsp_harness_errmsg(h));
    dsp_harness_free(&h);
    /* the run failed before flush: nothing is left behind */
    ck_assert_int_ne(access(tu_join(tmpdir, "none.csv"), F_OK), 0);
}
END_TEST

/* Python's csv module reads every row back equal to the packets' meta:
 * strings exactly, numbers as the same double, JSON fields as the same value. */
START_TEST(python_reads_back)
{
    if (system("python3 -c 'import csv, json' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_csv: python3 missing, python_reads_back not run\n");
        return;
    }
    const char *metas[] = {
        "{\"s\":\"a,\\\"b\\\"\\r\\nc\",\"f\":1e300,\"i\":-7,\"b\":false,\"a\":[0.1,\"x\"]}",
        "{\"s\":\"\\u00e9t\\u00e9 \\u2014 \\ud83d\\ude00\",\"f\":-2.5e-8,\"i\":0,\"b\":true,"
        "\"a\":{\"k\":[1,2]}}",
        "{\"s\":\"\",\"f\":0.30000000000000004,\"i\":123456789012345,\"b\":true}",
        "{\"f\":3.0}",
    };
    int n = 4;
    const char *params[] = { "columns=[s, f, i, b, a]", "sep=;", NULL };
    free(write_csv(params, metas, n));
    FILE *fp = fopen(tu_join(tmpdir, "meta.jsonl"), "w");
    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < n; i++)
        fprintf(fp, "%s\n", metas[i]);
    fclose(fp);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "python3 - '%s' '%s' <<'EOF'\n"
             "import csv, json, sys\n"
             "metas = [json.loads(l) for l in open(sys.argv[2], encoding='utf-8')]\n"
             "with open(sys.argv[1], newline='', encoding='utf-8') as f:\n"
             "    rows = list(csv.reader(f, delimiter=';'))\n"
             "cols = ['s', 'f', 'i', 'b', 'a']\n"
             "assert rows[0] == cols, rows[0]\n"
             "assert len(rows) == len(metas) + 1, len(rows)\n"
             "def back(v, cell):\n"
             "    if v is None: return cell == ''\n"
             "    if isinstance(v, bool): return cell == ('true' if v else 'false')\n"
             "    if isinstance(v, int): return int(cell) == v\n"
             "    if isinstance(v, float): return float(cell) == v\n"
             "    if isinstance(v, str): return cell == v\n"
             "    return json.loads(cell) == v\n"
             "for m, row in zip(metas, rows[1:]):\n"
             "    for c, cell in zip(cols, row):\n"
             "        assert back(m.get(c), cell), (c, m.get(c), cell)\n"
             "EOF", tu_join(tmpdir, "out.csv"), tu_join(tmpdir, "meta.jsonl"));
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *csv_suite(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("csv.write");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, quoting_rfc4180);
    tcase_add_test(tc, numbers_round_trip);
    tcase_add_test(tc, json_fields_missing_and_unicode);
    tcase_add_test(tc, default_columns_and_tabs);
    tcase_add_test(tc, no_header_no_rows);
    tcase_add_test(tc, bad_parameters_and_meta);
    tcase_add_test(tc, python_reads_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(csv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
