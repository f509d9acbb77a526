/* common.c - version, error strings, logging and aligned memory helpers. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "internal.h"

/* Alignment of everything dsp_malloc hands out: a cache line, and enough
 * for AVX-512 loads. */
#define DSPI_ALIGN 64

/* Lines longer than this are formatted into a heap buffer instead. */
#define DSPI_LOG_LINE 1024

const char *dsp_version(void)
{
    return DSP_VERSION_STRING;
}

const char *dsp_strerror(int code)
{
    switch (code) {
    case DSP_OK:           return "success";
    case DSP_EINVAL:       return "invalid argument";
    case DSP_ENOMEM:       return "out of memory";
    case DSP_EIO:          return "input/output error";
    case DSP_ENOENT:       return "not found";
    case DSP_EFORMAT:      return "malformed data";
    case DSP_EUNSUPPORTED: return "not supported";
    case DSP_ESYNTAX:      return "syntax error";
    case DSP_EABI:         return "plugin ABI mismatch";
    case DSP_EDEVICE:      return "device error";
    case DSP_EINTR:        return "interrupted";
    case DSP_ELIMIT:       return "limit exceeded";
    case DSP_EEXIST:       return "already exists";
    case DSP_ESTATE:       return "invalid state for this call";
    case DSP_EFAILED:      return "some items failed";
    case DSP_EOF:          return "end of stream";
    default:               return "unknown error";
    }
}

/* ---- logging ------------------------------------------------------------ */

static void log_default(void *user, dsp_log_level level, const char *ctx,
                        const char *msg);

static dsp_log_fn log_fn = log_default;
static void *log_user;
static atomic_int log_level = DSP_LOG_INFO;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_read_env(void)
{
    static const char *const names[] = {
        "error", "warning", "info", "verbose", "debug"
    };
    const char *env = getenv("DSPIPE_LOG_LEVEL");

    if (!env || !*env)
        return;
    for (size_t i = 0; i < DSPI_ARRAY_LEN(names); i++) {
        if (strcasecmp(env, names[i]) == 0) {
            atomic_store(&log_level, (int)i);
            return;
        }
    }
    fprintf(stderr, "warning: DSPIPE_LOG_LEVEL=%s is not one of "
            "error|warning|info|verbose|debug; using info\n", env);
}

/* The environment is read before the first explicit dsp_log_set_level, so
 * a program's own choice wins over the variable. */
static void log_init(void)
{
    pthread_once(&log_once, log_read_env);
}

static void log_default(void *user, dsp_log_level level, const char *ctx,
                        const char *msg)
{
    const char *prefix = level == DSP_LOG_ERROR ? "error: "
                       : level == DSP_LOG_WARNING ? "warning: " : "";
    char line[DSPI_LOG_LINE + 256];
    char *heap = NULL;
    const char *out = line;
    int n;

    /* One fputs per line keeps lines from concurrent threads whole. */
    if (ctx)
        n = snprintf(line, sizeof(line), "[%s] %s%s\n", ctx, prefix, msg);
    else
        n = snprintf(line, sizeof(line), "%s%s\n", prefix, msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        heap = malloc((size_t)n + 1);
        if (heap) {
            if (ctx)
                snprintf(heap, (size_t)n + 1, "[%s] %s%s\n", ctx, prefix, msg);
            else
                snprintf(heap, (size_t)n + 1, "%s%s\n", prefix, msg);
            out = heap;
        }
    }
    fputs(out, stderr);
    free(heap);
}

void dsp_log_set_callback(dsp_log_fn fn, void *user)
{
    log_fn = fn ? fn : log_default;
    log_user = fn ? user : NULL;
}

void dsp_log_set_level(dsp_log_level level)
{
    log_init();
    if (level < DSP_LOG_ERROR)
        level = DSP_LOG_ERROR;
    if (level > DSP_LOG_DEBUG)
        level = DSP_LOG_DEBUG;
    atomic_store(&log_level, (int)level);
}

dsp_log_level dsp_log_get_level(void)
{
    log_init();
    return (dsp_log_level)atomic_load(&log_level);
}

void dsp_vlog(dsp_log_level level, const char *ctx, const char *fmt,
              va_list ap)
{
    char msg[DSPI_LOG_LINE];
    char *heap = NULL;
    char *text = msg;
    va_list aq;
    int n;

    if (!fmt || (int)level > (int)dsp_log_get_level())
        return;
    va_copy(aq, ap);
    n = vsnprintf(msg, sizeof(msg), fmt, aq);
    va_end(aq);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg)) {
        heap = malloc((size_t)n + 1);
        if (heap) {
            va_copy(aq, ap);
            vsnprintf(heap, (size_t)n + 1, fmt, aq);
            va_end(aq);
            text = heap;
        } else {
            n = (int)sizeof(msg) - 1;
        }
    }
    /* Callers often end messages with '\n' out of habit; sinks add their own. */
    while (n > 0 && text[n - 1] == '\n')
        text[--n] = '\0';
    log_fn(log_user, level, ctx, text);
    free(heap);
}

void dsp_log(dsp_log_level level, const char *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dsp_vlog(level, ctx, fmt, ap);
    va_end(ap);
}

/* ---- memory ------------------------------------------------------------- */

void *dsp_malloc(size_t size)
{
    void *p = NULL;

    /* A zero-size request still gets a unique, freeable, aligned pointer so
     * that NULL always means failure. */
    if (posix_memalign(&p, DSPI_ALIGN, size ? size : 1) != 0)
        return NULL;
    return p;
}

void *dsp_calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size)
        return NULL;
    p = dsp_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void dsp_free(void *p)
{
    free(p);
}

char *dsp_strdup(const char *s)
{
    size_t n;
    char *d;

    if (!s)
        return NULL;
    n = strlen(s) + 1;
    d = dsp_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void dspi_json_free(void *p)
{
    json_malloc_t m;
    json_free_t f;

    json_get_alloc_funcs(&m, &f);
    (f ? f : free)(p);
}
