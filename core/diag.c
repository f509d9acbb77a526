/* diag.c - a .pipe file's diagnostics: collected, then rendered with source line and caret. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

/* Beyond this many errors the rest of the file is probably noise. */
#define MAX_SHOWN 20

/* ---- message text ------------------------------------------------------- */

char *dspi_join_names(const char *const *names, int n)
{
    dspi_str b = { 0 };

    for (int k = 0; k < n; k++)
        dspi_str_printf(&b, "%s%s", k ? ", " : "", names[k]);
    return dspi_str_take(&b);
}

void dspi_diag_add(dspi_pfile *pf, dspi_span at, char *hint, const char *fmt, ...)
{
    dspi_diag *d;
    va_list ap;
    dspi_str b = { 0 };

    if (dspi_pfile_grow(pf, (void **)&pf->diags, pf->n_diags, sizeof(*pf->diags)) < 0) {
        free(hint);
        return;
    }
    va_start(ap, fmt);
    dspi_str_vprintf(&b, fmt, ap);
    va_end(ap);
    d = &pf->diags[pf->n_diags];
    d->at = at;
    d->msg = dspi_str_take(&b);
    d->hint = hint;
    d->seq = pf->n_diags++;
    if (!d->msg)
        pf->oom = 1;
}

/* ---- rendering --------------------------------------------------------- */

static int cmp_diag(const void *a, const void *b)
{
    const dspi_diag *x = *(dspi_diag *const *)a, *y = *(dspi_diag *const *)b;

    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    if (x->at.col != y->at.col)
        return x->at.col < y->at.col ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The source line and a caret under the span; tabs are copied into the
 * padding so the caret lines up however the terminal expands them. */
static void render_source(const dspi_pfile *pf, dspi_span at, dspi_str *out)
{
    const char *line, *end;
    int width, len;

    if (at.line < 1 || at.line > pf->n_lines)
        return;
    line = pf->text + pf->line_off[at.line - 1];
    for (end = line; *end && *end != '\n'; end++)
        ;
    if (end > line && end[-1] == '\r')
        end--;
    width = (int)(end - line);
    dspi_str_printf(out, "%4d | %.*s\n     | ", at.line, width, line);
    for (int k = 0; k < at.col - 1; k++)
        dspi_str_append(out, k < width && line[k] == '\t' ? "\t" : " ");
    len = at.len < 1 ? 1 : at.len;
    if (at.col - 1 + len > width)
        len = DSPI_MAX(1, width - (at.col - 1));
    dspi_str_append(out, "^");
    for (int k = 1; k < len; k++)
        dspi_str_append(out, "~");
    dspi_str_append(out, "\n");
}

char *dspi_pfile_render(const dspi_pfile *pf)
{
    const dspi_diag **order;
    dspi_str out = { 0 };
    int shown;

    if (!(order = malloc((size_t)(pf->n_diags ? pf->n_diags : 1) * sizeof(*order))))
        return NULL;
    for (int k = 0; k < pf->n_diags; k++)
        order[k] = &pf->diags[k];
    qsort(order, (size_t)pf->n_diags, sizeof(*order), cmp_diag);
    shown = DSPI_MIN(pf->n_diags, MAX_SHOWN);
    for (int k = 0; k < shown; k++) {
        const dspi_diag *d = order[k];
        if (d->at.line > 0)
            dspi_str_printf(&out, "%s:%d:%d: error: %s\n", pf->path,
                            d->at.line, d->at.col, d->msg ? d->msg : "");
        else
            dspi_str_printf(&out, "%s: error: %s\n", pf->path,
                            d->msg ? d->msg : "");
        render_source(pf, d->at, &out);
        if (d->hint)
            dspi_str_printf(&out, "hint: %s\n", d->hint);
    }
    if (pf->n_diags > shown)
        dspi_str_printf(&out, "%s: error: too many errors; %d more not shown\n",
                        pf->path, pf->n_diags - shown);
    free(order);
    if (out.oom) {
        dspi_str_free(&out);
        return NULL;
    }
    return dspi_str_take(&out);
}
