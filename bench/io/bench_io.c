/* bench_io.c - times one dspipe operator in process (dicom.read, image.decode, video.decode) over files, through the operator harness.
 *
 *   bench_io [-n REPS] [-w WARMUP] [-s] OP [NAME=VALUE ...] -- FILE...
 *
 * -s pushes one record whose meta "paths" lists every FILE (a study, what
 * dicom.studies emits) instead of one record per file.
 * Plugins come from $DSPIPE_PLUGIN_PATH. One repetition creates a harness for
 * OP with the parameters (untimed: that is init()), then, timed, pushes one
 * record per FILE (meta path and source, what files.list emits), flushes and
 * takes every packet the operator emitted, draining after each push as a
 * pipeline's next node would. Timed: the operator's whole work, file reading
 * included; not timed: process start, plugin loading, init(), and freeing
 * the first packet it emits (a volume, an image), kept until after the
 * clock stops. WARMUP untimed repetitions come first (page cache, lazy symbol
 * binding, allocator). Prints one JSON line: every repetition's seconds, the
 * median, the medians of the time in flush() and of the process's CPU time
 * (all threads), the number of packets, the first output tensor's shape and dtype
 * and the sum of its elements in double (so a driver can check that both
 * sides of a benchmark computed the same thing).
 */
#include <dspipe/dspipe.h>
#include <dspipe/harness.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_out {
    int64_t packets;
    dsp_packet *first;          /* the first packet emitted, described after timing */
    double flush_s;             /* of the repetition: seconds in flush() */
    double cpu_s;               /* of the repetition: CPU seconds of the process */
} bench_out;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double tensor_sum(const dsp_tensor *t)
{
    const void *d = dsp_tensor_data(t);
    int64_t n = dsp_tensor_numel(t);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case DSP_DTYPE_U8: s += ((const uint8_t *)d)[i]; break;
        case DSP_DTYPE_U16: s += ((const uint16_t *)d)[i]; break;
        case DSP_DTYPE_I16: s += ((const int16_t *)d)[i]; break;
        case DSP_DTYPE_F32: s += ((const float *)d)[i]; break;
        default: return 0;
        }
    }
    return s;
}

/* Take what the operator emitted so far, keeping the first packet. */
static void drain(dsp_harness *h, bench_out *out)
{
    dsp_packet *p;
    while ((p = dsp_harness_pull(h, 0))) {
        if (!out->first)
            out->first = dsp_packet_ref(p);
        out->packets++;
        dsp_packet_unref(&p);
    }
}

static int study_record = 0;   /* -s */

/* -s: one record of all the files, as dicom.studies emits a study */
static int push_study(dsp_harness *h, char **files, int n_files, bench_out *out)
{
    dsp_packet *p = NULL;
    int err = dsp_packet_new(&p);
    if (err < 0)
        return err;
    dsp_packet_set_pos(p, 0, 0, 1);
    if ((err = dsp_meta_set_strs(dsp_packet_meta(p), "paths", (const char *const *)files,
                                 (size_t)n_files)) < 0 ||
        (err = dsp_meta_set_str(dsp_packet_meta(p), "source", files[0])) < 0) {
        dsp_packet_unref(&p);
        return err;
    }
    err = dsp_harness_push(h, 0, p);
    drain(h, out);
    return err;
}

/* One repetition; its seconds in *secs. 0, or -1 with the reason printed. */
static int run_once(dsp_context *ctx, const char *op, const char *const *params,
                    char **files, int n_files, bench_out *out, double *secs)
{
    dsp_harness *h = NULL;
    if (dsp_harness_new(ctx, op, params, 1, &h) < 0) {
        fprintf(stderr, "bench_io: %s: %s\n", op, dsp_context_errmsg(ctx));
        return -1;
    }
    int err = 0;
    double t0 = now_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (study_record)
        err = push_study(h, files, n_files, out);
    for (int i = 0; i < n_files && err >= 0 && !study_record; i++) {
        dsp_packet *p = NULL;
        if ((err = dsp_packet_new(&p)) < 0)
            break;
        dsp_meta *m = dsp_packet_meta(p);
        dsp_packet_set_pos(p, i, 0, 1);
        if ((err = dsp_meta_set_str(m, "path", files[i])) < 0 ||
            (err = dsp_meta_set_str(m, "source", files[i])) < 0) {
            dsp_packet_unref(&p);
            break;
        }
        err = dsp_harness_push(h, 0, p);
        drain(h, out);
    }
    double t1 = now_s();
    if (err >= 0)
        err = dsp_harness_flush(h);
    drain(h, out);
    *secs = now_s() - t0;
    out->flush_s = now_s() - t1;
    out->cpu_s = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (err < 0 || dsp_harness_errmsg(h)[0])
        fprintf(stderr, "bench_io: %s failed: %s (%s)\n", op, dsp_harness_errmsg(h),
                dsp_strerror(err));
    err = err < 0 || dsp_harness_errmsg(h)[0] ? -1 : 0;
    dsp_harness_free(&h);
    return err;
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The JSON line: the first output tensor of the first packet described (its
 * sum is taken here, untimed), every repetition's seconds, the medians. */
static void print_result(const char *op, int n_files, const bench_out *first, double *secs,
                         double *flush, double *cpu, int reps)
{
    dsp_tensor *t = first->first && dsp_packet_tensor_count(first->first) > 0
                    ? dsp_packet_tensor_at(first->first, 0, NULL) : NULL;
    printf("{\"impl\": \"dspipe\", \"op\": \"%s\", \"files\": %d, \"packets\": %lld, "
           "\"shape\": [", op, n_files, (long long)first->packets);
    for (int i = 0; t && i < t->ndim; i++)
        printf("%s%lld", i ? ", " : "", (long long)t->shape[i]);
    printf("], \"dtype\": \"%s\", \"sum\": %.17g, \"seconds\": [",
           t ? dsp_dtype_name(t->dtype) : "none",
           t && dsp_tensor_is_contiguous(t) ? tensor_sum(t) : 0.0);
    for (int r = 0; r < reps; r++)
        printf("%s%.6f", r ? ", " : "", secs[r]);
    printf("], \"median_s\": %.6f, \"flush_median_s\": %.6f, \"cpu_median_s\": %.6f}\n",
           median(secs, reps), median(flush, reps), median(cpu, reps));
}

static void usage(void)
{
    fputs("usage: bench_io [-n REPS] [-w WARMUP] [-s] OP [NAME=VALUE ...] -- FILE...\n"
          "  times OP (plugins from $DSPIPE_PLUGIN_PATH) over the files in process\n", stderr);
}

int main(int argc, char **argv)
{
    int reps = 5, warmup = 1, opt;
    while ((opt = getopt(argc, argv, "+n:w:sh")) != -1) {
        if (opt == 's')
            study_record = 1;
        else if (opt == 'n')
            reps = atoi(optarg);
        else if (opt == 'w')
            warmup = atoi(optarg);
        else {
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    int sep = optind;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (reps < 1 || warmup < 0 || optind >= sep || sep + 1 >= argc) {
        usage();
        return 2;
    }
    const char *op = argv[optind];
    int n_params = sep - optind - 1;
    char **files = argv + sep + 1;
    int n_files = argc - sep - 1;
    const char **params = calloc((size_t)n_params + 1, sizeof *params);
    double *secs = calloc((size_t)reps, sizeof *secs);
    double *flush = calloc((size_t)reps, sizeof *flush);
    double *cpu = calloc((size_t)reps, sizeof *cpu);
    dsp_context *ctx = NULL;
    int rc = 1;
    if (!params || !secs || !flush || !cpu || dsp_context_new(&ctx) < 0) {
        fprintf(stderr, "bench_io: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n_params; i++)
        params[i] = argv[optind + 1 + i];
    dsp_log_set_level(DSP_LOG_WARNING);     /* no per-run info lines on stderr */
    if (dsp_context_load_plugins(ctx) < 0 || !dsp_context_find_op(ctx, op)) {
        fprintf(stderr, "bench_io: no operator %s (DSPIPE_PLUGIN_PATH=%s): %s\n", op,
                getenv("DSPIPE_PLUGIN_PATH") ? getenv("DSPIPE_PLUGIN_PATH") : "",
                dsp_context_errmsg(ctx));
        goto done;
    }
    double ignored;
    for (int r = 0; r < warmup; r++) {
        bench_out w = { 0 };
        int err = run_once(ctx, op, params, files, n_files, &w, &ignored);
        dsp_packet_unref(&w.first);
        if (err < 0)
            goto done;
    }
    bench_out first = { 0 };
    for (int r = 0; r < reps; r++) {
        bench_out one = { 0 };
        int err = run_once(ctx, op, params, files, n_files, &one, &secs[r]);
        flush[r] = one.flush_s;
        cpu[r] = one.cpu_s;
        if (r == 0)
            first = one;
        else
            dsp_packet_unref(&one.first);
        if (err < 0) {
            dsp_packet_unref(&first.first);
            goto done;
        }
    }
    print_result(op, n_files, &first, secs, flush, cpu, reps);
    dsp_packet_unref(&first.first);
    rc = 0;
done:
    dsp_context_free(&ctx);
    free(params);
    free(secs);
    free(flush);
    free(cpu);
    return rc;
}
