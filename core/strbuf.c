/* strbuf.c - dspi_str, the growable string used to build messages and dumps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Room for len + extra + NUL. On failure the string keeps what it had and
 * remembers the failure, so callers can append freely and check once. */
static int str_reserve(dspi_str *b, size_t extra)
{
    size_t need, cap;
    char *s;

    if (b->oom)
        return -1;
    if (extra > SIZE_MAX - b->len - 1)
        goto fail;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    s = realloc(b->s, cap);
    if (!s)
        goto fail;
    if (!b->s)
        s[0] = '\0';
    b->s = s;
    b->cap = cap;
    return 0;

fail:
    b->oom = 1;
    return -1;
}

void dspi_str_appendn(dspi_str *b, const char *s, size_t n)
{
    if (str_reserve(b, n) < 0)
        return;
    if (n)
        memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void dspi_str_append(dspi_str *b, const char *s)
{
    dspi_str_appendn(b, s ? s : "(null)", strlen(s ? s : "(null)"));
}

void dspi_str_vprintf(dspi_str *b, const char *fmt, va_list ap)
{
    va_list aq;
    size_t room;
    int n;

    if (str_reserve(b, 0) < 0)
        return;
    room = b->cap - b->len;
    va_copy(aq, ap);
    n = vsnprintf(b->s + b->len, room, fmt, aq);
    va_end(aq);
    if (n < 0) {
        b->s[b->len] = '\0';
        return;
    }
    if ((size_t)n >= room) {
        if (str_reserve(b, (size_t)n) < 0) {
            b->s[b->len] = '\0';
            return;
        }
        va_copy(aq, ap);
        vsnprintf(b->s + b->len, (size_t)n + 1, fmt, aq);
        va_end(aq);
    }
    b->len += (size_t)n;
}

void dspi_str_printf(dspi_str *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    dspi_str_vprintf(b, fmt, ap);
    va_end(ap);
}

char *dspi_str_take(dspi_str *b)
{
    char *s = b->s;

    if (!s) {
        s = malloc(1);
        if (s)
            s[0] = '\0';
    }
    b->s = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
    return s;
}

void dspi_str_free(dspi_str *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

char *dspi_fmt(const char *fmt, ...)
{
    dspi_str b = { 0 };
    va_list ap;

    va_start(ap, fmt);
    dspi_str_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.oom) {
        dspi_str_free(&b);
        return NULL;
    }
    return dspi_str_take(&b);
}
