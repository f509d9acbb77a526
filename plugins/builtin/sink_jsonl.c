/* sink_jsonl.c - sink.jsonl: one JSON record per packet, one per line, committed atomically at the end. */
#include "builtin.h"

#include <stdio.h>

typedef struct sink_jsonl_ctx {
    char *path;
    int64_t max_values;
    dsp_outfile *out;           /* temporary until flush commits it */
} sink_jsonl_ctx;

static const dsp_param_def sink_jsonl_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .offset = offsetof(sink_jsonl_ctx, path),
      .doc = "output .jsonl file (written to a temporary file, renamed at the end)" },
    { .name = "max_values", .type = DSP_PARAM_INT, .def = "64", .min = 0, .max = 1e12,
      .offset = offsetof(sink_jsonl_ctx, max_values),
      .doc = "include a tensor's values (\"data\") when it has at most this many elements" },
    { NULL }
};

static const dsp_port_def sink_jsonl_in[] = {
    { "in", "any", "packets to record" },
    { NULL }
};

static int sink_jsonl_init(dsp_node *node)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    /* open now so an unwritable destination fails the run before any work */
    return dsp_outfile_open(node, c->path, &c->out);
}

static int sink_jsonl_process(dsp_node *node, dsp_packet **in)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    json_t *rec = builtin_packet_record(in[0], c->max_values);
    if (!rec)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: cannot encode item %lld as JSON",
                             c->path, (long long)dsp_packet_item(in[0]));
    FILE *fp = dsp_outfile_stream(c->out);
    int bad = json_dumpf(rec, fp, JSON_COMPACT) < 0 || fputc('\n', fp) == EOF;
    json_decref(rec);
    if (bad)
        return dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", c->path);
    return 0;
}

static int sink_jsonl_flush(dsp_node *node)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    return dsp_outfile_commit(node, &c->out);
}

static void sink_jsonl_fini(dsp_node *node)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    /* still open: the run failed before flush, so no partial file appears */
    dsp_outfile_discard(&c->out);
}

const dsp_op_def builtin_sink_jsonl_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "sink.jsonl",
    .doc = "write one JSON record per packet to a .jsonl file (atomic)",
    .inputs = sink_jsonl_in,
    .params = sink_jsonl_params,
    .priv_size = sizeof(sink_jsonl_ctx),
    .flags = DSP_OP_SINK | DSP_OP_GATHER,
    .init = sink_jsonl_init,
    .process = sink_jsonl_process,
    .flush = sink_jsonl_flush,
    .fini = sink_jsonl_fini,
};
