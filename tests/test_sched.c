/* test_sched.c - scheduler tests: random DAG stress against a model, failure policies, interrupt, backpressure, batching. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dspipe/dspipe.h>

#include "testutil.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dsp_sched_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    tu_remove_tree(tmpdir);
}

static dsp_context *new_ctx(void)
{
    dsp_context *ctx;
    ck_assert_int_eq(dsp_context_new(&ctx), 0);
    ck_assert_int_eq(dsp_context_load_plugins(ctx), 0);
    ck_assert_msg(dsp_context_find_op(ctx, "test.gen") && dsp_context_find_op(ctx, "sink.jsonl"),
                  "test and builtin plugins not found: is DSPIPE_PLUGIN_PATH set?");
    return ctx;
}

/* ---- a model of what each test operator does to the stream ------------- */

typedef struct rec {
    int64_t item, part, v;
} rec;

typedef struct stream {
    rec *r;
    int n;
} stream;

enum { K_GEN, K_NOOP, K_DELAY, K_FAIL, K_FILTER, K_SPLIT, K_MERGE };

typedef struct mnode {
    int kind;
    int npred, pred[3];
    int a, b;                   /* fail: every; filter: modulo, remainder; split: n */
    int has_consumer;
    int split_below;            /* some ancestor splits: no further split */
    stream out;
} mnode;

static void push(stream *s, int64_t item, int64_t part, int64_t v)
{
    s->r = realloc(s->r, (s->n + 1) * sizeof(*s->r));
    s->r[s->n++] = (rec){ item, part, v };
}

static int find_key(const stream *s, int64_t item, int64_t part)
{
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const rec *r = &s->r[mid];
        if (r->item == item && r->part == part)
            return mid;
        if (r->item < item || (r->item == item && r->part < part))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Items failed anywhere (distinct), as errors.jsonl must list them. */
static int failed_seen[1 << 16];

static void model(mnode *g, int n, int count)
{
    memset(failed_seen, 0, sizeof(failed_seen));
    for (int i = 0; i < n; i++) {
        mnode *m = &g[i];
        const stream *in = m->npred ? &g[m->pred[0]].out : NULL;
        m->out.n = 0;
        m->out.r = NULL;
        switch (m->kind) {
        case K_GEN:
            for (int k = 0; k < count; k++)
                push(&m->out, k, 0, k);
            break;
        case K_NOOP:
        case K_DELAY:
            for (int k = 0; k < in->n; k++)
                push(&m->out, in->r[k].item, in->r[k].part, in->r[k].v);
            break;
        case K_FAIL:
            for (int k = 0; k < in->n; k++) {
                if (in->r[k].item % m->a == m->a - 1) {
                    failed_seen[in->r[k].item] = 1;
                    continue;
                }
                push(&m->out, in->r[k].item, in->r[k].part, in->r[k].v);
            }
            break;
        case K_FILTER:
            for (int k = 0; k < in->n; k++)
                if (in->r[k].item % m->a != m->b)
                    push(&m->out, in->r[k].item, in->r[k].part, in->r[k].v);
            break;
        case K_SPLIT:
            for (int k = 0; k < in->n; k++)
                for (int p = 0; p < m->a; p++)
                    push(&m->out, in->r[k].item, p, in->r[k].v);
            break;
        case K_MERGE:
            /* join on (item, part): keys present on every input */
            for (int k = 0; k < in->n; k++) {
                int64_t v = in->r[k].v;
                int ok = 1;
                for (int q = 1; q < m->npred && ok; q++) {
                    int at = find_key(&g[m->pred[q]].out, in->r[k].item, in->r[k].part);
                    if (at < 0)
                        ok = 0;
                    else
                        v += g[m->pred[q]].out.r[at].v;
                }
                if (ok)
                    push(&m->out, in->r[k].item, in->r[k].part, v);
            }
            break;
        }
    }
}

/* Build a random DAG in topological order, as a .pipe text. */
/* journaled: one source and test.count leaves (no gathering sink), so the
 * run keeps a completion journal. */
static char *random_pipe(unsigned *seed, mnode *g, int *pn, int count, int journaled)
{
    int n = 6 + rand_r(seed) % 15, nsrc = journaled ? 1 : 1 + rand_r(seed) % 2;
    size_t cap = 1 << 16, len = 0;
    char *t = malloc(cap);

#define EMIT(...) (len += snprintf(t + len, cap - len, __VA_ARGS__))
    memset(g, 0, n * sizeof(*g));
    for (int i = 0; i < n; i++) {
        mnode *m = &g[i];
        if (i < nsrc) {
            m->kind = K_GEN;
            EMIT("n%d = test.gen count=%d\n", i, count);
            continue;
        }
        m->npred = 1 + (rand_r(seed) % 4 == 0) + (rand_r(seed) % 8 == 0);
        if (m->npred > i)
            m->npred = i;
        for (int k = 0; k < m->npred; k++) {
            int p, dup;
            do {
                p = rand_r(seed) % i;
                dup = 0;
                for (int q = 0; q < k; q++)
                    dup |= m->pred[q] == p;
            } while (dup);
            m->pred[k] = p;
            g[p].has_consumer = 1;
            m->split_below |= g[p].split_below || g[p].kind == K_SPLIT;
        }
        if (m->npred > 1) {
            m->kind = K_MERGE;
            EMIT("n%d = test.merge\n", i);
        } else {
            int r = rand_r(seed) % 10;
            if (r < 3) {
                m->kind = K_NOOP;
                EMIT("n%d = test.noop\n", i);
            } else if (r < 4) {
                m->kind = K_DELAY;
                EMIT("n%d = test.delay ms=0.02\n", i);
            } else if (r < 6) {
                m->kind = K_FAIL;
                m->a = 3 + rand_r(seed) % 20;
                EMIT("n%d = test.fail every=%d\n", i, m->a);
            } else if (r < 8 || m->split_below) {
                m->kind = K_FILTER;
                m->a = 2 + rand_r(seed) % 9;
                m->b = rand_r(seed) % m->a;
                EMIT("n%d = test.filter modulo=%d remainder=%d\n", i, m->a, m->b);
            } else {
                m->kind = K_SPLIT;
                m->a = 1 + rand_r(seed) % 3;
                EMIT("n%d = test.split n=%d\n", i, m->a);
            }
        }
        for (int k = 0; k < m->npred; k++)
            EMIT(m->kind == K_MERGE ? "n%d -> n%d.in\n" : "n%d -> n%d\n", m->pred[k], i);
    }
    for (int i = 0; i < n; i++)
        if (!g[i].has_consumer && journaled)
            EMIT("s%d = test.count\nn%d -> s%d\n", i, i, i);
        else if (!g[i].has_consumer)
            EMIT("s%d = sink.jsonl path=%s/leaf%d.jsonl\nn%d -> s%d\n", i, tmpdir, i, i, i);
#undef EMIT
    *pn = n;
    return t;
}

/* Compare a leaf's JSONL output with the model: same records, same order. */
static void check_leaf(const char *pipe, int leaf, const stream *want)
{
    char path[512], line[4096];
    FILE *f;
    int k = 0;

    snprintf(path, sizeof(path), "%s/leaf%d.jsonl", tmpdir, leaf);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "leaf %d wrote no file\n%s", leaf, pipe);
    while (fgets(line, sizeof(line), f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_int_t item, part, v;
        ck_assert_ptr_nonnull(o);
        item = json_integer_value(json_object_get(o, "item"));
        part = json_integer_value(json_object_get(o, "part"));
        v = json_integer_value(json_object_get(json_object_get(o, "meta"), "v"));
        json_decref(o);
        ck_assert_msg(k < want->n, "leaf %d: more records than expected (%d)\n%s", leaf,
                      want->n, pipe);
        ck_assert_msg(item == want->r[k].item && part == want->r[k].part && v == want->r[k].v,
                      "leaf %d record %d: got (%lld,%lld,v=%lld), want (%lld,%lld,v=%lld)\n%s",
                      leaf, k, (long long)item, (long long)part, (long long)v,
                      (long long)want->r[k].item, (long long)want->r[k].part,
                      (long long)want->r[k].v, pipe);
        k++;
    }
    fclose(f);
    ck_assert_msg(k == want->n, "leaf %d: %d records, want %d\n%s", leaf, k, want->n, pipe);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int run_opts(dsp_context *ctx, const char *text, const dsp_run_opts *o,
                    dsp_run_stats *st)
{
    dsp_pipeline *p;
    int err;

    err = dsp_pipeline_load_string(ctx, "stress.pipe", text, NULL, &p);
    ck_assert_msg(err == 0, "pipeline did not load: %s\n%s", dsp_context_errmsg(ctx), text);
    err = dsp_pipeline_run(p, o);
    if (st)
        dsp_pipeline_stats(p, st);
    dsp_pipeline_free(&p);
    return err;
}

static int run_text(dsp_context *ctx, const char *text, int threads, int queue,
                    dsp_on_error policy, const char *errors, dsp_run_stats *st)
{
    dsp_run_opts o;

    dsp_run_opts_init(&o);
    o.threads = threads;
    o.queue_size = queue;
    o.on_error = policy;
    o.errors_path = errors;
    return run_opts(ctx, text, &o, st);
}

START_TEST(test_random_dags)
{
    dsp_context *ctx = new_ctx();
    const char *base = getenv("DSP_STRESS_SEED");
    unsigned seed = (base ? (unsigned)atoi(base) : 12345u) + (unsigned)_i * 7919u;
    mnode g[24];
    int n, count = 500 + rand_r(&seed) % 2500;
    char errors[512];

    make_tmpdir();
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    char *text = random_pipe(&seed, g, &n, count, 0);
    model(g, n, count);
    int threads = 1 + rand_r(&seed) % 4, queue = 1 + rand_r(&seed) % 4;
    dsp_run_stats st;
    int err = run_text(ctx, text, threads, queue, DSP_ON_ERROR_SKIP, errors, &st);
    int nfailed = 0;
    for (int i = 0; i < count; i++)
        nfailed += failed_seen[i];
    ck_assert_msg(err == (nfailed ? DSP_EFAILED : 0), "run returned %d (%s), %d failures "
                  "expected (threads %d queue %d)\n%s", err, dsp_context_errmsg(ctx), nfailed,
                  threads, queue, text);
    ck_assert_int_eq(st.items_failed, nfailed);
    ck_assert_int_eq(st.items_in, count);
    ck_assert_int_eq(count_lines(errors), nfailed);
    for (int i = 0; i < n; i++)
        if (!g[i].has_consumer)
            check_leaf(text, i, &g[i].out);
    for (int i = 0; i < n; i++)
        free(g[i].out.r);
    free(text);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

/* The completion journal of a random graph (splits, merges, filters,
 * failures, any thread count) lists exactly the items that failed nowhere,
 * once each, and --resume then runs exactly the failed ones again. */
START_TEST(test_journal_random_dags)
{
    dsp_context *ctx = new_ctx();
    unsigned seed = 4242u + (unsigned)_i * 7919u;
    mnode g[24];
    int n, count = 300 + rand_r(&seed) % 1500, nfailed = 0, lines = 0;
    static unsigned char listed[1 << 16];
    char errors[512], journal[512], line[256];
    dsp_run_opts o;
    dsp_run_stats st;
    FILE *f;

    make_tmpdir();
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    snprintf(journal, sizeof(journal), "%s/done.jsonl", tmpdir);
    char *text = random_pipe(&seed, g, &n, count, 1);
    model(g, n, count);
    for (int i = 0; i < count; i++)
        nfailed += failed_seen[i];
    dsp_run_opts_init(&o);
    o.threads = 1 + rand_r(&seed) % 4;
    o.queue_size = 1 + rand_r(&seed) % 4;
    o.errors_path = errors;
    ck_assert_int_eq(run_opts(ctx, text, &o, &st), nfailed ? DSP_EFAILED : 0);

    memset(listed, 0, sizeof(listed));
    ck_assert_ptr_nonnull(f = fopen(journal, "r"));
    while (fgets(line, sizeof(line), f)) {
        json_t *jrec = json_loads(line, 0, NULL);
        const char *key = json_string_value(json_object_get(jrec, "key"));
        int item = -1;
        ck_assert_msg(key && sscanf(key, "n0:%d", &item) == 1 && item >= 0 && item < count,
                      "bad journal line %s", line);
        ck_assert_int_eq(json_integer_value(json_object_get(jrec, "item")), item);
        ck_assert_msg(!failed_seen[item], "item %d failed but was journaled\n%s", item, text);
        ck_assert_msg(!listed[item], "item %d journaled twice", item);
        listed[item] = 1;
        lines++;
        json_decref(jrec);
    }
    fclose(f);
    ck_assert_msg(lines == count - nfailed, "%d journal lines, want %d\n%s", lines,
                  count - nfailed, text);

    o.resume = 1;
    ck_assert_int_eq(run_opts(ctx, text, &o, &st), nfailed ? DSP_EFAILED : 0);
    ck_assert_int_eq(st.items_skipped, count - nfailed);
    ck_assert_int_eq(st.items_in, nfailed);
    ck_assert_int_eq(st.items_failed, nfailed);
    ck_assert_int_eq(count_lines(journal), count - nfailed);
    free(text);
    for (int i = 0; i < n; i++)
        free(g[i].out.r);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

/* The same graph gives byte-identical outputs whatever the thread count. */
START_TEST(test_deterministic_output)
{
    dsp_context *ctx = new_ctx();
    char text[2048], a[512], b[512], cmd[1100];

    make_tmpdir();
    for (int run = 0; run < 2; run++) {
        snprintf(text, sizeof(text),
                 "g = test.gen count=3000\nx = test.split n=3\ny = test.noop\nz = test.merge\n"
                 "f = test.filter modulo=5 remainder=1\ns = sink.jsonl path=%s/out%d.jsonl\n"
                 "g -> x -> y -> z.in\ng -> f -> z.in\nz -> s\n", tmpdir, run);
        ck_assert_int_eq(run_text(ctx, text, run ? 4 : 1, run ? 1 : 64, DSP_ON_ERROR_SKIP,
                                  "/dev/null", NULL), 0);
    }
    snprintf(a, sizeof(a), "%s/out0.jsonl", tmpdir);
    snprintf(b, sizeof(b), "%s/out1.jsonl", tmpdir);
    ck_assert_int_eq(count_lines(a), 2400);   /* split parts 1,2 find no partner */
    snprintf(cmd, sizeof(cmd), "cmp -s %s %s", a, b);
    ck_assert_int_eq(system(cmd), 0);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_abort_policy)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512], errors[512];
    struct stat st;

    make_tmpdir();
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    snprintf(path, sizeof(path), "%s/out.jsonl", tmpdir);
    snprintf(text, sizeof(text), "g = test.gen count=5000\nf = test.fail items=[40]\n"
             "s = sink.jsonl path=%s\ng -> f -> s\n", path);
    int err = run_text(ctx, text, 2, 4, DSP_ON_ERROR_ABORT, errors, NULL);
    ck_assert_int_lt(err, 0);
    ck_assert_int_ne(err, DSP_EFAILED);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "item 40"));
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "node 'f'"));
    ck_assert_int_eq(count_lines(errors), 1);
    /* an aborted run leaves no half-written output */
    ck_assert_int_ne(stat(path, &st), 0);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_skip_policy_partial_output)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512], errors[512];

    make_tmpdir();
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    snprintf(path, sizeof(path), "%s/out.jsonl", tmpdir);
    snprintf(text, sizeof(text), "g = test.gen count=100\nf = test.fail items=[3, 50, 99]\n"
             "s = sink.jsonl path=%s\ng -> f -> s\n", path);
    ck_assert_int_eq(run_text(ctx, text, 2, 2, DSP_ON_ERROR_SKIP, errors, NULL), DSP_EFAILED);
    ck_assert_int_eq(count_lines(path), 97);
    ck_assert_int_eq(count_lines(errors), 3);
    {
        FILE *f = fopen(errors, "r");
        char line[1024];
        json_t *o;
        ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
        fclose(f);
        o = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(o);
        ck_assert_str_eq(json_string_value(json_object_get(o, "node")), "f");
        ck_assert_str_eq(json_string_value(json_object_get(o, "op")), "test.fail");
        ck_assert_int_eq(json_integer_value(json_object_get(o, "item")), 3);
        ck_assert_str_eq(json_string_value(json_object_get(o, "input")), "gen:3");
        ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "error")), "3"));
        json_decref(o);
    }
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_init_failure)
{
    dsp_context *ctx = new_ctx();
    int err = run_text(ctx, "g = test.gen count=10\nf = test.fail in_init=true\n"
                       "s = sink.null\ng -> f -> s\n", 2, 4, DSP_ON_ERROR_SKIP, "/dev/null",
                       NULL);
    ck_assert_int_lt(err, 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "stress.pipe:2"));
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "'f'"));
    dsp_context_free(&ctx);
}
END_TEST

typedef struct intr_arg {
    dsp_pipeline *p;
    int ms;
} intr_arg;

static void *interrupt_later(void *arg)
{
    intr_arg *a = arg;
    struct timespec ts = { a->ms / 1000, (a->ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    dsp_pipeline_interrupt(a->p);
    return NULL;
}

START_TEST(test_interrupt_drains_and_commits)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512];
    dsp_pipeline *p;
    dsp_run_opts o;
    pthread_t th;
    intr_arg a;
    int lines, err;
    char errors[512];

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/out.jsonl", tmpdir);
    snprintf(text, sizeof(text), "g = test.gen count=100000\nd = test.delay ms=1\n"
             "s = sink.jsonl path=%s\ng -> d -> s\n", path);
    ck_assert_int_eq(dsp_pipeline_load_string(ctx, "intr.pipe", text, NULL, &p), 0);
    dsp_run_opts_init(&o);
    o.threads = 2;
    /* errors and the completion journal (sink.jsonl resumes) in tmpdir, not the cwd */
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    o.errors_path = errors;
    a.p = p;
    a.ms = 300;
    pthread_create(&th, NULL, interrupt_later, &a);
    time_t t0 = time(NULL);
    err = dsp_pipeline_run(p, &o);
    pthread_join(th, NULL);
    ck_assert_int_eq(err, DSP_EINTR);
    ck_assert_int_lt(time(NULL) - t0, 20);
    /* the sink closed cleanly: a committed file of whole records, in order */
    lines = count_lines(path);
    ck_assert_int_gt(lines, 10);
    ck_assert_int_lt(lines, 100000);
    dsp_pipeline_free(&p);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

/* A source whose packets count themselves: each carries a 4 KiB buffer
 * whose release callback decrements the number alive. */
static atomic_long live_packets, max_live;
static int64_t live_count;

static void live_release(void *opaque, void *data)
{
    (void)opaque;
    free(data);
    atomic_fetch_sub(&live_packets, 1);
}

static int live_process(dsp_node *node, dsp_packet **in)
{
    if (live_count-- <= 0)
        return DSP_EOF;
    dsp_packet *p = dsp_node_packet_new(node);
    dsp_buffer *buf;
    dsp_tensor *t;
    int64_t shape[1] = { 1024 };
    void *mem = malloc(4096);
    long now;
    if (!p || !mem || dsp_buffer_wrap(mem, 4096, 0, live_release, NULL, &buf) < 0)
        return DSP_ENOMEM;
    now = atomic_fetch_add(&live_packets, 1) + 1;
    for (long m = atomic_load(&max_live); now > m && !atomic_compare_exchange_weak(&max_live, &m, now);)
        ;
    if (dsp_tensor_from_buffer(DSP_DTYPE_F32, 1, shape, NULL, buf, 0, &t) < 0)
        return DSP_ENOMEM;
    dsp_buffer_unref(&buf);
    dsp_packet_set_tensor(p, "x", t);
    return dsp_node_emit(node, 0, p);
}

static const dsp_port_def live_out[] = { { "out", "tensor", "counted packets" }, { NULL } };
static const dsp_op_def live_op = {
    .struct_size = sizeof(dsp_op_def), .name = "tl.source", .doc = "counted packets",
    .outputs = live_out, .flags = DSP_OP_SOURCE, .process = live_process,
};
static const dsp_op_def *const live_ops[] = { &live_op, NULL };
static const dsp_plugin_desc live_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "tl", "1", "MIT", "live count", live_ops,
    { 0 }
};

/* 100,000 packets through a slow stage: with bounded queues only a few
 * dozen are ever alive at once (unbounded, it would be nearly all). */
START_TEST(test_backpressure_bounds_memory)
{
    dsp_context *ctx = new_ctx();

    ck_assert_int_eq(dsp_context_register(ctx, &live_desc, "test_sched.c"), 0);
    live_count = 100000;
    atomic_store(&live_packets, 0);
    atomic_store(&max_live, 0);
    ck_assert_int_eq(run_text(ctx, "g = tl.source\na = test.noop\nd = test.delay ms=0.001\n"
                              "s = sink.null\ng -> a -> d -> s\n", 2, 4, DSP_ON_ERROR_SKIP,
                              "/dev/null", NULL), 0);
    ck_assert_int_eq(atomic_load(&live_packets), 0);     /* none leaked */
    ck_assert_int_lt(atomic_load(&max_live), 100);
    ck_assert_int_gt(atomic_load(&max_live), 1);
    printf("backpressure: at most %ld of 100000 packets alive at once\n",
           (long)atomic_load(&max_live));
    dsp_context_free(&ctx);
}
END_TEST

/* A batchable operator defined here: tags each packet with its batch size. */
static int tb_process_batch(dsp_node *node, dsp_packet **in, int n)
{
    for (int i = 0; i < n; i++) {
        dsp_packet *p;
        int err = dsp_packet_derive(in[i], &p);
        if (err < 0)
            return err;
        dsp_meta_set_int(dsp_packet_meta(p), "batch_n", n);
        if ((err = dsp_node_emit(node, 0, p)) < 0)
            return err;
    }
    return 0;
}

static int tb_process(dsp_node *node, dsp_packet **in)
{
    return tb_process_batch(node, in, 1);
}

static const dsp_port_def tb_in[] = { { "in", "any", "packets" }, { NULL } };
static const dsp_port_def tb_out[] = { { "out", "any", "packets tagged batch_n" }, { NULL } };
static const dsp_op_def tb_op = {
    .struct_size = sizeof(dsp_op_def), .name = "tb.batch", .doc = "tag batch sizes",
    .inputs = tb_in, .outputs = tb_out, .flags = DSP_OP_BATCHABLE, .max_batch = 8,
    .process = tb_process, .process_batch = tb_process_batch,
};
/* tb.failbatch: a batch op whose items i % 7 == 3 fail one by one
 * (dsp_node_fail_packet) while the rest of their batch goes on, and whose
 * whole call fails at items i % 50 == 20 (what it emitted before stays) */
static int fb_process_batch(dsp_node *node, dsp_packet **in, int n)
{
    for (int k = 0; k < n; k++) {
        int64_t item = dsp_packet_item(in[k]);
        if (item % 50 == 20)
            return dsp_node_fail(node, DSP_EIO, "device lost at item %lld", (long long)item);
        int err = item % 7 == 3 ? dsp_node_fail_packet(node, in[k], DSP_EFORMAT, "bad input %lld", (long long)item)
                                : dsp_node_emit(node, 0, dsp_packet_ref(in[k]));
        if (err < 0)
            return err;
    }
    return 0;
}

static int fb_process(dsp_node *node, dsp_packet **in)
{
    return fb_process_batch(node, in, 1);
}

static const dsp_op_def fb_op = {
    .struct_size = sizeof(dsp_op_def), .name = "tb.failbatch", .doc = "fail some items of a batch",
    .inputs = tb_in, .outputs = tb_out, .flags = DSP_OP_BATCHABLE, .max_batch = 8,
    .process = fb_process, .process_batch = fb_process_batch,
};
static const dsp_op_def *const tb_ops[] = { &tb_op, &fb_op, NULL };
static const dsp_plugin_desc tb_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "tb", "1", "MIT", "batch test", tb_ops,
    { 0 }
};

/* Batchable operators that fail every item divisible by 7: tf.batch fails
 * the whole batch such an item is in (and notes which items it failed),
 * tf.single has no process_batch, so the core calls process per packet. */
static unsigned char tf_failed[256];

static int tf_process(dsp_node *node, dsp_packet **in)
{
    if (dsp_packet_item(in[0]) % 7 == 0)
        return dsp_node_fail(node, DSP_EFORMAT, "item divisible by 7");
    return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
}

static int tf_process_batch(dsp_node *node, dsp_packet **in, int n)
{
    for (int i = 0; i < n; i++)
        if (dsp_packet_item(in[i]) % 7 == 0) {
            for (int k = 0; k < n; k++)
                tf_failed[dsp_packet_item(in[k])] = 1;
            return dsp_node_fail(node, DSP_EFORMAT, "a batch with an item divisible by 7");
        }
    for (int i = 0; i < n; i++) {
        int err = dsp_node_emit(node, 0, dsp_packet_ref(in[i]));
        if (err < 0)
            return err;
    }
    return 0;
}

static const dsp_op_def tf_batch_op = {
    .struct_size = sizeof(dsp_op_def), .name = "tf.batch", .doc = "fail batches",
    .inputs = tb_in, .outputs = tb_out, .flags = DSP_OP_BATCHABLE, .max_batch = 8,
    .process = tf_process, .process_batch = tf_process_batch,
};
static const dsp_op_def tf_single_op = {
    .struct_size = sizeof(dsp_op_def), .name = "tf.single", .doc = "fail items",
    .inputs = tb_in, .outputs = tb_out, .flags = DSP_OP_BATCHABLE, .max_batch = 8,
    .process = tf_process,
};
static const dsp_op_def *const tf_ops[] = { &tf_batch_op, &tf_single_op, NULL };
static const dsp_plugin_desc tf_desc = {
    DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), "tf", "1", "MIT", "batch failures",
    tf_ops, { 0 }
};

/* A failed batch fails every item in it, and a batchable op without
 * process_batch still runs the packets after a failing one: the sink counts
 * exactly the items that did not fail, and the journal lists exactly them. */
START_TEST(test_batch_failures_fail_their_items)
{
    dsp_context *ctx = new_ctx();
    const char *op = _i ? "tf.single" : "tf.batch";
    char text[1024], errors[512], journal[512], line[256], key[32];
    int count = 200, nfailed = 0;
    dsp_run_stats st;
    FILE *f;

    ck_assert_int_eq(dsp_context_register(ctx, &tf_desc, "test_sched.c"), 0);
    make_tmpdir();
    memset(tf_failed, 0, sizeof(tf_failed));
    if (_i)
        for (int i = 0; i < count; i += 7)
            tf_failed[i] = 1;
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    snprintf(journal, sizeof(journal), "%s/done.jsonl", tmpdir);
    /* test.count's expect makes its flush fail on a packet lost on the way */
    snprintf(text, sizeof(text), "g = test.gen count=%d\nb = %s batch=4\nc = test.count "
             "expect=%s\ng -> b -> c\n", count, op, _i ? "171" : "-1");
    ck_assert_int_eq(run_text(ctx, text, 2, 3, DSP_ON_ERROR_SKIP, errors, &st), DSP_EFAILED);
    for (int i = 0; i < count; i++)
        nfailed += tf_failed[i];
    ck_assert_int_gt(nfailed, 0);
    ck_assert_int_eq(st.items_failed, nfailed);
    ck_assert_int_eq(count_lines(errors), nfailed);
    ck_assert_int_eq(count_lines(journal), count - nfailed);
    ck_assert_ptr_nonnull(f = fopen(journal, "r"));
    while (fgets(line, sizeof(line), f))
        for (int i = 0; i < count; i++) {
            snprintf(key, sizeof(key), "\"g:%d\"", i);
            ck_assert_msg(!(tf_failed[i] && strstr(line, key)), "failed item %d journaled", i);
        }
    fclose(f);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

/* Reads batch_n of every record of a JSONL file; returns the count. */
static int read_batches(const char *path, int *sizes, int max)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) && n < max) {
        json_t *o = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "item")), n);
        sizes[n++] = (int)json_integer_value(json_object_get(json_object_get(o, "meta"),
                                                             "batch_n"));
        json_decref(o);
    }
    fclose(f);
    return n;
}

START_TEST(test_batches_full_until_end)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512];
    static int sizes[2000];

    ck_assert_int_eq(dsp_context_register(ctx, &tb_desc, "test_sched.c"), 0);
    make_tmpdir();
    snprintf(path, sizeof(path), "%s/b.jsonl", tmpdir);
    /* a long timeout: every batch is full but the last, flushed at the end */
    snprintf(text, sizeof(text), "g = test.gen count=1002\nb = tb.batch batch=4 "
             "batch_timeout_ms=600000\ns = sink.jsonl path=%s\ng -> b -> s\n", path);
    ck_assert_int_eq(run_text(ctx, text, 2, 2, DSP_ON_ERROR_SKIP, "/dev/null", NULL), 0);
    ck_assert_int_eq(read_batches(path, sizes, 2000), 1002);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(sizes[i], 4);
    ck_assert_int_eq(sizes[1000], 2);
    ck_assert_int_eq(sizes[1001], 2);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_batches_timeout)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512];
    static int sizes[2000];
    int n, partial = 0;

    ck_assert_int_eq(dsp_context_register(ctx, &tb_desc, "test_sched.c"), 0);
    make_tmpdir();
    snprintf(path, sizeof(path), "%s/b.jsonl", tmpdir);
    /* packets every 5 ms, batches of up to 8 waiting at most 1 ms: they run
     * partial, on the timeout, rather than waiting for 8 */
    snprintf(text, sizeof(text), "g = test.gen count=40\nd = test.delay ms=5\n"
             "b = tb.batch batch=8 batch_timeout_ms=1\ns = sink.jsonl path=%s\n"
             "g -> d -> b -> s\n", path);
    ck_assert_int_eq(run_text(ctx, text, 2, 16, DSP_ON_ERROR_SKIP, "/dev/null", NULL), 0);
    n = read_batches(path, sizes, 2000);
    ck_assert_int_eq(n, 40);
    for (int i = 0; i < n; i++) {
        ck_assert_int_le(sizes[i], 8);
        partial += sizes[i] < 8;
    }
    ck_assert_int_gt(partial, 30);
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

/* Items failed inside a batch are recorded each with its own item number,
 * input and message; the other items of their batches go on. */
START_TEST(test_batch_item_failures)
{
    dsp_context *ctx = new_ctx();
    char text[1024], path[512], errors[512];

    ck_assert_int_eq(dsp_context_register(ctx, &tb_desc, "test_sched.c"), 0);
    make_tmpdir();
    snprintf(errors, sizeof(errors), "%s/errors.jsonl", tmpdir);
    snprintf(path, sizeof(path), "%s/out.jsonl", tmpdir);
    snprintf(text, sizeof(text), "g = test.gen count=100\nb = tb.failbatch batch=8\n"
             "s = sink.jsonl path=%s\ng -> b -> s\n", path);
    ck_assert_int_eq(run_text(ctx, text, 2, 4, DSP_ON_ERROR_SKIP, errors, NULL), DSP_EFAILED);
    /* every item is either written or in the errors file, never both */
    int state[100] = { 0 };     /* 1 written, 2 failed alone, 3 lost with its batch */
    FILE *f = fopen(path, "r");
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        int64_t item = json_integer_value(json_object_get(o, "item"));
        ck_assert(item >= 0 && item < 100 && state[item] == 0);
        state[item] = 1;
        json_decref(o);
    }
    fclose(f);
    f = fopen(errors, "r");
    while (fgets(line, sizeof(line), f)) {
        json_t *o = json_loads(line, 0, NULL);
        int64_t item = json_integer_value(json_object_get(o, "item"));
        const char *msg = json_string_value(json_object_get(o, "error"));
        char want[64], input[32];
        ck_assert(item >= 0 && item < 100 && state[item] == 0);
        snprintf(input, sizeof(input), "gen:%lld", (long long)item);
        ck_assert_str_eq(json_string_value(json_object_get(o, "input")), input);
        ck_assert_str_eq(json_string_value(json_object_get(o, "node")), "b");
        if (strstr(msg, "bad input")) {
            snprintf(want, sizeof(want), "bad input %lld", (long long)item);
            ck_assert_str_eq(msg, want);
            state[item] = 2;
        } else {
            ck_assert_msg(strstr(msg, "device lost at item "), "%s", msg);
            state[item] = 3;
        }
        json_decref(o);
    }
    fclose(f);
    for (int i = 0; i < 100; i++) {
        ck_assert_msg(state[i] != 0, "item %d neither written nor failed", i);
        if (i % 7 == 3 && i % 50 != 20 && state[i] != 3)
            ck_assert_int_eq(state[i], 2);
        if (i % 50 == 20)
            ck_assert_int_eq(state[i], 3);
        if (state[i] == 3)      /* lost only with a failing call: at or after item 20 or 70 of its batch */
            ck_assert(i % 50 >= 20 && i % 50 < 20 + 8);
    }
    /* under abort the first such item stops the run */
    ck_assert_int_lt(run_text(ctx, text, 2, 4, DSP_ON_ERROR_ABORT, errors, NULL), 0);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "bad input 3"));
    remove_tmpdir();
    dsp_context_free(&ctx);
}
END_TEST

START_TEST(test_batch_param_validation)
{
    dsp_context *ctx = new_ctx();
    dsp_pipeline *p = NULL;

    ck_assert_int_eq(dsp_context_register(ctx, &tb_desc, "test_sched.c"), 0);
    ck_assert_int_eq(dsp_pipeline_load_string(ctx, "b.pipe", "g = test.gen\n"
                     "b = tb.batch batch=9\ns = sink.null\ng -> b -> s\n", NULL, &p),
                     DSP_ESYNTAX);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "b.pipe:2:"));
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "allowed: 1 to 8"));
    /* not batchable: no batch parameter */
    ck_assert_int_eq(dsp_pipeline_load_string(ctx, "c.pipe", "g = test.gen\n"
                     "b = test.noop batch=2\ns = sink.null\ng -> b -> s\n", NULL, &p),
                     DSP_ESYNTAX);
    ck_assert_ptr_nonnull(strstr(dsp_context_errmsg(ctx), "no parameter 'batch'"));
    dsp_context_free(&ctx);
}
END_TEST

Suite *sched_suite(void)
{
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("stress");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_random_dags, 0, getenv("DSP_STRESS_GRAPHS") ? atoi(getenv("DSP_STRESS_GRAPHS")) : 40);
    tcase_add_loop_test(tc, test_journal_random_dags, 0, 20);
    tcase_add_test(tc, test_deterministic_output);
    suite_add_tcase(s, tc);
    tc = tcase_create("policy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_abort_policy);
    tcase_add_test(tc, test_skip_policy_partial_output);
    tcase_add_test(tc, test_init_failure);
    tcase_add_test(tc, test_interrupt_drains_and_commits);
    tcase_add_test(tc, test_backpressure_bounds_memory);
    suite_add_tcase(s, tc);
    tc = tcase_create("batching");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_batches_full_until_end);
    tcase_add_loop_test(tc, test_batch_failures_fail_their_items, 0, 2);
    tcase_add_test(tc, test_batches_timeout);
    tcase_add_test(tc, test_batch_param_validation);
    tcase_add_test(tc, test_batch_item_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sched_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
