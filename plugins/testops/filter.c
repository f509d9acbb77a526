/* filter.c - test.filter: drops items where item % modulo == remainder. */
#include "testops.h"

typedef struct filter_ctx {
    int64_t modulo;
    int64_t remainder;
} filter_ctx;

static const dsp_param_def filter_params[] = {
    { .name = "modulo", .type = DSP_PARAM_INT, .def = "2", .min = 1, .max = 1e12,
      .offset = offsetof(filter_ctx, modulo), .doc = "divisor" },
    { .name = "remainder", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1e12,
      .offset = offsetof(filter_ctx, remainder),
      .doc = "items with this remainder are dropped" },
    { NULL }
};

static const dsp_port_def filter_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def filter_out[] = { { "out", "any", "packets of kept items" }, { NULL } };

static int filter_process(dsp_node *node, dsp_packet **in)
{
    filter_ctx *c = dsp_node_priv(node);
    if (dsp_packet_item(in[0]) % c->modulo == c->remainder)
        return 0;               /* dropped: emits nothing, not an error */
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

const dsp_op_def testops_filter_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.filter",
    .doc = "drop items where item % modulo == remainder",
    .inputs = filter_in,
    .outputs = filter_out,
    .params = filter_params,
    .priv_size = sizeof(filter_ctx),
    .process = filter_process,
};
