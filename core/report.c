/* report.c - what a run tells: failed items, the errors file, the log of failures, statistics and the profile. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

/* ---- failed items --------------------------------------------------------- */

int dspi_item_failed(const dspi_sched *s, int64_t item)
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
    if (dspi_item_failed(s, item))
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

const char *dspi_packet_input_name(dsp_packet *const *in, int n)
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

int dspi_record_line(FILE **fp, int *open_failed, const char *path, const char *mode,
                     const char *what, const char *otherwise, struct json_t *rec)
{
    char *line;

    if (!*fp && !*open_failed) {
        /* the file usually sits in the run's output folder, which the sinks
         * may not have made yet */
        int e = dspi_make_parent_dirs(path);
        if (e || !(*fp = fopen(path, mode))) {
            *open_failed = 1;
            dsp_log(DSP_LOG_ERROR, "dspipe", "cannot write the %s %s: %s; %s", what, path,
                    strerror(e ? e : errno), otherwise);
        }
    }
    if (!*fp || !(line = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII)))
        return -1;
    /* one flushed line per record: a crash later loses nothing */
    fprintf(*fp, "%s\n", line);
    fflush(*fp);
    dspi_json_free(line);
    return 0;
}

static void write_error_record(dspi_sched *s, const dsp_node *n, int64_t item,
                               int64_t part, const char *input, int code,
                               const char *msg)
{
    json_t *rec = json_object();

    json_object_set_new(rec, "node", json_string(n->name));
    json_object_set_new(rec, "op", json_string(n->op->name));
    json_object_set_new(rec, "item", item >= 0 ? json_integer(item) : json_null());
    json_object_set_new(rec, "part", item >= 0 ? json_integer(part) : json_null());
    json_object_set_new(rec, "input", input ? json_string(input) : json_null());
    json_object_set_new(rec, "code", json_string(dsp_strerror(code)));
    json_object_set_new(rec, "error", json_string(msg ? msg : ""));
    dspi_record_line(&s->errors_fp, &s->errors_open_failed, s->errors_path, "w",
                     "error log", "failures are only reported here", rec);
    json_decref(rec);
}

/* Log the first failures of a run; after that they only go to the errors
 * file, so a folder of broken inputs does not bury everything else. */
#define MAX_FAILURES_LOGGED 20

/* A callback failed. f->item < 0: not one item's failure (flush, a source). */
void dspi_record_failure(dspi_sched *s, dsp_node *n, const dspi_failure *f)
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
            dspi_sched_abort(s, f->code, dspi_str_take(&where));
        }
        dspi_str_free(&where);
    } else if (is_new && s->n_failed <= MAX_FAILURES_LOGGED) {
        dsp_log(DSP_LOG_WARNING, n->label, "%s (skipped; recorded in %s)%s",
                full.s ? full.s : "", s->errors_path,
                s->n_failed == MAX_FAILURES_LOGGED ? "; further failures are only recorded there" : "");
    }
    dspi_str_free(&full);
}

void dspi_sched_stats(const dspi_sched *s, dsp_run_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].op->flags & DSP_OP_SOURCE)
            for (int p = 0; p < s->nodes[i].n_out; p++)
                out->items_in = DSPI_MAX(out->items_in, s->nodes[i].last_emitted[p] + 1);
    out->items_skipped = s->journal.skipped;
    out->items_in -= out->items_skipped;
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
