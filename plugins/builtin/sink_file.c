/* sink_file.c - the output file of a sink that writes one file of all items, resumable through a side file. */
#include "builtin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How a sink's records reach its output:
 * - DIRECT: straight into the temporary output file (no journal this run,
 *   so nothing could resume from a side file anyway);
 * - SIDE: one line per record appended and flushed to OUTPUT.part, tagged
 *   with the item number and journal key; flush builds the output from it in
 *   item order;
 * - FINISHED: --resume after a run that completed this output (its side
 *   file is gone): the output stays as it is, and a record cannot be added. */
enum { MODE_UNDECIDED, MODE_DIRECT, MODE_SIDE, MODE_FINISHED };

struct builtin_sink_file {
    dsp_outfile *out;           /* temporary until commit */
    char *path;                 /* the output */
    char *side;                 /* OUTPUT.part */
    FILE *side_fp;              /* appending, in SIDE mode */
    json_t *head;               /* the side file's first line */
    char *prologue;             /* written before the records (a CSV header) */
    int mode;
};

/* One record of the side file, as read back. */
typedef struct side_rec {
    int64_t item;
    int64_t order;              /* position in the side file: ties keep it */
    long off;
} side_rec;

static const char side_format[] = "it holds a first line {\"op\", ...} and then one JSON "
                                  "object {\"item\", \"key\", \"text\"} per line";

/* Parse one complete side-file line (without its newline) into rec (new
 * reference) and its fields; *why says what is wrong (it may point into
 * jerr). */
static int side_parse(const char *line, size_t len, json_t **rec, int64_t *item,
                      const char **key, json_error_t *jerr, const char **why)
{
    json_t *k;

    *rec = json_loadb(line, len, 0, jerr);
    if (!*rec) {
        *why = jerr->text;
        return DSP_EFORMAT;
    }
    k = json_object_get(*rec, "key");
    if (!json_is_integer(json_object_get(*rec, "item")) ||
        !json_is_string(json_object_get(*rec, "text")) || (k && !json_is_string(k) &&
                                                            !json_is_null(k))) {
        *why = "no integer \"item\" and string \"text\"";
        json_decref(*rec);
        *rec = NULL;
        return DSP_EFORMAT;
    }
    *item = json_integer_value(json_object_get(*rec, "item"));
    *key = json_string_value(k);
    return 0;
}

/* ---- taking up the side file of an earlier run (--resume) ------------------------- */

/* Copy the head and the records of journaled items of the old side file
 * into dst; a last line without its newline (a killed run) is left out. */
static int side_take_up(dsp_node *node, builtin_sink_file *f, FILE *src, FILE *dst)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, err = 0;
    int64_t kept = 0, dropped = 0;

    while (!err && (len = getline(&line, &cap, src)) > 0) {
        json_t *rec = NULL;
        json_error_t jerr;
        const char *key, *why;
        int64_t item;
        int keep = 1;

        lineno++;
        if (line[len - 1] != '\n') {
            dsp_node_log(node, DSP_LOG_WARNING, "resume: %s:%d: the last line is incomplete "
                         "(the run that wrote it was killed); left out", f->side, lineno);
            break;
        }
        if (lineno == 1) {
            f->head = json_loadb(line, len - 1, 0, &jerr);
            const char *op = json_string_value(json_object_get(f->head, "op"));
            if (!op || strcmp(op, dsp_node_op(node)->name) != 0) {
                err = dsp_node_fail(node, DSP_EFORMAT, "resume: %s:1: not the side file of "
                                    "a %s (%s). Run without --resume", f->side,
                                    dsp_node_op(node)->name, f->head ? "another \"op\"" :
                                    jerr.text);
                break;
            }
        } else if (side_parse(line, len - 1, &rec, &item, &key, &jerr, &why) < 0) {
            err = dsp_node_fail(node, DSP_EFORMAT, "resume: %s:%d: not a side-file record "
                                "(%s); %s. Run without --resume", f->side, lineno, why,
                                side_format);
        } else {
            /* an item not journaled runs again and writes its records anew */
            keep = dsp_node_key_done(node, key);
            kept += keep;
            dropped += !keep;
        }
        json_decref(rec);
        if (!err && keep && fwrite(line, 1, len, dst) != (size_t)len)
            err = dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->side);
    }
    if (!err && ferror(src))
        err = dsp_node_fail(node, DSP_EIO, "resume: cannot read %s: %s", f->side,
                            strerror(errno));
    free(line);
    if (!err && f->head)
        dsp_node_log(node, DSP_LOG_INFO, "resume: %s: %lld record%s of finished items kept, "
                     "%lld of items that run again dropped", f->side, (long long)kept,
                     kept == 1 ? "" : "s", (long long)dropped);
    return err;
}

/* Resuming: rewrite the side file with what an earlier run finished, and
 * append to it; or, with no side file, see whether the output is finished. */
static int side_resume(dsp_node *node, builtin_sink_file *f)
{
    FILE *src = fopen(f->side, "rb");
    dsp_outfile *dst;
    struct stat st;
    int err;

    if (!src && errno == ENOENT) {
        if (stat(f->path, &st) == 0) {
            /* the run that made the journal completed: it removed the side file */
            f->mode = MODE_FINISHED;
            dsp_node_log(node, DSP_LOG_INFO, "resume: %s was completed by an earlier run; "
                         "it is left as it is", f->path);
        } else {
            dsp_node_log(node, DSP_LOG_WARNING, "resume: neither %s nor its side file %s "
                         "exists: the items the journal lists are missing from it (run "
                         "without --resume to write them all)", f->path, f->side);
        }
        return 0;
    }
    if (!src)
        return dsp_node_fail(node, DSP_EIO, "resume: cannot open %s: %s", f->side,
                             strerror(errno));
    if ((err = dsp_outfile_open(node, f->side, &dst)) == 0) {
        err = side_take_up(node, f, src, dsp_outfile_stream(dst));
        if (err == 0 && f->head)
            err = dsp_outfile_commit(node, &dst);
        dsp_outfile_discard(&dst);
    }
    fclose(src);
    if (err < 0 || !f->head)
        return err;             /* no complete first line: start afresh */
    if (!(f->side_fp = fopen(f->side, "ab")))
        return dsp_node_fail(node, DSP_EIO, "%s: cannot append to it: %s", f->side,
                             strerror(errno));
    f->mode = MODE_SIDE;
    return 0;
}

int builtin_sink_file_open(dsp_node *node, const char *path, builtin_sink_file **out)
{
    builtin_sink_file *f = calloc(1, sizeof(*f));
    size_t n = strlen(path) + sizeof(".part");
    int err;

    *out = NULL;
    if (!f || !(f->path = strdup(path)) || !(f->side = malloc(n))) {
        builtin_sink_file_close(node, &f);
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    snprintf(f->side, n, "%s.part", path);
    /* try now so an unwritable destination fails the run before any work;
     * the temporary file is made again when the output is written (with a
     * side file: at flush, so a killed run leaves none behind) */
    if ((err = dsp_outfile_open(node, path, &f->out)) == 0)
        dsp_outfile_discard(&f->out);
    if (err < 0 ||
        (dsp_node_resuming(node) && (err = side_resume(node, f)) < 0)) {
        builtin_sink_file_close(node, &f);
        return err;
    }
    *out = f;
    return 0;
}

const json_t *builtin_sink_file_head(const builtin_sink_file *f)
{
    return f->head;
}

int builtin_sink_file_set_head(dsp_node *node, builtin_sink_file *f, json_t *head,
                               const char *prologue)
{
    if (f->head)
        json_object_update(head, f->head);
    json_decref(f->head);
    f->head = head;
    free(f->prologue);
    f->prologue = prologue ? strdup(prologue) : NULL;
    if (!f->head || (prologue && !f->prologue))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    return 0;
}

/* ---- writing ------------------------------------------------------------------- */

/* The temporary output, starting with the prologue. */
static int open_output(dsp_node *node, builtin_sink_file *f)
{
    int err = dsp_outfile_open(node, f->path, &f->out);
    if (err < 0)
        return err;
    if (f->prologue && fputs(f->prologue, dsp_outfile_stream(f->out)) < 0)
        return dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->path);
    return 0;
}

/* The first record (or flush) decides: the journal is settled by then. */
static int choose_mode(dsp_node *node, builtin_sink_file *f)
{
    json_t *line;
    int bad;

    if (f->mode != MODE_UNDECIDED)
        return 0;
    if (!dsp_node_journaling(node)) {
        f->mode = MODE_DIRECT;
        return open_output(node, f);
    }
    if (!f->head && !(f->head = json_object()))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    if (!(line = json_pack("{ss}", "op", dsp_node_op(node)->name)) ||
        json_object_update_missing(line, f->head) < 0) {
        json_decref(line);
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    /* a fresh run: an old side file would hold items this run writes again */
    if (!(f->side_fp = fopen(f->side, "wb"))) {
        json_decref(line);
        return dsp_node_fail(node, DSP_EIO, "%s: cannot create it: %s", f->side,
                             strerror(errno));
    }
    bad = json_dumpf(line, f->side_fp, JSON_COMPACT) < 0 || fputc('\n', f->side_fp) == EOF ||
          fflush(f->side_fp) != 0;
    json_decref(line);
    f->mode = MODE_SIDE;
    return bad ? dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->side) : 0;
}

int builtin_sink_file_write(dsp_node *node, builtin_sink_file *f, int64_t item,
                            const char *text, size_t len)
{
    char *key = NULL;
    json_t *rec, *jkey;
    int err, bad;

    if ((err = choose_mode(node, f)) < 0)
        return err;
    if (f->mode == MODE_FINISHED)
        return dsp_node_fail(node, DSP_ESTATE, "%s was completed by an earlier run (its "
                             "side file %s is gone), so this item cannot be added to it in "
                             "order: run without --resume to write it anew", f->path, f->side);
    if (f->mode == MODE_DIRECT)
        return fwrite(text, 1, len, dsp_outfile_stream(f->out)) != len ?
               dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->path) : 0;

    if ((err = dsp_node_item_key(node, item, &key)) == DSP_ENOMEM)
        return dsp_node_fail(node, err, "out of memory");
    /* a key that is not UTF-8 is not journaled either: the record is
     * dropped on --resume, and its item runs again */
    jkey = key ? json_string(key) : NULL;
    dsp_free(key);
    rec = json_pack("{sI so s s%}", "item", (json_int_t)item, "key", jkey ? jkey : json_null(),
                    "text", text, len);
    if (!rec)
        return dsp_node_fail(node, DSP_EFORMAT, "%s: item %lld: its record is not valid "
                             "UTF-8", f->side, (long long)item);
    /* one flushed line: a kill loses at most the record being written */
    bad = json_dumpf(rec, f->side_fp, JSON_COMPACT) < 0 || fputc('\n', f->side_fp) == EOF ||
          fflush(f->side_fp) != 0;
    json_decref(rec);
    return bad ? dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->side) : 0;
}

/* ---- committing ---------------------------------------------------------------- */

static int rec_cmp(const void *a, const void *b)
{
    const side_rec *x = a, *y = b;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* Index the records of the side file (the head line skipped). */
static int side_index(dsp_node *node, builtin_sink_file *f, FILE *fp, side_rec **recs,
                      int64_t *n)
{
    char *line = NULL;
    size_t cap = 0, n_cap = 0;
    ssize_t len;
    long off = 0;
    int err = 0;

    for (int64_t lineno = 1; (len = getline(&line, &cap, fp)) > 0; lineno++, off += len) {
        json_t *rec;
        json_error_t jerr;
        const char *key, *why = "no newline at the end";
        int64_t item;

        if (lineno == 1)
            continue;
        if (line[len - 1] != '\n' ||
            side_parse(line, len - 1, &rec, &item, &key, &jerr, &why) < 0) {
            err = dsp_node_fail(node, DSP_EFORMAT, "%s:%lld: not a side-file record (%s); "
                                "was it changed during the run?", f->side,
                                (long long)lineno, why);
            break;
        }
        json_decref(rec);
        if ((size_t)*n == n_cap) {
            size_t c = n_cap ? 2 * n_cap : 256;
            side_rec *r = realloc(*recs, c * sizeof(*r));
            if (!r) {
                err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
                break;
            }
            *recs = r;
            n_cap = c;
        }
        (*recs)[*n] = (side_rec){ item, *n, off };
        (*n)++;
    }
    if (!err && ferror(fp))
        err = dsp_node_fail(node, DSP_EIO, "cannot read %s: %s", f->side, strerror(errno));
    free(line);
    return err;
}

/* The records in item order (an item's own in the order they came). */
static int side_build(dsp_node *node, builtin_sink_file *f)
{
    FILE *fp, *dst;
    side_rec *recs = NULL;
    int64_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    int err;

    if (fflush(f->side_fp) != 0)
        return dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->side);
    if (!(fp = fopen(f->side, "rb")))
        return dsp_node_fail(node, DSP_EIO, "cannot read %s: %s", f->side, strerror(errno));
    if ((err = side_index(node, f, fp, &recs, &n)) == 0 && (err = open_output(node, f)) == 0)
        dst = dsp_outfile_stream(f->out);
    if (n > 1)
        qsort(recs, (size_t)n, sizeof(*recs), rec_cmp);
    for (int64_t i = 0; !err && i < n; i++) {
        json_t *rec = NULL;
        json_error_t jerr;
        const char *key, *why;
        int64_t item;
        ssize_t len;
        const json_t *text;

        if (fseek(fp, recs[i].off, SEEK_SET) != 0 || (len = getline(&line, &cap, fp)) <= 0 ||
            side_parse(line, len - 1, &rec, &item, &key, &jerr, &why) < 0) {
            err = dsp_node_fail(node, DSP_EIO, "%s changed while the output was built from it",
                                f->side);
            break;
        }
        text = json_object_get(rec, "text");
        if (fwrite(json_string_value(text), 1, json_string_length(text), dst) !=
            json_string_length(text))
            err = dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", f->path);
        json_decref(rec);
    }
    free(line);
    free(recs);
    fclose(fp);
    return err;
}

int builtin_sink_file_commit(dsp_node *node, builtin_sink_file *f)
{
    int err;

    if ((err = choose_mode(node, f)) < 0)
        return err;
    if (f->mode == MODE_FINISHED) {
        dsp_outfile_discard(&f->out);
        return 0;
    }
    if (f->mode == MODE_SIDE && (err = side_build(node, f)) < 0)
        return err;
    return dsp_outfile_commit(node, &f->out);
}

void builtin_sink_file_close(dsp_node *node, builtin_sink_file **pf)
{
    builtin_sink_file *f = *pf;

    if (!f)
        return;
    /* still open: the run failed before flush, so no partial file appears */
    dsp_outfile_discard(&f->out);
    if (f->side_fp)
        fclose(f->side_fp);
    /* the side file outlives a run that may be resumed */
    if (f->mode == MODE_SIDE) {
        if (dsp_node_run_complete(node))
            unlink(f->side);
        else
            dsp_node_log(node, DSP_LOG_VERBOSE, "%s kept for --resume", f->side);
    }
    json_decref(f->head);
    free(f->prologue);
    free(f->side);
    free(f->path);
    free(f);
    *pf = NULL;
}
