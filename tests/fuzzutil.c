/* fuzzutil.c - the PRNG, budget, file reading and generic mutations of the mutation fuzzers (fuzzutil.h). */
#include "fuzzutil.h"

#include <dspipe/dspipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t state = 0x9e3779b97f4a7c15ULL;
static double budget_seconds = 60;
static struct timespec t0;

void fz_seed(uint64_t start)
{
    const char *env = getenv("FUZZ_SEED");
    state = start ? start : 1;
    if (env && *env)
        state ^= strtoull(env, NULL, 0) * 0x9e3779b97f4a7c15ULL;
    if (!state)
        state = 1;
}

uint64_t fz_rng(void)
{
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
}

size_t fz_below(size_t n)
{
    return n ? (size_t)(fz_rng() % n) : 0;
}

void fz_budget(long iterations, double seconds, long *iter_out)
{
    const char *it = getenv("FUZZ_ITERATIONS"), *secs = getenv("FUZZ_SECONDS");
    *iter_out = it && *it ? strtol(it, NULL, 10) : iterations;
    budget_seconds = secs && *secs ? strtod(secs, NULL) : seconds;
    clock_gettime(CLOCK_MONOTONIC, &t0);
}

double fz_elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
}

int fz_time_up(long it)
{
    return (it & 63) == 0 && fz_elapsed() > budget_seconds;
}

unsigned char *fz_read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *d = NULL;
    long n;
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
        (d = malloc((size_t)n + 1)))
        *size = fread(d, 1, (size_t)n, fp);
    fclose(fp);
    return d;
}

void fz_put32be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void random_bytes(unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)fz_rng();
}

void fz_mutate(unsigned char *b, size_t *size, size_t cap, int kind,
               const unsigned char *interesting, size_t n_interesting)
{
    size_t n = *size;
    switch (kind) {
    case FZ_FLIP:
        if (n)
            b[fz_below(n)] ^= (unsigned char)(1u << fz_below(8));
        break;
    case FZ_INTERESTING:
        if (n && n_interesting)
            b[fz_below(n)] = interesting[fz_below(n_interesting)];
        break;
    case FZ_TRUNCATE:
        *size = fz_below(2) ? fz_below(n + 1) : n - fz_below(n / 8 + 1);
        break;
    case FZ_APPEND: {
        size_t add = fz_below(256) + 1;
        if (n + add <= cap) {
            random_bytes(b + n, add);
            *size = n + add;
        }
        break;
    }
    case FZ_COPY:
        if (n >= 2) {
            size_t len = fz_below(n / 4) + 1, from = fz_below(n - len + 1),
                   to = fz_below(n - len + 1);
            memmove(b + to, b + from, len);
        }
        break;
    case FZ_INSERT: {
        size_t add = fz_below(16) + 1, at = fz_below(n + 1);
        if (n + add <= cap) {
            memmove(b + at + add, b + at, n - at);
            random_bytes(b + at, add);
            *size = n + add;
        }
        break;
    }
    case FZ_DELETE:
        if (n >= 2) {
            size_t len = fz_below(16) + 1, at = fz_below(n);
            if (at + len > n)
                len = n - at;
            memmove(b + at, b + at + len, n - at - len);
            *size = n - len;
        }
        break;
    default:
        break;
    }
}

void fz_touch(const struct dsp_tensor *t)
{
    const volatile unsigned char *d = dsp_tensor_data(t);
    unsigned sum = 0;
    for (size_t k = 0; k < dsp_tensor_nbytes(t); k++)
        sum += d[k];
    (void)sum;
}

struct dsp_packet *fz_bytes_packet(const unsigned char *b, size_t n, const char *source)
{
    int64_t len = (int64_t)n;
    dsp_tensor *t = NULL;
    dsp_packet *p = NULL;
    if (dsp_tensor_new(DSP_DTYPE_U8, 1, &len, &t) < 0 || dsp_packet_new(&p) < 0 ||
        dsp_meta_set_str(dsp_packet_meta(p), "source", source) < 0) {
        fprintf(stderr, "fuzz: out of memory\n");
        exit(1);
    }
    if (n)
        memcpy(dsp_tensor_data(t), b, n);
    dsp_packet_set_tensor(p, "bytes", t);
    return p;
}
