/* node.c - a node at run time: what operators ask of the host, and the bookkeeping around their callbacks. */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"

int64_t dspi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int dspi_node_setup(dsp_node *n, const dspi_gnode *g, int index,
                    const char *pipe_dir, dsp_device dev)
{
    dspi_str lab = { 0 };

    memset(n, 0, sizeof(*n));
    n->index = index;
    n->name = g->name;
    n->op = g->op;
    n->priv = g->priv;
    n->pipe_dir = pipe_dir ? pipe_dir : ".";
    n->device = dev;
    n->n_in = g->n_in_slots;
    n->n_out = g->n_out;
    n->batch = 1;
    n->last_consumed = -1;
    n->failed_item = -1;
    n->gathers = (g->op->flags & DSP_OP_GATHER) != 0;
    dspi_str_printf(&lab, "%s@%s", g->name, g->op->name);
    if (lab.oom) {
        dspi_str_free(&lab);
        return DSP_ENOMEM;
    }
    n->label = dspi_str_take(&lab);
    if (n->n_in && !(n->in = calloc(n->n_in, sizeof(*n->in))))
        return DSP_ENOMEM;
    if (n->n_out) {
        if (!(n->n_cons = calloc(n->n_out, sizeof(*n->n_cons))) ||
            !(n->out = calloc(n->n_out, sizeof(*n->out))) ||
            !(n->last_emitted = malloc(n->n_out * sizeof(*n->last_emitted))))
            return DSP_ENOMEM;
        for (int i = 0; i < n->n_out; i++)
            n->last_emitted[i] = -1;
    }
    return 0;
}

void dspi_node_cleanup(dsp_node *n)
{
    for (int i = 0; i < n->n_outbox; i++)
        dsp_packet_unref(&n->outbox[i].pkt);
    free(n->outbox);
    json_decref(n->claimed);
    if (n->out)
        for (int i = 0; i < n->n_out; i++)
            free(n->out[i]);
    free(n->out);
    free(n->n_cons);
    free(n->in);
    free(n->last_emitted);
    free(n->label);
    free(n->errmsg);
    for (int i = 0; i < n->n_pkt_fails; i++) {
        free(n->pkt_fails[i].msg);
        free(n->pkt_fails[i].input);
    }
    free(n->pkt_fails);
    memset(n, 0, sizeof(*n));
}

void dspi_node_clear_error(dsp_node *n)
{
    free(n->errmsg);
    n->errmsg = NULL;
    n->errcode = 0;
}

/* A callback that fails without dsp_node_fail still gets a message. */
static int finish_call(dsp_node *n, int err, const char *what)
{
    n->in_callback = 0;
    if (err < 0 && err != DSP_EOF && !n->errmsg) {
        dspi_str b = { 0 };
        dspi_str_printf(&b, "%s failed: %s", what, dsp_strerror(err));
        n->errmsg = dspi_str_take(&b);
        n->errcode = err;
    }
    return err;
}

static void set_position(dsp_node *n, const dsp_packet *p)
{
    n->cur_item = dsp_packet_item(p);
    n->cur_part = dsp_packet_part(p);
    n->cur_last = dsp_packet_last(p);
    n->cur_pts = dsp_packet_pts(p);
}

int dspi_node_call_init(dsp_node *n)
{
    n->initialized = 1;
    if (!n->op->init)
        return 0;
    n->in_callback = 1;
    return finish_call(n, n->op->init(n), "init");
}

void dspi_node_call_fini(dsp_node *n)
{
    if (n->initialized && n->op->fini)
        n->op->fini(n);
    n->initialized = 0;
}

int dspi_node_call_process(dsp_node *n, dsp_packet **in)
{
    int err;

    if (in) {
        for (int i = 0; i < n->n_in; i++)
            if (in[i]) {
                set_position(n, in[i]);
                break;
            }
    }
    n->in_callback = 1;
    err = n->op->process(n, in);
    return finish_call(n, err, "process");
}

static int add_packet_failure(dsp_node *node, const dsp_packet *pkt, int code, char *msg);

int dspi_node_call_batch(dsp_node *n, dsp_packet **in, int count)
{
    int err = 0;

    if (!n->op->process_batch) {
        /* an op without process_batch sees its batch one packet at a time;
         * a packet that fails fails its item alone */
        for (int i = 0; i < count; i++) {
            if ((err = dspi_node_call_process(n, &in[i])) >= 0)
                continue;
            char *msg = n->errmsg ? n->errmsg : strdup(dsp_strerror(err));
            n->errmsg = NULL;
            dspi_node_clear_error(n);
            if (!msg || add_packet_failure(n, in[i], err, msg) < 0)
                return err;     /* out of memory: the batch fails as a whole */
        }
        return 0;
    }
    set_position(n, in[0]);
    n->in_callback = 1;
    err = n->op->process_batch(n, in, count);
    return finish_call(n, err, "process_batch");
}

int dspi_node_call_flush(dsp_node *n)
{
    n->flushed = 1;
    if (!n->op->flush)
        return 0;
    n->in_callback = 1;
    return finish_call(n, n->op->flush(n), "flush");
}

/* ---- the operator-facing API --------------------------------------------- */

void *dsp_node_priv(const dsp_node *node)
{
    return node->priv;
}

const char *dsp_node_name(const dsp_node *node)
{
    return node->name;
}

const dsp_op_def *dsp_node_op(const dsp_node *node)
{
    return node->op;
}

int dsp_node_input_count(const dsp_node *node)
{
    return node->n_in;
}

int dsp_node_batch_size(const dsp_node *node)
{
    return node->batch;
}

dsp_device dsp_node_device(const dsp_node *node)
{
    return node->device;
}

const char *dsp_node_pipe_dir(const dsp_node *node)
{
    return node->pipe_dir;
}

dsp_packet *dsp_node_packet_new(dsp_node *node)
{
    dsp_packet *p;

    if (dsp_packet_new(&p) < 0)
        return NULL;
    if (node->op->flags & DSP_OP_SOURCE)
        dsp_packet_set_pos(p, node->next_item++, 0, 1);
    else {
        dsp_packet_set_pos(p, node->cur_item, node->cur_part, node->cur_last);
        dsp_packet_set_pts(p, node->cur_pts);
    }
    return p;
}

int dsp_node_emit(dsp_node *node, int port, dsp_packet *pkt)
{
    int64_t item;

    if (!pkt)
        return DSP_EINVAL;
    if (port < 0 || port >= node->n_out) {
        dsp_node_log(node, DSP_LOG_ERROR, "emit on output port %d: the operator has %d",
                     port, node->n_out);
        dsp_packet_unref(&pkt);
        return DSP_EINVAL;
    }
    if (!node->in_callback) {
        dsp_packet_unref(&pkt);
        return DSP_ESTATE;
    }
    item = dsp_packet_item(pkt);
    if (item < node->last_emitted[port]) {
        int err = dsp_node_fail(node, DSP_EINVAL, "operator bug: emitted item %lld after "
                                "item %lld on port '%s'; items must not decrease",
                                (long long)item, (long long)node->last_emitted[port],
                                node->op->outputs[port].name);
        dsp_packet_unref(&pkt);
        return err;
    }
    if (node->n_outbox == node->cap_outbox) {
        int cap = node->cap_outbox ? 2 * node->cap_outbox : 8;
        dspi_emitted *ob = realloc(node->outbox, cap * sizeof(*ob));
        if (!ob) {
            dsp_packet_unref(&pkt);
            return DSP_ENOMEM;
        }
        node->outbox = ob;
        node->cap_outbox = cap;
    }
    node->last_emitted[port] = item;
    dspi_packet_freeze(pkt);
    node->outbox[node->n_outbox++] = (dspi_emitted){ port, pkt };
    return 0;
}

int dsp_node_fail(dsp_node *node, int code, const char *fmt, ...)
{
    dspi_str b = { 0 };
    va_list ap;

    va_start(ap, fmt);
    dspi_str_vprintf(&b, fmt, ap);
    va_end(ap);
    free(node->errmsg);
    node->errmsg = dspi_str_take(&b);
    node->errcode = code;
    return code;
}

/* Append a failure of pkt's item (msg malloc'd, taken) to node->pkt_fails. */
static int add_packet_failure(dsp_node *node, const dsp_packet *pkt, int code, char *msg)
{
    if (node->n_pkt_fails == node->cap_pkt_fails) {
        int cap = node->cap_pkt_fails ? 2 * node->cap_pkt_fails : 4;
        dspi_failure *f = realloc(node->pkt_fails, (size_t)cap * sizeof(*f));
        if (!f) {
            free(msg);
            return DSP_ENOMEM;
        }
        node->pkt_fails = f;
        node->cap_pkt_fails = cap;
    }
    dsp_packet *one = (dsp_packet *)pkt;
    const char *input = dspi_packet_input_name(&one, 1);
    dspi_failure *f = &node->pkt_fails[node->n_pkt_fails++];
    f->code = code < 0 ? code : DSP_EINVAL;
    f->item = dsp_packet_item(pkt);
    f->part = dsp_packet_part(pkt);
    f->msg = msg;
    f->input = input ? strdup(input) : NULL;
    return 0;
}

int dsp_node_fail_packet(dsp_node *node, const dsp_packet *pkt, int code, const char *fmt, ...)
{
    dspi_str b = { 0 };
    va_list ap;

    if (!node->in_callback || !pkt)
        return DSP_ESTATE;
    va_start(ap, fmt);
    dspi_str_vprintf(&b, fmt, ap);
    va_end(ap);
    if (add_packet_failure(node, pkt, code, dspi_str_take(&b)) < 0)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory recording a failed item");
    return 0;
}

void dsp_node_log(const dsp_node *node, dsp_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level > dsp_log_get_level())
        return;
    va_start(ap, fmt);
    dsp_vlog(level, node->label, fmt, ap);
    va_end(ap);
}

void dsp_node_progress(dsp_node *node, int64_t done, int64_t total)
{
    atomic_store(&node->progress_done, done);
    atomic_store(&node->progress_total, total);
}

void dsp_node_set_gather(dsp_node *node, int gathers)
{
    node->gathers = gathers != 0;
}

int dsp_node_stopping(const dsp_node *node)
{
    const dspi_sched *s = node->sched;
    if (!s)
        return 0;
    return s->stopping || s->aborting || atomic_load(&((dspi_sched *)s)->interrupt);
}

int dsp_node_claim_output(dsp_node *node, const char *path)
{
    /* a hash set: a folder of 100,000 items claims in linear time. Paths need
     * not be UTF-8, hence the _nocheck setter (lookups do not check). */
    if (!node->claimed && !(node->claimed = json_object()))
        return DSP_ENOMEM;
    if (json_object_get(node->claimed, path))
        return DSP_EEXIST;
    return json_object_set_new_nocheck(node->claimed, path, json_true()) < 0 ? DSP_ENOMEM : 0;
}
