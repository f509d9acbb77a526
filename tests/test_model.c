/* test_model.c - unit tests of Hugging Face model folders: fixtures from Python, config access, every validation rule. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <dspipe/dspipe.h>
#include <dspipe/model.h>
#include <dspipe/tensorio.h>

#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];

/* Last warning logged (the tests that look at it reset it first). */
static char last_warning[2048];
static int n_warnings;

static void capture_log(void *user, dsp_log_level level, const char *ctx,
                        const char *msg)
{
    (void)user;
    if (level == DSP_LOG_WARNING) {
        snprintf(last_warning, sizeof last_warning, "[%s] %s", ctx ? ctx : "", msg);
        n_warnings++;
    }
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dsp_model_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    last_warning[0] = '\0';
    n_warnings = 0;
    dsp_log_set_callback(capture_log, NULL);
}

static void teardown(void)
{
    dsp_log_set_callback(NULL, NULL);
    tu_remove_tree(tmpdir);
}

/* tmpdir/rel, in one of a few rotating buffers */
static char *tp(const char *rel)
{
    static char buf[8][640];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 640, "%s/%s", tmpdir, rel);
    return p;
}

static const char *models_dir(void)
{
    static char dir[512];
    const char *src = getenv("TESTS_SRCDIR");
    snprintf(dir, sizeof dir, "%s/data/models", src && *src ? src : ".");
    return dir;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static void make_dir(const char *path)
{
    ck_assert_msg(mkdir(path, 0755) == 0, "%s: %s", path, strerror(errno));
}

/* A shard holding the named f32 [2] tensors; tensor i is {base+i, -(base+i)}. */
static void write_shard(const char *path, const char *const *names, int n, float base)
{
    dsp_tensor *t[16];
    int64_t shape[1] = { 2 };
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &t[i]), 0);
        float *v = dsp_tensor_data(t[i]);
        v[0] = base + (float)i;
        v[1] = -(base + (float)i);
    }
    char *why = NULL;
    int err = dsp_safetensors_write(path, names, t, n, NULL, &why);
    ck_assert_msg(err == 0, "%s", why ? why : "?");
    for (int i = 0; i < n; i++)
        dsp_tensor_unref(&t[i]);
}

static const char CONFIG[] = "{\"model_type\": \"bert\", \"hidden_size\": 4}\n";

/* tmpdir/name: config.json, shards a.safetensors {x, y} and
 * b.safetensors {z}, and the given index text (NULL: none). */
static const char *sharded_folder(const char *name, const char *index)
{
    static const char *const a[] = { "x", "y" }, *const b[] = { "z" };
    const char *dir = tp(name);
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, CONFIG);
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_shard(p, a, 2, 1.0f);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    write_shard(p, b, 1, 10.0f);
    if (index) {
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        write_text(p, index);
    }
    return dir;
}

static const char GOOD_INDEX[] =
    "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {"
    "\"x\": \"a.safetensors\", \"y\": \"a.safetensors\", \"z\": \"b.safetensors\"}}";

/* Open must fail with code, and the message must contain every needle. */
#define expect_fail(path, code, ...) expect_fail_(path, code, (const char *[]){ __VA_ARGS__, NULL })
static void expect_fail_(const char *path, int code, const char **needles)
{
    dsp_model *m = (dsp_model *)&m;     /* must be reset to NULL */
    char *why = NULL;
    int err = dsp_model_open(path, &m, &why);
    ck_assert_msg(err == code, "%s: got %d (%s), want %d", path, err,
                  why ? why : "no message", code);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(why);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(why, needles[i]) != NULL, "message lacks \"%s\": %s",
                      needles[i], why);
    free(why);
    /* without a message wanted, the same code and no leak */
    ck_assert_int_eq(dsp_model_open(path, &m, NULL), code);
}

static dsp_model *open_ok(const char *path)
{
    dsp_model *m = NULL;
    char *why = NULL;
    int err = dsp_model_open(path, &m, &why);
    ck_assert_msg(err == 0, "%s: %s", path, why ? why : "?");
    ck_assert_ptr_nonnull(m);
    return m;
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = e == 0 ? ldexp(mant, -24) : e == 31 ? (mant ? NAN : INFINITY)
                                                    : ldexp(mant | 0x400, e - 25);
    return h & 0x8000 ? -v : v;
}

static double element(const dsp_tensor *t, int64_t k)
{
    const unsigned char *p = (const unsigned char *)dsp_tensor_data(t) +
                             k * (int64_t)dsp_dtype_size(t->dtype);
    switch (t->dtype) {
    case DSP_DTYPE_F32: { float v; memcpy(&v, p, 4); return v; }
    case DSP_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_double(v); }
    case DSP_DTYPE_BF16: {
        uint16_t v; uint32_t u; float f;
        memcpy(&v, p, 2); u = (uint32_t)v << 16; memcpy(&f, &u, 4); return f;
    }
    default:
        ck_abort_msg("unexpected dtype %s", dsp_dtype_name(t->dtype));
        return 0;
    }
}

static json_t *load_expected(const char *folder)
{
    char path[600];
    snprintf(path, sizeof path, "%s/expected.json", models_dir());
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    ck_assert_msg(all != NULL, "%s: %s", path, jerr.text);
    json_t *exp = json_incref(json_object_get(all, folder));
    json_decref(all);
    return exp;
}

/* Every tensor the fixture script wrote is there, with its values, and
 * nothing else; names come back sorted. */
static void check_against_expected(const dsp_model *m, json_t *exp)
{
    ck_assert_int_eq(dsp_model_tensor_count(m), (int)json_object_size(exp));
    for (int i = 0; i < dsp_model_tensor_count(m); i++) {
        const char *name = dsp_model_tensor_name(m, i);
        ck_assert_ptr_nonnull(name);
        if (i > 0)
            ck_assert_int_lt(strcmp(dsp_model_tensor_name(m, i - 1), name), 0);
        ck_assert_msg(json_object_get(exp, name) != NULL, "unexpected tensor %s", name);
    }
    ck_assert_ptr_null(dsp_model_tensor_name(m, dsp_model_tensor_count(m)));
    ck_assert_ptr_null(dsp_model_tensor_name(m, -1));

    const char *name;
    json_t *e;
    json_object_foreach(exp, name, e) {
        dsp_tensor *t = NULL;
        ck_assert_msg(dsp_model_tensor(m, name, &t) == 0, "%s does not load", name);
        ck_assert_str_eq(dsp_dtype_name(t->dtype),
                         json_string_value(json_object_get(e, "dtype")));
        json_t *shape = json_object_get(e, "shape");
        ck_assert_int_eq(t->ndim, (int)json_array_size(shape));
        for (int d = 0; d < t->ndim; d++)
            ck_assert_int_eq(t->shape[d], json_integer_value(json_array_get(shape, d)));
        ck_assert(dsp_tensor_is_contiguous(t));
        json_t *vals = json_object_get(e, "values");
        if (vals) {
            ck_assert_int_eq(dsp_tensor_numel(t), (int64_t)json_array_size(vals));
            for (size_t k = 0; k < json_array_size(vals); k++)
                ck_assert_msg(element(t, (int64_t)k) ==
                              json_number_value(json_array_get(vals, k)),
                              "%s[%zu]: %.17g != %.17g", name, k,
                              element(t, (int64_t)k),
                              json_number_value(json_array_get(vals, k)));
        } else {
            json_t *first = json_object_get(e, "first");
            double sum = 0;
            for (int64_t k = 0; k < dsp_tensor_numel(t); k++)
                sum += element(t, k);
            for (size_t k = 0; k < json_array_size(first); k++)
                ck_assert(element(t, (int64_t)k) ==
                          json_number_value(json_array_get(first, k)));
            double want = json_number_value(json_object_get(e, "sum"));
            ck_assert_msg(fabs(sum - want) <= 1e-9 * (1 + fabs(want)),
                          "%s: sum %.17g != %.17g", name, sum, want);
        }
        /* a view of the mapping, not a copy */
        ck_assert_int_eq(dsp_buffer_get_kind(t->buf), DSP_BUFFER_MAPPED);
        dsp_tensor_unref(&t);
    }
}

/* ---- fixtures written by Python ----------------------------------------- */

START_TEST(test_tiny_single)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tiny_single", models_dir());
    json_t *exp = load_expected("tiny_single");
    ck_assert_ptr_nonnull(exp);
    dsp_model *m = open_ok(path);
    check_against_expected(m, exp);
    ck_assert_ptr_nonnull(dsp_model_config_json(m));
    dsp_model_close(&m);
    ck_assert_ptr_null(m);
    json_decref(exp);
}
END_TEST

START_TEST(test_tiny_sharded)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tiny_sharded/", models_dir());  /* trailing slash */
    json_t *exp = load_expected("tiny_sharded");
    ck_assert_ptr_nonnull(exp);
    dsp_model *m = open_ok(path);
    check_against_expected(m, exp);
    const char *dt;
    ck_assert_int_eq(dsp_model_config_str(m, "torch_dtype", &dt), 0);
    ck_assert_str_eq(dt, "bfloat16");
    ck_assert_int_eq(n_warnings, 0);
    dsp_model_close(&m);
    json_decref(exp);
}
END_TEST

/* A folder saved by transformers itself (save_pretrained, 20 KB shards). */
START_TEST(test_hf_bert)
{
    char path[600];
    snprintf(path, sizeof path, "%s/hf_bert", models_dir());
    json_t *exp = load_expected("hf_bert");
    struct stat st;
    if (!exp || stat(path, &st) != 0) {
        fprintf(stderr, "test_hf_bert: %s absent (transformers was not installed "
                "when the fixtures were made): skipped\n", path);
        json_decref(exp);
        return;
    }
    dsp_model *m = open_ok(path);
    check_against_expected(m, exp);

    /* every name the genuine index lists loads */
    char ipath[700];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", path);
    json_t *index = json_load_file(ipath, 0, NULL);
    ck_assert_ptr_nonnull(index);
    json_t *wm = json_object_get(index, "weight_map");
    ck_assert_int_gt((int)json_object_size(wm), 10);
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        dsp_tensor *t = NULL;
        ck_assert_msg(dsp_model_tensor(m, name, &t) == 0, "%s", name);
        dsp_tensor_unref(&t);
    }
    json_decref(index);

    int64_t h, layers;
    ck_assert_int_eq(dsp_model_config_int(m, "hidden_size", &h), 0);
    ck_assert_int_eq(h, 32);
    ck_assert_int_eq(dsp_model_config_int(m, "num_hidden_layers", &layers), 0);
    ck_assert_int_eq(layers, 2);
    dsp_tensor *w = NULL;
    ck_assert_int_eq(dsp_model_tensor(m, "embeddings.word_embeddings.weight", &w), 0);
    ck_assert_int_eq(w->shape[0], 99);
    ck_assert_int_eq(w->shape[1], 32);
    dsp_tensor_unref(&w);
    ck_assert_int_eq(n_warnings, 0);
    dsp_model_close(&m);
    json_decref(exp);
}
END_TEST

START_TEST(test_single_file_path)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tiny_single/model.safetensors", models_dir());
    json_t *exp = load_expected("tiny_single");
    dsp_model *m = open_ok(path);
    check_against_expected(m, exp);
    ck_assert_ptr_null(dsp_model_config_json(m));
    int64_t i = 7;
    const char *s = NULL;
    ck_assert_int_eq(dsp_model_config_int(m, "hidden_size", &i), DSP_ENOENT);
    ck_assert_int_eq(i, 7);
    ck_assert_int_eq(dsp_model_config_str(m, "model_type", &s), DSP_ENOENT);
    dsp_model_close(&m);
    json_decref(exp);
}
END_TEST

/* ---- config access ------------------------------------------------------ */

START_TEST(test_config_access)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tiny_single", models_dir());
    dsp_model *m = open_ok(path);
    int64_t i = -1;
    double f = -1;
    const char *s = NULL;

    ck_assert_int_eq(dsp_model_config_int(m, "hidden_size", &i), 0);
    ck_assert_int_eq(i, 4);
    ck_assert_int_eq(dsp_model_config_int(m, "text_config.hidden_size", &i), 0);
    ck_assert_int_eq(i, 8);
    ck_assert_int_eq(dsp_model_config_float(m, "layer_norm_eps", &f), 0);
    ck_assert(f == 1e-12);
    ck_assert_int_eq(dsp_model_config_float(m, "hidden_size", &f), 0);   /* int as float */
    ck_assert(f == 4.0);
    ck_assert_int_eq(dsp_model_config_float(m, "text_config.rope_scaling.factor", &f), 0);
    ck_assert(f == 2.0);
    ck_assert_int_eq(dsp_model_config_int(m, "text_config.rope_scaling.factor", &i), 0);
    ck_assert_int_eq(i, 2);                                  /* integral real */
    ck_assert_int_eq(dsp_model_config_str(m, "model_type", &s), 0);
    ck_assert_str_eq(s, "bert");
    ck_assert_int_eq(dsp_model_config_str(m, "text_config.rope_scaling.type", &s), 0);
    ck_assert_str_eq(s, "linear");
    ck_assert_int_eq(dsp_model_config_str(m, "architectures.0", &s), 0);
    ck_assert_str_eq(s, "BertModel");

    /* wrong type: EINVAL, out untouched */
    i = 123; f = 1.5; s = "untouched";
    ck_assert_int_eq(dsp_model_config_int(m, "layer_norm_eps", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "model_type", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "tie_word_embeddings", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "text_config", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "architectures", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_float(m, "model_type", &f), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_float(m, "tie_word_embeddings", &f), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_str(m, "hidden_size", &s), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_str(m, "text_config", &s), DSP_EINVAL);
    ck_assert_int_eq(i, 123);
    ck_assert(f == 1.5);
    ck_assert_str_eq(s, "untouched");

    /* absent: ENOENT (null counts as absent) */
    ck_assert_int_eq(dsp_model_config_int(m, "no_such_key", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "pad_token_id", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "text_config.no_such", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "hidden_size.x", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "text_config.", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, ".hidden_size", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_str(m, "architectures.1", &s), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_str(m, "architectures.x", &s), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_str(m, "architectures.-1", &s), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_str(m, "architectures.99999999999999999999999", &s),
                     DSP_ENOENT);
    char longkey[600];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ck_assert_int_eq(dsp_model_config_int(m, longkey, &i), DSP_ENOENT);
    ck_assert_int_eq(i, 123);

    /* NULL arguments */
    ck_assert_int_eq(dsp_model_config_int(NULL, "hidden_size", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, NULL, &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "hidden_size", NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_float(m, "hidden_size", NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_str(m, "model_type", NULL), DSP_EINVAL);
    ck_assert_ptr_null(dsp_model_config_json(NULL));

    /* the compact JSON is the whole config */
    const char *text = dsp_model_config_json(m);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_null(strchr(text, '\n'));
    json_t *got = json_loads(text, 0, NULL);
    char cpath[700];
    snprintf(cpath, sizeof cpath, "%s/config.json", path);
    json_t *want = json_load_file(cpath, 0, NULL);
    ck_assert(got && want && json_equal(got, want));
    json_decref(got);
    json_decref(want);
    dsp_model_close(&m);
}
END_TEST

START_TEST(test_config_values)
{
    const char *dir = tp("cfg");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"big\": 9007199254740993, \"neg\": -5, \"e\": 1e5, \"huge\": 1e300,"
                  " \"half\": 2.5, \"dup\": 1, \"dup\": 2, \"a.b\": 1,"
                  " \"list\": [[1, 2], {\"k\": \"v\"}]}");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_shard(p, (const char *[]){ "w" }, 1, 0);
    dsp_model *m = open_ok(dir);
    int64_t i;
    const char *s;
    ck_assert_int_eq(dsp_model_config_int(m, "big", &i), 0);
    ck_assert_int_eq(i, 9007199254740993LL);            /* no double round trip */
    ck_assert_int_eq(dsp_model_config_int(m, "neg", &i), 0);
    ck_assert_int_eq(i, -5);
    ck_assert_int_eq(dsp_model_config_int(m, "e", &i), 0);
    ck_assert_int_eq(i, 100000);
    ck_assert_int_eq(dsp_model_config_int(m, "huge", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "half", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_config_int(m, "dup", &i), 0);
    ck_assert_int_eq(i, 2);                              /* the last wins, as in Python */
    ck_assert_int_eq(dsp_model_config_int(m, "a.b", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_config_int(m, "list.0.1", &i), 0);
    ck_assert_int_eq(i, 2);
    ck_assert_int_eq(dsp_model_config_str(m, "list.1.k", &s), 0);
    ck_assert_str_eq(s, "v");
    dsp_model_close(&m);
}
END_TEST

/* ---- tensors ------------------------------------------------------------ */

START_TEST(test_tensor_lookup)
{
    const char *dir = sharded_folder("m", GOOD_INDEX);
    dsp_model *m = open_ok(dir);
    ck_assert_int_eq(dsp_model_tensor_count(m), 3);
    ck_assert_str_eq(dsp_model_tensor_name(m, 0), "x");
    ck_assert_str_eq(dsp_model_tensor_name(m, 1), "y");
    ck_assert_str_eq(dsp_model_tensor_name(m, 2), "z");

    dsp_tensor *t = (dsp_tensor *)&t;
    ck_assert_int_eq(dsp_model_tensor(m, "nope", &t), DSP_ENOENT);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(dsp_model_tensor(m, "", &t), DSP_ENOENT);
    ck_assert_int_eq(dsp_model_tensor(NULL, "x", &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_tensor(m, NULL, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_tensor(m, "x", NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_tensor_count(NULL), 0);
    ck_assert_ptr_null(dsp_model_tensor_name(NULL, 0));

    ck_assert_int_eq(dsp_model_tensor(m, "z", &t), 0);
    ck_assert(((float *)dsp_tensor_data(t))[0] == 10.0f);
    dsp_tensor *y = NULL;
    ck_assert_int_eq(dsp_model_tensor(m, "y", &y), 0);
    ck_assert(((float *)dsp_tensor_data(y))[1] == -2.0f);
    dsp_model_close(&m);
    dsp_model_close(&m);        /* NULL: no-op */
    dsp_model_close(NULL);
    /* tensors outlive the model */
    ck_assert(((float *)dsp_tensor_data(t))[1] == -10.0f);
    ck_assert(((float *)dsp_tensor_data(y))[0] == 2.0f);
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&y);
}
END_TEST

struct reader_arg {
    const dsp_model *m;
    int failures;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < dsp_model_tensor_count(a->m); i++) {
            dsp_tensor *t = NULL;
            if (dsp_model_tensor(a->m, dsp_model_tensor_name(a->m, i), &t) != 0 || !t)
                a->failures++;
            dsp_tensor_unref(&t);
        }
        int64_t h;
        if (dsp_model_config_int(a->m, "num_hidden_layers", &h) != 0 || h != 2)
            a->failures++;
    }
    return NULL;
}

START_TEST(test_concurrent_reads)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tiny_sharded", models_dir());
    dsp_model *m = open_ok(path);
    pthread_t th[4];
    struct reader_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct reader_arg){ m, 0 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].failures, 0);
    }
    dsp_model_close(&m);
}
END_TEST

/* ---- validation: the folder and config.json ----------------------------- */

START_TEST(test_missing_folder)
{
    expect_fail(tp("does/not/exist"), DSP_ENOENT, "does/not/exist",
                "no such file or folder", "config.json + model.safetensors");
    char *why = NULL;
    dsp_model *m;
    ck_assert_int_eq(dsp_model_open(NULL, &m, &why), DSP_EINVAL);
    ck_assert_ptr_null(m);
    free(why);
    ck_assert_int_eq(dsp_model_open("", &m, NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_model_open("x", NULL, NULL), DSP_EINVAL);
}
END_TEST

START_TEST(test_no_config)
{
    const char *dir = tp("noconf");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_shard(p, (const char *[]){ "w" }, 1, 0);
    expect_fail(dir, DSP_ENOENT, dir, "no config.json",
                "pass the .safetensors file itself");
    /* which the message suggests, and which works */
    dsp_model *m = open_ok(p);
    ck_assert_int_eq(dsp_model_tensor_count(m), 1);
    dsp_model_close(&m);
}
END_TEST

START_TEST(test_config_not_json)
{
    const char *dir = tp("badconf");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_shard(p, (const char *[]){ "w" }, 1, 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\n  \"hidden_size\": 4,\n  \"oops\" 5\n}\n");
    expect_fail(dir, DSP_EFORMAT, "config.json:3:", "not valid JSON");
    write_text(p, "{\"eps\": NaN}");
    expect_fail(dir, DSP_EFORMAT, "config.json:1:", "not valid JSON");
    write_text(p, "");
    expect_fail(dir, DSP_EFORMAT, "config.json", "not valid JSON");
    write_text(p, "[1, 2]");
    expect_fail(dir, DSP_EFORMAT, "config.json: not a JSON object");
    write_text(p, "\"bert\"");
    ck_assert_int_eq(dsp_model_open(dir, &(dsp_model *){ NULL }, NULL), DSP_EFORMAT);
    /* a folder named config.json is not a file to read */
    unlink(p);
    make_dir(p);
    dsp_model *m = NULL;
    char *why = NULL;
    ck_assert_int_lt(dsp_model_open(dir, &m, &why), 0);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(why, "config.json"));
    free(why);
}
END_TEST

START_TEST(test_no_weights)
{
    const char *dir = tp("empty");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, CONFIG);
    expect_fail(dir, DSP_ENOENT, "no model.safetensors or model.safetensors.index.json");
    /* another safetensors file is pointed at */
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    write_shard(p, (const char *[]){ "lora" }, 1, 0);
    expect_fail(dir, DSP_ENOENT, "adapter_model.safetensors", "to load that file alone");
}
END_TEST

START_TEST(test_pytorch_bin_refused)
{
    const char *dir = tp("pt");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, CONFIG);
    snprintf(p, sizeof p, "%s/pytorch_model.bin", dir);
    write_text(p, "PK\003\004 not really a zip");
    expect_fail(dir, DSP_EUNSUPPORTED, "pytorch_model.bin", "only safetensors",
                "AutoModel.from_pretrained(d).save_pretrained(d, safe_serialization=True)",
                dir);
    /* the file itself */
    expect_fail(p, DSP_EUNSUPPORTED, "only safetensors", "safe_serialization=True", dir);
    /* a sharded pickle */
    unlink(p);
    snprintf(p, sizeof p, "%s/pytorch_model.bin.index.json", dir);
    write_text(p, "{}");
    expect_fail(dir, DSP_EUNSUPPORTED, "pytorch_model.bin.index.json", "safe_serialization");
    unlink(p);
    snprintf(p, sizeof p, "%s/tf_model.h5", dir);
    write_text(p, "HDF");
    expect_fail(dir, DSP_EUNSUPPORTED, "tf_model.h5", "only safetensors");
    snprintf(p, sizeof p, "%s/weights.pt", dir);
    write_text(p, "x");
    expect_fail(p, DSP_EUNSUPPORTED, "weights.pt", "safe_serialization=True");
}
END_TEST

START_TEST(test_json_file_given)
{
    const char *dir = sharded_folder("m", GOOD_INDEX);
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    expect_fail(p, DSP_EINVAL, "pass the model folder", dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    expect_fail(p, DSP_EINVAL, "pass the model folder");
    expect_fail("/dev/null", DSP_EINVAL, "neither a model folder nor");
}
END_TEST

/* ---- validation: the index and its shards ------------------------------- */

START_TEST(test_index_not_json)
{
    const char *dir = sharded_folder("m", "{\"weight_map\": {\n\"x\": \"a.safetensors\",,\n}}");
    expect_fail(dir, DSP_EFORMAT, "model.safetensors.index.json:2:", "not valid JSON");
    /* the same tensor twice in the map is ambiguous: refused */
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\", \"x\": \"b.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "model.safetensors.index.json:1:", "duplicate");
}
END_TEST

START_TEST(test_index_shape)
{
    static const struct { const char *text, *needle; } cases[] = {
        { "[]", "not a JSON object" },
        { "null", "not valid JSON" },            /* jansson: not an array or object */
        { "\"weights\"", "not valid JSON" },
        { "{}", "no \"weight_map\"" },
        { "{\"metadata\": {}}", "no \"weight_map\"" },
        { "{\"weight_map\": []}", "\"weight_map\" is not an object" },
        { "{\"weight_map\": \"a.safetensors\"}", "\"weight_map\" is not an object" },
        { "{\"weight_map\": null}", "\"weight_map\" is not an object" },
        { "{\"weight_map\": {}}", "\"weight_map\" is empty" },
        { "{\"weight_map\": {\"x\": 1}}", "weight_map entry 'x' is not a string" },
        { "{\"weight_map\": {\"x\": null}}", "weight_map entry 'x' is not a string" },
        { "{\"weight_map\": {\"x\": [\"a.safetensors\"]}}", "entry 'x' is not a string" },
        { "{\"weight_map\": {\"x\": {\"file\": \"a\"}}}", "entry 'x' is not a string" },
        { "{\"weight_map\": {\"x\": \"\"}}", "is empty" },
    };
    const char *dir = sharded_folder("m", NULL);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(p, cases[i].text);
        expect_fail(dir, DSP_EFORMAT, cases[i].needle, "model.safetensors.index.json");
    }
    /* metadata of any shape is not looked at */
    write_text(p, "{\"metadata\": [1e300, \"x\"], \"weight_map\": {\"x\": \"a.safetensors\","
                  " \"y\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
    dsp_model *m = open_ok(dir);
    dsp_model_close(&m);
}
END_TEST

START_TEST(test_shard_missing)
{
    const char *dir = sharded_folder("m",
        "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\","
        " \"z\": \"b.safetensors\", \"w\": \"model-00009-of-00009.safetensors\"}}");
    expect_fail(dir, DSP_ENOENT, "model-00009-of-00009.safetensors", "'w'",
                "does not exist", "download is incomplete");
    /* a dangling link, as a partial Hub cache download leaves */
    char p[700];
    snprintf(p, sizeof p, "%s/model-00009-of-00009.safetensors", dir);
    ck_assert_int_eq(symlink("../blobs/0123abcd", p), 0);
    expect_fail(dir, DSP_ENOENT, "model-00009-of-00009.safetensors",
                "broken symbolic link");
}
END_TEST

START_TEST(test_shard_outside_folder)
{
    /* the files exist, so only the name rule can refuse them */
    write_shard(tp("outside.safetensors"), (const char *[]){ "x" }, 1, 0);
    make_dir(tp("sub"));
    const char *dir = sharded_folder("m", NULL);
    char p[700], text[1400];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);

    write_text(p, "{\"weight_map\": {\"x\": \"../outside.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "'x'", "../outside.safetensors", "leaves the model folder");
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"./../outside.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "leaves the model folder");
    write_text(p, "{\"weight_map\": {\"x\": \"sub/../../outside.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "leaves the model folder");
    write_text(p, "{\"weight_map\": {\"x\": \"..\"}}");
    expect_fail(dir, DSP_EFORMAT, "leaves the model folder");
    snprintf(text, sizeof text, "{\"weight_map\": {\"x\": \"%s\"}}", tp("outside.safetensors"));
    write_text(p, text);
    expect_fail(dir, DSP_EFORMAT, "is an absolute path", "shards must be files inside");
    /* a file name that merely contains two dots is fine */
    ck_assert_int_eq(rename(tp("m/b.safetensors"), tp("m/b..safetensors")), 0);
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\","
                  " \"z\": \"b..safetensors\"}}");
    dsp_model *m = open_ok(dir);
    dsp_model_close(&m);
}
END_TEST

START_TEST(test_listed_tensor_absent)
{
    const char *dir = sharded_folder("m",
        "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\","
        " \"z\": \"b.safetensors\", \"ghost\": \"b.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "'ghost'", "b.safetensors", "has no such tensor");
    /* listed in the wrong shard */
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"b.safetensors\","
                  " \"z\": \"b.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "'y'", "(it is in a.safetensors)");
}
END_TEST

START_TEST(test_unlisted_tensor_warns)
{
    const char *dir = sharded_folder("m",
        "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
    dsp_model *m = open_ok(dir);
    ck_assert_int_eq(n_warnings, 1);
    ck_assert_msg(strstr(last_warning, "[model]") && strstr(last_warning, "'y'") &&
                  strstr(last_warning, "1 tensor in the shards is not listed") &&
                  strstr(last_warning, "a.safetensors"), "%s", last_warning);
    ck_assert_int_eq(dsp_model_tensor_count(m), 3);
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_model_tensor(m, "y", &t), 0);
    ck_assert(((float *)dsp_tensor_data(t))[0] == 2.0f);
    dsp_tensor_unref(&t);
    dsp_model_close(&m);
}
END_TEST

START_TEST(test_tensor_in_two_shards)
{
    const char *dir = sharded_folder("m", NULL);
    char p[700];
    snprintf(p, sizeof p, "%s/c.safetensors", dir);
    write_shard(p, (const char *[]){ "y" }, 1, 5);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"c.safetensors\","
                  " \"z\": \"b.safetensors\"}}");
    expect_fail(dir, DSP_EFORMAT, "'y' is in two shards", "a.safetensors", "c.safetensors");
}
END_TEST

START_TEST(test_shard_errors_pass_through)
{
    const char *dir = sharded_folder("m", GOOD_INDEX);
    char p[700];
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    /* a header length running past the end */
    write_bytes(p, "\xff\xff\x00\x00\x00\x00\x00\x00{}", 10);
    expect_fail(dir, DSP_EFORMAT, p, "runs past the end of the file");
    /* valid JSON, bad entry */
    static const char bad[] = "{\"z\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    unsigned char buf[256] = { (unsigned char)(sizeof bad - 1) };
    memcpy(buf + 8, bad, sizeof bad - 1);
    write_bytes(p, buf, 8 + sizeof bad - 1 + 1);
    expect_fail(dir, DSP_EUNSUPPORTED, p, "F8_E4M3");
    /* a shard that is a directory */
    unlink(p);
    make_dir(p);
    dsp_model *m = NULL;
    ck_assert_int_lt(dsp_model_open(dir, &m, NULL), 0);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_single_and_index)
{
    const char *dir = sharded_folder("m", GOOD_INDEX);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_shard(p, (const char *[]){ "only" }, 1, 0);
    dsp_model *m = open_ok(dir);
    ck_assert_int_eq(n_warnings, 1);
    ck_assert_ptr_nonnull(strstr(last_warning, "both model.safetensors and"));
    ck_assert_int_eq(dsp_model_tensor_count(m), 1);
    ck_assert_str_eq(dsp_model_tensor_name(m, 0), "only");
    dsp_model_close(&m);
}
END_TEST

/* The Hub cache: snapshots/<rev>/ holds links into ../../blobs/. */
START_TEST(test_hub_cache_symlinks)
{
    make_dir(tp("blobs"));
    make_dir(tp("snapshots"));
    make_dir(tp("snapshots/rev"));
    write_text(tp("blobs/cfg"), CONFIG);
    write_shard(tp("blobs/s1"), (const char *[]){ "x", "y" }, 2, 1);
    write_shard(tp("blobs/s2"), (const char *[]){ "z" }, 1, 10);
    write_text(tp("blobs/idx"), GOOD_INDEX);
    ck_assert_int_eq(symlink("../../blobs/cfg", tp("snapshots/rev/config.json")), 0);
    ck_assert_int_eq(symlink("../../blobs/s1", tp("snapshots/rev/a.safetensors")), 0);
    ck_assert_int_eq(symlink("../../blobs/s2", tp("snapshots/rev/b.safetensors")), 0);
    ck_assert_int_eq(symlink("../../blobs/idx",
                             tp("snapshots/rev/model.safetensors.index.json")), 0);
    dsp_model *m = open_ok(tp("snapshots/rev"));
    ck_assert_int_eq(dsp_model_tensor_count(m), 3);
    dsp_model_close(&m);
    /* a blob opened directly, whatever its name */
    m = open_ok(tp("blobs/s1"));
    ck_assert_int_eq(dsp_model_tensor_count(m), 2);
    dsp_model_close(&m);
}
END_TEST

/* Hostile indexes: large, deep or odd; refused cleanly, never a crash. */
START_TEST(test_hostile_index)
{
    const char *dir = sharded_folder("m", NULL);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);

    /* 100000 tensors the shard does not have */
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("{\"weight_map\": {\"x\": \"a.safetensors\"", fp);
    for (int i = 0; i < 100000; i++)
        fprintf(fp, ", \"t%d\": \"a.safetensors\"", i);
    fputs("}}", fp);
    fclose(fp);
    expect_fail(dir, DSP_EFORMAT, "has no such tensor");

    /* 5000 distinct shards, none there */
    fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("{\"weight_map\": {\"x\": \"a.safetensors\"", fp);
    for (int i = 0; i < 5000; i++)
        fprintf(fp, ", \"t%d\": \"s%d.safetensors\"", i, i);
    fputs("}}", fp);
    fclose(fp);
    expect_fail(dir, DSP_ENOENT, "does not exist");

    /* a 100 KB shard name */
    size_t n = 100000;
    char *name = malloc(n + 64);
    ck_assert_ptr_nonnull(name);
    strcpy(name, "{\"weight_map\": {\"x\": \"");
    size_t len = strlen(name);
    memset(name + len, 'a', n);
    strcpy(name + len + n, "\"}}");
    write_text(p, name);
    free(name);
    dsp_model *m = NULL;
    ck_assert_int_lt(dsp_model_open(dir, &m, NULL), 0);
    ck_assert_ptr_null(m);

    /* nesting deeper than any parser should follow */
    char *deep = malloc(200010);
    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = '\0';
    write_text(p, deep);
    free(deep);
    expect_fail(dir, DSP_EFORMAT, "not valid JSON");

    /* the shard is the index itself, the config, or the folder */
    write_text(p, "{\"weight_map\": {\"x\": \"model.safetensors.index.json\"}}");
    ck_assert_int_eq(dsp_model_open(dir, &m, NULL), DSP_EFORMAT);
    write_text(p, "{\"weight_map\": {\"x\": \"config.json\"}}");
    ck_assert_int_eq(dsp_model_open(dir, &m, NULL), DSP_EFORMAT);
    write_text(p, "{\"weight_map\": {\"x\": \".\"}}");
    ck_assert_int_lt(dsp_model_open(dir, &m, NULL), 0);
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors/x\"}}");
    ck_assert_int_lt(dsp_model_open(dir, &m, NULL), 0);
    ck_assert_ptr_null(m);
    /* a NUL inside a shard name is not valid JSON for jansson */
    write_text(p, "{\"weight_map\": {\"x\": \"a.safetensors\\u0000../x\"}}");
    expect_fail(dir, DSP_EFORMAT, "not valid JSON");
}
END_TEST

/* ---- quantization at load ---------------------------------------------- */

static dsp_model *open_quant(const char *path, dsp_quant_kind kind, int group,
                             const char *const *skip)
{
    dsp_model *m = NULL;
    char *why = NULL;
    dsp_model_opts o = { .quant = kind, .group_size = group, .skip = skip };
    int err = dsp_model_open_opts(path, &o, &m, &why);
    ck_assert_msg(err == 0, "%s: %s", path, why ? why : "?");
    ck_assert_ptr_nonnull(m);
    return m;
}

/* q holds exactly what dsp_quantize makes of the stored tensor. */
static void check_same_quant(const dsp_model *m, const char *name, const dsp_qweight *q,
                             dsp_quant_kind kind, int group)
{
    dsp_tensor *w = NULL, *a = NULL, *b = NULL;
    dsp_qweight *ref = NULL;
    ck_assert_int_eq(dsp_model_tensor(m, name, &w), 0);
    ck_assert_int_eq(dsp_quantize(w, kind, group, &ref), 0);
    ck_assert_int_eq(dsp_dequantize(q, &a), 0);
    ck_assert_int_eq(dsp_dequantize(ref, &b), 0);
    ck_assert_uint_eq(dsp_tensor_nbytes(a), dsp_tensor_nbytes(b));
    ck_assert_msg(memcmp(dsp_tensor_data(a), dsp_tensor_data(b), dsp_tensor_nbytes(a)) == 0,
                  "%s: quantized at load differs from dsp_quantize", name);
    ck_assert_uint_eq(dsp_qweight_bytes(q), dsp_qweight_bytes(ref));
    dsp_qweight_free(&ref);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&b);
}

static const char *bert_path(void)
{
    static char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/hf_bert", models_dir());
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s absent (transformers was not installed when the fixtures were "
                "made): skipped\n", path);
        return NULL;
    }
    return path;
}

START_TEST(test_quant_load)
{
    const char *path = bert_path();
    if (!path)
        return;
    dsp_quant_kind kinds[] = { DSP_QUANT_INT8, DSP_QUANT_INT4 };
    for (int k = 0; k < 2; k++) {
        dsp_model *m = open_quant(path, kinds[k], 32, NULL);
        dsp_model_memory mem;
        ck_assert_int_eq(dsp_model_memory_info(m, &mem), 0);
        size_t qbytes = 0, qfrom = 0, all = 0;
        int nq = 0;
        for (int i = 0; i < dsp_model_tensor_count(m); i++) {
            const char *name = dsp_model_tensor_name(m, i);
            const dsp_qweight *q = (const dsp_qweight *)&q;
            dsp_tensor *w = NULL;
            ck_assert_int_eq(dsp_model_qweight(m, name, &q), 0);
            ck_assert_int_eq(dsp_model_tensor(m, name, &w), 0);
            all += dsp_tensor_nbytes(w);
            /* hidden 32, intermediate 37: every [*, 32] linear weight is
             * quantized; output.dense [32, 37] is kept; embeddings, norms
             * and biases never are */
            int want = strstr(name, ".weight") && !strstr(name, "embeddings") &&
                       !strstr(name, "LayerNorm") && w->ndim == 2 && w->shape[1] == 32;
            ck_assert_msg((q != NULL) == want, "%s: quantized %d, expected %d", name,
                          q != NULL, want);
            if (q) {
                int64_t o, in;
                ck_assert_int_eq(dsp_qweight_shape(q, &o, &in), 0);
                ck_assert_int_eq(o, w->shape[0]);
                ck_assert_int_eq(in, w->shape[1]);
                check_same_quant(m, name, q, kinds[k], 32);
                qbytes += dsp_qweight_bytes(q);
                qfrom += dsp_tensor_nbytes(w);
                nq++;
            }
            dsp_tensor_unref(&w);
        }
        ck_assert_int_eq(mem.n_quantized, nq);
        ck_assert_int_eq(nq, 2 * 5 + 1);     /* q, k, v, attn out, intermediate; pooler */
        ck_assert_int_eq(mem.n_kept, 2);      /* output.dense of both layers */
        ck_assert_uint_eq(mem.quantized_bytes, qbytes);
        ck_assert_uint_eq(mem.quantized_from, qfrom);
        ck_assert_uint_eq(mem.stored_bytes, all);
        ck_assert_uint_eq(mem.resident_bytes, all - qfrom + qbytes);
        ck_assert_uint_lt(mem.resident_bytes, mem.stored_bytes);
        dsp_model_close(&m);
    }
}
END_TEST

START_TEST(test_quant_load_group_and_skip)
{
    const char *path = bert_path();
    if (!path)
        return;
    /* group 128 divides none of the 32/37 inputs: everything is kept */
    dsp_model *m = open_quant(path, DSP_QUANT_INT8, 0, NULL);
    dsp_model_memory mem;
    const dsp_qweight *q = NULL;
    ck_assert_int_eq(dsp_model_memory_info(m, &mem), 0);
    ck_assert_int_eq(mem.n_quantized, 0);
    ck_assert_int_eq(mem.n_kept, 2 * 6 + 1);
    ck_assert_uint_eq(mem.resident_bytes, mem.stored_bytes);
    ck_assert_int_eq(dsp_model_qweight(m, "pooler.dense.weight", &q), 0);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(dsp_model_qweight(m, "no.such.weight", &q), DSP_ENOENT);
    dsp_model_close(&m);

    /* own skip list: replaces the default one, so the embedding tables
     * ([*, 32] bf16/f32) are quantized and the queries are not */
    static const char *const skip[] = { "*.query.weight", "*LayerNorm*", NULL };
    m = open_quant(path, DSP_QUANT_INT4, 32, skip);
    ck_assert_int_eq(dsp_model_qweight(m, "encoder.layer.0.attention.self.query.weight", &q), 0);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(dsp_model_qweight(m, "encoder.layer.0.attention.self.key.weight", &q), 0);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(dsp_model_qweight(m, "embeddings.word_embeddings.weight", &q), 0);
    ck_assert_ptr_nonnull(q);
    check_same_quant(m, "embeddings.word_embeddings.weight", q, DSP_QUANT_INT4, 32);
    dsp_model_close(&m);

    /* without quant: no qweights, stored size counted on demand */
    m = open_ok(path);
    ck_assert_int_eq(dsp_model_qweight(m, "pooler.dense.weight", &q), 0);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(dsp_model_memory_info(m, &mem), 0);
    ck_assert_uint_gt(mem.stored_bytes, 0);
    ck_assert_uint_eq(mem.resident_bytes, mem.stored_bytes);
    ck_assert_int_eq(mem.n_quantized, 0);
    dsp_model_close(&m);
}
END_TEST

/* The stored values stay readable after their pages were dropped. */
START_TEST(test_quant_load_keeps_tensors)
{
    const char *path = bert_path();
    if (!path)
        return;
    const char *name = "encoder.layer.1.intermediate.dense.weight";
    dsp_model *plain = open_ok(path), *m = open_quant(path, DSP_QUANT_INT8, 32, NULL);
    dsp_tensor *a = NULL, *b = NULL;
    ck_assert_int_eq(dsp_model_tensor(plain, name, &a), 0);
    ck_assert_int_eq(dsp_model_tensor(m, name, &b), 0);
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert_int_eq(memcmp(dsp_tensor_data(a), dsp_tensor_data(b), dsp_tensor_nbytes(a)), 0);
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&b);
    dsp_model_close(&plain);
    dsp_model_close(&m);
}
END_TEST

static void expect_opts_fail(const char *path, const dsp_model_opts *o, int code,
                             const char *needle)
{
    dsp_model *m = (dsp_model *)&m;
    char *why = NULL;
    int err = dsp_model_open_opts(path, o, &m, &why);
    ck_assert_msg(err == code, "got %d (%s), want %d", err, why ? why : "no message", code);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, needle) != NULL, "message lacks \"%s\": %s", needle, why);
    free(why);
}

START_TEST(test_quant_load_errors)
{
    /* a folder with one [2, 32] weight holding a NaN in row 1 */
    const char *dir = tp("nan");
    char p[700];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, CONFIG);
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, (int64_t[]){ 2, 32 }, &t), 0);
    float *v = dsp_tensor_data(t);
    for (int i = 0; i < 64; i++)
        v[i] = (float)i / 64.0f;
    v[40] = NAN;
    const char *names[] = { "layer.dense.weight" };
    char *why = NULL;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_int_eq(dsp_safetensors_write(p, names, &t, 1, NULL, &why), 0);
    dsp_tensor_unref(&t);

    dsp_model_opts o = { .quant = DSP_QUANT_INT8, .group_size = 32 };
    expect_opts_fail(dir, &o, DSP_EINVAL, "layer.dense.weight");
    o.quant = (dsp_quant_kind)7;
    expect_opts_fail(dir, &o, DSP_EINVAL, "quant 7");
    o.quant = DSP_QUANT_INT4;
    o.group_size = 64;
    expect_opts_fail(dir, &o, DSP_EINVAL, "group size 64: use 32 or 128");
    /* the open errors of dsp_model_open come through */
    o.group_size = 32;
    expect_opts_fail(tp("absent"), &o, DSP_ENOENT, "no such file or folder");
    /* without quant the same file opens */
    o.quant = 0;
    dsp_model *m = NULL;
    ck_assert_int_eq(dsp_model_open_opts(dir, &o, &m, NULL), 0);
    dsp_model_close(&m);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_tiny_single);
    tcase_add_test(tc, test_tiny_sharded);
    tcase_add_test(tc, test_hf_bert);
    tcase_add_test(tc, test_single_file_path);
    tcase_add_test(tc, test_config_access);
    tcase_add_test(tc, test_config_values);
    tcase_add_test(tc, test_tensor_lookup);
    tcase_add_test(tc, test_concurrent_reads);
    suite_add_tcase(s, tc);

    tc = tcase_create("quant");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_quant_load);
    tcase_add_test(tc, test_quant_load_group_and_skip);
    tcase_add_test(tc, test_quant_load_keeps_tensors);
    tcase_add_test(tc, test_quant_load_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("validation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_missing_folder);
    tcase_add_test(tc, test_no_config);
    tcase_add_test(tc, test_config_not_json);
    tcase_add_test(tc, test_no_weights);
    tcase_add_test(tc, test_pytorch_bin_refused);
    tcase_add_test(tc, test_json_file_given);
    tcase_add_test(tc, test_index_not_json);
    tcase_add_test(tc, test_index_shape);
    tcase_add_test(tc, test_shard_missing);
    tcase_add_test(tc, test_shard_outside_folder);
    tcase_add_test(tc, test_listed_tensor_absent);
    tcase_add_test(tc, test_unlisted_tensor_warns);
    tcase_add_test(tc, test_tensor_in_two_shards);
    tcase_add_test(tc, test_shard_errors_pass_through);
    tcase_add_test(tc, test_single_and_index);
    tcase_add_test(tc, test_hub_cache_symlinks);
    tcase_add_test(tc, test_hostile_index);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
