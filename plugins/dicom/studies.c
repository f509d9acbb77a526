/* studies.c - dicom.studies: the files of a folder tree (or a list), grouped by StudyInstanceUID from their headers; one item per study. */
#include "dicom.h"
#include "dcmw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One item to emit: a study, or a file that cannot be grouped. */
typedef struct study {
    char uid[68];               /* StudyInstanceUID; "" for an unreadable file */
    size_t *files;              /* indices into paths, in path order */
    size_t n, cap;
    char *dir;                  /* the folder holding all its files, malloc'd */
    char *reason;               /* unreadable: why, malloc'd; else NULL */
    char *notes;                /* JSON array text of skipped files, malloc'd */
} study;

typedef struct studies_ctx {
    /* parameters */
    char *dir;
    char *list;
    int recursive;
    int hidden;
    /* state */
    char **paths;
    size_t n_paths;
    study *st;
    size_t n_st, cap_st;
    size_t next;
    int scanned;
} studies_ctx;

static const dsp_param_def studies_params[] = {
    { .name = "dir", .type = DSP_PARAM_PATH, .def = "", .offset = offsetof(studies_ctx, dir),
      .doc = "folder to search (exactly one of dir and list): one study, or many" },
    { .name = "list", .type = DSP_PARAM_PATH, .def = "", .offset = offsetof(studies_ctx, list),
      .doc = "text file of paths, one per line, '#' starts a comment line; relative paths "
             "are relative to the list file" },
    { .name = "recursive", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(studies_ctx, recursive), .doc = "descend into subdirectories" },
    { .name = "hidden", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(studies_ctx, hidden),
      .doc = "include files and directories whose name starts with '.'" },
    { NULL }
};

static const dsp_port_def studies_out[] = {
    { "out", "record", "one record per study: meta key (= study_uid), study_uid, paths, "
      "files, source, notes; or per file that cannot be grouped: meta unreadable" },
    { NULL }
};

static int studies_init(dsp_node *node)
{
    studies_ctx *c = dsp_node_priv(node);
    char why[DICOM_WHY];
    /* without DCMTK's dictionary every file would fail: refuse to start */
    int err = dcmw_init(why, sizeof why);
    if (err < 0)
        return dsp_node_fail(node, err, "%s", why);
    dsp_file_list_opts o = { .dir = c->dir, .list = c->list, .recursive = c->recursive,
                             .hidden = c->hidden, .sort = 1 };
    return dsp_list_files(node, &o, &c->paths, &c->n_paths);
}

static study *new_study(studies_ctx *c)
{
    if (c->n_st == c->cap_st) {
        size_t cap = c->cap_st ? 2 * c->cap_st : 16;
        study *p = realloc(c->st, cap * sizeof *p);
        if (!p)
            return NULL;
        c->st = p;
        c->cap_st = cap;
    }
    study *s = &c->st[c->n_st++];
    memset(s, 0, sizeof *s);
    return s;
}

static int add_file(study *s, size_t i)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        size_t *p = realloc(s->files, cap * sizeof *p);
        if (!p)
            return DSP_ENOMEM;
        s->files = p;
        s->cap = cap;
    }
    s->files[s->n++] = i;
    return 0;
}

/* The study with this UID, made when new. The paths are sorted, so a
 * study's files usually come together: try the last one first. */
static study *study_for(studies_ctx *c, const char *uid, study **last)
{
    if (*last && !strcmp((*last)->uid, uid))
        return *last;
    for (size_t k = 0; k < c->n_st; k++)
        if (!c->st[k].reason && !strcmp(c->st[k].uid, uid))
            return *last = &c->st[k];
    study *s = new_study(c);
    if (s)
        snprintf(s->uid, sizeof s->uid, "%s", uid);
    return *last = s;
}

/* The folder of path (a malloc'd copy; "." for a bare name). */
static char *parent_dir(const char *path)
{
    const char *sl = strrchr(path, '/');
    if (!sl)
        return strdup(".");
    if (sl == path)
        return strdup("/");
    return strndup(path, (size_t)(sl - path));
}

/* The folder holding every file of s. */
static char *common_dir(const studies_ctx *c, const study *s)
{
    char *dir = parent_dir(c->paths[s->files[0]]);
    for (size_t i = 1; dir && i < s->n; i++) {
        const char *p = c->paths[s->files[i]];
        size_t k = 0;
        while (dir[k] && dir[k] == p[k])
            k++;
        /* cut back to a whole path component */
        if (dir[k] || (p[k] && p[k] != '/')) {
            while (k > 0 && dir[k] != '/')
                k--;
            if (k > 0)
                dir[k] = '\0';
            else if (dir[0] == '/')
                dir[1] = '\0';
            else
                strcpy(dir, ".");
        }
    }
    return dir;
}

/* Text taken from a file (a UID, a transfer syntax in a reason) can hold
 * any bytes; meta strings must be UTF-8. Non-printable bytes become '?'. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

/* 1 when s can be a meta string (valid UTF-8). */
static int meta_ok(const char *s)
{
    dsp_meta *m = dsp_meta_new();
    int ok = m && dsp_meta_set_str(m, "s", s) == 0;
    dsp_meta_free(&m);
    return ok;
}

static int is_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

/* A skipped file's note goes to every study that lies in its folder or
 * below it: what was in that study's folder tree. */
static int note_skipped(studies_ctx *c, const char *path, const char *why)
{
    char *dir = parent_dir(path);
    char note[DICOM_WHY + 4096];
    if (!dir)
        return DSP_ENOMEM;
    snprintf(note, sizeof note, "%s: skipped: %s", path, why);
    if (!meta_ok(note))
        printable(note);        /* a file name that is not UTF-8 */
    size_t len = strlen(dir);
    int err = 0;
    for (size_t k = 0; k < c->n_st && !err; k++) {
        const study *s = &c->st[k];
        if (s->reason || (strcmp(dir, ".") && strcmp(dir, "/") &&
                          (strncmp(s->dir, dir, len) || (s->dir[len] && s->dir[len] != '/'))))
            continue;
        err = dicom_json_append(&c->st[k].notes, note);
    }
    free(dir);
    return err;
}

/* Read the header of every file and group them. */
static int scan(dsp_node *node, studies_ctx *c)
{
    /* the limits are dicom.read's to apply: here nothing is decoded */
    const dicom_limits none = { INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX };
    size_t *skipped = calloc(c->n_paths ? c->n_paths : 1, sizeof *skipped);
    char **skip_why = calloc(c->n_paths ? c->n_paths : 1, sizeof *skip_why);
    size_t n_skipped = 0, n_bad = 0;
    study *last = NULL;
    int err = skipped && skip_why ? 0 : DSP_ENOMEM;
    for (size_t i = 0; i < c->n_paths && !err && !dsp_node_stopping(node); i++) {
        dicom_image img;
        char why[DICOM_WHY];
        int r = dicom_read_header(c->paths[i], &none, &img, why);
        if (r == 0 && !img.study_uid[0]) {
            snprintf(why, sizeof why, "a DICOM image without StudyInstanceUID (0020,000D): it "
                     "belongs to no study");
            r = DSP_EFORMAT;
        } else if (r == 0 && !is_printable(img.study_uid)) {
            snprintf(why, sizeof why, "its StudyInstanceUID (0020,000D) holds bytes no UID "
                     "has: the file is damaged");
            r = DSP_EFORMAT;
        }
        printable(why);
        if (r == 0) {
            study *s = study_for(c, img.study_uid, &last);
            err = s ? add_file(s, i) : DSP_ENOMEM;
        } else if (r == DICOM_SKIP) {
            dsp_node_log(node, DSP_LOG_VERBOSE, "%s: skipped: %s", c->paths[i], why);
            skipped[n_skipped] = i;
            err = (skip_why[n_skipped++] = strdup(why)) ? 0 : DSP_ENOMEM;
        } else if (r == DSP_ENOMEM) {
            err = r;
        } else {
            /* its own item, which dicom.read fails: errors.jsonl names it */
            dsp_node_log(node, DSP_LOG_WARNING, "%s: %s", c->paths[i], why);
            study *s = new_study(c);
            n_bad++;
            err = s && !add_file(s, i) && (s->reason = strdup(why)) ? 0 : DSP_ENOMEM;
            last = NULL;
        }
        dicom_image_clear(&img);
    }
    for (size_t k = 0; k < c->n_st && !err; k++)
        if (!(c->st[k].dir = c->st[k].reason ? strdup(c->paths[c->st[k].files[0]])
                                             : common_dir(c, &c->st[k])))
            err = DSP_ENOMEM;
    for (size_t j = 0; j < n_skipped && !err; j++)
        err = note_skipped(c, c->paths[skipped[j]], skip_why[j]);
    for (size_t j = 0; skip_why && j < n_skipped; j++)
        free(skip_why[j]);
    free(skip_why);
    free(skipped);
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    dsp_node_log(node, DSP_LOG_INFO, "%zu file%s: %zu stud%s, %zu skipped (not DICOM images), "
                 "%zu unreadable", c->n_paths, c->n_paths == 1 ? "" : "s", c->n_st - n_bad,
                 c->n_st - n_bad == 1 ? "y" : "ies", n_skipped, n_bad);
    if (c->n_st == n_bad)
        dsp_node_log(node, DSP_LOG_WARNING, "no DICOM images in %s '%s'",
                     c->dir && c->dir[0] ? "dir" : "list",
                     c->dir && c->dir[0] ? c->dir : c->list);
    return 0;
}

static int set_study_meta(const studies_ctx *c, const study *s, dsp_meta *m)
{
    const char **paths = malloc(s->n * sizeof *paths);
    if (!paths)
        return DSP_ENOMEM;
    for (size_t i = 0; i < s->n; i++)
        paths[i] = c->paths[s->files[i]];
    /* --resume journals an item by meta key: the study, or the lone file */
    int err = dsp_meta_set_str(m, "key", s->reason ? s->dir : s->uid);
    err = err ? err : dsp_meta_set_strs(m, "paths", paths, s->n);
    err = err ? err : dsp_meta_set_int(m, "files", (int64_t)s->n);
    err = err ? err : dsp_meta_set_str(m, "source", s->dir);
    err = err ? err : dsp_meta_set_json(m, "notes", s->notes ? s->notes : "[]");
    if (!err && s->reason)
        err = dsp_meta_set_str(m, "unreadable", s->reason);
    else if (!err)
        err = dsp_meta_set_str(m, "study_uid", s->uid);
    free(paths);
    return err;
}

static int studies_process(dsp_node *node, dsp_packet **in)
{
    studies_ctx *c = dsp_node_priv(node);
    (void)in;
    if (!c->scanned) {
        c->scanned = 1;
        int err = scan(node, c);
        if (err < 0)
            return err;
    }
    dsp_packet *p = NULL;
    const study *s;
    int err;
    do {
        if (c->next >= c->n_st || dsp_node_stopping(node))
            return DSP_EOF;
        s = &c->st[c->next++];
        if (!(p = dsp_node_packet_new(node)))
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        err = set_study_meta(c, s, dsp_packet_meta(p));
        if (err < 0 && err != DSP_ENOMEM) {
            /* a path that is not UTF-8 cannot travel in meta; a source that
             * failed would end the batch, so this study is left out, loudly */
            char dir[1024];
            snprintf(dir, sizeof dir, "%s", s->dir);
            printable(dir);
            dsp_node_log(node, DSP_LOG_ERROR, "%s: left out: a file name in it is not "
                         "UTF-8; rename it", dir);
            dsp_packet_unref(&p);
        }
    } while (err < 0 && err != DSP_ENOMEM);
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "%s: cannot set metadata: %s", s->dir,
                             dsp_strerror(err));
    }
    dsp_node_progress(node, (int64_t)c->next, (int64_t)c->n_st);
    return dsp_node_emit(node, 0, p);
}

static void studies_fini(dsp_node *node)
{
    studies_ctx *c = dsp_node_priv(node);
    for (size_t k = 0; k < c->n_st; k++) {
        free(c->st[k].files);
        free(c->st[k].dir);
        free(c->st[k].reason);
        free(c->st[k].notes);
    }
    free(c->st);
    c->st = NULL;
    c->n_st = 0;
    dsp_list_files_free(&c->paths, c->n_paths);
    c->n_paths = 0;
}

const dsp_op_def dicom_studies_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "dicom.studies",
    .doc = "group the DICOM files of a folder tree by study (headers only); one item per study",
    .outputs = studies_out,
    .params = studies_params,
    .priv_size = sizeof(studies_ctx),
    .flags = DSP_OP_SOURCE,
    .init = studies_init,
    .process = studies_process,
    .fini = studies_fini,
};
