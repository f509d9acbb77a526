/* text_tokenize.c - text.tokenize: a text (string metadata or u8 tensor) to input_ids, attention_mask, token_type_ids, offsets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "tok.h"

enum { TRUNC_FILE, TRUNC_NONE, TRUNC_LONGEST_FIRST, TRUNC_ONLY_FIRST, TRUNC_ONLY_SECOND };
enum { PAD_FILE, PAD_NONE, PAD_LONGEST, PAD_MAX_LENGTH };

typedef struct tokenize_ctx {
    /* parameters */
    char *tokenizer;
    char *field;
    char *pair_field;
    int64_t max_length;
    int truncation;
    int truncation_side;
    int padding;
    int padding_side;
    int64_t pad_to_multiple_of;
    int add_special_tokens;
    int offsets;
    int invalid_utf8;
    int lowercase;
    /* state */
    tok_tokenizer *tok;
    tok_options opt;
    tok_encoding *enc;
    int nenc;
    const char **texts, **pairs;
    size_t *tlen, *plen;
    dsp_packet **ok;            /* the batch's packets still in the running, in order */
} tokenize_ctx;

static const char *const trunc_choices[] = { "file", "none", "longest_first", "only_first", "only_second", NULL };
static const char *const pad_choices[] = { "file", "none", "longest", "max_length", NULL };
static const char *const side_choices[] = { "right", "left", NULL };
static const char *const offsets_choices[] = { "chars", "bytes", NULL };
static const char *const utf8_choices[] = { "replace", "error", NULL };

static const dsp_param_def tokenize_params[] = {
    { .name = "tokenizer", .type = DSP_PARAM_PATH, .def = NULL, .flags = DSP_PARAM_MUST_EXIST,
      .offset = offsetof(tokenize_ctx, tokenizer),
      .doc = "tokenizer.json, a BERT vocab.txt, or a model folder holding one" },
    { .name = "field", .type = DSP_PARAM_STRING, .def = "text", .offset = offsetof(tokenize_ctx, field),
      .doc = "the text: string metadata of that name, or a u8 tensor of that name (raw bytes)" },
    { .name = "pair_field", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(tokenize_ctx, pair_field),
      .doc = "the second text of a sentence pair (same rules; empty: single sequences)" },
    { .name = "max_length", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1000000,
      .offset = offsetof(tokenize_ctx, max_length),
      .doc = "length for truncation and padding=max_length, special tokens included" },
    { .name = "truncation", .type = DSP_PARAM_ENUM, .def = "file", .choices = trunc_choices,
      .offset = offsetof(tokenize_ctx, truncation),
      .doc = "file: as tokenizer.json says; none; or a strategy cutting to max_length" },
    { .name = "truncation_side", .type = DSP_PARAM_ENUM, .def = "right", .choices = side_choices,
      .offset = offsetof(tokenize_ctx, truncation_side), .doc = "which end loses tokens" },
    { .name = "padding", .type = DSP_PARAM_ENUM, .def = "file", .choices = pad_choices,
      .offset = offsetof(tokenize_ctx, padding),
      .doc = "file: as tokenizer.json says; none; longest (of the batch); max_length" },
    { .name = "padding_side", .type = DSP_PARAM_ENUM, .def = "right", .choices = side_choices,
      .offset = offsetof(tokenize_ctx, padding_side), .doc = "where padding goes" },
    { .name = "pad_to_multiple_of", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 65536,
      .offset = offsetof(tokenize_ctx, pad_to_multiple_of), .doc = "round padded lengths up (0: no)" },
    { .name = "add_special_tokens", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(tokenize_ctx, add_special_tokens), .doc = "add [CLS]/[SEP], <s>, BOS... as the file says" },
    { .name = "offsets", .type = DSP_PARAM_ENUM, .def = "chars", .choices = offsets_choices,
      .offset = offsetof(tokenize_ctx, offsets),
      .doc = "offset_mapping in Unicode characters (as Python) or in bytes of the UTF-8 text" },
    { .name = "invalid_utf8", .type = DSP_PARAM_ENUM, .def = "replace", .choices = utf8_choices,
      .offset = offsetof(tokenize_ctx, invalid_utf8),
      .doc = "bytes that are not UTF-8 (u8 tensors): U+FFFD as Python's errors=replace, or fail the item" },
    { .name = "lowercase", .type = DSP_PARAM_BOOL, .def = "true", .offset = offsetof(tokenize_ctx, lowercase),
      .doc = "vocab.txt only: uncased BERT (lower case, strip accents)" },
    { NULL }
};

static const dsp_port_def tokenize_in[] = {
    { .name = "in", .type = "any", .doc = "packets carrying a text" },
    { NULL }
};
static const dsp_port_def tokenize_out[] = {
    { .name = "out", .type = "tokens", .doc = "the packet with input_ids, attention_mask, token_type_ids, "
      "special_tokens_mask (i64 [n]) and offset_mapping (i64 [n, 2])" },
    { NULL }
};

static int tokenize_init(dsp_node *node)
{
    tokenize_ctx *c = dsp_node_priv(node);
    char err[512];
    int rc = tok_load(c->tokenizer, c->lowercase ? 0 : TOK_LOAD_CASED, &c->tok, err, sizeof err);
    if (rc < 0)
        return dsp_node_fail(node, rc, "%s", err);
    tok_options *o = &c->opt;
    *o = tok_default_options();
    o->add_special_tokens = c->add_special_tokens;
    o->offsets = c->offsets == 1 ? TOK_OFFSETS_BYTES : TOK_OFFSETS_CHARS;
    o->invalid_utf8 = c->invalid_utf8 == 1 ? TOK_UTF8_ERROR : TOK_UTF8_REPLACE;
    if (c->truncation != TRUNC_FILE) {
        o->truncation = c->truncation != TRUNC_NONE;
        if (o->truncation && c->max_length <= 0)
            return dsp_node_fail(node, DSP_EINVAL, "truncation=%s needs max_length > 0",
                                 trunc_choices[c->truncation]);
        o->max_length = c->max_length;
        o->trunc_strategy = c->truncation == TRUNC_ONLY_FIRST ? TOK_TRUNC_ONLY_FIRST
                          : c->truncation == TRUNC_ONLY_SECOND ? TOK_TRUNC_ONLY_SECOND : TOK_TRUNC_LONGEST_FIRST;
        o->trunc_direction = c->truncation_side ? TOK_LEFT : TOK_RIGHT;
    }
    if (c->padding != PAD_FILE) {
        o->padding = c->padding == PAD_NONE ? TOK_PAD_NONE : c->padding == PAD_LONGEST ? TOK_PAD_LONGEST : TOK_PAD_FIXED;
        if (c->padding == PAD_MAX_LENGTH && c->max_length <= 0)
            return dsp_node_fail(node, DSP_EINVAL, "padding=max_length needs max_length > 0");
        o->pad_length = c->max_length;
        o->pad_multiple_of = c->pad_to_multiple_of;
        o->pad_direction = c->padding_side ? TOK_LEFT : TOK_RIGHT;
    }
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %s", c->tokenizer, tok_describe(c->tok));
    return 0;
}

/* The text of a packet: string metadata, or a u8 tensor of raw bytes. */
static int get_text(dsp_node *node, const dsp_packet *p, const char *field, const char **s, size_t *len)
{
    const dsp_meta *m = dsp_packet_meta_const(p);
    if (dsp_meta_get_str(m, field, s) == 0) {
        *len = strlen(*s);
        return 0;
    }
    const dsp_tensor *t = dsp_packet_tensor(p, field);
    if (t && t->dtype == DSP_DTYPE_U8 && t->ndim == 1 && dsp_tensor_is_contiguous(t)) {
        *s = dsp_tensor_data(t);
        *len = (size_t)t->shape[0];
        return 0;
    }
    return dsp_node_fail_packet(node, p, DSP_ENOENT, "no text: the packet has neither a string metadata '%s' "
                                "nor a 1-D u8 tensor '%s' (set field=...)", field, field) < 0 ? DSP_ESTATE : DSP_ENOENT;
}

static int add_i64(dsp_packet *p, const char *name, int ndim, const int64_t *shape, dsp_tensor **out)
{
    int err = dsp_tensor_new(DSP_DTYPE_I64, ndim, shape, out);
    if (err)
        return err;
    dsp_tensor_ref(*out);
    return dsp_packet_set_tensor(p, name, *out);   /* the packet takes one reference */
}

/* Emit in[k] with the tensors of encoding e. */
static int emit_encoding(dsp_node *node, dsp_packet *src, const tok_encoding *e)
{
    dsp_packet *p = dsp_packet_ref(src);
    int err = dsp_packet_make_writable(&p);
    int64_t n = (int64_t)e->n, shape2[2] = { n, 2 };
    static const char *const names[] = { "input_ids", "attention_mask", "token_type_ids", "special_tokens_mask" };
    for (int k = 0; k < 4 && !err; k++) {
        dsp_tensor *t = NULL;
        if ((err = add_i64(p, names[k], 1, &n, &t)) < 0) {
            dsp_tensor_unref(&t);
            break;
        }
        int64_t *v = dsp_tensor_data(t);
        for (size_t i = 0; i < e->n; i++)
            v[i] = k == 0 ? e->ids[i] : k == 1 ? e->attention_mask[i] : k == 2 ? e->type_ids[i] : e->special_mask[i];
        dsp_tensor_unref(&t);
    }
    if (!err) {
        dsp_tensor *t = NULL;
        if ((err = add_i64(p, "offset_mapping", 2, shape2, &t)) == 0) {
            int64_t *v = dsp_tensor_data(t);
            for (size_t i = 0; i < 2 * e->n; i++)
                v[i] = e->offsets[i];
        }
        dsp_tensor_unref(&t);
    }
    if (!err)
        err = dsp_meta_set_int(dsp_packet_meta(p), "num_tokens", n);
    if (err < 0) {
        dsp_packet_unref(&p);
        dsp_node_fail_packet(node, src, err, "cannot build the output: %s", dsp_strerror(err));
        return 0;               /* that item fails; the others go on */
    }
    return dsp_node_emit(node, 0, p);
}

static int tokenize_batch(dsp_node *node, dsp_packet **in, int n)
{
    tokenize_ctx *c = dsp_node_priv(node);
    if (n > c->nenc) {
        tok_encoding *e = realloc(c->enc, (size_t)n * sizeof *e);
        if (!e)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        memset(e + c->nenc, 0, (size_t)(n - c->nenc) * sizeof *e);
        c->enc = e;
        c->nenc = n;
        free(c->texts);
        free(c->pairs);
        free(c->tlen);
        free(c->plen);
        c->texts = malloc((size_t)n * sizeof *c->texts);
        c->pairs = malloc((size_t)n * sizeof *c->pairs);
        c->tlen = malloc((size_t)n * sizeof *c->tlen);
        c->plen = malloc((size_t)n * sizeof *c->plen);
        free(c->ok);
        c->ok = malloc((size_t)n * sizeof *c->ok);
        if (!c->texts || !c->pairs || !c->tlen || !c->plen || !c->ok)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    int pair = c->pair_field[0] != '\0', nok = 0;
    for (int k = 0; k < n; k++) {
        int err = get_text(node, in[k], c->field, &c->texts[nok], &c->tlen[nok]);
        if (!err && pair)
            err = get_text(node, in[k], c->pair_field, &c->pairs[nok], &c->plen[nok]);
        if (err == DSP_ESTATE)
            return err;
        if (!err)
            c->ok[nok++] = in[k];   /* else its item failed alone */
    }
    if (nok == 0)
        return 0;
    int err = tok_encode_batch(c->tok, (size_t)nok, c->texts, c->tlen, pair ? c->pairs : NULL,
                               pair ? c->plen : NULL, &c->opt, c->enc);
    if (err) {
        /* find the texts that fail alone, fail their items, encode the rest
         * again (padded among themselves); if that still fails, they all do */
        int kept = 0;
        for (int k = 0; k < nok; k++) {
            int code = tok_encode(c->tok, c->texts[k], c->tlen[k], pair ? c->pairs[k] : NULL,
                                  pair ? c->plen[k] : 0, &c->opt, &c->enc[k]);
            if (code < 0) {
                dsp_node_fail_packet(node, c->ok[k], code, "%s", tok_errmsg(c->tok));
                continue;
            }
            c->ok[kept] = c->ok[k];
            c->texts[kept] = c->texts[k];
            c->tlen[kept] = c->tlen[k];
            if (pair) {
                c->pairs[kept] = c->pairs[k];
                c->plen[kept] = c->plen[k];
            }
            kept++;
        }
        nok = kept;
        if ((err = tok_encode_batch(c->tok, (size_t)nok, c->texts, c->tlen, pair ? c->pairs : NULL,
                                    pair ? c->plen : NULL, &c->opt, c->enc)) < 0) {
            for (int k = 0; k < nok; k++)
                dsp_node_fail_packet(node, c->ok[k], err, "%s", tok_errmsg(c->tok));
            return 0;
        }
    }
    for (int k = 0; k < nok; k++)
        if ((err = emit_encoding(node, c->ok[k], &c->enc[k])) < 0)
            return err;
    return 0;
}

static int tokenize_process(dsp_node *node, dsp_packet **in)
{
    return tokenize_batch(node, in, 1);
}

static void tokenize_fini(dsp_node *node)
{
    tokenize_ctx *c = dsp_node_priv(node);
    for (int k = 0; k < c->nenc; k++)
        tok_encoding_clear(&c->enc[k]);
    free(c->enc);
    free(c->texts);
    free(c->pairs);
    free(c->tlen);
    free(c->plen);
    free(c->ok);
    tok_free(&c->tok);
}

const dsp_op_def text_tokenize_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "text.tokenize",
    .doc = "tokenize a text (or a pair) with a Hugging Face tokenizer.json or vocab.txt, as the tokenizers library does",
    .inputs = tokenize_in,
    .outputs = tokenize_out,
    .params = tokenize_params,
    .priv_size = sizeof(tokenize_ctx),
    .flags = DSP_OP_BATCHABLE,
    .max_batch = 256,
    .init = tokenize_init,
    .process = tokenize_process,
    .process_batch = tokenize_batch,
    .fini = tokenize_fini,
};
