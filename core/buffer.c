/* buffer.c - dsp_buffer: refcounted owned, borrowed, file-mapped and device memory. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* One entry of a read-only buffer's derived data (dspi_buffer_derived). */
typedef struct buffer_derived {
    struct buffer_derived *next;
    void *data;
    void (*release)(void *data);
    size_t key_len;
    unsigned char key[];
} buffer_derived;

struct dsp_buffer {
    atomic_int refcount;
    dsp_buffer_kind kind;
    int readonly;
    void *data;
    size_t size;
    dsp_device device;
    void (*release)(void *opaque, void *data);
    void *opaque;
    buffer_derived *derived;    /* under g_derived_lock */
};

/* One lock for every buffer's derived list: it is taken once per lookup
 * (a convolution call), and a miss builds the entry under it so two
 * threads never build the same one. */
static pthread_mutex_t g_derived_lock = PTHREAD_MUTEX_INITIALIZER;

static int buffer_alloc(dsp_buffer_kind kind, void *data, size_t size,
                        dsp_buffer **out)
{
    dsp_buffer *b = calloc(1, sizeof(*b));

    if (!b)
        return DSP_ENOMEM;
    atomic_init(&b->refcount, 1);
    b->kind = kind;
    b->data = data;
    b->size = size;
    b->device.type = DSP_DEVICE_CPU;
    b->device.index = 0;
    *out = b;
    return 0;
}

int dsp_buffer_new(size_t size, dsp_buffer **out)
{
    void *data;
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    data = dsp_malloc(size);
    if (!data)
        return DSP_ENOMEM;
    err = buffer_alloc(DSP_BUFFER_OWNED, data, size, out);
    if (err < 0)
        dsp_free(data);
    return err;
}

int dsp_buffer_wrap(void *data, size_t size, int readonly,
                    void (*release)(void *opaque, void *data),
                    void *opaque, dsp_buffer **out)
{
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!data && size)
        return DSP_EINVAL;
    err = buffer_alloc(DSP_BUFFER_BORROWED, data, size, out);
    if (err < 0)
        return err;
    (*out)->readonly = readonly != 0;
    (*out)->release = release;
    (*out)->opaque = opaque;
    return 0;
}

int dspi_buffer_new_device(dsp_device dev, void *ptr, size_t size,
                           void (*release)(void *opaque, void *data),
                           void *opaque, dsp_buffer **out)
{
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!ptr && size)
        return DSP_EINVAL;
    err = buffer_alloc(DSP_BUFFER_DEVICE, ptr, size, out);
    if (err < 0)
        return err;
    (*out)->device = dev;
    (*out)->release = release;
    (*out)->opaque = opaque;
    return 0;
}

static int errno_to_dsp(int e)
{
    return e == ENOENT ? DSP_ENOENT : DSP_EIO;
}

int dsp_buffer_map_file(const char *path, dsp_buffer **out)
{
    struct stat st;
    void *data = NULL;
    size_t size;
    int fd, err, saved;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!path)
        return DSP_EINVAL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno_to_dsp(errno);
    if (fstat(fd, &st) < 0) {
        err = errno_to_dsp(errno);
        goto fail_fd;
    }
    /* a directory, FIFO, socket or device (whose size reads 0) is no file
     * to map */
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        err = DSP_EINVAL;
        goto fail_fd;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX) {
        errno = EFBIG;
        err = DSP_EIO;
        goto fail_fd;
    }
    size = (size_t)st.st_size;
    /* mmap refuses length 0; an empty file is a valid empty buffer. */
    if (size > 0) {
        data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (data == MAP_FAILED) {
            err = errno_to_dsp(errno);
            goto fail_fd;
        }
    }
    close(fd);
    err = buffer_alloc(DSP_BUFFER_MAPPED, data, size, out);
    if (err < 0) {
        if (data)
            munmap(data, size);
        return err;
    }
    (*out)->readonly = 1;
    return 0;

fail_fd:
    /* errno describes the failure for the caller's message; close must not
     * overwrite it. */
    saved = errno;
    close(fd);
    errno = saved;
    return err;
}

dsp_buffer *dsp_buffer_ref(dsp_buffer *buf)
{
    if (buf)
        atomic_fetch_add_explicit(&buf->refcount, 1, memory_order_relaxed);
    return buf;
}

void *dspi_buffer_derived(dsp_buffer *buf, const void *key, size_t key_len,
                          int (*make)(void *ctx, void **data), void (*release)(void *data),
                          void *ctx, int *rc)
{
    buffer_derived *e;
    void *data = NULL;
    *rc = 0;
    if (!buf || !buf->readonly)
        return NULL;
    pthread_mutex_lock(&g_derived_lock);
    for (e = buf->derived; e; e = e->next)
        if (e->key_len == key_len && !memcmp(e->key, key, key_len))
            break;
    if (e) {
        data = e->data;
    } else if (!(e = malloc(sizeof *e + key_len))) {
        *rc = DSP_ENOMEM;
    } else if ((*rc = make(ctx, &data)) < 0) {
        free(e);
        data = NULL;
    } else {
        memcpy(e->key, key, key_len);
        e->key_len = key_len;
        e->data = data;
        e->release = release;
        e->next = buf->derived;
        buf->derived = e;
    }
    pthread_mutex_unlock(&g_derived_lock);
    return data;
}

static void buffer_destroy(dsp_buffer *b)
{
    /* the last reference: no other thread can be looking this list up */
    while (b->derived) {
        buffer_derived *e = b->derived;
        b->derived = e->next;
        e->release(e->data);
        free(e);
    }
    switch (b->kind) {
    case DSP_BUFFER_OWNED:
        dsp_free(b->data);
        break;
    case DSP_BUFFER_MAPPED:
        if (b->data)
            munmap(b->data, b->size);
        break;
    case DSP_BUFFER_BORROWED:
    case DSP_BUFFER_DEVICE:
        if (b->release)
            b->release(b->opaque, b->data);
        break;
    }
    free(b);
}

void dsp_buffer_unref(dsp_buffer **buf)
{
    dsp_buffer *b;

    if (!buf || !*buf)
        return;
    b = *buf;
    *buf = NULL;
    /* acq_rel: the thread that frees must see every other holder's writes. */
    if (atomic_fetch_sub_explicit(&b->refcount, 1, memory_order_acq_rel) == 1)
        buffer_destroy(b);
}

void *dsp_buffer_data(const dsp_buffer *buf)
{
    return buf ? buf->data : NULL;
}

size_t dsp_buffer_size(const dsp_buffer *buf)
{
    return buf ? buf->size : 0;
}

dsp_buffer_kind dsp_buffer_get_kind(const dsp_buffer *buf)
{
    return buf ? buf->kind : DSP_BUFFER_OWNED;
}

dsp_device dsp_buffer_device(const dsp_buffer *buf)
{
    dsp_device cpu = { DSP_DEVICE_CPU, 0 };

    return buf ? buf->device : cpu;
}

int dsp_buffer_is_writable(const dsp_buffer *buf)
{
    if (!buf || buf->readonly)
        return 0;
    return atomic_load_explicit(&((dsp_buffer *)buf)->refcount,
                                memory_order_acquire) == 1;
}

int dsp_buffer_make_writable(dsp_buffer **buf)
{
    dsp_buffer *copy;
    int err;

    if (!buf || !*buf)
        return DSP_EINVAL;
    if (dsp_buffer_is_writable(*buf))
        return 0;
    if ((*buf)->device.type != DSP_DEVICE_CPU)
        return DSP_EUNSUPPORTED;
    err = dsp_buffer_new((*buf)->size, &copy);
    if (err < 0)
        return err;
    if ((*buf)->size)
        memcpy(copy->data, (*buf)->data, (*buf)->size);
    dsp_buffer_unref(buf);
    *buf = copy;
    return 0;
}
