/* sched.c - the scheduler: bounded edge queues, a worker pool, joins by (item, part), watermarks, failure policy.
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

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scheduler.h"

typedef enum { ACT_PROCESS, ACT_BATCH, ACT_FLUSH, ACT_SOURCE, ACT_STOP } action;

/* A failed callback, noted while unlocked and recorded under the lock. */
typedef struct failure {
    int code;
    int64_t item, part;
    char *msg;                  /* malloc'd */
    char *input;                /* malloc'd or NULL */
} failure;


/* ---- queues ------------------------------------------------------------- */

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

static int queue_push(dspi_queue *q, dsp_packet *p)
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
static int queue_push_front(dspi_queue *q, dsp_packet *p)
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

static dsp_packet *queue_peek(const dspi_queue *q)
{
    return q->count ? q->ring[q->head] : NULL;
}

static dsp_packet *queue_pop(dspi_queue *q, int64_t *waited_ns)
{
    dsp_packet *p = q->ring[q->head];
    if (q->t_enq && waited_ns)
        *waited_ns += dspi_now_ns() - q->t_enq[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return p;
}

static void queue_drain(dspi_queue *q)
{
    while (q->count) {
        dsp_packet *p = queue_pop(q, NULL);
        dsp_packet_unref(&p);
    }
}

/* ---- failed items --------------------------------------------------------- */

static int item_failed(const dspi_sched *s, int64_t item)
{
    int lo = 0, hi = s->n_failed - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->failed_items[mid] == item)
            return 1;
        if (s->failed_items[mid] < item)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

/* Returns 1 if the item was newly added. */
static int add_failed_item(dspi_sched *s, int64_t item)
{
    int pos = 0;
    if (item_failed(s, item))
        return 0;
    if (s->n_failed == s->cap_failed) {
        int cap = s->cap_failed ? 2 * s->cap_failed : 16;
        int64_t *f = realloc(s->failed_items, cap * sizeof(*f));
        if (!f)
            return 1;           /* counted once more at worst */
        s->failed_items = f;
        s->cap_failed = cap;
    }
    while (pos < s->n_failed && s->failed_items[pos] < item)
        pos++;
    memmove(&s->failed_items[pos + 1], &s->failed_items[pos],
            (s->n_failed - pos) * sizeof(int64_t));
    s->failed_items[pos] = item;
    s->n_failed++;
    return 1;
}

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
        while (q && q->count && dsp_packet_item(queue_peek(q)) == n->failed_item) {
            dsp_packet *p = queue_pop(q, NULL);
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
            dsp_packet *h = n->in[i] ? queue_peek(n->in[i]) : NULL;
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
            h = queue_peek(q);
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
            dsp_packet *h = q ? queue_peek(q) : NULL;
            if (h && key_cmp(h, kitem, kpart) == 0) {
                h = queue_pop(q, NULL);
                dsp_packet_unref(&h);
                n->st.dropped++;
                (*dropped)++;
            }
        }
        /* expected when a branch filters items; say it once per node */
        if (!item_failed(s, kitem))
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

static void make_ready(dspi_sched *s, dsp_node *n)
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
                make_ready(s, n->in[i]->src);
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
        v = q->count ? dsp_packet_item(queue_peek(q)) : (q->eos ? DSPI_ITEM_MAX : q->wm);
        low = DSPI_MIN(low, v);
    }
    if (n->state == DSPI_RUNNING)
        low = DSPI_MIN(low, n->running_item);
    /* inputs done but not flushed yet: flush() may still emit */
    if (low == DSPI_ITEM_MAX)
        low = DSPI_MAX(n->last_consumed, 0);
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
                make_ready(s, q->dst);
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
            queue_drain(n->in[i]);
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++) {
            dspi_queue *q = n->out[p][k];
            q->eos = 1;
            q->wm = DSPI_ITEM_MAX;
            if (s->aborting)
                queue_drain(q);
            make_ready(s, q->dst);
            if (q->dst->state == DSPI_IDLE && !q->count)
                propagate(s, q->dst);
        }
    /* producers may have been waiting for room in our (now drained) inputs */
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            make_ready(s, n->in[i]->src);
    if (s->n_finished == s->n_nodes) {
        s->done = 1;
        pthread_cond_broadcast(&s->work);
        pthread_cond_broadcast(&s->done_cv);
    }
}

static void begin_abort(dspi_sched *s, int code, char *msg)
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

static const char *packet_input_name(dsp_packet *const *in, int n)
{
    for (int i = 0; i < n; i++) {
        const char *v;
        if (!in[i])
            continue;
        if (dsp_meta_get_str(dsp_packet_meta_const(in[i]), "source", &v) == 0 ||
            dsp_meta_get_str(dsp_packet_meta_const(in[i]), "path", &v) == 0)
            return v;
    }
    return NULL;
}

static void write_error_record(dspi_sched *s, const dsp_node *n, int64_t item,
                               int64_t part, const char *input, int code,
                               const char *msg)
{
    json_t *rec;
    char *line;

    if (!s->errors_fp && !s->errors_open_failed) {
        if (!(s->errors_fp = fopen(s->errors_path, "w"))) {
            s->errors_open_failed = 1;
            dsp_log(DSP_LOG_ERROR, "dspipe", "cannot write the error log %s: %s; "
                    "failures are only reported here", s->errors_path, strerror(errno));
        }
    }
    if (!s->errors_fp)
        return;
    rec = json_object();
    json_object_set_new(rec, "node", json_string(n->name));
    json_object_set_new(rec, "op", json_string(n->op->name));
    json_object_set_new(rec, "item", item >= 0 ? json_integer(item) : json_null());
    json_object_set_new(rec, "part", item >= 0 ? json_integer(part) : json_null());
    json_object_set_new(rec, "input", input ? json_string(input) : json_null());
    json_object_set_new(rec, "code", json_string(dsp_strerror(code)));
    json_object_set_new(rec, "error", json_string(msg ? msg : ""));
    if ((line = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII))) {
        /* one flushed line per failure: a crash later loses nothing */
        fprintf(s->errors_fp, "%s\n", line);
        fflush(s->errors_fp);
        free(line);
    }
    json_decref(rec);
}

/* Log the first failures of a run; after that they only go to the errors
 * file, so a folder of broken inputs does not bury everything else. */
#define MAX_FAILURES_LOGGED 20

/* A callback failed. f->item < 0: not one item's failure (flush, a source). */
static void record_failure(dspi_sched *s, dsp_node *n, const failure *f)
{
    dspi_str full = { 0 };
    int is_new = f->item >= 0 ? add_failed_item(s, f->item) : 1;

    n->st.failed++;
    if (f->item >= 0)
        n->failed_item = f->item;
    if (f->item >= 0)
        dspi_str_printf(&full, "item %lld%s%s%s: %s", (long long)f->item,
                        f->input ? " (" : "", f->input ? f->input : "", f->input ? ")" : "",
                        f->msg);
    else
        dspi_str_append(&full, f->msg);
    if (is_new)
        write_error_record(s, n, f->item, f->part, f->input, f->code, f->msg);
    if (f->item < 0 || s->on_error == DSP_ON_ERROR_ABORT) {
        dspi_str where = { 0 };
        dsp_log(DSP_LOG_ERROR, n->label, "%s", full.s ? full.s : "");
        dspi_str_printf(&where, "node '%s' (%s) at %s:%d: %s", n->name, n->op->name,
                        s->g->path, s->g->nodes[n->index].line, full.s ? full.s : "");
        if (f->item < 0 && s->on_error != DSP_ON_ERROR_ABORT) {
            if (!s->fatal_code)
                s->fatal_code = f->code;
            dspi_set_error_owned(s->ctx, dspi_str_take(&where));
        } else {
            begin_abort(s, f->code, dspi_str_take(&where));
        }
        dspi_str_free(&where);
    } else if (is_new && s->n_failed <= MAX_FAILURES_LOGGED) {
        dsp_log(DSP_LOG_WARNING, n->label, "%s (skipped; recorded in %s)%s",
                full.s ? full.s : "", s->errors_path,
                s->n_failed == MAX_FAILURES_LOGGED ? "; further failures are only recorded there" : "");
    }
    dspi_str_free(&full);
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
    failure fail_stack[4];
    failure *fails;
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
            j->in[i] = queue_pop(n->in[0], &waited);
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
                set[i] = n->in[i] ? queue_pop(n->in[i], &waited) : NULL;
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

/* Unlocked: keep a failed call's details for complete_job. */
static void note_failure(job *j, int err, dsp_packet *const *in, int n_in)
{
    dsp_node *n = j->n;
    const char *input = in ? packet_input_name(in, n_in) : NULL;
    failure *f;

    if (j->n_fails == j->cap_fails) {
        int cap = 2 * j->cap_fails;
        failure *nf = malloc(cap * sizeof(*nf));
        if (!nf) {
            dspi_node_clear_error(n);
            return;             /* out of memory: the failure still shows in last_err */
        }
        memcpy(nf, j->fails, j->n_fails * sizeof(*nf));
        if (j->fails != j->fail_stack)
            free(j->fails);
        j->fails = nf;
        j->cap_fails = cap;
    }
    f = &j->fails[j->n_fails++];
    f->code = err;
    f->item = in ? n->cur_item : -1;
    f->part = in ? n->cur_part : 0;
    f->msg = n->errmsg ? strdup(n->errmsg) : strdup(dsp_strerror(err));
    f->input = input ? strdup(input) : NULL;
    dspi_node_clear_error(n);
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
        }
        break;
    case ACT_BATCH:
        j->ran = 1;
        if ((err = dspi_node_call_batch(n, j->in, j->n_pkts)) < 0)
            note_failure(j, err, j->in, 1);
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
                if (*pp && queue_push_front(n->in[i], *pp) < 0) {
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
        /* after an item's last part, a source emits only later items */
        if (n->op->flags & DSP_OP_SOURCE)
            n->src_low = DSPI_MAX(n->src_low, dsp_packet_item(e->pkt) + dsp_packet_last(e->pkt));
        if (!s->aborting && n->state != DSPI_FINISHED)
            for (int k = 0; k < n->n_cons[e->port]; k++) {
                dspi_queue *q = n->out[e->port][k];
                if (q->dst->state == DSPI_FINISHED)
                    continue;
                if (queue_push(q, dsp_packet_ref(e->pkt)) < 0) {
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
        record_failure(s, n, &j->fails[i]);
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
        make_ready(s, n);
        propagate(s, n);
    }
    for (int p = 0; p < n->n_out; p++)
        for (int k = 0; k < n->n_cons[p]; k++)
            make_ready(s, n->out[p][k]->dst);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            make_ready(s, n->in[i]->src);
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

static void wait_until(dspi_sched *s, pthread_cond_t *cv, int64_t deadline_ns)
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
                                n->in[k]->count ? (long long)dsp_packet_item(queue_peek(n->in[k])) : -1LL,
                                n->in[k]->count ? (long long)dsp_packet_part(queue_peek(n->in[k])) : -1LL,
                                (long long)n->in[k]->wm, n->in[k]->eos);
    }
    dsp_log(DSP_LOG_ERROR, "scheduler", "%s", b.s ? b.s : "stalled");
    begin_abort(s, DSP_ESTATE, dspi_str_take(&b));
    dspi_str_free(&b);
}

static void *worker_main(void *arg)
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
                wait_until(s, &s->work, deadline);
                for (int i = 0; i < s->n_nodes; i++)
                    if (s->nodes[i].batch > 1)
                        make_ready(s, &s->nodes[i]);
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
            begin_abort(s, err, strdup("out of memory in the scheduler"));
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

/* ---- setup and the run ------------------------------------------------------ */

int dspi_sched_init(dspi_sched *s, dsp_context *ctx, const dspi_graph *g,
                    int queue_size, dsp_device dev, int profile)
{
    int err;

    memset(s, 0, sizeof(*s));
    s->ctx = ctx;
    s->g = g;
    s->profile = profile;
    s->n_nodes = g->n_nodes;
    s->n_queues = g->n_edges;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    if (!(s->nodes = calloc(DSPI_MAX(s->n_nodes, 1), sizeof(*s->nodes))) ||
        !(s->queues = calloc(DSPI_MAX(s->n_queues, 1), sizeof(*s->queues))) ||
        !(s->readyq = calloc(DSPI_MAX(s->n_nodes, 1), sizeof(*s->readyq))))
        return DSP_ENOMEM;
    for (int i = 0; i < s->n_nodes; i++) {
        const dspi_gnode *gn = &g->nodes[i];
        dsp_node *n = &s->nodes[i];
        if ((err = dspi_node_setup(n, gn, i, g->dir, dev)) < 0)
            return err;
        n->sched = s;
        if (gn->op->flags & DSP_OP_BATCHABLE) {
            n->batch = gn->batch > 0 ? gn->batch : gn->op->max_batch;
            n->batch_timeout_ms = gn->batch_timeout_ms;
        }
    }
    for (int e = 0; e < g->n_edges; e++) {
        const dspi_gedge *ge = &g->edges[e];
        dsp_node *src = &s->nodes[ge->src];
        src->n_cons[ge->src_port]++;
    }
    for (int i = 0; i < s->n_nodes; i++) {
        dsp_node *n = &s->nodes[i];
        for (int p = 0; p < n->n_out; p++) {
            if (n->n_cons[p] && !(n->out[p] = calloc(n->n_cons[p], sizeof(**n->out))))
                return DSP_ENOMEM;
            n->n_cons[p] = 0;
        }
    }
    for (int e = 0; e < g->n_edges; e++) {
        const dspi_gedge *ge = &g->edges[e];
        dspi_queue *q = &s->queues[e];
        dsp_node *src = &s->nodes[ge->src], *dst = &s->nodes[ge->dst];
        q->src = src;
        q->dst = dst;
        q->src_port = ge->src_port;
        q->dst_slot = ge->dst_slot;
        q->limit = DSPI_MAX(queue_size, dst->batch);
        if ((profile || dst->batch > 1) &&
            !(q->t_enq = malloc(sizeof(int64_t))))  /* grown with the ring */
            return DSP_ENOMEM;
        dst->in[ge->dst_slot] = q;
        src->out[ge->src_port][src->n_cons[ge->src_port]++] = q;
    }
    return 0;
}

void dspi_sched_free(dspi_sched *s)
{
    for (int i = 0; i < s->n_queues; i++) {
        queue_drain(&s->queues[i]);
        free(s->queues[i].ring);
        free(s->queues[i].t_enq);
    }
    for (int i = 0; i < s->n_nodes; i++)
        dspi_node_cleanup(&s->nodes[i]);
    free(s->nodes);
    free(s->queues);
    free(s->readyq);
    free(s->failed_items);
    free(s->abort_msg);
    if (s->errors_fp)
        fclose(s->errors_fp);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done_cv);
    memset(s, 0, sizeof(*s));
}

static int init_nodes(dspi_sched *s)
{
    for (int i = 0; i < s->n_nodes; i++) {
        dsp_node *n = &s->nodes[i];
        int err = dspi_node_call_init(n);
        if (err < 0) {
            dspi_set_error(s->ctx, "%s:%d: node '%s' (%s) cannot start: %s", s->g->path,
                           s->g->nodes[i].line, n->name, n->op->name,
                           n->errmsg ? n->errmsg : dsp_strerror(err));
            return err;
        }
    }
    return 0;
}

int dspi_sched_run(dspi_sched *s, int threads, int progress)
{
    pthread_t *tids;
    int started = 0, err;

    s->t_start_ns = dspi_now_ns();
    s->progress = progress;
    if ((err = init_nodes(s)) < 0)
        goto fini;
    if (!(tids = calloc(threads, sizeof(*tids)))) {
        err = DSP_ENOMEM;
        goto fini;
    }
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_nodes; i++)
        make_ready(s, &s->nodes[i]);
    if (s->n_nodes == 0)
        s->done = 1;
    pthread_mutex_unlock(&s->lock);
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, worker_main, s) != 0)
            break;
    if (!started) {
        free(tids);
        dspi_set_error(s->ctx, "cannot start worker threads: %s", strerror(errno));
        err = DSP_ENOMEM;
        goto fini;
    }

    /* The calling thread watches: interrupts, progress. */
    pthread_mutex_lock(&s->lock);
    while (!s->done) {
        wait_until(s, &s->done_cv, dspi_now_ns() + 100000000);
        if (atomic_load(&s->interrupt) && !s->stopping) {
            s->stopping = 1;
            dsp_log(DSP_LOG_WARNING, "dspipe", "interrupted: stopping the sources and "
                    "draining what is in flight (interrupt again to quit at once)");
            for (int i = 0; i < s->n_nodes; i++)
                if (s->nodes[i].op->flags & DSP_OP_SOURCE)
                    make_ready(s, &s->nodes[i]);
        }
        if (s->progress)
            dspi_progress_draw(s, 0);
    }
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    if (s->progress)
        dspi_progress_draw(s, 1);

    if (s->aborting) {
        err = s->abort_code ? s->abort_code : DSP_EFAILED;
        if (s->abort_msg)
            dspi_set_error_owned(s->ctx, strdup(s->abort_msg));
    } else if (s->fatal_code) {
        err = s->fatal_code;
    } else if (atomic_load(&s->interrupt)) {
        err = DSP_EINTR;
        dspi_set_error(s->ctx, "interrupted: sources stopped, outputs closed cleanly");
    } else if (s->n_failed) {
        err = DSP_EFAILED;
        dspi_set_error(s->ctx, "%d item%s failed and %s skipped; see %s", s->n_failed,
                       s->n_failed == 1 ? "" : "s", s->n_failed == 1 ? "was" : "were",
                       s->errors_path);
    } else {
        err = 0;
    }
fini:
    for (int i = s->n_nodes - 1; i >= 0; i--)
        dspi_node_call_fini(&s->nodes[i]);
    return err;
}

void dspi_sched_stats(const dspi_sched *s, dsp_run_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].op->flags & DSP_OP_SOURCE)
            for (int p = 0; p < s->nodes[i].n_out; p++)
                out->items_in = DSPI_MAX(out->items_in, s->nodes[i].last_emitted[p] + 1);
    out->items_failed = s->n_failed;
    out->packets = atomic_load(&((dspi_sched *)s)->packets);
    out->seconds = (dspi_now_ns() - s->t_start_ns) / 1e9;
}

int dspi_sched_write_profile(const dspi_sched *s, FILE *out)
{
    fprintf(out, "%-24s %-18s %9s %9s %9s %10s %10s %10s %8s %6s %7s\n", "node", "op",
            "calls", "pkts in", "pkts out", "total ms", "us/call", "wait us", "batch", "failed",
            "dropped");
    for (int i = 0; i < s->n_nodes; i++) {
        const dsp_node *n = &s->nodes[i];
        const dspi_node_stats *st = &n->st;
        char batch[32] = "-";
        if (st->batches)
            snprintf(batch, sizeof(batch), "%.1f/%lld", (double)st->batch_items / st->batches,
                     (long long)st->batch_max);
        fprintf(out, "%-24s %-18s %9lld %9lld %9lld %10.2f %10.2f %10.2f %8s %6lld %7lld\n",
                n->name, n->op->name, (long long)st->calls, (long long)st->pkts_in,
                (long long)st->pkts_out, st->ns_process / 1e6,
                st->calls ? st->ns_process / 1e3 / st->calls : 0.0,
                st->pkts_in ? st->ns_queue_wait / 1e3 / st->pkts_in : 0.0, batch,
                (long long)st->failed, (long long)st->dropped);
    }
    return 0;
}
