/* tensor_source.c - tensor.source: one item per listed .npy/.safetensors file. */
#include "builtin.h"

typedef struct tensor_source_ctx {
    dsp_list path;              /* files to read, in order */
    char *name;                 /* tensor name for .npy files */
    int next;                   /* index of the next file */
} tensor_source_ctx;

static const dsp_param_def tensor_source_params[] = {
    { .name = "path", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_PATH,
      .offset = offsetof(tensor_source_ctx, path),
      .doc = "tensor files (.npy or .safetensors), one item each" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "x",
      .offset = offsetof(tensor_source_ctx, name),
      .doc = "tensor name for .npy files (safetensors keep their own names)" },
    { NULL }
};

static const dsp_port_def tensor_source_out[] = {
    { "out", "tensor", "the file's tensors, meta \"source\" and \"path\"" },
    { NULL }
};

static int tensor_source_init(dsp_node *node)
{
    tensor_source_ctx *c = dsp_node_priv(node);
    if (!c->name || !c->name[0])
        return dsp_node_fail(node, DSP_EINVAL, "name must not be empty");
    if (c->path.n == 0)
        dsp_node_log(node, DSP_LOG_WARNING, "path lists no files: nothing to read");
    return 0;
}

static int tensor_source_process(dsp_node *node, dsp_packet **in)
{
    tensor_source_ctx *c = dsp_node_priv(node);
    (void)in;
    if (c->next >= c->path.n || dsp_node_stopping(node))
        return DSP_EOF;
    const char *path = c->path.s[c->next++];
    dsp_node_progress(node, c->next, c->path.n);
    dsp_packet *out = dsp_node_packet_new(node);
    if (!out)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", path);
    dsp_meta *m = dsp_packet_meta(out);
    /* "source" names the input in errors.jsonl, so set it before reading */
    int err = dsp_meta_set_str(m, "source", path);
    if (!err)
        err = dsp_meta_set_str(m, "path", path);
    if (err < 0)
        err = dsp_node_fail(node, err, "%s: out of memory", path);
    else
        err = builtin_read_tensor_file(node, path, c->name, out);
    if (err < 0) {
        dsp_packet_unref(&out);
        return err;
    }
    return dsp_node_emit(node, 0, out);
}

const dsp_op_def builtin_tensor_source_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "tensor.source",
    .doc = "read listed .npy/.safetensors files, one item per file",
    .outputs = tensor_source_out,
    .params = tensor_source_params,
    .priv_size = sizeof(tensor_source_ctx),
    .flags = DSP_OP_SOURCE,
    .init = tensor_source_init,
    .process = tensor_source_process,
};
