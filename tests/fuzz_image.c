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

#define FAIL(...) do { fprintf(stderr, "fuzz_image: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

typedef struct seed {
    unsigned char *data;
    size_t size;
    int png;
} seed;

static seed seeds[128];
static int n_seeds;
static uint64_t rng_state = 0x1a2b3c4d5e6f7788ULL;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic on every platform */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

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

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Recompute the CRC of every whole chunk after the signature. */
static void fix_png_crcs(unsigned char *b, size_t n)
{
    size_t i = 8;
    while (i + 12 <= n) {
        uint32_t len = be32(b + i);
        if (len > n - i - 12)
            break;
        put32(b + i + 8 + len, crc32_of(b + i + 4, (size_t)len + 4));
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
    return k ? found[below(k)] : 0;
}

static void mutate(unsigned char *b, size_t *size, size_t cap, int png)
{
    static const unsigned char interesting[] = { 0, 1, 2, 3, 4, 6, 8, 16, 0x7f, 0x80, 0xfe,
                                                 0xff, 0xd8, 0xd9, 0xda, 0xc0, 0xc2, 0xe1 };
    size_t n = *size;
    switch (below(9)) {
    case 0:     /* flip a bit */
        if (n)
            b[below(n)] ^= (unsigned char)(1u << below(8));
        break;
    case 1:     /* an interesting byte */
        if (n)
            b[below(n)] = interesting[below(sizeof interesting)];
        break;
    case 2:     /* truncate */
        *size = below(n + 1);
        break;
    case 3: {   /* append garbage */
        size_t add = below(64) + 1;
        if (n + add > cap)
            break;
        for (size_t i = 0; i < add; i++)
            b[n + i] = (unsigned char)rng();
        *size = n + add;
        break;
    }
    case 4: {   /* copy a chunk over another place */
        if (n < 2)
            break;
        size_t len = below(n / 2) + 1, from = below(n - len + 1), to = below(n - len + 1);
        memmove(b + to, b + from, len);
        break;
    }
    case 5: {   /* insert bytes */
        size_t add = below(16) + 1, at = below(n + 1);
        if (n + add > cap)
            break;
        memmove(b + at + add, b + at, n - at);
        for (size_t i = 0; i < add; i++)
            b[at + i] = (unsigned char)rng();
        *size = n + add;
        break;
    }
    case 6: {   /* delete bytes */
        if (n < 2)
            break;
        size_t len = below(16) + 1, at = below(n);
        if (at + len > n)
            len = n - at;
        memmove(b + at, b + at + len, n - at - len);
        *size = n - len;
        break;
    }
    case 7:     /* header fields: IHDR width/height/depth/type/interlace */
        if (png && n >= 33) {
            size_t f = 16 + below(13);
            b[f] = below(2) ? interesting[below(sizeof interesting)] : (unsigned char)rng();
        } else if (!png && n > 4) {
            /* a marker segment's length or a dimension-sized field after it */
            size_t at = jpeg_segment(b, n);
            if (at && at + 8 < n)
                b[at + 2 + below(6)] = (unsigned char)rng();
        }
        break;
    default: {  /* a 16/32-bit field set to an extreme */
        static const uint32_t extremes[] = { 0, 1, 0x7fff, 0xffff, 0x10000, 0x7fffffff,
                                             0xffffffff, 65500, 65501 };
        if (n >= 8) {
            size_t at = below(n - 4);
            put32(b + at, extremes[below(sizeof extremes / sizeof extremes[0])]);
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
    FILE *fp = fopen(path, "rb");
    if (!fp || n_seeds >= 128) {
        if (fp)
            fclose(fp);
        return;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    seeds[n_seeds].data = malloc((size_t)n + 1);
    seeds[n_seeds].size = fread(seeds[n_seeds].data, 1, (size_t)n, fp);
    seeds[n_seeds].png = png;
    n_seeds++;
    fclose(fp);
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
    const unsigned char *d = dsp_tensor_data(t);
    unsigned sum = 0;
    for (size_t k = 0; k < dsp_tensor_nbytes(t); k++)
        sum += d[k];
    if (sum == 0xdeadbeef)      /* keep the loop */
        puts("");
}

int main(void)
{
    const char *srcdir = getenv("TESTS_SRCDIR");
    const char *env_it = getenv("FUZZ_ITERATIONS"), *env_seed = getenv("FUZZ_SEED");
    const char *env_s = getenv("FUZZ_SECONDS");
    long iterations = env_it ? atol(env_it) : 20000;
    double seconds = env_s ? atof(env_s) : 60;
    if (env_seed)
        rng_state ^= strtoull(env_seed, NULL, 0) * 0x9e3779b97f4a7c15ULL;
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
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (it = 0; it < iterations; it++) {
        if ((it & 63) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec) >
                seconds)
                break;
        }
        const seed *s = &seeds[below((size_t)n_seeds)];
        size_t size = s->size;
        memcpy(buf, s->data, size);
        int rounds = 1 + (int)below(4);
        for (int r = 0; r < rounds; r++)
            mutate(buf, &size, cap, s->png);
        if (s->png && below(2))
            fix_png_crcs(buf, size);

        int64_t len = (int64_t)size;
        dsp_tensor *t = NULL;
        dsp_packet *p = NULL;
        if (dsp_tensor_new(DSP_DTYPE_U8, 1, &len, &t) < 0 || dsp_packet_new(&p) < 0)
            FAIL("out of memory");
        if (size)
            memcpy(dsp_tensor_data(t), buf, size);
        char source[64];
        snprintf(source, sizeof source, "fuzz:%ld", it);
        dsp_meta_set_str(dsp_packet_meta(p), "source", source);
        dsp_packet_set_tensor(p, "bytes", t);
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
