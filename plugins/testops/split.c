/* split.c - test.split: turns each packet into n parts (1 -> N), like a video split into clips. */
#include "testops.h"

typedef struct split_ctx {
    int64_t n;
} split_ctx;

static const dsp_param_def split_params[] = {
    { .name = "n", .type = DSP_PARAM_INT, .def = "3", .min = 1, .max = 1e6,
      .offset = offsetof(split_ctx, n), .doc = "parts per input packet" },
    { NULL }
};

static const dsp_port_def split_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def split_out[] = {
    { "out", "any", "n parts per input, meta part_of = the input's part" },
    { NULL }
};

static int split_process(dsp_node *node, dsp_packet **in)
{
    split_ctx *c = dsp_node_priv(node);
    const dsp_packet *src = in[0];
    int64_t item = dsp_packet_item(src), in_part = dsp_packet_part(src);
    /* An unsplit input (part 0) gives parts 0..n-1; an input that is itself
     * a part p gives p*n .. p*n+n-1, so (item, part) stays unique. */
    for (int64_t k = 0; k < c->n; k++) {
        dsp_packet *p = NULL;
        int err = dsp_packet_derive(src, &p);
        if (!err) {
            dsp_packet_set_pos(p, item, in_part * c->n + k,
                               dsp_packet_last(src) && k == c->n - 1);
            err = dsp_meta_set_int(dsp_packet_meta(p), "part_of", in_part);
            if (err < 0)
                dsp_packet_unref(&p);
        }
        if (err < 0)
            return dsp_node_fail(node, err, "item %lld: %s", (long long)item,
                                 dsp_strerror(err));
        if ((err = dsp_node_emit(node, 0, p)) < 0)
            return err;
    }
    return 0;
}

const dsp_op_def testops_split_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.split",
    .doc = "emit n parts per input packet (last flag on the last)",
    .inputs = split_in,
    .outputs = split_out,
    .params = split_params,
    .priv_size = sizeof(split_ctx),
    .process = split_process,
};
