/* outfile.c - atomic output files: write to a temporary file beside the target, rename on commit. */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct dsp_outfile {
    FILE *fp;
    char *path;
    char *tmp;
};

/* mkdir -p for the directory part of path */
static int make_parent_dirs(const char *path)
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

int dsp_outfile_open(dsp_node *node, const char *path, dsp_outfile **out)
{
    dsp_outfile *f;
    dspi_str tmp = { 0 };
    char *dir_copy, *base_copy;
    mode_t mask;
    int fd, e;

    *out = NULL;
    if (!path || !*path)
        return dsp_node_fail(node, DSP_EINVAL, "empty output path");
    if ((e = make_parent_dirs(path)))
        return dsp_node_fail(node, DSP_EIO, "%s: cannot create its directory: %s", path,
                             strerror(e));
    if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(path)) ||
        !(dir_copy = strdup(path))) {
        if (f)
            free(f->path);
        free(f);
        return DSP_ENOMEM;
    }
    if (!(base_copy = strdup(path))) {
        free(dir_copy);
        free(f->path);
        free(f);
        return DSP_ENOMEM;
    }
    /* hidden, in the same directory: rename() stays atomic (same filesystem) */
    dspi_str_printf(&tmp, "%s/.%s.tmp-XXXXXX", dirname(dir_copy), basename(base_copy));
    free(dir_copy);
    free(base_copy);
    if (tmp.oom) {
        dspi_str_free(&tmp);
        free(f->path);
        free(f);
        return DSP_ENOMEM;
    }
    f->tmp = dspi_str_take(&tmp);
    if ((fd = mkstemp(f->tmp)) < 0) {
        e = errno;
        dsp_node_fail(node, DSP_EIO, "%s: cannot create a file there: %s", path, strerror(e));
        free(f->tmp);
        free(f->path);
        free(f);
        return DSP_EIO;
    }
    /* mkstemp makes 0600; outputs get the usual permissions */
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) < 0)
        dsp_node_log(node, DSP_LOG_VERBOSE, "%s: fchmod: %s", f->tmp, strerror(errno));
    if (!(f->fp = fdopen(fd, "wb"))) {
        close(fd);
        unlink(f->tmp);
        free(f->tmp);
        free(f->path);
        free(f);
        return DSP_ENOMEM;
    }
    *out = f;
    return 0;
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

int dsp_outfile_commit(dsp_node *node, dsp_outfile **pf)
{
    dsp_outfile *f = pf ? *pf : NULL;
    int e = 0;
    const char *what = "write";

    if (!f)
        return DSP_EINVAL;
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
        dsp_node_fail(node, DSP_EIO, "%s: %s failed: %s (nothing was written)", f->path,
                      what, strerror(e));
        outfile_free(pf);
        return DSP_EIO;
    }
    outfile_free(pf);
    return 0;
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
