/* dup_a.c - defines operator dup.op; dup_b.c defines it too. */
#include "common_op.h"

PASS_OP(op, "dup.op");
static const dsp_op_def *const ops[] = { &op, NULL };
DSP_PLUGIN_DEFINE("dup_a", "1.0", "MIT", "first provider of dup.op", ops)
