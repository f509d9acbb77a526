/* call.c - the machinery every operator call shares: messages, argument checks, device dispatch, outputs, temporaries. */
#include "config.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ops/ops_int.h"

/* One message per thread: operators run concurrently in pipeline nodes. */
static _Thread_local char errbuf[512];

const char *dsp_ops_error(void)
{
    return errbuf;
}

void dspi_op_begin(dspi_opcall *c, const char *op)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    errbuf[0] = '\0';
}

int dspi_op_fail(dspi_opcall *c, int code, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(errbuf, sizeof errbuf, "%s: ", c->op);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof errbuf)
        vsnprintf(errbuf + n, sizeof errbuf - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

dspi_shapestr dspi_dims_str(int ndim, const int64_t *shape)
{
    dspi_shapestr r;
    size_t len = 0;
    r.s[len++] = '[';
    r.s[len] = '\0';
    for (int i = 0; i < ndim && len < sizeof r.s; i++)
        len += (size_t)snprintf(r.s + len, sizeof r.s - len, i ? ", %lld" : "%lld",
                                (long long)shape[i]);
    if (len < sizeof r.s - 1) {
        r.s[len++] = ']';
        r.s[len] = '\0';
    }
    return r;
}

dspi_shapestr dspi_shape_str(const dsp_tensor *t)
{
    return dspi_dims_str(t->ndim, t->shape);
}

int dspi_is_float_dtype(dsp_dtype dt)
{
    return dt == DSP_DTYPE_F32 || dt == DSP_DTYPE_F16 || dt == DSP_DTYPE_BF16;
}

int64_t dspi_prod(const int64_t *shape, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= shape[i];
    return p;
}

int dspi_op_need(dspi_opcall *c, const dsp_tensor *t, const char *name)
{
    if (!t)
        return dspi_op_fail(c, DSP_EINVAL, "%s is NULL", name);
    if (t->ndim < 0 || t->ndim > DSP_MAX_DIMS)
        return dspi_op_fail(c, DSP_EINVAL, "%s has an invalid rank %d", name, t->ndim);
    return 0;
}

int dspi_op_need_dtype(dspi_opcall *c, const dsp_tensor *t, const char *name, int ok,
                      const char *expected)
{
    if (ok)
        return 0;
    return dspi_op_fail(c, DSP_EINVAL, "%s is %s, expected %s", name, dsp_dtype_name(t->dtype),
                expected);
}

/* ---- dispatch ------------------------------------------------------------
 * The one place that maps devices to backends: CPU tensors run on
 * dspi_ops_cpu, CUDA tensors on the table the loaded CUDA module exports.
 * An operator whose CUDA entry is NULL (or that has no entry at all: the
 * attention, convolution, quantized and sequence families) is refused with
 * a message, never run with device pointers on the CPU. */
static int cuda_implements(const dspi_ops_backend *t, const char *op)
{
    static const struct {
        const char *name;
        size_t off;
    } entries[] = {
        {"linear", offsetof(dspi_ops_backend, linear)},
        {"matmul", offsetof(dspi_ops_backend, matmul)},
        {"embedding", offsetof(dspi_ops_backend, embedding)},
        {"softmax", offsetof(dspi_ops_backend, softmax)},
        {"layernorm", offsetof(dspi_ops_backend, layernorm)},
        {"rmsnorm", offsetof(dspi_ops_backend, rmsnorm)},
        {"gelu", offsetof(dspi_ops_backend, gelu)},
        {"silu", offsetof(dspi_ops_backend, silu)},
        {"swiglu", offsetof(dspi_ops_backend, swiglu)},
        {"add", offsetof(dspi_ops_backend, add)},
        {"mul", offsetof(dspi_ops_backend, mul)},
        {"rope", offsetof(dspi_ops_backend, rope)},
        {"attention", offsetof(dspi_ops_backend, attention)},
        {"linear_q", offsetof(dspi_ops_backend, linear_q)},
        {"moe", offsetof(dspi_ops_backend, moe)},
        {"conv2d", offsetof(dspi_ops_backend, conv)},
        {"conv3d", offsetof(dspi_ops_backend, conv)},
        {"pool", offsetof(dspi_ops_backend, pool)},
        {"adaptive_pool", offsetof(dspi_ops_backend, adaptive_pool)},
        {"batchnorm", offsetof(dspi_ops_backend, batchnorm)},
        {"upsample", offsetof(dspi_ops_backend, upsample)},
        {"csr_aggregate", offsetof(dspi_ops_backend, csr_aggregate)},
        {"lstm", offsetof(dspi_ops_backend, lstm)},
        {"relu", offsetof(dspi_ops_backend, relu)},
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        if (strcmp(entries[i].name, op) != 0)
            continue;
        /* every entry is a function pointer: read it as bytes and test for NULL */
        void (*fn)(void);
        memcpy(&fn, (const char *)t + entries[i].off, sizeof fn);
        return fn != NULL;
    }
    return 0;
}

static const dspi_ops_backend *cuda_ops(dspi_opcall *c, dsp_device dev,
                                        const dsp_tensor *const *ts, int n, int *rc)
{
    const dspi_backend *be = dspi_device_loaded_backend();
    const dspi_ops_backend *t = be ? be->ops : NULL;
    if (!be) {
        *rc = dspi_op_fail(c, DSP_EDEVICE, "the tensors are on cuda:%d but no CUDA backend is "
                           "loaded: open the device with dsp_device_open first", dev.index);
        return NULL;
    }
    if (!t) {
        *rc = dspi_op_fail(c, DSP_EDEVICE, "the tensors are on cuda:%d but the loaded CUDA "
                           "backend has no operators", dev.index);
        return NULL;
    }
    if (!cuda_implements(t, c->op)) {
        snprintf(errbuf, sizeof errbuf, "%s is not implemented on CUDA yet (tensors on cuda:%d): "
                 "copy them to the CPU with dsp_tensor_to_device", c->op, dev.index);
        *rc = DSP_EUNSUPPORTED;
        return NULL;
    }
    c->dev = dev;
    c->mem = be;
    *rc = 0;
    return t;
}

const dspi_ops_backend *dspi_op_backend(dspi_opcall *c, dsp_tensor **out,
                                              const dsp_tensor *const *ts, int n, int *rc)
{
    dsp_device dev = {DSP_DEVICE_CPU, 0};
    int have = 0;
    for (int i = 0; i <= n; i++) {
        const dsp_tensor *t = i < n ? ts[i] : (out ? *out : NULL);
        if (!t)
            continue;
        if (have && (t->device.type != dev.type || t->device.index != dev.index)) {
            *rc = dspi_op_fail(c, DSP_EDEVICE, "tensors are on different devices (%s:%d and %s:%d)",
                       dev.type == DSP_DEVICE_CPU ? "cpu" : "cuda", dev.index,
                       t->device.type == DSP_DEVICE_CPU ? "cpu" : "cuda", t->device.index);
            return NULL;
        }
        dev = t->device;
        have = 1;
    }
    if (dev.type != DSP_DEVICE_CPU)
        return cuda_ops(c, dev, ts, n, rc);
    c->dev = dev;
    *rc = 0;
    return &dspi_ops_cpu;
}

/* What host-side checks read: d (t's contiguous data from dspi_op_contig)
 * itself for a CPU call, a copy downloaded from the device (kept until
 * dspi_op_finish) for a CUDA call, so a bad index is caught before any
 * kernel sees it and named as on the CPU. */
const void *dspi_op_host(dspi_opcall *c, const dsp_tensor *t, const void *d, const char *name,
                         int *rc)
{
    dsp_tensor *h = NULL;
    *rc = 0;
    if (!c->mem)
        return d;
    if (c->ntmp == (int)(sizeof c->tmp / sizeof c->tmp[0])) {
        *rc = dspi_op_fail(c, DSP_EINVAL, "too many temporaries to copy %s (at most %d)", name,
                           c->ntmp);
        return NULL;
    }
    if ((*rc = dsp_tensor_new(t->dtype, t->ndim, t->shape, &h)) < 0) {
        *rc = dspi_op_fail(c, *rc, "cannot allocate a host copy of %s %s to check it", name,
                           dspi_shape_str(t).s);
        return NULL;
    }
    c->tmp[c->ntmp++] = h;
    if (dsp_tensor_nbytes(t) > 0 &&
        c->mem->memcpy_d2h(c->dev.index, dsp_tensor_data(h), d, dsp_tensor_nbytes(t)) < 0) {
        *rc = dspi_op_fail(c, DSP_EDEVICE, "copying %s %s from cuda:%d to check it failed", name,
                           dspi_shape_str(t).s, c->dev.index);
        return NULL;
    }
    return dsp_tensor_data(h);
}

/* Data of t laid out contiguously: t's own storage, or a copy kept until
 * dspi_op_finish. t is only read (the const cast is for the copy routine,
 * which is not called on contiguous tensors and so never takes a ref). */
const void *dspi_op_contig(dspi_opcall *c, const dsp_tensor *t, int *rc)
{
    *rc = 0;
    if (dsp_tensor_is_contiguous(t))
        return dsp_tensor_data(t);
    if (t->device.type != DSP_DEVICE_CPU) {
        *rc = dspi_op_fail(c, DSP_EUNSUPPORTED, "a strided input %s on cuda:%d is not supported "
                           "yet: pass contiguous device tensors", dspi_shape_str(t).s,
                           t->device.index);
        return NULL;
    }
    dsp_tensor *copy = NULL;
    if (c->ntmp == (int)(sizeof(c->tmp) / sizeof(c->tmp[0]))) {
        *rc = dspi_op_fail(c, DSP_EINVAL, "too many strided inputs to copy (at most %d)",
                           c->ntmp);
        return NULL;
    }
    int r = dsp_tensor_contiguous((dsp_tensor *)t, &copy);
    if (r < 0) {
        *rc = dspi_op_fail(c, r, "cannot make a contiguous copy of a strided input");
        return NULL;
    }
    c->tmp[c->ntmp++] = copy;
    return dsp_tensor_data(copy);
}

/* The result: *out when given (checked), else a new contiguous f32 tensor. */
int dspi_op_output(dspi_opcall *c, dsp_tensor **out, int ndim, const int64_t *shape)
{
    if (!out)
        return dspi_op_fail(c, DSP_EINVAL, "out is NULL");
    dsp_tensor *o = *out;
    if (!o) {
        int r = c->mem ? dspi_device_tensor_new(c->mem, c->dev, DSP_DTYPE_F32, ndim, shape, &c->res)
                       : dsp_tensor_new(DSP_DTYPE_F32, ndim, shape, &c->res);
        if (r < 0)
            return dspi_op_fail(c, r, "cannot allocate the result f32%s%s",
                                dspi_dims_str(ndim, shape).s, c->mem ? " on the GPU" : "");
        c->allocated = 1;
        return 0;
    }
    int same = o->dtype == DSP_DTYPE_F32 && o->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = o->shape[i] == shape[i];
    if (!same)
        return dspi_op_fail(c, DSP_EINVAL, "out is %s%s, expected f32%s", dsp_dtype_name(o->dtype),
                    dspi_shape_str(o).s, dspi_dims_str(ndim, shape).s);
    if (!dsp_tensor_is_contiguous(o))
        return dspi_op_fail(c, DSP_EINVAL, "out %s is not contiguous", dspi_shape_str(o).s);
    if (!o->buf || !dsp_buffer_is_writable(o->buf))
        return dspi_op_fail(c, DSP_EINVAL, "out %s is not writable (shared or read-only buffer)",
                    dspi_shape_str(o).s);
    c->res = o;
    return 0;
}

int dspi_op_finish(dspi_opcall *c, int rc, dsp_tensor **out)
{
    for (int i = 0; i < c->ntmp; i++)
        dsp_tensor_unref(&c->tmp[i]);
    if (c->allocated) {
        if (rc < 0)
            dsp_tensor_unref(&c->res);
        else
            *out = c->res;
    }
    if (rc < 0 && !errbuf[0])
        dspi_op_fail(c, rc, "%s", rc == DSP_ENOMEM ? "out of memory"
                     : rc == DSP_EDEVICE ? "a CUDA kernel or cuBLAS call failed"
                     : rc == DSP_EUNSUPPORTED ? "not supported for these inputs on this device"
                     : "failed");
    return rc;
}

float *dspi_op_res(dspi_opcall *c)
{
    return dsp_tensor_data(c->res);
}

/* View of b broadcast to shape (b's dims align with the trailing dims). */
int dspi_op_broadcast(dspi_opcall *c, const dsp_tensor *b, const char *bname,
                          const dsp_tensor *a, const char *aname, dspi_bview *v)
{
    if (b->ndim > a->ndim)
        goto mismatch;
    memset(v, 0, sizeof *v);
    v->data = dsp_tensor_data(b);
    v->dtype = b->dtype;
    v->ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++) {
        int bd = d - (a->ndim - b->ndim);
        v->shape[d] = a->shape[d];
        if (bd < 0)
            continue;
        if (b->shape[bd] == a->shape[d])
            v->stride[d] = a->shape[d] == 1 ? 0 : b->stride[bd];
        else if (b->shape[bd] != 1)
            goto mismatch;
    }
    return 0;
mismatch:
    return dspi_op_fail(c, DSP_EINVAL, "%s %s does not broadcast to %s %s", bname, dspi_shape_str(b).s,
                aname, dspi_shape_str(a).s);
}

