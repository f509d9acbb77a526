/* test_cuda_text_encoder.c - the BERT-family encoder (encoders/text) on cuda:0 against the CPU: the random-init fixtures' hidden states, pooling and bucketed batches. Exits 77 (skip) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/tensorio.h>

#include "bert.h"
#include "cudatest.h"

/* Tolerances: |gpu - cpu| <= atol + rtol * |cpu|, f32 on both sides (the
 * CUDA module's GEMMs run without TF32 unless DSPIPE_CUDA_TF32=1, which
 * this test does not set):
 *   hidden states, pooled rows   cuBLAS vs OpenBLAS summation order, CUDA's
 *                                erff/tanhf/expf, two passes per layer norm,
 *                                over at most a few layers: 1e-4 + 1e-4 rel
 *   back on the CPU              the same weights copied there and back: 0 */
#define TOL_GPU 1e-4, 1e-4

static const char *const fixtures[] = { "bert_odd", "bert_tanh", "roberta" };

/* One fixture: the model on each side and its padded batch as sequences. */
typedef struct case_data {
    bert_model *mc, *mg;        /* on the CPU, on cuda:0 */
    int64_t B, L, H;
    int64_t *ids, *types;       /* [B, L] */
    uint8_t *mask;              /* [B, L] */
    bert_seq *seqs;             /* B rows, real tokens only */
} case_data;

static const char *fixture_dir(const char *name)
{
    const char *src = getenv("TESTS_SRCDIR");
    static char path[1024];
    snprintf(path, sizeof path, "%s/data/text_encoder/%s", src ? src : ".", name);
    return path;
}

static bert_model *open_model(const char *name)
{
    bert_model *m = NULL;
    char *why = NULL;
    if (bert_open(fixture_dir(name), &m, &why) < 0) {
        fprintf(stderr, "bert_open %s: %s\n", fixture_dir(name), why ? why : "?");
        exit(99);
    }
    return m;
}

/* An i64 [B, L] tensor of io.safetensors as a plain array (caller frees). */
static int64_t *read_i64(dsp_safetensors *st, const char *name, int64_t *B, int64_t *L)
{
    dsp_tensor *t = NULL;
    if (dsp_safetensors_get(st, name, &t) < 0 || t->ndim != 2 || t->dtype != DSP_DTYPE_I64) {
        fprintf(stderr, "io.safetensors: no i64 [B, L] %s\n", name);
        exit(99);
    }
    *B = t->shape[0];
    *L = t->shape[1];
    size_t n = (size_t)(*B * *L);
    int64_t *a = malloc(n * sizeof *a);
    if (!a)
        exit(99);
    memcpy(a, dsp_tensor_data(t), n * sizeof *a);
    dsp_tensor_unref(&t);
    return a;
}

static void case_open(case_data *k, const char *name)
{
    char io[1100];
    dsp_safetensors *st = NULL;
    memset(k, 0, sizeof *k);
    k->mc = open_model(name);
    k->mg = open_model(name);
    k->H = bert_get_config(k->mc)->hidden;
    snprintf(io, sizeof io, "%s/io.safetensors", fixture_dir(name));
    if (dsp_safetensors_open(io, &st, NULL) < 0) {
        fprintf(stderr, "cannot open %s\n", io);
        exit(99);
    }
    int64_t *mask = read_i64(st, "attention_mask", &k->B, &k->L);
    k->ids = read_i64(st, "input_ids", &k->B, &k->L);
    k->types = read_i64(st, "token_type_ids", &k->B, &k->L);
    dsp_safetensors_close(&st);
    k->mask = malloc((size_t)(k->B * k->L));
    k->seqs = calloc((size_t)k->B, sizeof *k->seqs);
    if (!k->mask || !k->seqs)
        exit(99);
    for (int64_t b = 0; b < k->B; b++) {
        bert_seq *s = &k->seqs[b];
        s->ids = k->ids + b * k->L;
        s->type_ids = k->types + b * k->L;
        for (int64_t j = 0; j < k->L; j++) {
            k->mask[b * k->L + j] = mask[b * k->L + j] != 0;
            s->len += k->mask[b * k->L + j];     /* right padding: the real tokens come first */
        }
    }
    free(mask);
}

static void case_close(case_data *k)
{
    bert_close(&k->mc);
    bert_close(&k->mg);
    free(k->ids);
    free(k->types);
    free(k->mask);
    free(k->seqs);
}

/* got (cuda) against want (cpu), n values, where keep (NULL: all) says so. */
static void compare_rows(const char *what, const float *want, const float *got, int64_t n, const uint8_t *keep,
                         int64_t per_keep, double atol, double rtol)
{
    double worst = 0;
    int64_t at = -1;
    checks++;
    for (int64_t i = 0; i < n; i++) {
        if (keep && !keep[i / per_keep])
            continue;
        double err = fabs((double)want[i] - (double)got[i]), lim = atol + rtol * fabs((double)want[i]);
        if (!(err <= lim) && (at < 0 || !(err <= worst))) {
            worst = err;
            at = i;
        }
    }
    if (at >= 0)
        FAIL("%s: element %lld: cpu %.9g, cuda %.9g (|diff| %.3g)", what, (long long)at, (double)want[at],
             (double)got[at], worst);
}

/* bert_forward on both sides: the padded batch with types and mask. */
static void check_forward(const char *name, case_data *k)
{
    bert_batch b = { .ids = k->ids, .type_ids = k->types, .mask = k->mask, .batch = k->B, .len = k->L };
    dsp_tensor *hc = NULL, *hg = NULL;
    char what[96];
    snprintf(what, sizeof what, "%s: last hidden state", name);
    EXPECT_RC(bert_forward(k->mc, &b, &hc), 0);
    EXPECT_RC(bert_forward(k->mg, &b, &hg), 0);
    if (hc && hg) {
        checks++;
        if (hg->device.type != DSP_DEVICE_CPU)
            FAIL("%s: bert_forward returned a device tensor, the CPU was promised", what);
        else
            /* padding positions are computed but meaningless: real tokens only */
            compare_rows(what, dsp_tensor_data(hc), dsp_tensor_data(hg), dsp_tensor_numel(hc), k->mask, k->H,
                         TOL_GPU);
    } else {
        FAIL("%s: %s", what, bert_errmsg(hc ? k->mg : k->mc));
    }
    /* bert_pool on a device copy of the CPU's hidden state (the device pooling path) */
    if (hc) {
        dsp_tensor *dh = to(hc, gpu);
        float *pc = malloc((size_t)(k->B * k->H) * sizeof *pc), *pg = malloc((size_t)(k->B * k->H) * sizeof *pg);
        bert_encode_opts o = bert_default_encode_opts();
        snprintf(what, sizeof what, "%s: bert_pool on the device", name);
        EXPECT_RC(bert_pool(k->mc, hc, k->mask, &o, pc), 0);
        EXPECT_RC(bert_pool(k->mg, dh, k->mask, &o, pg), 0);
        compare_rows(what, pc, pg, k->B * k->H, NULL, 1, TOL_GPU);
        /* a device hidden state with the model on the CPU is refused, not copied */
        checks++;
        if (bert_pool(k->mc, dh, k->mask, &o, pc) != DSP_EDEVICE || !strstr(bert_errmsg(k->mc), "cuda:"))
            FAIL("%s: bert_pool of a device tensor on a CPU model: '%s'", name, bert_errmsg(k->mc));
        free(pc);
        free(pg);
        dsp_tensor_unref(&dh);
    }
    dsp_tensor_unref(&hc);
    dsp_tensor_unref(&hg);
}

/* bert_encode on both sides: every pooling, with and without the L2 norm,
 * one bucket and many (a budget of 7 tokens grows the workspace bucket by
 * bucket and puts long sequences alone). */
static void check_encode(const char *name, case_data *k)
{
    static const struct { bert_pooling pooling; int normalize; int64_t budget; } opts[] = {
        { BERT_POOL_MEAN, 1, 512 }, { BERT_POOL_CLS, 0, 512 }, { BERT_POOL_MEAN, 0, 7 }, { BERT_POOL_CLS, 1, 7 },
    };
    size_t n = (size_t)(k->B * k->H);
    float *ec = malloc(n * sizeof *ec), *eg = malloc(n * sizeof *eg);
    if (!ec || !eg)
        exit(99);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        bert_encode_opts o = { .pooling = opts[i].pooling, .normalize = opts[i].normalize,
                               .token_budget = opts[i].budget };
        char what[128];
        snprintf(what, sizeof what, "%s: encode %s%s, budget %lld", name,
                 o.pooling == BERT_POOL_CLS ? "cls" : "mean", o.normalize ? " L2" : "", (long long)o.token_budget);
        EXPECT_RC(bert_encode(k->mc, k->seqs, (int)k->B, &o, ec), 0);
        EXPECT_RC(bert_encode(k->mg, k->seqs, (int)k->B, &o, eg), 0);
        compare_rows(what, ec, eg, (int64_t)n, NULL, 1, TOL_GPU);
    }
    /* back on the CPU: the same weights, so the same bits */
    bert_encode_opts o = bert_default_encode_opts();
    EXPECT_RC(bert_to_device(k->mg, ctx, cpu), 0);
    checks++;
    if (bert_get_device(k->mg).type != DSP_DEVICE_CPU)
        FAIL("%s: bert_to_device(cpu) left the model on the device", name);
    EXPECT_RC(bert_encode(k->mc, k->seqs, (int)k->B, &o, ec), 0);
    EXPECT_RC(bert_encode(k->mg, k->seqs, (int)k->B, &o, eg), 0);
    compare_rows("back on the CPU", ec, eg, (int64_t)n, NULL, 1, 0, 0);
    free(ec);
    free(eg);
}

static void check_fixture(const char *name)
{
    case_data k;
    char dev[32];
    case_open(&k, name);
    EXPECT_RC(bert_to_device(k.mg, ctx, gpu), 0);
    checks++;
    if (bert_get_device(k.mg).type != DSP_DEVICE_CUDA)
        FAIL("%s: bert_to_device did not move the model: %s", name, bert_errmsg(k.mg));
    /* moving to where it is already is a no-op */
    EXPECT_RC(bert_to_device(k.mg, ctx, gpu), 0);
    printf("%s: on %s\n", name, dsp_device_name(bert_get_device(k.mg), dev, sizeof dev));
    check_forward(name, &k);
    check_encode(name, &k);
    case_close(&k);
}

/* What needs no GPU: the CPU no-op, a missing context, and a failed move
 * that leaves the model working on the CPU. Returns the number of failures. */
static int check_without_gpu(void)
{
    dsp_context *c = NULL;
    bert_model *m = open_model("bert_odd");
    int bad = 0;
    int64_t ids[4] = { 2, 5, 7, 3 };
    bert_seq s = { .ids = ids, .len = 4 };
    bert_encode_opts o = bert_default_encode_opts();
    float before[512], after[512];
    if (dsp_context_new(&c) < 0 || bert_get_config(m)->hidden > 512)
        exit(99);
    if (bert_encode(m, &s, 1, &o, before) < 0 || bert_to_device(m, c, cpu) != 0 ||
        bert_get_device(m).type != DSP_DEVICE_CPU) {
        fprintf(stderr, "FAIL: encode, then a move to the CPU: %s\n", bert_errmsg(m));
        bad++;
    }
    if (bert_to_device(m, NULL, (dsp_device){ DSP_DEVICE_CUDA, 0 }) != DSP_EINVAL ||
        !strstr(bert_errmsg(m), "context")) {
        fprintf(stderr, "FAIL: bert_to_device without a context: '%s'\n", bert_errmsg(m));
        bad++;
    }
    int rc = bert_to_device(m, c, (dsp_device){ DSP_DEVICE_CUDA, 0 });
    if (rc != DSP_EDEVICE || !strstr(bert_errmsg(m), "cuda:0") || bert_get_device(m).type != DSP_DEVICE_CPU) {
        fprintf(stderr, "FAIL: bert_to_device(cuda:0) without a GPU returned %d: '%s'\n", rc, bert_errmsg(m));
        bad++;
    } else {
        printf("bert_to_device(cuda:0) fails as it should: %s\n", bert_errmsg(m));
    }
    if (bert_encode(m, &s, 1, &o, after) < 0 || memcmp(before, after, (size_t)bert_get_config(m)->hidden * 4)) {
        fprintf(stderr, "FAIL: the model no longer encodes the same after a failed move: %s\n", bert_errmsg(m));
        bad++;
    }
    bert_close(&m);
    dsp_context_free(&c);
    return bad;
}

int main(void)
{
    int rc = cudatest_open();
    if (rc != 0) {
        int bad = check_without_gpu();
        return bad ? 1 : rc;
    }
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        check_fixture(fixtures[i]);
    return cudatest_close();
}
