/* testops.h - the operators of the test plugin, each defined in its own file (not API). */
#ifndef DSP_TESTOPS_H
#define DSP_TESTOPS_H

#include <dspipe/plugin.h>

extern const dsp_op_def testops_gen_op;
extern const dsp_op_def testops_noop_op;
extern const dsp_op_def testops_delay_op;
extern const dsp_op_def testops_fail_op;
extern const dsp_op_def testops_split_op;
extern const dsp_op_def testops_merge_op;
extern const dsp_op_def testops_filter_op;
extern const dsp_op_def testops_count_op;

#endif /* DSP_TESTOPS_H */
