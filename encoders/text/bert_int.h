/* bert_int.h - the encoder's private structs, shared by bert_load.c and bert.c (not API). */
#ifndef DSPIPE_ENC_BERT_INT_H
#define DSPIPE_ENC_BERT_INT_H

#include "bert.h"

typedef struct bert_layer {
    dsp_tensor *wqkv, *bqkv;            /* query, key, value fused: [3H, H], [3H] */
    dsp_tensor *wo, *bo, *ln1_w, *ln1_b;
    dsp_tensor *w1, *b1, *w2, *b2, *ln2_w, *ln2_b;
} bert_layer;

/* Activations of one bucket, sized for `cap` tokens and reused: a steady
 * stream of buckets allocates nothing once the largest has been seen. */
typedef struct bert_workspace {
    int64_t cap;
    float *x, *t1, *ctx, *zeros, *qkv, *inter;
    /* the padded batch bert_encode builds */
    int64_t *ids, *types;
    uint8_t *mask;
    int64_t ids_cap;
} bert_workspace;

struct bert_model {
    bert_config cfg;
    dsp_tensor *word, *pos, *type, *emb_ln_w, *emb_ln_b;
    bert_layer *layer;
    dsp_tensor *unit_norm_w;            /* [H] filled with 1/sqrt(H), see pool_rows */
    bert_workspace ws;
    char err[512];
};

/* Frees the activations (bert_close, and a failed resize). */
void bert_workspace_free(bert_workspace *ws);

#endif
