/* test_image.c - operators of dsp_image.so through the harness, against Pillow / torchvision fixtures. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>
#include <dspipe/tensorio.h>

#include "testutil.h"

/* ---- fixture: a context with the plugins, the expected arrays, a scratch dir --- */

static dsp_context *ctx;
static dsp_safetensors *expected;
static char tmpdir[256];

static const char *fixture(const char *name)
{
    return tu_fixture("image", name);
}

static const char *tp(const char *name)
{
    return tu_join(tmpdir, name);
}

static void setup(void)
{
    ck_assert_ptr_nonnull(tu_make_tmpdir(tmpdir, sizeof tmpdir, "image"));
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "image.decode") != NULL,
                  "image.decode not found: is plugins/image/.libs on DSPIPE_PLUGIN_PATH?");
    char *why = NULL;
    int err = dsp_safetensors_open(fixture("expected.safetensors"), &expected, &why);
    ck_assert_msg(err == 0, "%s", why ? why : "cannot open expected.safetensors");
}

static void teardown(void)
{
    dsp_safetensors_close(&expected);
    dsp_context_free(&ctx);
    tu_remove_tree(tmpdir);
}

/* The expected array `key` (new reference). */
static dsp_tensor *want(const char *key)
{
    dsp_tensor *t = NULL;
    ck_assert_msg(dsp_safetensors_get(expected, key, &t) == 0, "no '%s' in expected", key);
    return t;
}

static dsp_harness *harness(const char *op, const char *const *params)
{
    dsp_harness *h = NULL;
    int err = dsp_harness_new(ctx, op, params, 1, &h);
    ck_assert_msg(err == 0, "%s: %s", op, dsp_context_errmsg(ctx));
    return h;
}

static void expect_init_fail(const char *op, const char *const *params, const char *needle)
{
    dsp_harness *h = NULL;
    ck_assert_int_lt(dsp_harness_new(ctx, op, params, 1, &h), 0);
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(dsp_context_errmsg(ctx), needle) != NULL, "'%s' not in: %s", needle,
                  dsp_context_errmsg(ctx));
}

static dsp_packet *record(const char *path)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", path), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "source", path), 0);
    return p;
}

/* A packet holding t (a new reference is taken) as "image". */
static dsp_packet *image_packet(dsp_tensor *t, const char *layout)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "image", dsp_tensor_ref(t)), 0);
    if (layout)
        ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "layout", layout), 0);
    return p;
}

/* Push one packet; on success return the one packet emitted. */
static dsp_packet *run_ok(dsp_harness *h, dsp_packet *in)
{
    int err = dsp_harness_push(h, 0, in);
    ck_assert_msg(err == 0, "failed (%d): %s", err, dsp_harness_errmsg(h));
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    return out;
}

/* Push one packet that must fail with code and a message holding every
 * needle (NULL-terminated). */
static void run_fail(dsp_harness *h, dsp_packet *in, int code, const char *const *needles)
{
    int err = dsp_harness_push(h, 0, in);
    const char *msg = dsp_harness_errmsg(h);
    ck_assert_msg(err == code, "%s: want %d (%s), got %d: %s", needles[0], code,
                  dsp_strerror(code), err, msg);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "'%s' not in: %s", needles[i], msg);
}

static dsp_packet *decode_file(const char *const *params, const char *path)
{
    dsp_harness *h = harness("image.decode", params);
    dsp_packet *out = run_ok(h, record(path));
    dsp_harness_free(&h);
    return out;
}

static int64_t meta_int(const dsp_packet *p, const char *key)
{
    int64_t v = 0;
    ck_assert_msg(dsp_meta_get_int(dsp_packet_meta_const(p), key, &v) == 0, "no meta %s", key);
    return v;
}

static const char *meta_str(const dsp_packet *p, const char *key)
{
    const char *s = NULL;
    ck_assert_msg(dsp_meta_get_str(dsp_packet_meta_const(p), key, &s) == 0, "no meta %s", key);
    return s;
}

static double element(const dsp_tensor *t, const void *base, int64_t k)
{
    switch (t->dtype) {
    case DSP_DTYPE_U8: return ((const uint8_t *)base)[k];
    case DSP_DTYPE_U16: return ((const uint16_t *)base)[k];
    case DSP_DTYPE_F32: return ((const float *)base)[k];
    case DSP_DTYPE_I64: return (double)((const int64_t *)base)[k];
    default: ck_abort_msg("unexpected dtype %s", dsp_dtype_name(t->dtype)); return 0;
    }
}

/* Largest |got - want| after checking dtype and shape (a 2-D got matches an
 * H x W x 1 want). */
static double max_diff(const dsp_tensor *got, const dsp_tensor *wantt, const char *what)
{
    char a[96], b[96];
    dsp_tensor_describe(got, a, sizeof a);
    dsp_tensor_describe(wantt, b, sizeof b);
    ck_assert_msg(got->dtype == wantt->dtype, "%s: got %s, want %s", what, a, b);
    int same = got->ndim == wantt->ndim;
    for (int i = 0; same && i < got->ndim; i++)
        same = got->shape[i] == wantt->shape[i];
    if (!same && got->ndim == 2 && wantt->ndim == 3 && wantt->shape[2] == 1)
        same = got->shape[0] == wantt->shape[0] && got->shape[1] == wantt->shape[1];
    ck_assert_msg(same, "%s: got %s, want %s", what, a, b);
    dsp_tensor *g = NULL, *w = NULL;
    ck_assert_int_eq(dsp_tensor_contiguous((dsp_tensor *)got, &g), 0);
    ck_assert_int_eq(dsp_tensor_contiguous((dsp_tensor *)wantt, &w), 0);
    double m = 0;
    const void *gd = dsp_tensor_data(g), *wd = dsp_tensor_data(w);
    for (int64_t k = 0; k < dsp_tensor_numel(g); k++) {
        double d = fabs(element(g, gd, k) - element(w, wd, k));
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    dsp_tensor_unref(&g);
    dsp_tensor_unref(&w);
    return m;
}

static void expect_equal(const dsp_tensor *got, const char *key)
{
    dsp_tensor *w = want(key);
    double d = max_diff(got, w, key);
    ck_assert_msg(d == 0, "%s: differs by up to %g", key, d);
    dsp_tensor_unref(&w);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(d);
    *n = fread(d, 1, (size_t)len, fp);
    fclose(fp);
    return d;
}

/* ---- decode: PNG ------------------------------------------------------------ */

static const char *const png_files[] = {
    "gray8", "gray_alpha8", "rgb8", "rgba8", "palette", "palette_trns", "palette4", "gray1",
    "gray2", "gray4", "gray16", "gray_alpha16", "rgb16", "rgba16", "gray16_interlaced",
    "rgb8_interlaced", "rgba8_interlaced", "gray_alpha8_interlaced", "rgb_trns", "gray_trns",
    "one_pixel", "one_row", "exif6", NULL
};

START_TEST(test_decode_png_exact)
{
    const char *params[] = { NULL };
    for (int i = 0; png_files[i]; i++) {
        char file[64], key[64];
        snprintf(file, sizeof file, "%s.png", png_files[i]);
        snprintf(key, sizeof key, "decode/%s", png_files[i]);
        dsp_packet *out = decode_file(params, fixture(file));
        dsp_tensor *t = dsp_packet_tensor(out, "image");
        ck_assert_ptr_nonnull(t);
        expect_equal(t, key);
        ck_assert_int_eq(meta_int(out, "width"), t->shape[1]);
        ck_assert_int_eq(meta_int(out, "height"), t->shape[0]);
        ck_assert_int_eq(meta_int(out, "channels"), t->shape[2]);
        ck_assert_int_eq(meta_int(out, "bit_depth"), t->dtype == DSP_DTYPE_U16 ? 16 : 8);
        ck_assert_str_eq(meta_str(out, "format"), "png");
        ck_assert_str_eq(meta_str(out, "layout"), "hwc");
        ck_assert_str_eq(meta_str(out, "path"), fixture(file));
        dsp_packet_unref(&out);
    }
}
END_TEST

START_TEST(test_decode_png_16bit_to_8)
{
    static const char *const names[] = { "gray16", "gray_alpha16", "rgb16", "rgba16",
                                         "gray16_interlaced", NULL };
    const char *params[] = { "depth=8", NULL };
    for (int i = 0; names[i]; i++) {
        char file[64], key[64];
        snprintf(file, sizeof file, "%s.png", names[i]);
        snprintf(key, sizeof key, "decode8/%s", names[i]);
        dsp_packet *out = decode_file(params, fixture(file));
        expect_equal(dsp_packet_tensor(out, "image"), key);
        ck_assert_int_eq(meta_int(out, "bit_depth"), 8);
        dsp_packet_unref(&out);
    }
}
END_TEST

START_TEST(test_decode_mode_conversions)
{
    static const char *const files[] = { "gray8", "gray_alpha8", "rgb8", "rgba8", NULL };
    static const char *const modes[] = { "gray", "gray_alpha", "rgb", "rgba", NULL };
    for (int i = 0; files[i]; i++)
        for (int m = 0; modes[m]; m++) {
            char file[64], key[64], mode[32];
            snprintf(file, sizeof file, "%s.png", files[i]);
            snprintf(key, sizeof key, "convert/%s_%s", files[i], modes[m]);
            snprintf(mode, sizeof mode, "mode=%s", modes[m]);
            const char *params[] = { mode, NULL };
            dsp_packet *out = decode_file(params, fixture(file));
            expect_equal(dsp_packet_tensor(out, "image"), key);
            ck_assert_str_eq(meta_str(out, "mode"), modes[m]);
            dsp_packet_unref(&out);
        }
    /* 16-bit: gray from RGB with the same weights, alpha kept at 16 bits */
    const char *params[] = { "mode=gray_alpha", NULL };
    dsp_packet *out = decode_file(params, fixture("rgba16.png"));
    dsp_tensor *g = dsp_packet_tensor(out, "image"), *src = want("decode/rgba16");
    ck_assert_int_eq(g->dtype, DSP_DTYPE_U16);
    ck_assert_int_eq(g->shape[2], 2);
    const uint16_t *s = dsp_tensor_data(src), *d = dsp_tensor_data(g);
    for (int64_t k = 0; k < g->shape[0] * g->shape[1]; k++) {
        uint64_t y = ((uint64_t)s[4 * k] * 19595 + (uint64_t)s[4 * k + 1] * 38470 +
                      (uint64_t)s[4 * k + 2] * 7471 + 0x8000) >> 16;
        ck_assert_uint_eq(d[2 * k], y);
        ck_assert_uint_eq(d[2 * k + 1], s[4 * k + 3]);
    }
    dsp_tensor_unref(&src);
    dsp_packet_unref(&out);
}
END_TEST

/* ---- decode: JPEG ------------------------------------------------------------ */

START_TEST(test_decode_jpeg_matches_pillow)
{
    static const char *const names[] = { "rgb420", "rgb422", "rgb444", "gray", "progressive",
                                         "restart", NULL };
    const char *params[] = { NULL };
    for (int i = 0; names[i]; i++) {
        char file[64], key[64];
        snprintf(file, sizeof file, "%s.jpg", names[i]);
        snprintf(key, sizeof key, "decode/%s", names[i]);
        dsp_packet *out = decode_file(params, fixture(file));
        /* TurboJPEG (ISLOW IDCT, fancy upsampling) and Pillow's libjpeg agree
           exactly on these files */
        expect_equal(dsp_packet_tensor(out, "image"), key);
        ck_assert_str_eq(meta_str(out, "format"), "jpeg");
        ck_assert_int_eq(meta_int(out, "channels"), strcmp(names[i], "gray") ? 3 : 1);
        dsp_packet_unref(&out);
    }
}
END_TEST

START_TEST(test_decode_exif_orientation)
{
    for (int k = 1; k <= 8; k++) {
        char file[32], key[32];
        snprintf(file, sizeof file, "orient%d.jpg", k);
        snprintf(key, sizeof key, "decode/orient%d", k);
        const char *params[] = { NULL };
        dsp_packet *out = decode_file(params, fixture(file));
        dsp_tensor *t = dsp_packet_tensor(out, "image");
        expect_equal(t, key);
        ck_assert_int_eq(meta_int(out, "orientation"), k);
        ck_assert_int_eq(meta_int(out, "width"), t->shape[1]);
        ck_assert_int_eq(meta_int(out, "height"), t->shape[0]);
        dsp_packet_unref(&out);
        /* orient=false: the pixels as stored */
        const char *raw[] = { "orient=false", NULL };
        out = decode_file(raw, fixture(file));
        expect_equal(dsp_packet_tensor(out, "image"), "decode/orient_raw");
        ck_assert_int_eq(meta_int(out, "orientation"), k);
        dsp_packet_unref(&out);
    }
    /* the same tag in a PNG eXIf chunk */
    const char *raw[] = { "orient=false", NULL };
    dsp_packet *out = decode_file(raw, fixture("exif6.png"));
    expect_equal(dsp_packet_tensor(out, "image"), "decode/exif6_raw");
    ck_assert_int_eq(meta_int(out, "orientation"), 6);
    dsp_packet_unref(&out);
}
END_TEST

START_TEST(test_decode_from_bytes)
{
    static const char *const files[] = { "rgb8.png", "rgb444.jpg", NULL };
    static const char *const keys[] = { "decode/rgb8", "decode/rgb444" };
    for (int i = 0; files[i]; i++) {
        size_t n;
        unsigned char *d = read_bytes(fixture(files[i]), &n);
        int64_t len = (int64_t)n;
        dsp_tensor *b = NULL;
        ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 1, &len, &b), 0);
        memcpy(dsp_tensor_data(b), d, n);
        free(d);
        dsp_packet *p = NULL;
        ck_assert_int_eq(dsp_packet_new(&p), 0);
        ck_assert_int_eq(dsp_packet_set_tensor(p, "payload", b), 0);
        const char *params[] = { "bytes=payload", "name=pixels", NULL };
        dsp_harness *h = harness("image.decode", params);
        dsp_packet *out = run_ok(h, p);
        expect_equal(dsp_packet_tensor(out, "pixels"), keys[i]);
        ck_assert_ptr_null(dsp_packet_tensor(out, "payload"));   /* consumed */
        dsp_packet_unref(&out);
        dsp_harness_free(&h);
    }
}
END_TEST

/* ---- decode: every error fails the item with a message, never a crash -------- */

static void expect_decode_error(const char *const *params, const char *path, int code,
                                const char *needle)
{
    dsp_harness *h = harness("image.decode", params);
    const char *needles[] = { path, needle, NULL };
    run_fail(h, record(path), code, needles);
    dsp_harness_free(&h);
}

START_TEST(test_decode_errors)
{
    const char *none[] = { NULL };
    size_t n_png, n_jpg;
    unsigned char *png = read_bytes(fixture("rgb8.png"), &n_png);
    unsigned char *jpg = read_bytes(fixture("rgb420.jpg"), &n_jpg);

    /* truncated PNGs: in the signature, IHDR, the middle of IDAT, its end */
    size_t cuts[] = { 8, 20, 40, n_png / 2, n_png - 20 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tp("cut.png"), png, cuts[i]);
        expect_decode_error(none, tp("cut.png"), DSP_EFORMAT, "truncated");
    }
    /* only IEND missing: the pixels are there, but a cut file is not trusted */
    write_bytes(tp("noiend.png"), png, n_png - 12);
    expect_decode_error(none, tp("noiend.png"), DSP_EFORMAT, "truncated");
    /* a flipped bit in IHDR: its CRC no longer matches */
    png[17] ^= 0x40;
    write_bytes(tp("crc.png"), png, n_png);
    expect_decode_error(none, tp("crc.png"), DSP_EFORMAT, "CRC");
    png[17] ^= 0x40;
    /* the signature then garbage */
    unsigned char junk[600];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 7919 + 13);
    memcpy(junk, png, 8);
    write_bytes(tp("junk.png"), junk, sizeof junk);
    expect_decode_error(none, tp("junk.png"), DSP_EFORMAT, "corrupt or truncated PNG");

    /* truncated JPEG: strict fails, strict=false decodes and says why */
    write_bytes(tp("cut.jpg"), jpg, n_jpg / 2);
    expect_decode_error(none, tp("cut.jpg"), DSP_EFORMAT, "strict=false");
    const char *lenient[] = { "strict=false", NULL };
    dsp_packet *out = decode_file(lenient, tp("cut.jpg"));
    ck_assert_ptr_nonnull(strstr(meta_str(out, "decode_warning"), "Premature end"));
    dsp_packet_unref(&out);
    /* cut inside the header: no image at all, strict or not */
    write_bytes(tp("head.jpg"), jpg, 100);
    expect_decode_error(none, tp("head.jpg"), DSP_EFORMAT, "corrupt or truncated JPEG");
    expect_decode_error(lenient, tp("head.jpg"), DSP_EFORMAT, "corrupt or truncated JPEG");
    /* SOI then garbage */
    memcpy(junk, "\xff\xd8\xff\xe0", 4);
    write_bytes(tp("junk.jpg"), junk, sizeof junk);
    expect_decode_error(none, tp("junk.jpg"), DSP_EFORMAT, "JPEG");

    /* not images */
    write_bytes(tp("empty.png"), "", 0);
    expect_decode_error(none, tp("empty.png"), DSP_EFORMAT, "empty (0 bytes)");
    write_bytes(tp("anim.png"), "GIF89a\x01\x00\x01\x00", 10);
    expect_decode_error(none, tp("anim.png"), DSP_EUNSUPPORTED, "a GIF image");
    write_bytes(tp("noise.bin"), junk + 8, 300);
    expect_decode_error(none, tp("noise.bin"), DSP_EUNSUPPORTED, "not a PNG or JPEG file");
    expect_decode_error(none, tp("absent.png"), DSP_ENOENT, "No such file");
    expect_decode_error(none, tmpdir, DSP_EINVAL, "not a regular file");

    /* absurd dimensions are refused from the header, before allocating */
    expect_decode_error(none, fixture("huge.png"), DSP_ELIMIT, "100000 x 100000");
    expect_decode_error(none, fixture("huge.jpg"), DSP_ELIMIT, "60000 x 60000");
    const char *small[] = { "max_pixels=1000", NULL };
    expect_decode_error(small, fixture("rgb8.png"), DSP_ELIMIT, "max_pixels=1000");
    expect_decode_error(small, fixture("rgb444.jpg"), DSP_ELIMIT, "max_pixels=1000");

    /* a colour space we do not convert */
    expect_decode_error(none, fixture("cmyk.jpg"), DSP_EUNSUPPORTED, "CMYK");

    /* a packet that names nothing to decode, or bytes of the wrong kind */
    dsp_harness *h = harness("image.decode", none);
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    const char *n1[] = { "neither", "files.list", NULL };
    run_fail(h, p, DSP_EINVAL, n1);
    int64_t four = 4;
    dsp_tensor *f = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 1, &four, &f), 0);
    p = image_packet(f, NULL);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "bytes", f), 0);
    const char *n2[] = { "1-D u8", NULL };
    run_fail(h, p, DSP_EINVAL, n2);
    dsp_harness_free(&h);

    /* an unknown mode is a parameter error, before anything runs */
    const char *bad_mode[] = { "mode=cmyk", NULL };
    expect_init_fail("image.decode", bad_mode, "cmyk");
    free(png);
    free(jpg);
}
END_TEST

/* ---- resize ------------------------------------------------------------------ */

/* "resize/MODE_FILTER_WxH" -> MODE, FILTER, W, H (MODE may hold '_'). */
static int parse_case(const char *key, const char *prefix, char *mode, char *filter, int *w,
                      int *h)
{
    if (strncmp(key, prefix, strlen(prefix)) != 0)
        return 0;
    const char *s = key + strlen(prefix);
    const char *size = strrchr(s, '_');
    if (!size || sscanf(size + 1, "%dx%d", w, h) != 2)
        return 0;
    const char *f = size - 1;
    while (f > s && *f != '_')
        f--;
    if (f == s)
        return 0;
    snprintf(mode, 32, "%.*s", (int)(f - s), s);
    snprintf(filter, 32, "%.*s", (int)(size - f - 1), f + 1);
    return 1;
}

static dsp_tensor *resize(dsp_tensor *src, const char *layout, const char *const *params,
                          dsp_packet **keep)
{
    dsp_harness *h = harness("image.resize", params);
    dsp_packet *out = run_ok(h, image_packet(src, layout));
    dsp_harness_free(&h);
    dsp_tensor *t = dsp_tensor_ref(dsp_packet_tensor(out, "image"));
    if (keep)
        *keep = out;
    else
        dsp_packet_unref(&out);
    return t;
}

START_TEST(test_resize_u8_matches_pillow_exactly)
{
    int cases = 0;
    for (int i = 0; i < dsp_safetensors_count(expected); i++) {
        const char *key = dsp_safetensors_name(expected, i);
        char mode[32], filter[32], src_key[64], pw[32], ph[32], pf[48];
        int w, h;
        if (!parse_case(key, "resize/", mode, filter, &w, &h))
            continue;
        snprintf(src_key, sizeof src_key, "resize/src_%s", mode);
        snprintf(pw, sizeof pw, "width=%d", w);
        snprintf(ph, sizeof ph, "height=%d", h);
        snprintf(pf, sizeof pf, "filter=%s", filter);
        const char *params[] = { pw, ph, pf, NULL };
        dsp_tensor *src = want(src_key);
        dsp_packet *out = NULL;
        dsp_tensor *got = resize(src, NULL, params, &out);
        expect_equal(got, key);
        ck_assert_int_eq(meta_int(out, "width"), w);
        ck_assert_int_eq(meta_int(out, "height"), h);
        dsp_tensor_unref(&got);
        dsp_tensor_unref(&src);
        dsp_packet_unref(&out);
        cases++;
    }
    /* every filter on RGB, gray, RGBA and gray+alpha, up and down, odd sizes */
    ck_assert_int_eq(cases, 108);
    printf("resize u8: %d cases equal to Pillow\n", cases);
}
END_TEST

START_TEST(test_resize_f32_matches_torchvision)
{
    dsp_tensor *src = want("fresize/src");
    double worst[2] = { 0, 0 };
    int cases = 0;
    for (int i = 0; i < dsp_safetensors_count(expected); i++) {
        const char *key = dsp_safetensors_name(expected, i);
        char mode[32], aa[32], pw[32], ph[32], pf[48], pa[32];
        int w, h;
        /* fresize/FILTER_aa_WxH: "mode" is the filter here */
        if (!parse_case(key, "fresize/", mode, aa, &w, &h))
            continue;
        snprintf(pw, sizeof pw, "width=%d", w);
        snprintf(ph, sizeof ph, "height=%d", h);
        snprintf(pf, sizeof pf, "filter=%s", mode);
        snprintf(pa, sizeof pa, "antialias=%s", strcmp(aa, "aa") == 0 ? "true" : "false");
        const char *params[] = { pw, ph, pf, pa, NULL };
        dsp_tensor *got = resize(src, "chw", params, NULL);
        dsp_tensor *ref = want(key);
        double d = max_diff(got, ref, key);
        ck_assert_msg(d <= 1e-5, "%s: differs from torchvision by %g", key, d);
        int k = strcmp(aa, "aa") == 0 ? 0 : 1;
        worst[k] = d > worst[k] ? d : worst[k];
        dsp_tensor_unref(&got);
        dsp_tensor_unref(&ref);
        cases++;
    }
    ck_assert_int_ge(cases, 16);
    printf("resize f32: %d cases, largest difference to torchvision %.3g (antialias) "
           "%.3g (bilinear, antialias=False)\n", cases, worst[0], worst[1]);
    dsp_tensor_unref(&src);
}
END_TEST

START_TEST(test_resize_shorter_side_sizes)
{
    dsp_tensor *src = want("fresize/src");
    int cases = 0;
    for (int i = 0; i < dsp_safetensors_count(expected); i++) {
        const char *key = dsp_safetensors_name(expected, i);
        int s = 0, m = 0;
        if (sscanf(key, "fresize/shorter_%d_max_%d", &s, &m) < 1)
            continue;
        char ps[32], pm[32];
        snprintf(ps, sizeof ps, "shorter=%d", s);
        snprintf(pm, sizeof pm, "max_size=%d", m);
        const char *params[] = { ps, pm, NULL };
        dsp_tensor *got = resize(src, "chw", params, NULL), *ref = want(key);
        const int64_t *hw = dsp_tensor_data(ref);
        ck_assert_msg(got->shape[1] == hw[0] && got->shape[2] == hw[1],
                      "%s: got %lldx%lld, torchvision %lldx%lld", key,
                      (long long)got->shape[1], (long long)got->shape[2], (long long)hw[0],
                      (long long)hw[1]);
        dsp_tensor_unref(&got);
        dsp_tensor_unref(&ref);
        cases++;
    }
    ck_assert_int_eq(cases, 6);
    dsp_tensor_unref(&src);
}
END_TEST

START_TEST(test_resize_layouts_and_errors)
{
    /* 2-D stays 2-D; the same values as H x W x 1 */
    dsp_tensor *g3 = want("resize/src_gray"), *g2 = NULL;
    int64_t shape[2] = { g3->shape[0], g3->shape[1] };
    ck_assert_int_eq(dsp_tensor_from_buffer(DSP_DTYPE_U8, 2, shape, NULL, g3->buf, g3->offset,
                                            &g2), 0);
    const char *params[] = { "width=11", "height=7", "filter=bicubic", NULL };
    dsp_tensor *a = resize(g2, NULL, params, NULL);
    ck_assert_int_eq(a->ndim, 2);
    expect_equal(a, "resize/gray_bicubic_11x7");
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&g2);
    dsp_tensor_unref(&g3);

    /* u16 gray: double precision, rounded; bilinear keeps values in range */
    dsp_tensor *g16 = want("decode/gray16");
    const char *p16[] = { "width=11", "height=7", NULL };
    a = resize(g16, NULL, p16, NULL);
    ck_assert_int_eq(a->dtype, DSP_DTYPE_U16);
    ck_assert_int_eq(a->shape[0], 7);
    dsp_tensor_unref(&a);
    dsp_tensor_unref(&g16);

    /* init errors */
    const char *none[] = { NULL };
    expect_init_fail("image.resize", none, "give the output size");
    const char *both[] = { "width=3", "height=3", "shorter=4", NULL };
    expect_init_fail("image.resize", both, "not both");
    const char *half[] = { "width=3", NULL };
    expect_init_fail("image.resize", half, "both width and height");
    const char *maxs[] = { "shorter=10", "max_size=5", NULL };
    expect_init_fail("image.resize", maxs, "must be greater");

    /* per-item errors */
    dsp_harness *h = harness("image.resize", params);
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    const char *n1[] = { "no tensor 'image'", NULL };
    run_fail(h, p, DSP_ENOENT, n1);
    int64_t s4[4] = { 1, 2, 3, 4 };
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 4, s4, &t), 0);
    const char *n2[] = { "u8[1,2,3,4]", NULL };
    run_fail(h, image_packet(t, NULL), DSP_EINVAL, n2);
    dsp_tensor_unref(&t);
    int64_t s3[3] = { 4, 4, 3 };
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F64, 3, s3, &t), 0);
    /* C x H x W without meta layout is not guessed */
    int64_t chw[3] = { 3, 8, 9 };
    dsp_tensor *c3 = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, chw, &c3), 0);
    const char *n5[] = { "looks like C x H x W", "layout=chw", NULL };
    run_fail(h, image_packet(c3, NULL), DSP_EINVAL, n5);
    dsp_tensor_unref(&c3);
    const char *n3[] = { "u8, u16 or f32", NULL };
    run_fail(h, image_packet(t, NULL), DSP_EUNSUPPORTED, n3);
    dsp_tensor_unref(&t);
    dsp_harness_free(&h);
    /* a shorter side on a very long image would explode: refused */
    const char *pl[] = { "shorter=1000", NULL };
    h = harness("image.resize", pl);
    int64_t long_img[3] = { 1, 1000000, 1 };
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 3, long_img, &t), 0);
    const char *n4[] = { "max_pixels", NULL };
    run_fail(h, image_packet(t, NULL), DSP_ELIMIT, n4);
    dsp_tensor_unref(&t);
    dsp_harness_free(&h);
}
END_TEST

/* ---- normalize, crop, pad ----------------------------------------------------- */

START_TEST(test_normalize_matches_torchvision)
{
    static const char *const presets[] = { "imagenet", "clip", NULL };
    dsp_tensor *src = want("resize/src_rgb");
    for (int i = 0; presets[i]; i++) {
        char pp[32], key[64];
        snprintf(pp, sizeof pp, "preset=%s", presets[i]);
        snprintf(key, sizeof key, "normalize/%s", presets[i]);
        const char *params[] = { pp, NULL };
        dsp_harness *h = harness("image.normalize", params);
        dsp_packet *out = run_ok(h, image_packet(src, "hwc"));
        dsp_tensor *ref = want(key);
        double d = max_diff(dsp_packet_tensor(out, "image"), ref, key);
        /* float32 as torch: x / 255.0f, then (x - mean) / std */
        ck_assert_msg(d == 0, "%s: differs from torchvision by %g", key, d);
        ck_assert_str_eq(meta_str(out, "layout"), "chw");
        dsp_tensor_unref(&ref);
        dsp_packet_unref(&out);
        dsp_harness_free(&h);
    }
    /* explicit lists equal the preset; one value broadcasts */
    const char *lists[] = { "mean=[0.485, 0.456, 0.406]", "std=[0.229, 0.224, 0.225]",
                            "out_layout=hwc", NULL };
    dsp_harness *h = harness("image.normalize", lists);
    dsp_packet *out = run_ok(h, image_packet(src, NULL));
    dsp_tensor *t = dsp_packet_tensor(out, "image");
    dsp_tensor *ref = want("normalize/imagenet");
    const float *r = dsp_tensor_data(ref), *x = dsp_tensor_data(t);
    ck_assert_int_eq(t->shape[2], 3);
    for (int64_t p = 0; p < 29 * 37; p++)
        for (int c = 0; c < 3; c++)
            ck_assert_float_eq(x[p * 3 + c], r[c * 29 * 37 + p]);
    dsp_tensor_unref(&ref);
    dsp_packet_unref(&out);
    dsp_harness_free(&h);

    const char *both[] = { "preset=clip", "mean=[0.5]", NULL };
    expect_init_fail("image.normalize", both, "not both");
    const char *zero[] = { "std=[0.5, 0]", NULL };
    expect_init_fail("image.normalize", zero, "std[1] is 0");
    /* three means for a gray image */
    const char *pre[] = { "preset=imagenet", NULL };
    h = harness("image.normalize", pre);
    dsp_tensor *g = want("resize/src_gray");
    const char *n1[] = { "1 channels", "imagenet", NULL };
    run_fail(h, image_packet(g, NULL), DSP_EINVAL, n1);
    dsp_tensor_unref(&g);
    dsp_harness_free(&h);
    dsp_tensor_unref(&src);
}
END_TEST

START_TEST(test_crop_matches_torchvision)
{
    dsp_tensor *src = want("resize/src_rgb");
    int cases = 0;
    for (int i = 0; i < dsp_safetensors_count(expected); i++) {
        const char *key = dsp_safetensors_name(expected, i);
        int ch, cw;
        if (sscanf(key, "crop/%dx%d", &ch, &cw) != 2)
            continue;
        char pw[32], ph[32];
        snprintf(pw, sizeof pw, "width=%d", cw);
        snprintf(ph, sizeof ph, "height=%d", ch);
        const char *params[] = { pw, ph, NULL };
        dsp_harness *h = harness("image.crop", params);
        dsp_packet *out = run_ok(h, image_packet(src, NULL));
        expect_equal(dsp_packet_tensor(out, "image"), key);
        ck_assert_int_eq(meta_int(out, "width"), cw);
        dsp_packet_unref(&out);
        dsp_harness_free(&h);
        cases++;
    }
    ck_assert_int_eq(cases, 7);
    /* size=S is a square; CHW f32 works the same way */
    const char *sq[] = { "size=24", NULL };
    dsp_harness *h = harness("image.crop", sq);
    dsp_tensor *f = want("normalize/imagenet");
    dsp_packet *out = run_ok(h, image_packet(f, "chw"));
    dsp_tensor *t = dsp_packet_tensor(out, "image");
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 24);
    ck_assert_int_eq(t->shape[2], 24);
    /* torchvision: top = round(5 / 2) = 2, left = round(13 / 2) = 6 */
    ck_assert_float_eq(((float *)dsp_tensor_data(t))[0], ((float *)dsp_tensor_data(f))[2 * 37 + 6]);
    dsp_tensor_unref(&f);
    dsp_packet_unref(&out);
    dsp_harness_free(&h);
    const char *none[] = { NULL };
    expect_init_fail("image.crop", none, "give either size");
    const char *both[] = { "size=3", "width=4", "height=4", NULL };
    expect_init_fail("image.crop", both, "not both");
    dsp_tensor_unref(&src);
}
END_TEST

START_TEST(test_pad_matches_torchvision)
{
    dsp_tensor *src = want("pad/src");
    int cases = 0;
    for (int i = 0; i < dsp_safetensors_count(expected); i++) {
        const char *key = dsp_safetensors_name(expected, i);
        char mode[16];
        int l, t, r, b;
        if (sscanf(key, "pad/%15[a-z]_%d_%d_%d_%d", mode, &l, &t, &r, &b) != 5)
            continue;
        char pm[32], pl[32], pt[32], pr[32], pb[32];
        snprintf(pm, sizeof pm, "mode=%s", mode);
        snprintf(pl, sizeof pl, "left=%d", l);
        snprintf(pt, sizeof pt, "top=%d", t);
        snprintf(pr, sizeof pr, "right=%d", r);
        snprintf(pb, sizeof pb, "bottom=%d", b);
        const char *params[] = { pm, pl, pt, pr, pb, "fill=7", NULL };
        dsp_harness *h = harness("image.pad", params);
        dsp_packet *out = run_ok(h, image_packet(src, NULL));
        expect_equal(dsp_packet_tensor(out, "image"), key);
        dsp_packet_unref(&out);
        dsp_harness_free(&h);
        cases++;
    }
    ck_assert_int_eq(cases, 16);
    /* pad to a size, centred: 9 x 7 -> 12 x 12 puts 1 column left, 2 right */
    const char *to[] = { "width=12", "height=12", "fill=255", NULL };
    dsp_harness *h = harness("image.pad", to);
    dsp_packet *out = run_ok(h, image_packet(src, NULL));
    dsp_tensor *x = dsp_packet_tensor(out, "image");
    ck_assert_int_eq(x->shape[0], 12);
    ck_assert_int_eq(x->shape[1], 12);
    const uint8_t *px = dsp_tensor_data(x), *ps = dsp_tensor_data(src);
    ck_assert_uint_eq(px[(2 * 12 + 0) * 3], 255);
    ck_assert_uint_eq(px[(2 * 12 + 1) * 3], ps[0]);
    dsp_packet_unref(&out);
    /* a fill that does not fit u8 */
    dsp_harness_free(&h);
    const char *badfill[] = { "left=1", "fill=300", NULL };
    h = harness("image.pad", badfill);
    const char *n1[] = { "fill=300", NULL };
    run_fail(h, image_packet(src, NULL), DSP_EINVAL, n1);
    dsp_harness_free(&h);
    const char *both[] = { "left=1", "width=20", NULL };
    expect_init_fail("image.pad", both, "not both");
    dsp_tensor_unref(&src);
}
END_TEST

/* ---- encode ---------------------------------------------------------------------- */

static void encode_to(const char *const *params, dsp_tensor *t, const char *stem_path)
{
    dsp_harness *h = harness("image.encode", params);
    dsp_packet *p = image_packet(t, NULL);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", stem_path), 0);
    int err = dsp_harness_push(h, 0, p);
    ck_assert_msg(err == 0, "encode: %s", dsp_harness_errmsg(h));
    ck_assert_int_eq(dsp_harness_flush(h), 0);
    dsp_harness_free(&h);
}

static double psnr(const dsp_tensor *a, const dsp_tensor *b)
{
    const uint8_t *x = dsp_tensor_data(a), *y = dsp_tensor_data(b);
    double se = 0;
    int64_t n = dsp_tensor_numel(a);
    for (int64_t k = 0; k < n; k++)
        se += (double)(x[k] - y[k]) * (x[k] - y[k]);
    return se == 0 ? INFINITY : 10 * log10(255.0 * 255.0 / (se / (double)n));
}

static int stray_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += strstr(de->d_name, "tmp") != NULL;
    closedir(d);
    return n;
}

START_TEST(test_encode_round_trips)
{
    char path[1100];
    snprintf(path, sizeof path, "path=%s/out/{stem}.png", tmpdir);
    static const char *const lossless[] = { "gray8", "gray_alpha8", "rgb8", "rgba8", "gray16",
                                            "gray_alpha16", "rgb16", "rgba16", NULL };
    for (int i = 0; lossless[i]; i++) {
        char key[64], src[64], file[1100];
        snprintf(key, sizeof key, "decode/%s", lossless[i]);
        snprintf(src, sizeof src, "/data/%s.jpg", lossless[i]);  /* only the stem is used */
        const char *params[] = { path, "compression=9", NULL };
        dsp_tensor *t = want(key);
        encode_to(params, t, src);
        snprintf(file, sizeof file, "%s/out/%s.png", tmpdir, lossless[i]);
        const char *none[] = { NULL };
        dsp_packet *back = decode_file(none, file);
        expect_equal(dsp_packet_tensor(back, "image"), key);
        dsp_packet_unref(&back);
        dsp_tensor_unref(&t);
    }
    ck_assert_int_eq(stray_temps(tp("out")), 0);

    /* JPEG: lossy; PSNR bounds measured on these noisy fixtures */
    static const struct { const char *key, *q, *s; double min_psnr; const char *pillow; } lossy[] = {
        { "decode/rgb8", "quality=95", "subsampling=444", 35.0, "decode/rgb444" },
        { "decode/rgb8", "quality=90", "subsampling=422", 24.0, "decode/rgb422" },
        { "decode/rgb8", "quality=90", "subsampling=420", 20.0, "decode/rgb420" },
        { "decode/gray8", "quality=90", "subsampling=420", 35.0, "decode/gray" },
    };
    for (size_t i = 0; i < sizeof lossy / sizeof lossy[0]; i++) {
        char pj[1100], file[1100];
        snprintf(pj, sizeof pj, "path=%s/jpg/{item}.jpg", tmpdir);
        const char *params[] = { pj, lossy[i].q, lossy[i].s, NULL };
        dsp_tensor *t = want(lossy[i].key);
        encode_to(params, t, "x");
        snprintf(file, sizeof file, "%s/jpg/0.jpg", tmpdir);
        const char *none[] = { NULL };
        dsp_packet *back = decode_file(none, file);
        dsp_tensor *b = dsp_packet_tensor(back, "image");
        ck_assert_int_eq(b->shape[2], t->shape[2]);
        double db = psnr(t, b);
        printf("JPEG %s %s %s: PSNR %.2f dB\n", lossy[i].key, lossy[i].q, lossy[i].s, db);
        ck_assert_msg(db >= lossy[i].min_psnr, "PSNR %.2f dB below %.1f", db, lossy[i].min_psnr);
        /* TurboJPEG and Pillow's libjpeg-turbo encode the same settings the same way:
           decoded, the files are equal */
        dsp_tensor *pw = want(lossy[i].pillow);
        double d = max_diff(b, pw, lossy[i].pillow);
        ck_assert_msg(d == 0, "JPEG: differs from Pillow's encode + decode by %g", d);
        dsp_tensor_unref(&pw);
        dsp_packet_unref(&back);
        dsp_tensor_unref(&t);
    }

    /* RGBA to JPEG needs drop_alpha */
    char pj[1100];
    snprintf(pj, sizeof pj, "path=%s/a/{item}.jpg", tmpdir);
    const char *nodrop[] = { pj, NULL };
    dsp_harness *h = harness("image.encode", nodrop);
    dsp_tensor *rgba = want("decode/rgba8");
    const char *n1[] = { "drop_alpha=true", NULL };
    run_fail(h, image_packet(rgba, NULL), DSP_EUNSUPPORTED, n1);
    dsp_harness_free(&h);
    const char *drop[] = { pj, "drop_alpha=true", "quality=100", "subsampling=444", NULL };
    encode_to(drop, rgba, "x");
    const char *none[] = { NULL };
    char file[1100];
    snprintf(file, sizeof file, "%s/a/0.jpg", tmpdir);
    dsp_packet *back = decode_file(none, file);
    ck_assert_int_eq(dsp_packet_tensor(back, "image")->shape[2], 3);
    dsp_packet_unref(&back);
    dsp_tensor_unref(&rgba);
}
END_TEST

START_TEST(test_encode_errors)
{
    char path[1100];
    snprintf(path, sizeof path, "path=%s/e/same.png", tmpdir);
    const char *params[] = { path, NULL };
    dsp_harness *h = harness("image.encode", params);
    dsp_tensor *t = want("decode/rgb8");
    ck_assert_int_eq(dsp_harness_push(h, 0, image_packet(t, NULL)), 0);
    const char *n1[] = { "already written", "{item}", NULL };
    run_fail(h, image_packet(t, NULL), DSP_EEXIST, n1);
    /* an f32 C x H x W tensor is not an image file */
    dsp_tensor *f = want("normalize/imagenet");
    const char *n2[] = { "C x H x W", NULL };
    run_fail(h, image_packet(f, "chw"), DSP_EINVAL, n2);
    const char *n3[] = { "f32", "u8 or u16", NULL };
    run_fail(h, image_packet(f, "hwc"), DSP_EUNSUPPORTED, n3);
    dsp_harness_free(&h);
    dsp_tensor_unref(&f);
    dsp_tensor_unref(&t);

    const char *bad_ext[] = { "path=x.gif", NULL };
    expect_init_fail("image.encode", bad_ext, "cannot tell the format");
    const char *bad_ph[] = { "path={name}.png", NULL };
    expect_init_fail("image.encode", bad_ph, "unknown placeholder");
    const char *bad_q[] = { "path=x.jpg", "quality=0", NULL };
    expect_init_fail("image.encode", bad_q, "quality");
}
END_TEST

static Suite *image_suite(void)
{
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("decode");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_decode_png_exact);
    tcase_add_test(tc, test_decode_png_16bit_to_8);
    tcase_add_test(tc, test_decode_mode_conversions);
    tcase_add_test(tc, test_decode_jpeg_matches_pillow);
    tcase_add_test(tc, test_decode_exif_orientation);
    tcase_add_test(tc, test_decode_from_bytes);
    tcase_add_test(tc, test_decode_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("transforms");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_resize_u8_matches_pillow_exactly);
    tcase_add_test(tc, test_resize_f32_matches_torchvision);
    tcase_add_test(tc, test_resize_shorter_side_sizes);
    tcase_add_test(tc, test_resize_layouts_and_errors);
    tcase_add_test(tc, test_normalize_matches_torchvision);
    tcase_add_test(tc, test_crop_matches_torchvision);
    tcase_add_test(tc, test_pad_matches_torchvision);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_encode_round_trips);
    tcase_add_test(tc, test_encode_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(image_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
