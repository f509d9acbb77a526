/* device_tensor.c - tensors in compute-device memory: allocation through the backend table and copies between host and device. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* What a device buffer's release needs: who allocated it, and where. */
typedef struct device_mem {
    const dspi_backend *be;
    int index;
} device_mem;

static void device_mem_release(void *opaque, void *data)
{
    device_mem *m = opaque;
    if (data)
        m->be->free(m->index, data);
    free(m);
}

int dspi_device_tensor_new(const dspi_backend *be, dsp_device dev, dsp_dtype dtype,
                           int ndim, const int64_t *shape, dsp_tensor **out)
{
    dsp_buffer *buf = NULL;
    device_mem *m = NULL;
    void *p = NULL;
    size_t size = dsp_dtype_size(dtype);
    int err;

    *out = NULL;
    if (size == 0 || ndim < 0 || ndim > DSP_MAX_DIMS || (ndim > 0 && !shape))
        return DSP_EINVAL;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && size > SIZE_MAX / (uint64_t)shape[i]))
            return DSP_EINVAL;
        size *= (size_t)shape[i];
    }
    m = malloc(sizeof *m);
    if (!m)
        return DSP_ENOMEM;
    m->be = be;
    m->index = dev.index;
    err = be->malloc(dev.index, size, &p);
    if (err < 0) {
        free(m);
        return err;
    }
    err = dspi_buffer_new_device(dev, p, size ? size : 1, device_mem_release, m, &buf);
    if (err < 0) {
        be->free(dev.index, p);
        free(m);
        return err;
    }
    err = dsp_tensor_from_buffer(dtype, ndim, shape, NULL, buf, 0, out);
    dsp_buffer_unref(&buf);     /* the tensor holds the only reference */
    return err;
}

static int usable_cuda(dsp_context *ctx, dsp_device dev, const dspi_backend **out)
{
    const char *why = NULL;
    const dspi_backend *be = dspi_device_backend(ctx);
    int n;

    *out = NULL;
    if (!be) {
        dspi_set_error(ctx, "dsp_tensor_to_device: cuda:%d is not usable: %s", dev.index,
                       ctx->cuda_error ? ctx->cuda_error : "no CUDA backend");
        return DSP_EDEVICE;
    }
    n = be->device_count(&why);
    if (dev.index < 0 || dev.index >= n) {
        if (n > 0)
            dspi_set_error(ctx, "dsp_tensor_to_device: no device cuda:%d (this machine has "
                           "cuda:0..cuda:%d)", dev.index, n - 1);
        else
            dspi_set_error(ctx, "dsp_tensor_to_device: cuda:%d is not usable: %s", dev.index,
                           why ? why : "no CUDA device");
        return DSP_EDEVICE;
    }
    *out = be;
    return 0;
}

/* A contiguous CUDA tensor's bytes into a new CPU tensor. */
static int download(dsp_context *ctx, const dspi_backend *be, const dsp_tensor *t,
                    dsp_tensor **out)
{
    char desc[96];
    int err;

    if (!dsp_tensor_is_contiguous(t)) {
        dspi_set_error(ctx, "dsp_tensor_to_device: %s on cuda:%d is strided; only contiguous "
                       "device tensors can be copied for now",
                       dsp_tensor_describe(t, desc, sizeof desc), t->device.index);
        return DSP_EUNSUPPORTED;
    }
    err = dsp_tensor_new(t->dtype, t->ndim, t->shape, out);
    if (err < 0) {
        dspi_set_error(ctx, "dsp_tensor_to_device: cannot allocate %s on the CPU",
                       dsp_tensor_describe(t, desc, sizeof desc));
        return err;
    }
    if (dsp_tensor_nbytes(t) > 0 &&
        be->memcpy_d2h(t->device.index, dsp_tensor_data(*out), dsp_tensor_data(t),
                       dsp_tensor_nbytes(t)) < 0) {
        dsp_tensor_unref(out);
        dspi_set_error(ctx, "dsp_tensor_to_device: copying %s from cuda:%d to the CPU failed",
                       dsp_tensor_describe(t, desc, sizeof desc), t->device.index);
        return DSP_EDEVICE;
    }
    return 0;
}

/* A CPU tensor (any strides) into new memory on dev. */
static int upload(dsp_context *ctx, const dspi_backend *be, const dsp_tensor *t,
                  dsp_device dev, dsp_tensor **out)
{
    dsp_tensor *host = NULL;
    char desc[96];
    int err;

    /* dsp_tensor_contiguous only takes a reference or copies: t is not modified */
    err = dsp_tensor_contiguous((dsp_tensor *)t, &host);
    if (err < 0) {
        dspi_set_error(ctx, "dsp_tensor_to_device: cannot lay out %s contiguously",
                       dsp_tensor_describe(t, desc, sizeof desc));
        return err;
    }
    err = dspi_device_tensor_new(be, dev, t->dtype, t->ndim, t->shape, out);
    if (err < 0) {
        dspi_set_error(ctx, "dsp_tensor_to_device: cannot allocate %s on cuda:%d%s",
                       dsp_tensor_describe(t, desc, sizeof desc), dev.index,
                       err == DSP_ENOMEM ? " (out of device memory)" : "");
        dsp_tensor_unref(&host);
        return err == DSP_ENOMEM ? err : DSP_EDEVICE;
    }
    if (dsp_tensor_nbytes(t) > 0 &&
        be->memcpy_h2d(dev.index, dsp_tensor_data(*out), dsp_tensor_data(host),
                       dsp_tensor_nbytes(t)) < 0) {
        dspi_set_error(ctx, "dsp_tensor_to_device: copying %s to cuda:%d failed",
                       dsp_tensor_describe(t, desc, sizeof desc), dev.index);
        dsp_tensor_unref(out);
        dsp_tensor_unref(&host);
        return DSP_EDEVICE;
    }
    dsp_tensor_unref(&host);
    return 0;
}

int dsp_tensor_to_device(dsp_context *ctx, const dsp_tensor *t, dsp_device dev,
                         dsp_tensor **out)
{
    const dspi_backend *be = NULL;
    dsp_tensor *host = NULL;
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!ctx || !t) {
        if (ctx)
            dspi_set_error(ctx, "dsp_tensor_to_device: t is NULL");
        return DSP_EINVAL;
    }
    if (dev.type != DSP_DEVICE_CPU && dev.type != DSP_DEVICE_CUDA) {
        dspi_set_error(ctx, "dsp_tensor_to_device: unknown device type %d", (int)dev.type);
        return DSP_EINVAL;
    }
    if (t->device.type == DSP_DEVICE_CPU) {
        if (dev.type == DSP_DEVICE_CPU) {
            err = dsp_tensor_contiguous((dsp_tensor *)t, out);
            if (err < 0)
                dspi_set_error(ctx, "dsp_tensor_to_device: cannot copy the tensor");
            return err;
        }
        if ((err = usable_cuda(ctx, dev, &be)) < 0)
            return err;
        return upload(ctx, be, t, dev, out);
    }
    /* t lives on a CUDA device, so some context loaded the backend */
    be = ctx->cuda ? ctx->cuda : dspi_device_loaded_backend();
    if (!be) {
        dspi_set_error(ctx, "dsp_tensor_to_device: the tensor is on cuda:%d but no CUDA "
                       "backend is loaded", t->device.index);
        return DSP_EDEVICE;
    }
    if (dev.type == DSP_DEVICE_CPU)
        return download(ctx, be, t, out);
    /* CUDA to CUDA goes through the host: simple, and rare enough */
    if ((err = usable_cuda(ctx, dev, &be)) < 0 || (err = download(ctx, be, t, &host)) < 0)
        return err;
    err = upload(ctx, be, host, dev, out);
    dsp_tensor_unref(&host);
    return err;
}
