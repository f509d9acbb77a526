/* plugin.c - descriptor of dsp_testops.so: operators for testing pipelines and the scheduler. */
#include "testops.h"

static const dsp_op_def *const testops_ops[] = {
    &testops_gen_op,
    &testops_noop_op,
    &testops_delay_op,
    &testops_fail_op,
    &testops_split_op,
    &testops_merge_op,
    &testops_filter_op,
    &testops_count_op,
    NULL
};

DSP_PLUGIN_DEFINE("testops", "0.1.0", "MIT",
                  "operators for testing pipelines: gen, noop, delay, fail, split, merge, filter, count",
                  testops_ops)
