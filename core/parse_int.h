/* parse_int.h - syntax tree of a .pipe file and its diagnostics: lex, parse, bind, diag and graph.c. */
#ifndef DSPIPE_PARSE_INT_H
#define DSPIPE_PARSE_INT_H

#include "internal.h"

/* Where a token lies: 1-based physical line and column, length in bytes. */
typedef struct dspi_span {
    int line, col, len;
} dspi_span;

/* A `$name` / `${name}` reference inside a value; off is where the text
 * goes in the item's raw text. */
typedef struct dspi_pref {
    char *name;
    size_t off;
    dspi_span at;
} dspi_pref;

/* One value, or one element of a list. */
typedef struct dspi_pitem {
    char *raw;          /* quotes and escapes removed, references cut out */
    dspi_pref *refs;
    int n_refs;
    char *text;         /* after substitution; NULL when that failed */
    dspi_span at;
} dspi_pitem;

typedef struct dspi_pval {
    int is_list;        /* written as [ ... ] */
    dspi_pitem *items;
    int n;
    dspi_span at;
} dspi_pval;

typedef struct dspi_pparam {
    char *key;
    dspi_span at;
    dspi_pval val;
} dspi_pparam;

typedef struct dspi_pnode {
    char *name;
    dspi_span at;
    char *op;
    dspi_span op_at;
    dspi_pparam *params;
    int n_params;
    int damaged;        /* the statement had a syntax error */
} dspi_pnode;

/* `node` or `node.port` in a chain. */
typedef struct dspi_pend {
    char *node;
    char *port;         /* NULL when not named */
    dspi_span at;       /* the whole endpoint */
    dspi_span port_at;
} dspi_pend;

typedef struct dspi_pchain {
    dspi_pend *ends;
    int n;
    dspi_span *arrows;  /* n - 1: arrows[k] joins ends[k] and ends[k + 1] */
    int damaged;
} dspi_pchain;

typedef struct dspi_parg {
    char *name;
    dspi_span at;
    int has_def;
    dspi_pval def;
    char *value;        /* bound value, NULL when none */
    int given;          /* 1 positional, 2 --set, 0 default or none */
    int reported;       /* "has no value" already said once */
} dspi_parg;

typedef struct dspi_popt {
    char *key;
    dspi_span at;
    dspi_pval val;
    int damaged;
} dspi_popt;

typedef struct dspi_diag {
    dspi_span at;       /* line 0: about the file or the command line */
    char *msg, *hint;
    int seq;
} dspi_diag;

typedef struct dspi_pfile {
    const char *path;
    const char *text;
    char *dir;          /* the value of $pipedir */
    size_t *line_off;   /* start of each line */
    int n_lines;
    dspi_parg *args;
    int n_args;
    dspi_popt *opts;
    int n_opts;
    dspi_pnode *nodes;
    int n_nodes;
    dspi_pchain *chains;
    int n_chains;
    dspi_diag *diags;
    int n_diags;
    int oom;
} dspi_pfile;

/* The lexer's cursor in a .pipe text; line and col are 1-based. */
typedef struct dspi_lexer {
    dspi_pfile *pf;
    const char *s;
    size_t pos;
    int line, col;
} dspi_lexer;

/* parse.c */

/* Lex and parse text into pf (syntax errors become diagnostics).
 * Returns 0 or DSP_ENOMEM; pf must be freed with dspi_pfile_free either way. */
int dspi_pfile_parse(dspi_pfile *pf, const char *path, const char *text);
void dspi_pfile_free(dspi_pfile *pf);
/* Make room for one more element of size sz in *arr holding n.
 * 0, or -1 with pf->oom set. */
int dspi_pfile_grow(dspi_pfile *pf, void **arr, int n, size_t sz);
/* The first n bytes of s (malloc'd); NULL with pf->oom set. */
char *dspi_pfile_strndup(dspi_pfile *pf, const char *s, size_t n);

/* lex.c: the cursor never moves past the terminating '\0'. */
char dspi_lex_cur(const dspi_lexer *lx);
char dspi_lex_ahead(const dspi_lexer *lx, size_t k);
void dspi_lex_advance(dspi_lexer *lx);
dspi_span dspi_lex_here(const dspi_lexer *lx, int len);
/* Blanks and '\'-joined lines; not newlines, which end statements. */
void dspi_lex_skip_ws(dspi_lexer *lx);
int dspi_lex_at_stmt_end(const dspi_lexer *lx);
void dspi_lex_recover(dspi_lexer *lx);
int dspi_is_ident_start(char c);
/* Identifier / dotted operator name (malloc'd, NULL on OOM). */
char *dspi_lex_ident(dspi_lexer *lx, dspi_span *at);
char *dspi_lex_opname(dspi_lexer *lx, dspi_span *at);
/* c for a message: "'x'", "end of line", "end of file"; buf holds 4. */
const char *dspi_lex_printable(char c, char *buf);
/* A value for what (a key or arg name): quoted, bare or [list].
 * 0, or -1 when reported; *v is filled as far as it got. */
int dspi_lex_value(dspi_lexer *lx, dspi_pval *v, const char *what);

/* bind.c: bind command-line values to the args, then substitute $references
 * into every item's text. Problems become diagnostics. */
int dspi_pfile_bind(dspi_pfile *pf, const dsp_pipe_args *args);

/* diag.c */

/* Record an error at `at`; hint is taken over (malloc'd or NULL). */
void dspi_diag_add(dspi_pfile *pf, dspi_span at, char *hint,
                   const char *fmt, ...) DSP_PRINTF(4, 5);
/* "a, b, c" of n names (malloc'd). */
char *dspi_join_names(const char *const *names, int n);
/* Every diagnostic, sorted by position, as one text (malloc'd). */
char *dspi_pfile_render(const dspi_pfile *pf);

#endif /* DSPIPE_PARSE_INT_H */
