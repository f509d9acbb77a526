/* queue.c - the scheduler's edge queues: growable packet rings, with enqueue times when profiling. */
#include "config.h"

#include <stdlib.h>

#include "scheduler.h"

static int queue_reserve(dspi_queue *q)
{
    int cap;
    dsp_packet **ring;
    int64_t *t = NULL;

    if (q->count < q->cap)
        return 0;
    cap = q->cap ? 2 * q->cap : 8;
    ring = malloc(cap * sizeof(*ring));
    if (q->t_enq)
        t = malloc(cap * sizeof(*t));
    if (!ring || (q->t_enq && !t)) {
        free(ring);
        free(t);
        return DSP_ENOMEM;
    }
    for (int i = 0; i < q->count; i++) {
        ring[i] = q->ring[(q->head + i) % q->cap];
        if (t)
            t[i] = q->t_enq[(q->head + i) % q->cap];
    }
    free(q->ring);
    free(q->t_enq);
    q->ring = ring;
    q->t_enq = t;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int dspi_queue_push(dspi_queue *q, dsp_packet *p)
{
    int tail;
    if (queue_reserve(q) < 0)
        return DSP_ENOMEM;
    tail = (q->head + q->count) % q->cap;
    q->ring[tail] = p;
    if (q->t_enq)
        q->t_enq[tail] = dspi_now_ns();
    q->count++;
    return 0;
}

/* Give back a packet taken but not processed (the end of a cut burst). */
int dspi_queue_push_front(dspi_queue *q, dsp_packet *p)
{
    if (queue_reserve(q) < 0)
        return DSP_ENOMEM;
    q->head = (q->head + q->cap - 1) % q->cap;
    q->ring[q->head] = p;
    if (q->t_enq)
        q->t_enq[q->head] = dspi_now_ns();
    q->count++;
    return 0;
}

dsp_packet *dspi_queue_peek(const dspi_queue *q)
{
    return q->count ? q->ring[q->head] : NULL;
}

dsp_packet *dspi_queue_pop(dspi_queue *q, int64_t *waited_ns)
{
    dsp_packet *p = q->ring[q->head];
    if (q->t_enq && waited_ns)
        *waited_ns += dspi_now_ns() - q->t_enq[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return p;
}

void dspi_queue_drain(dspi_queue *q)
{
    while (q->count) {
        dsp_packet *p = dspi_queue_pop(q, NULL);
        dsp_packet_unref(&p);
    }
}
