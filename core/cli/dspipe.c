/* dspipe.c - the dspipe command: run, validate and draw pipelines; list and inspect operators. */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dspipe/dspipe.h>

/* Exit statuses (documented in --help and the README). */
enum {
    EXIT_OK = 0,
    EXIT_RUN_FAILED = 1,        /* the run failed (abort, init, I/O, device,
                                   an unreadable journal) */
    EXIT_USAGE = 2,             /* bad command line or pipeline file (also
                                   --resume of a pipeline that cannot resume) */
    EXIT_ITEMS_FAILED = 3,      /* finished, but some items failed (errors file) */
    EXIT_INTERRUPTED = 130      /* stopped by SIGINT, outputs closed cleanly */
};

typedef struct cli {
    const char *command;        /* run, validate, graph, plugins, inspect */
    int threads;
    const char *device;
    const char *errors_path;
    const char *journal_path;
    int resume;
    dsp_on_error on_error;
    int queue;
    int profile;
    int quiet;
    int verbose;
    int progress;
    const char **sets;
    int nsets;
    const char **plugin_dirs;
    int ndirs;
} cli;

static dsp_pipeline *volatile running;
static volatile sig_atomic_t interrupts;
static int progress_active;

static void usage(FILE *out)
{
    fputs(
"usage: dspipe [OPTIONS] FILE.pipe [ARGS...]      run a pipeline\n"
"       dspipe run [OPTIONS] FILE.pipe [ARGS...]  the same\n"
"       dspipe validate FILE.pipe [ARGS...]       check it without running\n"
"       dspipe graph FILE.pipe [ARGS...]          print the graph as Graphviz dot\n"
"       dspipe plugins                            list plugins and their operators\n"
"       dspipe inspect OP                         ports and parameters of an operator\n"
"\n"
"ARGS bind to the pipeline's `arg` declarations in order.\n"
"\n"
"options:\n"
"  -s, --set NAME=VALUE     bind a pipeline arg by name (repeatable)\n"
"  -j, --threads N          worker threads (default: number of cores)\n"
"      --device DEV         cpu (default), cuda, cuda:N, or auto (CUDA if usable)\n"
"      --on-error POLICY    skip (default): record failed items in the errors file and\n"
"                           go on; abort: stop at the first failure\n"
"      --errors FILE        where failed items are recorded (default errors.jsonl)\n"
"      --journal FILE       where finished items are recorded, one line each\n"
"                           (default done.jsonl beside the errors file)\n"
"      --resume             skip the items the journal lists as done (after an\n"
"                           interrupted or killed run); new completions are added\n"
"      --queue N            packets per edge before the producer waits (default 16)\n"
"      --plugin-path DIR    search DIR for plugins first (repeatable); also\n"
"                           $DSPIPE_PLUGIN_PATH, then the installed plugin directory\n"
"      --profile            print per-node time, packets, queue waits and batches\n"
"  -q, --quiet              no progress bar, warnings and errors only\n"
"  -v, --verbose            more log output (twice: debug)\n"
"      --version            print the version\n"
"  -h, --help               this help\n"
"\n"
"exit status: 0 success; 1 the run failed; 2 bad command line or pipeline file;\n"
"             3 finished but some items failed (see the errors file);\n"
"             130 interrupted (outputs were closed cleanly)\n", out);
}

static void on_sigint(int sig)
{
    (void)sig;
    if (++interrupts > 1) {
        static const char msg[] = "\ndspipe: interrupted twice, quitting now\n";
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
            /* nothing sensible left to do */
        }
        _exit(EXIT_INTERRUPTED);
    }
    if (running)
        dsp_pipeline_interrupt(running);
}

/* Log lines must not run into the progress line. */
static void log_to_stderr(void *user, dsp_log_level level, const char *ctx, const char *msg)
{
    static const char *const prefix[] = { "error: ", "warning: ", "", "", "debug: " };
    (void)user;
    fprintf(stderr, "%s%s%s%s%s%s\n", progress_active ? "\r\033[K" : "",
            ctx ? "[" : "", ctx ? ctx : "", ctx ? "] " : "", prefix[level], msg);
}

static int parse_args(int argc, char **argv, cli *c, int *first_pos)
{
    enum { OPT_DEVICE = 256, OPT_ON_ERROR, OPT_ERRORS, OPT_QUEUE, OPT_PLUGIN_PATH,
           OPT_PROFILE, OPT_VERSION, OPT_JOURNAL, OPT_RESUME };
    static const struct option longopts[] = {
        { "set", required_argument, NULL, 's' },
        { "threads", required_argument, NULL, 'j' },
        { "device", required_argument, NULL, OPT_DEVICE },
        { "on-error", required_argument, NULL, OPT_ON_ERROR },
        { "errors", required_argument, NULL, OPT_ERRORS },
        { "journal", required_argument, NULL, OPT_JOURNAL },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "queue", required_argument, NULL, OPT_QUEUE },
        { "plugin-path", required_argument, NULL, OPT_PLUGIN_PATH },
        { "profile", no_argument, NULL, OPT_PROFILE },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int opt;
    char *end;

    c->sets = calloc(argc, sizeof(*c->sets));
    c->plugin_dirs = calloc(argc, sizeof(*c->plugin_dirs));
    if (!c->sets || !c->plugin_dirs)
        return EXIT_RUN_FAILED;
    while ((opt = getopt_long(argc, argv, "s:j:qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (!strchr(optarg, '=')) {
                fprintf(stderr, "dspipe: --set %s: expected NAME=VALUE\n", optarg);
                return EXIT_USAGE;
            }
            c->sets[c->nsets++] = optarg;
            break;
        case 'j':
            c->threads = (int)strtol(optarg, &end, 10);
            if (*end || c->threads < 1 || c->threads > 1024) {
                fprintf(stderr, "dspipe: --threads %s: expected a number from 1 to 1024\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_DEVICE:
            c->device = optarg;
            break;
        case OPT_ON_ERROR:
            if (!strcmp(optarg, "abort"))
                c->on_error = DSP_ON_ERROR_ABORT;
            else if (!strcmp(optarg, "skip"))
                c->on_error = DSP_ON_ERROR_SKIP;
            else {
                fprintf(stderr, "dspipe: --on-error %s: expected abort or skip\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_ERRORS:
            c->errors_path = optarg;
            break;
        case OPT_JOURNAL:
            c->journal_path = optarg;
            break;
        case OPT_RESUME:
            c->resume = 1;
            break;
        case OPT_QUEUE:
            c->queue = (int)strtol(optarg, &end, 10);
            if (*end || c->queue < 1 || c->queue > 1 << 20) {
                fprintf(stderr, "dspipe: --queue %s: expected a number from 1 to 1048576\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_PLUGIN_PATH:
            c->plugin_dirs[c->ndirs++] = optarg;
            break;
        case OPT_PROFILE:
            c->profile = 1;
            break;
        case 'q':
            c->quiet = 1;
            break;
        case 'v':
            c->verbose++;
            break;
        case OPT_VERSION:
            printf("dspipe %s (plugin ABI %d)\n", dsp_version(), DSP_PLUGIN_ABI_VERSION);
            exit(EXIT_OK);
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            fputs("Try 'dspipe --help'.\n", stderr);
            return EXIT_USAGE;
        }
    }
    *first_pos = optind;
    return EXIT_OK;
}

static int cmd_plugins(dsp_context *ctx)
{
    const dsp_plugin_desc *d;
    const char *origin;

    for (int i = 0; (d = dsp_context_plugin_at(ctx, i, &origin)); i++) {
        printf("%s %s (%s) - %s\n  %s\n", d->name, d->version ? d->version : "",
               d->license ? d->license : "no license given",
               d->description ? d->description : "", origin);
        for (int k = 0; d->ops[k]; k++)
            printf("    %-22s %s\n", d->ops[k]->name, d->ops[k]->doc ? d->ops[k]->doc : "");
    }
    if (!dsp_context_plugin_at(ctx, 0, NULL)) {
        fprintf(stderr, "dspipe: no plugins found; set DSPIPE_PLUGIN_PATH or use "
                "--plugin-path DIR\n");
        return EXIT_RUN_FAILED;
    }
    return EXIT_OK;
}

static int cmd_inspect(dsp_context *ctx, const char *name)
{
    const dsp_op_def *op = dsp_context_find_op(ctx, name);
    if (!op) {
        const dsp_op_def *o;
        const char *best = NULL;
        size_t plen = strcspn(name, ".");
        fprintf(stderr, "dspipe: no operator '%s' is loaded", name);
        for (int i = 0; (o = dsp_context_op_at(ctx, i)); i++)
            if (!strncmp(o->name, name, plen) && o->name[plen] == '.')
                best = o->name;
        if (best)
            fprintf(stderr, " (operators of that family include '%s')", best);
        fputs("; 'dspipe plugins' lists them all\n", stderr);
        return EXIT_USAGE;
    }
    dsp_op_write_help(ctx, op, stdout);
    return EXIT_OK;
}

static int exit_status_for(int err)
{
    switch (err) {
    case 0:
        return EXIT_OK;
    case DSP_EFAILED:
        return EXIT_ITEMS_FAILED;
    case DSP_EINTR:
        return EXIT_INTERRUPTED;
    case DSP_ESYNTAX:
    case DSP_EINVAL:
        return EXIT_USAGE;
    default:
        return EXIT_RUN_FAILED;
    }
}

static int cmd_pipeline(dsp_context *ctx, cli *c, int argc, char **argv)
{
    dsp_pipe_args args = { 0 };
    dsp_pipeline *p = NULL;
    dsp_run_opts o;
    dsp_run_stats st;
    char skipped[48];
    struct sigaction sa;
    int err;

    if (argc < 1) {
        fprintf(stderr, "dspipe %s: which pipeline file?\n", c->command);
        return EXIT_USAGE;
    }
    args.npositional = argc - 1;
    args.positional = (const char *const *)argv + 1;
    args.nset = c->nsets;
    args.set = c->sets;
    if ((err = dsp_pipeline_load(ctx, argv[0], &args, &p)) < 0) {
        const char *msg = dsp_context_errmsg(ctx);
        fprintf(stderr, "%s%s", msg, msg[0] && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
        return err == DSP_ESYNTAX || err == DSP_ENOENT || err == DSP_EINVAL
                   ? EXIT_USAGE : EXIT_RUN_FAILED;
    }
    if (!strcmp(c->command, "validate")) {
        if (!c->quiet)
            fprintf(stderr, "%s: valid\n", argv[0]);
        dsp_pipeline_free(&p);
        return EXIT_OK;
    }
    if (!strcmp(c->command, "graph")) {
        err = dsp_pipeline_write_dot(p, stdout);
        dsp_pipeline_free(&p);
        return err < 0 ? EXIT_RUN_FAILED : EXIT_OK;
    }

    dsp_run_opts_init(&o);
    o.threads = c->threads;
    o.device = c->device;
    o.on_error = c->on_error;
    o.errors_path = c->errors_path;
    o.journal_path = c->journal_path;
    o.resume = c->resume;
    o.queue_size = c->queue;
    o.profile = c->profile;
    o.progress = c->progress;
    progress_active = c->progress;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    running = p;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    err = dsp_pipeline_run(p, &o);
    running = NULL;
    progress_active = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);

    dsp_pipeline_stats(p, &st);
    snprintf(skipped, sizeof(skipped), ", %lld already done", (long long)st.items_skipped);
    if (c->profile)
        dsp_pipeline_write_profile(p, stderr);
    if (err < 0)
        fprintf(stderr, "dspipe: %s\n", dsp_context_errmsg(ctx));
    if (!c->quiet && (err == 0 || err == DSP_EFAILED || err == DSP_EINTR))
        fprintf(stderr, "dspipe: %lld item%s in %.2f s (%.1f items/s), %lld failed%s\n",
                (long long)st.items_in, st.items_in == 1 ? "" : "s", st.seconds,
                st.seconds > 0 ? st.items_in / st.seconds : 0.0,
                (long long)st.items_failed, c->resume ? skipped : "");
    dsp_pipeline_free(&p);
    return exit_status_for(err);
}

int main(int argc, char **argv)
{
    cli c = { 0 };
    dsp_context *ctx = NULL;
    int first, rc;

    if ((rc = parse_args(argc, argv, &c, &first)) != EXIT_OK)
        goto out;
    argc -= first;
    argv += first;
    if (argc < 1) {
        usage(stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    c.command = "run";
    if (!strcmp(argv[0], "run") || !strcmp(argv[0], "validate") ||
        !strcmp(argv[0], "graph") || !strcmp(argv[0], "plugins") ||
        !strcmp(argv[0], "inspect")) {
        c.command = argv[0];
        argc--;
        argv++;
    }
    dsp_log_set_callback(log_to_stderr, NULL);
    if (c.quiet)
        dsp_log_set_level(DSP_LOG_WARNING);
    else if (c.verbose)
        dsp_log_set_level(c.verbose > 1 ? DSP_LOG_DEBUG : DSP_LOG_VERBOSE);
    c.progress = !c.quiet && isatty(STDERR_FILENO);

    if (dsp_context_new(&ctx) < 0) {
        fputs("dspipe: out of memory\n", stderr);
        rc = EXIT_RUN_FAILED;
        goto out;
    }
    for (int i = 0; i < c.ndirs; i++)
        dsp_context_add_plugin_dir(ctx, c.plugin_dirs[i]);
    if (dsp_context_load_plugins(ctx) < 0) {
        fputs("dspipe: out of memory while loading plugins\n", stderr);
        rc = EXIT_RUN_FAILED;
        goto out;
    }

    if (!strcmp(c.command, "plugins"))
        rc = cmd_plugins(ctx);
    else if (!strcmp(c.command, "inspect")) {
        if (argc != 1) {
            fputs("usage: dspipe inspect OP   ('dspipe plugins' lists operators)\n", stderr);
            rc = EXIT_USAGE;
        } else {
            rc = cmd_inspect(ctx, argv[0]);
        }
    } else {
        rc = cmd_pipeline(ctx, &c, argc, argv);
    }
out:
    dsp_context_free(&ctx);
    free(c.sets);
    free(c.plugin_dirs);
    return rc;
}
