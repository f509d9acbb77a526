/* test_data.c - unit tests of the core data types: buffers, tensors, metadata, packets. */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

/* ---- helpers ------------------------------------------------------------ */

static int release_calls;

static void count_release(void *opaque, void *data)
{
    int *counter = opaque;

    __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
    free(data);
}

/* A tensor over a malloc'd buffer whose release bumps release_calls. */
static dsp_tensor *tracked_tensor(int n)
{
    dsp_buffer *buf = NULL;
    dsp_tensor *t = NULL;
    int64_t shape[1] = { n };
    float *data = malloc((size_t)n * sizeof(float));

    ck_assert_ptr_nonnull(data);
    ck_assert_int_eq(dsp_buffer_wrap(data, (size_t)n * sizeof(float), 0,
                                     count_release, &release_calls, &buf), 0);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 1, shape, NULL, buf,
                                            0, &t), 0);
    dsp_buffer_unref(&buf);
    return t;
}

static char *temp_file(const char *content, size_t n)
{
    char *path = strdup("/tmp/dsp_test_data_XXXXXX");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

/* ---- common ------------------------------------------------------------- */

START_TEST(test_version_strerror)
{
    ck_assert_str_eq(dsp_version(), DSP_VERSION_STRING);
    ck_assert_str_eq(dsp_strerror(DSP_EINVAL), "invalid argument");
    ck_assert_str_eq(dsp_strerror(DSP_ENOENT), "not found");
    ck_assert_str_eq(dsp_strerror(12345), "unknown error");
    for (int c = DSP_OK; c >= DSP_EFAILED; c--)
        ck_assert_str_ne(dsp_strerror(c), "unknown error");
    ck_assert_str_ne(dsp_strerror(DSP_EOF), "unknown error");
}
END_TEST

START_TEST(test_memory)
{
    char *p = dsp_malloc(0), *s;
    int *z;

    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    dsp_free(p);
    p = dsp_malloc(100);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    dsp_free(p);
    dsp_free(NULL);
    ck_assert_ptr_null(dsp_calloc(SIZE_MAX / 2, 4));
    z = dsp_calloc(16, sizeof(int));
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(z[i], 0);
    dsp_free(z);
    s = dsp_strdup("hello");
    ck_assert_str_eq(s, "hello");
    dsp_free(s);
    ck_assert_ptr_null(dsp_strdup(NULL));
}
END_TEST

static char log_seen[256];
static int log_count;

static void capture_log(void *user, dsp_log_level level, const char *ctx,
                        const char *msg)
{
    snprintf(log_seen, sizeof(log_seen), "%d|%s|%s", (int)level,
             ctx ? ctx : "-", msg);
    log_count++;
}

START_TEST(test_logging)
{
    dsp_log_level old = dsp_log_get_level();

    dsp_log_set_callback(capture_log, NULL);
    dsp_log_set_level(DSP_LOG_WARNING);
    log_count = 0;
    dsp_log(DSP_LOG_INFO, "x", "dropped");
    ck_assert_int_eq(log_count, 0);
    dsp_log(DSP_LOG_ERROR, "node@op", "bad %d\n", 42);
    ck_assert_int_eq(log_count, 1);
    ck_assert_str_eq(log_seen, "0|node@op|bad 42");
    dsp_log(DSP_LOG_WARNING, NULL, "%s", "w");
    ck_assert_str_eq(log_seen, "1|-|w");
    ck_assert_int_eq(dsp_log_get_level(), DSP_LOG_WARNING);
    dsp_log_set_level(old);
    dsp_log_set_callback(NULL, NULL);
}
END_TEST

/* ---- buffers ------------------------------------------------------------ */

START_TEST(test_buffer_refcount)
{
    dsp_buffer *b = NULL, *r;

    ck_assert_int_eq(dsp_buffer_new(32, &b), 0);
    ck_assert_uint_eq(dsp_buffer_size(b), 32);
    ck_assert_int_eq(dsp_buffer_get_kind(b), DSP_BUFFER_OWNED);
    ck_assert_int_eq(dsp_buffer_device(b).type, DSP_DEVICE_CPU);
    ck_assert_uint_eq((uintptr_t)dsp_buffer_data(b) % 64, 0);
    ck_assert(dsp_buffer_is_writable(b));
    r = dsp_buffer_ref(b);
    ck_assert_ptr_eq(r, b);
    ck_assert(!dsp_buffer_is_writable(b));
    dsp_buffer_unref(&r);
    ck_assert_ptr_null(r);
    ck_assert(dsp_buffer_is_writable(b));
    dsp_buffer_unref(&b);
    ck_assert_ptr_null(b);
    dsp_buffer_unref(&b);
    dsp_buffer_unref(NULL);
    ck_assert_ptr_null(dsp_buffer_ref(NULL));
    ck_assert_int_eq(dsp_buffer_new(0, &b), 0);
    ck_assert_uint_eq(dsp_buffer_size(b), 0);
    dsp_buffer_unref(&b);
}
END_TEST

START_TEST(test_buffer_wrap)
{
    dsp_buffer *b = NULL;
    char *mem = malloc(8);
    static char ro[4] = "abc";

    memcpy(mem, "1234567", 8);
    release_calls = 0;
    ck_assert_int_eq(dsp_buffer_wrap(mem, 8, 0, count_release, &release_calls,
                                     &b), 0);
    ck_assert_int_eq(dsp_buffer_get_kind(b), DSP_BUFFER_BORROWED);
    ck_assert_ptr_eq(dsp_buffer_data(b), mem);
    ck_assert(dsp_buffer_is_writable(b));
    dsp_buffer_unref(&b);
    ck_assert_int_eq(release_calls, 1);

    ck_assert_int_eq(dsp_buffer_wrap(NULL, 4, 0, NULL, NULL, &b), DSP_EINVAL);
    ck_assert_ptr_null(b);

    /* read-only static memory: make_writable must copy, never write */
    ck_assert_int_eq(dsp_buffer_wrap(ro, 4, 1, NULL, NULL, &b), 0);
    ck_assert(!dsp_buffer_is_writable(b));
    ck_assert_int_eq(dsp_buffer_make_writable(&b), 0);
    ck_assert_ptr_ne(dsp_buffer_data(b), ro);
    ck_assert_int_eq(dsp_buffer_get_kind(b), DSP_BUFFER_OWNED);
    ck_assert_str_eq(dsp_buffer_data(b), "abc");
    dsp_buffer_unref(&b);
}
END_TEST

START_TEST(test_buffer_make_writable_shared)
{
    dsp_buffer *a = NULL, *b;
    void *before;

    ck_assert_int_eq(dsp_buffer_new(4, &a), 0);
    memcpy(dsp_buffer_data(a), "abc", 4);
    before = dsp_buffer_data(a);
    ck_assert_int_eq(dsp_buffer_make_writable(&a), 0);
    ck_assert_ptr_eq(dsp_buffer_data(a), before);

    b = dsp_buffer_ref(a);
    ck_assert_int_eq(dsp_buffer_make_writable(&b), 0);
    ck_assert_ptr_ne(b, a);
    ((char *)dsp_buffer_data(b))[0] = 'X';
    ck_assert_str_eq(dsp_buffer_data(a), "abc");
    ck_assert_str_eq(dsp_buffer_data(b), "Xbc");
    ck_assert(dsp_buffer_is_writable(a));
    dsp_buffer_unref(&a);
    dsp_buffer_unref(&b);
}
END_TEST

START_TEST(test_buffer_map_file)
{
    char *path = temp_file("mapped bytes", 12);
    char *empty = temp_file("", 0);
    char dir[] = "/tmp/dsp_test_dir_XXXXXX";
    dsp_buffer *b = NULL;

    ck_assert_int_eq(dsp_buffer_map_file(path, &b), 0);
    ck_assert_int_eq(dsp_buffer_get_kind(b), DSP_BUFFER_MAPPED);
    ck_assert_uint_eq(dsp_buffer_size(b), 12);
    ck_assert_int_eq(memcmp(dsp_buffer_data(b), "mapped bytes", 12), 0);
    ck_assert(!dsp_buffer_is_writable(b));
    ck_assert_int_eq(dsp_buffer_device(b).type, DSP_DEVICE_CPU);
    ck_assert_int_eq(dsp_buffer_make_writable(&b), 0);
    ck_assert_int_eq(dsp_buffer_get_kind(b), DSP_BUFFER_OWNED);
    ((char *)dsp_buffer_data(b))[0] = 'M';
    ck_assert_int_eq(memcmp(dsp_buffer_data(b), "Mapped bytes", 12), 0);
    dsp_buffer_unref(&b);

    /* the file itself is untouched by the private copy */
    ck_assert_int_eq(dsp_buffer_map_file(path, &b), 0);
    ck_assert_int_eq(memcmp(dsp_buffer_data(b), "mapped bytes", 12), 0);
    dsp_buffer_unref(&b);

    ck_assert_int_eq(dsp_buffer_map_file(empty, &b), 0);
    ck_assert_ptr_null(dsp_buffer_data(b));
    ck_assert_uint_eq(dsp_buffer_size(b), 0);
    dsp_buffer_unref(&b);

    ck_assert_int_eq(dsp_buffer_map_file("/nonexistent/dsp/file", &b),
                     DSP_ENOENT);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(dsp_buffer_map_file(dir, &b), DSP_EINVAL);
    ck_assert_ptr_null(b);

    unlink(path);
    unlink(empty);
    rmdir(dir);
    free(path);
    free(empty);
}
END_TEST

/* ---- tensors ------------------------------------------------------------ */

START_TEST(test_dtype_names)
{
    dsp_dtype dt;

    for (int i = 0; i < DSP_DTYPE_COUNT; i++) {
        ck_assert_uint_gt(dsp_dtype_size((dsp_dtype)i), 0);
        ck_assert_int_eq(dsp_dtype_from_name(dsp_dtype_name((dsp_dtype)i), &dt), 0);
        ck_assert_int_eq(dt, i);
    }
    ck_assert_uint_eq(dsp_dtype_size(DSP_DTYPE_BF16), 2);
    ck_assert_uint_eq(dsp_dtype_size(DSP_DTYPE_U64), 8);
    ck_assert_uint_eq(dsp_dtype_size(DSP_DTYPE_COUNT), 0);
    ck_assert_str_eq(dsp_dtype_name(DSP_DTYPE_COUNT), "invalid");
    ck_assert_str_eq(dsp_dtype_name((dsp_dtype)-1), "invalid");
    ck_assert_int_eq(dsp_dtype_from_name("float32", &dt), DSP_EINVAL);
    ck_assert_int_eq(dsp_dtype_from_name("invalid", &dt), DSP_EINVAL);
}
END_TEST

START_TEST(test_tensor_new)
{
    int64_t shape[3] = { 2, 3, 4 };
    dsp_tensor *t = NULL, *r;
    char desc[64];

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape, &t), 0);
    ck_assert_int_eq(t->stride[0], 12);
    ck_assert_int_eq(t->stride[1], 4);
    ck_assert_int_eq(t->stride[2], 1);
    ck_assert_int_eq(dsp_tensor_numel(t), 24);
    ck_assert_uint_eq(dsp_tensor_nbytes(t), 96);
    ck_assert(dsp_tensor_is_contiguous(t));
    ck_assert_int_eq(t->device.type, DSP_DEVICE_CPU);
    ck_assert_ptr_eq(dsp_tensor_data(t), dsp_buffer_data(t->buf));
    ck_assert_str_eq(dsp_tensor_describe(t, desc, sizeof(desc)), "f32[2,3,4]");
    ck_assert_str_eq(dsp_tensor_describe(t, desc, 6), "f32[2");
    r = dsp_tensor_ref(t);
    ck_assert_ptr_eq(r, t);
    dsp_tensor_unref(&r);
    ck_assert_ptr_null(r);
    dsp_tensor_unref(&t);
    ck_assert_ptr_null(t);
    dsp_tensor_unref(&t);
    dsp_tensor_unref(NULL);
}
END_TEST

START_TEST(test_tensor_invalid)
{
    int64_t neg[2] = { 2, -1 }, big[2] = { INT64_C(1) << 40, INT64_C(1) << 40 };
    int64_t huge[1] = { INT64_C(1) << 61 }, ok[1] = { 1 };
    dsp_tensor *t = (dsp_tensor *)&t;

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_COUNT, 1, ok, &t), DSP_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 9, ok, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, -1, ok, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, NULL, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 2, neg, &t), DSP_EINVAL);
    /* numel overflows int64 */
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 2, big, &t), DSP_EINVAL);
    /* numel fits, numel * 8 bytes does not */
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U64, 1, huge, &t), DSP_EINVAL);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_tensor_scalar_and_empty)
{
    int64_t zshape[3] = { 3, 0, 2 };
    dsp_tensor *s = NULL, *z = NULL, *c = NULL, *v = NULL;
    dsp_buffer *empty = NULL;
    char desc[32];

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F64, 0, NULL, &s), 0);
    ck_assert_int_eq(dsp_tensor_numel(s), 1);
    ck_assert_uint_eq(dsp_tensor_nbytes(s), 8);
    ck_assert(dsp_tensor_is_contiguous(s));
    *(double *)dsp_tensor_data(s) = 2.5;
    ck_assert_str_eq(dsp_tensor_describe(s, desc, sizeof(desc)), "f64[]");
    v = dsp_tensor_ref(s);
    ck_assert_int_eq(dsp_tensor_make_writable(&v), 0);
    ck_assert_ptr_ne(v, s);
    ck_assert(*(double *)dsp_tensor_data(v) == 2.5);
    dsp_tensor_unref(&v);

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_I16, 3, zshape, &z), 0);
    ck_assert_int_eq(dsp_tensor_numel(z), 0);
    ck_assert_uint_eq(dsp_tensor_nbytes(z), 0);
    ck_assert(dsp_tensor_is_contiguous(z));
    ck_assert_str_eq(dsp_tensor_describe(z, desc, sizeof(desc)), "i16[3,0,2]");
    ck_assert_int_eq(dsp_tensor_contiguous(z, &c), 0);
    ck_assert_ptr_eq(c, z);
    dsp_tensor_unref(&c);
    c = dsp_tensor_ref(z);
    ck_assert_int_eq(dsp_tensor_make_writable(&c), 0);
    ck_assert_ptr_ne(c, z);
    ck_assert_int_eq(dsp_tensor_numel(c), 0);
    dsp_tensor_unref(&c);

    /* a zero-size view of an empty buffer */
    ck_assert_int_eq(dsp_buffer_new(0, &empty), 0);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 3, zshape, NULL,
                                            empty, 0, &v), 0);
    ck_assert_int_eq(dsp_tensor_numel(v), 0);
    dsp_tensor_unref(&v);
    dsp_buffer_unref(&empty);
    dsp_tensor_unref(&s);
    dsp_tensor_unref(&z);
}
END_TEST

START_TEST(test_tensor_from_buffer_bounds)
{
    int64_t shape[2] = { 2, 3 };
    int64_t st_pad[2] = { 4, 1 }, st_neg[2] = { -3, -1 }, st_bcast[2] = { 0, 1 };
    int64_t st_huge[2] = { INT64_MAX / 2, 1 };
    dsp_buffer *b = NULL;
    dsp_tensor *t = NULL;
    float *f;

    ck_assert_int_eq(dsp_buffer_new(6 * sizeof(float), &b), 0);
    f = dsp_buffer_data(b);
    for (int i = 0; i < 6; i++)
        f[i] = (float)i;

    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, NULL, b,
                                            0, &t), 0);
    ck_assert(!dsp_buffer_is_writable(b));  /* the tensor holds a reference */
    dsp_tensor_unref(&t);
    ck_assert(dsp_buffer_is_writable(b));

    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, NULL, b,
                                            4, &t), DSP_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, st_pad, b,
                                            0, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, st_huge,
                                            b, 0, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F64, 2, shape, NULL, b,
                                            0, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_U8, 0, NULL, NULL, b,
                                            24, &t), DSP_EINVAL);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_U8, 0, NULL, NULL, b,
                                            23, &t), 0);
    dsp_tensor_unref(&t);

    /* reversed view: starts at the last element and walks backwards */
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, st_neg, b,
                                            20, &t), 0);
    ck_assert(!dsp_tensor_is_contiguous(t));
    ck_assert(*(float *)dsp_tensor_data(t) == 5.0f);
    dsp_tensor_unref(&t);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, st_neg, b,
                                            16, &t), DSP_EINVAL);

    /* a broadcast (stride 0) view repeats one row */
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, st_bcast,
                                            b, 0, &t), 0);
    dsp_tensor_unref(&t);
    dsp_buffer_unref(&b);
}
END_TEST

START_TEST(test_tensor_strided_copy)
{
    int64_t shape[3] = { 2, 3, 4 }, tshape[3] = { 4, 3, 2 };
    int64_t tstride[3] = { 1, 4, 12 };
    int64_t rshape[1] = { 24 }, rstride[1] = { -1 };
    dsp_tensor *t = NULL, *view = NULL, *c = NULL, *r = NULL;
    int32_t *src, *dst;

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_I32, 3, shape, &t), 0);
    src = dsp_tensor_data(t);
    for (int i = 0; i < 24; i++)
        src[i] = i;

    /* view[k][j][i] == t[i][j][k] */
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_I32, 3, tshape, tstride,
                                            t->buf, 0, &view), 0);
    ck_assert(!dsp_tensor_is_contiguous(view));
    ck_assert_int_eq(dsp_tensor_contiguous(view, &c), 0);
    ck_assert_ptr_ne(c, view);
    ck_assert(dsp_tensor_is_contiguous(c));
    ck_assert_int_eq(c->shape[0], 4);
    dst = dsp_tensor_data(c);
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                ck_assert_int_eq(dst[(k * 3 + j) * 2 + i], i * 12 + j * 4 + k);
    dsp_tensor_unref(&c);

    /* make_writable on a view of a shared buffer copies the same way */
    ck_assert_int_eq(dsp_tensor_make_writable(&view), 0);
    ck_assert(dsp_tensor_is_contiguous(view));
    dst = dsp_tensor_data(view);
    ck_assert_int_eq(dst[1], 12);
    ck_assert_int_eq(dst[2], 4);
    dst[0] = -7;
    ck_assert_int_eq(src[0], 0);
    dsp_tensor_unref(&view);

    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_I32, 1, rshape, rstride,
                                            t->buf, 23 * 4, &r), 0);
    ck_assert_int_eq(dsp_tensor_contiguous(r, &c), 0);
    dst = dsp_tensor_data(c);
    for (int i = 0; i < 24; i++)
        ck_assert_int_eq(dst[i], 23 - i);
    dsp_tensor_unref(&c);
    dsp_tensor_unref(&r);
    dsp_tensor_unref(&t);
}
END_TEST

START_TEST(test_tensor_make_writable)
{
    int64_t shape[1] = { 4 };
    dsp_tensor *t = NULL, *u, *m = NULL;
    dsp_buffer *mapped = NULL;
    char *path = temp_file("\1\2\3\4", 4);
    float *a;

    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, shape, &t), 0);
    a = dsp_tensor_data(t);
    for (int i = 0; i < 4; i++)
        a[i] = (float)i;
    u = t;
    ck_assert_int_eq(dsp_tensor_make_writable(&u), 0);
    ck_assert_ptr_eq(u, t);

    u = dsp_tensor_ref(t);
    ck_assert_int_eq(dsp_tensor_make_writable(&u), 0);
    ck_assert_ptr_ne(u, t);
    ((float *)dsp_tensor_data(u))[0] = 42.0f;
    ck_assert(a[0] == 0.0f);
    ck_assert(((float *)dsp_tensor_data(u))[3] == 3.0f);
    dsp_tensor_unref(&u);

    ck_assert_int_eq(dsp_buffer_map_file(path, &mapped), 0);
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_U8, 1, shape, NULL,
                                            mapped, 0, &m), 0);
    dsp_buffer_unref(&mapped);
    u = m;
    ck_assert_int_eq(dsp_tensor_make_writable(&m), 0);
    ck_assert_ptr_ne(m, u);
    ck_assert_int_eq(((uint8_t *)dsp_tensor_data(m))[3], 4);
    ck_assert_int_eq(dsp_buffer_get_kind(m->buf), DSP_BUFFER_OWNED);
    dsp_tensor_unref(&m);
    dsp_tensor_unref(&t);
    unlink(path);
    free(path);
}
END_TEST

/* ---- metadata ----------------------------------------------------------- */

START_TEST(test_meta_types)
{
    dsp_meta *m = dsp_meta_new();
    double f, fs[4] = { 0 }, in[3] = { 1.5, NAN, -2 };
    int64_t i, is[3] = { 1, -2, INT64_MAX };
    const char *s;
    size_t n;
    int b;

    ck_assert_int_eq(dsp_meta_set_int(m, "i", -5), 0);
    ck_assert_int_eq(dsp_meta_set_float(m, "f", 0.25), 0);
    ck_assert_int_eq(dsp_meta_set_bool(m, "b", 7), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "s", "héllo"), 0);
    ck_assert_int_eq(dsp_meta_set_floats(m, "fs", in, 3), 0);
    ck_assert_int_eq(dsp_meta_set_ints(m, "is", is, 3), 0);
    ck_assert_int_eq(dsp_meta_set_float(m, "nan", NAN), 0);
    ck_assert_uint_eq(dsp_meta_size(m), 7);

    ck_assert_int_eq(dsp_meta_get_int(m, "i", &i), 0);
    ck_assert_int_eq(i, -5);
    ck_assert_int_eq(dsp_meta_get_float(m, "f", &f), 0);
    ck_assert(f == 0.25);
    ck_assert_int_eq(dsp_meta_get_float(m, "i", &f), 0);
    ck_assert(f == -5.0);
    ck_assert_int_eq(dsp_meta_get_bool(m, "b", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(dsp_meta_get_str(m, "s", &s), 0);
    ck_assert_str_eq(s, "héllo");
    ck_assert_int_eq(dsp_meta_get_float(m, "nan", &f), 0);
    ck_assert(isnan(f));

    ck_assert_int_eq(dsp_meta_get_floats(m, "fs", fs, 4, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert(fs[0] == 1.5 && isnan(fs[1]) && fs[2] == -2.0);
    ck_assert_int_eq(dsp_meta_get_floats(m, "is", fs, 2, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert(fs[0] == 1.0 && fs[1] == -2.0);
    ck_assert_int_eq(dsp_meta_get_floats(m, "fs", NULL, 0, &n), 0);
    ck_assert_uint_eq(n, 3);
    /* string arrays: borrowed strings, the length even past max */
    const char *strs[2] = { "a/b.dcm", "c" }, *got[2] = { NULL, NULL };
    ck_assert_int_eq(dsp_meta_set_strs(m, "ss", strs, 2), 0);
    ck_assert_int_eq(dsp_meta_get_strs(m, "ss", got, 1, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert(!strcmp(got[0], "a/b.dcm") && got[1] == NULL);
    ck_assert_int_eq(dsp_meta_get_strs(m, "fs", got, 2, &n), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_strs(m, "s", got, 2, &n), DSP_EINVAL);
    strs[1] = "\xff";
    ck_assert_int_eq(dsp_meta_set_strs(m, "bad", strs, 2), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_remove(m, "ss"), 0);

    /* wrong type, missing key */
    ck_assert_int_eq(dsp_meta_get_int(m, "f", &i), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_str(m, "i", &s), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_bool(m, "i", &b), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_float(m, "s", &f), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_floats(m, "i", fs, 4, &n), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_get_int(m, "nope", &i), DSP_ENOENT);
    ck_assert_int_eq(dsp_meta_get_floats(m, "nope", fs, 4, &n), DSP_ENOENT);
    ck_assert_ptr_null(dsp_meta_get_dict(m, "i"));

    /* invalid UTF-8 is refused, not mistaken for out-of-memory */
    ck_assert_int_eq(dsp_meta_set_str(m, "bad", "\xff\xfe"), DSP_EINVAL);
    ck_assert_int_eq(dsp_meta_set_int(m, "\xc3", 1), DSP_EINVAL);

    ck_assert(dsp_meta_has(m, "i"));
    ck_assert_int_eq(dsp_meta_remove(m, "i"), 0);
    ck_assert(!dsp_meta_has(m, "i"));
    ck_assert_int_eq(dsp_meta_remove(m, "i"), DSP_ENOENT);
    dsp_meta_free(&m);
    ck_assert_ptr_null(m);
    dsp_meta_free(&m);
}
END_TEST

START_TEST(test_meta_nested_json)
{
    dsp_meta *m = dsp_meta_new(), *d, *c, *src = dsp_meta_new();
    const dsp_meta *g;
    char *js;
    int64_t i;

    ck_assert_int_eq(dsp_meta_set_int(m, "zeta", 1), 0);
    ck_assert_int_eq(dsp_meta_set_str(m, "alpha", "a\"b"), 0);
    d = dsp_meta_dict(m, "mid");
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(dsp_meta_dict(m, "mid"), d);
    ck_assert_int_eq(dsp_meta_set_bool(d, "y", 0), 0);
    ck_assert_int_eq(dsp_meta_set_float(d, "x", INFINITY), 0);
    ck_assert_int_eq(dsp_meta_set_int(dsp_meta_dict(d, "deep"), "k", 3), 0);
    g = dsp_meta_get_dict(m, "mid");
    ck_assert_ptr_eq(g, d);
    ck_assert_int_eq(dsp_meta_get_int(dsp_meta_get_dict(g, "deep"), "k", &i), 0);
    ck_assert_int_eq(i, 3);

    js = dsp_meta_to_json(m);
    ck_assert_str_eq(js, "{\"alpha\":\"a\\\"b\",\"mid\":{\"deep\":{\"k\":3},"
                         "\"x\":null,\"y\":false},\"zeta\":1}");
    dsp_free(js);

    /* dict replaces a non-dictionary value */
    ck_assert_ptr_nonnull(dsp_meta_dict(m, "zeta"));
    ck_assert_int_eq(dsp_meta_get_int(m, "zeta", &i), DSP_EINVAL);

    ck_assert_int_eq(dsp_meta_set_json(m, "j", "[1, {\"a\": 2}]"), 0);
    ck_assert_int_eq(dsp_meta_set_json(m, "n", "7"), 0);
    ck_assert_int_eq(dsp_meta_get_int(m, "n", &i), 0);
    ck_assert_int_eq(i, 7);
    ck_assert_int_eq(dsp_meta_set_json(m, "bad", "{oops"), DSP_EFORMAT);
    ck_assert(!dsp_meta_has(m, "bad"));

    /* copy is deep: changing the copy's nested dict leaves m alone */
    c = dsp_meta_copy(m);
    ck_assert_int_eq(dsp_meta_set_int(dsp_meta_dict(c, "mid"), "y", 9), 0);
    ck_assert_int_eq(dsp_meta_get_int(dsp_meta_get_dict(m, "mid"), "y", &i),
                     DSP_EINVAL);
    dsp_meta_free(&c);

    /* update copies deeply and overwrites */
    ck_assert_int_eq(dsp_meta_set_int(dsp_meta_dict(src, "sub"), "v", 1), 0);
    ck_assert_int_eq(dsp_meta_set_str(src, "alpha", "new"), 0);
    ck_assert_int_eq(dsp_meta_update(m, src), 0);
    ck_assert_int_eq(dsp_meta_set_int(dsp_meta_dict(src, "sub"), "v", 2), 0);
    ck_assert_int_eq(dsp_meta_get_int(dsp_meta_get_dict(m, "sub"), "v", &i), 0);
    ck_assert_int_eq(i, 1);
    js = dsp_meta_to_json(dsp_meta_get_dict(m, "sub"));
    ck_assert_str_eq(js, "{\"v\":1}");
    dsp_free(js);

    dsp_meta_free(&src);
    dsp_meta_free(&m);
}
END_TEST

/* ---- packets ------------------------------------------------------------ */

START_TEST(test_packet_tensors)
{
    dsp_packet *p = NULL;
    dsp_tensor *a, *b, *b2, *c;
    const char *name;

    release_calls = 0;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_item(p), 0);
    ck_assert_int_eq(dsp_packet_part(p), 0);
    ck_assert_int_eq(dsp_packet_last(p), 1);
    ck_assert(isnan(dsp_packet_pts(p)));
    ck_assert(dsp_packet_is_writable(p));
    ck_assert_int_eq(dsp_packet_tensor_count(p), 0);
    ck_assert_uint_eq(dsp_meta_size(dsp_packet_meta_const(p)), 0);

    a = tracked_tensor(1);
    b = tracked_tensor(2);
    b2 = tracked_tensor(3);
    c = tracked_tensor(4);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "a", a), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "b", b), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "c", c), 0);
    ck_assert_int_eq(dsp_packet_tensor_count(p), 3);
    ck_assert_ptr_eq(dsp_packet_tensor(p, "b"), b);
    ck_assert_ptr_null(dsp_packet_tensor(p, "zz"));
    ck_assert_ptr_eq(dsp_packet_tensor_at(p, 2, &name), c);
    ck_assert_str_eq(name, "c");
    ck_assert_ptr_null(dsp_packet_tensor_at(p, 3, &name));
    ck_assert_ptr_null(name);
    ck_assert_ptr_null(dsp_packet_tensor_at(p, -1, NULL));

    /* replacing keeps the position and drops the old tensor */
    ck_assert_int_eq(dsp_packet_set_tensor(p, "b", b2), 0);
    ck_assert_int_eq(release_calls, 1);
    ck_assert_ptr_eq(dsp_packet_tensor_at(p, 1, &name), b2);
    ck_assert_str_eq(name, "b");

    ck_assert_int_eq(dsp_packet_remove_tensor(p, "a"), 0);
    ck_assert_int_eq(release_calls, 2);
    ck_assert_int_eq(dsp_packet_remove_tensor(p, "a"), DSP_ENOENT);
    ck_assert_int_eq(dsp_packet_tensor_count(p), 2);
    ck_assert_ptr_eq(dsp_packet_tensor_at(p, 0, &name), b2);
    ck_assert_str_eq(name, "b");
    ck_assert_ptr_eq(dsp_packet_tensor_at(p, 1, &name), c);

    /* transfer full also on failure */
    ck_assert_int_eq(dsp_packet_set_tensor(p, NULL, tracked_tensor(1)),
                     DSP_EINVAL);
    ck_assert_int_eq(release_calls, 3);

    dsp_packet_set_pos(p, 7, 2, 0);
    dsp_packet_set_pts(p, 1.5);
    ck_assert_int_eq(dsp_packet_item(p), 7);
    ck_assert_int_eq(dsp_packet_part(p), 2);
    ck_assert_int_eq(dsp_packet_last(p), 0);
    ck_assert(dsp_packet_pts(p) == 1.5);

    dsp_packet_unref(&p);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(release_calls, 5);
    dsp_packet_unref(&p);
    dsp_packet_unref(NULL);
}
END_TEST

START_TEST(test_packet_derive_and_shared)
{
    dsp_packet *p = NULL, *d = NULL, *q;
    dsp_tensor *t = tracked_tensor(2);
    int64_t i;

    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "x", t), 0);
    ck_assert_int_eq(dsp_meta_set_int(dsp_packet_meta(p), "k", 1), 0);
    dsp_packet_set_pos(p, 3, 4, 0);
    dsp_packet_set_pts(p, 0.5);

    ck_assert_int_eq(dsp_packet_derive(p, &d), 0);
    ck_assert_ptr_eq(dsp_packet_tensor(d, "x"), t);
    ck_assert_int_eq(dsp_packet_item(d), 3);
    ck_assert_int_eq(dsp_packet_part(d), 4);
    ck_assert_int_eq(dsp_packet_last(d), 0);
    ck_assert(dsp_packet_pts(d) == 0.5);
    ck_assert_int_eq(dsp_meta_set_int(dsp_packet_meta(d), "k", 2), 0);
    ck_assert_int_eq(dsp_meta_get_int(dsp_packet_meta_const(p), "k", &i), 0);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(dsp_packet_remove_tensor(d, "x"), 0);
    ck_assert_ptr_eq(dsp_packet_tensor(p, "x"), t);
    dsp_packet_unref(&d);

    /* a second reference makes the packet read-only for both holders */
    q = dsp_packet_ref(p);
    ck_assert(!dsp_packet_is_writable(p));
    ck_assert_int_eq(dsp_packet_set_tensor(q, "y", tracked_tensor(1)),
                     DSP_ESTATE);
    ck_assert_int_eq(dsp_packet_make_writable(&q), 0);
    ck_assert_ptr_ne(q, p);
    ck_assert(dsp_packet_is_writable(q));
    ck_assert(dsp_packet_is_writable(p));
    d = p;
    ck_assert_int_eq(dsp_packet_make_writable(&p), 0);
    ck_assert_ptr_eq(p, d);
    dsp_packet_unref(&q);
    dsp_packet_unref(&p);
}
END_TEST

/* An operator that forwards its input, so the harness emits (and thereby
 * freezes) the very packet the test pushed. */
static int forward_process(dsp_node *node, dsp_packet **in)
{
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

static const dsp_port_def forward_in[] = { { "in", "any", "input" }, { NULL } };
static const dsp_port_def forward_out[] = { { "out", "any", "the input" },
                                            { NULL } };
static const dsp_op_def forward_op = {
    .struct_size = sizeof(dsp_op_def), .name = "test.forward",
    .doc = "emit the input packet unchanged",
    .inputs = forward_in, .outputs = forward_out,
    .process = forward_process,
};
static const dsp_op_def *const forward_ops[] = { &forward_op, NULL };
static const dsp_plugin_desc forward_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "test", "1.0", "MIT",
    "test_data operators", forward_ops, { 0 }
};

static void quiet_log(void *user, dsp_log_level level, const char *ctx,
                      const char *msg)
{
}

START_TEST(test_packet_frozen)
{
    static const char *const no_params[] = { NULL };
    dsp_context *ctx = NULL;
    dsp_harness *h = NULL;
    dsp_packet *p = NULL, *out, *w;
    dsp_tensor *t = tracked_tensor(2);

    release_calls = 0;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_register(ctx, &forward_desc, "test_data"), 0);
    ck_assert_int_eq(dsp_harness_new(ctx, "test.forward", no_params, 1, &h), 0);
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "x", t), 0);
    dsp_packet_set_pos(p, 5, 0, 1);
    ck_assert_int_eq(dsp_harness_push(h, 0, p), 0);
    out = dsp_harness_pull(h, 0);
    ck_assert_ptr_eq(out, p);
    dsp_harness_free(&h);
    dsp_context_free(&ctx);

    /* emitted: read-only even with a single reference */
    ck_assert(!dsp_packet_is_writable(out));
    ck_assert_int_eq(dsp_packet_set_tensor(out, "y", tracked_tensor(1)),
                     DSP_ESTATE);
    ck_assert_int_eq(release_calls, 1);
    ck_assert_int_eq(dsp_packet_remove_tensor(out, "x"), DSP_ESTATE);
    dsp_log_set_callback(quiet_log, NULL);
    dsp_packet_set_pos(out, 9, 9, 0);
    dsp_log_set_callback(NULL, NULL);
    ck_assert_int_eq(dsp_packet_item(out), 5);

    w = dsp_packet_ref(out);
    ck_assert_int_eq(dsp_packet_make_writable(&w), 0);
    ck_assert_ptr_ne(w, out);
    ck_assert(dsp_packet_is_writable(w));
    ck_assert_int_eq(dsp_packet_item(w), 5);
    ck_assert_ptr_eq(dsp_packet_tensor(w, "x"), t);
    ck_assert_int_eq(dsp_packet_remove_tensor(w, "x"), 0);
    ck_assert_ptr_eq(dsp_packet_tensor(out, "x"), t);
    dsp_packet_unref(&out);
    ck_assert_int_eq(release_calls, 2);
    dsp_packet_unref(&w);
}
END_TEST

#define REF_THREADS 8
#define REF_ROUNDS 100000

static void *ref_worker(void *arg)
{
    dsp_packet *p = arg;

    for (int i = 0; i < REF_ROUNDS; i++) {
        dsp_packet *r = dsp_packet_ref(p);
        dsp_tensor *t = dsp_tensor_ref(dsp_packet_tensor(r, "x"));

        dsp_tensor_unref(&t);
        dsp_packet_unref(&r);
    }
    return NULL;
}

START_TEST(test_packet_refcount_threads)
{
    pthread_t th[REF_THREADS];
    dsp_packet *p = NULL;

    release_calls = 0;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "x", tracked_tensor(16)), 0);
    for (int i = 0; i < REF_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, ref_worker, p), 0);
    for (int i = 0; i < REF_THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(release_calls, 0);
    ck_assert(dsp_packet_is_writable(p));
    dsp_packet_unref(&p);
    ck_assert_int_eq(release_calls, 1);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc;

    tc = tcase_create("common");
    tcase_add_test(tc, test_version_strerror);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_logging);
    suite_add_tcase(s, tc);

    tc = tcase_create("buffer");
    tcase_add_test(tc, test_buffer_refcount);
    tcase_add_test(tc, test_buffer_wrap);
    tcase_add_test(tc, test_buffer_make_writable_shared);
    tcase_add_test(tc, test_buffer_map_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("tensor");
    tcase_add_test(tc, test_dtype_names);
    tcase_add_test(tc, test_tensor_new);
    tcase_add_test(tc, test_tensor_invalid);
    tcase_add_test(tc, test_tensor_scalar_and_empty);
    tcase_add_test(tc, test_tensor_from_buffer_bounds);
    tcase_add_test(tc, test_tensor_strided_copy);
    tcase_add_test(tc, test_tensor_make_writable);
    suite_add_tcase(s, tc);

    tc = tcase_create("meta");
    tcase_add_test(tc, test_meta_types);
    tcase_add_test(tc, test_meta_nested_json);
    suite_add_tcase(s, tc);

    tc = tcase_create("packet");
    tcase_add_test(tc, test_packet_tensors);
    tcase_add_test(tc, test_packet_derive_and_shared);
    tcase_add_test(tc, test_packet_frozen);
    tcase_add_test(tc, test_packet_refcount_threads);
    /* valgrind makes the threaded test slow */
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
