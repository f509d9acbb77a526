/* fail.c - test.fail: forwards packets but fails chosen items (every N, a list, or a seeded random rate). */
#include "testops.h"

enum { CODE_FORMAT, CODE_IO, CODE_INVALID };
static const char *const fail_codes[] = { "format", "io", "invalid", NULL };

typedef struct fail_ctx {
    int64_t every;
    dsp_list items;
    int64_t seed;
    double rate;
    int in_init;
    int code;
} fail_ctx;

static const dsp_param_def fail_params[] = {
    { .name = "every", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1e12,
      .offset = offsetof(fail_ctx, every),
      .doc = "fail item i when i % every == every - 1 (0 = off)" },
    { .name = "items", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_INT, .def = "[]",
      .offset = offsetof(fail_ctx, items), .doc = "items to fail" },
    { .name = "seed", .type = DSP_PARAM_INT, .def = "0",
      .offset = offsetof(fail_ctx, seed), .doc = "seed of the random selection" },
    { .name = "rate", .type = DSP_PARAM_FLOAT, .def = "0", .min = 0, .max = 1,
      .offset = offsetof(fail_ctx, rate),
      .doc = "fraction of items to fail, chosen by a hash of (seed, item)" },
    { .name = "in_init", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(fail_ctx, in_init), .doc = "fail in init instead" },
    { .name = "code", .type = DSP_PARAM_ENUM, .def = "format", .choices = fail_codes,
      .offset = offsetof(fail_ctx, code), .doc = "error code to fail with" },
    { NULL }
};

static const dsp_port_def fail_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def fail_out[] = { { "out", "any", "packets of items not failed" }, { NULL } };

static int fail_code(const fail_ctx *c)
{
    return c->code == CODE_IO ? DSP_EIO : c->code == CODE_INVALID ? DSP_EINVAL
                                                                  : DSP_EFORMAT;
}

/* splitmix64: a well-mixed, portable hash, so the selection is the same on
 * every machine and run. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int selected(const fail_ctx *c, int64_t item)
{
    if (c->every > 0 && item % c->every == c->every - 1)
        return 1;
    for (int i = 0; i < c->items.n; i++)
        if (c->items.i[i] == item)
            return 1;
    if (c->rate > 0) {
        uint64_t h = mix(mix((uint64_t)c->seed) ^ (uint64_t)item);
        if ((double)(h >> 11) * 0x1.0p-53 < c->rate)
            return 1;
    }
    return 0;
}

static int fail_init(dsp_node *node)
{
    fail_ctx *c = dsp_node_priv(node);
    if (c->in_init)
        return dsp_node_fail(node, fail_code(c), "injected failure in init");
    return 0;
}

static int fail_process(dsp_node *node, dsp_packet **in)
{
    fail_ctx *c = dsp_node_priv(node);
    int64_t item = dsp_packet_item(in[0]);
    if (selected(c, item))
        return dsp_node_fail(node, fail_code(c), "injected failure for item %lld",
                             (long long)item);
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

const dsp_op_def testops_fail_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "test.fail",
    .doc = "forward packets, failing chosen items (every, items, seed+rate) or init",
    .inputs = fail_in,
    .outputs = fail_out,
    .params = fail_params,
    .priv_size = sizeof(fail_ctx),
    .init = fail_init,
    .process = fail_process,
};
