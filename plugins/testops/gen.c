/* gen.c - test.gen: a source of `count` items, each in `parts` parts, optionally with an f32 tensor. */
#include "testops.h"

#include <stdio.h>

typedef struct gen_ctx {
    int64_t count;
    int64_t parts;
    int64_t size;
    int64_t next;               /* next item */
} gen_ctx;

static const dsp_param_def gen_params[] = {
    { .name = "count", .type = DSP_PARAM_INT, .def = "10", .min = 0, .max = 1e12,
      .offset = offsetof(gen_ctx, count), .doc = "number of items" },
    { .name = "parts", .type = DSP_PARAM_INT, .def = "1", .min = 1, .max = 1e6,
      .offset = offsetof(gen_ctx, parts), .doc = "packets per item (parts 0..parts-1)" },
    { .name = "size", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1e9,
      .offset = offsetof(gen_ctx, size),
      .doc = "if > 0, attach f32 tensor \"x\" of this many elements, all item+part" },
    { NULL }
};

static const dsp_port_def gen_out[] = {
    { "out", "any", "generated packets: meta v = item, source = \"gen:<item>\"" },
    { NULL }
};

static int gen_fill(dsp_node *node, gen_ctx *c, dsp_packet *p, int64_t item,
                    int64_t part)
{
    char src[32];
    snprintf(src, sizeof src, "gen:%lld", (long long)item);
    dsp_meta *m = dsp_packet_meta(p);
    int err = dsp_meta_set_int(m, "v", item);
    if (!err)
        err = dsp_meta_set_str(m, "source", src);
    if (!err && c->size > 0) {
        dsp_tensor *t = NULL;
        if ((err = dsp_tensor_new(DSP_DTYPE_F32, 1, &c->size, &t)) == 0) {
            float *x = dsp_tensor_data(t);
            for (int64_t k = 0; k < c->size; k++)
                x[k] = (float)(item + part);
            err = dsp_packet_set_tensor(p, "x", t);
        }
    }
    return err < 0 ? dsp_node_fail(node, err, "item %lld: %s", (long long)item,
                                   dsp_strerror(err)) : 0;
}

static int gen_process(dsp_node *node, dsp_packet **in)
{
    gen_ctx *c = dsp_node_priv(node);
    (void)in;
    if (c->next >= c->count || dsp_node_stopping(node))
        return DSP_EOF;
    /* the host numbers source items; parts after the first reuse its item */
    dsp_packet *first = dsp_node_packet_new(node);
    if (!first)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    int64_t item = dsp_packet_item(first);
    c->next++;
    int err = 0;
    for (int64_t part = 0; part < c->parts && err == 0; part++) {
        dsp_packet *p = first;
        first = NULL;
        if (!p && dsp_packet_new(&p) < 0)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        dsp_packet_set_pos(p, item, part, part == c->parts - 1);
        if ((err = gen_fill(node, c, p, item, part)) < 0) {
            dsp_packet_unref(&p);
            break;
        }
        err = dsp_node_emit(node, 0, p);
    }
    dsp_node_progress(node, c->next, c->count);
    return err;
}

const dsp_op_def testops_gen_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.gen",
    .doc = "generate count items of parts packets each (meta v, source; optional f32 tensor x)",
    .outputs = gen_out,
    .params = gen_params,
    .priv_size = sizeof(gen_ctx),
    .flags = DSP_OP_SOURCE,
    .process = gen_process,
};
