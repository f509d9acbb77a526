/* meta_set.c - meta.set: merge a fixed JSON object into the meta of every packet. */
#include "builtin.h"

#include <stdlib.h>

typedef struct meta_set_ctx {
    char *json;
    json_t *obj;                /* parsed json, an object */
} meta_set_ctx;

static const dsp_param_def meta_set_params[] = {
    { .name = "json", .type = DSP_PARAM_STRING, .offset = offsetof(meta_set_ctx, json),
      .doc = "a JSON object whose keys are set (replacing) in each packet's meta" },
    { NULL }
};

static const dsp_port_def meta_set_in[] = {
    { "in", "any", "any packets" },
    { NULL }
};
static const dsp_port_def meta_set_out[] = {
    { "out", "any", "the same packets with the keys set" },
    { NULL }
};

static int meta_set_init(dsp_node *node)
{
    meta_set_ctx *c = dsp_node_priv(node);
    json_error_t je;
    c->obj = json_loads(c->json, JSON_REJECT_DUPLICATES, &je);
    if (!c->obj)
        return dsp_node_fail(node, DSP_EINVAL, "json: not JSON at column %d: %s", je.column,
                             je.text);
    if (!json_is_object(c->obj))
        return dsp_node_fail(node, DSP_EINVAL, "json: want an object {\"key\": value, ...}");
    return 0;
}

static int meta_set_process(dsp_node *node, dsp_packet **in)
{
    meta_set_ctx *c = dsp_node_priv(node);
    dsp_packet *p = dsp_packet_ref(in[0]);
    int err = dsp_packet_make_writable(&p);
    const char *key;
    json_t *v;
    json_object_foreach(c->obj, key, v) {
        char *text = err ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!err)
            err = text ? dsp_meta_set_json(dsp_packet_meta(p), key, text) : DSP_ENOMEM;
        free(text);
    }
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "cannot set the meta of item %lld: %s",
                             (long long)dsp_packet_item(in[0]), dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, p);
}

static void meta_set_fini(dsp_node *node)
{
    meta_set_ctx *c = dsp_node_priv(node);
    json_decref(c->obj);
}

const dsp_op_def builtin_meta_set_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "meta.set",
    .doc = "set the keys of a JSON object in the meta of every packet",
    .inputs = meta_set_in,
    .outputs = meta_set_out,
    .params = meta_set_params,
    .priv_size = sizeof(meta_set_ctx),
    .init = meta_set_init,
    .process = meta_set_process,
    .fini = meta_set_fini,
};
