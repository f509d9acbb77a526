/* journal.c - the completion journal: which source items went through the whole graph, so --resume can skip them. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "scheduler.h"

/* ---- which pipelines can journal ------------------------------------------ */

/* Items are journaled one by one only when they can be told apart and
 * finish one by one: one source (two sources number their items
 * independently, and a skipped item would leave its partner waiting at a
 * join) and no node that keeps items past their end. On 0, *why says which
 * node stands in the way (malloc'd). */
static int journal_possible(const dspi_sched *s, char **why)
{
    const dsp_node *src = NULL;

    *why = NULL;
    for (int i = 0; i < s->n_nodes; i++) {
        const dsp_node *n = &s->nodes[i];
        if (n->gathers) {
            *why = dspi_fmt("node '%s' (%s, %s:%d) gathers items into results it writes "
                            "at the end of the stream, so no item is done before the "
                            "whole run is", n->name, n->op->name, s->g->path,
                            s->g->nodes[i].line);
            return 0;
        }
        if (!(n->op->flags & DSP_OP_SOURCE))
            continue;
        if (src) {
            *why = dspi_fmt("it has two sources, '%s' and '%s'; resuming needs exactly one",
                            src->name, n->name);
            return 0;
        }
        src = n;
    }
    if (!src)
        *why = dspi_fmt("it has no source node");
    return src != NULL;
}

/* ---- reading ----------------------------------------------------------------- */

/* Read the keys of an earlier run. A last line without its newline is what
 * a killed run leaves: it is cut off (the item runs again). */
static int journal_read(dspi_sched *s, dspi_journal *j)
{
    FILE *f = fopen(j->path, "r+");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t good = 0;
    int lineno = 0, err = 0;

    if (!f) {
        if (errno == ENOENT) {
            j->missing = 1;
            return 0;
        }
        dspi_set_error(s->ctx, "resume: cannot open the journal %s: %s", j->path,
                       strerror(errno));
        return DSP_EIO;
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *rec, *key;

        lineno++;
        if (line[len - 1] != '\n') {
            dsp_log(DSP_LOG_WARNING, "dspipe", "resume: %s:%d: the last line is incomplete "
                    "(the run that wrote it was killed); ignored, its item runs again",
                    j->path, lineno);
            if (ftruncate(fileno(f), good) < 0) {
                dspi_set_error(s->ctx, "resume: %s: cannot cut off the incomplete last "
                               "line: %s", j->path, strerror(errno));
                err = DSP_EIO;
            }
            break;
        }
        good += len;
        if (len == 1)
            continue;
        rec = json_loadb(line, len - 1, 0, &jerr);
        key = json_object_get(rec, "key");
        if (!json_is_string(key)) {
            dspi_set_error(s->ctx, "resume: %s:%d: not a journal line (%s); a journal "
                           "holds one JSON object with a string \"key\" per line. Delete "
                           "the file to run every item again", j->path, lineno,
                           rec ? "no string \"key\"" : jerr.text);
            json_decref(rec);
            err = DSP_EFORMAT;
            break;
        }
        if (json_object_set_new_nocheck(j->done, json_string_value(key), json_true()) < 0)
            err = DSP_ENOMEM;
        json_decref(rec);
        if (err)
            break;
        j->listed++;
    }
    if (!err && ferror(f)) {
        dspi_set_error(s->ctx, "resume: cannot read the journal %s: %s", j->path,
                       strerror(errno));
        err = DSP_EIO;
    }
    free(line);
    fclose(f);
    return err;
}

int dspi_journal_open(dspi_sched *s, const char *path, int resume)
{
    dspi_journal *j = &s->journal;

    j->last_item = -1;
    j->resume = resume;
    if (!path) {
        if (!resume)
            return 0;
        dspi_set_error(s->ctx, "%s: cannot resume: there is no journal; the errors file %s "
                       "is not a regular file to put done.jsonl beside. Give --journal FILE",
                       s->g->path, s->errors_path);
        return DSP_EINVAL;
    }
    if (!(j->path = strdup(path)))
        return DSP_ENOMEM;
    if (!resume)
        return 0;
    /* read before the nodes' init, which may ask what is done (sinks that
     * take up their side files) */
    if (!(j->done = json_object()))
        return DSP_ENOMEM;
    return journal_read(s, j);
}

int dspi_journal_setup(dspi_sched *s)
{
    dspi_journal *j = &s->journal;
    char *why = NULL;
    struct stat st;

    if (!j->path)
        return 0;
    j->enabled = journal_possible(s, &why);
    if (!j->enabled && j->resume) {
        dspi_set_error(s->ctx, "%s: cannot resume: %s. Run it without --resume",
                       s->g->path, why ? why : "out of memory");
        free(why);
        return DSP_EINVAL;
    }
    if (!j->resume) {
        /* a journal of an earlier run would make a later --resume skip items
         * this run may not finish; as with the errors file, remove only a
         * regular file */
        if (lstat(j->path, &st) == 0 && S_ISREG(st.st_mode) && unlink(j->path) == 0)
            dsp_log(DSP_LOG_VERBOSE, "dspipe", "removed the journal %s of an earlier run",
                    j->path);
        if (!j->enabled)
            dsp_log(DSP_LOG_VERBOSE, "dspipe", "no completion journal: %s", why ? why : "");
        free(why);
        return 0;
    }
    free(why);
    if (j->missing)
        dsp_log(DSP_LOG_INFO, "dspipe", "resume: no journal at %s; running every item",
                j->path);
    else
        dsp_log(DSP_LOG_INFO, "dspipe", "resume: %s lists %lld completed item%s; they are "
                "skipped", j->path, (long long)j->listed, j->listed == 1 ? "" : "s");
    return 0;
}

/* ---- items leaving the source ---------------------------------------------- */

/* The item's name across runs: meta "key", else "path", else the source
 * node and the item number (stable for a deterministic source). */
static char *item_key(const dsp_node *n, const dsp_packet *p)
{
    const dsp_meta *m = dsp_packet_meta_const(p);
    const char *v;

    if (dsp_meta_get_str(m, "key", &v) == 0 || dsp_meta_get_str(m, "path", &v) == 0)
        return strdup(v);
    return dspi_fmt("%s:%lld", n->name, (long long)dsp_packet_item(p));
}

static int pending_push(dspi_journal *j, int64_t item, char *key)
{
    if (j->p_count == j->p_cap) {
        int cap = j->p_cap ? 2 * j->p_cap : 16;
        dspi_pending *r = malloc(cap * sizeof(*r));
        if (!r)
            return DSP_ENOMEM;
        for (int i = 0; i < j->p_count; i++)
            r[i] = j->pending[(j->p_head + i) % j->p_cap];
        free(j->pending);
        j->pending = r;
        j->p_cap = cap;
        j->p_head = 0;
    }
    j->pending[(j->p_head + j->p_count) % j->p_cap] = (dspi_pending){ item, key };
    j->p_count++;
    return 0;
}

int dspi_journal_source_packet(dspi_sched *s, const dsp_node *n, const dsp_packet *p)
{
    dspi_journal *j = &s->journal;
    int64_t item = dsp_packet_item(p);
    char *key;

    if (!j->enabled)
        return 0;
    if (item == j->last_item)
        return j->last_skipped;     /* a later part of the same item */
    j->last_item = item;
    j->last_skipped = 0;
    if (!(key = item_key(n, p))) {
        dsp_log(DSP_LOG_WARNING, n->label, "item %lld: out of memory; it is not journaled",
                (long long)item);
        return 0;
    }
    if (j->done && json_object_get(j->done, key)) {
        free(key);
        j->last_skipped = 1;
        j->skipped++;
        return 1;
    }
    if (pending_push(j, item, key) < 0) {
        dsp_log(DSP_LOG_WARNING, n->label, "item %lld: out of memory; it is not journaled",
                (long long)item);
        free(key);
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------- */

static void journal_write(dspi_journal *j, const dspi_pending *d)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    json_t *rec = json_object();

    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    json_object_set_new(rec, "key", json_string(d->key));
    json_object_set_new(rec, "item", json_integer(d->item));
    json_object_set_new(rec, "time", json_string(when));
    if (!json_object_get(rec, "key"))
        dsp_log(DSP_LOG_WARNING, "dspipe", "item %lld: its key is not valid UTF-8; it is not "
                "journaled", (long long)d->item);
    else if (dspi_record_line(&j->fp, &j->open_failed, j->path, "a", "journal",
                              "a later --resume will run this run's items again", rec) == 0)
        j->written++;
    json_decref(rec);
}

void dspi_journal_retire(dspi_sched *s, int64_t low)
{
    dspi_journal *j = &s->journal;

    if (!j->enabled || low <= j->low)
        return;
    j->low = low;
    while (j->p_count && j->pending[j->p_head].item < low) {
        dspi_pending *d = &j->pending[j->p_head];
        /* an aborted run dropped what was in flight: nothing of it is done */
        if (!s->aborting && !j->broken && !dspi_item_failed(s, d->item))
            journal_write(j, d);
        free(d->key);
        j->p_head = (j->p_head + 1) % j->p_cap;
        j->p_count--;
    }
}

void dspi_journal_check_emit(dspi_sched *s, const dsp_node *n, int64_t item)
{
    dspi_journal *j = &s->journal;

    if (!j->enabled || j->broken || item >= j->low)
        return;
    j->broken = 1;
    dsp_log(DSP_LOG_ERROR, n->label, "emitted item %lld after the journal %s recorded it as "
            "done: operator '%s' holds items back and must declare DSP_OP_GATHER. The "
            "journal is not reliable; delete it before using --resume", (long long)item,
            j->path, n->op->name);
}

void dspi_journal_report(dspi_sched *s, int64_t items_started)
{
    const dspi_journal *j = &s->journal;

    if (!j->resume)
        return;
    dsp_log(DSP_LOG_INFO, "dspipe", "resume: %lld of %lld item%s already done (%s); %lld ran",
            (long long)j->skipped, (long long)items_started,
            items_started == 1 ? "" : "s", j->path, (long long)(items_started - j->skipped));
}

/* ---- what plugins may ask (dspipe/plugin.h) ----------------------------------- */

int dsp_node_journaling(const dsp_node *node)
{
    return node->sched && node->sched->journal.enabled;
}

int dsp_node_resuming(const dsp_node *node)
{
    const dspi_journal *j = node->sched ? &node->sched->journal : NULL;
    return j && j->resume && json_object_size(j->done) > 0;
}

int dsp_node_item_key(const dsp_node *node, int64_t item, char **key)
{
    dspi_sched *s = node->sched;
    int err = DSP_ENOENT;

    *key = NULL;
    if (!s || !s->journal.enabled)
        return DSP_ENOENT;
    /* the ring is retired by whichever worker finishes a job */
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->journal.p_count; i++) {
        const dspi_journal *j = &s->journal;
        const dspi_pending *d = &j->pending[(j->p_head + i) % j->p_cap];
        if (d->item == item) {
            err = (*key = strdup(d->key)) ? 0 : DSP_ENOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return err;
}

int dsp_node_key_done(const dsp_node *node, const char *key)
{
    const dspi_journal *j = node->sched ? &node->sched->journal : NULL;
    return j && j->done && key && json_object_get(j->done, key) != NULL;
}

int dsp_node_run_complete(const dsp_node *node)
{
    dspi_sched *s = node->sched;
    return s && !s->aborting && !s->stopping && !atomic_load(&s->interrupt) &&
           !s->fatal_code && s->n_failed == 0;
}

void dspi_journal_free(dspi_journal *j)
{
    for (int i = 0; i < j->p_count; i++)
        free(j->pending[(j->p_head + i) % j->p_cap].key);
    free(j->pending);
    json_decref(j->done);
    if (j->fp)
        fclose(j->fp);
    free(j->path);
    memset(j, 0, sizeof(*j));
}
