/* outfile.c - atomic output files: write to a temporary file beside the target, rename on commit. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scheduler.h"

struct dsp_outfile {
    FILE *fp;
    char *path;
    char *tmp;
};

int dspi_make_parent_dirs(const char *path)
{
    char *copy = strdup(path);
    int err = 0;

    if (!copy)
        return ENOMEM;
    for (char *s = copy + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(copy, 0777) < 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        *s = '/';
    }
    free(copy);
    return err;
}

/* Like mkstemp, but created 0666 so the process umask applies (mkstemp
 * makes 0600, and changing the umask to restore it would race with other
 * threads creating files). The last XXXXXX of tmpl is replaced. */
static int open_unique(char *tmpl)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_uint counter;
    char *x = strstr(tmpl, "XXXXXX"), *next;

    /* the last run of X's (a directory may contain some too) */
    while (x && (next = strstr(x + 1, "XXXXXX")))
        x = next;
    if (!x) {
        errno = EINVAL;
        return -1;
    }

    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t v = (uint64_t)getpid() * 2654435761u ^ (uint64_t)dspi_now_ns() ^
                     ((uint64_t)atomic_fetch_add(&counter, 1) << 32);
        int fd;
        for (int i = 0; i < 6; i++, v /= 62)
            x[i] = chars[v % 62];
        fd = open(tmpl, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

static char *errstr(const char *fmt, const char *path, const char *what, int e)
{
    dspi_str b = { 0 };
    dspi_str_printf(&b, fmt, path, what, strerror(e));
    return dspi_str_take(&b);
}

int dspi_outfile_open(const char *path, dsp_outfile **out, char **errmsg)
{
    dsp_outfile *f;
    dspi_str tmp = { 0 };
    const char *slash;
    int fd, e;

    *out = NULL;
    *errmsg = NULL;
    if (!path || !*path) {
        *errmsg = strdup("empty output path");
        return DSP_EINVAL;
    }
    if ((e = dspi_make_parent_dirs(path))) {
        *errmsg = errstr("%s: cannot create its %s: %s", path, "directory", e);
        return e == ENOMEM ? DSP_ENOMEM : DSP_EIO;
    }
    if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(path))) {
        free(f);
        return DSP_ENOMEM;
    }
    /* hidden, in the same directory: rename() stays atomic (same
     * filesystem) and a directory listing never picks up a partial file */
    slash = strrchr(path, '/');
    /* a name near NAME_MAX (255) has no room for the decoration: then a
     * short hidden name in the same directory */
    if (strlen(slash ? slash + 1 : path) > 200)
        dspi_str_printf(&tmp, "%.*s.dsp-XXXXXX.tmp", slash ? (int)(slash - path + 1) : 0, path);
    else
        dspi_str_printf(&tmp, "%.*s.%s.tmp-XXXXXX", slash ? (int)(slash - path + 1) : 0, path,
                        slash ? slash + 1 : path);
    if (tmp.oom) {
        dspi_str_free(&tmp);
        free(f->path);
        free(f);
        return DSP_ENOMEM;
    }
    f->tmp = dspi_str_take(&tmp);
    if ((fd = open_unique(f->tmp)) < 0 || !(f->fp = fdopen(fd, "wb"))) {
        e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(f->tmp);
        }
        *errmsg = errstr("%s: cannot create a %s beside it: %s", path, "temporary file", e);
        free(f->tmp);
        free(f->path);
        free(f);
        return DSP_EIO;
    }
    *out = f;
    return 0;
}

int dsp_outfile_open(dsp_node *node, const char *path, dsp_outfile **out)
{
    char *msg = NULL;
    int err = dspi_outfile_open(path, out, &msg);
    if (err < 0)
        dsp_node_fail(node, err, "%s", msg ? msg : dsp_strerror(err));
    free(msg);
    return err;
}

void *dsp_outfile_stream(dsp_outfile *f)
{
    return f->fp;
}

const char *dsp_outfile_path(const dsp_outfile *f)
{
    return f->path;
}

static void outfile_free(dsp_outfile **pf)
{
    dsp_outfile *f = *pf;
    free(f->tmp);
    free(f->path);
    free(f);
    *pf = NULL;
}

int dspi_outfile_commit(dsp_outfile **pf, char **errmsg)
{
    dsp_outfile *f = pf ? *pf : NULL;
    int e = 0;
    const char *what = "write";

    *errmsg = NULL;
    if (!f)
        return DSP_EINVAL;
    errno = 0;
    if (fflush(f->fp) != 0 || ferror(f->fp))
        e = errno ? errno : EIO;
    else if (fsync(fileno(f->fp)) < 0 && errno != EINVAL)
        e = errno, what = "fsync";
    if (fclose(f->fp) != 0 && !e)
        e = errno, what = "close";
    f->fp = NULL;
    if (!e && rename(f->tmp, f->path) < 0)
        e = errno, what = "rename";
    if (e) {
        unlink(f->tmp);
        *errmsg = errstr("%s: %s failed: %s (nothing was written)", f->path, what, e);
        outfile_free(pf);
        return DSP_EIO;
    }
    outfile_free(pf);
    return 0;
}

int dsp_outfile_commit(dsp_node *node, dsp_outfile **pf)
{
    char *msg = NULL;
    int err = dspi_outfile_commit(pf, &msg);
    if (err < 0)
        dsp_node_fail(node, err, "%s", msg ? msg : dsp_strerror(err));
    free(msg);
    return err;
}

void dsp_outfile_discard(dsp_outfile **pf)
{
    dsp_outfile *f = pf ? *pf : NULL;
    if (!f)
        return;
    if (f->fp)
        fclose(f->fp);
    unlink(f->tmp);
    outfile_free(pf);
}

size_t dsp_path_component(const char *s, char *out, size_t n)
{
    size_t k = 0;
    if (!n)
        return 0;
    for (; s && *s && k + 1 < n; s++)
        if (isalnum((unsigned char)*s) || *s == '.' || *s == '-' || *s == '_')
            out[k++] = *s;
    out[k] = '\0';
    if (!strcmp(out, ".") || !strcmp(out, "..")) {
        out[0] = '\0';
        k = 0;
    }
    return k;
}
