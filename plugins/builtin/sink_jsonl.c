/* sink_jsonl.c - sink.jsonl: one JSON record per packet, one per line, committed atomically at the end, resumable. */
#include "builtin.h"

#include <stdlib.h>
#include <string.h>

typedef struct sink_jsonl_ctx {
    char *path;
    int64_t max_values;
    builtin_sink_file *out;     /* committed at flush */
} sink_jsonl_ctx;

static const dsp_param_def sink_jsonl_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .offset = offsetof(sink_jsonl_ctx, path),
      .doc = "output .jsonl file (renamed into place at the end; PATH.part holds the "
             "records meanwhile when the run can --resume)" },
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
    return builtin_sink_file_open(node, c->path, &c->out);
}

static int sink_jsonl_process(dsp_node *node, dsp_packet **in)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    int64_t item = dsp_packet_item(in[0]);
    json_t *rec = builtin_packet_record(in[0], c->max_values);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    size_t len = text ? strlen(text) : 0;
    char *line = text ? realloc(text, len + 2) : NULL;
    int err;

    json_decref(rec);
    if (!line) {
        free(text);
        return dsp_node_fail(node, DSP_ENOMEM, "%s: cannot encode item %lld as JSON",
                             c->path, (long long)item);
    }
    memcpy(line + len, "\n", 2);
    err = builtin_sink_file_write(node, c->out, item, line, len + 1);
    free(line);
    return err;
}

static int sink_jsonl_flush(dsp_node *node)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    return builtin_sink_file_commit(node, c->out);
}

static void sink_jsonl_fini(dsp_node *node)
{
    sink_jsonl_ctx *c = dsp_node_priv(node);
    builtin_sink_file_close(node, &c->out);
}

const dsp_op_def builtin_sink_jsonl_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "sink.jsonl",
    .doc = "write one JSON record per packet to a .jsonl file (atomic, resumable)",
    .inputs = sink_jsonl_in,
    .params = sink_jsonl_params,
    .priv_size = sizeof(sink_jsonl_ctx),
    .flags = DSP_OP_SINK,
    .init = sink_jsonl_init,
    .process = sink_jsonl_process,
    .flush = sink_jsonl_flush,
    .fini = sink_jsonl_fini,
};
