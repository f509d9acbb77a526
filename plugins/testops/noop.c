/* noop.c - test.noop: forwards every packet unchanged (the same packet, by reference). */
#include "testops.h"

static const dsp_port_def noop_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def noop_out[] = { { "out", "any", "the same packets" }, { NULL } };

static int noop_process(dsp_node *node, dsp_packet **in)
{
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

const dsp_op_def testops_noop_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.noop",
    .doc = "forward every packet unchanged",
    .inputs = noop_in,
    .outputs = noop_out,
    .process = noop_process,
};
