/* fuzz_video.c - deterministic mutation fuzzing of video.decode: FFmpeg demuxers and decoders fed from memory (run under ASan / valgrind).
 *
 * Seeds are small clips the ffmpeg CLI makes at start (FFV1/Matroska,
 * MPEG-4/AVI, MJPEG/AVI, H.264/MP4 and raw Annex B, VP9/WebM, MPEG-2/TS,
 * when the encoders exist). Each iteration takes a seed, applies 1-4
 * mutations (bit flips, interesting bytes, truncation, garbage appended,
 * chunks copied, bytes inserted or deleted, 16/32-bit fields set to
 * extremes) and sends the bytes as a u8 tensor through video.decode, which
 * reads them through a custom AVIOContext over memory, with one of several
 * parameter sets (all frames, uniform clips with scaling, fps windows in
 * gray, every Nth lax). Every output must have a tensor whose shape agrees
 * with its meta and whose every byte is readable; a failure must carry a
 * negative code and a message naming the input.
 *
 * FUZZ_ITERATIONS overrides the count (default 1000000), FUZZ_SEED the PRNG
 * seed, FUZZ_SECONDS the time limit (default 20; make fuzz-video runs 300).
 * Exit 77 (skip) without the ffmpeg command.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "fuzzutil.h"

#define FAIL(...) do { fprintf(stderr, "fuzz_video: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

typedef struct seed {
    unsigned char *data;
    size_t size;
    const char *name;
} seed;

static seed seeds[16];
static int n_seeds;

static void mutate(unsigned char *b, size_t *size, size_t cap)
{
    static const unsigned char interesting[] = { 0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x1a, 0x45,
                                                 0xdf, 0xa3, 0x47, 0x00, 0x01, 0xb3, 0x65 };
    size_t n = *size;
    int kind = (int)fz_below(9);
    if (kind < FZ_KINDS) {
        fz_mutate(b, size, cap, kind, interesting, sizeof interesting);
        return;
    }
    switch (kind) {
    case 7:     /* the header region: sizes, dimensions, counts live there */
        if (n > 16)
            b[fz_below(n < 512 ? n : 512)] = (unsigned char)fz_rng();
        break;
    default: {  /* a 16/32-bit field set to an extreme */
        static const uint32_t extremes[] = { 0, 1, 0x7fff, 0xffff, 0x10000, 0x7fffffff,
                                             0xffffffff, 0x80000000, 65500 };
        if (n >= 8) {
            size_t at = fz_below(n - 4);
            fz_put32be(b + at, extremes[fz_below(sizeof extremes / sizeof extremes[0])]);
        }
        break;
    }
    }
}

static void add_seed(const char *dir, const char *name, const char *args)
{
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -v error -y -f lavfi "
             "-i testsrc=size=32x24:rate=10:duration=0.6 %s %s 2>/dev/null", args, path);
    if (system(cmd) != 0)
        return;     /* an encoder this ffmpeg lacks */
    seed *s = &seeds[n_seeds];
    if (!(s->data = fz_read_file(path, &s->size)))
        return;
    s->name = name;
    remove(path);
    n_seeds++;
}

/* Shape and meta agree, and every byte is read (valgrind / ASan see a bad one). */
static void check_output(const dsp_packet *p, long it)
{
    const dsp_tensor *t = dsp_packet_tensor(p, "frames");
    const dsp_meta *m = dsp_packet_meta_const(p);
    int64_t w = -1, h = -1, c = -1;
    if (!t || dsp_meta_get_int(m, "width", &w) || dsp_meta_get_int(m, "height", &h) ||
        dsp_meta_get_int(m, "channels", &c))
        FAIL("iteration %ld: an output without frames and meta", it);
    int d = t->ndim - 3;
    if ((t->ndim != 3 && t->ndim != 4) || t->shape[d] != h || t->shape[d + 1] != w ||
        t->shape[d + 2] != c || t->dtype != DSP_DTYPE_U8)
        FAIL("iteration %ld: frames tensor and meta disagree", it);
    fz_touch(t);
}

int main(void)
{
    long iterations;
    fz_seed(0x5eed0f0f1de0c0deULL);
    if (system("command -v ffmpeg >/dev/null 2>&1") != 0) {
        fprintf(stderr, "fuzz_video: the ffmpeg command makes the seeds; skipped\n");
        return 77;
    }
    const char *base = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/dsp_fuzz_video_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir))
        FAIL("cannot make a temporary directory");
    add_seed(dir, "ffv1.mkv", "-c:v ffv1");
    add_seed(dir, "mpeg4.avi", "-c:v mpeg4");
    add_seed(dir, "mjpeg.avi", "-c:v mjpeg");
    add_seed(dir, "h264.mp4", "-c:v libx264 -pix_fmt yuv420p -movflags +faststart");
    add_seed(dir, "h264.h264", "-c:v libx264 -pix_fmt yuv420p -f h264");
    add_seed(dir, "vp9.webm", "-c:v libvpx-vp9 -deadline realtime");
    add_seed(dir, "mpeg2.ts", "-c:v mpeg2video -f mpegts");
    remove(dir);
    if (n_seeds < 3)
        FAIL("only %d seed clips could be made with the ffmpeg command", n_seeds);

    dsp_log_set_level(DSP_LOG_ERROR);
    dsp_context *ctx = NULL;
    if (dsp_context_new(&ctx) < 0 || dsp_context_load_plugins(ctx) < 0 ||
        !dsp_context_find_op(ctx, "video.decode"))
        FAIL("cannot load the video plugin (DSPIPE_PLUGIN_PATH)");
    static const char *const sets[][9] = {
        { "max_pixels=1000000", "max_frames=5000", "threads=1", NULL },
        { "max_pixels=1000000", "max_frames=5000", "sample=uniform", "clip_len=4", "shorter=16",
          "threads=2", NULL },
        { "max_pixels=1000000", "max_frames=5000", "sample=fps", "fps=7", "clip_len=3",
          "stride=2", "pix_fmt=gray", "strict=false" },
        { "max_pixels=1000000", "max_frames=5000", "sample=every", "every=2", "width=20",
          "height=10", "strict=false", "interp=area" },
    };
    enum { N_SETS = sizeof sets / sizeof sets[0] };
    dsp_harness *dec[N_SETS];
    for (int i = 0; i < N_SETS; i++)
        if (dsp_harness_new(ctx, "video.decode", sets[i], 1, &dec[i]) < 0)
            FAIL("video.decode: %s", dsp_context_errmsg(ctx));

    size_t cap = 0;
    for (int i = 0; i < n_seeds; i++)
        cap = seeds[i].size > cap ? seeds[i].size : cap;
    cap += 4096;
    unsigned char *buf = malloc(cap);
    long ok = 0, rejected = 0, outputs = 0, it;
    fz_budget(1000000, 20, &iterations);
    for (it = 0; it < iterations; it++) {
        if (fz_time_up(it))
            break;
        const seed *s = &seeds[fz_below((size_t)n_seeds)];
        size_t size = s->size;
        memcpy(buf, s->data, size);
        int rounds = 1 + (int)fz_below(4);
        for (int r = 0; r < rounds; r++)
            mutate(buf, &size, cap);

        char source[64];
        snprintf(source, sizeof source, "fuzz:%ld:%s", it, s->name);
        dsp_packet *p = fz_bytes_packet(buf, size, source);
        dsp_harness *h = dec[it % N_SETS];
        int err = dsp_harness_push(h, 0, p);
        dsp_packet *out;
        if (err < 0) {
            const char *msg = dsp_harness_errmsg(h);
            if (!msg || !strstr(msg, source))
                FAIL("iteration %ld: failure (%d) without a message naming the input: %s", it,
                     err, msg ? msg : "(none)");
            while ((out = dsp_harness_pull(h, 0)))  /* parts sent before the damage */
                dsp_packet_unref(&out);
            rejected++;
            continue;
        }
        while ((out = dsp_harness_pull(h, 0))) {
            check_output(out, it);
            dsp_packet_unref(&out);
            outputs++;
        }
        ok++;
    }
    for (int i = 0; i < N_SETS; i++)
        dsp_harness_free(&dec[i]);
    dsp_context_free(&ctx);
    free(buf);
    for (int i = 0; i < n_seeds; i++)
        free(seeds[i].data);
    /* "NN%:" first, like check's summary, which make check-valgrind looks for */
    printf("%d%%: fuzz_video: %ld iterations in %.0f s over %d seeds: %ld decoded (%ld "
           "packets out), %ld rejected, no crash\n",
           100, it, fz_elapsed(), n_seeds, ok, outputs, rejected);
    return 0;
}
