/* tensor_read.c - tensor.read: load the .npy/.safetensors file named by each record's meta "path". */
#include "builtin.h"

typedef struct tensor_read_ctx {
    char *name;                 /* tensor name for .npy files */
} tensor_read_ctx;

static const dsp_param_def tensor_read_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "x",
      .offset = offsetof(tensor_read_ctx, name),
      .doc = "tensor name for .npy files (safetensors keep their own names)" },
    { NULL }
};

static const dsp_port_def tensor_read_in[] = {
    { "in", "record", "records with meta \"path\" (from files.list)" },
    { NULL }
};
static const dsp_port_def tensor_read_out[] = {
    { "out", "tensor", "the input record plus the file's tensors" },
    { NULL }
};

static int tensor_read_init(dsp_node *node)
{
    tensor_read_ctx *c = dsp_node_priv(node);
    if (!c->name || !c->name[0])
        return dsp_node_fail(node, DSP_EINVAL, "name must not be empty");
    return 0;
}

static int tensor_read_process(dsp_node *node, dsp_packet **in)
{
    tensor_read_ctx *c = dsp_node_priv(node);
    const char *path = NULL;
    if (dsp_meta_get_str(dsp_packet_meta_const(in[0]), "path", &path) < 0)
        return dsp_node_fail(node, DSP_EINVAL,
                             "item %lld has no string meta \"path\"; connect "
                             "tensor.read to files.list or another op that sets it",
                             (long long)dsp_packet_item(in[0]));
    /* derive: keeps the record's position and metadata, and is writable */
    dsp_packet *out = NULL;
    int err = dsp_packet_derive(in[0], &out);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: out of memory", path);
    /* the derived copy's metadata is ours; path stays valid through it */
    dsp_meta_get_str(dsp_packet_meta_const(out), "path", &path);
    if ((err = builtin_read_tensor_file(node, path, c->name, out)) < 0) {
        dsp_packet_unref(&out);
        return err;
    }
    return dsp_node_emit(node, 0, out);
}

const dsp_op_def builtin_tensor_read_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "tensor.read",
    .doc = "read the .npy or .safetensors file named by meta \"path\" (format by magic bytes)",
    .inputs = tensor_read_in,
    .outputs = tensor_read_out,
    .params = tensor_read_params,
    .priv_size = sizeof(tensor_read_ctx),
    .init = tensor_read_init,
    .process = tensor_read_process,
};
