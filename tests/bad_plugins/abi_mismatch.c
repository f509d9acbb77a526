/* abi_mismatch.c - a plugin that claims a future ABI version: the loader must refuse it. */
#include "common_op.h"

PASS_OP(op, "bad.abi");
static const dsp_op_def *const ops[] = { &op, NULL };

DSP_API const dsp_plugin_desc *dsp_plugin_entry(void);
const dsp_plugin_desc *dsp_plugin_entry(void)
{
    static const dsp_plugin_desc d = { DSP_PLUGIN_ABI_VERSION + 41, sizeof(dsp_plugin_desc),
                                       "future", "9.9.9", "MIT", "from the future", ops, { 0 } };
    return &d;
}
