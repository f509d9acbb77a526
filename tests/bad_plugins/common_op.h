/* common_op.h - a minimal valid operator the deliberately broken test plugins reuse. */
#include <dspipe/plugin.h>

static int pass_process(dsp_node *node, dsp_packet **in)
{
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

static const dsp_port_def any_in[] = { { "in", "any", "input" }, { NULL } };
static const dsp_port_def any_out[] = { { "out", "any", "output" }, { NULL } };

#define PASS_OP(var, opname)                                                   \
    static const dsp_op_def var = {                                            \
        .struct_size = sizeof(dsp_op_def), .name = opname, .doc = "pass",      \
        .inputs = any_in, .outputs = any_out, .process = pass_process,         \
    }
