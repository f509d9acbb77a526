/* test_video_sheet.c - video.contact_sheet through the harness: exact tile placement on a synthetic clip, scaled thumbnails, the label lines image.overlay draws, per-item errors. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

static dsp_context *ctx;

static void setup(void)
{
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "video.contact_sheet") != NULL &&
                      dsp_context_find_op(ctx, "image.overlay") != NULL,
                  "video.contact_sheet or image.overlay not found: are plugins/video/.libs and "
                  "plugins/image/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
}

/* Pixel (x, y) of frame t: a value no other frame or position has (t < 8,
 * x < 32, y < 32), so a misplaced or flipped tile shows. */
static void frame_rgb(int64_t t, int64_t x, int64_t y, uint8_t *rgb)
{
    rgb[0] = (uint8_t)(200 - 20 * t);
    rgb[1] = (uint8_t)(10 + 7 * x);
    rgb[2] = (uint8_t)(10 + 7 * y);
}

/* A u8 [t, h, w, 3] clip of frame_rgb pixels, or each frame one solid
 * colour (frame_rgb at 0, 0) when solid. */
static dsp_tensor *clip(int64_t t, int64_t h, int64_t w, int solid)
{
    int64_t shape[4] = { t, h, w, 3 };
    dsp_tensor *x = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 4, shape, &x), 0);
    uint8_t *d = dsp_tensor_data(x);
    for (int64_t k = 0; k < t; k++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++)
                frame_rgb(k, solid ? 0 : xx, solid ? 0 : y, d + ((k * h + y) * w + xx) * 3);
    return x;
}

/* A classified clip as video.classify keep_input=true leaves it: the clip
 * under `frames` (transfer full; NULL: none) and meta path, label, score,
 * topk (unless label is NULL). */
static dsp_packet *classified(dsp_tensor *frames, const char *label)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    if (frames)
        ck_assert_int_eq(dsp_packet_set_tensor(p, "frames", frames), 0);
    dsp_meta *m = dsp_packet_meta(p);
    ck_assert_int_eq(dsp_meta_set_str(m, "path", "videos/walk/clip.mp4"), 0);
    if (label) {
        ck_assert_int_eq(dsp_meta_set_str(m, "label", label), 0);
        ck_assert_int_eq(dsp_meta_set_float(m, "score", 0.9), 0);
        ck_assert_int_eq(dsp_meta_set_json(m, "topk", "[{\"label\": \"walk\", \"score\": 0.9}, "
                                           "{\"label\": \"run\", \"score\": 0.07}, "
                                           "{\"label\": \"sit\", \"score\": 0.03}]"), 0);
    }
    return p;
}

/* Run video.contact_sheet on p (transfer full); the output packet. */
static dsp_packet *sheet(const char *const *params, dsp_packet *p)
{
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "video.contact_sheet", params, 1, &h) == 0, "%s",
                  dsp_context_errmsg(ctx));
    int err = dsp_harness_push(h, 0, p);
    ck_assert_msg(err == 0, "failed (%d): %s", err, dsp_harness_errmsg(h));
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    dsp_harness_free(&h);
    return out;
}

static const uint8_t *px(const dsp_tensor *t, int64_t x, int64_t y)
{
    return (const uint8_t *)dsp_tensor_data(t) + (y * t->shape[1] + x) * 3;
}

/* 5 frames of 8 x 6, 2 columns, gap 1, name + 2 top-k lines of 10 px: a
 * 19 x 52 sheet, tiles at x 1 and 10, y 31, 38 and 45, the sixth tile empty. */
START_TEST(tiles_in_place_exactly)
{
    const char *params[] = { "columns=2", "width=0", "gap=1", "lines=2", "line_height=10", NULL };
    dsp_packet *out = sheet(params, classified(clip(5, 6, 8, 0), "walk"));
    const dsp_tensor *s = dsp_packet_tensor(out, "image");
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(dsp_packet_tensor(out, "frames"));
    ck_assert_int_eq(s->dtype, DSP_DTYPE_U8);
    ck_assert_int_eq(s->ndim, 3);
    ck_assert_int_eq(s->shape[0], 52);
    ck_assert_int_eq(s->shape[1], 19);
    ck_assert_int_eq(s->shape[2], 3);
    for (int64_t y = 0; y < 52; y++)
        for (int64_t x = 0; x < 19; x++) {
            uint8_t want[3] = { 0, 0, 0 };
            int64_t col = (x - 1) / 9, tx = (x - 1) % 9, row = (y - 31) / 7, ty = (y - 31) % 7;
            int64_t t = row * 2 + col;
            if (x >= 1 && y >= 31 && tx < 8 && ty < 6 && t < 5)
                frame_rgb(t, tx, ty, want);
            const uint8_t *p = px(s, x, y);
            ck_assert_msg(p[0] == want[0] && p[1] == want[1] && p[2] == want[2],
                          "pixel (%lld, %lld) is %u,%u,%u, want %u,%u,%u", (long long)x, (long long)y,
                          p[0], p[1], p[2], want[0], want[1], want[2]);
        }
    int64_t v;
    const char *str;
    ck_assert(dsp_meta_get_int(dsp_packet_meta_const(out), "width", &v) == 0 && v == 19);
    ck_assert(dsp_meta_get_int(dsp_packet_meta_const(out), "height", &v) == 0 && v == 52);
    ck_assert(dsp_meta_get_str(dsp_packet_meta_const(out), "path", &str) == 0 &&
              strcmp(str, "videos/walk/clip.mp4") == 0);
    char *json = dsp_meta_to_json(dsp_packet_meta_const(out));
    ck_assert_ptr_nonnull(json);
    const char *want = "\"overlay\":[{\"at\":[1,1],\"color\":\"white\",\"text\":\"clip.mp4\"},"
                       "{\"at\":[1,11],\"color\":\"yellow\",\"text\":\"walk 0.900\"},"
                       "{\"at\":[1,21],\"color\":\"white\",\"text\":\"run 0.070\"}]";
    ck_assert_msg(strstr(json, want) != NULL, "want %s in %s", want, json);
    free(json);
    dsp_packet_unref(&out);
}
END_TEST

/* width=16 scales 8 x 6 frames to 16 x 12 (libswscale bilinear): a solid
 * frame stays its colour; 3 frames in 4 columns make one row of 3. */
START_TEST(thumbnails_scaled)
{
    const char *params[] = { "width=16", "gap=2", "lines=1", "line_height=10", NULL };
    dsp_packet *out = sheet(params, classified(clip(3, 6, 8, 1), "walk"));
    const dsp_tensor *s = dsp_packet_tensor(out, "image");
    ck_assert_int_eq(s->shape[1], 2 + 3 * 18);
    ck_assert_int_eq(s->shape[0], 2 + 20 + 14);
    for (int64_t t = 0; t < 3; t++) {
        uint8_t want[3];
        frame_rgb(t, 0, 0, want);
        for (int64_t y = 0; y < 12; y++)
            for (int64_t x = 0; x < 16; x++) {
                const uint8_t *p = px(s, 2 + t * 18 + x, 22 + y);
                for (int ch = 0; ch < 3; ch++)
                    ck_assert_msg(abs(p[ch] - want[ch]) <= 1, "frame %lld pixel (%lld, %lld) channel %d: "
                                  "%u, want %u", (long long)t, (long long)x, (long long)y, ch, p[ch], want[ch]);
            }
        ck_assert_int_eq(px(s, 2 + t * 18 + 16, 22)[0], 0);    /* the gap after it */
        ck_assert_int_eq(px(s, 2 + t * 18, 34)[1], 0);         /* the border under it */
    }
    dsp_packet_unref(&out);
}
END_TEST

/* Ink rows of the band [y0, y1) at x < x1 (differing from black). */
static int64_t ink(const dsp_tensor *s, int64_t y0, int64_t y1, int64_t x1)
{
    int64_t n = 0;
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = 0; x < x1; x++)
            n += px(s, x, y)[0] || px(s, x, y)[1] || px(s, x, y)[2];
    return n;
}

/* The sheet through image.overlay (font_size 12, DejaVu Sans Mono): each
 * text line has ink in its own 16-pixel row of the band, none leaks below
 * it, and the tiles are untouched. */
START_TEST(labels_drawn_by_overlay)
{
    const char *params[] = { "width=0", "columns=4", NULL };
    dsp_packet *out = sheet(params, classified(clip(4, 20, 24, 0), "walk"));
    dsp_harness *h = NULL;
    const char *draw[] = { "font_size=12", NULL };
    ck_assert_msg(dsp_harness_new(ctx, "image.overlay", draw, 2, &h) == 0, "%s", dsp_context_errmsg(ctx));
    /* the mask port takes an empty label image (a pipe leaves it unconnected) */
    const dsp_tensor *img = dsp_packet_tensor(out, "image");
    dsp_tensor *mask = NULL;
    dsp_packet *mp = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 2, img->shape, &mask), 0);
    memset(dsp_tensor_data(mask), 0, dsp_tensor_nbytes(mask));
    ck_assert_int_eq(dsp_packet_new(&mp), 0);
    ck_assert_int_eq(dsp_packet_set_tensor(mp, "mask", mask), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, out), 0);
    int err = dsp_harness_push(h, 1, mp);
    ck_assert_msg(err == 0, "image.overlay: %s", dsp_harness_errmsg(h));
    dsp_packet *drawn = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(drawn);
    const dsp_tensor *s = dsp_packet_tensor(drawn, "image");
    /* name + 3 top-k lines of 16 px, then 20-pixel tiles */
    ck_assert_int_eq(s->shape[0], 2 + 64 + 22);
    ck_assert_int_eq(s->shape[1], 2 + 4 * 26);
    for (int line = 0; line < 4; line++)
        ck_assert_msg(ink(s, 2 + 16 * line, 2 + 16 * (line + 1), s->shape[1]) > 20, "no ink on line %d", line);
    /* "walk 0.900" is ten characters of ~7 px: nothing right of 80 on its line */
    ck_assert_int_eq(ink(s, 18, 34, s->shape[1]) - ink(s, 18, 34, 80), 0);
    for (int64_t y = 0; y < 20; y++)
        for (int64_t x = 0; x < 24; x++) {
            uint8_t want[3];
            frame_rgb(3, x, y, want);
            ck_assert(memcmp(px(s, 2 + 3 * 26 + x, 66 + y), want, 3) == 0);
        }
    dsp_packet_unref(&drawn);
    dsp_harness_free(&h);
}
END_TEST

/* Push p (transfer full): the item fails with code and a message holding needle, nothing comes out. */
static void sheet_fails(const char *const *params, dsp_packet *p, int code, const char *needle)
{
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "video.contact_sheet", params, 1, &h), 0);
    int err = dsp_harness_push(h, 0, p);
    const char *msg = dsp_harness_errmsg(h);
    ck_assert_msg(err == code, "want %d, got %d: %s", code, err, msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "'%s' not in: %s", needle, msg);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    dsp_harness_free(&h);
}

START_TEST(bad_packets_fail_their_item)
{
    const char *none[] = { NULL };
    sheet_fails(none, classified(NULL, "walk"), DSP_EINVAL, "no tensor 'frames': set keep_input=true");
    sheet_fails(none, classified(clip(2, 4, 4, 0), NULL), DSP_EINVAL,
                "no meta label and score: put video.classify before video.contact_sheet");
    int64_t shape[4] = { 3, 2, 4, 4 };
    dsp_tensor *f = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_F32, 4, shape, &f), 0);
    memset(dsp_tensor_data(f), 0, dsp_tensor_nbytes(f));
    sheet_fails(none, classified(f, "walk"), DSP_EINVAL, "take the frames before normalising");
    const char *huge[] = { "width=4096", "columns=256", NULL };
    sheet_fails(huge, classified(clip(20, 2, 2, 0), "walk"), DSP_ELIMIT, "lower width= or change columns=");
    /* 61472 x 16458: under 65536 a side, but 2^28 pixels in all */
    const char *vast[] = { "width=4096", "columns=15", NULL };
    sheet_fails(vast, classified(clip(60, 2, 2, 0), "walk"), DSP_ELIMIT, "2^28 in all");
}
END_TEST

/* enable=false: every packet dropped, no failure */
START_TEST(disabled_drops)
{
    const char *params[] = { "enable=false", NULL };
    dsp_harness *h = NULL;
    ck_assert_int_eq(dsp_harness_new(ctx, "video.contact_sheet", params, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, classified(NULL, NULL)), 0);
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    ck_assert_int_eq(dsp_harness_item_failures(h), 0);
    dsp_harness_free(&h);
}
END_TEST

static Suite *sheet_suite(void)
{
    Suite *s = suite_create("video.contact_sheet");
    TCase *tc = tcase_create("sheet");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, tiles_in_place_exactly);
    tcase_add_test(tc, thumbnails_scaled);
    tcase_add_test(tc, labels_drawn_by_overlay);
    tcase_add_test(tc, bad_packets_fail_their_item);
    tcase_add_test(tc, disabled_drops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sheet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
