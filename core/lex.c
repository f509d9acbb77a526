/* lex.c - the .pipe lexer: blanks, line joins, identifiers and values ($refs, strings, lists). */
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

char dspi_lex_cur(const dspi_lexer *lx)
{
    return lx->s[lx->pos];
}

char dspi_lex_ahead(const dspi_lexer *lx, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (!lx->s[lx->pos + i])
            return '\0';
    return lx->s[lx->pos + k];
}

void dspi_lex_advance(dspi_lexer *lx)
{
    if (!lx->s[lx->pos])
        return;
    if (lx->s[lx->pos] == '\n') {
        lx->line++;
        lx->col = 1;
    } else {
        lx->col++;
    }
    lx->pos++;
}

dspi_span dspi_lex_here(const dspi_lexer *lx, int len)
{
    dspi_span sp = { lx->line, lx->col, len };
    return sp;
}

/* A '\' with only blanks after it before the end of the line joins lines. */
static int at_continuation(const dspi_lexer *lx)
{
    size_t p = lx->pos;

    if (lx->s[p] != '\\')
        return 0;
    for (p++; lx->s[p] == ' ' || lx->s[p] == '\t' || lx->s[p] == '\r'; p++)
        ;
    return lx->s[p] == '\n' || lx->s[p] == '\0';
}

void dspi_lex_skip_ws(dspi_lexer *lx)
{
    for (;;) {
        char c = dspi_lex_cur(lx);
        if (c == ' ' || c == '\t' || c == '\r') {
            dspi_lex_advance(lx);
        } else if (at_continuation(lx)) {
            while (dspi_lex_cur(lx) != '\n' && dspi_lex_cur(lx))
                dspi_lex_advance(lx);
            dspi_lex_advance(lx);
        } else {
            return;
        }
    }
}

int dspi_lex_at_stmt_end(const dspi_lexer *lx)
{
    char c = dspi_lex_cur(lx);
    return c == '\0' || c == '\n' || c == '#' || c == ';';
}

int dspi_is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(char c)
{
    return dspi_is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Skip the rest of the statement's logical line, after an error. */
void dspi_lex_recover(dspi_lexer *lx)
{
    while (dspi_lex_cur(lx) && dspi_lex_cur(lx) != '\n') {
        if (at_continuation(lx)) {
            while (dspi_lex_cur(lx) != '\n' && dspi_lex_cur(lx))
                dspi_lex_advance(lx);
        }
        dspi_lex_advance(lx);
    }
}

char *dspi_lex_ident(dspi_lexer *lx, dspi_span *at)
{
    size_t start = lx->pos;

    *at = dspi_lex_here(lx, 0);
    while (is_ident_char(dspi_lex_cur(lx)))
        dspi_lex_advance(lx);
    at->len = (int)(lx->pos - start);
    return dspi_pfile_strndup(lx->pf, lx->s + start, lx->pos - start);
}

/* "dicom.series": identifiers joined by dots. */
char *dspi_lex_opname(dspi_lexer *lx, dspi_span *at)
{
    size_t start = lx->pos;

    *at = dspi_lex_here(lx, 0);
    while (is_ident_char(dspi_lex_cur(lx)) ||
           (dspi_lex_cur(lx) == '.' && dspi_is_ident_start(dspi_lex_ahead(lx, 1))))
        dspi_lex_advance(lx);
    at->len = (int)(lx->pos - start);
    return dspi_pfile_strndup(lx->pf, lx->s + start, lx->pos - start);
}

const char *dspi_lex_printable(char c, char *buf)
{
    if (c == '\0')
        return "end of file";
    if (c == '\n')
        return "end of line";
    buf[0] = '\'';
    buf[1] = c;
    buf[2] = '\'';
    buf[3] = '\0';
    return buf;
}

/* ---- values ---------------------------------------------------------------- */

/* After a '$': a reference, or "$$". Returns 0 or -1 (reported). */
static int read_ref(dspi_lexer *lx, dspi_pitem *it, dspi_str *raw)
{
    dspi_span at = dspi_lex_here(lx, 1);
    size_t start = lx->pos;
    int braced;
    dspi_pref *r;
    char *name;
    dspi_span nat;

    dspi_lex_advance(lx);               /* '$' */
    if (dspi_lex_cur(lx) == '$') {
        dspi_lex_advance(lx);
        dspi_str_append(raw, "$");
        return 0;
    }
    braced = dspi_lex_cur(lx) == '{';
    if (braced)
        dspi_lex_advance(lx);
    if (!dspi_is_ident_start(dspi_lex_cur(lx))) {
        dspi_diag_add(lx->pf, at, dspi_fmt("write $name or ${name}; $$ is a "
                                           "literal '$'"),
                      "'$' is not followed by a name");
        return -1;
    }
    name = dspi_lex_ident(lx, &nat);
    if (braced) {
        if (dspi_lex_cur(lx) != '}') {
            at.len = (int)(lx->pos - start);
            dspi_diag_add(lx->pf, at, dspi_fmt("close it: ${%s}", name ? name : ""),
                          "unterminated '${'");
            free(name);
            return -1;
        }
        dspi_lex_advance(lx);
    }
    at.len = (int)(lx->pos - start);
    if (!name ||
        dspi_pfile_grow(lx->pf, (void **)&it->refs, it->n_refs, sizeof(*it->refs)) < 0) {
        free(name);
        return -1;
    }
    r = &it->refs[it->n_refs++];
    r->name = name;
    r->off = raw->len;
    r->at = at;
    return 0;
}

/* A double-quoted string. Returns 0 or -1 (reported). */
static int read_quoted(dspi_lexer *lx, dspi_pitem *it, dspi_str *raw)
{
    dspi_span open = dspi_lex_here(lx, 1);

    dspi_lex_advance(lx);
    for (;;) {
        char c = dspi_lex_cur(lx);
        if (c == '"') {
            dspi_lex_advance(lx);
            return 0;
        }
        if (c == '\0' || c == '\n') {
            dspi_diag_add(lx->pf, open, dspi_fmt("close it with '\"' on the "
                                                 "same line"),
                          "unterminated string");
            return -1;
        }
        if (c == '$') {
            if (read_ref(lx, it, raw) < 0)
                return -1;
            continue;
        }
        if (c == '\\') {
            dspi_span esc = dspi_lex_here(lx, 2);
            char e = dspi_lex_ahead(lx, 1);
            const char *out = e == '"' ? "\"" : e == '\\' ? "\\"
                            : e == 'n' ? "\n" : e == 't' ? "\t" : NULL;
            if (!out) {
                dspi_diag_add(lx->pf, esc, dspi_fmt("known escapes: \\\" \\\\ "
                                                    "\\n \\t"),
                              "unknown escape '\\%c' in a string",
                              e && e != '\n' ? e : ' ');
                return -1;
            }
            dspi_lex_advance(lx);
            dspi_lex_advance(lx);
            dspi_str_append(raw, out);
            continue;
        }
        dspi_str_appendn(raw, &c, 1);
        dspi_lex_advance(lx);
    }
}

/* One value or list element into *it. in_list makes ',' and ']' end a
 * bare word. Returns 0 or -1 (reported). */
static int read_item(dspi_lexer *lx, dspi_pitem *it, int in_list)
{
    dspi_str raw = { 0 };
    size_t start = lx->pos;
    int ret = 0;

    memset(it, 0, sizeof(*it));
    it->at = dspi_lex_here(lx, 0);
    if (dspi_lex_cur(lx) == '"') {
        ret = read_quoted(lx, it, &raw);
    } else {
        for (;;) {
            char c = dspi_lex_cur(lx);
            if (c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
                c == '#' || c == ';' || at_continuation(lx) ||
                (in_list && (c == ',' || c == ']' || c == '[')))
                break;
            if (c == '$') {
                if ((ret = read_ref(lx, it, &raw)) < 0)
                    break;
                continue;
            }
            dspi_str_appendn(&raw, &c, 1);
            dspi_lex_advance(lx);
        }
    }
    it->at.len = (int)(lx->pos - start);
    if (raw.oom)
        lx->pf->oom = 1;
    it->raw = dspi_str_take(&raw);
    if (!it->raw)
        lx->pf->oom = 1;
    return ret;
}

/* A value: quoted, bare or [list]. Returns 0 or -1 (reported). */
int dspi_lex_value(dspi_lexer *lx, dspi_pval *v, const char *what)
{
    dspi_span open = dspi_lex_here(lx, 1);
    size_t start = lx->pos;
    char buf[4];

    memset(v, 0, sizeof(*v));
    v->at = open;
    if (dspi_lex_at_stmt_end(lx)) {
        dspi_diag_add(lx->pf, open, dspi_fmt("write %s=\"\" for an empty value",
                                             what),
                      "missing value for '%s'", what);
        return -1;
    }
    if (dspi_lex_cur(lx) != '[') {
        if (dspi_pfile_grow(lx->pf, (void **)&v->items, 0, sizeof(*v->items)) < 0)
            return -1;
        v->n = 1;
        if (read_item(lx, &v->items[0], 0) < 0)
            return -1;
        v->at = v->items[0].at;
        return 0;
    }
    v->is_list = 1;
    dspi_lex_advance(lx);
    dspi_lex_skip_ws(lx);
    while (dspi_lex_cur(lx) != ']') {
        if (dspi_lex_at_stmt_end(lx)) {
            dspi_diag_add(lx->pf, open, dspi_fmt("close it with ']', or end "
                                                 "the line with '\\' to go on"),
                          "unterminated list");
            return -1;
        }
        if (dspi_pfile_grow(lx->pf, (void **)&v->items, v->n, sizeof(*v->items)) < 0)
            return -1;
        if (read_item(lx, &v->items[v->n++], 1) < 0)
            return -1;
        dspi_lex_skip_ws(lx);
        if (dspi_lex_cur(lx) == ',') {
            dspi_lex_advance(lx);
            dspi_lex_skip_ws(lx);
        } else if (dspi_lex_cur(lx) != ']' && !dspi_lex_at_stmt_end(lx)) {
            dspi_diag_add(lx->pf, dspi_lex_here(lx, 1), NULL,
                          "expected ',' or ']' in the list, not %s",
                          dspi_lex_printable(dspi_lex_cur(lx), buf));
            return -1;
        }
    }
    dspi_lex_advance(lx);
    v->at.len = (int)(lx->pos - start);
    return 0;
}

