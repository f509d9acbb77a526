/* bad_param.c - a parameter whose default is out of its own range. */
#include <stddef.h>
#include "common_op.h"

typedef struct { int64_t level; } bad_ctx;
static const dsp_param_def params[] = {
    { .name = "level", .type = DSP_PARAM_INT, .offset = offsetof(bad_ctx, level), .def = "500",
      .min = 0, .max = 100, .doc = "a default outside [0, 100]" },
    { NULL }
};
static const dsp_op_def op = {
    .struct_size = sizeof(dsp_op_def), .name = "bad.param", .doc = "bad default",
    .inputs = any_in, .outputs = any_out, .params = params, .priv_size = sizeof(bad_ctx),
    .process = pass_process,
};
static const dsp_op_def *const ops[] = { &op, NULL };
DSP_PLUGIN_DEFINE("bad_param", "1.0", "MIT", "broken parameter table", ops)
