/* delay.c - test.delay: forwards packets after sleeping `ms` each, waking early when the run stops. */
#include "testops.h"

#include <errno.h>
#include <time.h>

typedef struct delay_ctx {
    double ms;
} delay_ctx;

static const dsp_param_def delay_params[] = {
    { .name = "ms", .type = DSP_PARAM_FLOAT, .def = "10", .min = 0, .max = 3.6e6,
      .offset = offsetof(delay_ctx, ms), .doc = "milliseconds to sleep per packet" },
    { NULL }
};

static const dsp_port_def delay_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def delay_out[] = { { "out", "any", "the same packets, later" }, { NULL } };

static int delay_process(dsp_node *node, dsp_packet **in)
{
    delay_ctx *c = dsp_node_priv(node);
    /* sleep in slices of at most 10 ms so Ctrl-C is honoured promptly */
    double left = c->ms;
    while (left > 0 && !dsp_node_stopping(node)) {
        double slice = left < 10 ? left : 10;
        struct timespec ts = { 0, (long)(slice * 1e6) };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        left -= slice;
    }
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

const dsp_op_def testops_delay_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.delay",
    .doc = "forward every packet after sleeping ms milliseconds",
    .inputs = delay_in,
    .outputs = delay_out,
    .params = delay_params,
    .priv_size = sizeof(delay_ctx),
    .process = delay_process,
};
