/* parallel.c - a persistent worker pool behind dspi_parallel_for, for the row-wise CPU kernels. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <dspipe/ops.h>
#include "ops/cpu/parallel.h"

/* Why it is shaped so:
 * - Persistent and lazy: a kernel call is 10 us - 2 ms, too short to
 *   create threads per call, and programs that never run a big kernel
 *   never start a thread.
 * - One job slot, taken with trylock: pipeline nodes may call ops from
 *   several threads at once. A caller that finds the slot busy runs its
 *   loop inline instead of queueing: the cores are already busy with the
 *   other job, so waiting would only add latency, and no call can ever
 *   wait on another (no deadlock, also when a slice calls a kernel).
 * - The caller works too and never depends on a worker: slices are handed
 *   out from an atomic counter, workers join a job only while it is open,
 *   and the caller closes it when the counter runs out and waits only for
 *   workers already inside. A worker that never wakes (busy machine, or a
 *   fork()ed child, which has no workers) just means the caller does more.
 * - Joined at exit (atexit), so ASan/LSan and valgrind see no thread
 *   stacks left behind; a fork()ed child forgets the parent's workers
 *   (pthread_atfork) and starts its own pool if it needs one. */

/* The pool thread this is: 0 for any caller, 1.. for the workers. */
static _Thread_local int tl_thread;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* workers: a new job or shutdown */
    pthread_cond_t idle;        /* caller: the last worker left the job */
    pthread_mutex_t slot;       /* held by the one caller using the pool */
    pthread_t *tids;
    int nworkers;
    atomic_int started;         /* workers that took their index */
    int state;                  /* 0 not started, 1 running, -1 no pool */
    int shutdown;
    unsigned long gen;          /* bumped per job */
    int open;                   /* the current job accepts workers */
    int active;                 /* workers inside the current job */
    dspi_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;
} pool;

static pool g_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
    .slot = PTHREAD_MUTEX_INITIALIZER,
};

static void run_slices(pool *p)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->chunk);
        if (b >= p->n)
            break;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e);
    }
}

static void *worker_main(void *arg)
{
    pool *p = arg;
    unsigned long seen = 0;
    tl_thread = atomic_fetch_add(&p->started, 1) + 1;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && (p->gen == seen || !p->open))
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->shutdown)
            break;
        seen = p->gen;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        run_slices(p);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_stop(void)
{
    pool *p = &g_pool;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->tids[i], NULL);
    free(p->tids);
    p->tids = NULL;
    p->nworkers = 0;
    p->state = -1;
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_pool.mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_pool.mu);
}

/* The child has only the forking thread: drop the parent's workers
 * (without joining them: they do not exist here) and start afresh. */
static void atfork_child(void)
{
    pool *p = &g_pool;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    pthread_mutex_init(&p->slot, NULL);
    free(p->tids);
    p->tids = NULL;
    p->nworkers = 0;
    atomic_store(&p->started, 0);
    p->state = 0;
    p->open = 0;
    p->active = 0;
}

/* DSPIPE_OPS_THREADS (else the online cores), read once: the pool's size
 * and what dsp_ops_threads() reports stay the same for the process, so a
 * caller's per-thread scratch sized from it always covers the pool. */
static int g_threads;
static pthread_once_t g_threads_once = PTHREAD_ONCE_INIT;

static void read_threads(void)
{
    const char *env = getenv("DSPIPE_OPS_THREADS");
    long n = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    g_threads = n > 64 ? 64 : (int)n;
}

static int wanted_threads(void)
{
    pthread_once(&g_threads_once, read_threads);
    return g_threads;
}

/* Called with p->mu held. */
static void pool_start(pool *p)
{
    static int hooks_registered;
    int want = wanted_threads() - 1;
    p->state = -1;
    if (!hooks_registered) {
        if (atexit(pool_stop) != 0 ||
            pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0)
            return;
        hooks_registered = 1;
    }
    if (want <= 0)
        return;
    p->tids = malloc((size_t)want * sizeof *p->tids);
    if (!p->tids)
        return;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->tids[i], NULL, worker_main, p) != 0)
            break;
        p->nworkers++;
    }
    p->state = p->nworkers > 0 ? 1 : -1;
}

/* Takes the pool for one job: 1 with p->slot held and the workers running,
 * 0 when the caller must run the work itself (the pool is busy with another
 * caller's job, or has no workers). */
static int pool_acquire(pool *p)
{
    if (pthread_mutex_trylock(&p->slot) != 0)
        return 0;
    pthread_mutex_lock(&p->mu);
    if (p->state == 0 && !p->shutdown)
        pool_start(p);
    int ok = p->state == 1 && !p->shutdown;
    pthread_mutex_unlock(&p->mu);
    if (!ok)
        pthread_mutex_unlock(&p->slot);
    return ok;
}

/* Runs fn over [0, n) in slices of chunk on the caller and the workers,
 * then gives the pool back (pool_acquire succeeded). */
static void pool_run(pool *p, int64_t n, int64_t chunk, dspi_range_fn fn, void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->chunk = chunk;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->gen++;
    p->open = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_slices(p);

    pthread_mutex_lock(&p->mu);
    p->open = 0;
    while (p->active > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->slot);
}

void dspi_parallel_for(int64_t n, int64_t grain, int64_t work, dspi_range_fn fn, void *ctx)
{
    pool *p = &g_pool;
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (work < DSPI_PARALLEL_MIN_WORK || n < 2 * grain || !pool_acquire(p)) {
        fn(ctx, 0, n);
        return;
    }
    /* a few slices per thread so a thread slowed by other load does not
     * hold up the rest; whole grains, so the slices' tails are the same for
     * any thread count */
    int64_t nthr = p->nworkers + 1;
    int64_t chunk = (n + 4 * nthr - 1) / (4 * nthr);
    pool_run(p, n, (chunk + grain - 1) / grain * grain, fn, ctx);
}

int dsp_ops_threads(void)
{
    return wanted_threads();
}

typedef struct task_job {
    dsp_task_fn fn;
    void *ctx;
} task_job;

static void task_range(void *ctx, int64_t begin, int64_t end)
{
    task_job *j = ctx;
    for (int64_t i = begin; i < end; i++)
        j->fn(j->ctx, (int)i, tl_thread);
}

void dsp_parallel_tasks(int n, dsp_task_fn fn, void *ctx)
{
    pool *p = &g_pool;
    if (n <= 0)
        return;
    if (n < 2 || !pool_acquire(p)) {
        for (int i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    /* one task per thread at a time, and each task's GEMMs on its own
     * thread: OpenBLAS's threads would only compete with the pool's */
    task_job j = { fn, ctx };
    dspi_gemm_serial_begin();
    pool_run(p, n, 1, task_range, &j);
    dspi_gemm_serial_end();
}
