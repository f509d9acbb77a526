/* test_tensorio.c - unit tests of .npy/.safetensors I/O: NumPy fixtures, round trips, and every validation rule. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <dspipe/dspipe.h>
#include <dspipe/tensorio.h>

#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dsp_tio_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void setup(void)
{
    make_tmpdir();
}

static void teardown(void)
{
    tu_remove_tree(tmpdir);
}

static char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

/* Number of entries in tmpdir (to catch stray temporary files). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static const char *fixture_dir(void)
{
    static char dir[512];
    const char *src = getenv("TESTS_SRCDIR");
    snprintf(dir, sizeof dir, "%s/data/tensorio", src && *src ? src : ".");
    return dir;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                 : ldexp(m | 0x400, e - 25);
    return h & 0x8000 ? -v : v;
}

/* Element k (C order) of t, compared against text as the fixture wrote it. */
static void check_element(const dsp_tensor *t, int64_t k, const char *text,
                          const char *what)
{
    int64_t idx[DSP_MAX_DIMS], rem = k, off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = rem % t->shape[d];
        rem /= t->shape[d];
    }
    for (int d = 0; d < t->ndim; d++)
        off += idx[d] * t->stride[d];
    const unsigned char *p = (const unsigned char *)dsp_tensor_data(t) +
                             off * (int64_t)dsp_dtype_size(t->dtype);
    double want = strtod(text, NULL), got;
    switch (t->dtype) {
    case DSP_DTYPE_F32: { float v; memcpy(&v, p, 4); got = v; break; }
    case DSP_DTYPE_F64: { double v; memcpy(&v, p, 8); got = v; break; }
    case DSP_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); got = half_to_double(v); break; }
    case DSP_DTYPE_BF16: {
        uint16_t v; uint32_t u; float f;
        memcpy(&v, p, 2); u = (uint32_t)v << 16; memcpy(&f, &u, 4); got = f; break;
    }
    case DSP_DTYPE_I8:  got = *(const int8_t *)p; break;
    case DSP_DTYPE_U8:  got = *p; break;
    case DSP_DTYPE_BOOL: got = *p; break;
    case DSP_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); got = v; break; }
    case DSP_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); got = v; break; }
    case DSP_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); got = v; break; }
    case DSP_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); got = v; break; }
    case DSP_DTYPE_I64: {
        int64_t v; memcpy(&v, p, 8);
        ck_assert_msg(v == strtoll(text, NULL, 10), "%s[%lld]: %lld != %s", what,
                      (long long)k, (long long)v, text);
        return;
    }
    case DSP_DTYPE_U64: {
        uint64_t v; memcpy(&v, p, 8);
        ck_assert_msg(v == strtoull(text, NULL, 10), "%s[%lld]: %llu != %s", what,
                      (long long)k, (unsigned long long)v, text);
        return;
    }
    default:
        ck_abort_msg("%s: unexpected dtype", what);
        return;
    }
    if (isnan(want))
        ck_assert_msg(isnan(got), "%s[%lld]: %g is not nan", what, (long long)k, got);
    else
        ck_assert_msg(got == want, "%s[%lld]: %.17g != %s", what, (long long)k, got, text);
}

static void check_tensor(const dsp_tensor *t, json_t *exp, const char *what)
{
    ck_assert_str_eq(dsp_dtype_name(t->dtype),
                     json_string_value(json_object_get(exp, "dtype")));
    json_t *shape = json_object_get(exp, "shape");
    ck_assert_int_eq(t->ndim, (int)json_array_size(shape));
    for (int d = 0; d < t->ndim; d++)
        ck_assert_int_eq(t->shape[d], json_integer_value(json_array_get(shape, d)));
    if (json_is_true(json_object_get(exp, "fortran")) && t->ndim > 1)
        ck_assert_msg(t->stride[0] == 1, "%s: fortran order should give "
                      "column-major strides", what);
    json_t *vals = json_object_get(exp, "values");
    ck_assert_int_eq(dsp_tensor_numel(t), (int64_t)json_array_size(vals));
    for (size_t k = 0; k < json_array_size(vals); k++)
        check_element(t, (int64_t)k, json_string_value(json_array_get(vals, k)), what);
}

/* ---- fixtures written by NumPy / safetensors ---------------------------- */

START_TEST(test_fixtures_match_numpy)
{
    char path[600];
    snprintf(path, sizeof path, "%s/expected.json", fixture_dir());
    json_error_t jerr;
    json_t *all = json_load_file(path, 0, &jerr);
    ck_assert_msg(all != NULL, "%s: %s", path, jerr.text);
    const char *file;
    json_t *spec;
    int n_npy = 0, n_st = 0;
    json_object_foreach(all, file, spec) {
        snprintf(path, sizeof path, "%s/%s", fixture_dir(), file);
        const char *fmt = json_string_value(json_object_get(spec, "format"));
        json_t *tensors = json_object_get(spec, "tensors");
        char *why = NULL;
        if (strcmp(fmt, "npy") == 0) {
            dsp_tensor *t = NULL;
            int err = dsp_npy_read(path, &t, &why);
            ck_assert_msg(err == 0, "%s: %s", file, why ? why : "?");
            check_tensor(t, json_object_get(tensors, "x"), file);
            /* aligned little-endian data is viewed in place, not copied */
            int native = !strstr(file, "_be") && !strstr(file, "unaligned");
            if (dsp_tensor_numel(t) > 0)
                ck_assert_msg((dsp_buffer_get_kind(t->buf) == DSP_BUFFER_MAPPED) == native,
                              "%s: expected %s", file, native ? "a mapping" : "a copy");
            dsp_tensor_unref(&t);
            n_npy++;
        } else {
            dsp_safetensors *st = NULL;
            int err = dsp_safetensors_open(path, &st, &why);
            ck_assert_msg(err == 0, "%s: %s", file, why ? why : "?");
            ck_assert_int_eq(dsp_safetensors_count(st), (int)json_object_size(tensors));
            const char *name;
            json_t *exp;
            json_object_foreach(tensors, name, exp) {
                dsp_tensor *t = NULL;
                char what[256];
                snprintf(what, sizeof what, "%s:%s", file, name);
                ck_assert_int_eq(dsp_safetensors_get(st, name, &t), 0);
                check_tensor(t, exp, what);
                dsp_tensor_unref(&t);
            }
            const char *key;
            json_t *val;
            json_t *md = json_object_get(spec, "metadata");
            ck_assert_int_eq(dsp_safetensors_metadata_count(st), (int)json_object_size(md));
            json_object_foreach(md, key, val)
                ck_assert_str_eq(dsp_safetensors_metadata(st, key), json_string_value(val));
            ck_assert_ptr_null(dsp_safetensors_metadata(st, "nope"));
            dsp_safetensors_close(&st);
            ck_assert_ptr_null(st);
            n_st++;
        }
        free(why);
    }
    ck_assert_int_ge(n_npy, 20);
    ck_assert_int_ge(n_st, 2);
    json_decref(all);
}
END_TEST

START_TEST(test_safetensors_file_order_and_lookup)
{
    char path[600];
    snprintf(path, sizeof path, "%s/multi.safetensors", fixture_dir());
    dsp_safetensors *st = NULL;
    ck_assert_int_eq(dsp_safetensors_open(path, &st, NULL), 0);
    /* names come in data-offset order: each tensor starts where the last ended */
    dsp_tensor *prev = NULL;
    for (int i = 0; i < dsp_safetensors_count(st); i++) {
        dsp_tensor *t = NULL;
        ck_assert_int_eq(dsp_safetensors_get(st, dsp_safetensors_name(st, i), &t), 0);
        if (prev && dsp_tensor_numel(t) > 0 && dsp_tensor_numel(prev) > 0)
            ck_assert_uint_eq(t->offset, prev->offset + dsp_tensor_nbytes(prev));
        if (dsp_tensor_numel(t) > 0) {
            dsp_tensor_unref(&prev);
            prev = t;
        } else {
            dsp_tensor_unref(&t);
        }
    }
    dsp_tensor_unref(&prev);
    ck_assert_ptr_null(dsp_safetensors_name(st, -1));
    ck_assert_ptr_null(dsp_safetensors_name(st, dsp_safetensors_count(st)));
    dsp_tensor *t = (dsp_tensor *)1;
    ck_assert_int_eq(dsp_safetensors_get(st, "missing", &t), DSP_ENOENT);
    ck_assert_ptr_null(t);
    /* a tensor outlives the handle: it holds the mapping */
    ck_assert_int_eq(dsp_safetensors_get(st, "w", &t), 0);
    dsp_safetensors_close(&st);
    ck_assert_float_eq(((float *)dsp_tensor_data(t))[5], 0.25f);
    dsp_tensor_unref(&t);
}
END_TEST

/* ---- .npy writer -------------------------------------------------------- */

static dsp_tensor *iota(dsp_dtype dt, int ndim, const int64_t *shape)
{
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(dt, ndim, shape, &t), 0);
    unsigned char *p = dsp_tensor_data(t);
    size_t es = dsp_dtype_size(dt);
    for (int64_t k = 0; k < dsp_tensor_numel(t); k++)
        for (size_t b = 0; b < es; b++)
            p[k * (int64_t)es + (int64_t)b] = (unsigned char)(dt == DSP_DTYPE_BOOL
                                                              ? (k & 1)
                                                              : (k * 7 + (int64_t)b * 3 + 1));
    return t;
}

static int same_values(const dsp_tensor *a, const dsp_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    size_t es = dsp_dtype_size(a->dtype);
    int64_t n = dsp_tensor_numel(a);
    for (int64_t k = 0; k < n; k++) {
        int64_t rem = k, oa = 0, ob = 0;
        for (int d = a->ndim - 1; d >= 0; d--) {
            int64_t i = rem % a->shape[d];
            rem /= a->shape[d];
            oa += i * a->stride[d];
            ob += i * b->stride[d];
        }
        if (memcmp((const char *)dsp_tensor_data(a) + oa * (int64_t)es,
                   (const char *)dsp_tensor_data(b) + ob * (int64_t)es, es))
            return 0;
    }
    return 1;
}

START_TEST(test_npy_roundtrip_all_dtypes)
{
    static const dsp_dtype dts[] = {
        DSP_DTYPE_F32, DSP_DTYPE_F16, DSP_DTYPE_I8, DSP_DTYPE_U8, DSP_DTYPE_I16,
        DSP_DTYPE_I32, DSP_DTYPE_I64, DSP_DTYPE_F64, DSP_DTYPE_BOOL, DSP_DTYPE_U16,
        DSP_DTYPE_U32, DSP_DTYPE_U64,
    };
    const int64_t shapes[][3] = { { 2, 3, 4 }, { 1, 1, 1 }, { 5, 0, 2 } };
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        for (int s = 0; s < 3; s++) {
            dsp_tensor *t = iota(dts[i], 3, shapes[s]), *back = NULL;
            const char *path = tmp_path("rt.npy");
            char *why = NULL;
            ck_assert_int_eq(dsp_npy_write(path, t, &why), 0);
            ck_assert_int_eq(dsp_npy_read(path, &back, &why), 0);
            ck_assert_msg(same_values(t, back), "%s shape %d", dsp_dtype_name(dts[i]), s);
            /* data starts on a 64-byte boundary, as NumPy writes it */
            if (dsp_tensor_numel(back) > 0)
                ck_assert_uint_eq(back->offset % 64, 0);
            dsp_tensor_unref(&t);
            dsp_tensor_unref(&back);
            free(why);
        }
    }
    /* scalar */
    dsp_tensor *t = iota(DSP_DTYPE_F64, 0, NULL), *back = NULL;
    ck_assert_int_eq(dsp_npy_write(tmp_path("s.npy"), t, NULL), 0);
    ck_assert_int_eq(dsp_npy_read(tmp_path("s.npy"), &back, NULL), 0);
    ck_assert_int_eq(back->ndim, 0);
    ck_assert(same_values(t, back));
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&back);
    ck_assert_int_eq(count_entries(tmpdir), 2);   /* no temporary files left */
}
END_TEST

START_TEST(test_npy_write_strided_view)
{
    /* a transposed view (strides reversed) is written in C order */
    int64_t shape[2] = { 3, 4 };
    dsp_tensor *t = iota(DSP_DTYPE_I32, 2, shape), *view = NULL, *back = NULL;
    int64_t tshape[2] = { 4, 3 }, tstride[2] = { 1, 4 };
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_I32, 2, tshape, tstride, t->buf,
                                            0, &view), 0);
    ck_assert(!dsp_tensor_is_contiguous(view));
    ck_assert_int_eq(dsp_npy_write(tmp_path("t.npy"), view, NULL), 0);
    ck_assert_int_eq(dsp_npy_read(tmp_path("t.npy"), &back, NULL), 0);
    ck_assert(dsp_tensor_is_contiguous(back));
    ck_assert(same_values(view, back));
    int32_t *b = dsp_tensor_data(back), *a = dsp_tensor_data(t);
    ck_assert_int_eq(b[1], a[4]);                 /* back[0][1] == t[1][0] */
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&view);
    dsp_tensor_unref(&back);
}
END_TEST

START_TEST(test_npy_write_refuses_bf16_and_bad_dir)
{
    int64_t shape[1] = { 4 };
    dsp_tensor *t = iota(DSP_DTYPE_BF16, 1, shape);
    char *why = NULL;
    ck_assert_int_eq(dsp_npy_write(tmp_path("b.npy"), t, &why), DSP_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(why, "bfloat16"));
    ck_assert_ptr_nonnull(strstr(why, "b.npy"));
    free(why);
    why = NULL;
    dsp_tensor_unref(&t);
    t = iota(DSP_DTYPE_F32, 1, shape);
    ck_assert_int_eq(dsp_npy_write("/proc/version/x.npy", t, &why), DSP_EIO);  /* parent is a file */
    ck_assert_ptr_nonnull(strstr(why, "x.npy"));
    free(why);
    ck_assert_int_eq(dsp_npy_write(NULL, t, NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_npy_write(tmp_path("x.npy"), NULL, NULL), DSP_EINVAL);
    ck_assert_int_eq(count_entries(tmpdir), 0);
    dsp_tensor_unref(&t);
}
END_TEST

START_TEST(test_npy_overwrite_is_atomic)
{
    int64_t shape[1] = { 3 };
    dsp_tensor *a = iota(DSP_DTYPE_U8, 1, shape), *b = iota(DSP_DTYPE_I64, 1, shape);
    dsp_tensor *held = NULL, *now = NULL;
    const char *path = tmp_path("o.npy");
    ck_assert_int_eq(dsp_npy_write(path, a, NULL), 0);
    ck_assert_int_eq(dsp_npy_read(path, &held, NULL), 0);
    ck_assert_int_eq(dsp_npy_write(path, b, NULL), 0);
    /* the reader's mapping still shows the old file: rename, not rewrite */
    ck_assert(same_values(a, held));
    ck_assert_int_eq(dsp_npy_read(path, &now, NULL), 0);
    ck_assert(same_values(b, now));
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&b);
    dsp_tensor_unref(&held);
    dsp_tensor_unref(&now);
}
END_TEST

/* ---- malformed .npy ------------------------------------------------------ */

/* A .npy file with the given header dict and n data bytes of zeros. */
static const char *make_npy(const char *name, int major, const char *dict,
                            size_t ndata)
{
    unsigned char buf[4096] = { 0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0 };
    /* the length is 2 bytes in version 1, 4 in 2 and 3: both little-endian,
     * and the upper two bytes stay zero here */
    size_t hl = strlen(dict), pre = major == 1 ? 10 : 12;
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + pre, dict, hl);
    const char *path = tmp_path(name);
    write_bytes(path, buf, pre + hl + ndata);
    return path;
}

static void expect_npy_error(const char *path, int code, const char *needle)
{
    dsp_tensor *t = (dsp_tensor *)1;
    char *why = NULL;
    ck_assert_int_eq(dsp_npy_read(path, &t, &why), code);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, path) != NULL, "message does not name the file: %s", why);
    ck_assert_msg(strstr(why, needle) != NULL, "'%s' not in: %s", needle, why);
    free(why);
}

START_TEST(test_npy_malformed)
{
    expect_npy_error(tmp_path("missing.npy"), DSP_ENOENT, "cannot open");
    write_bytes(tmp_path("png.npy"), "\x89PNG\r\n\x1a\n0000", 12);
    expect_npy_error(tmp_path("png.npy"), DSP_EFORMAT, "not a .npy");
    expect_npy_error(make_npy("v9.npy", 9, "{}", 0), DSP_EUNSUPPORTED, "version 9");
    const char *ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
    expect_npy_error(make_npy("short.npy", 1, ok, 15), DSP_EFORMAT, "truncated");
    unsigned char hdr[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0 };
    write_bytes(tmp_path("cut.npy"), hdr, 10);
    expect_npy_error(tmp_path("cut.npy"), DSP_EFORMAT, "truncated");
    expect_npy_error(make_npy("c8.npy", 1, "{'descr': '<c8', 'fortran_order': False, "
                              "'shape': (1,), }", 8), DSP_EUNSUPPORTED, "'<c8'");
    expect_npy_error(make_npy("obj.npy", 1, "{'descr': '|O', 'fortran_order': False, "
                              "'shape': (1,), }", 8), DSP_EUNSUPPORTED, "|O");
    expect_npy_error(make_npy("rec.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': "
                              "False, 'shape': (1,), }", 4), DSP_EUNSUPPORTED, "structured");
    expect_npy_error(make_npy("dims.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (1,1,1,1,1,1,1,1,1), }", 4), DSP_EUNSUPPORTED,
                     "dimensions");
    expect_npy_error(make_npy("nokey.npy", 1, "{'descr': '<f4', 'shape': (1,), }", 4),
                     DSP_EFORMAT, "lacks");
    expect_npy_error(make_npy("extra.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (1,), 'x': 1}", 4), DSP_EFORMAT, "key");
    expect_npy_error(make_npy("fo.npy", 1, "{'descr': '<f4', 'fortran_order': maybe, "
                              "'shape': (1,), }", 4), DSP_EFORMAT, "fortran_order");
    expect_npy_error(make_npy("neg.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (-1,), }", 4), DSP_EFORMAT, "shape");
    expect_npy_error(make_npy("huge.npy", 1, "{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (99999999999, 99999999999), }", 4), DSP_EFORMAT,
                     "truncated");
    expect_npy_error(make_npy("open.npy", 1, "{'descr': '<f4", 4), DSP_EFORMAT,
                     "unterminated");
    /* version 2.0 with the same dict reads fine */
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_npy_read(make_npy("v2ok.npy", 2, ok, 16), &t, NULL), 0);
    ck_assert_int_eq(t->shape[0], 4);
    dsp_tensor_unref(&t);
    ck_assert_int_eq(dsp_npy_read(NULL, &t, NULL), DSP_EINVAL);
}
END_TEST

/* ---- safetensors writer -------------------------------------------------- */

START_TEST(test_safetensors_roundtrip)
{
    int64_t s1[1] = { 3 }, s2[2] = { 2, 5 }, s0[2] = { 0, 7 };
    dsp_tensor *ts[5] = {
        iota(DSP_DTYPE_U8, 1, s1), iota(DSP_DTYPE_F64, 2, s2), iota(DSP_DTYPE_BF16, 2, s2),
        iota(DSP_DTYPE_I32, 1, s1), iota(DSP_DTYPE_F32, 2, s0),
    };
    const char *names[5] = { "a.byte", "b.double", "c.bf16", "d.int", "e.empty" };
    dsp_meta *md = dsp_meta_new();
    dsp_meta_set_str(md, "format", "pt");
    dsp_meta_set_int(md, "epoch", 12);
    const char *path = tmp_path("rt.safetensors");
    char *why = NULL;
    ck_assert_int_eq(dsp_safetensors_write(path, names, ts, 5, md, &why), 0);
    dsp_meta_free(&md);

    /* raw layout: 8-aligned header padded with spaces, then contiguous data */
    FILE *fp = fopen(path, "rb");
    unsigned char len8[8];
    ck_assert_uint_eq(fread(len8, 1, 8, fp), 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | len8[i];
    ck_assert_uint_eq(hlen % 8, 0);
    char *hdr = calloc(1, hlen + 1);
    ck_assert_uint_eq(fread(hdr, 1, hlen, fp), hlen);
    fclose(fp);
    size_t used = strlen(hdr);
    while (used > 0 && hdr[used - 1] == ' ')
        used--;
    ck_assert_int_eq(hdr[used - 1], '}');
    ck_assert_uint_lt(hlen - used, 8);
    free(hdr);

    dsp_safetensors *st = NULL;
    ck_assert_int_eq(dsp_safetensors_open(path, &st, &why), 0);
    ck_assert_int_eq(dsp_safetensors_count(st), 5);
    ck_assert_str_eq(dsp_safetensors_metadata(st, "format"), "pt");
    ck_assert_str_eq(dsp_safetensors_metadata(st, "epoch"), "12");
    for (int i = 0; i < 5; i++) {
        dsp_tensor *t = NULL;
        ck_assert_int_eq(dsp_safetensors_get(st, names[i], &t), 0);
        ck_assert_msg(same_values(ts[i], t), "%s", names[i]);
        /* every tensor aligned to its element size, so no copy was needed */
        if (dsp_tensor_numel(t) > 0) {
            ck_assert_uint_eq((uintptr_t)dsp_tensor_data(t) % dsp_dtype_size(t->dtype), 0);
            ck_assert_int_eq(dsp_buffer_get_kind(t->buf), DSP_BUFFER_MAPPED);
        }
        dsp_tensor_unref(&t);
    }
    /* largest elements first */
    ck_assert_str_eq(dsp_safetensors_name(st, 0), "b.double");
    dsp_safetensors_close(&st);
    for (int i = 0; i < 5; i++)
        dsp_tensor_unref(&ts[i]);
    ck_assert_int_eq(count_entries(tmpdir), 1);
    free(why);
}
END_TEST

START_TEST(test_safetensors_write_strided_and_errors)
{
    int64_t shape[2] = { 2, 3 }, tshape[2] = { 3, 2 }, tstride[2] = { 1, 3 };
    dsp_tensor *t = iota(DSP_DTYPE_I16, 2, shape), *view = NULL, *back = NULL;
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_I16, 2, tshape, tstride, t->buf, 0,
                                            &view), 0);
    const char *names[2] = { "v", "v" };
    dsp_tensor *ts[2] = { view, t };
    char *why = NULL;
    ck_assert_int_eq(dsp_safetensors_write(tmp_path("dup.safetensors"), names, ts, 2, NULL,
                                           &why), DSP_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "'v'"));
    ck_assert_ptr_nonnull(strstr(why, "unique"));
    free(why);
    why = NULL;
    const char *bad[1] = { "__metadata__" };
    ck_assert_int_eq(dsp_safetensors_write(tmp_path("r.safetensors"), bad, ts, 1, NULL,
                                           NULL), DSP_EINVAL);
    ck_assert_int_eq(dsp_safetensors_write("/proc/version/dir.safetensors", names, ts, 1,
                                           NULL, &why), DSP_EIO);
    ck_assert_ptr_nonnull(strstr(why, "dir.safetensors"));
    free(why);
    ck_assert_int_eq(count_entries(tmpdir), 0);

    ck_assert_int_eq(dsp_safetensors_write(tmp_path("v.safetensors"), names, ts, 1, NULL,
                                           NULL), 0);
    dsp_safetensors *st = NULL;
    ck_assert_int_eq(dsp_safetensors_open(tmp_path("v.safetensors"), &st, NULL), 0);
    ck_assert_int_eq(dsp_safetensors_get(st, "v", &back), 0);
    ck_assert(same_values(view, back));
    dsp_safetensors_close(&st);
    /* zero tensors is a valid file */
    ck_assert_int_eq(dsp_safetensors_write(tmp_path("none.safetensors"), NULL, NULL, 0,
                                           NULL, NULL), 0);
    ck_assert_int_eq(dsp_safetensors_open(tmp_path("none.safetensors"), &st, NULL), 0);
    ck_assert_int_eq(dsp_safetensors_count(st), 0);
    dsp_safetensors_close(&st);
    dsp_safetensors_close(&st);               /* NULL is a no-op */
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&view);
    dsp_tensor_unref(&back);
}
END_TEST

/* ---- safetensors validation: one test per rule ---------------------------- */

/* A safetensors file: 8-byte length, header text as given, ndata zero bytes. */
static const char *make_st(const char *name, const char *header, size_t ndata)
{
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + ndata);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    const char *path = tmp_path(name);
    write_bytes(path, buf, 8 + hl + ndata);
    free(buf);
    return path;
}

static void expect_st_error(const char *path, int code, const char *tensor,
                            const char *needle)
{
    dsp_safetensors *st = (dsp_safetensors *)1;
    char *why = NULL;
    ck_assert_int_eq(dsp_safetensors_open(path, &st, &why), code);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, path) != NULL, "message does not name the file: %s", why);
    if (tensor) {
        char q[128];
        snprintf(q, sizeof q, "'%s'", tensor);
        ck_assert_msg(strstr(why, q) != NULL, "message does not name %s: %s", q, why);
    }
    ck_assert_msg(strstr(why, needle) != NULL, "'%s' not in: %s", needle, why);
    free(why);
}

#define ST_ENTRY(dt, shape, b, e) \
    "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

START_TEST(test_st_too_short)
{
    write_bytes(tmp_path("s.safetensors"), "\x02\0\0", 3);
    expect_st_error(tmp_path("s.safetensors"), DSP_EFORMAT, NULL, "too short");
}
END_TEST

START_TEST(test_st_length_past_end)
{
    unsigned char b[12] = { 200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ' };
    write_bytes(tmp_path("l.safetensors"), b, sizeof b);
    expect_st_error(tmp_path("l.safetensors"), DSP_EFORMAT, NULL, "past the end");
}
END_TEST

START_TEST(test_st_length_absurd)
{
    unsigned char b[12] = { 0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}', ' ', ' ' };
    write_bytes(tmp_path("l.safetensors"), b, sizeof b);
    expect_st_error(tmp_path("l.safetensors"), DSP_EFORMAT, NULL, "100 MB");
}
END_TEST

START_TEST(test_st_not_json)
{
    expect_st_error(make_st("j.safetensors", "{\"a\": [1, 2", 0), DSP_EFORMAT, NULL,
                    "not valid JSON");
}
END_TEST

START_TEST(test_st_not_object)
{
    expect_st_error(make_st("o.safetensors", "[1, 2, 3]", 0), DSP_EFORMAT, NULL,
                    "start with '{'");
    expect_st_error(make_st("o2.safetensors", "{\"a\": 1} {", 0), DSP_EFORMAT, NULL,
                    "not valid JSON");
}
END_TEST

START_TEST(test_st_entry_not_object)
{
    expect_st_error(make_st("e.safetensors", "{\"w\": [1, 2]}", 0), DSP_EFORMAT, "w",
                    "not a JSON object");
}
END_TEST

START_TEST(test_st_missing_fields)
{
    expect_st_error(make_st("m1.safetensors",
                            "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                    DSP_EFORMAT, "w", "lacks \"dtype\"");
    expect_st_error(make_st("m2.safetensors",
                            "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
                    DSP_EFORMAT, "w", "lacks \"shape\"");
    expect_st_error(make_st("m3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
                    DSP_EFORMAT, "w", "lacks \"data_offsets\"");
}
END_TEST

START_TEST(test_st_unknown_dtype)
{
    expect_st_error(make_st("d.safetensors", "{\"w\":" ST_ENTRY("F33", "[1]", 0, 4) "}", 4),
                    DSP_EFORMAT, "w", "unknown dtype");
    expect_st_error(make_st("d2.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],"
                            "\"data_offsets\":[0,4]}}", 4), DSP_EFORMAT, "w",
                    "dtype is not a string");
}
END_TEST

START_TEST(test_st_unsupported_dtype)
{
    expect_st_error(make_st("f8.safetensors", "{\"w\":" ST_ENTRY("F8_E4M3", "[4]", 0, 4) "}",
                            4), DSP_EUNSUPPORTED, "w", "F8_E4M3");
}
END_TEST

START_TEST(test_st_negative_shape)
{
    expect_st_error(make_st("n.safetensors", "{\"w\":" ST_ENTRY("F32", "[-1]", 0, 4) "}", 4),
                    DSP_EFORMAT, "w", "non-negative integer");
}
END_TEST

START_TEST(test_st_non_integer_shape)
{
    expect_st_error(make_st("n.safetensors", "{\"w\":" ST_ENTRY("F32", "[1.5]", 0, 4) "}", 4),
                    DSP_EFORMAT, "w", "shape[0]");
    expect_st_error(make_st("n2.safetensors", "{\"w\":" ST_ENTRY("F32", "\"4\"", 0, 4) "}", 4),
                    DSP_EFORMAT, "w", "shape is not an array");
}
END_TEST

START_TEST(test_st_too_many_dims)
{
    expect_st_error(make_st("n.safetensors", "{\"w\":" ST_ENTRY("U8", "[1,1,1,1,1,1,1,1,1]",
                                                                0, 1) "}", 1),
                    DSP_EUNSUPPORTED, "w", "dimensions");
}
END_TEST

START_TEST(test_st_bad_offsets_shape)
{
    expect_st_error(make_st("o.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
                            "\"data_offsets\":[0]}}", 1), DSP_EFORMAT, "w", "pair");
    expect_st_error(make_st("o2.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
                            "\"data_offsets\":[-1, 0]}}", 1), DSP_EFORMAT, "w", "pair");
}
END_TEST

START_TEST(test_st_begin_after_end)
{
    expect_st_error(make_st("b.safetensors", "{\"w\":" ST_ENTRY("U8", "[0]", 4, 2) "}", 4),
                    DSP_EFORMAT, "w", "begin after end");
}
END_TEST

START_TEST(test_st_offsets_outside_data)
{
    expect_st_error(make_st("x.safetensors", "{\"w\":" ST_ENTRY("F32", "[4]", 0, 16) "}", 8),
                    DSP_EFORMAT, "w", "outside the data section");
}
END_TEST

START_TEST(test_st_size_mismatch)
{
    expect_st_error(make_st("z.safetensors", "{\"w\":" ST_ENTRY("F32", "[3]", 0, 16) "}", 16),
                    DSP_EFORMAT, "w", "need 12");
    /* a shape whose element count overflows 64 bits */
    expect_st_error(make_st("z2.safetensors", "{\"w\":" ST_ENTRY("F64", "[4294967296,"
                            "4294967296,16]", 0, 8) "}", 8), DSP_EFORMAT, "w", "more than");
}
END_TEST

START_TEST(test_st_overlap)
{
    expect_st_error(make_st("ov.safetensors", "{\"a\":" ST_ENTRY("F32", "[2]", 0, 8) ","
                            "\"b\":" ST_ENTRY("F32", "[2]", 4, 12) "}", 12),
                    DSP_EFORMAT, "b", "overlap");
    /* touching ranges and empty tensors do not overlap */
    dsp_safetensors *st = NULL;
    ck_assert_int_eq(dsp_safetensors_open(make_st("ok.safetensors",
        "{\"a\":" ST_ENTRY("F32", "[2]", 0, 8) ",\"e\":" ST_ENTRY("F32", "[0]", 4, 4) ","
        "\"b\":" ST_ENTRY("F32", "[1]", 8, 12) "}", 12), &st, NULL), 0);
    ck_assert_int_eq(dsp_safetensors_count(st), 3);
    dsp_safetensors_close(&st);
}
END_TEST

START_TEST(test_st_metadata_not_strings)
{
    expect_st_error(make_st("md.safetensors", "{\"__metadata__\":{\"epoch\":3}}", 0),
                    DSP_EFORMAT, NULL, "'epoch' is not a string");
    expect_st_error(make_st("md2.safetensors", "{\"__metadata__\":[\"a\"]}", 0),
                    DSP_EFORMAT, NULL, "__metadata__ is not a JSON object");
}
END_TEST

START_TEST(test_st_duplicate_names)
{
    expect_st_error(make_st("dup.safetensors", "{\"a\":" ST_ENTRY("U8", "[1]", 0, 1) ","
                            "\"a\":" ST_ENTRY("U8", "[1]", 1, 2) "}", 2),
                    DSP_EFORMAT, NULL, "duplicate");
}
END_TEST

START_TEST(test_st_unaligned_data_is_copied)
{
    /* a 54-byte header puts the data at byte 62, misaligned for F32
     * (other writers do not always pad the header) */
    const char *hdr = "{\"w\":" ST_ENTRY("F32", "[1]", 0, 4) "}";
    ck_assert_uint_ne((8 + strlen(hdr)) % 4, 0);
    const char *path = make_st("u.safetensors", hdr, 4);
    dsp_safetensors *st = NULL;
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_safetensors_open(path, &st, NULL), 0);
    ck_assert_int_eq(dsp_safetensors_get(st, "w", &t), 0);
    ck_assert_uint_eq((uintptr_t)dsp_tensor_data(t) % 4, 0);
    ck_assert_float_eq(((float *)dsp_tensor_data(t))[0], 0.0f);
    dsp_tensor_unref(&t);
    dsp_safetensors_close(&st);
}
END_TEST

static Suite *tensorio_suite(void)
{
    Suite *s = suite_create("tensorio");
    TCase *tc = tcase_create("npy");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fixtures_match_numpy);
    tcase_add_test(tc, test_safetensors_file_order_and_lookup);
    tcase_add_test(tc, test_npy_roundtrip_all_dtypes);
    tcase_add_test(tc, test_npy_write_strided_view);
    tcase_add_test(tc, test_npy_write_refuses_bf16_and_bad_dir);
    tcase_add_test(tc, test_npy_overwrite_is_atomic);
    tcase_add_test(tc, test_npy_malformed);
    suite_add_tcase(s, tc);

    tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_safetensors_roundtrip);
    tcase_add_test(tc, test_safetensors_write_strided_and_errors);
    tcase_add_test(tc, test_st_too_short);
    tcase_add_test(tc, test_st_length_past_end);
    tcase_add_test(tc, test_st_length_absurd);
    tcase_add_test(tc, test_st_not_json);
    tcase_add_test(tc, test_st_not_object);
    tcase_add_test(tc, test_st_entry_not_object);
    tcase_add_test(tc, test_st_missing_fields);
    tcase_add_test(tc, test_st_unknown_dtype);
    tcase_add_test(tc, test_st_unsupported_dtype);
    tcase_add_test(tc, test_st_negative_shape);
    tcase_add_test(tc, test_st_non_integer_shape);
    tcase_add_test(tc, test_st_too_many_dims);
    tcase_add_test(tc, test_st_bad_offsets_shape);
    tcase_add_test(tc, test_st_begin_after_end);
    tcase_add_test(tc, test_st_offsets_outside_data);
    tcase_add_test(tc, test_st_size_mismatch);
    tcase_add_test(tc, test_st_overlap);
    tcase_add_test(tc, test_st_metadata_not_strings);
    tcase_add_test(tc, test_st_duplicate_names);
    tcase_add_test(tc, test_st_unaligned_data_is_copied);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tensorio_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
