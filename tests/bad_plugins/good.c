/* good.c - a correct plugin, loaded next to the broken ones. */
#include "common_op.h"

PASS_OP(op, "good.pass");
static const dsp_op_def *const ops[] = { &op, NULL };
DSP_PLUGIN_DEFINE("good", "1.2.3", "MIT", "works", ops)
