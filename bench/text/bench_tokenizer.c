/* bench_tokenizer.c - tokens per second of the dspipe tokenizer (one thread) on the fixture corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok.h"

/* usage: bench_tokenizer DATA_DIR [RUNS] [NAME...]
 * Encodes every corpus line (special tokens added, no truncation or padding, offsets in
 * characters: what the library's encode gives) until a run has lasted >= 0.5 s; prints the
 * median over RUNS runs. The corpus is tests/data/text/corpus.txt. */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [RUNS] [NAME...]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    static const char *const all[] = { "bert", "gpt2", "roberta", "llama3", "qwen2", "llama2", "unigram" };
    const char *const *names = argc > 3 ? (const char *const *)argv + 3 : all;
    int nnames = argc > 3 ? argc - 3 : 7;
    char path[2048];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return 1;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, fp) != (size_t)size)
        return 1;
    fclose(fp);
    char **lines = malloc(((size_t)size + 1) * sizeof *lines);
    size_t *lens = malloc(((size_t)size + 1) * sizeof *lens), n = 0;
    for (long i = 0, s = 0; i < size; i++)
        if (buf[i] == '\n') {
            lines[n] = buf + s;
            lens[n++] = (size_t)(i - s);
            s = i + 1;
        }
    printf("# %zu lines, %ld bytes; median of %d runs, 1 thread\n", n, size, runs);
    printf("%-8s %12s %14s %12s\n", "name", "tokens/run", "tokens/s", "MB/s");
    for (int k = 0; k < nnames; k++) {
        tok_tokenizer *t;
        char err[512];
        snprintf(path, sizeof path, "%s/%s.json", dir, names[k]);
        if (tok_load(path, 0, &t, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        tok_options o = tok_default_options();
        o.truncation = 0;
        o.padding = TOK_PAD_NONE;
        tok_encoding e = { 0 };
        double *rate = malloc((size_t)runs * sizeof *rate), mbs = 0;
        size_t tokens_per_pass = 0;
        for (size_t i = 0; i < n; i++) {        /* warm-up pass: fills the BPE word cache, as */
            tok_encode(t, lines[i], lens[i], NULL, 0, &o, &e);     /* the library's warm-up does */
            tokens_per_pass += e.n;
        }
        for (int r = 0; r < runs; r++) {
            double t0 = now(), el;
            size_t tokens = 0, passes = 0;
            do {
                for (size_t i = 0; i < n; i++) {
                    if (tok_encode(t, lines[i], lens[i], NULL, 0, &o, &e) < 0) {
                        fprintf(stderr, "%s\n", tok_errmsg(t));
                        return 1;
                    }
                    tokens += e.n;
                }
                passes++;
                el = now() - t0;
            } while (el < 0.5);
            rate[r] = (double)tokens / el;
            mbs += (double)size * (double)passes / el / 1e6 / runs;
        }
        qsort(rate, (size_t)runs, sizeof *rate, cmp_d);
        printf("%-8s %12zu %14.0f %12.1f\n", names[k], tokens_per_pass, rate[runs / 2], mbs);
        free(rate);
        tok_encoding_clear(&e);
        tok_free(&t);
    }
    free(lines);
    free(lens);
    free(buf);
    return 0;
}
