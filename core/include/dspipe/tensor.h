/* dspipe/tensor.h - refcounted buffers and the one tensor type used everywhere. */
#ifndef DSPIPE_TENSOR_H
#define DSPIPE_TENSOR_H

#include <dspipe/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSP_MAX_DIMS 8

/* Element types. Values are part of the ABI: new ones are only appended. */
typedef enum dsp_dtype {
    DSP_DTYPE_F32 = 0,
    DSP_DTYPE_F16,
    DSP_DTYPE_BF16,
    DSP_DTYPE_I8,
    DSP_DTYPE_U8,
    DSP_DTYPE_I16,
    DSP_DTYPE_I32,
    DSP_DTYPE_I64,
    DSP_DTYPE_F64,
    DSP_DTYPE_BOOL,
    DSP_DTYPE_U16,
    DSP_DTYPE_U32,
    DSP_DTYPE_U64,
    DSP_DTYPE_COUNT
} dsp_dtype;

/* Bytes per element; 0 for an invalid dtype. */
DSP_API size_t dsp_dtype_size(dsp_dtype dt);
/* Lower-case name ("f32", "u8", ...); "invalid" for an invalid dtype. */
DSP_API const char *dsp_dtype_name(dsp_dtype dt);
/* Parse a name as printed by dsp_dtype_name. Returns 0 or DSP_EINVAL. */
DSP_API int dsp_dtype_from_name(const char *name, dsp_dtype *out);

typedef enum dsp_device_type {
    DSP_DEVICE_CPU = 0,
    DSP_DEVICE_CUDA = 1
} dsp_device_type;

typedef struct dsp_device {
    dsp_device_type type;
    int index;                  /* cuda:N; 0 for the CPU */
} dsp_device;

/* ---------------------------------------------------------------------------
 * dsp_buffer: a refcounted block of bytes that either owns its memory,
 * borrows it from the caller (with a release callback), or maps a file
 * read-only. Reference counting is atomic: buffers may be shared across
 * threads. A buffer is writable only while it has one reference and is not
 * a read-only mapping.
 * ------------------------------------------------------------------------- */
typedef struct dsp_buffer dsp_buffer;

typedef enum dsp_buffer_kind {
    DSP_BUFFER_OWNED = 0,       /* allocated by dsp_buffer_new              */
    DSP_BUFFER_BORROWED,        /* caller memory, released by a callback    */
    DSP_BUFFER_MAPPED,          /* read-only file mapping                   */
    DSP_BUFFER_DEVICE           /* device memory owned by a compute backend */
} dsp_buffer_kind;

/* New owned buffer of size bytes, 64-byte aligned, contents undefined.
 * *out receives the only reference. Returns 0 or DSP_ENOMEM. */
DSP_API int dsp_buffer_new(size_t size, dsp_buffer **out);

/* Wrap caller memory without copying. release(opaque, data) is called when
 * the last reference goes (release may be NULL for static memory).
 * readonly != 0 makes dsp_buffer_make_writable copy instead of writing. */
DSP_API int dsp_buffer_wrap(void *data, size_t size, int readonly,
                            void (*release)(void *opaque, void *data),
                            void *opaque, dsp_buffer **out);

/* Map a whole file read-only. Returns 0, DSP_ENOENT (no such file),
 * DSP_EINVAL (a directory, FIFO, device: not a regular file) or DSP_EIO;
 * on failure errno is left set so the
 * caller can put strerror(errno) in its message. A zero-length file gives
 * an empty buffer (data NULL, size 0). */
DSP_API int dsp_buffer_map_file(const char *path, dsp_buffer **out);

/* Take another reference; returns buf. NULL is passed through. */
DSP_API dsp_buffer *dsp_buffer_ref(dsp_buffer *buf);
/* Drop a reference and set *buf to NULL. NULL or *buf == NULL is a no-op. */
DSP_API void dsp_buffer_unref(dsp_buffer **buf);

DSP_API void *dsp_buffer_data(const dsp_buffer *buf);
DSP_API size_t dsp_buffer_size(const dsp_buffer *buf);
DSP_API dsp_buffer_kind dsp_buffer_get_kind(const dsp_buffer *buf);
DSP_API dsp_device dsp_buffer_device(const dsp_buffer *buf);
DSP_API int dsp_buffer_is_writable(const dsp_buffer *buf);
/* Make *buf writable: no-op if it already is, otherwise replace it with a
 * private owned copy (dropping the old reference). CPU buffers only. */
DSP_API int dsp_buffer_make_writable(dsp_buffer **buf);

/* ---------------------------------------------------------------------------
 * dsp_tensor: dtype, up to 8 dims, strides in elements, device, and a view
 * into a dsp_buffer at a byte offset. Tensors are refcounted; the fields are
 * public for reading by kernels, but change them only on a tensor you just
 * created or made writable.
 * ------------------------------------------------------------------------- */
typedef struct dsp_tensor {
    dsp_dtype dtype;
    int ndim;
    int64_t shape[DSP_MAX_DIMS];
    int64_t stride[DSP_MAX_DIMS];   /* elements, not bytes */
    dsp_device device;
    dsp_buffer *buf;                /* owned reference */
    size_t offset;                  /* bytes from the start of buf */
    int refcount_;                  /* private: use dsp_tensor_ref/unref */
} dsp_tensor;

/* New contiguous CPU tensor, contents undefined. shape may be NULL when
 * ndim == 0 (a scalar). Returns 0, DSP_EINVAL (bad dtype/ndim/negative dim,
 * or size overflow) or DSP_ENOMEM. */
DSP_API int dsp_tensor_new(dsp_dtype dtype, int ndim, const int64_t *shape,
                           dsp_tensor **out);

/* New tensor viewing buf (a reference is taken; the caller keeps its own).
 * stride NULL means contiguous. Fails with DSP_EINVAL if any element would
 * lie outside the buffer. */
DSP_API int dsp_tensor_from_buffer(dsp_dtype dtype, int ndim,
                                   const int64_t *shape, const int64_t *stride,
                                   dsp_buffer *buf, size_t offset,
                                   dsp_tensor **out);

DSP_API dsp_tensor *dsp_tensor_ref(dsp_tensor *t);
DSP_API void dsp_tensor_unref(dsp_tensor **t);

DSP_API int64_t dsp_tensor_numel(const dsp_tensor *t);
/* Bytes covered by the elements if contiguous: numel * dtype size. */
DSP_API size_t dsp_tensor_nbytes(const dsp_tensor *t);
DSP_API int dsp_tensor_is_contiguous(const dsp_tensor *t);
/* Pointer to the first element (buffer data + offset). */
DSP_API void *dsp_tensor_data(const dsp_tensor *t);
/* Make *t safe to modify: copies the tensor (contiguously) unless both the
 * tensor and its buffer have a single reference and the buffer is writable. */
DSP_API int dsp_tensor_make_writable(dsp_tensor **t);
/* *out = a contiguous tensor with the same values: a new reference to t when
 * t is already contiguous, otherwise a copy. */
DSP_API int dsp_tensor_contiguous(dsp_tensor *t, dsp_tensor **out);
/* "f32[2,3,224,224]" into dst (always NUL-terminated). Returns dst. */
DSP_API char *dsp_tensor_describe(const dsp_tensor *t, char *dst, size_t n);

struct dsp_context;

/* Copy t to dev: a CPU tensor to a CUDA device (dev from dsp_device_open),
 * a CUDA tensor back to the CPU (dev.type == DSP_DEVICE_CPU), or between
 * CUDA devices (through host memory). The copy is contiguous and *out is a
 * new reference the caller owns; for CPU to CPU it is
 * dsp_tensor_contiguous's result (t itself, referenced, when contiguous).
 * Device memory comes from ctx's CUDA backend and is freed with the last
 * reference; a device tensor must not outlive the process's use of CUDA.
 * Returns 0; DSP_EDEVICE when the device is not usable (no backend, no
 * such GPU, a failed copy), DSP_EUNSUPPORTED for a strided CUDA tensor,
 * DSP_ENOMEM, or DSP_EINVAL; the message is on ctx and *out is NULL. */
DSP_API int dsp_tensor_to_device(struct dsp_context *ctx, const dsp_tensor *t, dsp_device dev,
                                 dsp_tensor **out);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_TENSOR_H */
