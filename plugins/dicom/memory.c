/* memory.c - memory for decoded images and volumes: pieces of huge-page chunks, huge-page advice. */
#include "dicom.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* Chunk size: a few hundred typical CT / MR images; a larger image (more
 * than a quarter of it) gets an allocation of its own. */
#define ARENA_CHUNK ((size_t)64 << 20)

void dicom_advise_huge_pages(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)p, end = start + n;
    uintptr_t first = pg > 0 ? (start + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1) : end;
    if (n >= ((size_t)4 << 20) && end - first >= (uintptr_t)pg)
        (void)madvise((void *)first, (end - first) & ~((uintptr_t)pg - 1), MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

int dicom_arena_tensor(dicom_arena *arena, dsp_dtype dt, int ndim, const int64_t *shape,
                       dsp_tensor **out)
{
    *out = NULL;
    size_t n = dsp_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > SIZE_MAX / (size_t)shape[i]))
            return DSP_EINVAL;
        n *= (size_t)shape[i];
    }
    n = (n + 63) & ~(size_t)63;         /* every piece starts 64-byte aligned */
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer (the fuzzers' build) should see every image's bounds */
    arena = NULL;
#endif
    if (!arena || n == 0 || n > ARENA_CHUNK / 4) {
        int err = dsp_tensor_new(dt, ndim, shape, out);
        if (err == 0)
            dicom_advise_huge_pages(dsp_tensor_data(*out), dsp_tensor_nbytes(*out));
        return err;
    }
    if (!arena->chunk || arena->used + n > dsp_buffer_size(arena->chunk)) {
        dsp_buffer_unref(&arena->chunk);
        arena->used = 0;
        int err = dsp_buffer_new(ARENA_CHUNK, &arena->chunk);
        if (err < 0)
            return err;
        dicom_advise_huge_pages(dsp_buffer_data(arena->chunk), ARENA_CHUNK);
    }
    int err = dsp_tensor_from_buffer(dt, ndim, shape, NULL, arena->chunk, arena->used, out);
    if (err == 0)
        arena->used += n;
    return err;
}

void dicom_arena_release(dicom_arena *arena)
{
    dsp_buffer_unref(&arena->chunk);
    arena->used = 0;
}
