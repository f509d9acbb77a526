/* bench_encoder.c - sentences per second of the dspipe BERT encoder (tokenize + encode) on a text file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bert.h"
#include "tok.h"

/* usage: bench_encoder MODEL_DIR CORPUS [RUNS] [BATCH] [MAX_LENGTH]
 * Every non-empty line of CORPUS is tokenized (truncation to MAX_LENGTH, default 256 as
 * sentence-transformers does for all-MiniLM-L6-v2, no padding) and embedded (mean pooling, L2)
 * BATCH sentences at a time (default 256, text.encode's max batch), as the text.encode
 * operator does. One untimed warm-up pass, then RUNS timed passes over the whole file.
 * Prints one JSON line: per-run seconds, CPU seconds (user + system, all threads) per run,
 * the median sentences/s and the peak RSS. Threads:
 * OPENBLAS_NUM_THREADS and DSPIPE_OPS_THREADS (set both). */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* user + system CPU seconds of the process, all threads */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct corpus {
    char **line;
    size_t *len;
    int n;
} corpus;

static int read_corpus(const char *path, corpus *c)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int room = 0;
    while ((got = getline(&buf, &cap, fp)) >= 0) {
        while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
            buf[--got] = '\0';
        if (got == 0)
            continue;
        if (c->n == room) {
            room = room ? 2 * room : 1024;
            c->line = realloc(c->line, (size_t)room * sizeof *c->line);
            c->len = realloc(c->len, (size_t)room * sizeof *c->len);
        }
        c->line[c->n] = malloc((size_t)got + 1);
        memcpy(c->line[c->n], buf, (size_t)got + 1);
        c->len[c->n++] = (size_t)got;
    }
    free(buf);
    fclose(fp);
    return 0;
}

/* One pass over the corpus; returns the number of tokens embedded or -1. */
static long long run_pass(tok_tokenizer *tk, bert_model *m, const corpus *c, int batch, int64_t max_length,
                          float *emb)
{
    tok_options o = tok_default_options();
    o.truncation = 1;
    o.max_length = max_length;
    o.padding = TOK_PAD_NONE;
    bert_encode_opts eo = bert_default_encode_opts();
    const char *budget = getenv("BENCH_TOKEN_BUDGET");
    if (budget && *budget)
        eo.token_budget = atoll(budget);
    tok_encoding *enc = calloc((size_t)batch, sizeof *enc);
    bert_seq *seq = calloc((size_t)batch, sizeof *seq);
    int64_t *ids = malloc((size_t)batch * (size_t)max_length * sizeof *ids);
    long long tokens = 0;
    for (int start = 0; start < c->n; start += batch) {
        int nb = c->n - start < batch ? c->n - start : batch;
        for (int k = 0; k < nb; k++) {
            if (tok_encode(tk, c->line[start + k], c->len[start + k], NULL, 0, &o, &enc[k]) < 0) {
                fprintf(stderr, "line %d: %s\n", start + k + 1, tok_errmsg(tk));
                return -1;
            }
            int64_t *dst = ids + (int64_t)k * max_length;
            for (size_t j = 0; j < enc[k].n; j++)
                dst[j] = enc[k].ids[j];
            seq[k] = (bert_seq){ .ids = dst, .len = (int64_t)enc[k].n };
            tokens += (long long)enc[k].n;
        }
        if (bert_encode(m, seq, nb, &eo, emb) < 0) {
            fprintf(stderr, "%s\n", bert_errmsg(m));
            return -1;
        }
    }
    for (int k = 0; k < batch; k++)
        tok_encoding_clear(&enc[k]);
    free(enc);
    free(seq);
    free(ids);
    return tokens;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR CORPUS [RUNS] [BATCH] [MAX_LENGTH]\n", argv[0]);
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 3, batch = argc > 4 ? atoi(argv[4]) : 256;
    int64_t max_length = argc > 5 ? atoll(argv[5]) : 256;
    char err[512], *why = NULL;
    tok_tokenizer *tk = NULL;
    bert_model *m = NULL;
    corpus c = { 0 };
    if (tok_load(argv[1], 0, &tk, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (bert_open(argv[1], &m, &why) < 0) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    if (read_corpus(argv[2], &c) < 0 || c.n == 0) {
        fprintf(stderr, "%s: cannot read, or no lines\n", argv[2]);
        return 1;
    }
    float *emb = malloc((size_t)batch * (size_t)bert_get_config(m)->hidden * sizeof *emb);
    long long tokens = run_pass(tk, m, &c, batch, max_length, emb);     /* warm-up */
    if (tokens < 0)
        return 1;
    double *t = malloc((size_t)runs * sizeof *t), cpu0 = cpu_seconds();
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        if (run_pass(tk, m, &c, batch, max_length, emb) < 0)
            return 1;
        t[r] = now() - t0;
    }
    printf("{\"impl\": \"dspipe\", \"sentences\": %d, \"tokens\": %lld, \"runs_s\": [", c.n, tokens);
    for (int r = 0; r < runs; r++)
        printf("%s%.4f", r ? ", " : "", t[r]);
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("], \"cpu_s_per_run\": %.3f, \"median_sps\": %.1f, \"peak_rss_mb\": %.1f}\n",
           (cpu_seconds() - cpu0) / runs, c.n / t[runs / 2], ru.ru_maxrss / 1024.0);
    free(t);
    free(emb);
    bert_close(&m);
    tok_free(&tk);
    for (int i = 0; i < c.n; i++)
        free(c.line[i]);
    free(c.line);
    free(c.len);
    return 0;
}
