/* bert.h - a BERT-family text encoder (BERT, MiniLM, RoBERTa-style positions) on core/ops.
 *
 * The library behind the text.encode operator, usable on its own (the check
 * tests call it directly):
 *
 *     bert_model *m; char *why = NULL;
 *     if (bert_open("all-MiniLM-L6-v2", &m, &why) < 0) { fprintf(stderr, "%s\n", why); ... }
 *     bert_seq s = { .ids = ids, .len = n };          // type_ids NULL: all zero
 *     bert_encode_opts o = bert_default_encode_opts(); // mean pooling, L2, 512 tokens a bucket
 *     float emb[384];
 *     if (bert_encode(m, &s, 1, &o, emb) < 0) fprintf(stderr, "%s\n", bert_errmsg(m));
 *     bert_close(&m);
 *
 * Every GEMM runs on a whole bucket [batch * len, hidden]; activations live in
 * a workspace that grows to the largest bucket seen and is then reused, so a
 * steady stream allocates nothing per token or per call beyond tensor headers.
 *
 * On a GPU: bert_to_device(m, ctx, gpu) after bert_open copies the weights
 * (the fused query/key/value ones included) to the device once; from then on
 * the workspace lives there too, every operator runs there, each bucket's
 * ids and masks are uploaded and only the pooled rows come back.
 *
 * Threading: the weights are read-only, but the workspace is not: one
 * bert_model serves one thread at a time (each text.encode node opens its own).
 * Errors: functions return 0 or a negative DSP_E* code; bert_open's message is
 * malloc'd into *errmsg (the caller frees it), the others' is in bert_errmsg().
 */
#ifndef DSPIPE_ENC_BERT_H
#define DSPIPE_ENC_BERT_H

#include <stdint.h>
#include <dspipe/ops.h>

typedef struct bert_config {
    int64_t hidden, layers, heads, intermediate;
    int64_t vocab, max_positions, type_vocab;
    int64_t position_offset;    /* RoBERTa: pad_token_id + 1; BERT: 0 */
    double eps;                 /* layer_norm_eps */
    dsp_gelu_kind act;
} bert_config;

typedef struct bert_model bert_model;
struct dsp_context;

/* Open a Hugging Face model folder (config.json + model.safetensors) of a
 * BertModel or RobertaModel, with or without the "bert." / "roberta." prefix
 * of task heads (ignored). Refused with a message: other activations than
 * gelu / gelu_new, relative position embeddings, missing tensors or shapes
 * that disagree with config.json. *out is NULL on failure. */
int bert_open(const char *dir, bert_model **out, char **errmsg);
void bert_close(bert_model **m);
const bert_config *bert_get_config(const bert_model *m);
/* Move the weights to dev (a CUDA device from dsp_device_open, or the CPU
 * to bring them back) and run every later call there. ctx is borrowed for
 * the copies, now and whenever the workspace grows: it must outlive m, or
 * the next bert_to_device to the CPU (which forgets it). Moving to the
 * device the model is on is a no-op. Returns 0, or DSP_EDEVICE (no usable
 * device), DSP_ENOMEM, DSP_EINVAL (ctx NULL for a device) with the reason in
 * bert_errmsg(); on failure the model stays where it was, unchanged. */
int bert_to_device(bert_model *m, struct dsp_context *ctx, dsp_device dev);
/* Where the model computes (the CPU after bert_open). */
dsp_device bert_get_device(const bert_model *m);

/* The last failure's message ("" if none); valid until the next call. */
const char *bert_errmsg(const bert_model *m);

/* A padded batch: ids, type_ids (NULL: zeros) and mask (NULL: all ones)
 * are [batch, len] row-major. Padding positions (mask 0) are never attended
 * to; their own outputs are computed but meaningless. */
typedef struct bert_batch {
    const int64_t *ids, *type_ids;
    const uint8_t *mask;
    int64_t batch, len;
} bert_batch;

/* The encoder's last hidden state [batch, len, hidden], f32, a new CPU
 * tensor the caller owns (transfer full; copied back when the model is on a
 * device). Positions are offset + 0..len-1, i.e.
 * right padding (what the tokenizer does by default). */
int bert_forward(bert_model *m, const bert_batch *b, dsp_tensor **hidden);

typedef enum bert_pooling {
    BERT_POOL_MEAN = 0,         /* average of the tokens with mask 1 (sentence-transformers) */
    BERT_POOL_CLS               /* the first token's state */
} bert_pooling;

/* One sequence for bert_encode: len real tokens (no padding). */
typedef struct bert_seq {
    const int64_t *ids;
    const int64_t *type_ids;    /* NULL: all zero */
    int64_t len;
} bert_seq;

typedef struct bert_encode_opts {
    bert_pooling pooling;
    int normalize;              /* L2-normalise each embedding */
    int64_t token_budget;       /* most padded tokens (batch x len) per bucket */
} bert_encode_opts;

bert_encode_opts bert_default_encode_opts(void);

/* Embed n sequences into out [n, hidden] (row i for seqs[i]). Sequences are
 * sorted by length and cut into buckets of at most token_budget padded
 * tokens (a longer sequence goes alone); each bucket is padded to its
 * longest and run through bert_forward with a key mask, so the result for a
 * sequence does not depend on its neighbours (up to float rounding). */
int bert_encode(bert_model *m, const bert_seq *seqs, int n, const bert_encode_opts *o,
                float *out);

/* Pool one padded batch's hidden state [batch, len, hidden] into out
 * [batch, hidden] (exposed for the parity tests). It runs where hidden is:
 * on the CPU, or on the model's device. */
int bert_pool(bert_model *m, const dsp_tensor *hidden, const uint8_t *mask,
              const bert_encode_opts *o, float *out);

#endif /* DSPIPE_ENC_BERT_H */
