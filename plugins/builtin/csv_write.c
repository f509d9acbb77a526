/* csv_write.c - csv.write: one CSV row (RFC 4180) of chosen meta keys per packet, committed atomically at the end, resumable. */
#include "builtin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NEWLINE_CRLF, NEWLINE_LF };
static const char *const csv_newlines[] = { "crlf", "lf", NULL };

typedef struct csv_ctx {
    char *path;
    dsp_list columns;           /* as given; empty: taken from the first packet */
    char *sep;
    int newline;
    int header;
    builtin_sink_file *out;     /* committed at flush */
    char **cols;                /* the columns in use (owned), n_cols of them */
    int n_cols;
    int have_cols;              /* 1 once the columns (and header) are settled */
} csv_ctx;

static const dsp_param_def csv_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .offset = offsetof(csv_ctx, path),
      .doc = "output .csv file (renamed into place at the end; PATH.part holds the "
             "rows meanwhile when the run can --resume)" },
    { .name = "columns", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_STRING, .def = "[]",
      .offset = offsetof(csv_ctx, columns),
      .doc = "meta keys, one column each; [] = the scalar keys of the first packet "
             "(sorted by name)" },
    { .name = "sep", .type = DSP_PARAM_STRING, .def = ",", .offset = offsetof(csv_ctx, sep),
      .doc = "field separator: one character (\"\\t\" for tab-separated values)" },
    { .name = "newline", .type = DSP_PARAM_ENUM, .def = "crlf", .choices = csv_newlines,
      .offset = offsetof(csv_ctx, newline),
      .doc = "row terminator: crlf (RFC 4180) or lf" },
    { .name = "header", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(csv_ctx, header), .doc = "write a first row with the column names" },
    { NULL }
};

static const dsp_port_def csv_in[] = {
    { "in", "any", "packets whose meta becomes one row each" },
    { NULL }
};

static int csv_set_columns(csv_ctx *c, char *const *names, int n)
{
    c->cols = calloc((size_t)(n ? n : 1), sizeof *c->cols);
    if (!c->cols)
        return DSP_ENOMEM;
    for (c->n_cols = 0; c->n_cols < n; c->n_cols++)
        if (!(c->cols[c->n_cols] = strdup(names[c->n_cols])))
            return DSP_ENOMEM;
    return 0;
}

/* Write s quoted when it holds the separator, a quote, CR or LF (or always
 * when force), doubling the quotes inside (RFC 4180 section 2). */
static int csv_field(FILE *fp, const char *s, char sep, int force)
{
    int quote = force || strchr(s, sep) || strpbrk(s, "\"\r\n");
    if (!quote)
        return fputs(s, fp) < 0 ? DSP_EIO : 0;
    if (fputc('"', fp) == EOF)
        return DSP_EIO;
    for (; *s; s++)
        if ((*s == '"' && fputc('"', fp) == EOF) || fputc(*s, fp) == EOF)
            return DSP_EIO;
    return fputc('"', fp) == EOF ? DSP_EIO : 0;
}

/* The shortest decimal text of v that reads back as exactly v, with ".0"
 * added to an integral value so a reader still sees a float. */
static void csv_real(double v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEni"))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

/* One meta value as a field: missing or null -> empty, strings as they are,
 * numbers round-trip, booleans true/false, arrays/objects as compact JSON
 * in a quoted field. */
static int csv_value(FILE *fp, const json_t *v, char sep)
{
    char num[40];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return csv_field(fp, json_string_value(v), sep, 0);
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return csv_field(fp, num, sep, 0);
    case JSON_REAL:
        csv_real(json_real_value(v), num, sizeof num);
        return csv_field(fp, num, sep, 0);
    case JSON_TRUE:
        return csv_field(fp, "true", sep, 0);
    case JSON_FALSE:
        return csv_field(fp, "false", sep, 0);
    case JSON_ARRAY:
    case JSON_OBJECT: {
        char *s = json_dumps(v, JSON_COMPACT);
        if (!s)
            return DSP_ENOMEM;
        int err = csv_field(fp, s, sep, 1);
        free(s);
        return err;
    }
    default:
        return 0;
    }
}

static int csv_row_end(const csv_ctx *c, FILE *fp)
{
    return fputs(c->newline == NEWLINE_CRLF ? "\r\n" : "\n", fp) < 0 ? DSP_EIO : 0;
}

/* The columns are settled: the header row (when asked for) starts the
 * output, and the side file records the columns for a --resume. */
static int csv_write_header(dsp_node *node, csv_ctx *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = c->header ? open_memstream(&text, &len) : NULL;
    json_t *cols = json_array();
    int err = c->header && !fp ? DSP_ENOMEM : 0;

    c->have_cols = 1;
    for (int i = 0; !err && i < c->n_cols; i++) {
        if (fp && i && fputc(c->sep[0], fp) == EOF)
            err = DSP_ENOMEM;
        if (!err && fp)
            err = csv_field(fp, c->cols[i], c->sep[0], 0);
        if (!err && json_array_append_new(cols, json_string(c->cols[i])) < 0)
            err = DSP_ENOMEM;
    }
    if (!err && fp)
        err = csv_row_end(c, fp);
    if (fp && fclose(fp) != 0 && !err)
        err = DSP_ENOMEM;
    if (err || !cols) {
        free(text);
        json_decref(cols);
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    err = builtin_sink_file_set_head(node, c->out, json_pack("{so}", "columns", cols), text);
    free(text);
    return err;
}

/* Resuming: the columns the earlier run settled, which the rows kept from
 * it were written with. */
static int csv_resume_columns(dsp_node *node, csv_ctx *c)
{
    const json_t *cols = json_object_get(builtin_sink_file_head(c->out), "columns");
    const json_t *v;
    size_t i;
    int same = c->columns.n == 0 || (size_t)c->columns.n == json_array_size(cols);

    if (!json_is_array(cols))
        return 0;
    json_array_foreach(cols, i, v) {
        if (!json_is_string(v))
            return dsp_node_fail(node, DSP_EFORMAT, "resume: %s.part: \"columns\" holds a "
                                 "non-string; run without --resume", c->path);
        if (same && c->columns.n && strcmp(c->columns.s[i], json_string_value(v)) != 0)
            same = 0;
    }
    if (!same)
        return dsp_node_fail(node, DSP_EINVAL, "resume: %s.part was written with other "
                             "columns than columns= gives now; run without --resume",
                             c->path);
    if (c->columns.n)
        return 0;
    char **names = calloc(json_array_size(cols) + 1, sizeof *names);
    if (!names)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    json_array_foreach(cols, i, v)
        names[i] = (char *)json_string_value(v);
    int err = csv_set_columns(c, names, (int)json_array_size(cols));
    free(names);
    return err < 0 ? dsp_node_fail(node, err, "out of memory") : 1;
}

static int csv_init(dsp_node *node)
{
    csv_ctx *c = dsp_node_priv(node);
    if (strlen(c->sep) != 1 || strchr("\"\r\n", c->sep[0]))
        return dsp_node_fail(node, DSP_EINVAL, "sep='%s': give one character other than a "
                             "quote, CR or LF (sep=\"\\t\" for tabs)", c->sep);
    for (int i = 0; i < c->columns.n; i++)
        if (!c->columns.s[i][0])
            return dsp_node_fail(node, DSP_EINVAL, "columns[%d] is empty: name a meta key", i);
    int err = c->columns.n ? csv_set_columns(c, c->columns.s, c->columns.n) : 0;
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    if ((err = builtin_sink_file_open(node, c->path, &c->out)) < 0 ||
        (err = csv_resume_columns(node, c)) < 0)
        return err;
    return c->columns.n || err ? csv_write_header(node, c) : 0;
}

/* No columns= given: the first packet's scalar keys, in the (sorted) order
 * in which its meta is dumped. */
static int csv_columns_from(dsp_node *node, csv_ctx *c, const json_t *meta, int64_t item)
{
    const char *key;
    json_t *v;
    char **names = calloc(json_object_size(meta) + 1, sizeof *names);
    int n = 0;
    if (!names)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    json_object_foreach((json_t *)meta, key, v)
        if (!json_is_array(v) && !json_is_object(v))
            names[n++] = (char *)key;
    int err = csv_set_columns(c, names, n);
    free(names);
    if (err < 0)
        return dsp_node_fail(node, err, "out of memory");
    if (n == 0)
        return dsp_node_fail(node, DSP_EINVAL, "%s: item %lld (the first packet) has no "
                             "scalar meta keys to make columns of; set columns=[...]",
                             c->path, (long long)item);
    return csv_write_header(node, c);
}

static int csv_process(dsp_node *node, dsp_packet **in)
{
    csv_ctx *c = dsp_node_priv(node);
    int64_t item = dsp_packet_item(in[0]);
    char *text = dsp_meta_to_json(dsp_packet_meta_const(in[0]));
    json_t *meta = text ? json_loads(text, 0, NULL) : NULL;
    dsp_free(text);
    if (!meta)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: cannot read the meta of item %lld",
                             c->path, (long long)item);
    int err = c->have_cols ? 0 : csv_columns_from(node, c, meta, item);
    if (err < 0) {
        json_decref(meta);
        return err;
    }
    char *row = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&row, &len);
    err = fp ? 0 : DSP_ENOMEM;
    for (int i = 0; !err && i < c->n_cols; i++) {
        if (i && fputc(c->sep[0], fp) == EOF)
            err = DSP_ENOMEM;
        const json_t *v = json_object_get(meta, c->cols[i]);
        if (!err && v)
            err = csv_value(fp, v, c->sep[0]);
    }
    if (!err)
        err = csv_row_end(c, fp);
    if (fp && fclose(fp) != 0 && !err)
        err = DSP_ENOMEM;
    json_decref(meta);
    if (!err)
        err = builtin_sink_file_write(node, c->out, item, row, len);
    else
        err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    free(row);
    return err;
}

static int csv_flush(dsp_node *node)
{
    csv_ctx *c = dsp_node_priv(node);
    return builtin_sink_file_commit(node, c->out);
}

static void csv_fini(dsp_node *node)
{
    csv_ctx *c = dsp_node_priv(node);
    builtin_sink_file_close(node, &c->out);
    for (int i = 0; c->cols && i < c->n_cols; i++)
        free(c->cols[i]);
    free(c->cols);
}

const dsp_op_def builtin_csv_write_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "csv.write",
    .doc = "write chosen meta keys of each packet as one row of a CSV file (RFC 4180, atomic, resumable)",
    .inputs = csv_in,
    .params = csv_params,
    .priv_size = sizeof(csv_ctx),
    .flags = DSP_OP_SINK,
    .init = csv_init,
    .process = csv_process,
    .flush = csv_flush,
    .fini = csv_fini,
};
