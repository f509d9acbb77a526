/* files.c - dsp_list_files: the files of a directory tree or a list file, for source operators (files.list, dicom.studies). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct lister {
    const dsp_file_list_opts *o;
    const char *glob;
    char **paths;
    size_t n, cap;
    dir_id *seen;               /* hash set of directories entered, so
                                   symlink loops end */
    size_t n_seen, cap_seen;
} lister;

static int add_path(lister *l, char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (!p) {
            free(path);
            return DSP_ENOMEM;
        }
        l->paths = p;
        l->cap = cap;
    }
    l->paths[l->n++] = path;
    return 0;
}

static int full(const lister *l)
{
    /* without sorting, the first `limit` files found are the answer */
    return !l->o->sort && l->o->limit > 0 && l->n >= (size_t)l->o->limit;
}

/* Returns 1 if the directory was not entered before (and records it), 0 if
 * it was, -1 on OOM. An open-addressing hash set keyed by (dev, inode):
 * datasets can hold tens of thousands of directories. */
static int first_visit(lister *l, const struct stat *st)
{
    if (2 * (l->n_seen + 1) > l->cap_seen) {
        size_t cap = l->cap_seen ? 2 * l->cap_seen : 64;
        dir_id *tab = calloc(cap, sizeof *tab);
        if (!tab)
            return -1;
        for (size_t i = 0; i < l->cap_seen; i++) {
            if (!l->seen[i].ino)
                continue;
            size_t h = ((size_t)l->seen[i].ino * 0x9E3779B97F4A7C15ULL ^
                        (size_t)l->seen[i].dev) & (cap - 1);
            while (tab[h].ino)
                h = (h + 1) & (cap - 1);
            tab[h] = l->seen[i];
        }
        free(l->seen);
        l->seen = tab;
        l->cap_seen = cap;
    }
    size_t h = ((size_t)st->st_ino * 0x9E3779B97F4A7C15ULL ^ (size_t)st->st_dev) &
               (l->cap_seen - 1);
    /* inode 0 marks an empty slot; no directory has it on Linux filesystems */
    for (; l->seen[h].ino; h = (h + 1) & (l->cap_seen - 1))
        if (l->seen[h].ino == st->st_ino && l->seen[h].dev == st->st_dev)
            return 0;
    l->seen[h] = (dir_id){ st->st_dev, st->st_ino };
    l->n_seen++;
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

static int walk(dsp_node *node, lister *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        /* the top directory was checked first; a subdirectory we cannot
         * read is reported and skipped rather than failing the whole list */
        dsp_node_log(node, DSP_LOG_WARNING, "%s: cannot read directory: %s; skipped",
                     dir, strerror(errno));
        return 0;
    }
    int err = 0;
    struct dirent *de;
    while (!err && !full(l) && (de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (!l->o->hidden && name[0] == '.')
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
            int fv = l->o->recursive ? first_visit(l, &st) : 0;
            if (fv < 0)
                err = DSP_ENOMEM;
            else if (fv > 0)
                err = walk(node, l, path);
            free(path);
        } else if (S_ISREG(st.st_mode) && fnmatch(l->glob, name, 0) == 0) {
            err = add_path(l, path);
        } else {
            free(path);
        }
    }
    closedir(d);
    return err;
}

static int read_list(dsp_node *node, lister *l)
{
    const char *list = l->o->list;
    FILE *fp = fopen(list, "r");
    if (!fp)
        return dsp_node_fail(node, errno == ENOENT ? DSP_ENOENT : DSP_EIO,
                             "list file '%s': %s", list, strerror(errno));
    /* relative entries are relative to the list file's directory */
    char *base = strdup(list);
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
    while (!err && !full(l) && (len = getline(&line, &cap, fp)) >= 0) {
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
        if (fnmatch(l->glob, name, 0) != 0)
            continue;
        char *path = s[0] == '/' || !base[0] ? strdup(s) : join(base, s);
        err = path ? add_path(l, path) : DSP_ENOMEM;
    }
    if (!err && ferror(fp))
        err = dsp_node_fail(node, DSP_EIO, "list file '%s': read error: %s",
                            list, strerror(errno));
    free(line);
    free(base);
    fclose(fp);
    return err;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(dsp_node *node, lister *l)
{
    const char *dir = l->o->dir;
    struct stat st;
    if (stat(dir, &st) != 0)
        return dsp_node_fail(node, errno == ENOENT ? DSP_ENOENT : DSP_EIO,
                             "dir '%s': %s; check the path (relative paths "
                             "are relative to the current directory)", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return dsp_node_fail(node, DSP_EINVAL, "dir '%s' is not a directory; to read paths "
                             "from a text file use list=%s", dir, dir);
    if (first_visit(l, &st) < 0)
        return DSP_ENOMEM;
    return walk(node, l, dir);
}

int dsp_list_files(dsp_node *node, const dsp_file_list_opts *o, char ***paths, size_t *n)
{
    *paths = NULL;
    *n = 0;
    int have_dir = o->dir && o->dir[0], have_list = o->list && o->list[0];
    if (have_dir == have_list)
        return dsp_node_fail(node, DSP_EINVAL,
                             "give exactly one of dir=DIR (list a directory) and "
                             "list=FILE (a text file of paths)%s",
                             have_dir ? "; both were given" : "");
    lister l = { .o = o, .glob = o->glob && o->glob[0] ? o->glob : "*" };
    int err = have_dir ? list_dir(node, &l) : read_list(node, &l);
    free(l.seen);
    if (err < 0) {
        dsp_list_files_free(&l.paths, l.n);
        return err == DSP_ENOMEM ? dsp_node_fail(node, err, "out of memory") : err;
    }
    if (o->sort && l.n > 1)
        qsort(l.paths, l.n, sizeof *l.paths, cmp_path);
    if (o->limit > 0 && l.n > (size_t)o->limit) {
        for (size_t i = (size_t)o->limit; i < l.n; i++)
            free(l.paths[i]);
        l.n = (size_t)o->limit;
    }
    if (l.n == 0)
        dsp_node_log(node, DSP_LOG_WARNING, "no files match glob '%s' in %s '%s'",
                     l.glob, have_dir ? "dir" : "list", have_dir ? o->dir : o->list);
    else
        dsp_node_log(node, DSP_LOG_VERBOSE, "%zu files", l.n);
    *paths = l.paths;
    *n = l.n;
    return 0;
}

void dsp_list_files_free(char ***paths, size_t n)
{
    if (!paths || !*paths)
        return;
    for (size_t i = 0; i < n; i++)
        free((*paths)[i]);
    free(*paths);
    *paths = NULL;
}
