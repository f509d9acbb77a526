/* packet.c - dsp_packet: named tensors, metadata and stream position, refcounted. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct packet_entry {
    char *name;
    dsp_tensor *t;
} packet_entry;

struct dsp_packet {
    atomic_int refcount;
    /* Set once by the scheduler on emit, read by any thread after the
     * hand-off; atomic so the read needs no lock. */
    atomic_int frozen;
    int64_t item, part;
    int last;
    double pts;
    dsp_meta *meta;
    packet_entry *entries;  /* insertion order; packets hold a handful */
    int n, cap;
};

int dsp_packet_new(dsp_packet **out)
{
    dsp_packet *p;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return DSP_ENOMEM;
    p->meta = dsp_meta_new();
    if (!p->meta) {
        free(p);
        return DSP_ENOMEM;
    }
    atomic_init(&p->refcount, 1);
    atomic_init(&p->frozen, 0);
    p->last = 1;
    p->pts = NAN;
    *out = p;
    return 0;
}

dsp_packet *dsp_packet_ref(dsp_packet *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refcount, 1, memory_order_relaxed);
    return p;
}

static void packet_destroy(dsp_packet *p)
{
    for (int i = 0; i < p->n; i++) {
        dsp_tensor_unref(&p->entries[i].t);
        free(p->entries[i].name);
    }
    free(p->entries);
    dsp_meta_free(&p->meta);
    free(p);
}

void dsp_packet_unref(dsp_packet **p)
{
    dsp_packet *x;

    if (!p || !*p)
        return;
    x = *p;
    *p = NULL;
    if (atomic_fetch_sub_explicit(&x->refcount, 1, memory_order_acq_rel) == 1)
        packet_destroy(x);
}

void dspi_packet_freeze(dsp_packet *p)
{
    if (p)
        atomic_store_explicit(&p->frozen, 1, memory_order_release);
}

int dsp_packet_is_writable(const dsp_packet *p)
{
    dsp_packet *q = (dsp_packet *)p;

    if (!q || atomic_load_explicit(&q->frozen, memory_order_acquire))
        return 0;
    return atomic_load_explicit(&q->refcount, memory_order_acquire) == 1;
}

static int packet_grow(dsp_packet *p)
{
    int cap = p->cap ? p->cap * 2 : 4;
    packet_entry *e;

    if (p->n < p->cap)
        return 0;
    e = realloc(p->entries, (size_t)cap * sizeof(*e));
    if (!e)
        return DSP_ENOMEM;
    p->entries = e;
    p->cap = cap;
    return 0;
}

int dsp_packet_derive(const dsp_packet *src, dsp_packet **out)
{
    dsp_packet *p;
    int err;

    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!src)
        return DSP_EINVAL;
    if ((err = dsp_packet_new(&p)) < 0)
        return err;
    p->item = src->item;
    p->part = src->part;
    p->last = src->last;
    p->pts = src->pts;
    dsp_meta_free(&p->meta);
    p->meta = dsp_meta_copy(src->meta);
    if (!p->meta)
        goto oom;
    if (src->n) {
        p->entries = malloc((size_t)src->n * sizeof(*p->entries));
        if (!p->entries)
            goto oom;
        p->cap = src->n;
    }
    for (int i = 0; i < src->n; i++) {
        p->entries[i].name = strdup(src->entries[i].name);
        if (!p->entries[i].name)
            goto oom;
        p->entries[i].t = dsp_tensor_ref(src->entries[i].t);
        p->n = i + 1;
    }
    *out = p;
    return 0;

oom:
    dsp_packet_unref(&p);
    return DSP_ENOMEM;
}

int dsp_packet_make_writable(dsp_packet **p)
{
    dsp_packet *copy;
    int err;

    if (!p || !*p)
        return DSP_EINVAL;
    if (dsp_packet_is_writable(*p))
        return 0;
    if ((err = dsp_packet_derive(*p, &copy)) < 0)
        return err;
    dsp_packet_unref(p);
    *p = copy;
    return 0;
}

static int packet_find(const dsp_packet *p, const char *name)
{
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->entries[i].name, name) == 0)
            return i;
    }
    return -1;
}

int dsp_packet_set_tensor(dsp_packet *p, const char *name, dsp_tensor *t)
{
    char *copy;
    int i, err;

    if (!p || !name || !t) {
        err = DSP_EINVAL;
        goto fail;
    }
    if (!dsp_packet_is_writable(p)) {
        err = DSP_ESTATE;
        goto fail;
    }
    i = packet_find(p, name);
    if (i >= 0) {
        dsp_tensor_unref(&p->entries[i].t);
        p->entries[i].t = t;
        return 0;
    }
    if ((err = packet_grow(p)) < 0)
        goto fail;
    copy = strdup(name);
    if (!copy) {
        err = DSP_ENOMEM;
        goto fail;
    }
    p->entries[p->n].name = copy;
    p->entries[p->n].t = t;
    p->n++;
    return 0;

fail:
    /* transfer full: the caller's reference is gone on failure too */
    dsp_tensor_unref(&t);
    return err;
}

dsp_tensor *dsp_packet_tensor(const dsp_packet *p, const char *name)
{
    int i;

    if (!p || !name)
        return NULL;
    i = packet_find(p, name);
    return i >= 0 ? p->entries[i].t : NULL;
}

int dsp_packet_tensor_count(const dsp_packet *p)
{
    return p ? p->n : 0;
}

dsp_tensor *dsp_packet_tensor_at(const dsp_packet *p, int i, const char **name)
{
    if (!p || i < 0 || i >= p->n) {
        if (name)
            *name = NULL;
        return NULL;
    }
    if (name)
        *name = p->entries[i].name;
    return p->entries[i].t;
}

int dsp_packet_remove_tensor(dsp_packet *p, const char *name)
{
    int i;

    if (!p || !name)
        return DSP_EINVAL;
    if (!dsp_packet_is_writable(p))
        return DSP_ESTATE;
    i = packet_find(p, name);
    if (i < 0)
        return DSP_ENOENT;
    dsp_tensor_unref(&p->entries[i].t);
    free(p->entries[i].name);
    memmove(&p->entries[i], &p->entries[i + 1],
            (size_t)(p->n - i - 1) * sizeof(*p->entries));
    p->n--;
    return 0;
}

dsp_meta *dsp_packet_meta(dsp_packet *p)
{
    return p ? p->meta : NULL;
}

const dsp_meta *dsp_packet_meta_const(const dsp_packet *p)
{
    return p ? p->meta : NULL;
}

int64_t dsp_packet_item(const dsp_packet *p)
{
    return p ? p->item : 0;
}

int64_t dsp_packet_part(const dsp_packet *p)
{
    return p ? p->part : 0;
}

int dsp_packet_last(const dsp_packet *p)
{
    return p ? p->last : 1;
}

double dsp_packet_pts(const dsp_packet *p)
{
    return p ? p->pts : NAN;
}

/* Changing an emitted packet would race with its readers on other threads:
 * that is a bug in the caller, reported loudly rather than corrupting data. */
static int packet_check_mutable(const dsp_packet *p, const char *what)
{
    if (!p)
        return 0;
    if (atomic_load_explicit(&((dsp_packet *)p)->frozen, memory_order_acquire)) {
        dsp_log(DSP_LOG_WARNING, "packet",
                "%s on an emitted packet ignored: call "
                "dsp_packet_make_writable first", what);
        return 0;
    }
    return 1;
}

void dsp_packet_set_pos(dsp_packet *p, int64_t item, int64_t part, int last)
{
    if (!packet_check_mutable(p, "dsp_packet_set_pos"))
        return;
    p->item = item;
    p->part = part;
    p->last = last != 0;
}

void dsp_packet_set_pts(dsp_packet *p, double pts)
{
    if (!packet_check_mutable(p, "dsp_packet_set_pts"))
        return;
    p->pts = pts;
}
