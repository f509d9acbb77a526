/* test_text_encoder.c - the BERT-family encoder (encoders/text/bert.c) against transformers, and text.encode. */
#define _POSIX_C_SOURCE 200809L   /* mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <dspipe/dspipe.h>
#include <dspipe/harness.h>
#include <dspipe/tensorio.h>

#include "bert.h"
#ifdef HAVE_TOKENIZER
#include "tok.h"
#endif

/* Tolerances (f32 everywhere, errors as max |got - want| / (1 + max |want|)):
 *  - against transformers' BertModel / RobertaModel: 1e-5 (different GEMM and
 *    exp orders; observed errors are printed);
 *  - a sequence in a padded bucket against the same sequence alone: 1e-6
 *    (only BLAS blocking and summation order differ). */
#define TOL_REF 1e-5
#define TOL_BATCH 1e-6

static const char *const fixtures[] = { "bert_odd", "bert_tanh", "roberta" };

typedef struct fixture {
    bert_model *m;
    dsp_safetensors *io;
    dsp_tensor *ids, *mask, *types, *hidden, *mean, *cls, *mean_norm;
    int64_t B, L, H;
    int64_t *ids64, *types64;
    uint8_t *mask8;
} fixture;

static char *fixture_dir(const char *name)
{
    const char *src = getenv("TESTS_SRCDIR");
    static char path[1024];
    snprintf(path, sizeof path, "%s/data/text_encoder/%s", src ? src : ".", name);
    return path;
}

static dsp_tensor *get(dsp_safetensors *st, const char *name)
{
    dsp_tensor *t = NULL;
    ck_assert_msg(dsp_safetensors_get(st, name, &t) == 0, "io.safetensors has no %s", name);
    return t;
}

static void fixture_open(fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    char *why = NULL, io[1100];
    const char *dir = fixture_dir(name);
    int rc = bert_open(dir, &f->m, &why);
    ck_assert_msg(rc == 0, "bert_open %s: %s", dir, why ? why : "?");
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    ck_assert_int_eq(dsp_safetensors_open(io, &f->io, NULL), 0);
    f->ids = get(f->io, "input_ids");
    f->mask = get(f->io, "attention_mask");
    f->types = get(f->io, "token_type_ids");
    f->hidden = get(f->io, "last_hidden_state");
    f->mean = get(f->io, "mean");
    f->cls = get(f->io, "cls");
    f->mean_norm = get(f->io, "mean_norm");
    f->B = f->ids->shape[0];
    f->L = f->ids->shape[1];
    f->H = f->hidden->shape[2];
    ck_assert_int_eq(f->H, bert_get_config(f->m)->hidden);
    int64_t n = f->B * f->L;
    f->ids64 = malloc((size_t)n * sizeof *f->ids64);
    f->types64 = malloc((size_t)n * sizeof *f->types64);
    f->mask8 = malloc((size_t)n);
    const int64_t *ids = dsp_tensor_data(f->ids), *types = dsp_tensor_data(f->types),
                  *mask = dsp_tensor_data(f->mask);
    for (int64_t i = 0; i < n; i++) {
        f->ids64[i] = ids[i];
        f->types64[i] = types[i];
        f->mask8[i] = (uint8_t)(mask[i] != 0);
    }
}

static void fixture_close(fixture *f)
{
    dsp_tensor **t[] = { &f->ids, &f->mask, &f->types, &f->hidden, &f->mean, &f->cls, &f->mean_norm };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        dsp_tensor_unref(t[i]);
    dsp_safetensors_close(&f->io);
    bert_close(&f->m);
    free(f->ids64);
    free(f->types64);
    free(f->mask8);
}

static int64_t seq_len(const fixture *f, int64_t b)
{
    int64_t n = 0;
    for (int64_t j = 0; j < f->L; j++)
        n += f->mask8[b * f->L + j];
    return n;
}

/* max |got - want| / (1 + max |want|) over n values */
static double rel_err(const float *got, const float *want, int64_t n)
{
    double err = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        err = e > err || isnan(e) ? e : err;
        mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
    }
    return err / (1 + mx);
}

/* last_hidden_state on the real tokens of the padded batch (RoBERTa numbers
 * padding positions differently, so padding rows are not compared) */
START_TEST(test_hidden_matches_transformers)
{
    fixture f;
    fixture_open(&f, fixtures[_i]);
    bert_batch b = { .ids = f.ids64, .type_ids = f.types64, .mask = f.mask8, .batch = f.B, .len = f.L };
    dsp_tensor *h = NULL;
    ck_assert_msg(bert_forward(f.m, &b, &h) == 0, "%s", bert_errmsg(f.m));
    ck_assert_int_eq(h->ndim, 3);
    ck_assert_int_eq(h->shape[1], f.L);
    const float *got = dsp_tensor_data(h), *want = dsp_tensor_data(f.hidden);
    double worst = 0;
    for (int64_t bi = 0; bi < f.B; bi++) {
        int64_t n = seq_len(&f, bi);
        double e = rel_err(got + bi * f.L * f.H, want + bi * f.L * f.H, n * f.H);
        worst = e > worst ? e : worst;
    }
    printf("%s: last_hidden_state rel err %.2e (tol %.0e)\n", fixtures[_i], worst, TOL_REF);
    ck_assert_msg(worst <= TOL_REF, "%s: last_hidden_state error %.3e", fixtures[_i], worst);

    /* pooling of the same hidden state */
    bert_encode_opts o = bert_default_encode_opts();
    float *pooled = malloc((size_t)(f.B * f.H) * sizeof *pooled);
    struct { bert_pooling pool; int norm; dsp_tensor *want; const char *name; } cases[] = {
        { BERT_POOL_MEAN, 0, f.mean, "mean" }, { BERT_POOL_CLS, 0, f.cls, "cls" },
        { BERT_POOL_MEAN, 1, f.mean_norm, "mean_norm" },
    };
    for (size_t k = 0; k < 3; k++) {
        o.pooling = cases[k].pool;
        o.normalize = cases[k].norm;
        ck_assert_int_eq(bert_pool(f.m, h, f.mask8, &o, pooled), 0);
        double e = rel_err(pooled, dsp_tensor_data(cases[k].want), f.B * f.H);
        printf("%s: %s rel err %.2e\n", fixtures[_i], cases[k].name, e);
        ck_assert_msg(e <= TOL_REF, "%s %s: error %.3e", fixtures[_i], cases[k].name, e);
    }
    free(pooled);
    dsp_tensor_unref(&h);
    fixture_close(&f);
}
END_TEST

/* bert_encode: unpadded sequences, bucketed with padding, against the
 * reference; and each sequence alone against the batch */
START_TEST(test_encode_batch_equals_single)
{
    fixture f;
    fixture_open(&f, fixtures[_i]);
    bert_seq *s = calloc((size_t)f.B, sizeof *s);
    for (int64_t b = 0; b < f.B; b++)
        s[b] = (bert_seq){ .ids = f.ids64 + b * f.L, .type_ids = f.types64 + b * f.L, .len = seq_len(&f, b) };
    float *all = malloc((size_t)(f.B * f.H) * sizeof *all), *one = malloc((size_t)f.H * sizeof *one);
    bert_encode_opts o = bert_default_encode_opts();   /* mean + L2, as mean_norm */
    ck_assert_msg(bert_encode(f.m, s, (int)f.B, &o, all) == 0, "%s", bert_errmsg(f.m));
    double e = rel_err(all, dsp_tensor_data(f.mean_norm), f.B * f.H);
    ck_assert_msg(e <= TOL_REF, "%s: encode vs transformers %.3e", fixtures[_i], e);
    /* budgets that give one bucket, several, and one sequence a bucket */
    int64_t budgets[] = { 1 << 20, 2 * f.L, 1 };
    for (size_t k = 0; k < 3; k++) {
        o.token_budget = budgets[k];
        float *again = malloc((size_t)(f.B * f.H) * sizeof *again);
        ck_assert_int_eq(bert_encode(f.m, s, (int)f.B, &o, again), 0);
        double eb = rel_err(again, all, f.B * f.H);
        ck_assert_msg(eb <= TOL_BATCH, "%s budget %lld: %.3e", fixtures[_i], (long long)budgets[k], eb);
        free(again);
    }
    double worst = 0;
    for (int64_t b = 0; b < f.B; b++) {
        ck_assert_int_eq(bert_encode(f.m, &s[b], 1, &o, one), 0);
        double eb = rel_err(one, all + b * f.H, f.H);
        worst = eb > worst ? eb : worst;
    }
    printf("%s: batch vs single rel err %.2e (tol %.0e)\n", fixtures[_i], worst, TOL_BATCH);
    ck_assert_msg(worst <= TOL_BATCH, "%s: batch vs single %.3e", fixtures[_i], worst);
    free(all);
    free(one);
    free(s);
    fixture_close(&f);
}
END_TEST

START_TEST(test_errors)
{
    bert_model *m = NULL;
    char *why = NULL;
    ck_assert_int_lt(bert_open("/nonexistent/model", &m, &why), 0);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(why);
    free(why);
    why = NULL;
    /* a folder that is a model, but not a BERT one: the tokenizer fixtures have no config.json */
    ck_assert_int_lt(bert_open(fixture_dir("bert_odd/io.safetensors"), &m, &why), 0);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, "config") || strstr(why, "embeddings"), "%s", why);
    free(why);

    fixture f;
    fixture_open(&f, "bert_odd");
    const bert_config *c = bert_get_config(f.m);
    int64_t n = c->max_positions + 1;
    int64_t *ids = calloc((size_t)n, sizeof *ids);
    bert_seq s = { .ids = ids, .len = n };
    float *out = malloc((size_t)c->hidden * sizeof *out);
    bert_encode_opts o = bert_default_encode_opts();
    ck_assert_int_eq(bert_encode(f.m, &s, 1, &o, out), DSP_ELIMIT);
    ck_assert_ptr_nonnull(strstr(bert_errmsg(f.m), "positions"));
    ids[0] = c->vocab;          /* out of range */
    s.len = 3;
    ck_assert_int_lt(bert_encode(f.m, &s, 1, &o, out), 0);
    s.len = 0;
    ck_assert_int_eq(bert_encode(f.m, &s, 1, &o, out), DSP_EINVAL);
    free(ids);
    free(out);
    fixture_close(&f);
}
END_TEST

/* text.encode through the harness: padded tokenizer-style packets (with
 * attention_mask) in one batch give the library's embeddings */
START_TEST(test_op_batch)
{
    dsp_context *ctx = NULL;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "text.encode") != NULL, "text.encode not found: plugin path?");
    fixture f;
    fixture_open(&f, "bert_odd");
    char param[1200];
    snprintf(param, sizeof param, "model=%s", fixture_dir("bert_odd"));
    const char *params[] = { param, "token_budget=20", NULL };
    dsp_harness *h = NULL;
    ck_assert_msg(dsp_harness_new(ctx, "text.encode", params, 1, &h) == 0, "%s", dsp_context_errmsg(ctx));
    /* the fixture's sequences as items 0, 2, 3 ..., and item 1 a packet
     * without input_ids: it fails alone, the batch goes on */
    dsp_packet **pk = calloc((size_t)f.B + 1, sizeof *pk);
    for (int64_t b = 0; b < f.B; b++) {
        int64_t slot = b == 0 ? 0 : b + 1;
        ck_assert_int_eq(dsp_packet_new(&pk[slot]), 0);
        dsp_packet_set_pos(pk[slot], slot, 0, 1);
        const char *names[] = { "input_ids", "attention_mask", "token_type_ids" };
        const int64_t *src[] = { f.ids64, NULL, f.types64 };
        for (int k = 0; k < 3; k++) {
            dsp_tensor *t = NULL;
            ck_assert_int_eq(dsp_tensor_new(DSP_DTYPE_I64, 1, &f.L, &t), 0);
            int64_t *v = dsp_tensor_data(t);
            for (int64_t j = 0; j < f.L; j++)
                v[j] = k == 1 ? f.mask8[b * f.L + j] : src[k][b * f.L + j];
            ck_assert_int_eq(dsp_packet_set_tensor(pk[slot], names[k], t), 0);
        }
    }
    ck_assert_int_eq(dsp_packet_new(&pk[1]), 0);
    dsp_packet_set_pos(pk[1], 1, 0, 1);
    ck_assert_msg(dsp_harness_push_batch(h, pk, (int)f.B + 1) == 0, "%s", dsp_harness_errmsg(h));
    const float *want = dsp_tensor_data(f.mean_norm);
    for (int64_t b = 0; b < f.B; b++) {
        dsp_packet *p = dsp_harness_pull(h, 0);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(dsp_packet_item(p), b == 0 ? 0 : b + 1);
        ck_assert_ptr_null(dsp_packet_tensor(p, "input_ids"));
        const dsp_tensor *e = dsp_packet_tensor(p, "embedding");
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->shape[0], f.H);
        ck_assert(rel_err(dsp_tensor_data(e), want + b * f.H, f.H) <= TOL_REF);
        dsp_packet_unref(&p);
    }
    ck_assert_ptr_null(dsp_harness_pull(h, 0));
    int64_t item = -1;
    const char *msg = NULL;
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    ck_assert_int_eq(dsp_harness_item_failure(h, 0, &item, &msg), 0);
    ck_assert_int_eq(item, 1);
    ck_assert_msg(strstr(msg, "no input_ids") && !strstr(msg, "item"), "%s", msg);
    /* outside a callback there is no batch to go on with */
    dsp_packet *late = NULL;
    ck_assert_int_eq(dsp_packet_new(&late), 0);
    ck_assert_int_eq(dsp_node_fail_packet(dsp_harness_node(h), late, DSP_EINVAL, "late"), DSP_ESTATE);
    dsp_packet_unref(&late);
    ck_assert_int_eq(dsp_harness_item_failures(h), 1);
    free(pk);
    dsp_harness_free(&h);
    fixture_close(&f);
    dsp_context_free(&ctx);
}
END_TEST

#ifdef HAVE_TOKENIZER
static const char *const sentences[] = {
    "The cat sat on the mat.", "A big red dog ran fast!", "sun", "the sea , the sky , the stars",
    "Cold rain and snow in the city at night", "birds sing songs", "", "unknown zebra words here",
    "the old house by the road", "Warm light, dark water, green trees and blue sky.",
};
#define NSENT (sizeof sentences / sizeof sentences[0])

/* Run a command line, returning its exit status. */
static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* dspipe pipelines/text_embed.pipe on a small file: embeddings.npy equals
 * the library on the tokenizer's ids, index.jsonl has one line per row; then
 * semantic_search.pipe ranks the corpus against two of its own lines. */
START_TEST(test_text_embed_pipe)
{
    const char *bin = getenv("DSPIPE_BIN"), *src = getenv("TESTS_SRCDIR");
    ck_assert_msg(bin && src, "run through make check");
    char work[] = "/tmp/dsp_text_embed.XXXXXX", cmd[4096], path[1200];
    ck_assert_ptr_nonnull(mkdtemp(work));
    snprintf(path, sizeof path, "%s/in.txt", work);
    FILE *fp = fopen(path, "w");
    for (size_t i = 0; i < NSENT; i++)
        fprintf(fp, "%s\n", sentences[i]);
    fclose(fp);
    const char *model = fixture_dir("bert_odd");
    snprintf(cmd, sizeof cmd, "'%s' -q '%s/../pipelines/text_embed.pipe' '%s/in.txt' '%s/out' --set model='%s' "
             "--set max_length=32 >'%s/log' 2>&1", bin, src, work, work, model, work);
    int st = run(cmd);
    if (st != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s/log' >&2", work);
        run(cmd);
    }
    ck_assert_int_eq(st, 0);

    /* what the library gives for the same ids */
    char err[256];
    tok_tokenizer *tk = NULL;
    ck_assert_msg(tok_load(model, 0, &tk, err, sizeof err) == 0, "%s", err);
    tok_options o = tok_default_options();
    o.truncation = 1;
    o.max_length = 32;
    o.padding = TOK_PAD_NONE;
    bert_model *m = NULL;
    ck_assert_int_eq(bert_open(model, &m, NULL), 0);
    int64_t H = bert_get_config(m)->hidden;
    snprintf(path, sizeof path, "%s/out/embeddings.npy", work);
    dsp_tensor *npy = NULL;
    ck_assert_int_eq(dsp_npy_read(path, &npy, NULL), 0);
    ck_assert_int_eq(npy->ndim, 2);
    ck_assert_int_eq(npy->shape[0], NSENT - 1);     /* the empty line is skipped */
    ck_assert_int_eq(npy->shape[1], H);
    const float *rows = dsp_tensor_data(npy);
    float *want = malloc((size_t)H * sizeof *want);
    int64_t row = 0;
    bert_encode_opts eo = bert_default_encode_opts();
    for (size_t i = 0; i < NSENT; i++) {
        if (!sentences[i][0])
            continue;
        tok_encoding e = { 0 };
        ck_assert_int_eq(tok_encode(tk, sentences[i], strlen(sentences[i]), NULL, 0, &o, &e), 0);
        int64_t ids[64], types[64];
        for (size_t j = 0; j < e.n; j++) {
            ids[j] = e.ids[j];
            types[j] = e.type_ids[j];
        }
        bert_seq s = { .ids = ids, .type_ids = types, .len = (int64_t)e.n };
        ck_assert_int_eq(bert_encode(m, &s, 1, &eo, want), 0);
        double d = rel_err(rows + row * H, want, H);
        ck_assert_msg(d <= TOL_BATCH, "row %lld (%s): %.3e", (long long)row, sentences[i], d);
        tok_encoding_clear(&e);
        row++;
    }
    snprintf(cmd, sizeof cmd, "test $(wc -l <'%s/out/index.jsonl') -eq %d && grep -q '\"text\":\"sun\"' "
             "'%s/out/index.jsonl'", work, (int)NSENT - 1, work);
    ck_assert_int_eq(run(cmd), 0);

    /* search: a corpus line as a query finds itself first, with cosine 1 */
    snprintf(path, sizeof path, "%s/q.txt", work);
    fp = fopen(path, "w");
    fprintf(fp, "%s\n%s\n", sentences[1], sentences[8]);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "'%s' -q '%s/../pipelines/semantic_search.pipe' '%s/q.txt' '%s/out' --set model='%s' "
             "--set top_k=3 >'%s/search.txt' 2>&1 && grep -q '1. 1.0000  \\[1\\] A big red dog ran fast!' '%s/search.txt' "
             "&& grep -q '1. 1.0000  \\[7\\] the old house by the road' '%s/search.txt' "
             "&& test $(wc -l <'%s/out/matches.jsonl') -eq 2", bin, src, work, work, model, work, work, work, work);
    st = run(cmd);
    if (st != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s/search.txt' >&2", work);
        run(cmd);
    }
    ck_assert_int_eq(st, 0);
    free(want);
    dsp_tensor_unref(&npy);
    bert_close(&m);
    tok_free(&tk);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    run(cmd);
}
END_TEST
#endif

static Suite *encoder_suite(void)
{
    Suite *s = suite_create("text_encoder");
    TCase *tc = tcase_create("bert");
    tcase_add_loop_test(tc, test_hidden_matches_transformers, 0, 3);
    tcase_add_loop_test(tc, test_encode_batch_equals_single, 0, 3);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_op_batch);
#ifdef HAVE_TOKENIZER
    tcase_add_test(tc, test_text_embed_pipe);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* three operator threads even on a one-core machine, so a batch's
     * buckets run in parallel (bert_encode's dsp_parallel_tasks path) in
     * the batch-against-alone comparisons */
    setenv("DSPIPE_OPS_THREADS", "3", 0);
    SRunner *sr = srunner_create(encoder_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
