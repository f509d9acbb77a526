/* encoder.h - the operators of dsp_text_encoder.so (text.encode, embed.write, embed.search). */
#ifndef DSPIPE_ENC_TEXT_ENCODER_H
#define DSPIPE_ENC_TEXT_ENCODER_H

#include <dspipe/plugin.h>

extern const dsp_op_def text_encode_op;
extern const dsp_op_def embed_write_op;
extern const dsp_op_def embed_search_op;

#endif
