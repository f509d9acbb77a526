/* sink_null.c - sink.null: discards packets and counts them (for benchmarks). */
#include "builtin.h"

typedef struct sink_null_ctx {
    int64_t packets;
    int64_t items;              /* packets flagged last: whole items seen */
} sink_null_ctx;

static const dsp_port_def sink_null_in[] = {
    { "in", "any", "packets to discard" },
    { NULL }
};

static int sink_null_process(dsp_node *node, dsp_packet **in)
{
    sink_null_ctx *c = dsp_node_priv(node);
    c->packets++;
    c->items += dsp_packet_last(in[0]) != 0;
    return 0;
}

static int sink_null_flush(dsp_node *node)
{
    sink_null_ctx *c = dsp_node_priv(node);
    dsp_node_log(node, DSP_LOG_VERBOSE, "discarded %lld packets (%lld items)",
                 (long long)c->packets, (long long)c->items);
    return 0;
}

const dsp_op_def builtin_sink_null_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "sink.null",
    .doc = "discard packets, counting them (for benchmarks)",
    .inputs = sink_null_in,
    .priv_size = sizeof(sink_null_ctx),
    .flags = DSP_OP_SINK,
    .process = sink_null_process,
    .flush = sink_null_flush,
};
