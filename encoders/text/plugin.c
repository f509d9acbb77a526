/* plugin.c - descriptor of dsp_text_encoder.so: BERT-family sentence embeddings and what consumes them. */
#include "encoder.h"

static const dsp_op_def *const encoder_ops[] = {
    &text_encode_op,
    &embed_write_op,
    &embed_search_op,
    NULL
};

DSP_PLUGIN_DEFINE("text_encoder", "0.1.0", "MIT",
                  "BERT-family text encoders (BERT, MiniLM, RoBERTa) with mean/CLS pooling; embedding files and search",
                  encoder_ops)
