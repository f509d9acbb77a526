/* dspipe/dspipe.h - the host API: load plugins, parse a .pipe file, run it.
 *
 * A program that runs a pipeline:
 *
 *     #include <dspipe/dspipe.h>
 *
 *     dsp_context *ctx;
 *     dsp_pipeline *pipe = NULL;
 *     if (dsp_context_new(&ctx) < 0) return 1;
 *     dsp_context_load_plugins(ctx);                 // default search path
 *
 *     const char *pos[] = { "/data/study42" };
 *     dsp_pipe_args args = { .npositional = 1, .positional = pos };
 *     if (dsp_pipeline_load(ctx, "medical_ct.pipe", &args, &pipe) < 0) {
 *         fputs(dsp_context_errmsg(ctx), stderr);   // file:line:col + caret
 *         dsp_context_free(&ctx);
 *         return 2;
 *     }
 *     dsp_run_opts opts;
 *     dsp_run_opts_init(&opts);
 *     opts.threads = 4;
 *     int err = dsp_pipeline_run(pipe, &opts);
 *     if (err < 0) fprintf(stderr, "%s\n", dsp_context_errmsg(ctx));
 *     dsp_pipeline_free(&pipe);
 *     dsp_context_free(&ctx);
 *
 * Threading: a context and its pipelines are used from one thread at a time,
 * except dsp_pipeline_interrupt(), which may be called from any thread.
 */
#ifndef DSPIPE_DSPIPE_H
#define DSPIPE_DSPIPE_H

#include <stdio.h>
#include <dspipe/common.h>
#include <dspipe/tensor.h>
#include <dspipe/packet.h>
#include <dspipe/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * Context: the operator registry (plugins) and the last error message.
 * ------------------------------------------------------------------------- */
typedef struct dsp_context dsp_context;

DSP_API int dsp_context_new(dsp_context **out);
DSP_API void dsp_context_free(dsp_context **ctx);

/* The message of the last failed call on ctx or on a pipeline made from it
 * (may span several lines for pipeline diagnostics). Never NULL; "" when
 * there is none. Borrowed until the next call on ctx. */
DSP_API const char *dsp_context_errmsg(const dsp_context *ctx);

/* Append a directory to the plugin search path. Directories are searched in
 * this order: those added here (--plugin-path), then $DSPIPE_PLUGIN_PATH
 * (':'-separated), then the installed plugin directory. */
DSP_API int dsp_context_add_plugin_dir(dsp_context *ctx, const char *dir);

/* Load every *.so in the search path. A plugin that fails to load (ABI
 * mismatch, no entry symbol, duplicate operator) is reported through the log
 * with the file and the versions and skipped; the others stay loaded.
 * Returns the number of plugins that failed (0 = all fine), or DSP_ENOMEM. */
DSP_API int dsp_context_load_plugins(dsp_context *ctx);

/* Load one plugin file. Returns 0, DSP_ENOENT (no such file, or no entry
 * symbol), DSP_EABI (version or descriptor mismatch) or DSP_EEXIST (an
 * operator name already registered); the message names the file and, for a
 * mismatch, both versions. */
DSP_API int dsp_context_load_plugin(dsp_context *ctx, const char *path);

/* Register the operators of a descriptor linked into the program itself
 * (no dlopen). Same checks as dsp_context_load_plugin; origin names it in
 * messages. */
DSP_API int dsp_context_register(dsp_context *ctx, const dsp_plugin_desc *desc,
                                 const char *origin);

/* Registered operators, sorted by name. NULL past the end. */
DSP_API const dsp_op_def *dsp_context_op_at(const dsp_context *ctx, int i);
DSP_API const dsp_op_def *dsp_context_find_op(const dsp_context *ctx,
                                              const char *name);
/* The file (or origin) and descriptor an operator came from. */
DSP_API const char *dsp_context_op_origin(const dsp_context *ctx,
                                          const dsp_op_def *op);
DSP_API const dsp_plugin_desc *dsp_context_op_plugin(const dsp_context *ctx,
                                                     const dsp_op_def *op);

/* Loaded plugins, in load order: the descriptor, and in *origin (borrowed)
 * the file it came from. NULL past the end. */
DSP_API const dsp_plugin_desc *dsp_context_plugin_at(const dsp_context *ctx,
                                                     int i, const char **origin);

/* Describe an operator like gst-inspect: doc, origin, flags, ports with
 * types, parameters with type, range or choices, default and doc. */
DSP_API int dsp_op_write_help(const dsp_context *ctx, const dsp_op_def *op,
                              FILE *out);

/* ---------------------------------------------------------------------------
 * Pipelines.
 * ------------------------------------------------------------------------- */
typedef struct dsp_pipeline dsp_pipeline;

/* Values for the pipeline's `arg` declarations: positional values bind to
 * args in declaration order; set[] holds "name=value" strings (--set). */
typedef struct dsp_pipe_args {
    int npositional;
    const char *const *positional;
    int nset;
    const char *const *set;
} dsp_pipe_args;

/* Parse and validate a .pipe file (args may be NULL). Nothing runs and no
 * operator's init() is called. On failure returns DSP_ESYNTAX (or DSP_EIO,
 * DSP_ENOMEM) and dsp_context_errmsg() holds every diagnostic, each as
 * "file:line:col: error: ...", the source line, a caret, and a hint. */
DSP_API int dsp_pipeline_load(dsp_context *ctx, const char *path,
                              const dsp_pipe_args *args, dsp_pipeline **out);
/* The same for text held in memory; name is used in messages. */
DSP_API int dsp_pipeline_load_string(dsp_context *ctx, const char *name,
                                     const char *text,
                                     const dsp_pipe_args *args,
                                     dsp_pipeline **out);
DSP_API void dsp_pipeline_free(dsp_pipeline **p);

/* Graphviz dot of the validated graph: nodes with op and parameters, edges
 * labelled with ports and types. */
DSP_API int dsp_pipeline_write_dot(const dsp_pipeline *p, FILE *out);

typedef enum dsp_on_error {
    DSP_ON_ERROR_DEFAULT = 0,   /* the pipe file's `option on_error`, else skip */
    DSP_ON_ERROR_ABORT,         /* first failed item stops the run           */
    DSP_ON_ERROR_SKIP           /* record it in errors.jsonl and go on       */
} dsp_on_error;

typedef struct dsp_run_opts {
    uint32_t struct_size;       /* set by dsp_run_opts_init                  */
    int threads;                /* workers; 0 = number of cores              */
    const char *device;         /* "cpu", "cuda", "cuda:N", "auto"; NULL = cpu */
    dsp_on_error on_error;
    const char *errors_path;    /* NULL: pipe option `errors`, else errors.jsonl */
    int queue_size;             /* packets per edge; 0 = pipe option or 16   */
    int profile;                /* collect per-node statistics               */
    int progress;               /* draw a progress bar on stderr             */
    /* Completion journal (see docs/cli.md, "Resuming a run"). */
    const char *journal_path;   /* NULL: pipe option `journal`, else
                                   done.jsonl beside the errors file         */
    int resume;                 /* skip source items the journal lists       */
} dsp_run_opts;

DSP_API void dsp_run_opts_init(dsp_run_opts *opts);

/* Run to completion: init every node, stream all sources to their end,
 * flush, fini. Every source item that retires through the whole graph
 * without a failure gets a line in the completion journal; with
 * opts->resume the items the journal already lists are not run. Returns 0
 * when every item succeeded, DSP_EFAILED when some items failed and were
 * skipped (recorded in the errors file), DSP_EINTR when interrupted (sinks
 * still closed cleanly), DSP_EDEVICE when the device cannot be used,
 * DSP_EINVAL when resume is asked of a pipeline that cannot resume,
 * DSP_EFORMAT or DSP_EIO when the journal cannot be read, or the failing
 * code under on_error=abort or when a node's init fails. The message is in
 * dsp_context_errmsg(). */
DSP_API int dsp_pipeline_run(dsp_pipeline *p, const dsp_run_opts *opts);

/* Ask a running pipeline to stop: sources stop producing, what is in
 * flight drains, sinks close cleanly. Async-signal-safe. */
DSP_API void dsp_pipeline_interrupt(dsp_pipeline *p);

/* After a run: per-node statistics as text (the --profile table). */
DSP_API int dsp_pipeline_write_profile(const dsp_pipeline *p, FILE *out);

/* Counts of the last run. */
typedef struct dsp_run_stats {
    int64_t items_in;           /* items the sources started                 */
    int64_t items_failed;       /* items recorded as failed                  */
    int64_t packets;            /* packets moved across edges                */
    double seconds;             /* wall time of the run                      */
    int64_t items_skipped;      /* --resume: items the journal listed as done
                                   (not counted in items_in)                 */
} dsp_run_stats;
DSP_API void dsp_pipeline_stats(const dsp_pipeline *p, dsp_run_stats *out);

/* ---------------------------------------------------------------------------
 * Devices.
 * ------------------------------------------------------------------------- */

/* Resolve "cpu", "cuda", "cuda:N" or "auto" to a usable device. "auto"
 * takes CUDA when the backend module loads and a GPU answers, else the CPU
 * with one warning. "cuda" without a usable GPU fails with DSP_EDEVICE and
 * a message saying why (no CUDA build, no driver, no device). */
DSP_API int dsp_device_open(dsp_context *ctx, const char *spec,
                            dsp_device *out);
DSP_API const char *dsp_device_name(dsp_device dev, char *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_DSPIPE_H */
