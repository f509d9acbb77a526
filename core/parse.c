/* parse.c - the .pipe parser: statements into a syntax tree, and freeing that tree. */
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

/* ---- the tree's memory ---------------------------------------------------- */

int dspi_pfile_grow(dspi_pfile *pf, void **arr, int n, size_t sz)
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

char *dspi_pfile_strndup(dspi_pfile *pf, const char *s, size_t n)
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

/* ---- statements ------------------------------------------------------------ */

static int stmt_arg(dspi_lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_parg *a;

    if (dspi_pfile_grow(pf, (void **)&pf->args, pf->n_args, sizeof(*pf->args)) < 0)
        return -1;
    a = &pf->args[pf->n_args++];
    memset(a, 0, sizeof(*a));
    *damaged = &a->reported;    /* a bad default: stay quiet at its uses */
    a->name = dspi_lex_ident(lx, &a->at);
    dspi_lex_skip_ws(lx);
    if (dspi_lex_cur(lx) != '=')
        return 0;
    dspi_lex_advance(lx);
    dspi_lex_skip_ws(lx);
    a->has_def = 1;
    return dspi_lex_value(lx, &a->def, a->name ? a->name : "");
}

static int stmt_option(dspi_lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_popt *o;
    char buf[4];

    if (dspi_pfile_grow(pf, (void **)&pf->opts, pf->n_opts, sizeof(*pf->opts)) < 0)
        return -1;
    o = &pf->opts[pf->n_opts++];
    memset(o, 0, sizeof(*o));
    *damaged = &o->damaged;
    o->key = dspi_lex_ident(lx, &o->at);
    dspi_lex_skip_ws(lx);
    if (dspi_lex_cur(lx) != '=') {
        dspi_diag_add(pf, dspi_lex_here(lx, 1),
                      dspi_fmt("write: option %s = VALUE", o->key ? o->key : ""),
                      "expected '=' after 'option %s', not %s", o->key ? o->key : "",
                      dspi_lex_printable(dspi_lex_cur(lx), buf));
        return -1;
    }
    dspi_lex_advance(lx);
    dspi_lex_skip_ws(lx);
    return dspi_lex_value(lx, &o->val, o->key ? o->key : "");
}

static int stmt_node(dspi_lexer *lx, char *name, dspi_span at, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_pnode *nd;
    char buf[4];

    if (dspi_pfile_grow(pf, (void **)&pf->nodes, pf->n_nodes, sizeof(*pf->nodes)) < 0) {
        free(name);
        return -1;
    }
    nd = &pf->nodes[pf->n_nodes++];
    memset(nd, 0, sizeof(*nd));
    *damaged = &nd->damaged;
    nd->name = name;
    nd->at = at;
    dspi_lex_advance(lx);               /* '=' */
    dspi_lex_skip_ws(lx);
    if (!dspi_is_ident_start(dspi_lex_cur(lx))) {
        dspi_diag_add(pf, dspi_lex_here(lx, 1),
                      dspi_fmt("a node is declared as: %s = family.op key=value ...",
                               name),
                      "expected an operator name after '%s =', not %s",
                      name, dspi_lex_printable(dspi_lex_cur(lx), buf));
        return -1;
    }
    nd->op = dspi_lex_opname(lx, &nd->op_at);
    for (;;) {
        dspi_pparam *p;

        dspi_lex_skip_ws(lx);
        if (dspi_lex_at_stmt_end(lx))
            return 0;
        if (!dspi_is_ident_start(dspi_lex_cur(lx))) {
            dspi_diag_add(pf, dspi_lex_here(lx, 1),
                          dspi_fmt("parameters are written key=value"),
                          "expected a parameter name, not %s",
                          dspi_lex_printable(dspi_lex_cur(lx), buf));
            return -1;
        }
        if (dspi_pfile_grow(pf, (void **)&nd->params, nd->n_params,
                            sizeof(*nd->params)) < 0)
            return -1;
        p = &nd->params[nd->n_params++];
        memset(p, 0, sizeof(*p));
        p->key = dspi_lex_ident(lx, &p->at);
        dspi_lex_skip_ws(lx);
        if (dspi_lex_cur(lx) != '=') {
            dspi_diag_add(pf, p->at, dspi_fmt("parameters are written %s=VALUE",
                                              p->key ? p->key : "key"),
                          "expected '=' after parameter '%s'",
                          p->key ? p->key : "");
            return -1;
        }
        dspi_lex_advance(lx);
        dspi_lex_skip_ws(lx);
        if (dspi_lex_value(lx, &p->val, p->key ? p->key : "") < 0)
            return -1;
    }
}

static void read_end(dspi_lexer *lx, dspi_pend *e, char *node, dspi_span at)
{
    memset(e, 0, sizeof(*e));
    e->node = node;
    e->at = at;
    if (dspi_lex_cur(lx) == '.' && dspi_is_ident_start(dspi_lex_ahead(lx, 1))) {
        dspi_lex_advance(lx);
        e->port = dspi_lex_ident(lx, &e->port_at);
        e->at.len = e->port_at.col + e->port_at.len - e->at.col;
    }
}

static int stmt_chain(dspi_lexer *lx, char *first, dspi_span at, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_pchain *c;

    if (dspi_pfile_grow(pf, (void **)&pf->chains, pf->n_chains,
                        sizeof(*pf->chains)) < 0) {
        free(first);
        return -1;
    }
    c = &pf->chains[pf->n_chains++];
    memset(c, 0, sizeof(*c));
    *damaged = &c->damaged;
    if (dspi_pfile_grow(pf, (void **)&c->ends, 0, sizeof(*c->ends)) < 0) {
        free(first);
        return -1;
    }
    read_end(lx, &c->ends[c->n++], first, at);
    for (;;) {
        dspi_span arrow, eat;
        char *name;

        dspi_lex_skip_ws(lx);
        if (!(dspi_lex_cur(lx) == '-' && dspi_lex_ahead(lx, 1) == '>'))
            break;
        arrow = dspi_lex_here(lx, 2);
        dspi_lex_advance(lx);
        dspi_lex_advance(lx);
        dspi_lex_skip_ws(lx);
        if (!dspi_is_ident_start(dspi_lex_cur(lx))) {
            dspi_diag_add(pf, arrow, dspi_fmt("an edge needs a destination: "
                                              "%s -> NODE[.PORT]",
                                              c->ends[c->n - 1].node ?
                                              c->ends[c->n - 1].node : "a"),
                          "'->' with nothing after it");
            return -1;
        }
        if (dspi_pfile_grow(pf, (void **)&c->ends, c->n, sizeof(*c->ends)) < 0 ||
            dspi_pfile_grow(pf, (void **)&c->arrows, c->n - 1, sizeof(*c->arrows)) < 0)
            return -1;
        c->arrows[c->n - 1] = arrow;
        name = dspi_lex_ident(lx, &eat);
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
static int statement(dspi_lexer *lx, int **damaged)
{
    dspi_pfile *pf = lx->pf;
    dspi_span at;
    char buf[4];
    char *w;

    *damaged = NULL;
    if (!dspi_is_ident_start(dspi_lex_cur(lx))) {
        dspi_diag_add(pf, dspi_lex_here(lx, 1),
                      dspi_fmt("statements are: arg NAME, option KEY = VALUE, "
                               "NAME = family.op key=value, a -> b"),
                      "unexpected %s", dspi_lex_printable(dspi_lex_cur(lx), buf));
        return -1;
    }
    if (!(w = dspi_lex_ident(lx, &at)))
        return -1;
    if (dspi_lex_cur(lx) == '.')
        return stmt_chain(lx, w, at, damaged);
    dspi_lex_skip_ws(lx);
    if (strcmp(w, "arg") == 0 || strcmp(w, "option") == 0) {
        int is_arg = w[0] == 'a';
        if (dspi_is_ident_start(dspi_lex_cur(lx))) {
            free(w);
            return is_arg ? stmt_arg(lx, damaged) : stmt_option(lx, damaged);
        }
        if (dspi_lex_at_stmt_end(lx)) {
            dspi_diag_add(pf, at, dspi_fmt(is_arg ? "write: arg NAME [= DEFAULT]"
                                                  : "write: option KEY = VALUE"),
                          "'%s' needs a name", w);
            free(w);
            return -1;
        }
    }
    if (dspi_lex_cur(lx) == '=')
        return stmt_node(lx, w, at, damaged);
    if (dspi_lex_cur(lx) == '-' && dspi_lex_ahead(lx, 1) == '>')
        return stmt_chain(lx, w, at, damaged);
    if (dspi_lex_at_stmt_end(lx))
        dspi_diag_add(pf, at, dspi_fmt("declare a node: %s = family.op "
                                       "key=value ..., or connect it: %s -> NODE",
                                       w, w),
                      "'%s' alone is not a statement", w);
    else
        dspi_diag_add(pf, dspi_lex_here(lx, 1),
                      dspi_fmt("declare a node: %s = family.op key=value ..., "
                               "or connect it: %s -> NODE", w, w),
                      "unexpected %s after '%s'",
                      dspi_lex_printable(dspi_lex_cur(lx), buf), w);
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
    dspi_lexer lx = { pf, text, 0, 1, 1 };
    char buf[4];
    int *damaged;

    memset(pf, 0, sizeof(*pf));
    pf->path = path;
    pf->text = text;
    pf->dir = dir_of(path);
    if (!pf->dir || index_lines(pf) < 0)
        return DSP_ENOMEM;
    while (dspi_lex_cur(&lx) && !pf->oom) {
        char c;

        dspi_lex_skip_ws(&lx);
        c = dspi_lex_cur(&lx);
        if (c == '\n' || c == ';') {
            dspi_lex_advance(&lx);
            continue;
        }
        if (c == '#') {
            while (dspi_lex_cur(&lx) && dspi_lex_cur(&lx) != '\n')
                dspi_lex_advance(&lx);
            continue;
        }
        if (c == '\0')
            break;
        if (statement(&lx, &damaged) < 0) {
            /* keep what was declared, but quietly: a half-read statement
             * would only produce follow-up errors */
            if (damaged)
                *damaged = 1;
            dspi_lex_recover(&lx);
            continue;
        }
        dspi_lex_skip_ws(&lx);
        if (!dspi_lex_at_stmt_end(&lx)) {
            dspi_diag_add(pf, dspi_lex_here(&lx, 1),
                          dspi_fmt("one statement per line, or separate them with ';'"),
                          "unexpected %s", dspi_lex_printable(dspi_lex_cur(&lx), buf));
            dspi_lex_recover(&lx);
        }
    }
    return pf->oom ? DSP_ENOMEM : 0;
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
