/* dup_b.c - a second plugin defining dup.op: the loader must refuse it whole. */
#include "common_op.h"

PASS_OP(op, "dup.op");
PASS_OP(other, "dup.other");
static const dsp_op_def *const ops[] = { &other, &op, NULL };
DSP_PLUGIN_DEFINE("dup_b", "2.0", "MIT", "second provider of dup.op", ops)
