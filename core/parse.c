/* parse.c - the .pipe language: lexer, parser, argument binding, substitution and diagnostics. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

/* Beyond this many errors the rest of the file is probably noise. */
#define MAX_SHOWN 20

typedef struct lexer {
    dspi_pfile *pf;
    const char *s;
    size_t pos;
    int line, col;
} lexer;

/* ---- small helpers -------------------------------------------------------- */

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

char *dspi_join_names(const char *const *names, int n)
{
    dspi_str b = { 0 };

    for (int k = 0; k < n; k++)
        dspi_str_printf(&b, "%s%s", k ? ", " : "", names[k]);
    return dspi_str_take(&b);
}

/* Make room for one more element of size sz in *arr holding n. */
static int grow(dspi_pfile *pf, void **arr, int n, size_t sz)
{
    void *p;

    /* capacity doubles at powers of two, so no separate field is needed */
    if (n && (n & (n - 1)))
        return 0;
    p = realloc(*arr, (size_t)(n ? 2 * n : 4) * sz);
    if (!p) {
        pf->oom = 1;
        return -1;
    }
    *arr = p;
    return 0;
}

static char *dupn(dspi_pfile *pf, const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (!d) {
        pf->oom = 1;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void dspi_diag_add(dspi_pfile *pf, dspi_span at, char *hint, const char *fmt, ...)
{
    dspi_diag *d;
    va_list ap;
    dspi_str b = { 0 };

    if (grow(pf, (void **)&pf->diags, pf->n_diags, sizeof(*pf->diags)) < 0) {
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

/* ---- the lexer ------------------------------------------------------------ */

static char cur(const lexer *lx)
{
    return lx->s[lx->pos];
}

static char ahead(const lexer *lx, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (!lx->s[lx->pos + i])
            return '\0';
    return lx->s[lx->pos + k];
}

static void advance(lexer *lx)
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

static dspi_span here(const lexer *lx, int len)
{
    dspi_span sp = { lx->line, lx->col, len };
    return sp;
}

/* A '\' with only blanks after it before the end of the line joins lines. */
static int at_continuation(const lexer *lx)
{
    size_t p = lx->pos;

    if (lx->s[p] != '\\')
        return 0;
    for (p++; lx->s[p] == ' ' || lx->s[p] == '\t' || lx->s[p] == '\r'; p++)
        ;
    return lx->s[p] == '\n' || lx->s[p] == '\0';
}

static void skip_ws(lexer *lx)
{
    for (;;) {
        char c = cur(lx);
        if (c == ' ' || c == '\t' || c == '\r') {
            advance(lx);
        } else if (at_continuation(lx)) {
            while (cur(lx) != '\n' && cur(lx))
                advance(lx);
            advance(lx);
        } else {
            return;
        }
    }
}

static int at_stmt_end(const lexer *lx)
{
    char c = cur(lx);
    return c == '\0' || c == '\n' || c == '#' || c == ';';
}

static int is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Skip the rest of the statement's logical line, after an error. */
static void recover(lexer *lx)
{
    while (cur(lx) && cur(lx) != '\n') {
        if (at_continuation(lx)) {
            while (cur(lx) != '\n' && cur(lx))
                advance(lx);
        }
        advance(lx);
    }
}

static char *read_ident(lexer *lx, dspi_span *at)
{
    size_t start = lx->pos;

    *at = here(lx, 0);
    while (is_ident_char(cur(lx)))
        advance(lx);
    at->len = (int)(lx->pos - start);
    return dupn(lx->pf, lx->s + start, lx->pos - start);
}

/* "dicom.series": identifiers joined by dots. */
static char *read_opname(lexer *lx, dspi_span *at)
{
    size_t start = lx->pos;

    *at = here(lx, 0);
    while (is_ident_char(cur(lx)) ||
           (cur(lx) == '.' && is_ident_start(ahead(lx, 1))))
        advance(lx);
    at->len = (int)(lx->pos - start);
    return dupn(lx->pf, lx->s + start, lx->pos - start);
}

static const char *printable(char c, char *buf)
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

static void item_free(dspi_pitem *it)
{
    for (int k = 0; k < it->n_refs; k++)
        free(it->refs[k].name);
    free(it->refs);
    free(it->raw);
    free(it->text);
}

static void val_free(dspi_pval *v)
{
    for (int k = 0; k < v->n; k++)
        item_free(&v->items[k]);
    free(v->items);
    memset(v, 0, sizeof(*v));
}

/* After a '$': a reference, or "$$". Returns 0 or -1 (reported). */
static int read_ref(lexer *lx, dspi_pitem *it, dspi_str *raw)
{
    dspi_span at = here(lx, 1);
    size_t start = lx->pos;
    int braced;
    dspi_pref *r;
    char *name;
    dspi_span nat;

    advance(lx);                        /* '$' */
    if (cur(lx) == '$') {
        advance(lx);
        dspi_str_append(raw, "$");
        return 0;
    }
    braced = cur(lx) == '{';
    if (braced)
        advance(lx);
    if (!is_ident_start(cur(lx))) {
        dspi_diag_add(lx->pf, at, dspi_fmt("write $name or ${name}; $$ is a "
                                           "literal '$'"),
                      "'$' is not followed by a name");
        return -1;
    }
    name = read_ident(lx, &nat);
    if (braced) {
        if (cur(lx) != '}') {
            at.len = (int)(lx->pos - start);
            dspi_diag_add(lx->pf, at, dspi_fmt("close it: ${%s}", name ? name : ""),
                          "unterminated '${'");
            free(name);
            return -1;
        }
        advance(lx);
    }
    at.len = (int)(lx->pos - start);
    if (!name || grow(lx->pf, (void **)&it->refs, it->n_refs, sizeof(*it->refs)) < 0) {
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
static int read_quoted(lexer *lx, dspi_pitem *it, dspi_str *raw)
{
    dspi_span open = here(lx, 1);

    advance(lx);
    for (;;) {
        char c = cur(lx);
        if (c == '"') {
            advance(lx);
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
            dspi_span esc = here(lx, 2);
            char e = ahead(lx, 1);
            const char *out = e == '"' ? "\"" : e == '\\' ? "\\"
                            : e == 'n' ? "\n" : e == 't' ? "\t" : NULL;
            if (!out) {
                dspi_diag_add(lx->pf, esc, dspi_fmt("known escapes: \\\" \\\\ "
                                                    "\\n \\t"),
                              "unknown escape '\\%c' in a string",
                              e && e != '\n' ? e : ' ');
                return -1;
            }
            advance(lx);
            advance(lx);
            dspi_str_append(raw, out);
            continue;
        }
        dspi_str_appendn(raw, &c, 1);
        advance(lx);
    }
}

/* One value or list element into *it. in_list makes ',' and ']' end a
 * bare word. Returns 0 or -1 (reported). */
static int read_item(lexer *lx, dspi_pitem *it, int in_list)
{
    dspi_str raw = { 0 };
    size_t start = lx->pos;
    int ret = 0;

    memset(it, 0, sizeof(*it));
    it->at = here(lx, 0);
    if (cur(lx) == '"') {
        ret = read_quoted(lx, it, &raw);
    } else {
        for (;;) {
            char c = cur(lx);
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
            advance(lx);
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
static int read_value(lexer *lx, dspi_pval *v, const char *what)
{
    dspi_span open = here(lx, 1);
    size_t start = lx->pos;
    char buf[4];

    memset(v, 0, sizeof(*v));
    v->at = open;
    if (at_stmt_end(lx)) {
        dspi_diag_add(lx->pf, open, dspi_fmt("write %s=\"\" for an empty value",
                                             what),
                      "missing value for '%s'", what);
        return -1;
    }
    if (cur(lx) != '[') {
        if (grow(lx->pf, (void **)&v->items, 0, sizeof(*v->items)) < 0)
            return -1;
        v->n = 1;
        if (read_item(lx, &v->items[0], 0) < 0)
            return -1;
        v->at = v->items[0].at;
        return 0;
    }
    v->is_list = 1;
    advance(lx);
    skip_ws(lx);
    while (cur(lx) != ']') {
        if (at_stmt_end(lx)) {
            dspi_diag_add(lx->pf, open, dspi_fmt("close it with ']', or end "
                                                 "the line with '\\' to go on"),
                          "unterminated list");
            return -1;
        }
        if (grow(lx->pf, (void **)&v->items, v->n, sizeof(*v->items)) < 0)
            return -1;
        if (read_item(lx, &v->items[v->n++], 1) < 0)
            return -1;
        skip_ws(lx);
        if (cur(lx) == ',') {
            advance(lx);
            skip_ws(lx);
        } else if (cur(lx) != ']' && !at_stmt_end(lx)) {
            dspi_diag_add(lx->pf, here(lx, 1), NULL,
                          "expected ',' or ']' in the list, not %s",
                          printable(cur(lx), buf));
            return -1;
        }
    }
    advance(lx);
    v->at.len = (int)(lx->pos - start);
    return 0;
}

/* ---- statements ------------------------------------------------------------ */

static int stmt_arg(lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_parg *a;

    if (grow(pf, (void **)&pf->args, pf->n_args, sizeof(*pf->args)) < 0)
        return -1;
    a = &pf->args[pf->n_args++];
    memset(a, 0, sizeof(*a));
    *damaged = &a->reported;    /* a bad default: stay quiet at its uses */
    a->name = read_ident(lx, &a->at);
    skip_ws(lx);
    if (cur(lx) != '=')
        return 0;
    advance(lx);
    skip_ws(lx);
    a->has_def = 1;
    return read_value(lx, &a->def, a->name ? a->name : "");
}

static int stmt_option(lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_popt *o;
    char buf[4];

    if (grow(pf, (void **)&pf->opts, pf->n_opts, sizeof(*pf->opts)) < 0)
        return -1;
    o = &pf->opts[pf->n_opts++];
    memset(o, 0, sizeof(*o));
    *damaged = &o->damaged;
    o->key = read_ident(lx, &o->at);
    skip_ws(lx);
    if (cur(lx) != '=') {
        dspi_diag_add(pf, here(lx, 1), dspi_fmt("write: option %s = VALUE",
                                                o->key ? o->key : ""),
                      "expected '=' after 'option %s', not %s",
                      o->key ? o->key : "", printable(cur(lx), buf));
        return -1;
    }
    advance(lx);
    skip_ws(lx);
    return read_value(lx, &o->val, o->key ? o->key : "");
}

static int stmt_node(lexer *lx, char *name, dspi_span at, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_pnode *nd;
    char buf[4];

    if (grow(pf, (void **)&pf->nodes, pf->n_nodes, sizeof(*pf->nodes)) < 0) {
        free(name);
        return -1;
    }
    nd = &pf->nodes[pf->n_nodes++];
    memset(nd, 0, sizeof(*nd));
    *damaged = &nd->damaged;
    nd->name = name;
    nd->at = at;
    advance(lx);                        /* '=' */
    skip_ws(lx);
    if (!is_ident_start(cur(lx))) {
        dspi_diag_add(pf, here(lx, 1), dspi_fmt("a node is declared as: %s = "
                                                "family.op key=value ...", name),
                      "expected an operator name after '%s =', not %s",
                      name, printable(cur(lx), buf));
        return -1;
    }
    nd->op = read_opname(lx, &nd->op_at);
    for (;;) {
        dspi_pparam *p;

        skip_ws(lx);
        if (at_stmt_end(lx))
            return 0;
        if (!is_ident_start(cur(lx))) {
            dspi_diag_add(pf, here(lx, 1), dspi_fmt("parameters are written "
                                                    "key=value"),
                          "expected a parameter name, not %s",
                          printable(cur(lx), buf));
            return -1;
        }
        if (grow(pf, (void **)&nd->params, nd->n_params, sizeof(*nd->params)) < 0)
            return -1;
        p = &nd->params[nd->n_params++];
        memset(p, 0, sizeof(*p));
        p->key = read_ident(lx, &p->at);
        skip_ws(lx);
        if (cur(lx) != '=') {
            dspi_diag_add(pf, p->at, dspi_fmt("parameters are written %s=VALUE",
                                              p->key ? p->key : "key"),
                          "expected '=' after parameter '%s'",
                          p->key ? p->key : "");
            return -1;
        }
        advance(lx);
        skip_ws(lx);
        if (read_value(lx, &p->val, p->key ? p->key : "") < 0)
            return -1;
    }
}

static void read_end(lexer *lx, dspi_pend *e, char *node, dspi_span at)
{
    memset(e, 0, sizeof(*e));
    e->node = node;
    e->at = at;
    if (cur(lx) == '.' && is_ident_start(ahead(lx, 1))) {
        advance(lx);
        e->port = read_ident(lx, &e->port_at);
        e->at.len = e->port_at.col + e->port_at.len - e->at.col;
    }
}

static int stmt_chain(lexer *lx, char *first, dspi_span at, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_pchain *c;

    if (grow(pf, (void **)&pf->chains, pf->n_chains, sizeof(*pf->chains)) < 0) {
        free(first);
        return -1;
    }
    c = &pf->chains[pf->n_chains++];
    memset(c, 0, sizeof(*c));
    *damaged = &c->damaged;
    if (grow(pf, (void **)&c->ends, 0, sizeof(*c->ends)) < 0) {
        free(first);
        return -1;
    }
    read_end(lx, &c->ends[c->n++], first, at);
    for (;;) {
        dspi_span arrow, eat;
        char *name;

        skip_ws(lx);
        if (!(cur(lx) == '-' && ahead(lx, 1) == '>'))
            break;
        arrow = here(lx, 2);
        advance(lx);
        advance(lx);
        skip_ws(lx);
        if (!is_ident_start(cur(lx))) {
            dspi_diag_add(pf, arrow, dspi_fmt("an edge needs a destination: "
                                              "%s -> NODE[.PORT]",
                                              c->ends[c->n - 1].node ?
                                              c->ends[c->n - 1].node : "a"),
                          "'->' with nothing after it");
            return -1;
        }
        if (grow(pf, (void **)&c->ends, c->n, sizeof(*c->ends)) < 0 ||
            grow(pf, (void **)&c->arrows, c->n - 1, sizeof(*c->arrows)) < 0)
            return -1;
        c->arrows[c->n - 1] = arrow;
        name = read_ident(lx, &eat);
        read_end(lx, &c->ends[c->n++], name, eat);
    }
    if (c->n == 1) {
        dspi_diag_add(pf, c->ends[0].at, dspi_fmt("an edge is written a -> b, "
                                                  "a node name = family.op"),
                      "'%s%s%s' alone is not a statement",
                      c->ends[0].node ? c->ends[0].node : "",
                      c->ends[0].port ? "." : "",
                      c->ends[0].port ? c->ends[0].port : "");
        return -1;
    }
    return 0;
}

/* *damaged is set to the new statement's damage flag once it exists. */
static int statement(lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_span at;
    char buf[4];
    char *w;

    *damaged = NULL;
    if (!is_ident_start(cur(lx))) {
        dspi_diag_add(pf, here(lx, 1), dspi_fmt("statements are: arg NAME, "
                                                "option KEY = VALUE, "
                                                "NAME = family.op key=value, "
                                                "a -> b"),
                      "unexpected %s", printable(cur(lx), buf));
        return -1;
    }
    if (!(w = read_ident(lx, &at)))
        return -1;
    if (cur(lx) == '.')
        return stmt_chain(lx, w, at, damaged);
    skip_ws(lx);
    if (strcmp(w, "arg") == 0 || strcmp(w, "option") == 0) {
        int is_arg = w[0] == 'a';
        if (is_ident_start(cur(lx))) {
            free(w);
            return is_arg ? stmt_arg(lx, damaged) : stmt_option(lx, damaged);
        }
        if (at_stmt_end(lx)) {
            dspi_diag_add(pf, at, dspi_fmt(is_arg ? "write: arg NAME [= DEFAULT]"
                                                  : "write: option KEY = VALUE"),
                          "'%s' needs a name", w);
            free(w);
            return -1;
        }
    }
    if (cur(lx) == '=')
        return stmt_node(lx, w, at, damaged);
    if (cur(lx) == '-' && ahead(lx, 1) == '>')
        return stmt_chain(lx, w, at, damaged);
    if (at_stmt_end(lx))
        dspi_diag_add(pf, at, dspi_fmt("declare a node: %s = family.op "
                                       "key=value ..., or connect it: %s -> NODE",
                                       w, w),
                      "'%s' alone is not a statement", w);
    else
        dspi_diag_add(pf, here(lx, 1), dspi_fmt("declare a node: %s = family.op "
                                                "key=value ..., or connect it: "
                                                "%s -> NODE", w, w),
                      "unexpected %s after '%s'", printable(cur(lx), buf), w);
    free(w);
    return -1;
}

static int index_lines(dspi_pfile *pf)
{
    int n = 1;

    for (const char *p = pf->text; *p; p++)
        n += *p == '\n';
    pf->line_off = malloc((size_t)n * sizeof(*pf->line_off));
    if (!pf->line_off)
        return DSP_ENOMEM;
    pf->line_off[0] = 0;
    pf->n_lines = 1;
    for (size_t k = 0; pf->text[k]; k++)
        if (pf->text[k] == '\n')
            pf->line_off[pf->n_lines++] = k + 1;
    return 0;
}

/* $pipedir: the directory part of path, "." when there is none. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;

    if (!slash)
        return dspi_fmt(".");
    if (slash == path)
        return dspi_fmt("/");
    d = malloc((size_t)(slash - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = '\0';
    }
    return d;
}

int dspi_pfile_parse(dspi_pfile *pf, const char *path, const char *text)
{
    lexer lx = { pf, text, 0, 1, 1 };
    char buf[4];
    int *damaged;

    memset(pf, 0, sizeof(*pf));
    pf->path = path;
    pf->text = text;
    pf->dir = dir_of(path);
    if (!pf->dir || index_lines(pf) < 0)
        return DSP_ENOMEM;
    while (cur(&lx) && !pf->oom) {
        char c;

        skip_ws(&lx);
        c = cur(&lx);
        if (c == '\n' || c == ';') {
            advance(&lx);
            continue;
        }
        if (c == '#') {
            while (cur(&lx) && cur(&lx) != '\n')
                advance(&lx);
            continue;
        }
        if (c == '\0')
            break;
        if (statement(&lx, &damaged) < 0) {
            /* keep what was declared, but quietly: a half-read statement
             * would only produce follow-up errors */
            if (damaged)
                *damaged = 1;
            recover(&lx);
            continue;
        }
        skip_ws(&lx);
        if (!at_stmt_end(&lx)) {
            dspi_diag_add(pf, here(&lx, 1), dspi_fmt("one statement per line, "
                                                     "or separate them with ';'"),
                          "unexpected %s", printable(cur(&lx), buf));
            recover(&lx);
        }
    }
    return pf->oom ? DSP_ENOMEM : 0;
}

/* ---- argument binding and substitution --------------------------------- */

static dspi_parg *find_arg(dspi_pfile *pf, const char *name)
{
    for (int k = 0; k < pf->n_args; k++)
        if (pf->args[k].name && strcmp(pf->args[k].name, name) == 0)
            return &pf->args[k];
    return NULL;
}

static char *nearest_arg(dspi_pfile *pf, const char *name, int with_pipedir)
{
    const char **names = malloc((size_t)(pf->n_args + 1) * sizeof(*names));
    const char *near;
    int n = 0;

    if (!names)
        return NULL;
    for (int k = 0; k < pf->n_args; k++)
        if (pf->args[k].name)
            names[n++] = pf->args[k].name;
    if (with_pipedir)
        names[n++] = "pipedir";
    near = dspi_nearest(name, names, n);
    free(names);
    return near ? dspi_fmt("did you mean '%s'?", near) : NULL;
}

static char *arg_list(dspi_pfile *pf)
{
    const char **names = malloc((size_t)(pf->n_args + 1) * sizeof(*names));
    char *s;
    int n = 0;

    if (!names)
        return NULL;
    for (int k = 0; k < pf->n_args; k++)
        if (pf->args[k].name)
            names[n++] = pf->args[k].name;
    s = dspi_join_names(names, n);
    free(names);
    return s;
}

/* Fill it->text from raw and the references. 0, or -1 when reported. */
static int substitute(dspi_pfile *pf, dspi_pitem *it)
{
    dspi_str b = { 0 };
    size_t done = 0;

    for (int k = 0; k < it->n_refs; k++) {
        dspi_pref *r = &it->refs[k];
        const char *val = NULL;

        dspi_str_appendn(&b, it->raw + done, r->off - done);
        done = r->off;
        if (strcmp(r->name, "pipedir") == 0) {
            val = pf->dir;
        } else {
            dspi_parg *a = find_arg(pf, r->name);
            if (!a) {
                char *hint = nearest_arg(pf, r->name, 1);
                dspi_diag_add(pf, r->at, hint ? hint :
                              dspi_fmt("declare it: arg %s", r->name),
                              "'$%s' is not a declared arg", r->name);
                goto fail;
            }
            if (!a->value) {
                if (!a->reported)
                    dspi_diag_add(pf, r->at, dspi_fmt("pass it as positional "
                                                      "argument %d or --set "
                                                      "%s=VALUE",
                                                      (int)(a - pf->args) + 1,
                                                      a->name),
                                  "arg '%s' has no value", a->name);
                a->reported = 1;
                goto fail;
            }
            val = a->value;
        }
        dspi_str_append(&b, val);
    }
    dspi_str_append(&b, it->raw + done);
    if (b.oom)
        pf->oom = 1;
    free(it->text);
    it->text = dspi_str_take(&b);
    return it->text ? 0 : -1;

fail:
    dspi_str_free(&b);
    return -1;
}

static int cmp_item_pos(const void *a, const void *b)
{
    const dspi_pitem *x = *(dspi_pitem *const *)a, *y = *(dspi_pitem *const *)b;

    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    return (x->at.col > y->at.col) - (x->at.col < y->at.col);
}

static void bind_cmdline(dspi_pfile *pf, const dsp_pipe_args *args)
{
    int npos = args ? args->npositional : 0;

    for (int k = 0; k < npos && k < pf->n_args; k++) {
        free(pf->args[k].value);
        pf->args[k].value = dspi_fmt("%s", args->positional[k]);
        pf->args[k].given = 1;
    }
    if (npos > pf->n_args) {
        dspi_span none = { 0, 0, 0 };
        char *names = arg_list(pf);
        if (pf->n_args)
            dspi_diag_add(pf, none, dspi_fmt("give at most %d positional "
                                             "value%s", pf->n_args,
                                             pf->n_args == 1 ? "" : "s"),
                          "%d positional value%s given, but the file declares "
                          "%d arg%s: %s", npos, npos == 1 ? "" : "s",
                          pf->n_args, pf->n_args == 1 ? "" : "s",
                          names ? names : "");
        else
            dspi_diag_add(pf, none, dspi_fmt("declare one in the file: "
                                             "arg NAME"),
                          "%d positional value%s given, but the file declares "
                          "no args", npos, npos == 1 ? "" : "s");
        free(names);
    }
    for (int k = 0; args && k < args->nset; k++) {
        const char *s = args->set[k], *eq = strchr(s, '=');
        dspi_span none = { 0, 0, 0 };
        dspi_parg *a = NULL;
        char *name;

        if (!eq || eq == s) {
            dspi_diag_add(pf, none, dspi_fmt("write --set NAME=VALUE"),
                          "--set '%s': expected NAME=VALUE", s);
            continue;
        }
        if (!(name = dupn(pf, s, (size_t)(eq - s))))
            return;
        a = find_arg(pf, name);
        if (!a) {
            char *hint = nearest_arg(pf, name, 0);
            char *names = hint ? NULL : arg_list(pf);
            if (!hint)
                hint = pf->n_args ? dspi_fmt("the file declares: %s", names ? names : "")
                                  : dspi_fmt("the file declares no args");
            dspi_diag_add(pf, none, hint, "--set %s: the file declares no "
                          "arg '%s'", s, name);
            free(names);
        } else {
            free(a->value);
            a->value = dspi_fmt("%s", eq + 1);
            a->given = 2;
        }
        free(name);
    }
}

int dspi_pfile_bind(dspi_pfile *pf, const dsp_pipe_args *args)
{
    dspi_pitem **items = NULL;
    int n = 0;

    /* declarations first: a duplicate would make binding ambiguous */
    for (int k = 0; k < pf->n_args; k++) {
        dspi_parg *a = &pf->args[k];
        if (!a->name)
            continue;
        if (strcmp(a->name, "pipedir") == 0)
            dspi_diag_add(pf, a->at, dspi_fmt("$pipedir is built in: the "
                                              "directory of the .pipe file"),
                          "'pipedir' is reserved");
        for (int j = 0; j < k; j++) {
            if (pf->args[j].name && strcmp(pf->args[j].name, a->name) == 0) {
                dspi_diag_add(pf, a->at, dspi_fmt("first declared at line %d",
                                                  pf->args[j].at.line),
                              "arg '%s' is declared twice", a->name);
                break;
            }
        }
    }
    bind_cmdline(pf, args);
    /* defaults may use $pipedir and args declared before them */
    for (int k = 0; k < pf->n_args; k++) {
        dspi_parg *a = &pf->args[k];
        if (a->value || !a->has_def || a->def.n < 1)
            continue;
        if (a->def.is_list) {
            dspi_diag_add(pf, a->def.at, NULL, "the default of arg '%s' must "
                          "be a single value, not a list", a->name);
            a->reported = 1;
            continue;
        }
        if (substitute(pf, &a->def.items[0]) < 0) {
            a->reported = 1;    /* said once already; don't repeat at uses */
            continue;
        }
        a->value = dspi_fmt("%s", a->def.items[0].text);
    }
    /* then every value, in file order, so "no value" points at the first use */
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        for (int k = 0; k < pf->n_opts; k++)
            for (int j = 0; j < pf->opts[k].val.n; j++, n++)
                if (pass)
                    items[n] = &pf->opts[k].val.items[j];
        for (int k = 0; k < pf->n_nodes; k++)
            for (int p = 0; p < pf->nodes[k].n_params; p++)
                for (int j = 0; j < pf->nodes[k].params[p].val.n; j++, n++)
                    if (pass)
                        items[n] = &pf->nodes[k].params[p].val.items[j];
        if (!pass && !(items = malloc((size_t)(n ? n : 1) * sizeof(*items))))
            return DSP_ENOMEM;
    }
    qsort(items, (size_t)n, sizeof(*items), cmp_item_pos);
    for (int k = 0; k < n; k++)
        substitute(pf, items[k]);
    free(items);
    return pf->oom ? DSP_ENOMEM : 0;
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

void dspi_pfile_free(dspi_pfile *pf)
{
    for (int k = 0; k < pf->n_args; k++) {
        free(pf->args[k].name);
        free(pf->args[k].value);
        val_free(&pf->args[k].def);
    }
    for (int k = 0; k < pf->n_opts; k++) {
        free(pf->opts[k].key);
        val_free(&pf->opts[k].val);
    }
    for (int k = 0; k < pf->n_nodes; k++) {
        dspi_pnode *nd = &pf->nodes[k];
        free(nd->name);
        free(nd->op);
        for (int p = 0; p < nd->n_params; p++) {
            free(nd->params[p].key);
            val_free(&nd->params[p].val);
        }
        free(nd->params);
    }
    for (int k = 0; k < pf->n_chains; k++) {
        dspi_pchain *c = &pf->chains[k];
        for (int e = 0; e < c->n; e++) {
            free(c->ends[e].node);
            free(c->ends[e].port);
        }
        free(c->ends);
        free(c->arrows);
    }
    for (int k = 0; k < pf->n_diags; k++) {
        free(pf->diags[k].msg);
        free(pf->diags[k].hint);
    }
    free(pf->args);
    free(pf->opts);
    free(pf->nodes);
    free(pf->chains);
    free(pf->diags);
    free(pf->line_off);
    free(pf->dir);
    memset(pf, 0, sizeof(*pf));
}
