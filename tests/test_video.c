/* test_video.c - video.decode and video.probe through the harness, on clips the ffmpeg CLI makes at test time. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "testutil.h"

/* ---- fixture: clips made once per run by the ffmpeg CLI ----------------------- */

static char datadir[256];       /* made by the unchecked fixture, shared by all tests */
static dsp_context *ctx;

static const char *dp(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 1024, "%s/%s", datadir, name);
    return p;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

#define FF "ffmpeg -nostdin -v error -y"
#define SRC "-f lavfi -i testsrc=size=%s:rate=%s:duration=%s"

static int have_encoder(const char *name)
{
    return sh("ffmpeg -hide_banner -encoders 2>/dev/null | grep -qw %s", name) == 0;
}

static void make_clips(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(datadir, sizeof datadir, "%s/dsp_video_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(datadir) || sh("command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null")) {
        fprintf(stderr, "test_video: the ffmpeg and ffprobe commands are needed "
                "(scripts/install-deps.sh installs them)\n");
        exit(77);
    }
    const char *d = datadir;
    /* lossless RGB at an odd size: decoded pixels must equal the CLI's rawvideo */
    sh(FF " " SRC " -c:v ffv1 -pix_fmt bgr0 %s/ffv1.mkv", "97x61", "25", "2", d);
    sh(FF " -i %s/ffv1.mkv -f rawvideo -pix_fmt rgb24 %s/ffv1.rgb", d, d);
    sh(FF " -i %s/ffv1.mkv -vf scale=50:32:flags=bilinear -f rawvideo -pix_fmt rgb24 "
       "%s/ffv1_50x32.rgb", d, d);
    sh(FF " " SRC " -c:v mpeg4 %s/mpeg4.avi", "64x48", "24", "1", d);
    sh(FF " " SRC " -c:v mjpeg %s/mjpeg.avi", "64x48", "24", "1", d);
    sh(FF " " SRC " -c:v ffv1 -pix_fmt yuv420p %s/ffv1_yuv.mkv", "66x40", "30", "1", d);
    sh(FF " -i %s/ffv1_yuv.mkv -f rawvideo -pix_fmt rgb24 %s/ffv1_yuv.rgb", d, d);
    if (have_encoder("libx264"))
        sh(FF " " SRC " -c:v libx264 -pix_fmt yuv420p %s/h264.mp4", "64x48", "30", "2", d);
    if (have_encoder("libvpx-vp9"))
        sh(FF " " SRC " -c:v libvpx-vp9 -deadline realtime %s/vp9.webm", "64x48", "24", "1", d);
    /* variable frame rate: 10 frames 40 ms apart, then 10 frames 100 ms apart */
    sh(FF " " SRC " -vf \"setpts='if(lt(N,10),N*0.04,0.4+(N-10)*0.1)/TB'\" -vsync vfr "
       "-c:v ffv1 %s/vfr.mkv", "32x24", "25", "0.8", d);
    /* a timestamp jump of a day after frame 4 (what fuzzing found): fps
     * sampling would repeat frame 4 for every grid time of that day */
    sh(FF " " SRC " -vf \"setpts='if(lt(N,5),N*0.04,86400+N*0.04)/TB'\" -vsync vfr "
       "-c:v ffv1 %s/pts_jump.mkv", "32x24", "25", "0.4", d);
    /* bad files */
    sh(": >%s/empty.mp4", d);
    sh("head -c $(( $(stat -c %%s %s/ffv1.mkv) / 2 )) %s/ffv1.mkv >%s/truncated.mkv", d, d, d);
    sh("echo 'not a video at all' >%s/notes.mp4", d);
    sh(FF " -f lavfi -i testsrc=size=16x16 -frames:v 1 %s/photo.png && cp %s/photo.png "
       "%s/photo.mp4", d, d, d);
    sh(FF " -f lavfi -i sine=duration=0.5 %s/audio.m4a", d);
    /* garbage over the middle of a file: damaged packets or lost frames */
    sh("cp %s/mjpeg.avi %s/damaged.avi && printf '%%3000s' | tr ' ' '\\252' | dd of=%s/damaged.avi "
       "bs=1 seek=$(( $(stat -c %%s %s/mjpeg.avi) / 2 )) conv=notrunc 2>/dev/null", d, d, d, d);
    /* an AVI whose codec tag no decoder knows */
    sh("sed 's/FMP4/QQQQ/g' %s/mpeg4.avi >%s/unknown_codec.avi", d, d);
}

static void remove_clips(void)
{
    tu_remove_tree(datadir);
}

static void setup(void)
{
    dsp_log_set_level(DSP_LOG_ERROR);
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "video.decode") != NULL,
                  "video.decode not found: is plugins/video/.libs on DSPIPE_PLUGIN_PATH?");
}

static void teardown(void)
{
    dsp_context_free(&ctx);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- helpers --------------------------------------------------------------------- */

/* Frame times as ffprobe reports them (decoded, presentation order), from
 * the stream start. Returns the count. */
static int probe_pts(const char *path, double *pts, int max)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ffprobe -v error -select_streams v:0 -show_entries "
             "frame=best_effort_timestamp_time -of csv=p=0 %s", path);
    FILE *fp = popen(cmd, "r");
    ck_assert_ptr_nonnull(fp);
    int n = 0;
    double v;
    while (n < max && fscanf(fp, "%lf%*[^\n]", &v) == 1)
        pts[n++] = v;
    pclose(fp);
    for (int i = n - 1; i >= 0; i--)
        pts[i] -= pts[0];
    return n;
}

static dsp_packet *record(const char *path)
{
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "path", path), 0);
    ck_assert_int_eq(dsp_meta_set_str(dsp_packet_meta(p), "source", path), 0);
    return p;
}

static dsp_harness *harness(const char *const *params)
{
    dsp_harness *h = NULL;
    int err = dsp_harness_new(ctx, "video.decode", params, 1, &h);
    ck_assert_msg(err == 0, "video.decode: %s", dsp_context_errmsg(ctx));
    return h;
}

/* Decode path with params; the packets emitted go to out (at most max). */
static int decode(const char *const *params, const char *path, dsp_packet **out, int max)
{
    dsp_harness *h = harness(params);
    int err = dsp_harness_push(h, 0, record(path));
    ck_assert_msg(err == 0, "%s: %s", path, dsp_harness_errmsg(h));
    int n = 0;
    dsp_packet *p;
    while ((p = dsp_harness_pull(h, 0))) {
        ck_assert_int_lt(n, max);
        out[n++] = p;
    }
    dsp_harness_free(&h);
    return n;
}

static void free_all(dsp_packet **p, int n)
{
    for (int i = 0; i < n; i++)
        dsp_packet_unref(&p[i]);
}

/* Decoding path must fail with code and a message naming it and holding
 * every needle. Nothing may be emitted, except when partial (a limit found
 * while decoding, after earlier frames were sent). */
static void expect_fail_at(const char *const *params, const char *path, int code,
                           const char *const *needles, int partial)
{
    dsp_harness *h = harness(params);
    int err = dsp_harness_push(h, 0, record(path));
    const char *msg = dsp_harness_errmsg(h);
    ck_assert_msg(err == code, "%s: want %s, got %d: %s", path, dsp_strerror(code), err, msg);
    dsp_packet *p;
    while ((p = dsp_harness_pull(h, 0))) {
        ck_assert_msg(partial, "%s: failed but emitted a packet", path);
        ck_assert_int_eq(dsp_packet_last(p), 0);
        dsp_packet_unref(&p);
    }
    ck_assert_msg(strstr(msg, path) != NULL, "the message does not name %s: %s", path, msg);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "'%s' not in: %s", needles[i], msg);
    dsp_harness_free(&h);
}

static void expect_fail(const char *const *params, const char *path, int code,
                        const char *const *needles)
{
    expect_fail_at(params, path, code, needles, 0);
}

static int64_t meta_int(const dsp_packet *p, const char *key)
{
    int64_t v = -1;
    ck_assert_msg(dsp_meta_get_int(dsp_packet_meta_const(p), key, &v) == 0, "no meta %s", key);
    return v;
}

static double meta_float(const dsp_packet *p, const char *key)
{
    double v = NAN;
    ck_assert_msg(dsp_meta_get_float(dsp_packet_meta_const(p), key, &v) == 0, "no meta %s", key);
    return v;
}

static const char *meta_str(const dsp_packet *p, const char *key)
{
    const char *v = NULL;
    ck_assert_msg(dsp_meta_get_str(dsp_packet_meta_const(p), key, &v) == 0, "no meta %s", key);
    return v;
}

/* The frame indices of a clip packet. */
static int clip_indices(const dsp_packet *p, int64_t *idx, int max)
{
    double v[512];
    size_t n = 0;
    ck_assert_int_eq(dsp_meta_get_floats(dsp_packet_meta_const(p), "frame_index", v, 512, &n), 0);
    ck_assert_int_le((int)n, max);
    for (size_t i = 0; i < n; i++)
        idx[i] = (int64_t)v[i];
    return (int)n;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return b;
}

/* ---- frame counts and timestamps against ffprobe, per codec and container ------ */

START_TEST(test_counts_and_pts_match_ffprobe)
{
    static const char *const files[] = { "ffv1.mkv", "mpeg4.avi", "mjpeg.avi", "ffv1_yuv.mkv",
                                         "h264.mp4", "vp9.webm", "vfr.mkv" };
    static const char *const codecs[] = { "ffv1", "mpeg4", "mjpeg", "ffv1", "h264", "vp9",
                                          "ffv1" };
    const char *params[] = { "sample=all", NULL };
    int tested = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        const char *path = dp(files[f]);
        if (!exists(path))
            continue;   /* an encoder the installed ffmpeg lacks */
        static double want[512];
        int n = probe_pts(path, want, 512);
        ck_assert_msg(n > 5, "%s: ffprobe found %d frames", path, n);
        static dsp_packet *out[512];
        int got = decode(params, path, out, 512);
        ck_assert_msg(got == n, "%s: %d frames, ffprobe %d", path, got, n);
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(meta_int(out[i], "frame_index"), i);
            double pts = meta_float(out[i], "pts");
            ck_assert_msg(fabs(pts - want[i]) < 1e-6, "%s frame %d: pts %.6f, ffprobe %.6f",
                          path, i, pts, want[i]);
            ck_assert_double_eq_tol(dsp_packet_pts(out[i]), pts, 1e-9);
            ck_assert_int_eq(dsp_packet_part(out[i]), i);
            ck_assert_int_eq(dsp_packet_last(out[i]), i == n - 1);
        }
        ck_assert_str_eq(meta_str(out[0], "codec"), codecs[f]);
        ck_assert_str_eq(meta_str(out[0], "hwaccel"), "none");
        const dsp_tensor *t = dsp_packet_tensor(out[0], "frames");
        ck_assert_int_eq(t->ndim, 3);
        ck_assert_int_eq(t->shape[0], meta_int(out[0], "height"));
        ck_assert_int_eq(t->shape[1], meta_int(out[0], "width"));
        ck_assert_int_eq(t->shape[2], 3);
        free_all(out, got);
        tested++;
    }
    ck_assert_int_ge(tested, 5);
}
END_TEST

/* ---- pixels: lossless RGB equals the ffmpeg CLI's rawvideo byte for byte -------- */

START_TEST(test_lossless_pixels_exact)
{
    size_t size;
    unsigned char *raw = read_all(dp("ffv1.rgb"), &size);
    const size_t fb = 97 * 61 * 3;
    ck_assert_uint_eq(size, 50 * fb);
    /* every frame, one packet per frame */
    const char *params[] = { NULL };
    static dsp_packet *out[64];
    int n = decode(params, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 50);
    for (int i = 0; i < n; i++) {
        const dsp_tensor *t = dsp_packet_tensor(out[i], "frames");
        ck_assert_int_eq(t->shape[0], 61);
        ck_assert_int_eq(t->shape[1], 97);
        ck_assert_msg(memcmp(dsp_tensor_data(t), raw + (size_t)i * fb, fb) == 0,
                      "frame %d differs from ffmpeg's rawvideo", i);
    }
    free_all(out, n);
    /* clips: each frame of each clip is the raw frame its frame_index names */
    const char *wparams[] = { "sample=every", "every=2", "clip_len=4", "stride=3", NULL };
    n = decode(wparams, dp("ffv1.mkv"), out, 64);
    for (int c = 0; c < n; c++) {
        const dsp_tensor *t = dsp_packet_tensor(out[c], "frames");
        int64_t idx[16];
        ck_assert_int_eq(clip_indices(out[c], idx, 16), 4);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(memcmp((unsigned char *)dsp_tensor_data(t) + k * fb,
                                 raw + (size_t)idx[k] * fb, fb) == 0, "clip %d frame %d", c, k);
    }
    free_all(out, n);
    /* scaled: the same libswscale filter as the CLI's scale=50:32:flags=bilinear */
    free(raw);
    raw = read_all(dp("ffv1_50x32.rgb"), &size);
    const char *sparams[] = { "shorter=32", "interp=bilinear", NULL };
    n = decode(sparams, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 50);
    const size_t sb = 50 * 32 * 3;
    ck_assert_uint_eq(size, 50 * sb);
    int maxdiff = 0;
    for (int i = 0; i < n; i++) {
        const dsp_tensor *t = dsp_packet_tensor(out[i], "frames");
        ck_assert_int_eq(t->shape[0], 32);
        ck_assert_int_eq(t->shape[1], 50);
        const unsigned char *a = dsp_tensor_data(t), *b = raw + (size_t)i * sb;
        for (size_t k = 0; k < sb; k++)
            maxdiff = abs(a[k] - b[k]) > maxdiff ? abs(a[k] - b[k]) : maxdiff;
    }
    ck_assert_msg(maxdiff == 0, "scaled frames differ from the CLI's by up to %d", maxdiff);
    free_all(out, n);
    free(raw);

    /* lossless YUV 4:2:0 to RGB: the same conversion as the CLI's */
    raw = read_all(dp("ffv1_yuv.rgb"), &size);
    n = decode(params, dp("ffv1_yuv.mkv"), out, 64);
    const size_t yb = 66 * 40 * 3;
    ck_assert_uint_eq(size, (size_t)n * yb);
    for (int i = 0; i < n; i++)
        ck_assert_msg(memcmp(dsp_tensor_data(dsp_packet_tensor(out[i], "frames")),
                             raw + (size_t)i * yb, yb) == 0, "YUV frame %d differs", i);
    free_all(out, n);
    free(raw);
}
END_TEST

/* ---- sampling modes against independently computed expectations ---------------- */

START_TEST(test_sample_every)
{
    const char *params[] = { "sample=every", "every=7", NULL };
    static dsp_packet *out[64];
    int n = decode(params, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 8);     /* 0, 7, ..., 49 of 50 frames */
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(meta_int(out[i], "frame_index"), 7 * i);
        ck_assert_double_eq_tol(meta_float(out[i], "pts"), 7 * i / 25.0, 1e-6);
    }
    free_all(out, n);
}
END_TEST

/* The frame on screen at each time k / fps, from ffprobe's list: the last
 * frame whose pts is at most the time (1 ms tolerance for rounded
 * timebases), for times before the last frame starts. */
static int expected_fps(const double *pts, int n, double fps, int *idx)
{
    int m = 0;
    for (int k = 0;; k++) {
        double t = k / fps;
        if (t >= pts[n - 1] - 1e-3)
            break;
        int i = 0;
        while (i + 1 < n && pts[i + 1] <= t + 1e-3)
            i++;
        idx[m++] = i;
    }
    return m;
}

START_TEST(test_sample_fps)
{
    static const struct { const char *file; const char *fps; double f; } cases[] = {
        { "vfr.mkv", "fps=10", 10 }, { "vfr.mkv", "fps=30", 30 }, { "ffv1.mkv", "fps=10", 10 },
        { "mpeg4.avi", "fps=7.5", 7.5 }, { "h264.mp4", "fps=12", 12 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = dp(cases[c].file);
        if (!exists(path))
            continue;
        static double pts[512];
        static int want[2048];
        int n = probe_pts(path, pts, 512);
        int m = expected_fps(pts, n, cases[c].f, want);
        const char *params[] = { "sample=fps", cases[c].fps, NULL };
        static dsp_packet *out[2048];
        int got = decode(params, path, out, 2048);
        /* the last frame covers its own duration: at most that many more */
        ck_assert_msg(got >= m && got <= m + (int)ceil(cases[c].f * 0.1) + 1,
                      "%s %s: %d frames, want %d (+ the last frame's share)", path,
                      cases[c].fps, got, m);
        for (int i = 0; i < got; i++) {
            int64_t fi = meta_int(out[i], "frame_index");
            if (i < m)
                ck_assert_msg(fi == want[i], "%s %s: sample %d is frame %lld, want %d", path,
                              cases[c].fps, i, (long long)fi, want[i]);
            else
                ck_assert_int_eq(fi, n - 1);
        }
        free_all(out, got);
    }
}
END_TEST

/* PyTorchVideo's UniformTemporalSubsample: torch.linspace(0, n-1, k).long() */
START_TEST(test_sample_uniform)
{
    const char *path = dp("h264.mp4");
    if (!exists(path))
        path = dp("ffv1_yuv.mkv");   /* 30 frames instead of 60 */
    int n60 = strstr(path, "h264") != NULL;
    static const int64_t want60[] = { 0, 8, 16, 25, 33, 42, 50, 59 };
    static const int64_t want30[] = { 0, 4, 8, 12, 16, 20, 24, 29 };
    const char *params[] = { "sample=uniform", "clip_len=8", NULL };
    static dsp_packet *out[16];
    int n = decode(params, path, out, 16);
    ck_assert_int_eq(n, 1);
    int64_t idx[64];
    ck_assert_int_eq(clip_indices(out[0], idx, 64), 8);
    for (int k = 0; k < 8; k++)
        ck_assert_int_eq(idx[k], n60 ? want60[k] : want30[k]);
    const dsp_tensor *t = dsp_packet_tensor(out[0], "frames");
    ck_assert_int_eq(t->ndim, 4);
    ck_assert_int_eq(t->shape[0], 8);
    ck_assert_int_eq(meta_int(out[0], "num_frames"), n60 ? 60 : 30);
    ck_assert_int_eq(dsp_packet_last(out[0]), 1);
    ck_assert_str_eq(meta_str(out[0], "layout"), "thwc");
    free_all(out, n);

    /* three clips from three equal spans: [0,20) [20,40) [40,60) of 60 frames */
    const char *p3[] = { "sample=uniform", "clip_len=4", "num_clips=3", NULL };
    n = decode(p3, dp("h264.mp4"), out, 16);
    if (n60) {
        static const int64_t want[3][4] = { { 0, 6, 12, 19 }, { 20, 26, 32, 39 },
                                             { 40, 46, 52, 59 } };
        ck_assert_int_eq(n, 3);
        for (int c = 0; c < 3; c++) {
            ck_assert_int_eq(clip_indices(out[c], idx, 64), 4);
            for (int k = 0; k < 4; k++)
                ck_assert_int_eq(idx[k], want[c][k]);
            ck_assert_int_eq(dsp_packet_part(out[c]), c);
            ck_assert_int_eq(dsp_packet_last(out[c]), c == 2);
            ck_assert_int_eq(meta_int(out[c], "clip_index"), c);
            ck_assert_double_eq_tol(meta_float(out[c], "clip_start"), want[c][0] / 30.0, 1e-6);
            ck_assert_double_eq_tol(meta_float(out[c], "clip_end"), (want[c][3] + 1) / 30.0,
                                    1e-6);
        }
    }
    free_all(out, n);

    /* more frames asked than the video has: frames repeat, as linspace does */
    const char *p64[] = { "sample=uniform", "clip_len=64", NULL };
    n = decode(p64, dp("mpeg4.avi"), out, 16);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(clip_indices(out[0], idx, 64), 64);
    for (int k = 0; k < 64; k++)
        ck_assert_int_eq(idx[k], (int64_t)(23.0 * k / 63));
    free_all(out, n);
}
END_TEST

START_TEST(test_sliding_windows)
{
    /* every 2nd frame of 50: 25 sampled; windows of 4 starting every 3 */
    const char *params[] = { "sample=every", "every=2", "clip_len=4", "stride=3", NULL };
    static dsp_packet *out[64];
    int n = decode(params, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 8);     /* starts 0, 3, ..., 21 (21 + 3 < 25) */
    for (int w = 0; w < n; w++) {
        int64_t idx[8];
        ck_assert_int_eq(clip_indices(out[w], idx, 8), 4);
        for (int k = 0; k < 4; k++)
            ck_assert_int_eq(idx[k], 2 * (3 * w + k));
        ck_assert_int_eq(dsp_packet_part(out[w]), w);
        ck_assert_int_eq(dsp_packet_last(out[w]), w == n - 1);
        ck_assert_double_eq_tol(meta_float(out[w], "clip_start"), 6 * w / 25.0, 1e-6);
        ck_assert_double_eq_tol(dsp_packet_pts(out[w]), 6 * w / 25.0, 1e-6);
        ck_assert_double_eq_tol(meta_float(out[w], "clip_end"), (2 * (3 * w + 3) + 1) / 25.0,
                                1e-6);
    }
    free_all(out, n);

    /* fps-sampled windows: 2 fps over 2 s = 4 samples, windows of 2, stride 1 */
    const char *pf[] = { "sample=fps", "fps=2", "clip_len=2", "stride=1", NULL };
    n = decode(pf, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 3);
    static const int64_t want[3][2] = { { 0, 12 }, { 12, 25 }, { 25, 37 } };
    for (int w = 0; w < n; w++) {
        int64_t idx[4];
        ck_assert_int_eq(clip_indices(out[w], idx, 4), 2);
        ck_assert_int_eq(idx[0], want[w][0]);
        ck_assert_int_eq(idx[1], want[w][1]);
    }
    free_all(out, n);
}
END_TEST

START_TEST(test_short_video_padding)
{
    const char *params[] = { "clip_len=32", NULL };
    static dsp_packet *out[4];
    int n = decode(params, dp("mpeg4.avi"), out, 4);   /* 24 frames */
    ck_assert_int_eq(n, 1);
    int64_t idx[64];
    ck_assert_int_eq(clip_indices(out[0], idx, 64), 32);
    for (int k = 0; k < 32; k++)
        ck_assert_int_eq(idx[k], k < 24 ? k : 23);
    free_all(out, n);
    const char *nopad[] = { "clip_len=32", "pad=false", NULL };
    const char *needles[] = { "only 24 frames", "clip_len=32", NULL };
    expect_fail(nopad, dp("mpeg4.avi"), DSP_EINVAL, needles);
}
END_TEST

/* ---- scaling, pixel formats, threads, bytes input, hwaccel ------------------------ */

START_TEST(test_scaling_and_formats)
{
    static dsp_packet *out[64];
    const char *exact[] = { "width=224", "height=112", "sample=every", "every=25", NULL };
    int n = decode(exact, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 2);
    const dsp_tensor *t = dsp_packet_tensor(out[0], "frames");
    ck_assert_int_eq(t->shape[0], 112);
    ck_assert_int_eq(t->shape[1], 224);
    ck_assert_int_eq(meta_int(out[0], "src_width"), 97);
    ck_assert_int_eq(meta_int(out[0], "src_height"), 61);
    free_all(out, n);
    /* torchvision Resize(20) on 97 x 61: 20 x int(20 * 97 / 61) = 31 */
    const char *shorter[] = { "shorter=20", "pix_fmt=gray", "sample=every", "every=25", NULL };
    n = decode(shorter, dp("ffv1.mkv"), out, 64);
    t = dsp_packet_tensor(out[0], "frames");
    ck_assert_int_eq(t->shape[0], 20);
    ck_assert_int_eq(t->shape[1], 31);
    ck_assert_int_eq(t->shape[2], 1);
    ck_assert_str_eq(meta_str(out[0], "pix_fmt"), "gray");
    free_all(out, n);
    /* width only keeps the aspect ratio */
    const char *wonly[] = { "width=48", "clip_len=2", "sample=every", "every=25", NULL };
    n = decode(wonly, dp("ffv1.mkv"), out, 64);
    ck_assert_int_eq(n, 1);
    t = dsp_packet_tensor(out[0], "frames");
    ck_assert_int_eq(t->shape[1], 30);  /* round(61 * 48 / 97) */
    ck_assert_int_eq(t->shape[2], 48);
    free_all(out, n);

    /* bad combinations are refused at init */
    dsp_harness *h = NULL;
    const char *bad[] = { "sample=uniform", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "video.decode", bad, 1, &h), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "clip_len"));
    const char *bad2[] = { "shorter=10", "width=5", NULL };
    ck_assert_int_lt(dsp_harness_new(ctx, "video.decode", bad2, 1, &h), 0);
}
END_TEST

static void decode_all(const char *thread_param, const char *path, dsp_packet **out, int *n)
{
    const char *params[] = { thread_param, "clip_len=10", NULL };
    *n = decode(params, path, out, 16);
}

START_TEST(test_threads_agree)
{
    const char *path = exists(dp("h264.mp4")) ? dp("h264.mp4") : dp("mpeg4.avi");
    static dsp_packet *a[16], *b[16];
    int na, nb;
    decode_all("threads=1", path, a, &na);
    decode_all("threads=3", path, b, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert_int_ge(na, 2);
    for (int i = 0; i < na; i++) {
        const dsp_tensor *x = dsp_packet_tensor(a[i], "frames"), *y = dsp_packet_tensor(b[i], "frames");
        ck_assert_uint_eq(dsp_tensor_nbytes(x), dsp_tensor_nbytes(y));
        ck_assert_int_eq(memcmp(dsp_tensor_data(x), dsp_tensor_data(y), dsp_tensor_nbytes(x)), 0);
    }
    free_all(a, na);
    free_all(b, nb);
}
END_TEST

START_TEST(test_bytes_input)
{
    size_t size;
    unsigned char *raw = read_all(dp("mjpeg.avi"), &size);
    int64_t len = (int64_t)size;
    dsp_tensor *t = NULL;
    ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_U8, 1, &len, &t), 0);
    memcpy(dsp_tensor_data(t), raw, size);
    free(raw);
    dsp_packet *p = NULL;
    ck_assert_int_eq(dsp_packet_new(&p), 0);
    dsp_meta_set_str(dsp_packet_meta(p), "source", "mem:mjpeg");
    ck_assert_int_eq(dsp_packet_set_tensor(p, "bytes", t), 0);
    const char *params[] = { "sample=uniform", "clip_len=4", NULL };
    dsp_harness *h = harness(params);
    ck_assert_int_eq(dsp_harness_push(h, 0, p), 0);
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_null(dsp_packet_tensor(out, "bytes"));
    ck_assert_int_eq(dsp_packet_tensor(out, "frames")->shape[0], 4);
    ck_assert_str_eq(meta_str(out, "codec"), "mjpeg");
    dsp_packet_unref(&out);
    dsp_harness_free(&h);
}
END_TEST

/* No GPU here (or no CUDA in FFmpeg): software, and the output says why. */
START_TEST(test_hwaccel_cuda_falls_back)
{
    const char *params[] = { "hwaccel=cuda", "sample=every", "every=10", NULL };
    static dsp_packet *out[16];
    int n = decode(params, dp("mpeg4.avi"), out, 16);
    ck_assert_int_eq(n, 3);
    const char *used = meta_str(out[0], "hwaccel");
    if (strcmp(used, "none") == 0) {
        const char *why = meta_str(out[0], "hwaccel_fallback");
        ck_assert_msg(strstr(why, "CUDA") != NULL, "fallback reason: %s", why);
    } else {
        ck_assert_str_eq(used, "cuda");
    }
    free_all(out, n);
}
END_TEST

/* ---- bad input and limits ----------------------------------------------------------- */

START_TEST(test_errors_name_file_and_reason)
{
    const char *all[] = { NULL };
    { const char *n[] = { "empty (0 bytes)", NULL };
      expect_fail(all, dp("empty.mp4"), DSP_EFORMAT, n); }
    { const char *n[] = { "truncated", "strict=false", NULL };
      expect_fail(all, dp("truncated.mkv"), DSP_EFORMAT, n); }
    { const char *n[] = { "not a video", "text", NULL };
      expect_fail(all, dp("notes.mp4"), DSP_EUNSUPPORTED, n); }
    { const char *n[] = { "an image", "image.decode", NULL };
      expect_fail(all, dp("photo.mp4"), DSP_EUNSUPPORTED, n); }
    { const char *n[] = { "no video stream", NULL };
      expect_fail(all, dp("audio.m4a"), DSP_EUNSUPPORTED, n); }
    { const char *n[] = { "unsupported codec", "QQQQ", NULL };
      expect_fail(all, dp("unknown_codec.avi"), DSP_EUNSUPPORTED, n); }
    { const char *n[] = { "cannot read", NULL };
      expect_fail(all, dp("missing.mp4"), DSP_ENOENT, n); }

    { const char *n[] = { "damaged video", "strict=false", NULL };
      expect_fail(all, dp("damaged.avi"), DSP_EFORMAT, n); }

    /* strict=false keeps what decodes of the truncated file, and says so */
    const char *lax[] = { "strict=false", NULL };
    static dsp_packet *out[64];
    int n = decode(lax, dp("truncated.mkv"), out, 64);
    ck_assert_int_gt(n, 5);
    ck_assert_int_lt(n, 50);
    ck_assert_ptr_nonnull(strstr(meta_str(out[n - 1], "decode_warning"), "truncated"));
    free_all(out, n);
    n = decode(lax, dp("damaged.avi"), out, 64);
    ck_assert_int_gt(n, 5);
    ck_assert(dsp_meta_has(dsp_packet_meta_const(out[n - 1]), "decode_warning"));
    free_all(out, n);
}
END_TEST

START_TEST(test_limits)
{
    { const char *p[] = { "max_pixels=1000", NULL }, *n[] = { "max_pixels=1000", NULL };
      expect_fail(p, dp("ffv1.mkv"), DSP_ELIMIT, n); }
    { const char *p[] = { "max_frames=10", NULL }, *n[] = { "max_frames=10", NULL };
      expect_fail_at(p, dp("ffv1.mkv"), DSP_ELIMIT, n, 1); }
    /* a header that declares too many frames is refused before decoding */
    { const char *p[] = { "max_frames=10", NULL }, *n[] = { "max_frames=10", NULL };
      expect_fail(p, dp("mpeg4.avi"), DSP_ELIMIT, n); }
    { const char *p[] = { "max_frames=10", "sample=uniform", "clip_len=2", NULL },
                  *n[] = { "max_frames=10", NULL };
      expect_fail(p, dp("ffv1.mkv"), DSP_ELIMIT, n); }
    { const char *p[] = { "max_bytes=1000", NULL }, *n[] = { "max_bytes=1000", NULL };
      expect_fail(p, dp("ffv1.mkv"), DSP_ELIMIT, n); }
    { const char *p[] = { "width=60000", "height=60000", NULL }, *n[] = { "max_pixels", NULL };
      expect_fail(p, dp("ffv1.mkv"), DSP_ELIMIT, n); }
    { const char *p[] = { "sample=fps", "fps=30", "clip_len=8", "max_frames=100000", NULL },
                  *n[] = { "max_frames=100000", "frame 4 at 0.160 s", "damaged timestamp", NULL };
      expect_fail(p, dp("pts_jump.mkv"), DSP_ELIMIT, n); }
}
END_TEST

START_TEST(test_probe)
{
    dsp_harness *h = NULL;
    const char *params[] = { "count=true", NULL };
    ck_assert_int_eq(dsp_harness_new(ctx, "video.probe", params, 1, &h), 0);
    ck_assert_int_eq(dsp_harness_push(h, 0, record(dp("ffv1.mkv"))), 0);
    dsp_packet *out = dsp_harness_pull(h, 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(meta_int(out, "num_frames"), 50);
    ck_assert_int_eq(meta_int(out, "width"), 97);
    ck_assert_double_eq_tol(meta_float(out, "fps"), 25, 1e-9);
    ck_assert_double_eq_tol(meta_float(out, "duration"), 2, 1e-3);
    ck_assert_str_eq(meta_str(out, "codec"), "ffv1");
    dsp_packet_unref(&out);
    ck_assert_int_eq(dsp_harness_push(h, 0, record(dp("notes.mp4"))), DSP_EUNSUPPORTED);
    dsp_harness_free(&h);
}
END_TEST

static Suite *video_suite(void)
{
    Suite *s = suite_create("video");
    TCase *tc = tcase_create("decode");
    tcase_add_unchecked_fixture(tc, make_clips, remove_clips);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_counts_and_pts_match_ffprobe);
    tcase_add_test(tc, test_lossless_pixels_exact);
    tcase_add_test(tc, test_sample_every);
    tcase_add_test(tc, test_sample_fps);
    tcase_add_test(tc, test_sample_uniform);
    tcase_add_test(tc, test_sliding_windows);
    tcase_add_test(tc, test_short_video_padding);
    tcase_add_test(tc, test_scaling_and_formats);
    tcase_add_test(tc, test_threads_agree);
    tcase_add_test(tc, test_bytes_input);
    tcase_add_test(tc, test_hwaccel_cuda_falls_back);
    tcase_add_test(tc, test_errors_name_file_and_reason);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_probe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(video_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
