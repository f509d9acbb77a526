/* bench_moe.c - times dsp_moe (f32, int8, int8 W8A8 and int4 experts) on the layer bench_moe_torch.py times in PyTorch; checks both agree; reports quantization accuracy and memory. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dspipe/ops.h>
#include <dspipe/tensorio.h>

/* usage:
 *   bench_moe [quick]      time every shape on its own (quick: intermediate size 1024 only)
 *   bench_moe serve        take commands on stdin (bench_moe_torch.py --dspipe drives it,
 *                          so both sides' runs interleave on a noisy machine):
 *                            layer INTER     build the layer (f32, int8 g32, int4 g32)
 *                            x T             make T tokens
 *                            run V K REPS    time REPS calls of variant V (f32, int8,
 *                                            w8a8: int8 experts on int8 activations,
 *                                            int4, w4a8: int4 on int8 activations)
 *                                            with top-K; answers the seconds
 *                            cpurun V K REPS the same, in process CPU seconds
 *   bench_moe check DIR    compare with bench_moe_torch.py check DIR's outputs
 *   bench_moe accuracy     quantized layer against the f32 one, and memory; W8A8
 *                          against f32 and against int8 weights on f32 activations
 *   bench_moe hash         a hash of the W8A8 outputs of a few shapes, to compare
 *                          between thread counts (they must be bit-identical)
 * Threads come from DSPIPE_OPS_THREADS and OPENBLAS_NUM_THREADS. */

#define RUNS 7
enum { E = 16, H = 1024 };
static const int64_t inters[] = {1024, 512};
static const int topks[] = {2, 4};
static const int64_t tokens[] = {1, 8, 64, 256, 1024, 2048};
#define STD_W 0.02
#define PI 3.141592653589793 /* np.pi */
enum { SEED_X = 1, SEED_R, SEED_G, SEED_U, SEED_D };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process: with one thread, unlike wall time,
 * it does not count the time other users' processes hold the core */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_moe: %s: %s\n", what, dsp_ops_error());
    exit(1);
}

/* bench_moe_torch.py's normal(): element i of stream seed is Box-Muller of
 * two uniforms from splitmix64's finaliser on (seed << 40) ^ 2i and ^ 2i+1,
 * in double, times std, rounded to float. */
static double uniform(uint64_t seed, uint64_t i)
{
    uint64_t z = ((seed << 40) ^ i) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 40) + 0.5) * (1.0 / 16777216.0);
}

static dsp_tensor *normal(uint64_t seed, int ndim, const int64_t *shape, double std)
{
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &t) < 0)
        die("tensor");
    float *d = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++) {
        double u1 = uniform(seed, 2 * (uint64_t)i), u2 = uniform(seed, 2 * (uint64_t)i + 1);
        d[i] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * PI * u2) * std);
    }
    return t;
}

/* A [rows, cols] view of slice e of a stacked [E, rows, cols] tensor. */
static dsp_tensor *slice(const dsp_tensor *t, int e)
{
    dsp_tensor *v = NULL;
    int64_t shape[2] = {t->shape[1], t->shape[2]};
    size_t off = t->offset + (size_t)e * (size_t)(shape[0] * shape[1]) * sizeof(float);
    if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 2, shape, NULL, t->buf, off, &v) < 0)
        die("slice");
    return v;
}

/* One layer: router, stacked expert weights and their per-expert views. */
typedef struct layer {
    int64_t inter;
    dsp_tensor *router, *g, *u, *d, *view[E][3];
    dsp_moe_expert f32[E];
} layer;

/* The layer's experts quantized one way. */
typedef struct qlayer {
    dsp_qweight *qw[E][3];
    dsp_moe_expert ex[E];
    size_t bytes;
} qlayer;

static void layer_init(layer *L, int64_t inter)
{
    int64_t rs[2] = {E, H}, gs[3] = {E, inter, H}, ds[3] = {E, H, inter};
    memset(L, 0, sizeof *L);
    L->inter = inter;
    L->router = normal(SEED_R, 2, rs, STD_W);
    L->g = normal(SEED_G, 3, gs, STD_W);
    L->u = normal(SEED_U, 3, gs, STD_W);
    L->d = normal(SEED_D, 3, ds, STD_W);
    for (int e = 0; e < E; e++) {
        L->view[e][0] = slice(L->g, e);
        L->view[e][1] = slice(L->u, e);
        L->view[e][2] = slice(L->d, e);
        L->f32[e] = (dsp_moe_expert){.gate = L->view[e][0], .up = L->view[e][1],
                                     .down = L->view[e][2]};
    }
}

static void layer_free(layer *L)
{
    for (int e = 0; e < E; e++)
        for (int k = 0; k < 3; k++)
            dsp_tensor_unref(&L->view[e][k]);
    dsp_tensor_unref(&L->router);
    dsp_tensor_unref(&L->g);
    dsp_tensor_unref(&L->u);
    dsp_tensor_unref(&L->d);
}

static void quantize(const layer *L, dsp_quant_kind kind, int group, qlayer *Q)
{
    memset(Q, 0, sizeof *Q);
    for (int e = 0; e < E; e++) {
        for (int k = 0; k < 3; k++) {
            if (dsp_quantize(L->view[e][k], kind, group, &Q->qw[e][k]) < 0)
                die("quantize");
            Q->bytes += dsp_qweight_bytes(Q->qw[e][k]);
        }
        Q->ex[e] = (dsp_moe_expert){.qgate = Q->qw[e][0], .qup = Q->qw[e][1],
                                    .qdown = Q->qw[e][2]};
    }
}

static void qlayer_free(qlayer *Q)
{
    for (int e = 0; e < E; e++)
        for (int k = 0; k < 3; k++)
            dsp_qweight_free(&Q->qw[e][k]);
}

static dsp_tensor *tokens_of(int64_t T)
{
    int64_t s[2] = {T, H};
    return normal(SEED_X, 2, s, 1.0);
}

/* dsp_moe into a new tensor, as PyTorch's forward returns one; act says
 * what int8 experts multiply (f32 or int8 activations) */
static dsp_tensor *run_act(const layer *L, const dsp_moe_expert *ex, const dsp_tensor *x, int k,
                           dsp_moe_act act)
{
    dsp_moe_opts o = {k, DSP_MOE_SOFTMAX, 1, 0.0f, act};
    dsp_tensor *y = NULL;
    if (dsp_moe(x, L->router, ex, E, NULL, 0, &o, &y) < 0)
        die("moe");
    return y;
}

static dsp_tensor *run(const layer *L, const dsp_moe_expert *ex, const dsp_tensor *x, int k)
{
    return run_act(L, ex, x, k, DSP_MOE_ACT_F32);
}

/* median seconds per call; each run repeats the call until >= 20 ms */
static double bench(const layer *L, const dsp_moe_expert *ex, const dsp_tensor *x, int k,
                    dsp_moe_act act)
{
    double t[RUNS];
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
            dsp_tensor *y = run_act(L, ex, x, k, act);
            dsp_tensor_unref(&y);
        }
        if (now() - t0 >= 0.02 || reps >= (1 << 22))
            break;
        reps *= 2;
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
            dsp_tensor *y = run_act(L, ex, x, k, act);
            dsp_tensor_unref(&y);
        }
        t[i] = (now() - t0) / reps;
    }
    qsort(t, RUNS, sizeof t[0], cmp);
    return t[RUNS / 2];
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static void time_all(int quick)
{
    const char *thr = env_or("DSPIPE_OPS_THREADS", "?");
    for (int ii = 0; ii < (quick ? 1 : 2); ii++) {
        layer L;
        qlayer Q8, Q4;
        layer_init(&L, inters[ii]);
        quantize(&L, DSP_QUANT_INT8, 32, &Q8);
        quantize(&L, DSP_QUANT_INT4, 32, &Q4);
        for (int ki = 0; ki < 2; ki++) {
            for (size_t ti = 0; ti < sizeof tokens / sizeof tokens[0]; ti++) {
                dsp_tensor *x = tokens_of(tokens[ti]);
                double f = bench(&L, L.f32, x, topks[ki], DSP_MOE_ACT_F32);
                double q8 = bench(&L, Q8.ex, x, topks[ki], DSP_MOE_ACT_F32);
                double a8 = bench(&L, Q8.ex, x, topks[ki], DSP_MOE_ACT_INT8);
                double q4 = bench(&L, Q4.ex, x, topks[ki], DSP_MOE_ACT_F32);
                printf("dspipe I=%lld k=%d T=%lld thr=%s f32 %.1f int8_g32 %.1f w8a8_g32 %.1f "
                       "int4_g32 %.1f\n", (long long)L.inter, topks[ki], (long long)tokens[ti],
                       thr, f * 1e6, q8 * 1e6, a8 * 1e6, q4 * 1e6);
                fflush(stdout);
                dsp_tensor_unref(&x);
            }
        }
        qlayer_free(&Q8);
        qlayer_free(&Q4);
        layer_free(&L);
    }
}

/* max |a - b|, max |b| */
static void diff(const dsp_tensor *a, const dsp_tensor *b, double *err, double *scale)
{
    const float *p = dsp_tensor_data(a), *q = dsp_tensor_data(b);
    *err = *scale = 0;
    for (int64_t i = 0; i < dsp_tensor_numel(b); i++) {
        double d = fabs((double)p[i] - q[i]);
        *err = d > *err ? d : *err;
        *scale = fabs(q[i]) > *scale ? fabs(q[i]) : *scale;
    }
}

static int check(const char *dir)
{
    int bad = 0;
    for (int ii = 0; ii < 2; ii++) {
        layer L;
        layer_init(&L, inters[ii]);
        for (int ki = 0; ki < 2; ki++)
            for (int64_t T = 8; T <= 64; T *= 8) {
                char path[512], *msg = NULL;
                snprintf(path, sizeof path, "%s/moe_I%lld_k%d_T%lld.npy", dir,
                         (long long)L.inter, topks[ki], (long long)T);
                dsp_tensor *ref = NULL, *x = tokens_of(T);
                if (dsp_npy_read(path, &ref, &msg) < 0) {
                    fprintf(stderr, "bench_moe: %s: %s\n", path, msg ? msg : "?");
                    free(msg);
                    return 1;
                }
                dsp_tensor *y = run(&L, L.f32, x, topks[ki]);
                double err, scale;
                diff(y, ref, &err, &scale);
                int ok = err <= 1e-5 * (1 + scale);
                bad |= !ok;
                printf("check I=%lld k=%d T=%lld: dspipe f32 vs PyTorch eager max abs err %.3g "
                       "(max|y| %.3g) %s\n", (long long)L.inter, topks[ki], (long long)T, err,
                       scale, ok ? "ok" : "MISMATCH");
                dsp_tensor_unref(&y);
                dsp_tensor_unref(&ref);
                dsp_tensor_unref(&x);
            }
        layer_free(&L);
    }
    return bad;
}

/* Per-token relative L2 error of got against ref [T, H]: max into *mx,
 * mean returned. */
static double token_err(const dsp_tensor *got, const dsp_tensor *ref, double *mx)
{
    const float *q = dsp_tensor_data(got), *p = dsp_tensor_data(ref);
    int64_t T = ref->shape[0];
    double sum = 0;
    *mx = 0;
    for (int64_t t = 0; t < T; t++) {
        double se = 0, sy = 0;
        for (int64_t i = 0; i < H; i++) {
            double d = (double)q[t * H + i] - p[t * H + i];
            se += d * d;
            sy += (double)p[t * H + i] * p[t * H + i];
        }
        double rel = sqrt(se / sy);
        *mx = rel > *mx ? rel : *mx;
        sum += rel;
    }
    return sum / (double)T;
}

/* The layer on int8 activations ya against the f32 layer y and against
 * the same quantized weights on f32 activations yq (the activations' own
 * share of the error). */
static void report_w8a8(const layer *L, int k, const char *name, const dsp_tensor *ya,
                        const dsp_tensor *y, const dsp_tensor *yq)
{
    double m1, m2, a1 = token_err(ya, y, &m1), a2 = token_err(ya, yq, &m2);
    printf("accuracy I=%lld k=%d T=%lld %-9s int8 act per-token rel L2 err vs f32 max %.3e mean "
           "%.3e; vs these weights/f32 activations max %.3e mean %.3e\n", (long long)L->inter, k,
           (long long)y->shape[0], name, m1, a1, m2, a2);
}

/* FNV-1a over the bytes of t. */
static uint64_t fnv(const dsp_tensor *t)
{
    const unsigned char *p = dsp_tensor_data(t);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < dsp_tensor_nbytes(t); i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* W8A8 outputs of shapes that take every path (dot, panels, several
 * panel blocks), hashed: run with DSPIPE_OPS_THREADS=1 and 2 and compare. */
static void hash_outputs(void)
{
    static const int64_t Ts[] = {1, 3, 64, 300, 2048};
    layer L;
    qlayer Q8, Q8b;
    layer_init(&L, 512);
    quantize(&L, DSP_QUANT_INT8, 32, &Q8);
    quantize(&L, DSP_QUANT_INT8, 128, &Q8b);
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
        for (int ki = 0; ki < 2; ki++)
            for (int g = 0; g < 2; g++) {
                dsp_tensor *x = tokens_of(Ts[ti]);
                dsp_tensor *y = run_act(&L, g ? Q8b.ex : Q8.ex, x, topks[ki], DSP_MOE_ACT_INT8);
                printf("hash I=512 k=%d T=%lld int8 g%d W8A8 %016llx\n", topks[ki],
                       (long long)Ts[ti], g ? 128 : 32, (unsigned long long)fnv(y));
                dsp_tensor_unref(&y);
                dsp_tensor_unref(&x);
            }
    qlayer_free(&Q8);
    qlayer_free(&Q8b);
    layer_free(&L);
}

/* Quantized layer against the f32 one on T tokens: per-token relative L2
 * error |yq_t - y_t| / |y_t| (max and mean over tokens), and the largest
 * elementwise error relative to max |y|. */
static void accuracy(void)
{
    const int64_t T = 256;
    static const struct { dsp_quant_kind kind; int group; const char *name; } qs[] = {
        {DSP_QUANT_INT8, 32, "int8 g32"}, {DSP_QUANT_INT8, 128, "int8 g128"},
        {DSP_QUANT_INT4, 32, "int4 g32"}, {DSP_QUANT_INT4, 128, "int4 g128"}};
    for (int ii = 0; ii < 2; ii++) {
        layer L;
        layer_init(&L, inters[ii]);
        size_t f32_bytes = (size_t)E * 3 * (size_t)L.inter * H * sizeof(float);
        dsp_tensor *x = tokens_of(T);
        for (int ki = 0; ki < 2; ki++) {
            dsp_tensor *y = run(&L, L.f32, x, topks[ki]);
            const float *p = dsp_tensor_data(y);
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
                qlayer Q;
                quantize(&L, qs[qi].kind, qs[qi].group, &Q);
                size_t bytes = Q.bytes;
                if (ki == 0) {
                    /* the weights themselves: |deq - w| / |w| over all experts */
                    double se = 0, sw = 0;
                    for (int e = 0; e < E; e++)
                        for (int m = 0; m < 3; m++) {
                            dsp_tensor *dq = NULL;
                            if (dsp_dequantize(Q.qw[e][m], &dq) < 0)
                                die("dequantize");
                            const float *a = dsp_tensor_data(dq);
                            const float *b = dsp_tensor_data(L.view[e][m]);
                            for (int64_t i = 0; i < dsp_tensor_numel(dq); i++) {
                                se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
                                sw += (double)b[i] * b[i];
                            }
                            dsp_tensor_unref(&dq);
                        }
                    printf("weights  I=%lld %-9s rel L2 err of the expert matrices %.3e\n",
                           (long long)L.inter, qs[qi].name, sqrt(se / sw));
                }
                dsp_tensor *yq = run(&L, Q.ex, x, topks[ki]);
                const float *q = dsp_tensor_data(yq);
                double rmax = 0, rsum = 0, emax = 0, ymax = 0;
                for (int64_t t = 0; t < T; t++) {
                    double se = 0, sy = 0;
                    for (int64_t i = 0; i < H; i++) {
                        double d = (double)q[t * H + i] - p[t * H + i];
                        se += d * d;
                        sy += (double)p[t * H + i] * p[t * H + i];
                        emax = fabs(d) > emax ? fabs(d) : emax;
                        ymax = fabs(p[t * H + i]) > ymax ? fabs(p[t * H + i]) : ymax;
                    }
                    double rel = sqrt(se / sy);
                    rmax = rel > rmax ? rel : rmax;
                    rsum += rel;
                }
                printf("accuracy I=%lld k=%d T=%lld %-9s per-token rel L2 err max %.3e mean "
                       "%.3e; max abs err / max|y| %.3e; experts %zu bytes vs f32 %zu (%.1f%%)\n",
                       (long long)L.inter, topks[ki], (long long)T, qs[qi].name, rmax, rsum / T,
                       emax / ymax, bytes, f32_bytes, 100.0 * (double)bytes / (double)f32_bytes);
                dsp_tensor *ya = run_act(&L, Q.ex, x, topks[ki], DSP_MOE_ACT_INT8);
                report_w8a8(&L, topks[ki], qs[qi].name, ya, y, yq);
                dsp_tensor_unref(&ya);
                dsp_tensor_unref(&yq);
                qlayer_free(&Q);
            }
            dsp_tensor_unref(&y);
        }
        dsp_tensor_unref(&x);
        layer_free(&L);
    }
}

static int serve(void)
{
    layer L;
    qlayer Q8, Q4;
    int have = 0;
    dsp_tensor *x = NULL;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char v[16];
        long long a;
        int k, reps;
        if (sscanf(line, "layer %lld", &a) == 1) {
            if (have) {
                qlayer_free(&Q8);
                qlayer_free(&Q4);
                layer_free(&L);
            }
            layer_init(&L, a);
            quantize(&L, DSP_QUANT_INT8, 32, &Q8);
            quantize(&L, DSP_QUANT_INT4, 32, &Q4);
            have = 1;
            printf("ok\n");
        } else if (sscanf(line, "x %lld", &a) == 1) {
            dsp_tensor_unref(&x);
            x = tokens_of(a);
            printf("ok\n");
        } else if ((sscanf(line, "run %15s %d %d", v, &k, &reps) == 3 ||
                    sscanf(line, "cpurun %15s %d %d", v, &k, &reps) == 3) && have && x) {
            double (*tick)(void) = line[0] == 'c' ? cpu_now : now;
            int w8a8 = !strcmp(v, "w8a8"), w4a8 = !strcmp(v, "w4a8");
            const dsp_moe_expert *ex = !strcmp(v, "int8") || w8a8 ? Q8.ex
                                       : !strcmp(v, "int4") || w4a8 ? Q4.ex
                                                                    : L.f32;
            double t0 = tick();
            for (int r = 0; r < reps; r++) {
                dsp_tensor *y = run_act(&L, ex, x, k,
                                        w8a8 || w4a8 ? DSP_MOE_ACT_INT8 : DSP_MOE_ACT_F32);
                dsp_tensor_unref(&y);
            }
            printf("%.9f\n", tick() - t0);
        } else if (!strncmp(line, "quit", 4)) {
            break;
        } else {
            printf("error: %s", line);
        }
        fflush(stdout);
    }
    dsp_tensor_unref(&x);
    if (have) {
        qlayer_free(&Q8);
        qlayer_free(&Q4);
        layer_free(&L);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return serve();
    if (argc >= 3 && !strcmp(argv[1], "check"))
        return check(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "hash")) {
        hash_outputs();
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "accuracy")) {
        accuracy();
        return 0;
    }
    time_all(argc >= 2 && !strcmp(argv[1], "quick"));
    return 0;
}
