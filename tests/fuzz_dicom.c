/* fuzz_dicom.c - deterministic mutation fuzzing of dicom.read (DCMTK parsing, every decoder, series building); run under ASan / valgrind.
 *
 * Seeds are the generated series in tests/data/dicom/gen and, when Debian's
 * python3-pydicom is installed, its test files for every transfer syntax
 * (RLE, JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000, deflate, big
 * endian, multi-frame, RGB, YBR). Each iteration takes a seed, applies 1-4
 * mutations (bit flips, interesting 16/32-bit values at random offsets, the
 * value or length of an image attribute -- Rows, Columns, BitsAllocated,
 * BitsStored, SamplesPerPixel, NumberOfFrames, PixelData -- set to extremes,
 * truncation, insertions, deletions, copied blocks), writes the bytes to a
 * file and runs dicom.read on it (with limits low enough that an absurd
 * header is refused rather than allocated), then the way medical_ct.pipe
 * does: dicom.studies on its folder (headers only), its item into dicom.read.
 * Every input must either give a volume whose every element is readable and
 * whose shape matches its meta, be skipped with a note, or fail with a
 * message (that names the file, from dicom.read on the file); dicom.studies
 * itself must never fail.
 *
 * FUZZ_ITERATIONS (default 3000), FUZZ_SEED, FUZZ_SECONDS (default 60: the
 * run stops early, with the count done). `make fuzz-dicom` runs it for
 * FUZZ_SECONDS (default 300) with no iteration limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "fuzzutil.h"

#define FAIL(...) do { fprintf(stderr, "fuzz_dicom: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

typedef struct seed {
    unsigned char *data;
    size_t size;
} seed;

static seed seeds[64];
static int n_seeds;
static void add_seed(const char *path)
{
    size_t n = 0;
    unsigned char *d;
    if (n_seeds >= 64 || !(d = fz_read_file(path, &n)))
        return;
    if (n > 0 && n < (1 << 20)) {
        seeds[n_seeds].data = d;
        seeds[n_seeds++].size = n;
    } else {
        free(d);
    }
}

/* Offsets of an attribute's tag (little-endian group, element) in buf. */
static size_t find_tag(const unsigned char *b, size_t n, unsigned g, unsigned e, size_t *pos)
{
    size_t k = 0;
    for (size_t i = 0; i + 4 <= n && k < 4; i++)
        if (b[i] == (g & 0xFF) && b[i + 1] == g >> 8 && b[i + 2] == (e & 0xFF) &&
            b[i + 3] == e >> 8)
            pos[k++] = i;
    return k;
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

static const uint32_t interesting[] = { 0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 255, 256,
                                        0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                        0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu };
enum { N_INTERESTING = sizeof interesting / sizeof interesting[0] };

static size_t mutate(unsigned char *b, size_t n, size_t cap)
{
    static const unsigned tags[][2] = { { 0x0028, 0x0010 }, { 0x0028, 0x0011 },
                                        { 0x0028, 0x0100 }, { 0x0028, 0x0101 },
                                        { 0x0028, 0x0002 }, { 0x0028, 0x0008 },
                                        { 0x7FE0, 0x0010 }, { 0x0028, 0x0103 },
                                        { 0x0020, 0x0032 }, { 0x0002, 0x0010 } };
    if (n == 0)
        return n;
    switch (fz_below(9)) {
    case 0:                     /* bit flips */
        for (int k = 1 + (int)fz_below(8); k > 0; k--)
            b[fz_below(n)] ^= (unsigned char)(1u << fz_below(8));
        break;
    case 1:                     /* an interesting value at a random place */
        if (n >= 4) {
            size_t at = fz_below(n - 3);
            if (fz_below(2))
                put16(b + at, interesting[fz_below(N_INTERESTING)]);
            else
                put32(b + at, interesting[fz_below(N_INTERESTING)]);
        }
        break;
    case 2:
    case 3: {                   /* an image attribute's value or length field */
        size_t pos[4];
        const unsigned *t = tags[fz_below(sizeof tags / sizeof tags[0])];
        size_t k = find_tag(b, n, t[0], t[1], pos);
        if (!k)
            break;
        size_t at = pos[fz_below(k)] + 4 + 2 * fz_below(5);  /* VR, length, value bytes */
        if (at + 4 <= n)
            (fz_below(2) ? put16(b + at, interesting[fz_below(N_INTERESTING)])
                      : put32(b + at, interesting[fz_below(N_INTERESTING)]));
        break;
    }
    case 4:                     /* truncate, delete, insert, copy a block */
    case 5:
    case 6:
    case 7: {
        static const int kinds[] = { FZ_TRUNCATE, FZ_DELETE, FZ_INSERT, FZ_COPY };
        fz_mutate(b, &n, cap, kinds[fz_below(4)], NULL, 0);
        break;
    }
    default:                    /* random bytes in the pixel data region */
        for (int k = 1 + (int)fz_below(32); k > 0; k--)
            b[n - 1 - fz_below(n < 4096 ? n : 4096)] = (unsigned char)fz_rng();
        break;
    }
    return n;
}

/* A volume must be fully readable and agree with its meta. */
static void check_output(dsp_packet *p, const char *path)
{
    dsp_tensor *t = dsp_packet_tensor(p, "volume");
    if (!t)
        FAIL("%s: output without a volume", path);
    int64_t s = 0, r = 0, c = 0;
    const dsp_meta *m = dsp_packet_meta_const(p);
    if (dsp_meta_get_int(m, "slices", &s) < 0 || dsp_meta_get_int(m, "rows", &r) < 0 ||
        dsp_meta_get_int(m, "cols", &c) < 0 || t->shape[0] != s || t->shape[1] != r ||
        t->shape[2] != c)
        FAIL("%s: shape and meta disagree", path);
    fz_touch(t);                /* every byte must be readable */
}

/* dir holds only path: dicom.studies groups it (or makes it an unreadable
 * item, or skips it), dicom.read reads that item. 1 when a volume came out. */
static int run_studies(dsp_context *ctx, const char *dir, const char *path,
                       const char *const *params, long it)
{
    char dir_param[300];
    snprintf(dir_param, sizeof dir_param, "dir=%s", dir);
    const char *sp[] = { dir_param, NULL };
    dsp_harness *hs = NULL, *hr = NULL;
    if (dsp_harness_new(ctx, "dicom.studies", sp, 0, &hs) < 0 ||
        dsp_harness_new(ctx, "dicom.read", params, 1, &hr) < 0)
        FAIL("dicom.studies / dicom.read: %s", dsp_context_errmsg(ctx));
    int err, got = 0;
    while ((err = dsp_harness_step(hs)) == 0)
        ;
    if (err != DSP_EOF)
        FAIL("iteration %ld: dicom.studies failed on %s: %s", it, path,
             dsp_harness_errmsg(hs));
    dsp_packet *item, *out;
    while ((item = dsp_harness_pull(hs, 0))) {
        if (dsp_harness_push(hr, 0, item) < 0 && !dsp_harness_errmsg(hr)[0])
            FAIL("iteration %ld: a study failed without a message", it);
        while ((out = dsp_harness_pull(hr, 0))) {
            check_output(out, path);
            dsp_packet_unref(&out);
            got = 1;
        }
    }
    if (dsp_harness_flush(hr) < 0 || dsp_harness_pull(hr, 0))
        FAIL("iteration %ld: dicom.read per study did something at the end", it);
    dsp_harness_free(&hr);
    dsp_harness_free(&hs);
    return got;
}

int main(void)
{
    const char *srcdir = getenv("TESTS_SRCDIR");
    long iterations;
    fz_seed(0x5eed0d1c0a11ULL);

    static const char *gen[] = { "ct/f00_q", "ct/f03_m", "mr/mr0.dcm", "noipp/n0.dcm",
                                 "mono1/m1.dcm", "notes/DICOMDIR", "enhanced/mf.dcm" };
    static const char *py[] = {
        "CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "image_dfl.dcm",
        "JPEG-lossy.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_32bit_2frame.dcm", "ExplVR_BigEnd.dcm",
        "SC_ybr_full_422_uncompressed.dcm", "GDCMJ2K_TextGBR.dcm", "rtdose_expb.dcm",
        "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_small_odd.dcm", "rtdose_rle.dcm",
    };
    char p[1024];
    for (size_t i = 0; i < sizeof gen / sizeof gen[0]; i++) {
        snprintf(p, sizeof p, "%s/data/dicom/gen/%s", srcdir && *srcdir ? srcdir : ".", gen[i]);
        add_seed(p);
    }
    if (n_seeds < 5)
        FAIL("only %d seed files under %s/data/dicom/gen (set TESTS_SRCDIR)", n_seeds,
             srcdir ? srcdir : ".");
    for (size_t i = 0; i < sizeof py / sizeof py[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", PYDICOM_FILES, py[i]);
        add_seed(p);
    }
    fprintf(stderr, "fuzz_dicom: %d seeds\n", n_seeds);

    dsp_log_set_level(DSP_LOG_ERROR);
    dsp_context *ctx = NULL;
    if (dsp_context_new(&ctx) < 0 || dsp_context_load_plugins(ctx) < 0 ||
        !dsp_context_find_op(ctx, "dicom.read"))
        FAIL("cannot load the dicom plugin (DSPIPE_PLUGIN_PATH)");
    const char *params[] = { "max_pixels=4000000", "max_frames=64", "max_bytes=67108864",
                             "select=all", NULL };

    char dir[] = "/tmp/dsp_fuzz_dicom_XXXXXX";
    if (!mkdtemp(dir))
        FAIL("mkdtemp failed");
    char path[256];
    snprintf(path, sizeof path, "%s/in.dcm", dir);

    size_t cap = 0;
    for (int i = 0; i < n_seeds; i++)
        cap = seeds[i].size > cap ? seeds[i].size : cap;
    cap += 4096;
    unsigned char *buf = malloc(cap);
    long volumes = 0, failed = 0, skipped = 0, by_study = 0, it;
    fz_budget(3000, 60, &iterations);
    for (it = 0; it < iterations; it++) {
        if (fz_time_up(it))
            break;
        const seed *s = &seeds[fz_below((size_t)n_seeds)];
        size_t size = s->size;
        memcpy(buf, s->data, size);
        for (int r = 1 + (int)fz_below(4); r > 0; r--)
            size = mutate(buf, size, cap);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(buf, 1, size, fp) != size || fclose(fp) != 0)
            FAIL("cannot write %s", path);

        dsp_harness *h = NULL;
        if (dsp_harness_new(ctx, "dicom.read", params, 1, &h) < 0)
            FAIL("dicom.read: %s", dsp_context_errmsg(ctx));
        dsp_packet *in = NULL;
        if (dsp_packet_new(&in) < 0 || dsp_meta_set_str(dsp_packet_meta(in), "path", path) < 0)
            FAIL("out of memory");
        int err = dsp_harness_push(h, 0, in);
        if (err < 0) {
            if (!strstr(dsp_harness_errmsg(h), path))
                FAIL("iteration %ld: the message does not name the file: %s", it,
                     dsp_harness_errmsg(h));
            failed++;
        }
        int ferr = dsp_harness_flush(h);
        if (ferr < 0 && !dsp_harness_errmsg(h)[0])
            FAIL("iteration %ld: flush failed without a message", it);
        dsp_packet *out;
        int got = 0;
        while ((out = dsp_harness_pull(h, 0))) {
            check_output(out, path);
            dsp_packet_unref(&out);
            got = 1;
        }
        volumes += got;
        skipped += !got && err == 0 && ferr == 0;
        dsp_harness_free(&h);
        by_study += run_studies(ctx, dir, path, params, it);
    }
    unlink(path);
    rmdir(dir);
    fprintf(stderr, "fuzz_dicom: %ld inputs: %ld volumes, %ld refused with a message, %ld "
            "skipped or refused at the series level; %ld volumes by study\n", it, volumes,
            failed, skipped, by_study);
    free(buf);
    for (int i = 0; i < n_seeds; i++)
        free(seeds[i].data);
    dsp_context_free(&ctx);
    return 0;
}
