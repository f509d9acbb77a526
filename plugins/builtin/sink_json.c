/* sink_json.c - sink.json: all packets as one JSON array of records, written atomically at the end. */
#include "builtin.h"

#include <stdio.h>

typedef struct sink_json_ctx {
    char *path;
    int64_t indent;
    int64_t max_values;
    json_t *records;            /* the array, written at flush */
} sink_json_ctx;

static const dsp_param_def sink_json_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .offset = offsetof(sink_json_ctx, path),
      .doc = "output .json file (written to a temporary file, renamed at the end)" },
    { .name = "indent", .type = DSP_PARAM_INT, .def = "2", .min = 0, .max = 31,
      .offset = offsetof(sink_json_ctx, indent),
      .doc = "spaces per indentation level; 0 writes compact JSON" },
    { .name = "max_values", .type = DSP_PARAM_INT, .def = "64", .min = 0, .max = 1e12,
      .offset = offsetof(sink_json_ctx, max_values),
      .doc = "include a tensor's values (\"data\") when it has at most this many elements" },
    { NULL }
};

static const dsp_port_def sink_json_in[] = {
    { "in", "any", "packets to record" },
    { NULL }
};

static int sink_json_init(dsp_node *node)
{
    sink_json_ctx *c = dsp_node_priv(node);
    if (!(c->records = json_array()))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    return 0;
}

static int sink_json_process(dsp_node *node, dsp_packet **in)
{
    sink_json_ctx *c = dsp_node_priv(node);
    json_t *rec = builtin_packet_record(in[0], c->max_values);
    if (!rec || json_array_append_new(c->records, rec) < 0)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: cannot encode item %lld as JSON",
                             c->path, (long long)dsp_packet_item(in[0]));
    return 0;
}

static int sink_json_flush(dsp_node *node)
{
    sink_json_ctx *c = dsp_node_priv(node);
    dsp_outfile *out = NULL;
    int err = dsp_outfile_open(node, c->path, &out);
    if (err < 0)
        return err;
    size_t flags = c->indent > 0 ? JSON_INDENT((size_t)c->indent) : JSON_COMPACT;
    FILE *fp = dsp_outfile_stream(out);
    if (json_dumpf(c->records, fp, flags) < 0 || fputc('\n', fp) == EOF) {
        dsp_outfile_discard(&out);
        return dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", c->path);
    }
    return dsp_outfile_commit(node, &out);
}

static void sink_json_fini(dsp_node *node)
{
    sink_json_ctx *c = dsp_node_priv(node);
    json_decref(c->records);
    c->records = NULL;
}

const dsp_op_def builtin_sink_json_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "sink.json",
    .doc = "write all packets as one JSON array of records (atomic, at the end)",
    .inputs = sink_json_in,
    .params = sink_json_params,
    .priv_size = sizeof(sink_json_ctx),
    .flags = DSP_OP_SINK | DSP_OP_GATHER,
    .init = sink_json_init,
    .process = sink_json_process,
    .flush = sink_json_flush,
    .fini = sink_json_fini,
};
