/* files_list.c - files.list: one record per file of a directory tree or a list file. */
#include "builtin.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct files_list_ctx {
    /* parameters */
    char *dir;
    char *glob;
    int recursive;
    char *list;
    int sort;
    int hidden;
    int64_t limit;
    /* state */
    char **paths;
    size_t n, cap;
    size_t next;
    dir_id *seen;               /* hash set of directories entered, so
                                   symlink loops end */
    size_t n_seen, cap_seen;
} files_list_ctx;

static const dsp_param_def files_list_params[] = {
    /* optional paths (empty default): exactly one of dir/list is given */
    { .name = "dir", .type = DSP_PARAM_PATH, .def = "",
      .offset = offsetof(files_list_ctx, dir),
      .doc = "directory to list (exactly one of dir and list)" },
    { .name = "glob", .type = DSP_PARAM_STRING, .def = "*",
      .offset = offsetof(files_list_ctx, glob),
      .doc = "shell pattern matched against each file name, e.g. \"*.npy\"" },
    { .name = "recursive", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(files_list_ctx, recursive),
      .doc = "descend into subdirectories" },
    { .name = "list", .type = DSP_PARAM_PATH, .def = "",
      .offset = offsetof(files_list_ctx, list),
      .doc = "text file of paths, one per line, '#' starts a comment line; "
             "relative paths are relative to the list file" },
    { .name = "sort", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(files_list_ctx, sort),
      .doc = "sort by full path (byte order) so runs are deterministic" },
    { .name = "hidden", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(files_list_ctx, hidden),
      .doc = "include files and directories whose name starts with '.'" },
    { .name = "limit", .type = DSP_PARAM_INT, .def = "0",
      .offset = offsetof(files_list_ctx, limit), .min = 0, .max = 1e15,
      .doc = "emit at most this many files (0 = all)" },
    { NULL }
};

static const dsp_port_def files_list_out[] = {
    { "out", "record", "one record per file: meta path, name, source, index" },
    { NULL }
};

static int add_path(files_list_ctx *c, char *path)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **p = realloc(c->paths, cap * sizeof *p);
        if (!p) {
            free(path);
            return DSP_ENOMEM;
        }
        c->paths = p;
        c->cap = cap;
    }
    c->paths[c->n++] = path;
    return 0;
}

static int full(const files_list_ctx *c)
{
    /* without sorting, the first `limit` files found are the answer */
    return !c->sort && c->limit > 0 && c->n >= (size_t)c->limit;
}

/* Returns 1 if the directory was not entered before (and records it), 0 if
 * it was, -1 on OOM. An open-addressing hash set keyed by (dev, inode):
 * datasets can hold tens of thousands of directories. */
static int first_visit(files_list_ctx *c, const struct stat *st)
{
    if (2 * (c->n_seen + 1) > c->cap_seen) {
        size_t cap = c->cap_seen ? 2 * c->cap_seen : 64;
        dir_id *tab = calloc(cap, sizeof *tab);
        if (!tab)
            return -1;
        for (size_t i = 0; i < c->cap_seen; i++) {
            if (!c->seen[i].ino)
                continue;
            size_t h = ((size_t)c->seen[i].ino * 0x9E3779B97F4A7C15ULL ^
                        (size_t)c->seen[i].dev) & (cap - 1);
            while (tab[h].ino)
                h = (h + 1) & (cap - 1);
            tab[h] = c->seen[i];
        }
        free(c->seen);
        c->seen = tab;
        c->cap_seen = cap;
    }
    size_t h = ((size_t)st->st_ino * 0x9E3779B97F4A7C15ULL ^ (size_t)st->st_dev) &
               (c->cap_seen - 1);
    /* inode 0 marks an empty slot; no directory has it on Linux filesystems */
    for (; c->seen[h].ino; h = (h + 1) & (c->cap_seen - 1))
        if (c->seen[h].ino == st->st_ino && c->seen[h].dev == st->st_dev)
            return 0;
    c->seen[h] = (dir_id){ st->st_dev, st->st_ino };
    c->n_seen++;
    return 1;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *s = malloc(a + slash + b + 1);
    if (s) {
        memcpy(s, dir, a);
        if (slash)
            s[a] = '/';
        memcpy(s + a + slash, name, b + 1);
    }
    return s;
}

static int walk(dsp_node *node, files_list_ctx *c, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        /* the top directory was checked in init; a subdirectory we cannot
         * read is reported and skipped rather than failing the whole list */
        dsp_node_log(node, DSP_LOG_WARNING, "%s: cannot read directory: %s; skipped",
                     dir, strerror(errno));
        return 0;
    }
    int err = 0;
    struct dirent *de;
    while (!err && !full(c) && (de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (!c->hidden && name[0] == '.')
            continue;
        char *path = join(dir, name);
        if (!path) {
            err = DSP_ENOMEM;
            break;
        }
        struct stat st;
        /* stat follows symlinks: linked files are listed like files, linked
         * directories entered once (first_visit breaks loops) */
        if (stat(path, &st) != 0) {
            dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %s; skipped", path,
                         strerror(errno));
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int fv = c->recursive ? first_visit(c, &st) : 0;
            if (fv < 0)
                err = DSP_ENOMEM;
            else if (fv > 0)
                err = walk(node, c, path);
            free(path);
        } else if (S_ISREG(st.st_mode) && fnmatch(c->glob, name, 0) == 0) {
            err = add_path(c, path);
        } else {
            free(path);
        }
    }
    closedir(d);
    return err;
}

static int read_list(dsp_node *node, files_list_ctx *c)
{
    FILE *fp = fopen(c->list, "r");
    if (!fp)
        return dsp_node_fail(node, errno == ENOENT ? DSP_ENOENT : DSP_EIO,
                             "list file '%s': %s", c->list, strerror(errno));
    /* relative entries are relative to the list file's directory */
    char *base = strdup(c->list);
    if (!base) {
        fclose(fp);
        return DSP_ENOMEM;
    }
    char *sl = strrchr(base, '/');
    if (sl)
        sl[1] = '\0';
    else
        base[0] = '\0';

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int err = 0;
    while (!err && !full(c) && (len = getline(&line, &cap, fp)) >= 0) {
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                           line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        if (!*s || *s == '#')
            continue;
        const char *name = strrchr(s, '/');
        name = name ? name + 1 : s;
        if (fnmatch(c->glob, name, 0) != 0)
            continue;
        char *path = s[0] == '/' || !base[0] ? strdup(s) : join(base, s);
        err = path ? add_path(c, path) : DSP_ENOMEM;
    }
    if (!err && ferror(fp))
        err = dsp_node_fail(node, DSP_EIO, "list file '%s': read error: %s",
                            c->list, strerror(errno));
    free(line);
    free(base);
    fclose(fp);
    return err;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int files_list_init(dsp_node *node)
{
    files_list_ctx *c = dsp_node_priv(node);
    int have_dir = c->dir && c->dir[0], have_list = c->list && c->list[0];
    if (have_dir == have_list)
        return dsp_node_fail(node, DSP_EINVAL,
                             "give exactly one of dir=DIR (list a directory) and "
                             "list=FILE (a text file of paths)%s",
                             have_dir ? "; both were given" : "");
    int err;
    if (have_dir) {
        struct stat st;
        if (stat(c->dir, &st) != 0)
            return dsp_node_fail(node, errno == ENOENT ? DSP_ENOENT : DSP_EIO,
                                 "dir '%s': %s; check the path (relative paths "
                                 "are relative to the current directory)",
                                 c->dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return dsp_node_fail(node, DSP_EINVAL,
                                 "dir '%s' is not a directory; to read paths from "
                                 "a text file use list=%s", c->dir, c->dir);
        if (first_visit(c, &st) < 0)
            return DSP_ENOMEM;
        err = walk(node, c, c->dir);
    } else {
        err = read_list(node, c);
    }
    if (err < 0)
        return err == DSP_ENOMEM ? dsp_node_fail(node, err, "out of memory") : err;

    if (c->sort && c->n > 1)
        qsort(c->paths, c->n, sizeof *c->paths, cmp_path);
    if (c->limit > 0 && c->n > (size_t)c->limit) {
        for (size_t i = (size_t)c->limit; i < c->n; i++)
            free(c->paths[i]);
        c->n = (size_t)c->limit;
    }
    if (c->n == 0)
        dsp_node_log(node, DSP_LOG_WARNING, "no files match glob '%s' in %s '%s'",
                     c->glob, have_dir ? "dir" : "list", have_dir ? c->dir : c->list);
    else
        dsp_node_log(node, DSP_LOG_VERBOSE, "%zu files", c->n);
    return 0;
}

static int files_list_process(dsp_node *node, dsp_packet **in)
{
    files_list_ctx *c = dsp_node_priv(node);
    (void)in;
    if (c->next >= c->n || dsp_node_stopping(node))
        return DSP_EOF;
    const char *path = c->paths[c->next++];
    dsp_packet *p = dsp_node_packet_new(node);
    if (!p)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    dsp_meta *m = dsp_packet_meta(p);
    int err = dsp_meta_set_str(m, "path", path);
    if (!err)
        err = dsp_meta_set_str(m, "name", name);
    if (!err)
        err = dsp_meta_set_str(m, "source", path);
    if (!err)
        err = dsp_meta_set_int(m, "index", dsp_packet_item(p));
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "%s: cannot set metadata: %s", path,
                             dsp_strerror(err));
    }
    dsp_node_progress(node, (int64_t)c->next, (int64_t)c->n);
    return dsp_node_emit(node, 0, p);
}

static void files_list_fini(dsp_node *node)
{
    files_list_ctx *c = dsp_node_priv(node);
    for (size_t i = 0; i < c->n; i++)
        free(c->paths[i]);
    free(c->paths);
    free(c->seen);
    c->paths = NULL;
    c->seen = NULL;
    c->n = c->n_seen = 0;
}

const dsp_op_def builtin_files_list_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "files.list",
    .doc = "list the files of a directory tree or a list file, one record each",
    .outputs = files_list_out,
    .params = files_list_params,
    .priv_size = sizeof(files_list_ctx),
    .flags = DSP_OP_SOURCE,
    .init = files_list_init,
    .process = files_list_process,
    .fini = files_list_fini,
};
