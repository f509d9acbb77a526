/* bench_attn.c - times dsp_attention (full, causal, local, top-k; MHA and GQA) on the CPU, and measures its peak memory growth per call. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <dspipe/ops.h>

/* Usage:
 *   bench_attn [quick]    every case, one line each: "kind hq/hk n median ms"
 *   bench_attn KIND HQ HK N  one case, the same way
 *   bench_attn serve KIND HQ HK N  one case driven by bench_attn_torch.py
 *                         side: prints "reps R" (calls per run, for >= 20 ms),
 *                         then for each line "run" on stdin times one run of
 *                         R calls and prints seconds per call; the driver
 *                         alternates these runs with PyTorch's, so that both
 *                         sample the same moments of a shared machine
 *   bench_attn mem KIND N peak RSS growth of one call at n = N, 8 heads
 *                         (one process per figure: run_attn.sh runs it so)
 * Shapes as bench_attn_torch.py: batch 1, head_dim 64, 8 query heads over
 * 8 or 2 kv heads, q_len = k_len = n; local = causal window 128, top-k =
 * causal top 32. Medians of 9 runs, each repeating the call until it takes
 * >= 20 ms. Threads: DSPIPE_OPS_THREADS (the attention kernel's only
 * threads; it makes no BLAS calls). */
#define RUNS 9
#define D 64
#define WINDOW 128
#define TOPK 32

static const char *const kinds[] = {"full", "causal", "local", "topk"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static dsp_tensor *rnd(int64_t heads, int64_t n)
{
    int64_t shape[4] = {1, heads, n, D};
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(DSP_DTYPE_F32, 4, shape, &t) < 0) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = (float)rand() / RAND_MAX - 0.5f;
    return t;
}

static dsp_attn_opts opts_of(int kind)
{
    dsp_attn_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind == 0 ? DSP_ATTN_FULL : kind == 1 ? DSP_ATTN_CAUSAL
                                       : kind == 2 ? DSP_ATTN_LOCAL : DSP_ATTN_TOPK;
    o.causal = kind >= 2;
    o.window = WINDOW;
    o.topk = TOPK;
    return o;
}

/* one call with a new output each time, as PyTorch allocates one */
static void call(dsp_tensor *q, dsp_tensor *k, dsp_tensor *v, const dsp_attn_opts *o)
{
    dsp_tensor *out = NULL;
    if (dsp_attention(q, k, v, o, &out) < 0) {
        fprintf(stderr, "attention: %s\n", dsp_ops_error());
        exit(1);
    }
    dsp_tensor_unref(&out);
}

/* calls per run: doubled until one run takes >= 20 ms */
static int calibrate(dsp_tensor *q, dsp_tensor *k, dsp_tensor *v, const dsp_attn_opts *o)
{
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            call(q, k, v, o);
        if (now() - t0 >= 0.02 || reps >= (1 << 22))
            return reps;
        reps *= 2;
    }
}

static double one_run(dsp_tensor *q, dsp_tensor *k, dsp_tensor *v, const dsp_attn_opts *o,
                      int reps)
{
    double t0 = now();
    for (int r = 0; r < reps; r++)
        call(q, k, v, o);
    return (now() - t0) / reps;
}

static double bench(dsp_tensor *q, dsp_tensor *k, dsp_tensor *v, const dsp_attn_opts *o)
{
    double t[RUNS];
    int reps = calibrate(q, k, v, o);
    for (int i = 0; i < RUNS; i++)
        t[i] = one_run(q, k, v, o, reps);
    qsort(t, RUNS, sizeof t[0], cmp);
    return t[RUNS / 2];
}

static void time_one(int kind, int64_t hq, int64_t hk, int64_t n)
{
    dsp_tensor *q = rnd(hq, n), *k = rnd(hk, n), *v = rnd(hk, n);
    dsp_attn_opts o = opts_of(kind);
    double s = bench(q, k, v, &o);
    printf("%-7s %lld/%lld %6lld %12.4f ms\n", kinds[kind], (long long)hq, (long long)hk,
           (long long)n, s * 1e3);
    fflush(stdout);
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
}

static int serve(int kind, int64_t hq, int64_t hk, int64_t n)
{
    char line[64];
    dsp_tensor *q = rnd(hq, n), *k = rnd(hk, n), *v = rnd(hk, n);
    dsp_attn_opts o = opts_of(kind);
    int reps = calibrate(q, k, v, &o);
    printf("reps %d\n", reps);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) && !strncmp(line, "run", 3)) {
        printf("%.9g\n", one_run(q, k, v, &o, reps));
        fflush(stdout);
    }
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    return 0;
}

static int kind_of(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, kinds[i]))
            return i;
    return -1;
}

static int time_all(int quick)
{
    static const int64_t ns_all[] = {128, 512, 1024, 2048, 4096}, ns_quick[] = {128, 1024};
    static const int64_t heads[][2] = {{8, 8}, {8, 2}};
    const int64_t *ns = quick ? ns_quick : ns_all;
    int nn = quick ? 2 : 5;
    srand(1);
    for (int hc = 0; hc < 2; hc++)
        for (int kind = 0; kind < 4; kind++)
            for (int i = 0; i < nn; i++)
                time_one(kind, heads[hc][0], heads[hc][1], ns[i]);
    return 0;
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Peak RSS growth of one call with a preallocated, touched output, after a
 * warm-up call at n = 128 (first-touch of code and pool threads): what the
 * kernel itself allocates and touches. */
static int mem_one(const char *kname, int64_t n)
{
    int kind = kind_of(kname);
    if (kind < 0 || n < 1) {
        fprintf(stderr, "mem: unknown kind %s or bad n\n", kname);
        return 2;
    }
    dsp_attn_opts o = opts_of(kind);
    dsp_tensor *q = rnd(8, 128), *k = rnd(8, 128), *v = rnd(8, 128);
    call(q, k, v, &o);
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    q = rnd(8, n);
    k = rnd(8, n);
    v = rnd(8, n);
    dsp_tensor *out = rnd(8, n), *keep = out;
    long base = maxrss_kib();
    if (dsp_attention(q, k, v, &o, &out) < 0 || out != keep) {
        fprintf(stderr, "attention: %s\n", dsp_ops_error());
        return 1;
    }
    long grow = maxrss_kib() - base;
    printf("%-7s 8/8 %6lld %10.1f MiB  (inputs + output: %.1f MiB)\n", kname, (long long)n,
           grow / 1024.0, 4.0 * (double)n * 8 * D * 4 / (1 << 20));
    dsp_tensor_unref(&q);
    dsp_tensor_unref(&k);
    dsp_tensor_unref(&v);
    dsp_tensor_unref(&out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "mem"))
        return mem_one(argv[2], atoll(argv[3]));
    int srv = argc == 6 && !strcmp(argv[1], "serve");
    if (argc == 5 || srv) {
        int kind = kind_of(argv[1 + srv]);
        int64_t hq = atoll(argv[2 + srv]), hk = atoll(argv[3 + srv]), n = atoll(argv[4 + srv]);
        if (kind < 0 || hq < 1 || hk < 1 || hq % hk || n < 1) {
            fprintf(stderr, "usage: bench_attn [serve] KIND HQ HK N\n");
            return 2;
        }
        srand(1);
        if (srv)
            return serve(kind, hq, hk, n);
        time_one(kind, hq, hk, n);
        return 0;
    }
    return time_all(argc > 1 && !strcmp(argv[1], "quick"));
}
