/* quant_report.c - memory and accuracy of load-time int8/int4 weight quantization on a real Hugging Face model folder.
 *
 * usage: quant_report MODEL_DIR
 *
 * For each scheme (int8 and int4, groups 32 and 128) the model is opened with
 * dsp_model_open_opts and every quantized weight W [out, in] is compared with
 * its stored f32 form on two measures:
 *   - weight error   ||dequant(Wq) - W||_F / ||W||_F
 *   - output error   ||x·dequant(Wq)ᵀ - x·Wᵀ||_F / ||x·Wᵀ||_F for x [64, in]
 *                    drawn from N(0, 1), computed with dsp_linear_q (the path
 *                    inference uses) against dsp_linear on the stored weight.
 * It prints the weights' bytes (stored vs resident) from dsp_model_memory_info
 * and the process's resident set after touching every weight it will use
 * (VmRSS from /proc/self/status), then the median and worst errors.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>
#include <dspipe/model.h>
#include <dspipe/ops.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return -1;
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    fclose(fp);
    return kib;
}

/* ||a - b|| / ||b|| over n floats */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Read every byte a forward pass reads: the stored weights, or for a
 * quantized weight its codes (through a dequantize of the qweight). */
static double touch(const dsp_model *m)
{
    double s = 0;
    for (int i = 0; i < dsp_model_tensor_count(m); i++) {
        const char *name = dsp_model_tensor_name(m, i);
        const dsp_qweight *q = NULL;
        dsp_model_qweight(m, name, &q);
        if (q)
            continue;   /* codes live in malloc'd memory: already resident */
        dsp_tensor *t = NULL;
        if (dsp_model_tensor(m, name, &t) < 0)
            continue;
        const unsigned char *p = dsp_tensor_data(t);
        for (size_t k = 0; k < dsp_tensor_nbytes(t); k += 4096)
            s += p[k];
        dsp_tensor_unref(&t);
    }
    return s;
}

static int report(const char *dir, dsp_quant_kind kind, int group)
{
    dsp_model *m = NULL;
    char *why = NULL;
    dsp_model_opts o = {.quant = kind, .group_size = group};
    if (dsp_model_open_opts(dir, &o, &m, &why) < 0) {
        fprintf(stderr, "%s\n", why);
        free(why);
        return 1;
    }
    volatile double sink = touch(m);
    (void)sink;
    long rss = rss_kib();
    dsp_model_memory mem;
    dsp_model_memory_info(m, &mem);
    int n = dsp_model_tensor_count(m), nq = 0;
    double *werr = calloc((size_t)n, sizeof *werr), *yerr = calloc((size_t)n, sizeof *yerr);
    char worst_name[256] = "";
    for (int i = 0; i < n; i++) {
        const char *name = dsp_model_tensor_name(m, i);
        const dsp_qweight *q = NULL;
        dsp_model_qweight(m, name, &q);
        if (!q)
            continue;
        dsp_tensor *w = NULL, *wf = NULL, *dq = NULL, *x = NULL, *y = NULL, *yq = NULL;
        int64_t outf, inf;
        dsp_qweight_shape(q, &outf, &inf);
        dsp_model_tensor(m, name, &w);
        /* the stored weight as f32 (f16/bf16 checkpoints too): an
         * embedding lookup of every row converts it */
        dsp_tensor *ids = NULL;
        dsp_tensor_new(DSP_DTYPE_I64, 1, (int64_t[]){outf}, &ids);
        for (int64_t r = 0; r < outf; r++)
            ((int64_t *)dsp_tensor_data(ids))[r] = r;
        if (dsp_embedding(ids, w, &wf) < 0) {
            fprintf(stderr, "%s: %s\n", name, dsp_ops_error());
            return 1;
        }
        const float *wfp = dsp_tensor_data(wf);
        dsp_dequantize(q, &dq);
        werr[nq] = rel_err(dsp_tensor_data(dq), wfp, outf * inf);
        dsp_tensor_new(DSP_DTYPE_F32, 2, (int64_t[]){64, inf}, &x);
        for (int64_t k = 0; k < 64 * inf; k++)
            ((float *)dsp_tensor_data(x))[k] = (float)gauss();
        if (dsp_linear(x, w, NULL, &y) < 0 || dsp_linear_q(x, q, NULL, &yq) < 0) {
            fprintf(stderr, "%s: %s\n", name, dsp_ops_error());
            return 1;
        }
        yerr[nq] = rel_err(dsp_tensor_data(yq), dsp_tensor_data(y), 64 * outf);
        if (nq == 0 || yerr[nq] > yerr[0]) {
            /* keep the worst in front for the name */
            double t = yerr[0];
            yerr[0] = yerr[nq];
            yerr[nq] = t;
            t = werr[0];
            werr[0] = werr[nq];
            werr[nq] = t;
            snprintf(worst_name, sizeof worst_name, "%s", name);
        }
        nq++;
        dsp_tensor *ts[] = {w, wf, dq, x, y, yq, ids};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            dsp_tensor_unref(&ts[k]);
    }
    double worst_y = nq ? yerr[0] : 0, worst_w = nq ? werr[0] : 0;
    qsort(werr, (size_t)nq, sizeof *werr, cmp_double);
    qsort(yerr, (size_t)nq, sizeof *yerr, cmp_double);
    printf("%-4s g%-3d | %3d quantized, %d kept | weights %7.2f MiB -> %7.2f MiB (%.2fx) | "
           "model %7.2f MiB -> %7.2f MiB | VmRSS %7.1f MiB | weight err median %.2e | "
           "output err median %.2e, worst %.2e (%s)\n",
           kind == DSP_QUANT_INT4 ? "int4" : "int8", group, mem.n_quantized, mem.n_kept,
           mem.quantized_from / 1048576.0, mem.quantized_bytes / 1048576.0,
           mem.quantized_bytes ? (double)mem.quantized_from / mem.quantized_bytes : 0.0,
           mem.stored_bytes / 1048576.0, mem.resident_bytes / 1048576.0, rss / 1024.0,
           nq ? werr[nq / 2] : 0.0, nq ? yerr[nq / 2] : 0.0, worst_y, worst_name);
    (void)worst_w;
    free(werr);
    free(yerr);
    dsp_model_close(&m);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    dsp_model *m = NULL;
    char *why = NULL;
    if (dsp_model_open(argv[1], &m, &why) < 0) {
        fprintf(stderr, "%s\n", why);
        free(why);
        return 1;
    }
    volatile double sink = touch(m);
    (void)sink;
    dsp_model_memory mem;
    dsp_model_memory_info(m, &mem);
    printf("%s: %d tensors, %.2f MiB stored; f32 VmRSS after touching every weight: %.1f MiB\n",
           argv[1], dsp_model_tensor_count(m), mem.stored_bytes / 1048576.0, rss_kib() / 1024.0);
    dsp_model_close(&m);
    int rc = 0;
    rc |= report(argv[1], DSP_QUANT_INT8, 32);
    rc |= report(argv[1], DSP_QUANT_INT8, 128);
    rc |= report(argv[1], DSP_QUANT_INT4, 32);
    rc |= report(argv[1], DSP_QUANT_INT4, 128);
    return rc;
}
