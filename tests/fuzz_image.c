/* fuzz_image.c - deterministic mutation fuzzing of image.decode's PNG and JPEG parsers (run under ASan / valgrind).
 *
 * Seeds are the PNG and JPEG fixtures in tests/data/image. Each iteration
 * takes a seed, applies 1-4 mutations (bit flips, interesting bytes,
 * truncation, garbage appended, chunks copied, bytes inserted or deleted,
 * PNG header fields and JPEG marker lengths / dimensions rewritten), and,
 * for half of the PNG inputs, recomputes every chunk CRC so the mutation
 * reaches libpng's parsing instead of stopping at the CRC check. The bytes
 * go through image.decode (as a u8 tensor, with one of several parameter
 * sets) and must either decode to an image whose every byte is readable and
 * whose meta matches its shape, or fail the item with a negative code and a
 * message naming the input. A decoded image is then resized, which must
 * succeed.
 *
 * FUZZ_ITERATIONS overrides the count (default 20000), FUZZ_SEED the PRNG
 * seed, FUZZ_SECONDS the time limit (default 60: the run stops early, with
 * the count done, so a slow valgrind run stays bounded).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include "fuzzutil.h"

#define FAIL(...) do { fprintf(stderr, "fuzz_image: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

typedef struct seed {
    unsigned char *data;
    size_t size;
    int png;
} seed;

static seed seeds[128];
static int n_seeds;
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Recompute the CRC of every whole chunk after the signature. */
static void fix_png_crcs(unsigned char *b, size_t n)
{
    size_t i = 8;
    while (i + 12 <= n) {
        uint32_t len = be32(b + i);
        if (len > n - i - 12)
            break;
        fz_put32be(b + i + 8 + len, crc32_of(b + i + 4, (size_t)len + 4));
        i += 12 + (size_t)len;
    }
}

/* Offset of a JPEG marker segment (FF xx with a length) chosen at random, or 0. */
static size_t jpeg_segment(const unsigned char *b, size_t n)
{
    size_t found[64], k = 0, i = 2;
    while (i + 4 <= n && k < 64) {
        if (b[i] != 0xFF)
            break;
        unsigned m = b[i + 1];
        if (m == 0xDA || m == 0xD9)
            break;
        found[k++] = i;
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    return k ? found[fz_below(k)] : 0;
}

static void mutate(unsigned char *b, size_t *size, size_t cap, int png)
{
    static const unsigned char interesting[] = { 0, 1, 2, 3, 4, 6, 8, 16, 0x7f, 0x80, 0xfe,
                                                 0xff, 0xd8, 0xd9, 0xda, 0xc0, 0xc2, 0xe1 };
    size_t n = *size;
    int kind = (int)fz_below(9);
    if (kind < FZ_KINDS) {
        fz_mutate(b, size, cap, kind, interesting, sizeof interesting);
        return;
    }
    switch (kind) {
    case 7:     /* header fields: IHDR width/height/depth/type/interlace */
        if (png && n >= 33) {
            size_t f = 16 + fz_below(13);
            b[f] = fz_below(2) ? interesting[fz_below(sizeof interesting)] : (unsigned char)fz_rng();
        } else if (!png && n > 4) {
            /* a marker segment's length or a dimension-sized field after it */
            size_t at = jpeg_segment(b, n);
            if (at && at + 8 < n)
                b[at + 2 + fz_below(6)] = (unsigned char)fz_rng();
        }
        break;
    default: {  /* a 16/32-bit field set to an extreme */
        static const uint32_t extremes[] = { 0, 1, 0x7fff, 0xffff, 0x10000, 0x7fffffff,
                                             0xffffffff, 65500, 65501 };
        if (n >= 8) {
            size_t at = fz_below(n - 4);
            fz_put32be(b + at, extremes[fz_below(sizeof extremes / sizeof extremes[0])]);
        }
        break;
    }
    }
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static void add_seed_file(const char *path, int png)
{
    if (n_seeds >= 128 || !(seeds[n_seeds].data = fz_read_file(path, &seeds[n_seeds].size)))
        return;
    seeds[n_seeds++].png = png;
}

/* Every byte of a decoded image is read (valgrind / ASan see a bad one) and
 * its shape agrees with its metadata. */
static void check_image(const dsp_packet *p, long it)
{
    const dsp_tensor *t = dsp_packet_tensor(p, "image");
    int64_t w = -1, h = -1, c = -1;
    const dsp_meta *m = dsp_packet_meta_const(p);
    if (!t || t->ndim != 3 || dsp_meta_get_int(m, "width", &w) || dsp_meta_get_int(m, "height", &h) ||
        dsp_meta_get_int(m, "channels", &c))
        FAIL("iteration %ld: a decoded packet without a proper image and meta", it);
    if (t->shape[0] != h || t->shape[1] != w || t->shape[2] != c || c < 1 || c > 4 ||
        (t->dtype != DSP_DTYPE_U8 && t->dtype != DSP_DTYPE_U16) || w < 1 || h < 1)
        FAIL("iteration %ld: image shape and meta disagree", it);
    fz_touch(t);
}

int main(void)
{
    const char *srcdir = getenv("TESTS_SRCDIR");
    long iterations;
    fz_seed(0x1a2b3c4d5e6f7788ULL);
    crc_init();

    char dir[512];
    snprintf(dir, sizeof dir, "%s/data/image", srcdir && *srcdir ? srcdir : ".");
    DIR *d = opendir(dir);
    if (!d)
        FAIL("%s: cannot open the fixtures (set TESTS_SRCDIR)", dir);
    struct dirent *de;
    char *names[128];
    int n_names = 0;
    while ((de = readdir(d)) && n_names < 128)
        if (ends_with(de->d_name, ".png") || ends_with(de->d_name, ".jpg"))
            names[n_names++] = strdup(de->d_name);
    closedir(d);
    /* readdir order varies between file systems: sort for a reproducible run */
    for (int i = 1; i < n_names; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *x = names[j];
            names[j] = names[j - 1];
            names[j - 1] = x;
        }
    for (int i = 0; i < n_names; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        add_seed_file(p, ends_with(names[i], ".png"));
        free(names[i]);
    }
    if (n_seeds < 10)
        FAIL("only %d seed files in %s", n_seeds, dir);

    dsp_log_set_level(DSP_LOG_ERROR);
    dsp_context *ctx = NULL;
    if (dsp_context_new(&ctx) < 0 || dsp_context_load_plugins(ctx) < 0 ||
        !dsp_context_find_op(ctx, "image.decode"))
        FAIL("cannot load the image plugin (DSPIPE_PLUGIN_PATH)");
    /* several parameter sets, so conversion and orientation paths run too */
    static const char *const sets[][5] = {
        { "max_pixels=1000000", NULL },
        { "max_pixels=1000000", "strict=false", "mode=rgb", NULL },
        { "max_pixels=1000000", "depth=8", "mode=gray", NULL },
        { "max_pixels=1000000", "strict=false", "mode=rgba", "orient=false", NULL },
    };
    enum { N_SETS = sizeof sets / sizeof sets[0] };
    dsp_harness *dec[N_SETS], *rs = NULL;
    for (int i = 0; i < N_SETS; i++)
        if (dsp_harness_new(ctx, "image.decode", sets[i], 1, &dec[i]) < 0)
            FAIL("image.decode: %s", dsp_context_errmsg(ctx));
    const char *rparams[] = { "width=16", "height=9", "filter=bicubic", NULL };
    if (dsp_harness_new(ctx, "image.resize", rparams, 1, &rs) < 0)
        FAIL("image.resize: %s", dsp_context_errmsg(ctx));

    size_t cap = 0;
    for (int i = 0; i < n_seeds; i++)
        cap = seeds[i].size > cap ? seeds[i].size : cap;
    cap += 4096;
    unsigned char *buf = malloc(cap);
    long ok[2] = { 0, 0 }, rejected[2] = { 0, 0 }, it;
    fz_budget(20000, 60, &iterations);
    for (it = 0; it < iterations; it++) {
        if (fz_time_up(it))
            break;
        const seed *s = &seeds[fz_below((size_t)n_seeds)];
        size_t size = s->size;
        memcpy(buf, s->data, size);
        int rounds = 1 + (int)fz_below(4);
        for (int r = 0; r < rounds; r++)
            mutate(buf, &size, cap, s->png);
        if (s->png && fz_below(2))
            fix_png_crcs(buf, size);

        char source[64];
        snprintf(source, sizeof source, "fuzz:%ld", it);
        dsp_packet *p = fz_bytes_packet(buf, size, source);
        dsp_harness *h = dec[it % N_SETS];
        int err = dsp_harness_push(h, 0, p);
        dsp_packet *out = dsp_harness_pull(h, 0);
        if (err < 0) {
            const char *msg = dsp_harness_errmsg(h);
            if (out)
                FAIL("iteration %ld: failed (%d) but emitted a packet", it, err);
            if (!msg || !strstr(msg, source))
                FAIL("iteration %ld: failure (%d) without a message naming the input: %s", it,
                     err, msg ? msg : "(none)");
            rejected[!s->png]++;
            continue;
        }
        if (!out)
            FAIL("iteration %ld: success without an output packet", it);
        check_image(out, it);
        err = dsp_harness_push(rs, 0, out);
        if (err < 0)
            FAIL("iteration %ld: resizing a decoded image failed: %s", it, dsp_harness_errmsg(rs));
        out = dsp_harness_pull(rs, 0);
        dsp_packet_unref(&out);
        ok[!s->png]++;
    }
    for (int i = 0; i < N_SETS; i++)
        dsp_harness_free(&dec[i]);
    dsp_harness_free(&rs);
    dsp_context_free(&ctx);
    free(buf);
    for (int i = 0; i < n_seeds; i++)
        free(seeds[i].data);
    /* "NN%:" first, like check's summary, which make check-valgrind looks for:
       the share of the planned iterations that ran within FUZZ_SECONDS */
    printf("%d%%: fuzz_image: %ld of %ld iterations over %d seeds: PNG %ld decoded / %ld "
           "rejected, JPEG %ld decoded / %ld rejected, no crash\n",
           iterations > 0 ? (int)(100 * it / iterations) : 100, it, iterations, n_seeds, ok[0],
           rejected[0], ok[1], rejected[1]);
    return 0;
}
