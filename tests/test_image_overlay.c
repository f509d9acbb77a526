/* test_image_overlay.c - image.overlay through the harness: exact pixels of boxes, clipping, polygons and mask contours; where text ink lands; per-item errors. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

static dsp_context *ctx;

#define FONT "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"

static void setup(void)
{
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "image.overlay") != NULL,
                  "image.overlay not found: is plugins/image/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
}

/* A u8 h x w x c image filled with v (c = 0: a 2-D h x w image). */
static dsp_tensor *blank(int64_t h, int64_t w, int64_t c, uint8_t v)
{
    int64_t shape[3] = { h, w, c };
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, c ? 3 : 2, shape, &t), 0);
    memset(dsp_tensor_data(t), v, dsp_tensor_nbytes(t));
    return t;
}

/* A packet with `image` (transfer full) and meta overlay = json (unless NULL). */
static dsp_packet *image_packet(dsp_tensor *img, const char *json)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "image", img), 0);
    if (json)
        ck_assert_msg(dsp_meta_set_json(dsp_packet_meta(p), "overlay", json) == 0,
                      "bad test JSON: %s", json);
    return p;
}

/* A packet with the label tensor `mask` (transfer full). */
static dsp_packet *mask_packet(dsp_tensor *m)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(p, "mask", m), 0);
    return p;
}

static dsp_harness *overlay(const char *const *params)
{
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "image.overlay", params, 2, &h) == 0, "%s",
                  dsp_context_errmsg(ctx));
    return h;
}

/* Run image.overlay on img (transfer full) with meta json and a label mask
 * (NULL: all background); return the drawn image (new reference). */
static dsp_tensor *draw(const char *const *params, dsp_tensor *img, const char *json,
                        dsp_tensor *mask)
{
    if (!mask)
        mask = blank(img->shape[0], img->shape[1], 0, 0);
    dsp_harness *h = overlay(params);
    ck_assert_int_eq(dsp_harness_push(h, 0, image_packet(img, json)), 0);
    int err = dsp_harness_push(h, 1, mask_packet(mask));
    ck_assert_msg(err == 0, "failed (%d): %s", err, dsp_harness_errmsg(h));
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    dsp_tensor *t = dsp_tensor_ref(dsp_packet_tensor(out, "image"));
    dsp_packet_unref(&out);
    dsp_harness_free(&h);
    return t;
}

/* Push img with meta json; it must fail with code and a message holding
 * every needle (NULL-terminated). */
static void draw_fail(const char *const *params, dsp_tensor *img, const char *json,
                      dsp_tensor *mask, int code, const char *const *needles)
{
    if (!mask)
        mask = blank(img->shape[0], img->shape[1], 0, 0);
    dsp_harness *h = overlay(params);
    ck_assert_int_eq(dsp_harness_push(h, 0, image_packet(img, json)), 0);
    int err = dsp_harness_push(h, 1, mask_packet(mask));
    const char *msg = dsp_harness_errmsg(h);
    ck_assert_msg(err == code, "%s: want %d, got %d: %s", json, code, err, msg);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "'%s' not in: %s", needles[i], msg);
    dsp_harness_free(&h);
}

static const uint8_t *px(const dsp_tensor *t, int64_t x, int64_t y)
{
    return (const uint8_t *)dsp_tensor_data(t) + (y * t->shape[1] + x) * t->shape[2];
}

static int is_rgb(const dsp_tensor *t, int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b)
{
    const uint8_t *p = px(t, x, y);
    return p[0] == r && p[1] == g && p[2] == b;
}

/* Every pixel is col where inside(x, y), else bg. */
typedef int (*pixel_pred)(int64_t x, int64_t y);
static void expect_pixels(const dsp_tensor *t, pixel_pred inside, const uint8_t *col,
                          const uint8_t *bg, const char *what)
{
    for (int64_t y = 0; y < t->shape[0]; y++)
        for (int64_t x = 0; x < t->shape[1]; x++) {
            const uint8_t *want = inside(x, y) ? col : bg;
            const uint8_t *p = px(t, x, y);
            ck_assert_msg(p[0] == want[0] && p[1] == want[1] && p[2] == want[2],
                          "%s: pixel (%lld, %lld) is %u,%u,%u, want %u,%u,%u", what,
                          (long long)x, (long long)y, p[0], p[1], p[2], want[0], want[1],
                          want[2]);
        }
}

static const uint8_t RED[3] = { 255, 0, 0 }, BLACK[3] = { 0, 0, 0 };

/* ---- boxes ------------------------------------------------------------------- */

/* box [5, 4, 14, 11], thickness 2: two-pixel bands inside the corners */
static int in_box_t2(int64_t x, int64_t y)
{
    return x >= 5 && x <= 14 && y >= 4 && y <= 11 && (x <= 6 || x >= 13 || y <= 5 || y >= 10);
}

START_TEST(box_edges_and_thickness)
{
    const char *params[] = { NULL };
    dsp_tensor *t = draw(params, blank(20, 30, 3, 0),
                         "[{\"box\": [5, 4, 14, 11], \"color\": \"#ff0000\", \"thickness\": 2}]",
                         NULL);
    ck_assert_int_eq(t->shape[2], 3);
    expect_pixels(t, in_box_t2, RED, BLACK, "box t=2");
    dsp_tensor_unref(&t);
}
END_TEST

/* box [-5, -5, 8, 6], thickness 1: only the right and bottom edges are inside */
static int in_clipped_box(int64_t x, int64_t y)
{
    return (x == 8 && y <= 6) || (y == 6 && x <= 8);
}

static int nowhere(int64_t x, int64_t y)
{
    return 0;
}

START_TEST(box_clipping)
{
    const char *params[] = { "thickness=1", "color=red", NULL };
    dsp_tensor *t = draw(params, blank(10, 10, 3, 0), "[{\"box\": [-5, -5, 8, 6]}]", NULL);
    expect_pixels(t, in_clipped_box, RED, BLACK, "clipped box");
    dsp_tensor_unref(&t);
    /* wholly outside, and far outside: nothing drawn, nothing touched */
    t = draw(params, blank(10, 10, 3, 0),
             "[{\"box\": [20, 20, 30, 30]}, {\"box\": [-99999, -99999, -50000, 99999]},"
             " {\"polygon\": [[-90000, -5], [90000, -5]]}]", NULL);
    expect_pixels(t, nowhere, RED, BLACK, "boxes outside");
    dsp_tensor_unref(&t);
    /* a box thicker than half its size is filled; floats round to pixels */
    t = draw(params, blank(10, 10, 3, 0), "[{\"box\": [1.4, 1.6, 3.5, 4.49], \"thickness\": 5}]",
             NULL);
    for (int64_t y = 0; y < 10; y++)
        for (int64_t x = 0; x < 10; x++)
            ck_assert_int_eq(is_rgb(t, x, y, 255, 0, 0), x >= 1 && x <= 4 && y >= 2 && y <= 4);
    dsp_tensor_unref(&t);
}
END_TEST

/* ---- polygons ------------------------------------------------------------------ */

/* triangle (2,2) (12,2) (2,12): two axis edges and the closing diagonal x + y = 14 */
static int on_triangle(int64_t x, int64_t y)
{
    int top = y == 2 && x >= 2 && x <= 12, left = x == 2 && y >= 2 && y <= 12;
    int diag = x + y == 14 && x >= 2 && x <= 12;
    return top || left || diag;
}

static int on_open_polyline(int64_t x, int64_t y)
{
    return (y == 2 && x >= 2 && x <= 12) || (x + y == 14 && x >= 2 && x <= 12);
}

START_TEST(polygon_closure)
{
    const char *params[] = { "thickness=1", "color=red", NULL };
    dsp_tensor *t = draw(params, blank(16, 16, 3, 0),
                         "[{\"polygon\": [[2, 2], [12, 2], [2, 12]]}]", NULL);
    expect_pixels(t, on_triangle, RED, BLACK, "closed triangle");
    dsp_tensor_unref(&t);
    t = draw(params, blank(16, 16, 3, 0),
             "[{\"polygon\": [[2, 2], [12, 2], [2, 12]], \"closed\": false}]", NULL);
    expect_pixels(t, on_open_polyline, RED, BLACK, "open polyline");
    dsp_tensor_unref(&t);
    /* thickness 3 widens a horizontal edge to rows 1-3 */
    const char *thick[] = { "thickness=3", "color=red", NULL };
    t = draw(thick, blank(8, 16, 3, 0), "[{\"polygon\": [[2, 2], [12, 2]]}]", NULL);
    for (int64_t y = 0; y < 8; y++)
        for (int64_t x = 0; x < 16; x++)
            ck_assert_int_eq(is_rgb(t, x, y, 255, 0, 0), x >= 1 && x <= 13 && y >= 1 && y <= 3);
    dsp_tensor_unref(&t);
}
END_TEST

/* ---- contours of a label mask ------------------------------------------------------ */

START_TEST(contours_are_the_mask_boundary)
{
    /* label 1: a rectangle inside; label 2: touches the right border and
     * shares its left column with label 1's right neighbour; label 3: a
     * single pixel */
    int64_t h = 16, w = 20;
    dsp_tensor *m = blank(h, w, 0, 0);
    uint8_t *md = dsp_tensor_data(m);
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            if (y >= 3 && y <= 10 && x >= 4 && x <= 12)
                md[y * w + x] = 1;
            else if (y >= 0 && y <= 6 && x >= 13)
                md[y * w + x] = 2;
        }
    md[14 * w + 2] = 3;
    const char *params[] = { "palette=[red, \"#00ff00\", blue]", NULL };
    dsp_tensor *mask = dsp_tensor_ref(m);
    dsp_tensor *t = draw(params, blank(h, w, 1, 40), NULL, mask);
    ck_assert_int_eq(t->shape[2], 3);       /* gray became RGB */
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            /* the boundary, written from the shapes' geometry */
            int r1 = y >= 3 && y <= 10 && x >= 4 && x <= 12 &&
                     (y == 3 || y == 10 || x == 4 || x == 12);
            int r2 = y <= 6 && x >= 13 && (y == 0 || y == 6 || x == 13 || x == w - 1);
            int r3 = y == 14 && x == 2;
            const char *what = r1 ? "label 1" : r2 ? "label 2" : r3 ? "label 3" : "inside/bg";
            int ok = r1 ? is_rgb(t, x, y, 255, 0, 0) : r2 ? is_rgb(t, x, y, 0, 255, 0) :
                     r3 ? is_rgb(t, x, y, 0, 0, 255) : is_rgb(t, x, y, 40, 40, 40);
            ck_assert_msg(ok, "(%lld, %lld) %s: got %u,%u,%u", (long long)x, (long long)y, what,
                          px(t, x, y)[0], px(t, x, y)[1], px(t, x, y)[2]);
        }
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&m);
}
END_TEST

/* ---- channels: gray -> RGB, gray+alpha -> RGBA, alpha of drawn pixels ------------ */

START_TEST(channels_and_alpha)
{
    const char *params[] = { "thickness=1", "color=#102030", NULL };
    dsp_tensor *t = draw(params, blank(6, 6, 0, 77), "[{\"box\": [1, 1, 4, 4]}]", NULL);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[2], 3);
    ck_assert(is_rgb(t, 1, 1, 0x10, 0x20, 0x30) && is_rgb(t, 2, 2, 77, 77, 77));
    dsp_tensor_unref(&t);

    t = draw(params, blank(6, 6, 2, 0), "[{\"box\": [1, 1, 4, 4]}]", NULL);
    ck_assert_int_eq(t->shape[2], 4);
    ck_assert(px(t, 1, 1)[3] == 255 && px(t, 2, 2)[3] == 0 && px(t, 0, 0)[3] == 0);
    dsp_tensor_unref(&t);
}
END_TEST

/* ---- text ------------------------------------------------------------------------- */

/* Bounds of the pixels that differ from bg (count in *n). */
static void ink_bounds(const dsp_tensor *t, uint8_t bg, int64_t *x0, int64_t *y0, int64_t *x1,
                       int64_t *y1, int64_t *n, int64_t *partial)
{
    *x0 = *y0 = INT64_MAX;
    *x1 = *y1 = -1;
    *n = *partial = 0;
    for (int64_t y = 0; y < t->shape[0]; y++)
        for (int64_t x = 0; x < t->shape[1]; x++) {
            const uint8_t *p = px(t, x, y);
            if (p[0] == bg && p[1] == bg && p[2] == bg)
                continue;
            ck_assert_msg(p[0] == p[1] && p[1] == p[2], "white text on gray is gray");
            (*n)++;
            *partial += p[0] != 255;
            *x0 = x < *x0 ? x : *x0;
            *y0 = y < *y0 ? y : *y0;
            *x1 = x > *x1 ? x : *x1;
            *y1 = y > *y1 ? y : *y1;
        }
}

START_TEST(text_ink_in_its_box)
{
    /* DejaVu Sans Mono at 20 px: advance 1233/2048 em = 12 px, ascender
     * 1901/2048 em = 19 px, descender 483/2048 em = 5 px (hinted, rounded) */
    const char *params[] = { "font=" FONT, "font_size=20", "color=white", NULL };
    dsp_tensor *t = draw(params, blank(60, 80, 3, 0),
                         "[{\"text\": \"Hg\", \"at\": [10, 8]}]", NULL);
    int64_t x0, y0, x1, y1, n, partial;
    ink_bounds(t, 0, &x0, &y0, &x1, &y1, &n, &partial);
    ck_assert_msg(n > 40, "only %lld ink pixels", (long long)n);
    ck_assert_msg(partial > 5, "no anti-aliasing: %lld partial pixels", (long long)partial);
    ck_assert_msg(x0 >= 10 && x1 < 10 + 2 * 12 && y0 >= 8 && y1 < 8 + 19 + 5,
                  "ink spans x %lld-%lld, y %lld-%lld; want within x 10-33, y 8-31",
                  (long long)x0, (long long)x1, (long long)y0, (long long)y1);
    /* 'H' stands on the baseline (y 26), 'g' descends below it */
    ck_assert_int_le(y0, 8 + 19 - 13);
    ck_assert_int_gt(y1, 8 + 19 - 1);
    dsp_tensor_unref(&t);

    /* a second line starts one line height lower; a label sits above its box */
    t = draw(params, blank(80, 80, 3, 0),
             "[{\"text\": \"A\\nA\", \"at\": [0, 0]}]", NULL);
    ink_bounds(t, 0, &x0, &y0, &x1, &y1, &n, &partial);
    ck_assert_msg(y1 >= 24 && y1 < 24 + 24, "second line ends at y %lld", (long long)y1);
    dsp_tensor_unref(&t);

    const char *lp[] = { "font=" FONT, "font_size=20", "color=white", "thickness=1", NULL };
    t = draw(lp, blank(80, 80, 3, 0),
             "[{\"box\": [10, 40, 60, 70], \"label\": \"T\"}]", NULL);
    int64_t above = 0;
    for (int64_t y = 0; y < 40; y++)
        for (int64_t x = 0; x < 80; x++)
            above += px(t, x, y)[0] != 0;
    ck_assert_msg(above > 10, "no label ink above the box");
    dsp_tensor_unref(&t);
}
END_TEST

/* ---- errors: each names the element and what is wrong ------------------------------- */

START_TEST(bad_meta_is_a_clear_error)
{
    const char *params[] = { NULL };
    static const struct {
        const char *json;
        const char *needle1, *needle2;
    } cases[] = {
        { "{\"box\": [1, 2, 3, 4]}", "meta \"overlay\" is an object", "want an array" },
        { "[{\"box\": [1, 2, 3, 4]}, 7]", "\"overlay\"[1]: is a number", "{\"box\"" },
        { "[{\"box\": [1, 2, 3, 4], \"colour\": \"red\"}]", "[0]: unknown key \"colour\"",
          "known: box" },
        { "[{\"box\": [1, 2, 3]}]", "[0].box: want 4 numbers", "" },
        { "[{\"box\": [5, 2, 3, 4]}]", "[0].box: [5, 2, 3, 4]: want x0 <= x1", "" },
        { "[{\"box\": [1, \"2\", 3, 4]}]", "[0].box: element 1 is not a number", "" },
        { "[{\"box\": [1, 2, 3, 1e9]}]", "[0].box: element 3", "100000" },
        { "[{\"polygon\": [[1, 2], [3]]}]", "[0].polygon: point 1 is not [x, y]", "" },
        { "[{\"polygon\": []}]", "[0].polygon: want an array of [x, y] points", "" },
        { "[{\"text\": \"hi\"}]", "[0].at: want [x, y]", "" },
        { "[{\"text\": 5, \"at\": [0, 0]}]", "[0].text: is a number; want a string", "" },
        { "[{\"box\": [1, 2, 3, 4], \"text\": \"x\"}]", "[0]: give exactly one of", "" },
        { "[{}]", "[0]: give exactly one of", "" },
        { "[{\"box\": [1, 2, 3, 4], \"color\": \"#ff30\"}]", "[0].color: \"#ff30\"",
          "#rrggbb" },
        { "[{\"box\": [1, 2, 3, 4], \"thickness\": 0}]", "[0].thickness: want an integer", "" },
        { "[{\"polygon\": [[1, 2]], \"label\": \"x\"}]", "[0].label: belongs to a box", "" },
        { "[{\"box\": [1, 2, 3, 4], \"closed\": true}]", "[0].closed: belongs to a polygon",
          "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *needles[] = { cases[i].needle1, cases[i].needle2, NULL };
        draw_fail(params, blank(8, 8, 3, 0), cases[i].json, NULL, DSP_EINVAL, needles);
    }
    /* a mask of another size, a missing mask tensor, a float image */
    const char *n1[] = { "mask 'mask' is u8", "want a u8 CPU label image", "8 x 8", NULL };
    draw_fail(params, blank(8, 8, 3, 0), NULL, blank(8, 9, 0, 0), DSP_EINVAL, n1);
    int64_t shape[3] = { 8, 8, 3 };
    dsp_tensor *f = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 3, shape, &f), 0);
    const char *n2[] = { "draws on u8", "image.normalize", NULL };
    draw_fail(params, f, NULL, NULL, DSP_EUNSUPPORTED, n2);

    dsp_harness *h = NULL;
    const char *bad_color[] = { "color=mauve", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "image.overlay", bad_color, 2, &h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "color='mauve'"));
    const char *bad_pal[] = { "palette=[red, \"#12345\"]", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "image.overlay", bad_pal, 2, &h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "palette[1] '#12345'"));
}
END_TEST

START_TEST(missing_font_fails_text_only)
{
    const char *params[] = { "font=/nonexistent/NoSuchFont.ttf", NULL };
    const char *needles[] = { "[0].text", "/nonexistent/NoSuchFont.ttf", "fonts-dejavu-core",
                              NULL };
    draw_fail(params, blank(8, 8, 3, 0), "[{\"text\": \"x\", \"at\": [0, 0]}]", NULL,
              DSP_ENOENT, needles);
    /* boxes need no font */
    dsp_tensor *t = draw(params, blank(8, 8, 3, 0), "[{\"box\": [0, 0, 7, 7]}]", NULL);
    ck_assert(is_rgb(t, 0, 0, 0xff, 0x30, 0x30));
    dsp_tensor_unref(&t);
    /* not a font at all */
    const char *notfont[] = { "font=/etc/passwd", NULL };
    const char *n2[] = { "FreeType cannot read it", "/etc/passwd", NULL };
    draw_fail(notfont, blank(8, 8, 3, 0), "[{\"box\": [0, 0, 2, 2], \"label\": \"x\"}]", NULL,
              DSP_EFORMAT, n2);
}
END_TEST

static Suite *overlay_suite(void)
{
    Suite *s = suite_create("image.overlay");
    TCase *tc = tcase_create("draw");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, box_edges_and_thickness);
    tcase_add_test(tc, box_clipping);
    tcase_add_test(tc, polygon_closure);
    tcase_add_test(tc, contours_are_the_mask_boundary);
    tcase_add_test(tc, channels_and_alpha);
    tcase_add_test(tc, text_ink_in_its_box);
    tcase_add_test(tc, bad_meta_is_a_clear_error);
    tcase_add_test(tc, missing_font_fails_text_only);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(overlay_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
