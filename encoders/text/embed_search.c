/* embed_search.c - embed.search: rank a corpus of embeddings (.npy from embed.write) against each query embedding. */
#define _POSIX_C_SOURCE 200809L   /* getline, open_memstream, strdup */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/ops.h>
#include <dspipe/packet.h>
#include <dspipe/tensorio.h>

#include "encoder.h"

typedef struct search_ctx {
    /* parameters */
    char *corpus;
    char *index;
    int64_t top_k;
    int print;
    char *field;
    char *text_field;
    /* state */
    dsp_tensor *rows;           /* [N, dim] f32 */
    float *norm;                /* 1/|row|, so scores are cosines even for raw embeddings */
    char **texts;               /* from the index, by row; NULL entries when absent */
    int64_t ntexts;
    dsp_tensor *scores;         /* [1, N] */
    int *best;
} search_ctx;

static const dsp_param_def search_params[] = {
    { .name = "corpus", .type = DSP_PARAM_PATH, .def = NULL, .flags = DSP_PARAM_MUST_EXIST,
      .offset = offsetof(search_ctx, corpus), .doc = "the corpus embeddings, f32 [N, dim] .npy (embed.write)" },
    { .name = "index", .type = DSP_PARAM_PATH, .def = "", .offset = offsetof(search_ctx, index),
      .doc = "embed.write's JSONL index, for the texts of the matches (optional)" },
    { .name = "top_k", .type = DSP_PARAM_INT, .def = "5", .min = 1, .max = 10000,
      .offset = offsetof(search_ctx, top_k), .doc = "matches per query" },
    { .name = "print", .type = DSP_PARAM_BOOL, .def = "true", .offset = offsetof(search_ctx, print),
      .doc = "print each query and its matches to standard output" },
    { .name = "field", .type = DSP_PARAM_STRING, .def = "embedding", .offset = offsetof(search_ctx, field),
      .doc = "the query's embedding tensor" },
    { .name = "text_field", .type = DSP_PARAM_STRING, .def = "text", .offset = offsetof(search_ctx, text_field),
      .doc = "string metadata holding the query's text (for printing)" },
    { NULL }
};

static const dsp_port_def search_in[] = {
    { .name = "in", .type = "embedding", .doc = "query packets with an f32 [dim] embedding" },
    { NULL }
};
static const dsp_port_def search_out[] = {
    { .name = "out", .type = "record", .doc = "the query with metadata matches: [{rank, row, score, text}]" },
    { NULL }
};

/* Texts by row from the index: each line is a JSON object with "row" and "text". */
static int load_index(dsp_node *node, search_ctx *c, int64_t n)
{
    FILE *fp = fopen(c->index, "r");
    if (!fp)
        return dsp_node_fail(node, DSP_ENOENT, "%s: cannot open the index", c->index);
    if (!(c->texts = calloc((size_t)n, sizeof *c->texts))) {
        fclose(fp);
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    c->ntexts = n;
    char *line = NULL;
    size_t cap = 0;
    dsp_meta *m = dsp_meta_new();
    int rc = m ? 0 : DSP_ENOMEM;
    while (rc == 0 && getline(&line, &cap, fp) > 0) {
        const dsp_meta *rec;
        const char *text;
        int64_t row;
        if (dsp_meta_set_json(m, "r", line) < 0 || !(rec = dsp_meta_get_dict(m, "r")) ||
            dsp_meta_get_int(rec, "row", &row) < 0 || row < 0 || row >= n ||
            dsp_meta_get_str(rec, "text", &text) < 0)
            continue;           /* not a row with a text: nothing to show for it */
        free(c->texts[row]);
        if (!(c->texts[row] = strdup(text)))
            rc = DSP_ENOMEM;
    }
    free(line);
    dsp_meta_free(&m);
    fclose(fp);
    return rc < 0 ? dsp_node_fail(node, rc, "%s: out of memory", c->index) : 0;
}

static int search_init(dsp_node *node)
{
    search_ctx *c = dsp_node_priv(node);
    char *why = NULL;
    int rc = dsp_npy_read(c->corpus, &c->rows, &why);
    if (rc < 0) {
        rc = dsp_node_fail(node, rc, "%s", why ? why : dsp_strerror(rc));
        free(why);
        return rc;
    }
    if (c->rows->dtype != DSP_DTYPE_F32 || c->rows->ndim != 2 || c->rows->shape[0] < 1)
        return dsp_node_fail(node, DSP_EFORMAT, "%s: expected f32 [N, dim] embeddings (embed.write's output)",
                             c->corpus);
    int64_t n = c->rows->shape[0], d = c->rows->shape[1], shape[2] = { 1, n };
    if ((rc = dsp_tensor_new(DSP_DTYPE_F32, 2, shape, &c->scores)) < 0 ||
        !(c->norm = malloc((size_t)n * sizeof *c->norm)) || !(c->best = malloc((size_t)n * sizeof *c->best)))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    dsp_tensor *rows = NULL;
    if ((rc = dsp_tensor_contiguous(c->rows, &rows)) < 0)
        return dsp_node_fail(node, rc, "out of memory");
    dsp_tensor_unref(&c->rows);
    c->rows = rows;
    const float *r = dsp_tensor_data(c->rows);
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)r[i * d + j] * r[i * d + j];
        c->norm[i] = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    }
    return c->index ? load_index(node, c, n) : 0;
}

/* The k best rows by score, best first (partial selection sort: k is small). */
static void top_k(const float *score, int64_t n, int64_t k, int *best)
{
    for (int64_t i = 0; i < n; i++)
        best[i] = (int)i;
    for (int64_t r = 0; r < k && r < n; r++) {
        int64_t arg = r;
        for (int64_t i = r + 1; i < n; i++)
            if (score[best[i]] > score[best[arg]])
                arg = i;
        int t = best[r];
        best[r] = best[arg];
        best[arg] = t;
    }
}

static void json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(fp, "\\u%04x", ch);
        else
            fputc(ch, fp);
    }
    fputc('"', fp);
}

static int search_process(dsp_node *node, dsp_packet **in)
{
    search_ctx *c = dsp_node_priv(node);
    const dsp_tensor *q = dsp_packet_tensor(in[0], c->field);
    int64_t n = c->rows->shape[0], d = c->rows->shape[1];
    if (!q || q->dtype != DSP_DTYPE_F32 || q->ndim != 1 || q->shape[0] != d)
        return dsp_node_fail(node, DSP_EINVAL, "no f32 [%lld] tensor '%s' (the corpus has %lld dims)",
                             (long long)d, c->field, (long long)d);
    int64_t qshape[2] = { 1, d };
    dsp_tensor *q2 = NULL;
    int rc = dsp_tensor_from_buffer(q->dtype, 2, qshape, NULL, q->buf, q->offset, &q2);
    if (rc == 0 && (rc = dsp_linear(q2, c->rows, NULL, &c->scores)) < 0)
        rc = dsp_node_fail(node, rc, "%s", dsp_ops_error());
    dsp_tensor_unref(&q2);
    if (rc < 0)
        return rc;
    float *score = dsp_tensor_data(c->scores);
    const float *qv = dsp_tensor_data(q);
    double qs = 0;
    for (int64_t j = 0; j < d; j++)
        qs += (double)qv[j] * qv[j];
    float qn = qs > 0 ? (float)(1.0 / sqrt(qs)) : 0.0f;
    for (int64_t i = 0; i < n; i++)
        score[i] *= qn * c->norm[i];
    int64_t k = c->top_k < n ? c->top_k : n;
    top_k(score, n, k, c->best);

    char *json = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&json, &len);
    if (!mem)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    fputc('[', mem);
    for (int64_t r = 0; r < k; r++) {
        int row = c->best[r];
        fprintf(mem, "%s{\"rank\":%lld,\"row\":%d,\"score\":%.6f", r ? "," : "", (long long)r + 1, row, score[row]);
        if (c->texts && c->texts[row]) {
            fputs(",\"text\":", mem);
            json_string(mem, c->texts[row]);
        }
        fputc('}', mem);
    }
    fputc(']', mem);
    fclose(mem);
    if (c->print) {
        const char *text = NULL;
        dsp_meta_get_str(dsp_packet_meta_const(in[0]), c->text_field, &text);
        printf("query %lld: %s\n", (long long)dsp_packet_item(in[0]), text ? text : "");
        for (int64_t r = 0; r < k; r++) {
            int row = c->best[r];
            printf("  %2lld. %.4f  [%d] %s\n", (long long)r + 1, score[row], row,
                   c->texts && c->texts[row] ? c->texts[row] : "");
        }
        fflush(stdout);
    }
    dsp_packet *p = dsp_packet_ref(in[0]);
    if ((rc = dsp_packet_make_writable(&p)) == 0) {
        dsp_packet_remove_tensor(p, c->field);
        rc = dsp_meta_set_json(dsp_packet_meta(p), "matches", json);
    }
    free(json);
    if (rc < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, rc, "cannot build the output");
    }
    return dsp_node_emit(node, 0, p);
}

static void search_fini(dsp_node *node)
{
    search_ctx *c = dsp_node_priv(node);
    dsp_tensor_unref(&c->rows);
    dsp_tensor_unref(&c->scores);
    for (int64_t i = 0; i < c->ntexts; i++)
        free(c->texts[i]);
    free(c->texts);
    free(c->norm);
    free(c->best);
}

const dsp_op_def embed_search_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "embed.search",
    .doc = "rank a corpus of embeddings (.npy) by cosine similarity to each query; top_k matches as metadata",
    .inputs = search_in,
    .outputs = search_out,
    .params = search_params,
    .priv_size = sizeof(search_ctx),
    .init = search_init,
    .process = search_process,
    .fini = search_fini,
};
