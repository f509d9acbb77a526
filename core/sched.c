/* sched.c - the scheduler: a worker pool over bounded edge queues (queue.c), joins by (item, part), watermarks, failure policy.
 *
 * How it stays correct:
 * - A node's callbacks run on one worker at a time, and each edge is a FIFO,
 *   so every edge carries packets in the order they were made and the
 *   output of a run does not depend on the number of threads.
 * - All scheduling state is guarded by one mutex; callbacks run unlocked.
 *   A callback's output goes to the node's outbox and is moved into the
 *   consumer queues after it returns, so a node never blocks inside a
 *   callback. A node is not scheduled while one of its output queues is
 *   at its limit (backpressure).
 * - Joins: a node with several input slots gets one packet per slot, all
 *   with the same (item, part). Each edge carries a watermark, the lowest
 *   item that may still arrive on it; when one slot can no longer deliver
 *   the smallest waiting key (its head is past it, or its watermark is),
 *   the packets of that key are dropped, so a branch that failed or
 *   filtered an item never stalls the join.
 * - A node's watermark is the smallest item it may still emit: the least of
 *   its inputs' heads and watermarks and the item it consumed last (it may
 *   emit more parts of that one). Operators emit an item's packets no later
 *   than the call that consumes a later item, which makes this true.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

typedef enum { ACT_PROCESS, ACT_BATCH, ACT_FLUSH, ACT_SOURCE, ACT_STOP } action;

/* ---- readiness ------------------------------------------------------------ */

static int outputs_have_space(const dsp_node *n)
{
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++) {
            const dspi_queue *q = n->out[p][k];
            if (q->count >= q->limit && !(q->dst->elastic && q->wm == q->dst->elastic_item))
                return 0;
        }
    return 1;
}

static int inputs_exhausted(const dsp_node *n)
{
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && (!n->in[i]->eos || n->in[i]->count))
            return 0;
    return 1;
}

static int key_cmp(const dsp_packet *a, int64_t item, int64_t part)
{
    int64_t ai = dsp_packet_item(a), ap = dsp_packet_part(a);
    if (ai != item)
        return ai < item ? -1 : 1;
    if (ap != part)
        return ap < part ? -1 : 1;
    return 0;
}

/* After a node failed on an item, the item's remaining parts are dropped at
 * that node: they would only make an incomplete result. This is local to
 * the node (other branches go on), so the outcome does not depend on timing. */
static int drop_failed_heads(dsp_node *n)
{
    int dropped = 0;
    if (n->failed_item < 0)
        return 0;
    for (int i = 0; i < n->n_in; i++) {
        dspi_queue *q = n->in[i];
        while (q && q->count && dsp_packet_item(dspi_queue_peek(q)) == n->failed_item) {
            dsp_packet *p = dspi_queue_pop(q, NULL);
            dsp_packet_unref(&p);
            dropped++;
        }
    }
    return dropped;
}

/* Resolve the join: 1 when every connected slot's head has the same key.
 * Keys that can no longer be completed are dropped on the way (counted in
 * *dropped: the caller must tell the producers and the watermarks). */
static int join_ready(dspi_sched *s, dsp_node *n, int *dropped)
{
    for (;;) {
        int64_t kitem = DSPI_ITEM_MAX, kpart = DSPI_ITEM_MAX;
        int heads = 0, all = 1, dead = 0;

        for (int i = 0; i < n->n_in; i++) {
            dsp_packet *h = n->in[i] ? dspi_queue_peek(n->in[i]) : NULL;
            if (h && key_cmp(h, kitem, kpart) < 0) {
                kitem = dsp_packet_item(h);
                kpart = dsp_packet_part(h);
            }
            heads += h != NULL;
        }
        if (!heads)
            return 0;
        for (int i = 0; i < n->n_in; i++) {
            dspi_queue *q = n->in[i];
            dsp_packet *h;
            if (!q)
                continue;
            h = dspi_queue_peek(q);
            if (h ? key_cmp(h, kitem, kpart) != 0 : (q->eos || q->wm > kitem))
                dead = 1;
            if (!h || key_cmp(h, kitem, kpart) != 0)
                all = 0;
        }
        if (!dead) {
            /* Waiting on a slot that is at this very item: what is missing
             * is a part the producer may have dropped, and it can only tell
             * by going on. Let the other slots overfill up to the end of the
             * item instead of deadlocking on their bound. A slot behind by a
             * whole item (a slower branch) does not do this. */
            int elastic = 0;
            for (int i = 0; i < n->n_in && !all; i++) {
                dspi_queue *q = n->in[i];
                if (q && !q->count && !q->eos && q->wm == kitem)
                    elastic = 1;
            }
            if (elastic && !n->elastic)
                (*dropped)++;   /* the producers must look again */
            n->elastic = elastic;
            n->elastic_item = kitem;
            return all;
        }
        n->elastic = 0;
        for (int i = 0; i < n->n_in; i++) {
            dspi_queue *q = n->in[i];
            dsp_packet *h = q ? dspi_queue_peek(q) : NULL;
            if (h && key_cmp(h, kitem, kpart) == 0) {
                h = dspi_queue_pop(q, NULL);
                dsp_packet_unref(&h);
                n->st.dropped++;
                (*dropped)++;
            }
        }
        /* expected when a branch filters items; say it once per node */
        if (!dspi_item_failed(s, kitem))
            dsp_log(n->st.dropped == 1 ? DSP_LOG_WARNING : DSP_LOG_DEBUG, n->label,
                    "item %lld part %lld reached only some inputs (a branch dropped it); "
                    "dropped at the join%s", (long long)kitem, (long long)kpart,
                    n->st.dropped == 1 ? " (further drops are counted in --profile)" : "");
    }
}

static int batch_timed_out(const dsp_node *n, int64_t now)
{
    const dspi_queue *q = n->in[0];
    return n->batch_timeout_ms > 0 && q->count && q->t_enq &&
           now - q->t_enq[q->head] >= (int64_t)n->batch_timeout_ms * 1000000;
}

static int node_ready(dspi_sched *s, dsp_node *n, int *dropped)
{
    int connected = 0, slot = -1, have_input;

    if (n->state != DSPI_IDLE)
        return 0;
    if (n->op->flags & DSP_OP_SOURCE)
        return s->stopping || outputs_have_space(n);
    *dropped += drop_failed_heads(n);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]) {
            connected++;
            slot = i;
        }
    /* Dropping dead join keys must not wait for room downstream: that room
     * may be held by a join that waits for exactly this drop. */
    if (connected > 1 && n->batch <= 1)
        have_input = join_ready(s, n, dropped);
    else if (n->batch > 1) {
        const dspi_queue *q = n->in[0];
        have_input = q->count >= n->batch ||
                     (q->count && (q->eos || n->batch_timeout_ms == 0 ||
                                   batch_timed_out(n, dspi_now_ns())));
    } else {
        have_input = connected == 1 && n->in[slot]->count > 0;
    }
    /* flush runs once and may overfill its queues: waiting for room there
     * could wait for a join that waits for this node's end of stream */
    if (inputs_exhausted(n))
        return !n->flushed;
    return have_input && outputs_have_space(n);
}

static void propagate(dspi_sched *s, dsp_node *start);

void dspi_make_ready(dspi_sched *s, dsp_node *n)
{
    int dropped = 0;

    if (node_ready(s, n, &dropped)) {
        n->state = DSPI_READY;
        s->readyq[(s->rq_head + s->rq_count) % s->n_nodes] = n->index;
        s->rq_count++;
        pthread_cond_signal(&s->work);
    }
    if (dropped) {
        /* dropping made room upstream and may raise watermarks downstream */
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i])
                dspi_make_ready(s, n->in[i]->src);
        propagate(s, n);
    }
}

/* ---- watermarks ------------------------------------------------------------ */

static int64_t node_low_item(const dsp_node *n)
{
    int64_t low = DSPI_ITEM_MAX;

    if (n->state == DSPI_FINISHED)
        return DSPI_ITEM_MAX;
    /* a source's items only grow; src_low is updated when its packets
     * are queued, never from what a running source has only emitted */
    if (n->op->flags & DSP_OP_SOURCE)
        return n->src_low;
    for (int i = 0; i < n->n_in; i++) {
        const dspi_queue *q = n->in[i];
        int64_t v;
        if (!q)
            continue;
        v = q->count ? dsp_packet_item(dspi_queue_peek(q)) : (q->eos ? DSPI_ITEM_MAX : q->wm);
        low = DSPI_MIN(low, v);
    }
    if (n->state == DSPI_RUNNING)
        low = DSPI_MIN(low, n->running_item);
    /* inputs done but not flushed yet: flush() may still emit */
    if (low == DSPI_ITEM_MAX)
        low = DSPI_MAX(n->last_consumed, 0);
    return low;
}

/* Every item below this has left the graph: no queue holds a packet of
 * it, no node runs it, and (operators emitting in item order) no node
 * will emit it again. */
int64_t dspi_retired_below(dspi_sched *s)
{
    int64_t low = DSPI_ITEM_MAX;
    for (int i = 0; i < s->n_nodes; i++)
        low = DSPI_MIN(low, node_low_item(&s->nodes[i]));
    return low;
}

/* Raise the watermarks downstream of n as far as they go. Iterative: a
 * watermark only rises, so each edge changes a bounded number of times. */
static void propagate(dspi_sched *s, dsp_node *start)
{
    dsp_node *stack[64];
    int sp = 0;

    stack[sp++] = start;
    while (sp) {
        dsp_node *n = stack[--sp];
        int64_t low = node_low_item(n);
        for (int p = 0; p < n->n_out; p++)
            for (int k = 0; k < n->n_cons[p]; k++) {
                dspi_queue *q = n->out[p][k];
                if (q->wm >= low)
                    continue;
                q->wm = low;
                dspi_make_ready(s, q->dst);
                if (q->count == 0 && q->dst->state != DSPI_FINISHED) {
                    if (sp < (int)DSPI_ARRAY_LEN(stack))
                        stack[sp++] = q->dst;
                    else
                        propagate(s, q->dst);
                }
            }
    }
}

/* ---- finishing, failures ----------------------------------------------- */

static void finish_node(dspi_sched *s, dsp_node *n)
{
    if (n->state == DSPI_FINISHED)
        return;
    n->state = DSPI_FINISHED;
    s->n_finished++;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            dspi_queue_drain(n->in[i]);
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++) {
            dspi_queue *q = n->out[p][k];
            q->eos = 1;
            q->wm = DSPI_ITEM_MAX;
            if (s->aborting)
                dspi_queue_drain(q);
            dspi_make_ready(s, q->dst);
            if (q->dst->state == DSPI_IDLE && !q->count)
                propagate(s, q->dst);
        }
    /* producers may have been waiting for room in our (now drained) inputs */
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            dspi_make_ready(s, n->in[i]->src);
    if (s->n_finished == s->n_nodes) {
        s->done = 1;
        pthread_cond_broadcast(&s->work);
        pthread_cond_broadcast(&s->done_cv);
    }
}

void dspi_sched_abort(dspi_sched *s, int code, char *msg)
{
    if (!s->aborting) {
        s->aborting = 1;
        s->abort_code = code;
        s->abort_msg = msg;
        msg = NULL;
    }
    free(msg);
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].state != DSPI_RUNNING)
            finish_node(s, &s->nodes[i]);
}

/* ---- running one node ---------------------------------------------------- */

/* One activation of a node. To keep the lock out of the per-packet path,
 * an activation of a node with one connected input (or a source) runs a
 * burst of up to BURST calls back to back, limited by the room left in its
 * output queues so the queues stay bounded. */
#define BURST 32
/* ... and cut short once it has run this long: a slow operator's outputs
 * must flow on while it works, not all at the end of its burst */
#define BURST_BUDGET_NS 50000

typedef struct job {
    dsp_node *n;
    action act;
    int eof;                    /* a source reached its end (and was flushed) */
    int calls;                  /* ACT_PROCESS/ACT_SOURCE: callbacks to run */
    int ran;                    /* callbacks that ran */
    dsp_packet *stack[BURST];
    dsp_packet **in;            /* calls x n_in slots, or the batch */
    int n_pkts;
    dspi_failure fail_stack[4];
    dspi_failure *fails;
    int n_fails, cap_fails;
    int last_err;               /* result of the last callback */
} job;

/* Room left in the fullest output queue, at least 1. */
static int output_room(const dsp_node *n)
{
    int room = BURST;
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++)
            room = DSPI_MIN(room, n->out[p][k]->limit - n->out[p][k]->count);
    return DSPI_MAX(room, 1);
}

/* Under the lock: decide what the node does and take its inputs. */
static int take_job(dspi_sched *s, dsp_node *n, job *j)
{
    int64_t waited = 0;
    int connected = 0, slot = 0;

    memset(j, 0, sizeof(*j));
    j->n = n;
    j->in = j->stack;
    j->fails = j->fail_stack;
    j->cap_fails = (int)DSPI_ARRAY_LEN(j->fail_stack);
    n->running_item = DSPI_MAX(n->last_consumed, 0);
    if (n->op->flags & DSP_OP_SOURCE) {
        j->act = s->stopping ? ACT_STOP : ACT_SOURCE;
        j->calls = output_room(n);
        return 0;
    }
    if (inputs_exhausted(n)) {
        j->act = ACT_FLUSH;
        return 0;
    }
    if (n->batch > 1) {
        int cnt = DSPI_MIN(n->in[0]->count, n->batch);
        if (cnt > BURST && !(j->in = malloc(cnt * sizeof(*j->in))))
            return DSP_ENOMEM;
        for (int i = 0; i < cnt; i++)
            j->in[i] = dspi_queue_pop(n->in[0], &waited);
        j->n_pkts = cnt;
        j->act = ACT_BATCH;
    } else {
        int cap = output_room(n);
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]) {
                connected++;
                slot = i;
            }
        if (cap * n->n_in > BURST && !(j->in = calloc(cap * n->n_in, sizeof(*j->in))))
            return DSP_ENOMEM;
        /* take matched sets while there are any, dropping failed items */
        while (j->calls < cap) {
            dsp_packet **set = &j->in[j->calls * n->n_in];
            int dropped = drop_failed_heads(n);
            if (connected == 1 ? !n->in[slot]->count : !join_ready(s, n, &dropped))
                break;
            for (int i = 0; i < n->n_in; i++)
                set[i] = n->in[i] ? dspi_queue_pop(n->in[i], &waited) : NULL;
            j->calls++;
        }
        j->n_pkts = j->calls * n->n_in;
        j->act = ACT_PROCESS;
    }
    n->running_item = DSPI_ITEM_MAX;
    for (int i = 0; i < j->n_pkts; i++)
        if (j->in[i])
            n->running_item = DSPI_MIN(n->running_item, dsp_packet_item(j->in[i]));
    if (n->running_item == DSPI_ITEM_MAX)
        n->running_item = DSPI_MAX(n->last_consumed, 0);
    n->st.ns_queue_wait += waited;
    return 0;
}

/* A free slot in j->fails, or NULL when out of memory. */
static dspi_failure *fail_slot(job *j)
{
    if (j->n_fails == j->cap_fails) {
        int cap = 2 * j->cap_fails;
        dspi_failure *nf = malloc(cap * sizeof(*nf));
        if (!nf)
            return NULL;
        memcpy(nf, j->fails, j->n_fails * sizeof(*nf));
        if (j->fails != j->fail_stack)
            free(j->fails);
        j->fails = nf;
        j->cap_fails = cap;
    }
    return &j->fails[j->n_fails++];
}

/* Unlocked: keep a failed call's details for complete_job. */
static void note_failure(job *j, int err, dsp_packet *const *in, int n_in)
{
    dsp_node *n = j->n;
    const char *input = in ? dspi_packet_input_name(in, n_in) : NULL;
    dspi_failure *f = fail_slot(j);

    if (!f) {
        dspi_node_clear_error(n);
        return;             /* out of memory: the failure still shows in last_err */
    }
    f->code = err;
    f->item = in ? n->cur_item : -1;
    f->part = in ? n->cur_part : 0;
    f->msg = n->errmsg ? strdup(n->errmsg) : strdup(dsp_strerror(err));
    f->input = input ? strdup(input) : NULL;
    dspi_node_clear_error(n);
}

/* The callback emitted a packet of item, or failed it alone. */
static int outbox_has_item(const dsp_node *n, int64_t item)
{
    for (int i = 0; i < n->n_outbox; i++)
        if (dsp_packet_item(n->outbox[i].pkt) == item)
            return 1;
    for (int i = 0; i < n->n_pkt_fails; i++)
        if (n->pkt_fails[i].item == item)
            return 1;
    return 0;
}

/* Unlocked: a failed process_batch call left the items of its batch that it
 * emitted nothing for (nor failed alone) without a result: each of them
 * failed (and must not count as done, e.g. in the journal), with the call's
 * message. */
static void note_batch_failure(job *j, int err)
{
    dsp_node *n = j->n;
    char *msg = n->errmsg ? strdup(n->errmsg) : NULL;
    int64_t prev = -1;
    int noted = 0;

    for (int i = 0; i < j->n_pkts; i++) {
        int64_t item = dsp_packet_item(j->in[i]);
        /* another part of the same item, or an item with a result; when
         * every item has one, the failure still goes on record (the last) */
        if (item == prev || (outbox_has_item(n, item) && (noted || i + 1 < j->n_pkts)))
            continue;
        prev = item;
        n->cur_item = item;
        n->cur_part = dsp_packet_part(j->in[i]);
        if (msg && !n->errmsg)
            n->errmsg = strdup(msg);
        note_failure(j, err, &j->in[i], 1);
        noted++;
    }
    free(msg);
}

/* Unlocked: the items a callback failed with dsp_node_fail_packet. */
static void take_packet_failures(job *j)
{
    dsp_node *n = j->n;
    for (int i = 0; i < n->n_pkt_fails; i++) {
        dspi_failure *f = fail_slot(j);
        if (f) {
            *f = n->pkt_fails[i];
            continue;
        }
        dsp_log(DSP_LOG_ERROR, n->label, "out of memory: item %lld failed: %s",
                (long long)n->pkt_fails[i].item, n->pkt_fails[i].msg);
        free(n->pkt_fails[i].msg);
        free(n->pkt_fails[i].input);
    }
    n->n_pkt_fails = 0;
}

/* Unlocked: run the callbacks. */
static void run_job(dspi_sched *s, job *j)
{
    dsp_node *n = j->n;
    int64_t t0 = dspi_now_ns();
    int err = 0;

    switch (j->act) {
    case ACT_SOURCE:
        for (j->ran = 0; j->ran < j->calls && !s->aborting && !s->stopping;) {
            if (j->ran && dspi_now_ns() - t0 > BURST_BUDGET_NS)
                break;
            err = dspi_node_call_process(n, NULL);
            j->ran++;
            if (err == DSP_EOF) {
                /* end of the source's stream: flush it like any other node */
                j->eof = 1;
                if ((err = dspi_node_call_flush(n)) < 0)
                    note_failure(j, err, NULL, 0);
                break;
            }
            if (err < 0) {
                note_failure(j, err, NULL, 0);
                break;
            }
        }
        break;
    case ACT_PROCESS:
        for (j->ran = 0; j->ran < j->calls && !s->aborting; j->ran++) {
            dsp_packet **in = &j->in[j->ran * n->n_in];
            if (j->ran && dspi_now_ns() - t0 > BURST_BUDGET_NS)
                break;
            if ((err = dspi_node_call_process(n, in)) < 0)
                note_failure(j, err, in, n->n_in);
            take_packet_failures(j);
        }
        break;
    case ACT_BATCH:
        j->ran = 1;
        if ((err = dspi_node_call_batch(n, j->in, j->n_pkts)) < 0)
            note_batch_failure(j, err);
        take_packet_failures(j);
        break;
    case ACT_FLUSH:
    case ACT_STOP:
    default:
        if ((err = dspi_node_call_flush(n)) < 0)
            note_failure(j, err, NULL, 0);
        break;
    }
    j->last_err = err;
    if (s->profile)
        n->st.ns_process += dspi_now_ns() - t0;
}

static int is_sink(const dsp_node *n)
{
    return (n->op->flags & DSP_OP_SINK) || n->n_out == 0;
}

/* Under the lock: move the outbox downstream, record failures, update
 * states, watermarks and readiness. */
static void complete_job(dspi_sched *s, job *j)
{
    dsp_node *n = j->n;
    int finished = 0;

    if (j->act == ACT_PROCESS) {
        /* a cut burst: what was not processed goes back, in order */
        for (int c = j->calls - 1; c >= j->ran; c--)
            for (int i = n->n_in - 1; i >= 0; i--) {
                dsp_packet **pp = &j->in[c * n->n_in + i];
                if (*pp && dspi_queue_push_front(n->in[i], *pp) < 0) {
                    dsp_log(DSP_LOG_ERROR, n->label, "out of memory: a packet was lost");
                    dsp_packet_unref(pp);
                }
                *pp = NULL;
            }
        j->n_pkts = j->ran * n->n_in;
    }
    for (int i = 0; i < j->n_pkts; i++)
        if (j->in[i])
            n->last_consumed = DSPI_MAX(n->last_consumed, dsp_packet_item(j->in[i]));
    if (j->act == ACT_PROCESS || j->act == ACT_SOURCE)
        n->st.calls += j->ran;
    else if (j->act == ACT_BATCH)
        n->st.calls++;
    for (int c = 0; c < (j->act == ACT_PROCESS ? j->ran : j->act == ACT_BATCH ? 1 : 0); c++) {
        int first = j->act == ACT_PROCESS ? c * n->n_in : 0;
        int cnt = j->act == ACT_PROCESS ? n->n_in : j->n_pkts;
        for (int i = first; i < first + cnt; i++) {
            if (!j->in[i])
                continue;
            n->st.pkts_in++;
            /* a join's slots carry the same item: count it once */
            if (is_sink(n) && dsp_packet_last(j->in[i])) {
                n->st.items_done++;
                s->items_done++;
                if (j->act != ACT_BATCH)
                    break;
            }
        }
    }
    if (j->act == ACT_BATCH) {
        n->st.batches++;
        n->st.batch_items += j->n_pkts;
        n->st.batch_max = DSPI_MAX(n->st.batch_max, j->n_pkts);
    }

    for (int i = 0; i < n->n_outbox; i++) {
        dspi_emitted *e = &n->outbox[i];
        int skip = 0;
        /* after an item's last part, a source emits only later items */
        if (n->op->flags & DSP_OP_SOURCE) {
            n->src_low = DSPI_MAX(n->src_low, dsp_packet_item(e->pkt) + dsp_packet_last(e->pkt));
            /* an item the journal lists is dropped here, after the source
             * numbered it, so the items that do run keep their numbers */
            skip = dspi_journal_source_packet(s, n, e->pkt);
        } else {
            dspi_journal_check_emit(s, n, dsp_packet_item(e->pkt));
        }
        if (!skip && !s->aborting && n->state != DSPI_FINISHED)
            for (int k = 0; k < n->n_cons[e->port]; k++) {
                dspi_queue *q = n->out[e->port][k];
                if (q->dst->state == DSPI_FINISHED)
                    continue;
                if (dspi_queue_push(q, dsp_packet_ref(e->pkt)) < 0) {
                    dsp_packet_unref(&e->pkt);
                    e->pkt = NULL;
                    break;
                }
                atomic_fetch_add(&s->packets, 1);
            }
        n->st.pkts_out++;
        dsp_packet_unref(&e->pkt);
    }
    n->n_outbox = 0;

    for (int i = 0; i < j->n_fails; i++)
        dspi_record_failure(s, n, &j->fails[i]);
    /* a source that failed cannot be trusted to go on */
    if (j->act == ACT_SOURCE && j->last_err < 0)
        finished = 1;
    if (j->act == ACT_FLUSH || j->act == ACT_STOP || j->eof)
        finished = 1;

    if (n->state != DSPI_FINISHED)
        n->state = DSPI_IDLE;
    if (finished || s->aborting)
        finish_node(s, n);
    if (n->state != DSPI_FINISHED) {
        dspi_make_ready(s, n);
        propagate(s, n);
    }
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++)
            dspi_make_ready(s, n->out[p][k]->dst);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            dspi_make_ready(s, n->in[i]->src);
    if (s->journal.enabled)
        dspi_journal_retire(s, dspi_retired_below(s));
}

static void release_job(job *j)
{
    for (int i = 0; i < j->n_pkts; i++)
        dsp_packet_unref(&j->in[i]);
    if (j->in != j->stack)
        free(j->in);
    for (int i = 0; i < j->n_fails; i++) {
        free(j->fails[i].msg);
        free(j->fails[i].input);
    }
    if (j->fails != j->fail_stack)
        free(j->fails);
}

/* The earliest batch deadline among nodes holding a partial batch, or -1. */
static int64_t next_batch_deadline(dspi_sched *s)
{
    int64_t best = -1;
    for (int i = 0; i < s->n_nodes; i++) {
        dsp_node *n = &s->nodes[i];
        if (n->batch > 1 && n->batch_timeout_ms > 0 && n->state == DSPI_IDLE &&
            n->in[0]->count && n->in[0]->t_enq) {
            int64_t d = n->in[0]->t_enq[n->in[0]->head] +
                        (int64_t)n->batch_timeout_ms * 1000000;
            if (best < 0 || d < best)
                best = d;
        }
    }
    return best;
}

void dspi_wait_until(dspi_sched *s, pthread_cond_t *cv, int64_t deadline_ns)
{
    struct timespec ts;
    int64_t now = dspi_now_ns();
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t abs = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (deadline_ns - now);
    ts.tv_sec = abs / 1000000000;
    ts.tv_nsec = abs % 1000000000;
    pthread_cond_timedwait(cv, &s->lock, &ts);
}

/* Nothing runs, nothing is ready, no batch is waiting: a scheduler bug.
 * Fail loudly with the state of every node instead of hanging. */
static void report_stall(dspi_sched *s)
{
    dspi_str b = { 0 };
    dspi_str_append(&b, "internal error: the scheduler stalled; node states:");
    for (int i = 0; i < s->n_nodes; i++) {
        dsp_node *n = &s->nodes[i];
        dspi_str_printf(&b, "\n  %s: state %d flushed %d", n->label, n->state, n->flushed);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k])
                dspi_str_printf(&b, " in%d[count %d head %lld/%lld wm %lld eos %d]", k,
                                n->in[k]->count,
                                n->in[k]->count ? (long long)dsp_packet_item(dspi_queue_peek(n->in[k])) : -1LL,
                                n->in[k]->count ? (long long)dsp_packet_part(dspi_queue_peek(n->in[k])) : -1LL,
                                (long long)n->in[k]->wm, n->in[k]->eos);
    }
    dsp_log(DSP_LOG_ERROR, "scheduler", "%s", b.s ? b.s : "stalled");
    dspi_sched_abort(s, DSP_ESTATE, dspi_str_take(&b));
    dspi_str_free(&b);
}

void *dspi_worker_main(void *arg)
{
    dspi_sched *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->done) {
        dsp_node *n;
        job j;
        int err;

        if (!s->rq_count) {
            int64_t deadline = next_batch_deadline(s);
            if (deadline >= 0) {
                dspi_wait_until(s, &s->work, deadline);
                for (int i = 0; i < s->n_nodes; i++)
                    if (s->nodes[i].batch > 1)
                        dspi_make_ready(s, &s->nodes[i]);
            } else if (s->n_running == 0) {
                report_stall(s);
            } else {
                pthread_cond_wait(&s->work, &s->lock);
            }
            continue;
        }
        n = &s->nodes[s->readyq[s->rq_head]];
        s->rq_head = (s->rq_head + 1) % s->n_nodes;
        s->rq_count--;
        if (n->state != DSPI_READY)
            continue;           /* finished by an abort while queued */
        n->state = DSPI_RUNNING;
        s->n_running++;
        if ((err = take_job(s, n, &j)) < 0) {
            s->n_running--;
            n->state = DSPI_IDLE;
            dspi_sched_abort(s, err, strdup("out of memory in the scheduler"));
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        run_job(s, &j);
        pthread_mutex_lock(&s->lock);
        s->n_running--;
        complete_job(s, &j);
        pthread_mutex_unlock(&s->lock);
        release_job(&j);        /* packet frees happen outside the lock */
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}
