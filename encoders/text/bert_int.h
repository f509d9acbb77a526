/* bert_int.h - the encoder's private structs, shared by bert_load.c and bert.c (not API). */
#ifndef DSPIPE_ENC_BERT_INT_H
#define DSPIPE_ENC_BERT_INT_H

#include "bert.h"

typedef struct bert_layer {
    dsp_tensor *wqkv, *bqkv;            /* query, key, value fused: [3H, H], [3H] */
    dsp_tensor *wo, *bo, *ln1_w, *ln1_b;
    dsp_tensor *w1, *b1, *w2, *b2, *ln2_w, *ln2_b;
} bert_layer;

/* The activation buffers of one bucket, named by what they hold. */
typedef enum bert_ws_slot {
    BERT_WS_X,                          /* the residual stream [T, H] */
    BERT_WS_T1, BERT_WS_CTX,            /* [T, H] scratch */
    BERT_WS_ZEROS,                      /* [T, H] of zeros, never written */
    BERT_WS_QKV,                        /* [T, 3H] */
    BERT_WS_INTER,                      /* [T, intermediate] */
    BERT_WS_SLOTS
} bert_ws_slot;

/* Activations of one bucket, sized for `cap` tokens and reused: a steady
 * stream of buckets allocates nothing once the largest has been seen.
 * On the CPU each slot is plain memory (host); on a device each is one
 * device tensor (dev) that holds the only reference to its buffer, so the
 * operators accept it as a preallocated output. */
typedef struct bert_workspace {
    int64_t cap;
    float *host[BERT_WS_SLOTS];
    dsp_tensor *dev[BERT_WS_SLOTS];
    /* the padded batch bert_encode builds (host memory on every device) */
    int64_t *ids, *types;
    uint8_t *mask;
    int64_t ids_cap;
} bert_workspace;

struct bert_model {
    bert_config cfg;
    dsp_tensor *word, *pos, *type, *emb_ln_w, *emb_ln_b;
    bert_layer *layer;
    dsp_tensor *unit_norm_w;            /* [H] filled with 1/sqrt(H), see pool_rows; always on the CPU */
    dsp_tensor *unit_norm_dev;          /* the same on `dev` when that is not the CPU */
    dsp_device dev;                     /* where the weights and the workspace live */
    struct dsp_context *ctx;            /* borrowed from bert_to_device: host/device copies */
    bert_workspace ws;
    /* Threads 1.. of a bert_encode whose buckets run in parallel: shallow
     * copies of this model (the same weights) with their own workspace and
     * error message; refreshed from the model at every such call. */
    struct bert_model *sub;
    int nsub;
    char err[512];
};

/* Records the message for bert_errmsg() and returns code. */
int bert_set_err(bert_model *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Frees the activations (bert_close, a failed resize, a move to another device). */
void bert_workspace_free(bert_workspace *ws);

#endif
