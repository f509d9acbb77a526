/* scheduler.h - run-time nodes, edge queues and the scheduler state (shared by node.c, sched.c, harness.c). */
#ifndef DSPIPE_SCHEDULER_H
#define DSPIPE_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"

#define DSPI_ITEM_MAX INT64_MAX

/* A failed callback, noted while unlocked and recorded under the lock. */
typedef struct dspi_failure {
    int code;
    int64_t item, part;
    char *msg;                  /* malloc'd */
    char *input;                /* malloc'd or NULL */
} dspi_failure;

/* A bounded FIFO of packets on one edge. `limit` is the backpressure bound:
 * a producer is not scheduled while any of its queues holds `limit` packets.
 * One process() call may push past it (the ring grows), so a node never
 * blocks inside a callback. */
typedef struct dspi_queue {
    dsp_packet **ring;
    int64_t *t_enq;             /* enqueue times (ns), only when profiling */
    int cap, head, count;
    int limit;
    int64_t wm;                 /* no packet with a smaller item will arrive */
    int eos;                    /* producer finished: nothing more arrives */
    struct dsp_node *src, *dst;
    int src_port, dst_slot;
} dspi_queue;

typedef enum dspi_node_state {
    DSPI_IDLE = 0,
    DSPI_READY,                 /* in the ready queue */
    DSPI_RUNNING,
    DSPI_FINISHED
} dspi_node_state;

typedef struct dspi_emitted {
    int port;
    dsp_packet *pkt;
} dspi_emitted;

typedef struct dspi_node_stats {
    int64_t calls;              /* process/process_batch calls */
    int64_t pkts_in, pkts_out;
    int64_t ns_process;         /* time inside callbacks */
    int64_t ns_queue_wait;      /* summed time input packets waited in queues */
    int64_t batches, batch_items, batch_max;
    int64_t failed;             /* items that failed here */
    int64_t dropped;            /* packets dropped at a join (partner missing) */
    int64_t items_done;         /* sinks: items whose last part was consumed */
} dspi_node_stats;

struct dspi_sched;
struct dsp_harness;

/* A source item on its way through the graph (journal.c). */
typedef struct dspi_pending {
    int64_t item;
    char *key;                  /* malloc'd */
} dspi_pending;

/* The completion journal of a run (journal.c): one JSON line per source
 * item that retired through the whole graph without a failure. */
typedef struct dspi_journal {
    char *path;                 /* malloc'd */
    int enabled;                /* items are journaled in this run */
    int resume;                 /* skip the items listed in `done` */
    FILE *fp;                   /* opened (append) at the first completion */
    int open_failed;
    int broken;                 /* an op emitted a journaled item: stop */
    int missing;                /* resuming without a journal to read */
    struct json_t *done;        /* keys listed at the start: a hash set */
    int64_t listed;             /* lines read at the start */
    dspi_pending *pending;      /* ring, ordered by item */
    int p_head, p_count, p_cap;
    int64_t last_item;          /* the source item seen last, -1 before */
    int last_skipped;           /* ... and whether it is skipped */
    int64_t skipped;            /* source items skipped as already done */
    int64_t written;            /* lines appended this run */
    int64_t low;                /* every item below retired (or failed) */
} dspi_journal;

struct dsp_node {
    struct dspi_sched *sched;   /* NULL under the harness */
    struct dsp_harness *harness;
    int index;
    char *label;                /* "name@op" for logs */
    const char *name;
    const dsp_op_def *op;
    void *priv;                 /* borrowed from the graph node (params stored) */
    const char *pipe_dir;
    dsp_device device;

    int n_in;                   /* input slots */
    dspi_queue **in;            /* per slot; NULL for an unconnected optional slot */
    int n_out;                  /* output ports */
    int *n_cons;                /* consumers per output port */
    dspi_queue ***out;          /* out[port][k] */

    dspi_node_state state;
    int initialized;            /* init() was called */
    int flushed;
    int batch;                  /* batch size (BATCHABLE) */
    int batch_timeout_ms;

    /* stream position of the input being processed */
    int in_callback;
    int64_t cur_item, cur_part;
    int cur_last;
    double cur_pts;
    int64_t last_consumed;      /* item of the last consumed input, -1 before */
    int64_t failed_item;        /* the last item that failed here, -1 before */
    int64_t running_item;       /* smallest item of the running activation */
    int64_t src_low;            /* sources: no queued packet will be below this */
    int elastic;                /* a join waiting on a part of elastic_item: its
                                   producers may overfill its queues (sched.c) */
    int64_t elastic_item;
    int64_t next_item;          /* sources: item of the next dsp_node_packet_new */
    int64_t *last_emitted;      /* per output port, for the ordering check */

    dspi_emitted *outbox;       /* filled by dsp_node_emit during a callback */
    int n_outbox, cap_outbox;

    int gathers;                /* DSP_OP_GATHER, or dsp_node_set_gather() */
    struct json_t *claimed;     /* output paths claimed this run: a jansson
                                   object used as a hash set, NULL before */

    char *errmsg;               /* set by dsp_node_fail */
    int errcode;
    dspi_failure *pkt_fails;    /* dsp_node_fail_packet during a callback */
    int n_pkt_fails, cap_pkt_fails;

    atomic_llong progress_done, progress_total;
    dspi_node_stats st;
};

/* The run-time state of one run of a pipeline. */
typedef struct dspi_sched {
    dsp_context *ctx;
    const dspi_graph *g;
    dsp_node *nodes;
    int n_nodes;
    dspi_queue *queues;
    int n_queues;

    pthread_mutex_t lock;
    pthread_cond_t work;        /* a node became ready, or the run ended */
    pthread_cond_t done_cv;
    int *readyq;                /* ring of node indices */
    int rq_head, rq_count;
    int n_finished;
    int n_running;
    int done;

    atomic_int interrupt;       /* set by dsp_pipeline_interrupt */
    atomic_int stopping;        /* sources no longer produce */
    atomic_int aborting;        /* on_error=abort hit: drop everything */
    int fatal_code;             /* a failure that is not one item's (flush, source) */
    int abort_code;
    char *abort_msg;

    dsp_on_error on_error;
    const char *errors_path;
    FILE *errors_fp;
    int errors_open_failed;
    int64_t *failed_items;      /* sorted */
    int n_failed, cap_failed;

    int profile;
    int64_t t_start_ns;
    atomic_llong packets;       /* packets moved over edges */
    int64_t items_done;         /* items whose last part reached a sink */
    int progress;
    int64_t progress_last_ns;

    dspi_journal journal;
} dspi_sched;

int64_t dspi_now_ns(void);


/* sched.c: stop everything now (on_error=abort, internal errors). Takes
 * msg (malloc'd), which becomes the run's message if it is the first. */
void dspi_sched_abort(dspi_sched *s, int code, char *msg);

/* queue.c, called with the lock held. A push grows the ring (DSP_ENOMEM);
 * push_front gives back a packet taken but not processed; pop adds the
 * packet's time in the queue to *waited_ns (when profiling and non-NULL). */
int dspi_queue_push(dspi_queue *q, dsp_packet *p);
int dspi_queue_push_front(dspi_queue *q, dsp_packet *p);
dsp_packet *dspi_queue_peek(const dspi_queue *q);
dsp_packet *dspi_queue_pop(dspi_queue *q, int64_t *waited_ns);
void dspi_queue_drain(dspi_queue *q);

/* sched.c, called with the lock held (but the worker) */
/* Queue n if it can run now (and resolve what its joins can drop). */
void dspi_make_ready(dspi_sched *s, dsp_node *n);
void dspi_wait_until(dspi_sched *s, pthread_cond_t *cv, int64_t deadline_ns);
/* The lowest item that is still in the graph (DSPI_ITEM_MAX when none). */
int64_t dspi_retired_below(dspi_sched *s);
/* The worker thread: runs ready nodes until the run is done. */
void *dspi_worker_main(void *arg);

/* report.c, all called with the lock held */
int dspi_item_failed(const dspi_sched *s, int64_t item);
/* Count, log (the first few) and write to the errors file; abort under
 * on_error=abort or when the failure is not one item's. */
void dspi_record_failure(dspi_sched *s, dsp_node *n, const dspi_failure *f);
/* Append rec to a run's record file (errors, journal) as one flushed line,
 * opening path with mode on first use (parent folders made). When it
 * cannot be opened, *open_failed is set and the reason logged once, with
 * `otherwise` (what that means). Returns 0, or -1 when nothing was written. */
int dspi_record_line(FILE **fp, int *open_failed, const char *path, const char *mode,
                     const char *what, const char *otherwise, struct json_t *rec);
/* The "source" (else "path") metadata of the first packet that has one. */
const char *dspi_packet_input_name(dsp_packet *const *in, int n);

/* node.c */
int dspi_node_setup(dsp_node *n, const dspi_gnode *g, int index,
                    const char *pipe_dir, dsp_device dev);
void dspi_node_cleanup(dsp_node *n);
/* Call a callback with the bookkeeping around it (position, outbox, errors). */
int dspi_node_call_process(dsp_node *n, dsp_packet **in);
int dspi_node_call_batch(dsp_node *n, dsp_packet **in, int count);
int dspi_node_call_flush(dsp_node *n);
int dspi_node_call_init(dsp_node *n);
void dspi_node_call_fini(dsp_node *n);
void dspi_node_clear_error(dsp_node *n);

/* sched.c */
/* journal: the completion journal's path (NULL: none); resume: skip what
 * it lists. */
int dspi_sched_run(dspi_sched *s, int threads, int progress, const char *journal,
                   int resume);
int dspi_sched_init(dspi_sched *s, dsp_context *ctx, const dspi_graph *g,
                    int queue_size, dsp_device dev, int profile);
void dspi_sched_free(dspi_sched *s);
int dspi_sched_write_profile(const dspi_sched *s, FILE *out);
void dspi_sched_stats(const dspi_sched *s, dsp_run_stats *out);

/* journal.c. open: before the nodes' init: take the path (NULL: no
 * journal) and, resuming, read the keys of the old journal. setup: after
 * init (nodes may change their gather flag): decide whether this run
 * journals, and refuse --resume or start a fresh journal. Both return 0, or
 * an error with the context's message set. */
int dspi_journal_open(dspi_sched *s, const char *path, int resume);
int dspi_journal_setup(dspi_sched *s);
/* Under the lock, for every packet a source emits: 1 when it belongs to an
 * item the journal lists as done (the caller drops it), else 0. */
int dspi_journal_source_packet(dspi_sched *s, const dsp_node *n, const dsp_packet *p);
/* Under the lock: every item below low has left the graph. Journal the
 * ones that did not fail. */
void dspi_journal_retire(dspi_sched *s, int64_t low);
/* Under the lock: node n emitted item; warn once if it was journaled. */
void dspi_journal_check_emit(dspi_sched *s, const dsp_node *n, int64_t item);
/* After the run: the resume summary line. */
void dspi_journal_report(dspi_sched *s, int64_t items_started);
void dspi_journal_free(dspi_journal *j);

/* progress.c: draw (or finish, with final != 0) the progress line. */
void dspi_progress_draw(dspi_sched *s, int final);

#endif /* DSPIPE_SCHEDULER_H */
