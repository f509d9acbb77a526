/* tensor.c - dsp_tensor: dtypes, strided views over buffers, copies and writability. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[DSP_DTYPE_COUNT] = {
    [DSP_DTYPE_F32]  = { "f32",  4 },
    [DSP_DTYPE_F16]  = { "f16",  2 },
    [DSP_DTYPE_BF16] = { "bf16", 2 },
    [DSP_DTYPE_I8]   = { "i8",   1 },
    [DSP_DTYPE_U8]   = { "u8",   1 },
    [DSP_DTYPE_I16]  = { "i16",  2 },
    [DSP_DTYPE_I32]  = { "i32",  4 },
    [DSP_DTYPE_I64]  = { "i64",  8 },
    [DSP_DTYPE_F64]  = { "f64",  8 },
    [DSP_DTYPE_BOOL] = { "bool", 1 },
    [DSP_DTYPE_U16]  = { "u16",  2 },
    [DSP_DTYPE_U32]  = { "u32",  4 },
    [DSP_DTYPE_U64]  = { "u64",  8 },
};

static int dtype_valid(dsp_dtype dt)
{
    return (int)dt >= 0 && (int)dt < DSP_DTYPE_COUNT;
}

size_t dsp_dtype_size(dsp_dtype dt)
{
    return dtype_valid(dt) ? dtype_table[dt].size : 0;
}

const char *dsp_dtype_name(dsp_dtype dt)
{
    return dtype_valid(dt) ? dtype_table[dt].name : "invalid";
}

int dsp_dtype_from_name(const char *name, dsp_dtype *out)
{
    if (!name || !out)
        return DSP_EINVAL;
    for (int i = 0; i < DSP_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (dsp_dtype)i;
            return 0;
        }
    }
    return DSP_EINVAL;
}

/* Validates dtype, ndim and shape and computes the element count, refusing
 * any shape whose byte size does not fit both size_t and int64_t. */
static int check_shape(dsp_dtype dtype, int ndim, const int64_t *shape,
                       int64_t *numel)
{
    size_t esize = dsp_dtype_size(dtype);
    int64_t n = 1;
    int zero = 0;

    if (!esize || ndim < 0 || ndim > DSP_MAX_DIMS || (ndim > 0 && !shape))
        return DSP_EINVAL;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return DSP_EINVAL;
        if (shape[i] == 0)
            zero = 1;
    }
    /* the non-zero dims must multiply within range even when some dim is
     * 0: strides are products of them */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && __builtin_mul_overflow(n, shape[i], &n))
            return DSP_EINVAL;
    }
    if ((uint64_t)n > SIZE_MAX / esize || n > INT64_MAX / (int64_t)esize)
        return DSP_EINVAL;
    if (zero) {
        *numel = 0;
        return 0;
    }
    if ((uint64_t)n > SIZE_MAX / esize || n > INT64_MAX / (int64_t)esize)
        return DSP_EINVAL;
    *numel = n;
    return 0;
}

/* Row-major strides; a zero-size dim counts as 1 so strides stay distinct. */
static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;

    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

static int tensor_alloc(dsp_dtype dtype, int ndim, const int64_t *shape,
                        const int64_t *stride, dsp_buffer *buf, size_t offset,
                        dsp_tensor **out)
{
    dsp_tensor *t = calloc(1, sizeof(*t));

    if (!t)
        return DSP_ENOMEM;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    t->device = dsp_buffer_device(buf);
    t->buf = dsp_buffer_ref(buf);
    t->offset = offset;
    t->refcount_ = 1;
    *out = t;
    return 0;
}

int dsp_tensor_new(dsp_dtype dtype, int ndim, const int64_t *shape,
                   dsp_tensor **out)
{
    int64_t stride[DSP_MAX_DIMS], numel;
    dsp_buffer *buf = NULL;
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if ((err = check_shape(dtype, ndim, shape, &numel)) < 0)
        return err;
    contiguous_strides(ndim, shape, stride);
    err = dsp_buffer_new((size_t)numel * dsp_dtype_size(dtype), &buf);
    if (err < 0)
        return err;
    err = tensor_alloc(dtype, ndim, shape, stride, buf, 0, out);
    dsp_buffer_unref(&buf);
    return err;
}

/* Every element of the view must lie in [0, buffer size): with arbitrary
 * (negative too) strides the reachable span is the sum of the per-dim
 * extremes, computed with overflow checks since strides come from files. */
static int check_view_bounds(size_t esize, int ndim, const int64_t *shape,
                             const int64_t *stride, size_t offset,
                             size_t bufsize)
{
    int64_t lo = 0, hi = 0, first, last;

    if (offset > bufsize || offset > (size_t)INT64_MAX)
        return DSP_EINVAL;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            return 0;
    }
    for (int i = 0; i < ndim; i++) {
        int64_t span;

        if (__builtin_mul_overflow(shape[i] - 1, stride[i], &span))
            return DSP_EINVAL;
        if (span < 0 ? __builtin_add_overflow(lo, span, &lo)
                     : __builtin_add_overflow(hi, span, &hi))
            return DSP_EINVAL;
    }
    if (__builtin_mul_overflow(lo, (int64_t)esize, &first) ||
        __builtin_add_overflow(first, (int64_t)offset, &first) ||
        __builtin_add_overflow(hi, 1, &last) ||
        __builtin_mul_overflow(last, (int64_t)esize, &last) ||
        __builtin_add_overflow(last, (int64_t)offset, &last))
        return DSP_EINVAL;
    if (first < 0 || (uint64_t)last > bufsize)
        return DSP_EINVAL;
    return 0;
}

int dsp_tensor_from_buffer(dsp_dtype dtype, int ndim, const int64_t *shape,
                           const int64_t *stride, dsp_buffer *buf,
                           size_t offset, dsp_tensor **out)
{
    int64_t cstride[DSP_MAX_DIMS], numel;
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!buf)
        return DSP_EINVAL;
    if ((err = check_shape(dtype, ndim, shape, &numel)) < 0)
        return err;
    if (!stride) {
        contiguous_strides(ndim, shape, cstride);
        stride = cstride;
    }
    err = check_view_bounds(dsp_dtype_size(dtype), ndim, shape, stride, offset,
                            dsp_buffer_size(buf));
    if (err < 0)
        return err;
    return tensor_alloc(dtype, ndim, shape, stride, buf, offset, out);
}

dsp_tensor *dsp_tensor_ref(dsp_tensor *t)
{
    if (t)
        __atomic_fetch_add(&t->refcount_, 1, __ATOMIC_RELAXED);
    return t;
}

void dsp_tensor_unref(dsp_tensor **t)
{
    dsp_tensor *x;

    if (!t || !*t)
        return;
    x = *t;
    *t = NULL;
    if (__atomic_fetch_sub(&x->refcount_, 1, __ATOMIC_ACQ_REL) == 1) {
        dsp_buffer_unref(&x->buf);
        free(x);
    }
}

int64_t dsp_tensor_numel(const dsp_tensor *t)
{
    int64_t n = 1;

    if (!t)
        return 0;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t dsp_tensor_nbytes(const dsp_tensor *t)
{
    return t ? (size_t)dsp_tensor_numel(t) * dsp_dtype_size(t->dtype) : 0;
}

int dsp_tensor_is_contiguous(const dsp_tensor *t)
{
    int64_t expect = 1;

    if (!t)
        return 0;
    if (dsp_tensor_numel(t) == 0)
        return 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        /* A dim of size 1 is never stepped over, so its stride is free. */
        if (t->shape[i] != 1 && t->stride[i] != expect)
            return 0;
        expect *= t->shape[i];
    }
    return 1;
}

void *dsp_tensor_data(const dsp_tensor *t)
{
    char *base;

    if (!t)
        return NULL;
    base = dsp_buffer_data(t->buf);
    return base ? base + t->offset : NULL;
}

/* Copy any strided view into a contiguous destination, one innermost row at
 * a time; rows with unit stride are a single memcpy. */
static void strided_copy(char *dst, const dsp_tensor *src)
{
    size_t esize = dsp_dtype_size(src->dtype);
    const char *base = dsp_tensor_data(src);
    int64_t idx[DSP_MAX_DIMS] = { 0 };
    int nd = src->ndim;
    int64_t inner = nd ? src->shape[nd - 1] : 1;
    int64_t istride = nd ? src->stride[nd - 1] : 1;
    int64_t rows = inner ? dsp_tensor_numel(src) / inner : 0;

    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        const char *row;

        for (int i = 0; i < nd - 1; i++)
            off += idx[i] * src->stride[i];
        row = base + off * (int64_t)esize;
        if (istride == 1 || inner == 1) {
            memcpy(dst, row, (size_t)inner * esize);
            dst += (size_t)inner * esize;
        } else {
            for (int64_t k = 0; k < inner; k++) {
                memcpy(dst, row + k * istride * (int64_t)esize, esize);
                dst += esize;
            }
        }
        for (int i = nd - 2; i >= 0; i--) {
            if (++idx[i] < src->shape[i])
                break;
            idx[i] = 0;
        }
    }
}

static int tensor_copy(const dsp_tensor *src, dsp_tensor **out)
{
    int err;

    if (src->device.type != DSP_DEVICE_CPU)
        return DSP_EUNSUPPORTED;
    err = dsp_tensor_new(src->dtype, src->ndim, src->shape, out);
    if (err < 0)
        return err;
    if (dsp_tensor_numel(src) > 0)
        strided_copy(dsp_tensor_data(*out), src);
    return 0;
}

int dsp_tensor_make_writable(dsp_tensor **t)
{
    dsp_tensor *copy;
    int err;

    if (!t || !*t)
        return DSP_EINVAL;
    if (__atomic_load_n(&(*t)->refcount_, __ATOMIC_ACQUIRE) == 1 &&
        dsp_buffer_is_writable((*t)->buf))
        return 0;
    if ((err = tensor_copy(*t, &copy)) < 0)
        return err;
    dsp_tensor_unref(t);
    *t = copy;
    return 0;
}

int dsp_tensor_contiguous(dsp_tensor *t, dsp_tensor **out)
{
    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!t)
        return DSP_EINVAL;
    if (dsp_tensor_is_contiguous(t)) {
        *out = dsp_tensor_ref(t);
        return 0;
    }
    return tensor_copy(t, out);
}

char *dsp_tensor_describe(const dsp_tensor *t, char *dst, size_t n)
{
    size_t len;

    if (!dst || n == 0)
        return dst;
    if (!t) {
        snprintf(dst, n, "(null)");
        return dst;
    }
    snprintf(dst, n, "%s[", dsp_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim; i++) {
        len = strlen(dst);
        snprintf(dst + len, n - len, i ? ",%lld" : "%lld",
                 (long long)t->shape[i]);
    }
    len = strlen(dst);
    snprintf(dst + len, n - len, "]");
    return dst;
}
