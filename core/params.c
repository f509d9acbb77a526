/* params.c - operator parameters: parse text values, check ranges and tables, store, describe. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "internal.h"

/* One parsed scalar, before it is copied into the private state. */
typedef union pvalue {
    int64_t i;
    double f;
    int b;
    char *s;        /* malloc'd */
} pvalue;

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d)
        memcpy(d, s, n);
    return d;
}

static int has_range(const dsp_param_def *def)
{
    return !(def->min == 0 && def->max == 0);
}

static const char *type_name(dsp_param_type t)
{
    switch (t) {
    case DSP_PARAM_INT:    return "int";
    case DSP_PARAM_FLOAT:  return "float";
    case DSP_PARAM_BOOL:   return "bool";
    case DSP_PARAM_STRING: return "string";
    case DSP_PARAM_PATH:   return "path";
    case DSP_PARAM_ENUM:   return "enum";
    case DSP_PARAM_LIST:   return "list";
    }
    return "?";
}

static int scalar_type_ok(dsp_param_type t)
{
    return t >= DSP_PARAM_INT && t <= DSP_PARAM_ENUM;
}

static int elem_type_ok(dsp_param_type t)
{
    return t == DSP_PARAM_INT || t == DSP_PARAM_FLOAT ||
           t == DSP_PARAM_STRING || t == DSP_PARAM_PATH;
}

static size_t storage_size(dsp_param_type t)
{
    switch (t) {
    case DSP_PARAM_INT:    return sizeof(int64_t);
    case DSP_PARAM_FLOAT:  return sizeof(double);
    case DSP_PARAM_BOOL:
    case DSP_PARAM_ENUM:   return sizeof(int);
    case DSP_PARAM_STRING:
    case DSP_PARAM_PATH:   return sizeof(char *);
    case DSP_PARAM_LIST:   return sizeof(dsp_list);
    }
    return 0;
}

/* ---- scalar parsers: 0 or DSP_EINVAL with *err (and maybe *hint) -------- */

static int parse_int(const char *s, int64_t *out, char **err)
{
    const char *p = s;
    int neg = 0, base = 10;
    unsigned long long u;
    char *end;

    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    /* strtoull would skip spaces and accept a second sign: refuse both. */
    if (!(base == 16 ? ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                        (*p >= 'A' && *p <= 'F'))
                     : (*p >= '0' && *p <= '9'))) {
        *err = dspi_fmt("'%s' is not an integer", s);
        return DSP_EINVAL;
    }
    errno = 0;
    u = strtoull(p, &end, base);
    if (*end) {
        *err = dspi_fmt("'%s' is not an integer (unexpected '%s')", s, end);
        return DSP_EINVAL;
    }
    if (errno == ERANGE || (!neg && u > (unsigned long long)INT64_MAX) ||
        (neg && u > (unsigned long long)INT64_MAX + 1)) {
        *err = dspi_fmt("integer '%s' does not fit in 64 bits", s);
        return DSP_EINVAL;
    }
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

static int parse_float(const char *s, double *out, char **err)
{
    char *end;
    double v;

    /* strtod skips leading spaces and accepts "nan"/"inf": a parameter file
     * should say what it means, so both are refused. */
    if (!*s || !(strchr("+-.0123456789", *s))) {
        *err = dspi_fmt("'%s' is not a number", s);
        return DSP_EINVAL;
    }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end) {
        *err = dspi_fmt("'%s' is not a number", s);
        return DSP_EINVAL;
    }
    if (errno == ERANGE && fabs(v) > 1.0) {
        *err = dspi_fmt("number '%s' is too large", s);
        return DSP_EINVAL;
    }
    if (!isfinite(v)) {
        *err = dspi_fmt("'%s' is not a finite number", s);
        return DSP_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out, char **err, char **hint)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };

    for (size_t i = 0; i < DSPI_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    *err = dspi_fmt("'%s' is not a boolean", s);
    *hint = xstrdup("use true/false, yes/no, on/off or 1/0");
    return DSP_EINVAL;
}

static int parse_enum(const dsp_param_def *def, const char *s, int *out,
                      char **err, char **hint)
{
    dspi_str list = { 0 };
    const char *near;
    int n = 0;

    for (; def->choices && def->choices[n]; n++) {
        if (strcmp(def->choices[n], s) == 0) {
            *out = n;
            return 0;
        }
    }
    for (int i = 0; i < n; i++)
        dspi_str_printf(&list, "%s%s", i ? ", " : "", def->choices[i]);
    *err = dspi_fmt("'%s' is not one of: %s", s, list.s ? list.s : "");
    dspi_str_free(&list);
    near = n ? dspi_nearest(s, def->choices, n) : NULL;
    if (near)
        *hint = dspi_fmt("did you mean '%s'?", near);
    return DSP_EINVAL;
}

static int expand_path(const char *s, char **out)
{
    const char *home = getenv("HOME");

    if (home && *home && s[0] == '~' && (s[1] == '/' || s[1] == '\0'))
        *out = dspi_fmt("%s%s", home, s + 1);
    else
        *out = xstrdup(s);
    return *out ? 0 : DSP_ENOMEM;
}

static int check_range(const dsp_param_def *def, double v, const char *text,
                       char **err, char **hint)
{
    if (!has_range(def) || (v >= def->min && v <= def->max))
        return 0;
    *err = dspi_fmt("value %s is out of range [%g, %g]", text, def->min, def->max);
    *hint = dspi_fmt("allowed: %g to %g", def->min, def->max);
    return DSP_EINVAL;
}

/* Parse one scalar of type t (range and choices from def). check_exist
 * stats MUST_EXIST paths: done for values from a file, not for table
 * defaults, which are checked when the plugin loads. */
static int parse_scalar(const dsp_param_def *def, dsp_param_type t,
                        const char *s, int check_exist, pvalue *v,
                        char **err, char **hint)
{
    char buf[64];
    struct stat st;
    int ret;

    switch (t) {
    case DSP_PARAM_INT:
        if ((ret = parse_int(s, &v->i, err)) < 0)
            return ret;
        snprintf(buf, sizeof(buf), "%lld", (long long)v->i);
        return check_range(def, (double)v->i, buf, err, hint);
    case DSP_PARAM_FLOAT:
        if ((ret = parse_float(s, &v->f, err)) < 0)
            return ret;
        return check_range(def, v->f, s, err, hint);
    case DSP_PARAM_BOOL:
        return parse_bool(s, &v->b, err, hint);
    case DSP_PARAM_ENUM:
        return parse_enum(def, s, &v->b, err, hint);
    case DSP_PARAM_STRING:
        v->s = xstrdup(s);
        return v->s ? 0 : DSP_ENOMEM;
    case DSP_PARAM_PATH:
        if (!*s) {
            *err = xstrdup("empty path");
            return DSP_EINVAL;
        }
        if ((ret = expand_path(s, &v->s)) < 0)
            return ret;
        if (check_exist && (def->flags & DSP_PARAM_MUST_EXIST) &&
            stat(v->s, &st) != 0) {
            *err = dspi_fmt("%s: %s", v->s, strerror(errno));
            *hint = xstrdup("this parameter needs an existing file or "
                            "directory (relative paths are relative to the "
                            "current directory; use $pipedir/... for files "
                            "beside the .pipe file)");
            free(v->s);
            v->s = NULL;
            return DSP_EINVAL;
        }
        return 0;
    case DSP_PARAM_LIST:
        break;
    }
    *err = dspi_fmt("parameter type %d is unknown", (int)t);
    return DSP_EINVAL;
}

static void list_free(dsp_list *l)
{
    if (l->s) {
        for (int k = 0; k < l->n; k++)
            free(l->s[k]);
    }
    free(l->i);
    free(l->f);
    free(l->s);
    memset(l, 0, sizeof(*l));
}

static void param_free_one(const dsp_param_def *def, void *priv)
{
    char *base = priv;

    if (def->type == DSP_PARAM_STRING || def->type == DSP_PARAM_PATH) {
        char *s;
        memcpy(&s, base + def->offset, sizeof(s));
        free(s);
        s = NULL;
        memcpy(base + def->offset, &s, sizeof(s));
    } else if (def->type == DSP_PARAM_LIST) {
        dsp_list l;
        memcpy(&l, base + def->offset, sizeof(l));
        list_free(&l);
        memcpy(base + def->offset, &l, sizeof(l));
    }
}

static int store_list(const dsp_param_def *def, void *priv,
                      const char *const *items, int n, int check_exist,
                      char **err, char **hint)
{
    dsp_list l = { 0 };
    size_t cnt = n > 0 ? (size_t)n : 1;
    int ret = 0;

    l.n = n;
    if (def->elem == DSP_PARAM_INT)
        l.i = calloc(cnt, sizeof(*l.i));
    else if (def->elem == DSP_PARAM_FLOAT)
        l.f = calloc(cnt, sizeof(*l.f));
    else
        l.s = calloc(cnt, sizeof(*l.s));
    if (!l.i && !l.f && !l.s)
        return DSP_ENOMEM;
    for (int k = 0; k < n; k++) {
        pvalue v = { 0 };
        char *e = NULL;

        ret = parse_scalar(def, def->elem, items[k], check_exist, &v, &e, hint);
        if (ret < 0) {
            *err = e ? dspi_fmt("list element %d: %s", k + 1, e) : NULL;
            free(e);
            l.n = k;
            list_free(&l);
            return ret;
        }
        if (l.i)
            l.i[k] = v.i;
        else if (l.f)
            l.f[k] = v.f;
        else
            l.s[k] = v.s;
    }
    param_free_one(def, priv);
    memcpy((char *)priv + def->offset, &l, sizeof(l));
    return 0;
}

static int store(const dsp_param_def *def, void *priv,
                 const char *const *items, int n, int check_exist,
                 char **err, char **hint)
{
    char *base = priv;
    pvalue v = { 0 };
    int ret;

    *err = NULL;
    *hint = NULL;
    if (def->type == DSP_PARAM_LIST)
        return store_list(def, priv, items, n, check_exist, err, hint);
    if (n != 1) {
        *err = dspi_fmt("expects a single %s, not a list", type_name(def->type));
        return DSP_EINVAL;
    }
    if ((ret = parse_scalar(def, def->type, items[0], check_exist, &v, err,
                            hint)) < 0)
        return ret;
    switch (def->type) {
    case DSP_PARAM_INT:
        memcpy(base + def->offset, &v.i, sizeof(v.i));
        break;
    case DSP_PARAM_FLOAT:
        memcpy(base + def->offset, &v.f, sizeof(v.f));
        break;
    case DSP_PARAM_BOOL:
    case DSP_PARAM_ENUM:
        memcpy(base + def->offset, &v.b, sizeof(v.b));
        break;
    default:
        /* a value given twice replaces the first without leaking it */
        param_free_one(def, priv);
        memcpy(base + def->offset, &v.s, sizeof(v.s));
        break;
    }
    return 0;
}

int dspi_param_store(const dsp_param_def *def, void *priv,
                     const char *const *items, int n, const char *base_dir,
                     char **err, char **hint)
{
    (void)base_dir;  /* relative paths stay relative to the current directory */
    return store(def, priv, items, n, 1, err, hint);
}

/* ---- defaults, which are written as in a .pipe file --------------------- */

/* Unquote a default: "a \"b\"" -> a "b". Bare text is copied. */
static char *unquote(const char *s, size_t n)
{
    dspi_str b = { 0 };

    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        for (size_t k = 1; k + 1 < n; k++) {
            char c = s[k];
            if (c == '\\' && k + 2 < n) {
                c = s[++k];
                c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            }
            dspi_str_appendn(&b, &c, 1);
        }
    } else {
        dspi_str_appendn(&b, s, n);
    }
    if (b.oom) {
        dspi_str_free(&b);
        return NULL;
    }
    return dspi_str_take(&b);
}

/* Split a default into items: "[1, 2]" or "1, 2" for lists, else one item. */
static int split_default(const dsp_param_def *def, char ***items, int *n)
{
    const char *s = def->def, *end;
    char **v = NULL;
    int cnt = 0;

    if (def->type != DSP_PARAM_LIST) {
        v = calloc(1, sizeof(*v));
        if (!v || !(v[0] = unquote(s, strlen(s)))) {
            free(v);
            return DSP_ENOMEM;
        }
        *items = v;
        *n = 1;
        return 0;
    }
    while (*s == ' ')
        s++;
    end = s + strlen(s);
    if (*s == '[') {
        s++;
        while (end > s && end[-1] == ' ')
            end--;
        if (end > s && end[-1] == ']')
            end--;
    }
    for (const char *p = s; p < end;) {
        const char *q = p;
        int inq = 0;
        char **nv;

        while (q < end && (inq || *q != ',')) {
            if (*q == '"' && (q == p || q[-1] != '\\'))
                inq = !inq;
            q++;
        }
        nv = realloc(v, (size_t)(cnt + 1) * sizeof(*v));
        if (!nv || !(nv[cnt] = unquote(p, (size_t)(q - p)))) {
            v = nv ? nv : v;
            goto oom;
        }
        v = nv;
        if (!*v[cnt] && q == end && cnt == 0) {
            free(v[cnt]);       /* "[]" is the empty list */
            break;
        }
        cnt++;
        p = q < end ? q + 1 : q;
    }
    *items = v;
    *n = cnt;
    return 0;

oom:
    for (int k = 0; k < cnt; k++)
        free(v[k]);
    free(v);
    return DSP_ENOMEM;
}

static void free_items(char **items, int n)
{
    for (int k = 0; k < n; k++)
        free(items[k]);
    free(items);
}

static int store_default(const dsp_param_def *def, void *priv, char **err,
                         char **hint)
{
    char **items = NULL;
    int n = 0, ret;

    *err = *hint = NULL;
    /* a PATH defaulting to "" is optional: unset, stored as NULL */
    if (def->type == DSP_PARAM_PATH && !def->def[0])
        return 0;
    if ((ret = split_default(def, &items, &n)) < 0)
        return ret;
    ret = store(def, priv, (const char *const *)items, n, 0, err, hint);
    free_items(items, n);
    return ret;
}

int dspi_params_store_defaults(const dsp_op_def *op, void *priv,
                               const unsigned char *given)
{
    for (int k = 0; op->params && op->params[k].name; k++) {
        const dsp_param_def *def = &op->params[k];
        char *err, *hint;
        int ret;

        if ((given && given[k]) || !def->def)
            continue;
        ret = store_default(def, priv, &err, &hint);
        free(err);
        free(hint);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void dspi_params_free(const dsp_op_def *op, void *priv)
{
    if (!op || !priv)
        return;
    for (int k = 0; op->params && op->params[k].name; k++)
        param_free_one(&op->params[k], priv);
}

/* ---- the table checker, run by the loader on every operator ------------- */

static int valid_name(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    }
    return 1;
}

static int check_one(const dsp_op_def *op, int k, void *scratch, char **why)
{
    const dsp_param_def *def = &op->params[k];
    char *e = NULL, *h = NULL;
    int ret;

    if (!valid_name(def->name)) {
        *why = xstrdup("the name is not an identifier ([A-Za-z_][A-Za-z0-9_]*)");
        return DSP_EABI;
    }
    for (int j = 0; j < k; j++) {
        if (strcmp(op->params[j].name, def->name) == 0) {
            *why = dspi_fmt("declared twice (entries %d and %d)", j + 1, k + 1);
            return DSP_EABI;
        }
    }
    if (!scalar_type_ok(def->type) && def->type != DSP_PARAM_LIST) {
        *why = dspi_fmt("unknown type %d", (int)def->type);
        return DSP_EABI;
    }
    if (def->type == DSP_PARAM_LIST && !elem_type_ok(def->elem)) {
        *why = dspi_fmt("a list needs elem INT, FLOAT, STRING or PATH (got %d)",
                       (int)def->elem);
        return DSP_EABI;
    }
    if (def->type == DSP_PARAM_ENUM && (!def->choices || !def->choices[0])) {
        *why = xstrdup("an enum without choices");
        return DSP_EABI;
    }
    if (has_range(def) && !(def->min <= def->max)) {
        *why = dspi_fmt("min %g is above max %g", def->min, def->max);
        return DSP_EABI;
    }
    if (def->offset + storage_size(def->type) > op->priv_size) {
        *why = dspi_fmt("offset %zu + %zu bytes lies outside priv_size %zu",
                       def->offset, storage_size(def->type), op->priv_size);
        return DSP_EABI;
    }
    if (!def->def)
        return 0;
    ret = store_default(def, scratch, &e, &h);
    if (ret == DSP_ENOMEM)
        return ret;
    if (ret < 0)
        *why = dspi_fmt("default '%s' is invalid: %s", def->def, e ? e : "");
    free(e);
    free(h);
    return ret < 0 ? DSP_EABI : 0;
}

int dspi_params_check_table(const dsp_op_def *op, char **err)
{
    void *scratch;
    char *why = NULL;
    int ret = 0, k;

    *err = NULL;
    if (!op->params)
        return 0;
    scratch = calloc(1, DSPI_MAX(op->priv_size, 1));
    if (!scratch)
        return DSP_ENOMEM;
    for (k = 0; op->params[k].name; k++) {
        if ((ret = check_one(op, k, scratch, &why)) < 0)
            break;
    }
    /* Free what the entries that passed stored; a failing entry stored
     * nothing, and its offset may not even be valid. */
    for (int j = 0; j < k; j++)
        param_free_one(&op->params[j], scratch);
    free(scratch);
    if (ret == DSP_EABI)
        *err = dspi_fmt("operator '%s': parameter '%s': %s",
                       op->name ? op->name : "?",
                       op->params[k].name ? op->params[k].name : "?",
                       why ? why : "invalid");
    free(why);
    return ret;
}

/* ---- describing and formatting ------------------------------------------ */

static void describe_range(const dsp_param_def *def, dsp_param_type t,
                           dspi_str *out)
{
    if ((t == DSP_PARAM_INT || t == DSP_PARAM_FLOAT) && has_range(def))
        dspi_str_printf(out, " in [%g, %g]", def->min, def->max);
}

void dspi_param_describe_type(const dsp_param_def *def, dspi_str *out)
{
    switch (def->type) {
    case DSP_PARAM_ENUM:
        dspi_str_append(out, "enum: ");
        for (int k = 0; def->choices && def->choices[k]; k++)
            dspi_str_printf(out, "%s%s", k ? "|" : "", def->choices[k]);
        return;
    case DSP_PARAM_LIST:
        dspi_str_printf(out, "list of %s", type_name(def->elem));
        describe_range(def, def->elem, out);
        break;
    default:
        dspi_str_append(out, type_name(def->type));
        describe_range(def, def->type, out);
        break;
    }
    if ((def->flags & DSP_PARAM_MUST_EXIST) &&
        (def->type == DSP_PARAM_PATH ||
         (def->type == DSP_PARAM_LIST && def->elem == DSP_PARAM_PATH)))
        dspi_str_append(out, " (must exist)");
}

static void format_float(double v, dspi_str *out)
{
    char buf[64];

    /* shortest text that reads back as the same double */
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    dspi_str_append(out, buf);
}

void dspi_param_format_value(const dsp_param_def *def, const void *priv,
                             dspi_str *out)
{
    const char *base = priv;
    int64_t i;
    double f;
    int b;
    char *s;
    dsp_list l;

    switch (def->type) {
    case DSP_PARAM_INT:
        memcpy(&i, base + def->offset, sizeof(i));
        dspi_str_printf(out, "%lld", (long long)i);
        break;
    case DSP_PARAM_FLOAT:
        memcpy(&f, base + def->offset, sizeof(f));
        format_float(f, out);
        break;
    case DSP_PARAM_BOOL:
        memcpy(&b, base + def->offset, sizeof(b));
        dspi_str_append(out, b ? "true" : "false");
        break;
    case DSP_PARAM_ENUM:
        memcpy(&b, base + def->offset, sizeof(b));
        for (int k = 0; def->choices && def->choices[k]; k++) {
            if (k == b) {
                dspi_str_append(out, def->choices[k]);
                return;
            }
        }
        dspi_str_printf(out, "#%d", b);
        break;
    case DSP_PARAM_STRING:
    case DSP_PARAM_PATH:
        memcpy(&s, base + def->offset, sizeof(s));
        dspi_str_append(out, s ? s : "");
        break;
    case DSP_PARAM_LIST:
        memcpy(&l, base + def->offset, sizeof(l));
        dspi_str_append(out, "[");
        for (int k = 0; k < l.n; k++) {
            if (k)
                dspi_str_append(out, ", ");
            if (l.i)
                dspi_str_printf(out, "%lld", (long long)l.i[k]);
            else if (l.f)
                format_float(l.f[k], out);
            else if (l.s)
                dspi_str_append(out, l.s[k] ? l.s[k] : "");
        }
        dspi_str_append(out, "]");
        break;
    }
}
