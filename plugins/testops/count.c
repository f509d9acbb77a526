/* count.c - test.count: a sink that counts packets and checks that items arrive in order. */
#include "testops.h"

typedef struct count_ctx {
    int64_t expect;
    int64_t packets;
    int64_t last_item;
} count_ctx;

static const dsp_param_def count_params[] = {
    { .name = "expect", .type = DSP_PARAM_INT, .def = "-1", .min = -1, .max = 1e15,
      .offset = offsetof(count_ctx, expect),
      .doc = "packets expected; flush fails on another count (-1 = don't check)" },
    { NULL }
};

static const dsp_port_def count_in[] = { { "in", "any", "packets to count" }, { NULL } };

static int count_init(dsp_node *node)
{
    count_ctx *c = dsp_node_priv(node);
    c->last_item = -1;
    return 0;
}

static int count_process(dsp_node *node, dsp_packet **in)
{
    count_ctx *c = dsp_node_priv(node);
    int64_t item = dsp_packet_item(in[0]);
    if (item < c->last_item)
        return dsp_node_fail(node, DSP_EINVAL,
                             "items out of order: item %lld arrived after item %lld",
                             (long long)item, (long long)c->last_item);
    c->last_item = item;
    c->packets++;
    return 0;
}

static int count_flush(dsp_node *node)
{
    count_ctx *c = dsp_node_priv(node);
    dsp_node_log(node, DSP_LOG_INFO, "%lld packets", (long long)c->packets);
    if (c->expect >= 0 && c->packets != c->expect)
        return dsp_node_fail(node, DSP_EINVAL, "counted %lld packets, expected %lld",
                             (long long)c->packets, (long long)c->expect);
    return 0;
}

const dsp_op_def testops_count_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.count",
    .doc = "count packets, check items arrive in order, optionally the total",
    .inputs = count_in,
    .params = count_params,
    .priv_size = sizeof(count_ctx),
    .flags = DSP_OP_SINK,
    .init = count_init,
    .process = count_process,
    .flush = count_flush,
};
