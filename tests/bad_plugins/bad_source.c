/* bad_source.c - flagged as a source but declares an input port. */
#include "common_op.h"

static const dsp_op_def op = {
    .struct_size = sizeof(dsp_op_def), .name = "bad.source", .doc = "source with input",
    .inputs = any_in, .outputs = any_out, .flags = DSP_OP_SOURCE, .process = pass_process,
};
static const dsp_op_def *const ops[] = { &op, NULL };
DSP_PLUGIN_DEFINE("bad_source", "1.0", "MIT", "inconsistent flags", ops)
