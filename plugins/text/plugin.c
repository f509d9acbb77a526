/* plugin.c - descriptor of dsp_text.so: a Hugging Face compatible tokenizer and a line reader. */
#include "text.h"

static const dsp_op_def *const text_ops[] = {
    &text_tokenize_op,
    &text_lines_op,
    NULL
};

DSP_PLUGIN_DEFINE("text", "0.1.0", "MIT",
                  "Hugging Face tokenizer.json / vocab.txt tokenizers (WordPiece, BPE, Unigram) and text line sources",
                  text_ops)
