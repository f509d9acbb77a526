/* fuzz_pipe.c - mutate valid .pipe texts thousands of times: the parser must answer every one with a result or diagnostics, never a crash. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dspipe/dspipe.h>

typedef struct { int64_t n; double f; char *s; dsp_list l; int e; int b; } fz_ctx;

static const char *const fz_choices[] = { "lung", "bone", "brain", NULL };
static const dsp_param_def fz_params[] = {
    { .name = "n", .type = DSP_PARAM_INT, .offset = offsetof(fz_ctx, n), .def = "1",
      .min = 0, .max = 1000 },
    { .name = "f", .type = DSP_PARAM_FLOAT, .offset = offsetof(fz_ctx, f), .def = "0.5" },
    { .name = "s", .type = DSP_PARAM_STRING, .offset = offsetof(fz_ctx, s), .def = "x" },
    { .name = "l", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_INT, .offset = offsetof(fz_ctx, l),
      .def = "[1, 2]" },
    { .name = "e", .type = DSP_PARAM_ENUM, .choices = fz_choices, .offset = offsetof(fz_ctx, e),
      .def = "lung" },
    { .name = "b", .type = DSP_PARAM_BOOL, .offset = offsetof(fz_ctx, b), .def = "false" },
    { NULL }
};

static int fz_process(dsp_node *node, dsp_packet **in)
{
    return in ? dsp_node_emit(node, 0, dsp_packet_ref(in[0])) : DSP_EOF;
}

static const dsp_port_def fz_out[] = { { "out", "image:u8", "o" }, { NULL } };
static const dsp_port_def fz_in[] = { { "in", "image", "i" }, { NULL } };
static const dsp_port_def fz_join_in[] = { { "a", "any", "a" }, { "b", "any", "b",
                                           DSP_PORT_OPTIONAL }, { "more", "any", "m",
                                           DSP_PORT_VARIADIC | DSP_PORT_OPTIONAL }, { NULL } };
static const dsp_op_def fz_src = {
    .struct_size = sizeof(dsp_op_def), .name = "fz.src", .outputs = fz_out,
    .params = fz_params, .priv_size = sizeof(fz_ctx), .flags = DSP_OP_SOURCE,
    .process = fz_process,
};
static const dsp_op_def fz_mid = {
    .struct_size = sizeof(dsp_op_def), .name = "fz.mid", .inputs = fz_in, .outputs = fz_out,
    .params = fz_params, .priv_size = sizeof(fz_ctx), .process = fz_process,
};
static const dsp_op_def fz_join = {
    .struct_size = sizeof(dsp_op_def), .name = "fz.join", .inputs = fz_join_in,
    .outputs = fz_out, .process = fz_process,
};
static const dsp_op_def *const fz_ops[] = { &fz_src, &fz_mid, &fz_join, NULL };
static const dsp_plugin_desc fz_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "fz", "1", "MIT", "fuzz", fz_ops, { 0 }
};

static const char *const seeds[] = {
    "# seed\narg input\narg out = res\noption on_error = skip\n"
    "a = fz.src n=3 f=1e-3 s=\"q \\\"x\\\" $out\" l=[1, 2, 3] e=bone b=yes\n"
    "b = fz.mid s=${input}/x l=[] \\\n   n=0x10\nj = fz.join\n"
    "a -> b -> j.a ; a -> j.more\na -> j.more\n",
    "arg x\nsrc = fz.src\nm1 = fz.mid\nm2 = fz.mid\nsrc -> m1 -> m2\nm1 -> m2\n",
    "s = fz.src s=$$literal l=[\"a\", 4]\nj = fz.join\ns -> j.a\ns -> j.b\nj -> j.more\n",
};

/* Bytes that matter to the lexer, so mutations reach its corners. */
static const char specials[] = "\"[]$\\{}#;=.->\n\t :,x0";

static void mutate(char *buf, size_t *len, size_t cap, unsigned *seed)
{
    int edits = 1 + rand_r(seed) % 6;
    for (int e = 0; e < edits; e++) {
        size_t pos = *len ? (size_t)rand_r(seed) % *len : 0;
        switch (rand_r(seed) % 5) {
        case 0:                     /* replace with a special byte */
            if (*len)
                buf[pos] = specials[rand_r(seed) % (sizeof(specials) - 1)];
            break;
        case 1:                     /* random byte, also high ones (invalid UTF-8) */
            if (*len)
                buf[pos] = (char)(1 + rand_r(seed) % 255);
            break;
        case 2:                     /* delete */
            if (*len) {
                memmove(buf + pos, buf + pos + 1, *len - pos - 1);
                (*len)--;
            }
            break;
        case 3:                     /* insert */
            if (*len + 1 < cap) {
                memmove(buf + pos + 1, buf + pos, *len - pos);
                buf[pos] = specials[rand_r(seed) % (sizeof(specials) - 1)];
                (*len)++;
            }
            break;
        default:                    /* truncate */
            *len = pos;
            break;
        }
    }
    buf[*len] = 0;
}

START_TEST(test_fuzz_parser)
{
    dsp_context *ctx;
    const char *iters_env = getenv("DSP_FUZZ_ITERS");
    int iters = iters_env ? atoi(iters_env) : 20000, ok = 0, bad = 0;
    unsigned seed = getenv("DSP_FUZZ_SEED") ? (unsigned)atoi(getenv("DSP_FUZZ_SEED")) : 4242;
    const char *pos[] = { "in", "out" };
    dsp_pipe_args args = { 1, pos, 0, NULL };
    char buf[4096];

    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_register(ctx, &fz_desc, "fuzz_pipe.c"), 0);
    for (int i = 0; i < iters; i++) {
        const char *s = seeds[i % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t len = strlen(s);
        dsp_pipeline *p = NULL;
        int err;

        memcpy(buf, s, len + 1);
        mutate(buf, &len, sizeof(buf), &seed);
        err = dsp_pipeline_load_string(ctx, "fuzz.pipe", buf, &args, &p);
        if (err == 0) {
            ck_assert_ptr_nonnull(p);
            ok++;
        } else {
            /* a refusal always explains itself */
            ck_assert_ptr_null(p);
            ck_assert_msg(err == DSP_ESYNTAX || err == DSP_ENOMEM, "unexpected code %d", err);
            ck_assert_msg(strstr(dsp_context_errmsg(ctx), "fuzz.pipe:") != NULL,
                          "refused without a located diagnostic:\n%s\n---\n%s",
                          dsp_context_errmsg(ctx), buf);
            bad++;
        }
        dsp_pipeline_free(&p);
    }
    printf("fuzz_pipe: %d mutated files, %d accepted, %d refused with diagnostics\n", iters,
           ok, bad);
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(bad, 0);
    dsp_context_free(&ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_pipe");
    TCase *tc = tcase_create("parser");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_fuzz_parser);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
