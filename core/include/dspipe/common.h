/* dspipe/common.h - error codes, logging and memory helpers shared by hosts and plugins. */
#ifndef DSPIPE_COMMON_H
#define DSPIPE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DSP_API __attribute__((visibility("default")))
#define DSP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define DSP_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define DSP_API
#define DSP_PRINTF(fmt, args)
#define DSP_WARN_UNUSED
#endif

#define DSP_VERSION_MAJOR 0
#define DSP_VERSION_MINOR 1
#define DSP_VERSION_MICRO 0
#define DSP_VERSION_STRING "0.1.0"

/* Library version as "MAJOR.MINOR.MICRO"; compare with DSP_VERSION_STRING to
 * detect a header/library mismatch. */
DSP_API const char *dsp_version(void);

/* ---------------------------------------------------------------------------
 * Error codes. Every function that can fail returns 0 on success or one of
 * these negative codes; the human-readable detail is kept on the object the
 * function worked on (dsp_context_errmsg, dsp_node_fail, ...).
 * ------------------------------------------------------------------------- */
enum {
    DSP_OK           = 0,
    DSP_EINVAL       = -1,   /* invalid argument or value                  */
    DSP_ENOMEM       = -2,   /* out of memory                              */
    DSP_EIO          = -3,   /* read/write/open failed (errno in message)  */
    DSP_ENOENT       = -4,   /* no such file, key, operator or port        */
    DSP_EFORMAT      = -5,   /* malformed or corrupt input data            */
    DSP_EUNSUPPORTED = -6,   /* valid but not supported (codec, dtype...)  */
    DSP_ESYNTAX      = -7,   /* pipeline file does not parse or validate   */
    DSP_EABI         = -8,   /* plugin ABI mismatch or bad descriptor      */
    DSP_EDEVICE      = -9,   /* compute device missing or failed           */
    DSP_EINTR        = -10,  /* interrupted (SIGINT, dsp_pipeline_interrupt) */
    DSP_ELIMIT       = -11,  /* a configured limit was exceeded            */
    DSP_EEXIST       = -12,  /* already exists (duplicate name)            */
    DSP_ESTATE       = -13,  /* call not valid in the object's state       */
    DSP_EFAILED      = -14,  /* some items failed and were skipped         */
    DSP_EOF          = -100  /* end of stream: not an error, sources return it when done */
};

/* A short static description of an error code ("invalid argument").
 * Never returns NULL; unknown codes give "unknown error". */
DSP_API const char *dsp_strerror(int code);

/* ---------------------------------------------------------------------------
 * Logging. Lines carry the context they come from: "[nodules@ct.nodules] ...".
 * The default callback writes to stderr; embedders replace it.
 * ------------------------------------------------------------------------- */
typedef enum dsp_log_level {
    DSP_LOG_ERROR   = 0,
    DSP_LOG_WARNING = 1,
    DSP_LOG_INFO    = 2,
    DSP_LOG_VERBOSE = 3,
    DSP_LOG_DEBUG   = 4
} dsp_log_level;

/* ctx is the context label ("node@op", "loader", ...) or NULL; msg has no
 * trailing newline. The callback may be called from any worker thread. */
typedef void (*dsp_log_fn)(void *user, dsp_log_level level, const char *ctx,
                           const char *msg);

/* Replace the log sink; NULL restores the default (stderr). Not thread-safe
 * against concurrent logging: call it before running pipelines. */
DSP_API void dsp_log_set_callback(dsp_log_fn fn, void *user);
/* Messages above this level are dropped (default DSP_LOG_INFO). */
DSP_API void dsp_log_set_level(dsp_log_level level);
DSP_API dsp_log_level dsp_log_get_level(void);
DSP_API void dsp_log(dsp_log_level level, const char *ctx, const char *fmt, ...)
    DSP_PRINTF(3, 4);
DSP_API void dsp_vlog(dsp_log_level level, const char *ctx, const char *fmt,
                      va_list ap);

/* ---------------------------------------------------------------------------
 * Memory. dsp_malloc aligns to 64 bytes (cache line, AVX-512 friendly).
 * Everything the library hands out as "free with dsp_free" uses these.
 * dsp_free(NULL) is a no-op.
 * ------------------------------------------------------------------------- */
DSP_API void *dsp_malloc(size_t size);
DSP_API void *dsp_calloc(size_t n, size_t size);
DSP_API void dsp_free(void *p);
DSP_API char *dsp_strdup(const char *s);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_COMMON_H */
