/* fuzz_tensorio.c - deterministic mutation fuzzing of the .npy and .safetensors readers (run under ASan).
 *
 * Seeds are the fixtures in tests/data/tensorio plus a few files written by
 * dspipe itself. Each iteration takes a seed, applies 1-4 mutations (bit
 * flips, interesting bytes, digit changes in the header, truncation,
 * extension, chunk duplication), writes it to a temporary file and reads it.
 * A read must either succeed with a tensor whose elements all lie inside
 * the mapping (every element is touched), or fail with a negative code and
 * a non-empty message naming the file. Successful reads are written back
 * and read again, which must give the same values.
 *
 * FUZZ_ITERATIONS overrides the count (default 20000); FUZZ_SEED the PRNG seed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dspipe/dspipe.h>
#include <dspipe/tensorio.h>

#define FAIL(...) do { fprintf(stderr, "fuzz_tensorio: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

typedef struct seed {
    unsigned char *data;
    size_t size;
    int is_npy;
} seed;

static seed seeds[128];
static int n_seeds;
static uint64_t rng_state = 0x5eed5eed12345678ULL;

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

static void add_seed_file(const char *path, int is_npy)
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
    seeds[n_seeds].is_npy = is_npy;
    n_seeds++;
    fclose(fp);
}

static void write_file(const char *path, const unsigned char *d, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(d, 1, n, fp) != n)
        FAIL("cannot write %s", path);
    fclose(fp);
}

static void mutate(unsigned char **buf, size_t *size, size_t *cap)
{
    static const unsigned char interesting[] = {
        0, 1, 0x7f, 0x80, 0xff, '{', '}', '[', ']', '"', '\'', ',', ':', '(', ')',
        '-', '0', '9', ' ', '\n', 'e', 'E', '.', '\\',
    };
    unsigned char *b = *buf;
    size_t n = *size;
    switch (below(7)) {
    case 0:     /* flip a bit */
        if (n)
            b[below(n)] ^= (unsigned char)(1u << below(8));
        break;
    case 1:     /* an interesting byte */
        if (n)
            b[below(n)] = interesting[below(sizeof interesting)];
        break;
    case 2: {   /* change a digit in the header: shapes, offsets, lengths */
        size_t lim = n < 256 ? n : 256;
        for (int tries = 0; tries < 16 && lim; tries++) {
            size_t i = below(lim);
            if (b[i] >= '0' && b[i] <= '9') {
                b[i] = (unsigned char)('0' + below(10));
                break;
            }
        }
        break;
    }
    case 3:     /* truncate */
        *size = below(n + 1);
        break;
    case 4: {   /* extend with garbage */
        size_t add = below(64) + 1;
        if (n + add > *cap)
            break;
        for (size_t i = 0; i < add; i++)
            b[n + i] = (unsigned char)rng();
        *size = n + add;
        break;
    }
    case 5: {   /* copy a chunk over another place */
        if (n < 2)
            break;
        size_t len = below(n / 2) + 1, from = below(n - len + 1), to = below(n - len + 1);
        memmove(b + to, b + from, len);
        break;
    }
    default:    /* the length fields themselves */
        if (n >= 12)
            b[below(4) + (b[0] == 0x93 ? 8 : 0)] = (unsigned char)rng();
        break;
    }
}

/* Touch every element through the strides, checking it lies in the buffer. */
static uint64_t touch(const dsp_tensor *t)
{
    size_t es = dsp_dtype_size(t->dtype), bsize = dsp_buffer_size(t->buf);
    int64_t n = dsp_tensor_numel(t);
    const unsigned char *base = dsp_tensor_data(t);
    uint64_t sum = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t rem = k, off = 0;
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += (rem % t->shape[d]) * t->stride[d];
            rem /= t->shape[d];
        }
        size_t at = t->offset + (size_t)off * es;
        if (off < 0 || at + es > bsize)
            FAIL("element %lld at byte %zu lies outside the buffer of %zu bytes",
                 (long long)k, at, bsize);
        for (size_t j = 0; j < es; j++)
            sum = sum * 31 + base[off * (int64_t)es + (int64_t)j];
    }
    return sum;
}

static void check_error(int err, char *why, const char *path, const char *what)
{
    if (err >= 0)
        return;
    if (!why || !*why)
        FAIL("%s failed (%d) without a message", what, err);
    if (!strstr(why, path))
        FAIL("%s: message does not name the file: %s", what, why);
}

static int fuzz_npy(const char *path, const char *path2)
{
    dsp_tensor *t = NULL, *back = NULL;
    char *why = NULL;
    int err = dsp_npy_read(path, &t, &why);
    check_error(err, why, path, "dsp_npy_read");
    free(why);
    if (err < 0) {
        if (t)
            FAIL("dsp_npy_read failed but returned a tensor");
        return 0;
    }
    uint64_t h = touch(t);
    why = NULL;
    if (dsp_npy_write(path2, t, &why) < 0)
        FAIL("cannot write back a tensor just read: %s", why ? why : "?");
    free(why);
    if (dsp_npy_read(path2, &back, NULL) < 0 || touch(back) != h)
        FAIL("npy round trip changed the values");
    dsp_tensor_unref(&t);
    dsp_tensor_unref(&back);
    return 1;
}

static int fuzz_safetensors(const char *path, const char *path2)
{
    dsp_safetensors *st = NULL;
    char *why = NULL;
    int err = dsp_safetensors_open(path, &st, &why);
    check_error(err, why, path, "dsp_safetensors_open");
    free(why);
    if (err < 0) {
        if (st)
            FAIL("dsp_safetensors_open failed but returned a handle");
        return 0;
    }
    int n = dsp_safetensors_count(st);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    dsp_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
    uint64_t h = 0;
    for (int i = 0; i < n; i++) {
        names[i] = dsp_safetensors_name(st, i);
        if (dsp_safetensors_get(st, names[i], &ts[i]) < 0)
            FAIL("listed tensor '%s' cannot be fetched", names[i]);
        h = h * 131 + touch(ts[i]);
    }
    for (int i = 0; i < dsp_safetensors_metadata_count(st); i++)
        if (!dsp_safetensors_metadata(st, dsp_safetensors_metadata_key(st, i)))
            FAIL("listed metadata key has no value");
    why = NULL;
    if (dsp_safetensors_write(path2, names, ts, n, NULL, &why) < 0)
        FAIL("cannot write back tensors just read: %s", why ? why : "?");
    free(why);
    dsp_safetensors *st2 = NULL;
    if (dsp_safetensors_open(path2, &st2, NULL) < 0 || dsp_safetensors_count(st2) != n)
        FAIL("safetensors round trip failed");
    uint64_t h2 = 0;
    for (int i = 0; i < n; i++) {
        dsp_tensor *t = NULL;
        if (dsp_safetensors_get(st2, names[i], &t) < 0)
            FAIL("round trip lost tensor '%s'", names[i]);
        h2 = h2 * 131 + touch(t);
        dsp_tensor_unref(&t);
    }
    if (h != h2)
        FAIL("safetensors round trip changed the values");
    for (int i = 0; i < n; i++)
        dsp_tensor_unref(&ts[i]);
    free(ts);
    free(names);
    dsp_safetensors_close(&st2);
    dsp_safetensors_close(&st);
    return 1;
}

/* More safetensors seeds, written by dspipe: small files whose headers are
 * a large share of the bytes, so mutations mostly land in the JSON. */
static void add_written_seeds(const char *path)
{
    static const dsp_dtype dts[] = { DSP_DTYPE_F32, DSP_DTYPE_BF16, DSP_DTYPE_U8,
                                     DSP_DTYPE_I64, DSP_DTYPE_BOOL, DSP_DTYPE_F16 };
    for (int k = 1; k <= 6; k++) {
        const char *names[6] = { "a", "b.weight", "c", "layers.0.x", "e", "f" };
        dsp_tensor *ts[6] = { 0 };
        for (int i = 0; i < k; i++) {
            int64_t shape[2] = { i + 1, k };
            if (dsp_tensor_new(dts[i], 2, shape, &ts[i]) < 0)
                FAIL("dsp_tensor_new");
            memset(dsp_tensor_data(ts[i]), 0x11 * i, dsp_tensor_nbytes(ts[i]));
        }
        dsp_meta *md = dsp_meta_new();
        dsp_meta_set_str(md, "format", "pt");
        if (k & 1)
            dsp_meta_set_int(md, "k", k);
        if (dsp_safetensors_write(path, names, ts, k, k > 1 ? md : NULL, NULL) < 0)
            FAIL("cannot write a seed file");
        dsp_meta_free(&md);
        for (int i = 0; i < k; i++)
            dsp_tensor_unref(&ts[i]);
        add_seed_file(path, 0);
    }
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int main(void)
{
    const char *srcdir = getenv("TESTS_SRCDIR");
    const char *env_it = getenv("FUZZ_ITERATIONS"), *env_seed = getenv("FUZZ_SEED");
    long iterations = env_it ? atol(env_it) : 20000;
    if (env_seed)
        rng_state ^= strtoull(env_seed, NULL, 0) * 0x9e3779b97f4a7c15ULL;

    char dir[512], tmpl[512];
    snprintf(dir, sizeof dir, "%s/data/tensorio", srcdir && *srcdir ? srcdir : ".");
    DIR *d = opendir(dir);
    if (!d)
        FAIL("%s: cannot open the fixtures (set TESTS_SRCDIR)", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (ends_with(de->d_name, ".npy"))
            add_seed_file(p, 1);
        else if (ends_with(de->d_name, ".safetensors"))
            add_seed_file(p, 0);
    }
    closedir(d);
    if (n_seeds < 4)
        FAIL("only %d seed files in %s", n_seeds, dir);

    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/dsp_fuzz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl))
        FAIL("cannot create a temporary directory");
    char path[600], path2[600];
    snprintf(path, sizeof path, "%s/in", tmpl);
    snprintf(path2, sizeof path2, "%s/back", tmpl);
    add_written_seeds(path);

    /* readers log nothing; keep the run quiet anyway */
    dsp_log_set_level(DSP_LOG_ERROR);
    long ok[2] = { 0, 0 }, rejected[2] = { 0, 0 };
    size_t cap = 0;
    for (int i = 0; i < n_seeds; i++)
        cap = seeds[i].size > cap ? seeds[i].size : cap;
    cap += 4096;
    unsigned char *buf = malloc(cap);
    for (long it = 0; it < iterations; it++) {
        /* half the iterations on each format, whatever the seed counts */
        int want_npy = (int)below(2);
        const seed *s;
        do
            s = &seeds[below((size_t)n_seeds)];
        while (s->is_npy != want_npy);
        size_t size = s->size;
        memcpy(buf, s->data, size);
        int rounds = 1 + (int)below(4);
        for (int r = 0; r < rounds; r++)
            mutate(&buf, &size, &cap);
        write_file(path, buf, size);
        /* both readers see every input: each must reject the other's files */
        int a = fuzz_npy(path, path2), b = fuzz_safetensors(path, path2);
        ok[0] += a;
        rejected[0] += !a;
        ok[1] += b;
        rejected[1] += !b;
    }
    unlink(path);
    unlink(path2);
    rmdir(tmpl);
    free(buf);
    for (int i = 0; i < n_seeds; i++)
        free(seeds[i].data);
    printf("fuzz_tensorio: %ld iterations over %d seeds: npy %ld read / %ld rejected, "
           "safetensors %ld read / %ld rejected, no crash\n", iterations, n_seeds,
           ok[0], rejected[0], ok[1], rejected[1]);
    return 0;
}
