/* text_encode.c - text.encode: token ids (text.tokenize's packets) to a sentence embedding with a BERT-family model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>

#include "bert.h"
#include "encoder.h"

typedef struct encode_ctx {
    /* parameters */
    char *model;
    int pooling;
    int normalize;
    int64_t token_budget;
    int keep_tokens;
    char *output;
    /* state */
    dsp_context *dctx;          /* the device copies' context (CUDA runs only) */
    bert_model *bert;
    bert_seq *seqs;
    dsp_packet **ok;            /* the batch's packets that passed, in order */
    int nseqs;
    int64_t *tokens;            /* the batch's real tokens: ids then type ids, per sequence */
    int64_t tokens_cap;
    float *emb;
} encode_ctx;

static const char *const pooling_choices[] = { "mean", "cls", NULL };

static const dsp_param_def encode_params[] = {
    { .name = "model", .type = DSP_PARAM_PATH, .def = NULL, .flags = DSP_PARAM_MUST_EXIST,
      .offset = offsetof(encode_ctx, model),
      .doc = "Hugging Face model folder: config.json + model.safetensors (BertModel, RobertaModel)" },
    { .name = "pooling", .type = DSP_PARAM_ENUM, .def = "mean", .choices = pooling_choices,
      .offset = offsetof(encode_ctx, pooling),
      .doc = "mean of the real tokens (sentence-transformers) or the first ([CLS]) token" },
    { .name = "normalize", .type = DSP_PARAM_BOOL, .def = "true", .offset = offsetof(encode_ctx, normalize),
      .doc = "L2-normalise the embedding (cosine similarity = dot product)" },
    { .name = "token_budget", .type = DSP_PARAM_INT, .def = "512", .min = 1, .max = 1 << 20,
      .offset = offsetof(encode_ctx, token_budget),
      .doc = "most padded tokens (sequences x longest) run together; a batch is cut into buckets of similar length" },
    { .name = "keep_tokens", .type = DSP_PARAM_BOOL, .def = "false", .offset = offsetof(encode_ctx, keep_tokens),
      .doc = "keep the tokenizer's tensors (input_ids, attention_mask, ...) on the output packet" },
    { .name = "output", .type = DSP_PARAM_STRING, .def = "embedding", .offset = offsetof(encode_ctx, output),
      .doc = "name of the f32 [hidden] tensor added to the packet" },
    { NULL }
};

static const dsp_port_def encode_in[] = {
    { .name = "in", .type = "tokens", .doc = "packets with input_ids (i64/i32 [n]); attention_mask and "
      "token_type_ids used when present" },
    { NULL }
};
static const dsp_port_def encode_out[] = {
    { .name = "out", .type = "embedding", .doc = "the packet with an f32 [hidden] embedding" },
    { NULL }
};

/* On a CUDA run (dspipe --device cuda) the weights go to the node's device
 * once. The node has no context of its own for the copies, so it makes one
 * that lives as long as the model. */
static int move_to_node_device(dsp_node *node, encode_ctx *c)
{
    dsp_device want = dsp_node_device(node), dev;
    char spec[32];
    int rc;
    if (want.type == DSP_DEVICE_CPU)
        return 0;
    dsp_device_name(want, spec, sizeof spec);
    if ((rc = dsp_context_new(&c->dctx)) < 0)
        return dsp_node_fail(node, rc, "cannot create a context for %s", spec);
    if ((rc = dsp_device_open(c->dctx, spec, &dev)) < 0)
        return dsp_node_fail(node, rc, "%s", dsp_context_errmsg(c->dctx));
    if ((rc = bert_to_device(c->bert, c->dctx, dev)) < 0)
        return dsp_node_fail(node, rc, "%s: %s", c->model, bert_errmsg(c->bert));
    return 0;
}

static int encode_init(dsp_node *node)
{
    encode_ctx *c = dsp_node_priv(node);
    char *why = NULL;
    int rc = bert_open(c->model, &c->bert, &why);
    if (rc < 0) {
        rc = dsp_node_fail(node, rc, "%s", why ? why : dsp_strerror(rc));
        free(why);
        return rc;
    }
    if ((rc = move_to_node_device(node, c)) < 0)
        return rc;
    const bert_config *cfg = bert_get_config(c->bert);
    char dev[32];
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: hidden %lld, %lld layers, %lld heads, on %s", c->model,
                 (long long)cfg->hidden, (long long)cfg->layers, (long long)cfg->heads,
                 dsp_device_name(bert_get_device(c->bert), dev, sizeof dev));
    return 0;
}

static int64_t tensor_at(const dsp_tensor *t, int64_t i)
{
    const char *base = dsp_tensor_data(t);
    int64_t off = i * t->stride[0];
    return t->dtype == DSP_DTYPE_I64 ? ((const int64_t *)(const void *)base)[off]
                                     : ((const int32_t *)(const void *)base)[off];
}

static int is_index_vector(const dsp_tensor *t, int64_t n)
{
    return t && t->ndim == 1 && t->shape[0] == n && t->device.type == DSP_DEVICE_CPU &&
           (t->dtype == DSP_DTYPE_I64 || t->dtype == DSP_DTYPE_I32);
}

/* Fail the item of p alone (the rest of the batch goes on) and return code. */
static int fail_packet(dsp_node *node, const dsp_packet *p, int code, const char *why)
{
    dsp_node_fail_packet(node, p, code, "%s", why);
    return code;
}

/* The real tokens of one packet (attention_mask 1; padding dropped, so a
 * tokenizer padding to 128 costs nothing here) appended at c->tokens + *used
 * (reserved by the caller: 2 x input_ids' length). */
static int gather_tokens(dsp_node *node, encode_ctx *c, const dsp_packet *p, int64_t *used, bert_seq *s)
{
    const bert_config *cfg = bert_get_config(c->bert);
    const dsp_tensor *ids = dsp_packet_tensor(p, "input_ids");
    if (!ids || ids->ndim != 1 || !is_index_vector(ids, ids->shape[0]))
        return fail_packet(node, p, DSP_EINVAL, "no input_ids (i64 or i32 [n] on the CPU): connect text.tokenize");
    int64_t n = ids->shape[0];
    const dsp_tensor *mask = dsp_packet_tensor(p, "attention_mask");
    const dsp_tensor *types = dsp_packet_tensor(p, "token_type_ids");
    if (mask && !is_index_vector(mask, n))
        mask = NULL;
    if (types && !is_index_vector(types, n))
        types = NULL;
    int64_t *dst = c->tokens + *used, len = 0;
    for (int64_t i = 0; i < n; i++) {
        if (mask && tensor_at(mask, i) == 0)
            continue;
        int64_t id = tensor_at(ids, i), type = types ? tensor_at(types, i) : 0;
        if (id < 0 || id >= cfg->vocab || type < 0 || type >= cfg->type_vocab) {
            char why[160];
            snprintf(why, sizeof why, "token %lld: id %lld / type %lld outside the model's vocabulary (%lld) / "
                     "types (%lld): wrong tokenizer?", (long long)i, (long long)id, (long long)type,
                     (long long)cfg->vocab, (long long)cfg->type_vocab);
            return fail_packet(node, p, DSP_EINVAL, why);
        }
        dst[len] = id;
        dst[n + len] = type;
        len++;
    }
    if (len == 0)
        return fail_packet(node, p, DSP_EINVAL, "no tokens (empty input_ids or all masked)");
    if (len > cfg->max_positions - cfg->position_offset) {
        char why[200];
        snprintf(why, sizeof why, "%lld tokens, more than the model's %lld positions: truncate in text.tokenize "
                 "(truncation=longest_first max_length=%lld)", (long long)len,
                 (long long)(cfg->max_positions - cfg->position_offset),
                 (long long)(cfg->max_positions - cfg->position_offset));
        return fail_packet(node, p, DSP_ELIMIT, why);
    }
    s->ids = dst;
    s->type_ids = dst + n;
    s->len = len;
    *used += 2 * n;
    return 0;
}

static int emit_embedding(dsp_node *node, encode_ctx *c, dsp_packet *src, const float *row)
{
    int64_t H = bert_get_config(c->bert)->hidden;
    dsp_packet *p = dsp_packet_ref(src);
    dsp_tensor *t = NULL;
    int err = dsp_packet_make_writable(&p);
    if (!err && !c->keep_tokens) {
        static const char *const tok[] = { "input_ids", "attention_mask", "token_type_ids",
                                           "special_tokens_mask", "offset_mapping" };
        for (size_t k = 0; k < sizeof tok / sizeof tok[0]; k++)
            dsp_packet_remove_tensor(p, tok[k]);
    }
    if (!err && (err = dsp_tensor_new(DSP_DTYPE_F32, 1, &H, &t)) == 0) {
        memcpy(dsp_tensor_data(t), row, (size_t)H * sizeof *row);
        err = dsp_packet_set_tensor(p, c->output, t);   /* transfer full */
    }
    if (err < 0) {
        dsp_packet_unref(&p);
        fail_packet(node, src, err, "cannot build the output packet");
        return 0;               /* that item fails; the others go on */
    }
    return dsp_node_emit(node, 0, p);
}

/* Encode in[0..n) (all valid) and emit them in order. A failure of the
 * model fails each of them. */
static int encode_run(dsp_node *node, encode_ctx *c, dsp_packet **in, int n)
{
    if (n == 0)
        return 0;
    bert_encode_opts o = { .pooling = c->pooling == 1 ? BERT_POOL_CLS : BERT_POOL_MEAN,
                           .normalize = c->normalize, .token_budget = c->token_budget };
    int rc = bert_encode(c->bert, c->seqs, n, &o, c->emb);
    if (rc < 0) {
        for (int k = 0; k < n; k++)
            fail_packet(node, in[k], rc, bert_errmsg(c->bert));
        return 0;
    }
    int64_t H = bert_get_config(c->bert)->hidden;
    for (int k = 0; k < n; k++)
        if ((rc = emit_embedding(node, c, in[k], c->emb + k * H)) < 0)
            return rc;
    return 0;
}

/* Packets that cannot be encoded fail alone (dsp_node_fail_packet); the
 * others run as one call to bert_encode. */
static int encode_batch(dsp_node *node, dsp_packet **in, int n)
{
    encode_ctx *c = dsp_node_priv(node);
    int64_t H = bert_get_config(c->bert)->hidden;
    if (n > c->nseqs) {
        bert_seq *s = realloc(c->seqs, (size_t)n * sizeof *s);
        if (s)
            c->seqs = s;
        dsp_packet **ok = s ? realloc(c->ok, (size_t)n * sizeof *ok) : NULL;
        if (ok)
            c->ok = ok;
        float *e = ok ? realloc(c->emb, (size_t)n * (size_t)H * sizeof *e) : NULL;
        if (e)
            c->emb = e;
        if (!s || !ok || !e)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        c->nseqs = n;
    }
    /* room for every packet's ids and type ids, so gathered pointers stay valid */
    int64_t need = 0;
    for (int k = 0; k < n; k++) {
        const dsp_tensor *ids = dsp_packet_tensor(in[k], "input_ids");
        need += ids && ids->ndim == 1 ? 2 * ids->shape[0] : 0;
    }
    if (need > c->tokens_cap) {
        free(c->tokens);
        if (!(c->tokens = malloc((size_t)need * sizeof *c->tokens))) {
            c->tokens_cap = 0;
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        }
        c->tokens_cap = need;
    }
    int64_t used = 0;
    int nok = 0;
    for (int k = 0; k < n; k++)
        if (gather_tokens(node, c, in[k], &used, &c->seqs[nok]) == 0)
            c->ok[nok++] = in[k];
    return encode_run(node, c, c->ok, nok);
}

static int encode_process(dsp_node *node, dsp_packet **in)
{
    return encode_batch(node, in, 1);
}

static void encode_fini(dsp_node *node)
{
    encode_ctx *c = dsp_node_priv(node);
    bert_close(&c->bert);      /* before its context: the model borrows it */
    dsp_context_free(&c->dctx);
    free(c->seqs);
    free(c->ok);
    free(c->tokens);
    free(c->emb);
}

const dsp_op_def text_encode_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "text.encode",
    .doc = "sentence embeddings from token ids with a BERT-family model (BERT, MiniLM, RoBERTa): mean or CLS pooling; "
           "on the GPU with --device cuda",
    .inputs = encode_in,
    .outputs = encode_out,
    .params = encode_params,
    .priv_size = sizeof(encode_ctx),
    .flags = DSP_OP_BATCHABLE | DSP_OP_CUDA,
    .max_batch = 256,
    .init = encode_init,
    .process = encode_process,
    .process_batch = encode_batch,
    .fini = encode_fini,
};
