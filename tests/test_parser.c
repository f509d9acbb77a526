/* test_parser.c - the .pipe language: syntax, args, ports, validation errors with positions, dot output. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <unistd.h>

#include "internal.h"

/* ---- a small operator set, registered without plugins -------------------- */

typedef struct src_ctx { char *dir; int64_t count; } src_ctx;
typedef struct flt_ctx { double spacing; int mode; char *label; int flag; } flt_ctx;
typedef struct crop_ctx { dsp_list sizes; dsp_list scales; dsp_list names; } crop_ctx;
typedef struct sink_ctx { char *path; int64_t level; } sink_ctx;
typedef struct need_ctx { char *model; double threshold; } need_ctx;

static const char *const modes[] = { "lung", "bone", "soft", NULL };

static const dsp_param_def src_params[] = {
    { "dir", DSP_PARAM_PATH, offsetof(src_ctx, dir), "." },
    { "count", DSP_PARAM_INT, offsetof(src_ctx, count), "3", 1, 100 },
    { NULL }
};
static const dsp_param_def flt_params[] = {
    { "spacing_mm", DSP_PARAM_FLOAT, offsetof(flt_ctx, spacing), "1.0", 0.1, 10 },
    { "mode", DSP_PARAM_ENUM, offsetof(flt_ctx, mode), "lung", 0, 0, modes },
    { "label", DSP_PARAM_STRING, offsetof(flt_ctx, label), "none" },
    { "flag", DSP_PARAM_BOOL, offsetof(flt_ctx, flag), "false" },
    { NULL }
};
static const dsp_param_def crop_params[] = {
    { "sizes", DSP_PARAM_LIST, offsetof(crop_ctx, sizes), "[224]", 1, 4096, NULL,
      DSP_PARAM_INT },
    { "scales", DSP_PARAM_LIST, offsetof(crop_ctx, scales), "[]", 0, 0, NULL,
      DSP_PARAM_FLOAT },
    { "names", DSP_PARAM_LIST, offsetof(crop_ctx, names), "[]", 0, 0, NULL,
      DSP_PARAM_STRING },
    { NULL }
};
static const dsp_param_def sink_params[] = {
    { "path", DSP_PARAM_PATH, offsetof(sink_ctx, path), NULL },
    { "level", DSP_PARAM_INT, offsetof(sink_ctx, level), "5", 0, 9 },
    { NULL }
};
static const dsp_param_def need_params[] = {
    { "model", DSP_PARAM_PATH, offsetof(need_ctx, model), NULL, 0, 0, NULL, 0,
      DSP_PARAM_MUST_EXIST },
    { "threshold", DSP_PARAM_FLOAT, offsetof(need_ctx, threshold), NULL },
    { NULL }
};

static const dsp_port_def src_out[] = {
    { "out", "volume:f32", "voxels" }, { "meta", "record", "series info" }, { NULL } };
static const dsp_port_def vol_in[] = { { "in", "volume", "a volume" }, { NULL } };
static const dsp_port_def vol_out[] = { { "out", "volume:f32", "resampled" }, { NULL } };
static const dsp_port_def img_in[] = { { "in", "image", "an image" }, { NULL } };
static const dsp_port_def img_out[] = { { "out", "image:u8", "crops" }, { NULL } };
static const dsp_port_def join_in[] = {
    { "a", "volume", "volume" }, { "b", "record", "record" }, { NULL } };
static const dsp_port_def rec_out[] = { { "out", "record", "merged" }, { NULL } };
static const dsp_port_def merge_in[] = {
    { "parts", "any", "things to merge", DSP_PORT_VARIADIC }, { NULL } };
static const dsp_port_def mopt_in[] = {
    { "main", "volume", "main input" },
    { "extra", "any", "more", DSP_PORT_VARIADIC | DSP_PORT_OPTIONAL }, { NULL } };
static const dsp_port_def sink_in[] = {
    { "in", "any", "what to write" },
    { "meta", "record", "extra fields", DSP_PORT_OPTIONAL }, { NULL } };

/* never called: these tests only parse and validate */
static int no_process(dsp_node *node, dsp_packet **in)
{
    return DSP_EOF;
}

#define OP(n, i, o, p, ctxt, fl) \
    static const dsp_op_def op_##n = { .struct_size = sizeof(dsp_op_def),       \
        .name = "test." #n, .doc = "test operator " #n, .inputs = i,            \
        .outputs = o, .params = p, .priv_size = ctxt, .flags = fl,              \
        .process = no_process, .max_batch = 8 }

OP(src, NULL, src_out, src_params, sizeof(src_ctx), DSP_OP_SOURCE);
OP(filter, vol_in, vol_out, flt_params, sizeof(flt_ctx), 0);
OP(crop, img_in, img_out, crop_params, sizeof(crop_ctx), DSP_OP_BATCHABLE);
OP(imgsrc, NULL, img_out, NULL, 0, DSP_OP_SOURCE);
OP(join, join_in, rec_out, NULL, 0, 0);
OP(merge, merge_in, rec_out, NULL, 0, 0);
OP(mopt, mopt_in, vol_out, NULL, 0, 0);
OP(sink, sink_in, NULL, sink_params, sizeof(sink_ctx), DSP_OP_SINK);
OP(need, vol_in, vol_out, need_params, sizeof(need_ctx), 0);

static const dsp_op_def *const test_ops[] = {
    &op_src, &op_filter, &op_crop, &op_imgsrc, &op_join, &op_merge, &op_mopt,
    &op_sink, &op_need, NULL
};
static const dsp_plugin_desc test_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "testops", "1.2", "MIT",
    "operators for the parser tests", test_ops, { 0 }
};

/* ---- fixture and helpers ---------------------------------------------------- */

static dsp_context *ctx;
static dspi_graph *g;

static void setup(void)
{
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_msg(dsp_context_register(ctx, &test_desc, "test") == 0, "%s",
                  dsp_context_errmsg(ctx));
    g = NULL;
}

static void teardown(void)
{
    dspi_graph_free(&g);
    dsp_context_free(&ctx);
}

static int parse_args(const char *text, int npos, const char *const *pos,
                      int nset, const char *const *set)
{
    dsp_pipe_args a = { npos, pos, nset, set };

    dspi_graph_free(&g);
    return dspi_graph_parse(ctx, "t.pipe", text, &a, &g);
}

static int parse(const char *text)
{
    return parse_args(text, 0, NULL, 0, NULL);
}

/* Parse text that must fail; returns the whole message. */
static const char *must_fail(const char *text)
{
    int ret = parse(text);
    ck_assert_msg(ret == DSP_ESYNTAX, "expected DSP_ESYNTAX, got %d for:\n%s", ret, text);
    ck_assert_ptr_null(g);
    return dsp_context_errmsg(ctx);
}

/* The diagnostic starting with `head` must be in msg, with its caret at
 * column `col` and, when hint is not NULL, a hint line equal to it. */
static void expect_diag(const char *msg, const char *head, int col, const char *hint)
{
    const char *d = strstr(msg, head), *src, *caret, *end;
    int at;

    ck_assert_msg(d != NULL, "missing '%s' in:\n%s", head, msg);
    ck_assert_msg(d == msg || d[-1] == '\n', "not at a line start: %s", head);
    src = strchr(d, '\n');
    ck_assert_ptr_nonnull(src);
    src++;
    ck_assert_msg(strncmp(src + 4, " | ", 3) == 0, "no source line after %s:\n%s", head, msg);
    caret = strchr(src, '\n');
    ck_assert_ptr_nonnull(caret);
    caret++;
    ck_assert_msg(strncmp(caret, "     | ", 7) == 0, "no caret line:\n%s", msg);
    at = (int)(strchr(caret, '^') - (caret + 7)) + 1;
    ck_assert_msg(at == col, "caret at column %d, want %d:\n%s", at, col, msg);
    end = strchr(caret, '\n');
    if (hint) {
        char want[512];
        snprintf(want, sizeof(want), "hint: %s\n", hint);
        ck_assert_msg(strncmp(end + 1, want, strlen(want)) == 0,
                      "want '%s' after %s, message:\n%s", want, head, msg);
    }
}

static int node_index(const char *name)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(g->nodes[k].name, name) == 0)
            return k;
    ck_abort_msg("no node %s", name);
    return -1;
}

static void *priv_of(const char *name)
{
    return g->nodes[node_index(name)].priv;
}

/* Edge number k (sorted by dst, slot) must be src.sport -> dst[slot]. */
static void expect_edge(int k, const char *src, int sport, const char *dst, int slot)
{
    ck_assert_int_lt(k, g->n_edges);
    ck_assert_str_eq(g->nodes[g->edges[k].src].name, src);
    ck_assert_int_eq(g->edges[k].src_port, sport);
    ck_assert_str_eq(g->nodes[g->edges[k].dst].name, dst);
    ck_assert_int_eq(g->edges[k].dst_slot, slot);
}

/* ---- good files -------------------------------------------------------------- */

START_TEST(test_linear_chain)
{
    const char *text =
        "# a comment line\n"
        "s = test.src   count=7   # trailing comment\n"
        "f = test.filter spacing_mm=2.5 mode=bone label=\"two words\" flag=yes\n"
        "w = test.sink  path=out/x.json\n"
        "s -> f -> w\n";
    flt_ctx *f;
    src_ctx *s;
    sink_ctx *w;

    ck_assert_int_eq(parse(text), 0);
    ck_assert_int_eq(g->n_nodes, 3);
    ck_assert_int_eq(g->n_edges, 2);
    expect_edge(0, "s", 0, "f", 0);
    expect_edge(1, "f", 0, "w", 0);
    ck_assert_int_eq(g->edges[0].line, 5);
    ck_assert_int_eq(g->edges[0].col, 3);
    ck_assert_int_eq(g->nodes[0].line, 2);
    ck_assert_int_eq(g->nodes[0].col, 1);
    ck_assert_ptr_eq(g->nodes[1].op, &op_filter);
    ck_assert_int_eq(g->nodes[0].n_out, 2);
    ck_assert_int_eq(g->nodes[0].n_in_slots, 0);
    ck_assert_int_eq(g->nodes[2].n_in_slots, 2);    /* in + optional meta */
    ck_assert_int_eq(g->nodes[2].n_out, 0);
    s = priv_of("s");
    ck_assert_int_eq(s->count, 7);
    ck_assert_str_eq(s->dir, ".");                  /* default */
    f = priv_of("f");
    ck_assert(f->spacing == 2.5);
    ck_assert_int_eq(f->mode, 1);
    ck_assert_str_eq(f->label, "two words");
    ck_assert_int_eq(f->flag, 1);
    w = priv_of("w");
    ck_assert_str_eq(w->path, "out/x.json");
    ck_assert_int_eq(w->level, 5);
    ck_assert_str_eq(g->path, "t.pipe");
    ck_assert_str_eq(g->dir, ".");
    ck_assert_int_eq(g->on_error, DSP_ON_ERROR_DEFAULT);
    ck_assert_ptr_null(g->errors_path);
    ck_assert_int_eq(g->queue_size, 0);
}
END_TEST

START_TEST(test_fanout_and_named_ports)
{
    const char *text =
        "s = test.src\n"
        "a = test.filter\n"
        "b = test.filter\n"
        "j = test.join\n"
        "w = test.sink path=o\n"
        "s -> a ; s -> b\n"
        "a -> j.a\n"
        "s.meta -> j.b\n"
        "j -> w\n"
        "s.meta -> w.meta\n"
        "v = test.sink path=p\n"
        "b -> v\n";

    ck_assert_int_eq(parse(text), 0);
    ck_assert_int_eq(g->n_nodes, 6);
    ck_assert_int_eq(g->n_edges, 7);
    /* sorted by destination node, then slot */
    expect_edge(0, "s", 0, "a", 0);
    expect_edge(1, "s", 0, "b", 0);
    expect_edge(2, "a", 0, "j", 0);
    expect_edge(3, "s", 1, "j", 1);
    expect_edge(4, "j", 0, "w", 0);
    expect_edge(5, "s", 1, "w", 1);
    expect_edge(6, "b", 0, "v", 0);
    ck_assert_int_eq(g->nodes[node_index("j")].n_in_slots, 2);
    ck_assert_int_eq(g->nodes[node_index("j")].slot_port[1], 1);
}
END_TEST

START_TEST(test_variadic_fanin)
{
    const char *text =
        "s = test.src\n"
        "a = test.filter\n"
        "m = test.merge\n"
        "w = test.sink path=o\n"
        "s.meta -> m\n"
        "s -> a -> m.parts\n"
        "s -> m -> w\n";
    const dspi_gnode *m;

    ck_assert_int_eq(parse(text), 0);
    ck_assert_int_eq(g->n_edges, 5);
    m = &g->nodes[node_index("m")];
    ck_assert_int_eq(m->n_in_slots, 3);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(m->slot_port[k], 0);
    /* each edge into the variadic port is its own slot, in file order */
    expect_edge(1, "s", 1, "m", 0);
    expect_edge(2, "a", 0, "m", 1);
    expect_edge(3, "s", 0, "m", 2);
    ck_assert_int_eq(g->edges[3].line, 7);
}
END_TEST

START_TEST(test_variadic_optional)
{
    const char *text =
        "s = test.src\n"
        "m = test.mopt\n"
        "w = test.sink path=o\n"
        "s -> m.main\n"
        "m -> w\n";
    const dspi_gnode *m;

    ck_assert_int_eq(parse(text), 0);
    m = &g->nodes[node_index("m")];
    ck_assert_int_eq(m->n_in_slots, 1);     /* no edge into the optional variadic */
    ck_assert_int_eq(m->slot_port[0], 0);
    ck_assert_int_eq(parse("s = test.src\nm = test.mopt\nw = test.sink path=o\n"
                           "s -> m.main ; s.meta -> m.extra ; s -> m.extra\n"
                           "m -> w\n"), 0);
    m = &g->nodes[node_index("m")];
    ck_assert_int_eq(m->n_in_slots, 3);
    ck_assert_int_eq(m->slot_port[0], 0);
    ck_assert_int_eq(m->slot_port[1], 1);
    ck_assert_int_eq(m->slot_port[2], 1);
    expect_edge(0, "s", 0, "m", 0);
    expect_edge(1, "s", 1, "m", 1);
    expect_edge(2, "s", 0, "m", 2);
}
END_TEST

START_TEST(test_lists_quotes_escapes_continuation)
{
    const char *text =
        "i = test.imgsrc\n"
        "c = test.crop  sizes=[224, 256,\\\n"
        "                      0x140]  \\\n"
        "               scales=[0.5,2] names=[\"a, b\", plain, \"q\\\"\\\\\\n\\t\", \"\"]\n"
        "e = test.crop sizes=[] ; i -> c ; i -> e\n"
        "s = test.src ; f = test.filter label=\"# not a comment ; nor this\"\n"
        "w = test.sink path=\"with space/x\" ; s -> f -> w\n";
    crop_ctx *c, *e;

    ck_assert_int_eq(parse(text), 0);
    ck_assert_int_eq(g->n_nodes, 6);
    c = priv_of("c");
    ck_assert_int_eq(c->sizes.n, 3);
    ck_assert_int_eq(c->sizes.i[0], 224);
    ck_assert_int_eq(c->sizes.i[1], 256);
    ck_assert_int_eq(c->sizes.i[2], 320);
    ck_assert_int_eq(c->scales.n, 2);
    ck_assert(c->scales.f[0] == 0.5 && c->scales.f[1] == 2.0);
    ck_assert_int_eq(c->names.n, 4);
    ck_assert_str_eq(c->names.s[0], "a, b");
    ck_assert_str_eq(c->names.s[1], "plain");
    ck_assert_str_eq(c->names.s[2], "q\"\\\n\t");
    ck_assert_str_eq(c->names.s[3], "");
    e = priv_of("e");
    ck_assert_int_eq(e->sizes.n, 0);
    ck_assert_str_eq(((flt_ctx *)priv_of("f"))->label, "# not a comment ; nor this");
    ck_assert_str_eq(((sink_ctx *)priv_of("w"))->path, "with space/x");
    /* a scalar value for a list parameter is a one-element list */
    ck_assert_int_eq(parse("i = test.imgsrc ; c = test.crop sizes=64 ; i -> c\n"), 0);
    c = priv_of("c");
    ck_assert_int_eq(c->sizes.n, 1);
    ck_assert_int_eq(c->sizes.i[0], 64);
}
END_TEST

static const char *args_text =
    "arg input\n"
    "arg out = ${input}_report\n"
    "arg unused\n"
    "s = test.src dir=$input\n"
    "w = test.sink path=$out/findings.json level=${lvl}\n"
    "arg lvl = 3\n"
    "f = test.filter label=\"cost $$5 in ${pipedir}\"\n"
    "s -> f -> w\n";

START_TEST(test_args_positional_set_default)
{
    const char *pos[] = { "/data/study42" };
    const char *set[] = { "lvl=7", "out=elsewhere" };
    sink_ctx *w;

    ck_assert_int_eq(parse_args(args_text, 1, pos, 0, NULL), 0);
    ck_assert_str_eq(((src_ctx *)priv_of("s"))->dir, "/data/study42");
    w = priv_of("w");
    ck_assert_str_eq(w->path, "/data/study42_report/findings.json");
    ck_assert_int_eq(w->level, 3);
    ck_assert_str_eq(((flt_ctx *)priv_of("f"))->label, "cost $5 in .");

    ck_assert_int_eq(parse_args(args_text, 0, NULL, 2, set), DSP_ESYNTAX);
    expect_diag(dsp_context_errmsg(ctx), "t.pipe:4:18: error: arg 'input' has "
                "no value", 18, "pass it as positional argument 1 or --set "
                "input=VALUE");
    /* reported at the first use only */
    ck_assert_ptr_null(strstr(strstr(dsp_context_errmsg(ctx), "no value") + 1,
                              "no value"));

    const char *set2[] = { "input=/in", "lvl=7", "out=elsewhere" };
    ck_assert_int_eq(parse_args(args_text, 0, NULL, 3, set2), 0);
    w = priv_of("w");
    ck_assert_str_eq(w->path, "elsewhere/findings.json");
    ck_assert_int_eq(w->level, 7);
    ck_assert_str_eq(((src_ctx *)priv_of("s"))->dir, "/in");
}
END_TEST

START_TEST(test_options)
{
    ck_assert_int_eq(parse("arg o = /tmp/x\n"
                           "option on_error = abort\n"
                           "option errors = $o/errors.jsonl\n"
                           "option queue = 64\n"
                           "s = test.src ; w = test.sink path=a ; s -> w\n"), 0);
    ck_assert_int_eq(g->on_error, DSP_ON_ERROR_ABORT);
    ck_assert_str_eq(g->errors_path, "/tmp/x/errors.jsonl");
    ck_assert_int_eq(g->queue_size, 64);
    ck_assert_int_eq(parse("option on_error=skip\n"), 0);
    ck_assert_int_eq(g->on_error, DSP_ON_ERROR_SKIP);
    ck_assert_int_eq(g->n_nodes, 0);
}
END_TEST

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), n);
    fclose(f);
    return buf;
}

static void pipe_path(char *dst, size_t n, const char *name)
{
    const char *dir = getenv("TESTS_SRCDIR");

    snprintf(dst, n, "%s/pipes/%s", dir ? dir : ".", name);
}

START_TEST(test_file_pipedir)
{
    char path[1024], want[1100];
    char *text;
    const char *pos[] = { "in_dir", "outdir" };
    need_ctx *nd;

    pipe_path(path, sizeof(path), "good_ct.pipe");
    text = read_text(path);
    ck_assert_int_eq(dspi_graph_parse(ctx, path, text,
                     &(dsp_pipe_args){ 2, pos, 0, NULL }, &g), 0);
    free(text);
    ck_assert_int_eq(g->n_nodes, 5);
    ck_assert_int_eq(g->n_edges, 5);
    ck_assert_int_eq(g->on_error, DSP_ON_ERROR_SKIP);
    nd = priv_of("nodules");
    snprintf(want, sizeof(want), "%s/good_ct.pipe", g->dir);
    ck_assert_str_eq(nd->model, want);  /* $pipedir/...: an existing file */
    ck_assert(nd->threshold == 0.5);
    ck_assert_str_eq(((sink_ctx *)priv_of("report"))->path, "outdir/findings.json");
}
END_TEST

START_TEST(test_dot)
{
    const char *text =
        "s = test.src count=9\n"
        "a = test.filter mode=soft label=\"say \\\"hi\\\"\"\n"
        "m = test.merge\n"
        "w = test.sink path=o\n"
        "s -> a -> m ; s.meta -> m -> w\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    ck_assert_int_eq(parse(text), 0);
    f = open_memstream(&buf, &len);
    ck_assert_int_eq(dspi_graph_write_dot(g, f), 0);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "digraph \"t.pipe\" {"));
    ck_assert_ptr_nonnull(strstr(buf, "n0 [label=\"s\\ntest.src\\ncount=9\"];"));
    ck_assert_ptr_nonnull(strstr(buf, "n1 [label=\"a\\ntest.filter\\nmode=soft\\n"
                                      "label=say \\\"hi\\\"\"];"));
    ck_assert_ptr_nonnull(strstr(buf, "n3 [label=\"w\\ntest.sink\\npath=o\"];"));
    ck_assert_ptr_nonnull(strstr(buf, "n0 -> n1 [label=\"out -> in\\nvolume:f32 / volume\"];"));
    ck_assert_ptr_nonnull(strstr(buf, "n0 -> n2 [label=\"meta -> parts[1]\\nrecord / any\"];"));
    ck_assert_ptr_nonnull(strstr(buf, "n1 -> n2 [label=\"out -> parts[0]\\nvolume:f32 / any\"];"));
    if (system("command -v dot >/dev/null 2>&1") == 0) {
        char tmpl[] = "/tmp/dspipe-dot-XXXXXX";
        int fd = mkstemp(tmpl);
        char cmd[256];
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
        close(fd);
        snprintf(cmd, sizeof(cmd), "dot -Tsvg %s >/dev/null 2>&1", tmpl);
        ck_assert_int_eq(system(cmd), 0);
        unlink(tmpl);
    }
    free(buf);
}
END_TEST

START_TEST(test_types_compatible)
{
    ck_assert(dspi_types_compatible("image:u8:rgb", "image:u8"));
    ck_assert(dspi_types_compatible("image:u8", "image:u8:rgb"));
    ck_assert(dspi_types_compatible("image", "image:f32"));
    ck_assert(!dspi_types_compatible("image:u8", "image:f32"));
    ck_assert(!dspi_types_compatible("image:u8:rgb", "image:u8:gray"));
    ck_assert(!dspi_types_compatible("image", "volume"));
    ck_assert(!dspi_types_compatible("image", "imag"));
    ck_assert(!dspi_types_compatible("images", "image"));
    ck_assert(dspi_types_compatible("any", "volume:f32"));
    ck_assert(dspi_types_compatible("tokens", "any"));
}
END_TEST

START_TEST(test_inspect)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_int_eq(dspi_write_inspect(ctx, &op_sink, f), 0);
    ck_assert_int_eq(dspi_write_inspect(ctx, &op_crop, f), 0);
    ck_assert_int_eq(dspi_write_inspect(ctx, &op_mopt, f), 0);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "Operator: test.sink\n  test operator sink\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  name         testops\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  version      1.2\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  license      MIT\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  origin       "));
    ck_assert_ptr_nonnull(strstr(buf, "Flags:\n  sink\n"));
    ck_assert_ptr_nonnull(strstr(buf, "Flags:\n  batchable (max batch 8)\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  meta  record         (optional) extra fields\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  extra  any            (optional, variadic) more\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  path\n      type: path\n      required\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  level\n      type: int in [0, 9]\n      default: 5\n"));
    ck_assert_ptr_nonnull(strstr(buf, "  sizes\n      type: list of int in [1, 4096]\n"
                                      "      default: [224]\n"));
    ck_assert_ptr_nonnull(strstr(buf, "Outputs:\n  none\n"));
    free(buf);
}
END_TEST

/* ---- errors: position, message, caret and hint ------------------------------ */

START_TEST(test_err_syntax)
{
    const char *m;

    m = must_fail("s = test.src label=\"open\nw = test.sink path=o\n");
    expect_diag(m, "t.pipe:1:20: error: unterminated string", 20,
                "close it with '\"' on the same line");
    m = must_fail("c = test.crop sizes=[1, 2\ni = test.imgsrc\n");
    expect_diag(m, "t.pipe:1:21: error: unterminated list", 21,
                "close it with ']', or end the line with '\\' to go on");
    m = must_fail("s = test.src\nw = test.sink path=o\ns -> w ->\n");
    expect_diag(m, "t.pipe:3:8: error: '->' with nothing after it", 8,
                "an edge needs a destination: w -> NODE[.PORT]");
    m = must_fail("s = test.src\n  @@@ garbage\n");
    expect_diag(m, "t.pipe:2:3: error: unexpected '@'", 3, NULL);
    m = must_fail("s = test.src ; w = test.sink path=o ; s -> w w\n");
    expect_diag(m, "t.pipe:1:46: error: unexpected 'w'", 46,
                "one statement per line, or separate them with ';'");
    m = must_fail("lonely\n");
    expect_diag(m, "t.pipe:1:1: error: 'lonely' alone is not a statement", 1, NULL);
    m = must_fail("f = test.filter label=\"a\\qb\"\n");
    expect_diag(m, "t.pipe:1:25: error: unknown escape '\\q' in a string", 25, NULL);
    m = must_fail("f = test.filter spacing_mm\n");
    expect_diag(m, "t.pipe:1:17: error: expected '=' after parameter 'spacing_mm'",
                17, "parameters are written spacing_mm=VALUE");
    m = must_fail("f = test.filter label=$\n");
    expect_diag(m, "t.pipe:1:23: error: '$' is not followed by a name", 23,
                "write $name or ${name}; $$ is a literal '$'");
    m = must_fail("f = test.filter label=${x\n");
    expect_diag(m, "t.pipe:1:23: error: unterminated '${'", 23, "close it: ${x}");
}
END_TEST

START_TEST(test_err_recovery_and_tabs)
{
    /* each bad line is reported and parsing goes on at the next one */
    const char *m = must_fail("s = test.src count=\"x\n"
                         "\tf\t= test.filter mode=bnoe\n"
                         "w = test.sink path=o level=12\n");

    expect_diag(m, "t.pipe:1:20: error: unterminated string", 20, NULL);
    expect_diag(m, "t.pipe:2:23: error: bad value for parameter 'mode' of node "
                "'f' (test.filter): 'bnoe' is not one of: lung, bone, soft", 23,
                "did you mean 'bone'?");
    /* tabs are copied into the caret line so the caret lines up */
    ck_assert_ptr_nonnull(strstr(m, "   2 | \tf\t= test.filter mode=bnoe\n"
                                    "     | \t \t                   ^~~~\n"));
    expect_diag(m, "t.pipe:3:28: error: bad value for parameter 'level' of node "
                "'w' (test.sink): value 12 is out of range [0, 9]", 28,
                "allowed: 0 to 9");
    /* sorted by position */
    ck_assert(strstr(m, "t.pipe:1:") < strstr(m, "t.pipe:2:"));
    ck_assert(strstr(m, "t.pipe:2:") < strstr(m, "t.pipe:3:"));
}
END_TEST

START_TEST(test_err_too_many)
{
    char text[4096] = "";
    const char *m;
    int n = 0;

    for (int k = 0; k < 25; k++)
        strcat(text, "x = test.nope\n");
    m = must_fail(text);
    for (const char *p = m; (p = strstr(p, ": error: ")); p++)
        n++;
    ck_assert_int_eq(n, 21);
    ck_assert_ptr_nonnull(strstr(m, "t.pipe: error: too many errors; 5 more not shown\n"));
}
END_TEST

START_TEST(test_err_args)
{
    const char *pos[] = { "a", "b", "c" };
    const char *set_bad[] = { "inptu=/x" };
    const char *set_noeq[] = { "input" };
    const char *text = "arg input\narg out = o\ns = test.src dir=$input\n"
                       "w = test.sink path=$out ; s -> w\n";
    const char *m;

    ck_assert_int_eq(parse_args(text, 3, pos, 0, NULL), DSP_ESYNTAX);
    m = dsp_context_errmsg(ctx);
    ck_assert_str_eq(m, "t.pipe: error: 3 positional values given, but the file "
                        "declares 2 args: input, out\n"
                        "hint: give at most 2 positional values\n");
    ck_assert_int_eq(parse_args(text, 1, pos, 1, set_bad), DSP_ESYNTAX);
    m = dsp_context_errmsg(ctx);
    ck_assert_str_eq(m, "t.pipe: error: --set inptu=/x: the file declares no arg "
                        "'inptu'\nhint: did you mean 'input'?\n");
    ck_assert_int_eq(parse_args(text, 1, pos, 1, set_noeq), DSP_ESYNTAX);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx),
                                 "--set 'input': expected NAME=VALUE"));
    ck_assert_int_eq(parse_args("s = test.src\nw = test.sink path=o ; s -> w\n",
                                1, pos, 0, NULL), DSP_ESYNTAX);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "but the file declares "
                                 "no args\nhint: declare one in the file: arg NAME"));

    m = must_fail("arg input\ns = test.src dir=$inptu/x\n");
    expect_diag(m, "t.pipe:2:18: error: '$inptu' is not a declared arg", 18,
                "did you mean 'input'?");
    ck_assert_ptr_nonnull(strstr(m, "     |                  ^~~~~~\n"));
    m = must_fail("arg a\narg a\n");
    expect_diag(m, "t.pipe:2:5: error: arg 'a' is declared twice", 5,
                "first declared at line 1");
    m = must_fail("arg pipedir\n");
    expect_diag(m, "t.pipe:1:5: error: 'pipedir' is reserved", 5, NULL);
}
END_TEST

START_TEST(test_err_nodes_and_params)
{
    const char *m;

    m = must_fail("s = test.src\ns = test.src\n");
    expect_diag(m, "t.pipe:2:1: error: node 's' is declared twice", 1,
                "first declared at line 1:1");
    m = must_fail("s = test.srcc\n");
    expect_diag(m, "t.pipe:1:5: error: unknown operator 'test.srcc'", 5,
                "did you mean 'test.src'?");
    ck_assert_ptr_nonnull(strstr(m, "     |     ^~~~~~~~~\n"));
    m = must_fail("s = zzz.qqqqqqq\n");
    expect_diag(m, "t.pipe:1:5: error: unknown operator 'zzz.qqqqqqq'", 5,
                "`dspipe plugins` lists the operators that are loaded");
    m = must_fail("s = test.src cuont=3\n");
    expect_diag(m, "t.pipe:1:14: error: operator 'test.src' has no parameter "
                "'cuont'", 14, "did you mean 'count'? test.src takes: dir, count");
    m = must_fail("s = test.src count=3 count=4\n");
    expect_diag(m, "t.pipe:1:22: error: parameter 'count' of node 's' is given "
                "twice", 22, "first given at line 1:14");
    m = must_fail("i = test.imgsrc ; c = test.crop foo=1 ; i -> c\n");
    expect_diag(m, "t.pipe:1:33: error: operator 'test.crop' has no parameter "
                "'foo'", 33, "test.crop takes: sizes, scales, names");
    m = must_fail("s = test.src\nw = test.sink level=1\ns -> w\n");
    expect_diag(m, "t.pipe:2:1: error: node 'w' (test.sink) needs parameter "
                "'path'", 1, "add path=VALUE (path)");
    m = must_fail("s = test.src count=[1, 2]\n");
    expect_diag(m, "t.pipe:1:20: error: parameter 'count' of node 's' takes a "
                "single value, not a list", 20, "count is int in [1, 100]");
    m = must_fail("i = test.imgsrc ; c = test.crop sizes=[8, 0] ; i -> c\n");
    expect_diag(m, "t.pipe:1:39: error: bad value for parameter 'sizes' of node "
                "'c' (test.crop): list element 2: value 0 is out of range "
                "[1, 4096]", 39, "allowed: 1 to 4096");
    m = must_fail("s = test.src count=0x7fffffffffffffffff\n");
    expect_diag(m, "t.pipe:1:20: error: bad value for parameter 'count' of node "
                "'s' (test.src): integer '0x7fffffffffffffffff' does not fit in "
                "64 bits", 20, NULL);
    m = must_fail("s = test.src ; n = test.need model=/nonexistent/m.bin "
             "threshold=x ; w = test.sink path=o ; s -> n -> w\n");
    expect_diag(m, "t.pipe:1:36: error: bad value for parameter 'model' of node "
                "'n' (test.need): /nonexistent/m.bin: No such file or directory",
                36, NULL);
    expect_diag(m, "t.pipe:1:65: error: bad value for parameter 'threshold' of "
                "node 'n' (test.need): 'x' is not a number", 65, NULL);
    m = must_fail("option on_eror = skip\noption queue = 0\noption on_error = maybe\n");
    expect_diag(m, "t.pipe:1:8: error: unknown option 'on_eror'", 8,
                "did you mean 'on_error'?");
    expect_diag(m, "t.pipe:2:16: error: option queue: '0' is not a whole number "
                ">= 1", 16, NULL);
    expect_diag(m, "t.pipe:3:19: error: option on_error: 'maybe' is not abort or "
                "skip", 19, NULL);
}
END_TEST

START_TEST(test_err_edges)
{
    const char *decl = "s = test.src\nf = test.filter\nj = test.join\n"
                       "w = test.sink path=o\ni = test.imgsrc\n";
    char text[1024];
    const char *m;

#define EDGES(e) (snprintf(text, sizeof(text), "%s%s", decl, e), must_fail(text))
    m = EDGES("s -> fx -> w\n");
    expect_diag(m, "t.pipe:6:6: error: unknown node 'fx'", 6, "did you mean 'f'?");
    m = EDGES("s -> f.out -> w\n");
    expect_diag(m, "t.pipe:6:8: error: a port can only be named at either end of "
                "a chain", 8, "split the chain: '... -> f.out' and 'f -> ...'");
    m = EDGES("s -> f.inn\nf -> w\n");
    expect_diag(m, "t.pipe:6:8: error: node 'f' (test.filter) has no input port "
                "'inn'", 8, "did you mean 'in'?");
    m = EDGES("s.metta -> j.b\n");
    expect_diag(m, "t.pipe:6:3: error: node 's' (test.src) has no output port "
                "'metta'", 3, "did you mean 'meta'?");
    m = EDGES("s -> j\n");
    expect_diag(m, "t.pipe:6:6: error: node 'j' has inputs a, b: name one (j.a)",
                6, "write j.a");
    m = EDGES("f -> s\n");
    expect_diag(m, "t.pipe:6:6: error: node 's' (test.src) has no inputs", 6,
                "it is a source: edges can only start at it");
    m = EDGES("w -> f\n");
    expect_diag(m, "t.pipe:6:1: error: node 'w' (test.sink) has no outputs", 1,
                "it is a sink: edges can only end at it");
    m = EDGES("s -> f -> w\ns.meta -> w.meta\ns.meta -> w.meta\n");
    expect_diag(m, "t.pipe:8:11: error: input 'w.meta' is already connected (from "
                "'s' at line 7:8)", 11, "only a variadic input takes several edges");
    m = EDGES("s -> f -> w\ni -> f\n");
    expect_diag(m, "t.pipe:7:3: error: type mismatch: 'i.out' gives image:u8 but "
                "'f.in' takes volume", 3, NULL);
    m = EDGES("s.meta -> f\n");
    expect_diag(m, "t.pipe:6:8: error: type mismatch: 's.meta' gives record but "
                "'f.in' takes volume", 8, NULL);
    m = EDGES("s -> w\n");
    expect_diag(m, "t.pipe:2:1: error: input 'in' (volume) of node 'f' "
                "(test.filter) is not connected", 1, "connect it: SOURCE -> f");
    expect_diag(m, "t.pipe:3:1: error: input 'a' (volume) of node 'j' "
                "(test.join) is not connected", 1, "connect it: SOURCE -> j.a");
    /* no error for an unconnected optional port (w.meta) */
    ck_assert_ptr_null(strstr(m, "'meta'"));
#undef EDGES
    m = must_fail("s = test.src ; m = test.merge ; w = test.sink path=o ; m -> w\n");
    expect_diag(m, "t.pipe:1:16: error: input 'parts' (any) of node 'm' "
                "(test.merge) is not connected", 16, "connect it: SOURCE -> m");
}
END_TEST

START_TEST(test_err_cycles)
{
    const char *m;

    m = must_fail("s = test.src\na = test.filter\nb = test.filter\nm = test.mopt\n"
             "s -> m.main\nm -> a -> b -> m.extra\n");
    expect_diag(m, "t.pipe:6:13: error: cycle: m -> a -> b -> m", 13,
                "a pipeline is a directed acyclic graph; remove one of these edges");
    m = must_fail("s = test.src\nm = test.mopt\ns -> m.main\nm -> m.extra\n");
    expect_diag(m, "t.pipe:4:3: error: cycle: m -> m", 3, NULL);
}
END_TEST

START_TEST(test_err_unknown_node_cascade)
{
    /* a node whose operator is unknown gives one error, not one per edge */
    const char *m = must_fail("s = test.src\nx = test.nope\nw = test.sink path=o\n"
                         "s -> x -> w\n");
    int n = 0;

    for (const char *p = m; (p = strstr(p, ": error: ")); p++)
        n++;
    ck_assert_int_eq(n, 1);
    expect_diag(m, "t.pipe:2:5: error: unknown operator 'test.nope'", 5, NULL);
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("parser");
    TCase *tc = tcase_create("good");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_linear_chain);
    tcase_add_test(tc, test_fanout_and_named_ports);
    tcase_add_test(tc, test_variadic_fanin);
    tcase_add_test(tc, test_variadic_optional);
    tcase_add_test(tc, test_lists_quotes_escapes_continuation);
    tcase_add_test(tc, test_args_positional_set_default);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_file_pipedir);
    tcase_add_test(tc, test_dot);
    tcase_add_test(tc, test_types_compatible);
    tcase_add_test(tc, test_inspect);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_err_syntax);
    tcase_add_test(tc, test_err_recovery_and_tabs);
    tcase_add_test(tc, test_err_too_many);
    tcase_add_test(tc, test_err_args);
    tcase_add_test(tc, test_err_nodes_and_params);
    tcase_add_test(tc, test_err_edges);
    tcase_add_test(tc, test_err_cycles);
    tcase_add_test(tc, test_err_unknown_node_cascade);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parser_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
