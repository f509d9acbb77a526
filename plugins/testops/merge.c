/* merge.c - test.merge: fan-in of any number of inputs joined on (item, part); sums meta v. */
#include "testops.h"

static const dsp_port_def merge_in[] = {
    { "in", "any", "one slot per connected edge", DSP_PORT_VARIADIC },
    { NULL }
};
static const dsp_port_def merge_out[] = {
    { "out", "any", "one packet per joined set: meta v = sum, inputs = slots" },
    { NULL }
};

static int merge_process(dsp_node *node, dsp_packet **in)
{
    int n = dsp_node_input_count(node);
    const dsp_packet *first = NULL;
    int64_t sum = 0;
    for (int k = 0; k < n; k++) {
        int64_t v;
        if (!in[k])
            continue;
        if (!first)
            first = in[k];
        if (dsp_meta_get_int(dsp_packet_meta_const(in[k]), "v", &v) == 0)
            sum += v;
    }
    if (!first)
        return dsp_node_fail(node, DSP_EINVAL, "no input packets to merge");
    /* the first slot's tensors and metadata carry over */
    dsp_packet *p = NULL;
    int err = dsp_packet_derive(first, &p);
    if (!err)
        err = dsp_meta_set_int(dsp_packet_meta(p), "v", sum);
    if (!err)
        err = dsp_meta_set_int(dsp_packet_meta(p), "inputs", n);
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "item %lld: %s",
                             (long long)dsp_packet_item(first), dsp_strerror(err));
    }
    return dsp_node_emit(node, 0, p);
}

const dsp_op_def testops_merge_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.merge",
    .doc = "join packets of any number of inputs: meta v = sum of v, inputs = slot count",
    .inputs = merge_in,
    .outputs = merge_out,
    .process = merge_process,
};
