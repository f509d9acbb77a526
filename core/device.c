/* device.c - choose the compute device; load the CUDA backend module only when asked. */
#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef DSP_BACKEND_DIR
#define DSP_BACKEND_DIR "/usr/local/lib/dspipe/backends"
#endif
#define CUDA_MODULE "dspipe-cuda.so"

/* The first backend any context loaded (see dspi_device_loaded_backend). */
static const dspi_backend *loaded_backend;

static void set_cuda_error(dsp_context *ctx, const char *fmt, const char *arg)
{
    dspi_str b = { 0 };
    dspi_str_printf(&b, fmt, arg);
    free(ctx->cuda_error);
    ctx->cuda_error = dspi_str_take(&b);
}

static int try_module(dsp_context *ctx, const char *dir)
{
    dspi_str path = { 0 };
    void *h;
    dspi_backend_entry_fn entry;
    const dspi_backend *be;

    dspi_str_printf(&path, "%s/%s", dir, CUDA_MODULE);
    if (path.oom || access(path.s, R_OK) < 0) {
        dspi_str_free(&path);
        return 0;
    }
    h = dlopen(path.s, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        /* usually the CUDA runtime libraries are not installed here */
        set_cuda_error(ctx, "the CUDA backend could not be loaded: %s", dlerror());
        dspi_str_free(&path);
        return -1;
    }
    *(void **)&entry = dlsym(h, DSPI_BACKEND_ENTRY_SYMBOL);
    be = entry ? entry() : NULL;
    if (!be || be->struct_size < sizeof(dspi_backend)) {
        set_cuda_error(ctx, "%s is not a compatible dspipe CUDA backend", path.s);
        dlclose(h);
        dspi_str_free(&path);
        return -1;
    }
    dsp_log(DSP_LOG_VERBOSE, "device", "loaded %s", path.s);
    dspi_str_free(&path);
    ctx->cuda = be;
    ctx->cuda_handle = h;
    {
        const dspi_backend *none = NULL;
        __atomic_compare_exchange_n(&loaded_backend, &none, be, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
    return 1;
}

/* Find and load the backend once per context. */
static const dspi_backend *cuda_backend(dsp_context *ctx)
{
    const char *env = getenv("DSPIPE_BACKEND_PATH");
    int found = 0;

    if (ctx->cuda_tried)
        return ctx->cuda;
    ctx->cuda_tried = 1;
#ifndef HAVE_CUDA
    if (!env) {
        set_cuda_error(ctx, "%s", "this dspipe was built without CUDA "
                       "(configure found no CUDA toolkit)");
        return NULL;
    }
#endif
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *t = copy ? strtok_r(copy, ":", &save) : NULL; t && !found;
             t = strtok_r(NULL, ":", &save))
            found = try_module(ctx, t);
        free(copy);
    }
    if (!found)
        found = try_module(ctx, DSP_BACKEND_DIR);
    if (!found)
        set_cuda_error(ctx, "the CUDA backend module %s is not installed", CUDA_MODULE);
    return ctx->cuda;
}

const dspi_backend *dspi_device_backend(dsp_context *ctx)
{
    return cuda_backend(ctx);
}

const dspi_backend *dspi_device_loaded_backend(void)
{
    return __atomic_load_n(&loaded_backend, __ATOMIC_ACQUIRE);
}

void dspi_device_close(dsp_context *ctx)
{
    /* The module stays loaded: the CUDA runtime registers exit handlers and
     * keeps global state, and unloading it under them crashes at exit. */
    ctx->cuda_handle = NULL;
    ctx->cuda = NULL;
    free(ctx->cuda_error);
    ctx->cuda_error = NULL;
}

int dsp_device_open(dsp_context *ctx, const char *spec, dsp_device *out)
{
    const dspi_backend *be;
    const char *why = NULL;
    int index = 0, count, is_auto;
    char *end;

    out->type = DSP_DEVICE_CPU;
    out->index = 0;
    if (!spec || !strcmp(spec, "cpu"))
        return 0;
    is_auto = !strcmp(spec, "auto");
    if (!is_auto && strncmp(spec, "cuda", 4) != 0) {
        dspi_set_error(ctx, "unknown device '%s': use cpu, cuda, cuda:N or auto", spec);
        return DSP_EINVAL;
    }
    if (!is_auto && spec[4] == ':') {
        index = (int)strtol(spec + 5, &end, 10);
        if (end == spec + 5 || *end || index < 0) {
            dspi_set_error(ctx, "bad device '%s': use cuda:N with N a device number", spec);
            return DSP_EINVAL;
        }
    } else if (!is_auto && spec[4]) {
        dspi_set_error(ctx, "unknown device '%s': use cpu, cuda, cuda:N or auto", spec);
        return DSP_EINVAL;
    }
    be = cuda_backend(ctx);
    count = be ? be->device_count(&why) : 0;
    if (be && count <= 0)
        set_cuda_error(ctx, "no usable CUDA device: %s", why ? why : "none found");
    if (count <= index) {
        if (is_auto) {
            dsp_log(DSP_LOG_WARNING, "device", "--device auto: %s; running on the CPU",
                    ctx->cuda_error ? ctx->cuda_error : "no GPU");
            return 0;
        }
        if (count > 0)
            dspi_set_error(ctx, "device %s: this machine has %d CUDA device%s (cuda:0..cuda:%d)",
                           spec, count, count == 1 ? "" : "s", count - 1);
        else
            dspi_set_error(ctx, "--device %s: %s; use --device cpu or auto", spec,
                           ctx->cuda_error ? ctx->cuda_error : "no GPU");
        return DSP_EDEVICE;
    }
    out->type = DSP_DEVICE_CUDA;
    out->index = index;
    return 0;
}

const char *dsp_device_name(dsp_device dev, char *dst, size_t n)
{
    if (dev.type == DSP_DEVICE_CUDA)
        snprintf(dst, n, "cuda:%d", dev.index);
    else
        snprintf(dst, n, "cpu");
    return dst;
}
