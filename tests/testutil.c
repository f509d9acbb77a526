/* testutil.c - small file-system helpers shared by the test programs. */
#define _GNU_SOURCE           /* mkdtemp */
#include <dirent.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

void tu_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char p[4096];
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tu_remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

char *tu_make_tmpdir(char *buf, size_t n, const char *tag)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/dsp_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    return mkdtemp(buf);
}

static char *next_buf(void)
{
    static char buf[8][1024];
    static int k;
    return buf[k++ & 7];
}

const char *tu_join(const char *dir, const char *name)
{
    char *p = next_buf();
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

const char *tu_fixture(const char *subdir, const char *name)
{
    const char *src = getenv("TESTS_SRCDIR");
    char *p = next_buf();
    snprintf(p, 1024, "%s/data/%s/%s", src && *src ? src : ".", subdir, name);
    return p;
}

int tu_copy_file(const char *src, const char *dst, long max_bytes)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", dst);
    for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(dir, 0755);
        *p = '/';
    }
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    long total = 0;
    size_t n;
    int ok = in && out;
    while (ok && (max_bytes < 0 || total < max_bytes) && (n = fread(buf, 1, sizeof buf, in))) {
        if (max_bytes >= 0 && total + (long)n > max_bytes)
            n = (size_t)(max_bytes - total);
        ok = fwrite(buf, 1, n, out) == n;
        total += (long)n;
    }
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}
