/* text.h - the operators of the text plugin (text.tokenize, text.lines), each in its own file (not API). */
#ifndef DSP_TEXT_H
#define DSP_TEXT_H

#include <dspipe/plugin.h>

extern const dsp_op_def text_tokenize_op;
extern const dsp_op_def text_lines_op;

#endif /* DSP_TEXT_H */
