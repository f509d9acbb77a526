/* bench_ops.c - times dspipe's CPU operators (linear, row-wise and elementwise ops at BERT-ish shapes, conv3d at r3d_18's); medians of several runs. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <dspipe/ops.h>

#define RUNS 9

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

static dsp_tensor *rnd(int ndim, const int64_t *shape)
{
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t) < 0)
        exit(1);
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        d[i] = (float)rand() / RAND_MAX - 0.5f;
    return t;
}

enum { LINEAR, SOFTMAX, LAYERNORM, SGEMM, RMSNORM, GELU_EXACT, GELU_TANH, SILU, ADD };

static const char *const op_names[] = {"linear", "softmax", "layernorm", "sgemm", "rmsnorm",
                                       "gelu", "gelu_tanh", "silu", "add"};

static void call(int op, dsp_tensor *x, dsp_tensor *w, dsp_tensor *b, dsp_tensor **out)
{
    switch (op) {
    case LINEAR: dsp_linear(x, w, b, out); break;
    case SOFTMAX: dsp_softmax(x, NULL, out); break;
    case LAYERNORM: dsp_layernorm(x, w, b, 1e-12f, out); break;
    case RMSNORM: dsp_rmsnorm(x, w, 1e-6f, out); break;
    case GELU_EXACT: dsp_gelu(x, DSP_GELU_EXACT, out); break;
    case GELU_TANH: dsp_gelu(x, DSP_GELU_TANH, out); break;
    case SILU: dsp_silu(x, out); break;
    case ADD: dsp_add(x, b, out); break;
    default:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)x->shape[0], (int)w->shape[0],
                    (int)x->shape[1], 1.0f, dsp_tensor_data(x), (int)x->shape[1],
                    dsp_tensor_data(w), (int)w->shape[1], 0.0f, dsp_tensor_data(*out),
                    (int)w->shape[0]);
    }
}

/* median seconds per call; each run repeats the call until >= 20 ms */
static double bench(int op, dsp_tensor *x, dsp_tensor *w, dsp_tensor *b, dsp_tensor **out)
{
    double t[RUNS];
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            call(op, x, w, b, out);
        double dt = now() - t0;
        if (dt >= 0.02 || reps >= (1 << 22))
            break;
        reps *= 2;
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            call(op, x, w, b, out);
        t[i] = (now() - t0) / reps;
    }
    qsort(t, RUNS, sizeof t[0], cmp);
    return t[RUNS / 2];
}

static void linear_case(int op, int64_t M, int64_t K, int64_t N, int bias)
{
    int64_t xs[] = {M, K}, ws[] = {N, K}, bs[] = {N}, os[] = {M, N};
    dsp_tensor *x = rnd(2, xs), *w = rnd(2, ws), *b = bias ? rnd(1, bs) : NULL;
    dsp_tensor *out = rnd(2, os);
    double s = bench(op, x, w, b, &out);
    printf("%-10s [%lld,%lld]x[%lld,%lld]^T %12.2f us %8.2f GFLOP/s\n",
           op == SGEMM ? "sgemm" : "linear", (long long)M, (long long)K, (long long)N,
           (long long)K, s * 1e6, 2.0 * M * N * K / s * 1e-9);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&b);
    dsp_tensor_unref(&out);
}

static void row_case(int op, int64_t R, int64_t C)
{
    int64_t xs[] = {R, C}, ws[] = {C};
    dsp_tensor *x = rnd(2, xs), *w = rnd(1, ws), *b = rnd(1, ws), *out = rnd(2, xs);
    double s = bench(op, x, w, b, &out);
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)R, (long long)C);
    printf("%-10s %-22s %12.2f us\n", op_names[op], shape, s * 1e6);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&b);
    dsp_tensor_unref(&out);
}

/* dsp_linear (without and with bias) against a raw cblas_sgemm on the same
 * operands, the three timed in turn within every run so load changes hit
 * them alike; prints medians and sgemm time / linear time. */
static void wrapper_case(int64_t M, int64_t K, int64_t N)
{
    int64_t xs[] = {M, K}, ws[] = {N, K}, bs[] = {N}, os[] = {M, N};
    dsp_tensor *x = rnd(2, xs), *w = rnd(2, ws), *b = rnd(1, bs), *out = rnd(2, os);
    double tl[RUNS], tb[RUNS], ts[RUNS];
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            call(SGEMM, x, w, NULL, &out);
        if (now() - t0 >= 0.02 || reps >= (1 << 22))
            break;
        reps *= 2;
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now();
        for (int r = 0; r < reps; r++)
            call(LINEAR, x, w, NULL, &out);
        double t1 = now();
        for (int r = 0; r < reps; r++)
            call(LINEAR, x, w, b, &out);
        double t2 = now();
        for (int r = 0; r < reps; r++)
            call(SGEMM, x, w, NULL, &out);
        double t3 = now();
        tl[i] = (t1 - t0) / reps;
        tb[i] = (t2 - t1) / reps;
        ts[i] = (t3 - t2) / reps;
    }
    qsort(tl, RUNS, sizeof tl[0], cmp);
    qsort(tb, RUNS, sizeof tb[0], cmp);
    qsort(ts, RUNS, sizeof ts[0], cmp);
    double l = tl[RUNS / 2], lb = tb[RUNS / 2], s = ts[RUNS / 2];
    printf("[%5lld,%5lld]x[%5lld,%5lld]^T  sgemm %10.2f us  linear %10.2f us (%.3f)  "
           "linear+bias %10.2f us (%.3f)  %7.1f GFLOP/s sgemm\n",
           (long long)M, (long long)K, (long long)N, (long long)K, s * 1e6, l * 1e6, s / l,
           lb * 1e6, s / lb, 2.0 * M * N * K / s * 1e-9);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&w);
    dsp_tensor_unref(&b);
    dsp_tensor_unref(&out);
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One 3x3x3 (or 1x3x3 when kd is 1) stride-1 conv3d, c -> oc channels over
 * [1, c, d, h, w] with padding 1 (0 along a 1-tap depth), timed under
 * DSPIPE_CONV=im2col and =winograd in turn within every run so load
 * changes hit both alike. The weights sit in a read-only buffer, as a
 * mapped model's do, so Winograd transforms them once (in the warm-up).
 * Prints medians of wall time and of process CPU time per call. */
static void conv_case(int64_t c, int64_t oc, int64_t d, int64_t h, int64_t w, int64_t kd)
{
    static const char *const algos[2] = {"im2col", "winograd"};
    int64_t xs[] = {1, c, d, h, w}, ws[] = {oc, c, kd, 3, 3};
    dsp_tensor *x = rnd(5, xs), *wo = rnd(5, ws), *wt = NULL, *out = NULL;
    dsp_buffer *ro = NULL;
    if (dsp_buffer_wrap(dsp_tensor_data(wo), dsp_tensor_nbytes(wo), 1, NULL, NULL, &ro) < 0 ||
        dsp_tensor_from_buffer(DSP_DTYPE_F32, 5, ws, NULL, ro, 0, &wt) < 0)
        exit(1);
    dsp_conv_opts o;
    memset(&o, 0, sizeof o);
    o.padding[0] = kd == 3;
    o.padding[1] = o.padding[2] = 1;
    double tw[2][RUNS], tc[2][RUNS];
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int a = 0; a < 2; a++) {
            setenv("DSPIPE_CONV", algos[a], 1);
            for (int r = 0; r < reps; r++)
                if (dsp_conv3d(x, wt, NULL, &o, &out) < 0) {
                    fprintf(stderr, "conv3d: %s\n", dsp_ops_error());
                    exit(1);
                }
        }
        if (now() - t0 >= 0.05 || reps >= (1 << 22))
            break;
        reps *= 2;
    }
    for (int i = 0; i < RUNS; i++)
        for (int a = 0; a < 2; a++) {
            setenv("DSPIPE_CONV", algos[a], 1);
            double t0 = now(), c0 = cpu_now();
            for (int r = 0; r < reps; r++)
                dsp_conv3d(x, wt, NULL, &o, &out);
            tw[a][i] = (now() - t0) / reps;
            tc[a][i] = (cpu_now() - c0) / reps;
        }
    unsetenv("DSPIPE_CONV");
    const double gmac = (double)oc * c * kd * 9 * d * h * w * 1e-9;
    printf("conv3d %3lldx%3lld k%lldx3x3 [%2lld,%3lld,%3lld]  %6.2f GMAC", (long long)c,
           (long long)oc, (long long)kd, (long long)d, (long long)h, (long long)w, gmac);
    for (int a = 0; a < 2; a++) {
        qsort(tw[a], RUNS, sizeof tw[a][0], cmp);
        qsort(tc[a], RUNS, sizeof tc[a][0], cmp);
        printf("  %s %9.2f ms (cpu %9.2f ms)", algos[a], tw[a][RUNS / 2] * 1e3,
               tc[a][RUNS / 2] * 1e3);
    }
    printf("  im2col/winograd %.2fx\n", tw[0][RUNS / 2] / tw[1][RUNS / 2]);
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&wt);
    dsp_tensor_unref(&out);
    dsp_buffer_unref(&ro);
    dsp_tensor_unref(&wo);
}

/* r3d_18's stride-1 3x3x3 layers at 16x112x112 (batch 1), then smaller
 * channel counts and spatial sizes for the dispatch rule, and a 1x3x3
 * kernel (r2plus1d's spatial half; a 2-D conv's shape). */
static const int64_t conv_shapes[][6] = {
    {64, 64, 16, 56, 56, 3},  {128, 128, 8, 28, 28, 3}, {256, 256, 4, 14, 14, 3},
    {512, 512, 2, 7, 7, 3},   {32, 32, 16, 56, 56, 3},  {16, 16, 16, 56, 56, 3},
    {8, 8, 16, 56, 56, 3},    {4, 4, 16, 56, 56, 3},    {16, 32, 8, 28, 28, 3},   {64, 64, 2, 4, 4, 3},
    {512, 512, 1, 4, 4, 3},   {64, 64, 16, 56, 56, 1},  {144, 64, 16, 56, 56, 1},
};

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "conv")) {
        printf("# conv3d, stride 1, padding 1, no bias; medians of %d interleaved runs\n", RUNS);
        for (size_t i = 0; i < sizeof conv_shapes / sizeof conv_shapes[0]; i++)
            conv_case(conv_shapes[i][0], conv_shapes[i][1], conv_shapes[i][2], conv_shapes[i][3],
                      conv_shapes[i][4], conv_shapes[i][5]);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "wrapper")) {
        /* BERT-base / MiniLM, a 1024-wide decoder and an MoE expert */
        static const int64_t shapes[][3] = {{128, 384, 1536}, {128, 1536, 384},
                                            {512, 768, 768},  {512, 768, 3072},
                                            {512, 3072, 768}, {256, 1024, 1024},
                                            {2048, 1024, 512}, {64, 1024, 4096},
                                            {8, 1024, 1024},  {1, 1024, 4096}};
        printf("# dsp_linear vs raw cblas_sgemm, medians of %d interleaved runs; "
               "(x) = sgemm time / dsp_linear time\n", RUNS);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            wrapper_case(shapes[i][0], shapes[i][1], shapes[i][2]);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "small")) {
        /* the direct-loop threshold: dsp_linear without bias (the direct
         * loop below 32k multiply-adds) vs a raw cblas_sgemm call */
        static const int64_t shapes[][3] = {{1, 16, 16}, {1, 32, 32}, {4, 16, 16},
                                            {1, 64, 64}, {4, 32, 32}, {8, 32, 32},
                                            {16, 32, 32}, {4, 64, 64}, {8, 64, 64},
                                            {1, 128, 128}, {16, 64, 64}, {1, 256, 256}};
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            linear_case(LINEAR, shapes[i][0], shapes[i][1], shapes[i][2], 0);
            linear_case(SGEMM, shapes[i][0], shapes[i][1], shapes[i][2], 0);
        }
        return 0;
    }
    linear_case(LINEAR, 128, 384, 1536, 1);
    linear_case(LINEAR, 128, 1536, 384, 1);
    linear_case(LINEAR, 1, 384, 384, 1);
    linear_case(LINEAR, 1, 384, 1536, 1);
    static const int row_ops[] = {SOFTMAX, LAYERNORM, RMSNORM, GELU_EXACT, GELU_TANH, SILU, ADD};
    for (int rows = 4096; rows >= 64; rows /= 64)
        for (size_t i = 0; i < sizeof row_ops / sizeof row_ops[0]; i++)
            row_case(row_ops[i], rows, 384);
    return 0;
}
