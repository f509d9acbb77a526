/* pipeline.c - the public pipeline API: load a .pipe file, run it once, report. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scheduler.h"

/* A .pipe file is a few kilobytes; anything this large is a mistake. */
#define MAX_PIPE_FILE (16 << 20)

struct dsp_pipeline {
    dsp_context *ctx;
    dspi_graph *g;
    dspi_sched sched;
    int has_sched;
    int ran;
    atomic_int interrupt;       /* before the scheduler exists */
};

static int read_text(dsp_context *ctx, const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf;
    size_t n;

    *out = NULL;
    if (!f) {
        dspi_set_error(ctx, "%s: cannot open the pipeline file: %s", path, strerror(errno));
        return errno == ENOENT ? DSP_ENOENT : DSP_EIO;
    }
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PIPE_FILE) {
        dspi_set_error(ctx, "%s: not a pipeline file (a directory, a device, or over %d MiB)",
                       path, MAX_PIPE_FILE >> 20);
        fclose(f);
        return DSP_EINVAL;
    }
    if (!(buf = malloc(st.st_size + 1))) {
        fclose(f);
        return DSP_ENOMEM;
    }
    n = fread(buf, 1, st.st_size, f);
    if (ferror(f)) {
        dspi_set_error(ctx, "%s: read error: %s", path, strerror(errno));
        fclose(f);
        free(buf);
        return DSP_EIO;
    }
    fclose(f);
    buf[n] = 0;
    if (strlen(buf) != n) {
        dspi_set_error(ctx, "%s: contains a NUL byte; a pipeline file is text", path);
        free(buf);
        return DSP_EFORMAT;
    }
    *out = buf;
    return 0;
}

int dsp_pipeline_load_string(dsp_context *ctx, const char *name, const char *text,
                             const dsp_pipe_args *args, dsp_pipeline **out)
{
    dsp_pipeline *p;
    int err;

    *out = NULL;
    if (!(p = calloc(1, sizeof(*p))))
        return DSP_ENOMEM;
    p->ctx = ctx;
    if ((err = dspi_graph_parse(ctx, name, text, args, &p->g)) < 0) {
        free(p);
        return err;
    }
    *out = p;
    return 0;
}

int dsp_pipeline_load(dsp_context *ctx, const char *path, const dsp_pipe_args *args,
                      dsp_pipeline **out)
{
    char *text;
    int err;

    *out = NULL;
    if ((err = read_text(ctx, path, &text)) < 0)
        return err;
    err = dsp_pipeline_load_string(ctx, path, text, args, out);
    free(text);
    return err;
}

void dsp_pipeline_free(dsp_pipeline **pp)
{
    dsp_pipeline *p = pp ? *pp : NULL;
    if (!p)
        return;
    if (p->has_sched)
        dspi_sched_free(&p->sched);
    dspi_graph_free(&p->g);
    free(p);
    *pp = NULL;
}

int dsp_pipeline_write_dot(const dsp_pipeline *p, FILE *out)
{
    return dspi_graph_write_dot(p->g, out);
}

void dsp_run_opts_init(dsp_run_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)DSPI_MIN(n, 256) : 1;
}

/* The journal: --journal, else option journal, else done.jsonl beside the
 * errors file. NULL (no journal) when the errors file is not a regular
 * file (/dev/null): there is no folder of the run to put it in. */
static int journal_path(const dsp_run_opts *o, const dspi_graph *g, const char *errors_path,
                        char **out)
{
    const char *slash = strrchr(errors_path, '/');
    struct stat st;

    if (o->journal_path || g->journal_path)
        *out = strdup(o->journal_path ? o->journal_path : g->journal_path);
    else if (lstat(errors_path, &st) == 0 && !S_ISREG(st.st_mode)) {
        *out = NULL;
        return 0;
    } else
        *out = dspi_fmt("%.*sdone.jsonl", slash ? (int)(slash - errors_path + 1) : 0,
                        errors_path);
    return *out ? 0 : DSP_ENOMEM;
}

int dsp_pipeline_run(dsp_pipeline *p, const dsp_run_opts *opts)
{
    dsp_run_opts o;
    dsp_device dev;
    char *journal;
    int err, threads;

    dsp_run_opts_init(&o);
    if (opts)
        memcpy(&o, opts, DSPI_MIN(opts->struct_size ? opts->struct_size : sizeof(o),
                                  sizeof(o)));
    if (p->ran) {
        dspi_set_error(p->ctx, "%s: a pipeline runs once; load it again to run it again",
                       p->g->path);
        return DSP_ESTATE;
    }
    p->ran = 1;
    if ((err = dsp_device_open(p->ctx, o.device ? o.device : "cpu", &dev)) < 0)
        return err;
    if (o.threads < 0 || o.queue_size < 0) {
        dspi_set_error(p->ctx, "threads and queue size must not be negative");
        return DSP_EINVAL;
    }
    threads = o.threads ? o.threads : default_threads();
    if ((err = dspi_sched_init(&p->sched, p->ctx, p->g,
                               o.queue_size ? o.queue_size
                                            : p->g->queue_size ? p->g->queue_size : 16,
                               dev, o.profile)) < 0) {
        p->has_sched = 1;
        dspi_set_error(p->ctx, "cannot set up the run: %s", dsp_strerror(err));
        return err;
    }
    p->has_sched = 1;
    p->sched.on_error = o.on_error ? o.on_error
                                   : p->g->on_error ? p->g->on_error : DSP_ON_ERROR_SKIP;
    p->sched.errors_path = o.errors_path ? o.errors_path
                                         : p->g->errors_path ? p->g->errors_path
                                                             : "errors.jsonl";
    /* an errors file from an earlier run would describe failures that did
     * not happen in this one; only ever remove a regular file (never
     * /dev/null or a pipe someone pointed us at) */
    {
        struct stat st;
        if (lstat(p->sched.errors_path, &st) == 0 && S_ISREG(st.st_mode) &&
            unlink(p->sched.errors_path) == 0)
            dsp_log(DSP_LOG_VERBOSE, "dspipe", "removed %s of an earlier run",
                    p->sched.errors_path);
    }
    if (atomic_load(&p->interrupt))
        atomic_store(&p->sched.interrupt, 1);
    if ((err = journal_path(&o, p->g, p->sched.errors_path, &journal)) < 0)
        return err;
    err = dspi_sched_run(&p->sched, threads, o.progress, journal, o.resume);
    free(journal);
    return err;
}

void dsp_pipeline_interrupt(dsp_pipeline *p)
{
    atomic_store(&p->interrupt, 1);
    if (p->has_sched)
        atomic_store(&p->sched.interrupt, 1);
}

int dsp_pipeline_write_profile(const dsp_pipeline *p, FILE *out)
{
    if (!p->has_sched)
        return DSP_ESTATE;
    return dspi_sched_write_profile(&p->sched, out);
}

void dsp_pipeline_stats(const dsp_pipeline *p, dsp_run_stats *out)
{
    if (!p->has_sched) {
        memset(out, 0, sizeof(*out));
        return;
    }
    dspi_sched_stats(&p->sched, out);
}
