/* run.c - one run of a pipeline: set up nodes and queues, start the workers, watch for interrupts and progress, tear down. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

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
        dspi_queue_drain(&s->queues[i]);
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
    dspi_journal_free(&s->journal);
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

int dspi_sched_run(dspi_sched *s, int threads, int progress, const char *journal,
                   int resume)
{
    pthread_t *tids;
    int started = 0, err;
    dsp_run_stats st;

    s->t_start_ns = dspi_now_ns();
    s->progress = progress;
    if ((err = dspi_journal_open(s, journal, resume)) < 0 || (err = init_nodes(s)) < 0)
        goto fini;
    /* after init: an op may say there whether it gathers items */
    if ((err = dspi_journal_setup(s)) < 0)
        goto fini;
    if (!(tids = calloc(threads, sizeof(*tids)))) {
        err = DSP_ENOMEM;
        goto fini;
    }
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_nodes; i++)
        dspi_make_ready(s, &s->nodes[i]);
    if (s->n_nodes == 0)
        s->done = 1;
    pthread_mutex_unlock(&s->lock);
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, dspi_worker_main, s) != 0)
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
        dspi_wait_until(s, &s->done_cv, dspi_now_ns() + 100000000);
        if (atomic_load(&s->interrupt) && !s->stopping) {
            s->stopping = 1;
            dsp_log(DSP_LOG_WARNING, "dspipe", "interrupted: stopping the sources and "
                    "draining what is in flight (interrupt again to quit at once)");
            for (int i = 0; i < s->n_nodes; i++)
                if (s->nodes[i].op->flags & DSP_OP_SOURCE)
                    dspi_make_ready(s, &s->nodes[i]);
        }
        if (s->progress)
            dspi_progress_draw(s, 0);
    }
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    /* every item has left the graph now; what an abort dropped in flight is
     * not journaled (dspi_journal_retire checks) */
    dspi_journal_retire(s, DSPI_ITEM_MAX);
    if (s->progress)
        dspi_progress_draw(s, 1);
    dspi_sched_stats(s, &st);
    dspi_journal_report(s, st.items_in + st.items_skipped);

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
