/* context.c - the dsp_context: plugin search path, plugin loader and operator registry. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#ifndef DSP_PLUGIN_DIR
#define DSP_PLUGIN_DIR "/usr/local/lib/dspipe/plugins"
#endif

/* The smallest descriptor and operator definition this host understands:
 * everything up to the field it reads last. Later ABI 1 plugins may be
 * larger (fields appended), never smaller. */
#define PLUGIN_DESC_MIN_SIZE (offsetof(dsp_plugin_desc, ops) + sizeof(void *))
#define OP_DEF_MIN_SIZE (offsetof(dsp_op_def, fini) + sizeof(void *))

int dsp_context_new(dsp_context **out)
{
    dsp_context *ctx = calloc(1, sizeof(*ctx));
    *out = NULL;
    if (!ctx)
        return DSP_ENOMEM;
    ctx->errmsg = strdup("");
    if (!ctx->errmsg) {
        free(ctx);
        return DSP_ENOMEM;
    }
    *out = ctx;
    return 0;
}

void dsp_context_free(dsp_context **pctx)
{
    dsp_context *ctx = pctx ? *pctx : NULL;
    if (!ctx)
        return;
    dspi_device_close(ctx);
    for (int i = 0; i < ctx->n_plugins; i++) {
        if (ctx->plugins[i].handle)
            dlclose(ctx->plugins[i].handle);
        free(ctx->plugins[i].origin);
    }
    for (int i = 0; i < ctx->n_dirs; i++)
        free(ctx->dirs[i]);
    free(ctx->dirs);
    free(ctx->plugins);
    free(ctx->ops);
    free(ctx->errmsg);
    free(ctx);
    *pctx = NULL;
}

const char *dsp_context_errmsg(const dsp_context *ctx)
{
    return ctx && ctx->errmsg ? ctx->errmsg : "";
}

void dspi_set_error_owned(dsp_context *ctx, char *msg)
{
    if (!msg)
        return;                 /* keep the old message rather than none */
    free(ctx->errmsg);
    ctx->errmsg = msg;
}

void dspi_set_error(dsp_context *ctx, const char *fmt, ...)
{
    dspi_str b = { 0 };
    va_list ap;
    va_start(ap, fmt);
    dspi_str_vprintf(&b, fmt, ap);
    va_end(ap);
    dspi_set_error_owned(ctx, dspi_str_take(&b));
}

int dsp_context_add_plugin_dir(dsp_context *ctx, const char *dir)
{
    char **dirs = realloc(ctx->dirs, (ctx->n_dirs + 1) * sizeof(*dirs));
    if (!dirs)
        return DSP_ENOMEM;
    ctx->dirs = dirs;
    if (!(dirs[ctx->n_dirs] = strdup(dir)))
        return DSP_ENOMEM;
    ctx->n_dirs++;
    return 0;
}

/* ---- operator registry ---------------------------------------------------- */

static int opreg_cmp(const void *a, const void *b)
{
    return strcmp(((const dspi_opreg *)a)->op->name,
                  ((const dspi_opreg *)b)->op->name);
}

static int opname_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const dspi_opreg *)elem)->op->name);
}

static const dspi_opreg *find_reg(const dsp_context *ctx, const char *name)
{
    if (!ctx->n_ops)
        return NULL;
    return bsearch(name, ctx->ops, ctx->n_ops, sizeof(*ctx->ops), opname_cmp);
}

const dsp_op_def *dsp_context_find_op(const dsp_context *ctx, const char *name)
{
    const dspi_opreg *r = find_reg(ctx, name);
    return r ? r->op : NULL;
}

const dsp_op_def *dsp_context_op_at(const dsp_context *ctx, int i)
{
    return i >= 0 && i < ctx->n_ops ? ctx->ops[i].op : NULL;
}

static const dspi_opreg *reg_of(const dsp_context *ctx, const dsp_op_def *op)
{
    for (int i = 0; i < ctx->n_ops; i++)
        if (ctx->ops[i].op == op)
            return &ctx->ops[i];
    return NULL;
}

const char *dsp_context_op_origin(const dsp_context *ctx, const dsp_op_def *op)
{
    const dspi_opreg *r = reg_of(ctx, op);
    return r ? r->origin : NULL;
}

const dsp_plugin_desc *dsp_context_op_plugin(const dsp_context *ctx,
                                             const dsp_op_def *op)
{
    const dspi_opreg *r = reg_of(ctx, op);
    return r ? r->plugin : NULL;
}

const dsp_plugin_desc *dsp_context_plugin_at(const dsp_context *ctx, int i,
                                             const char **origin)
{
    if (i < 0 || i >= ctx->n_plugins)
        return NULL;
    if (origin)
        *origin = ctx->plugins[i].origin;
    return ctx->plugins[i].desc;
}

int dsp_op_write_help(const dsp_context *ctx, const dsp_op_def *op, FILE *out)
{
    return dspi_write_inspect(ctx, op, out);
}

/* ---- descriptor checks ---------------------------------------------------- */

static int count_ports(const dsp_port_def *p)
{
    int n = 0;
    while (p && p[n].name)
        n++;
    return n;
}

static int check_ports(const dsp_op_def *op, const dsp_port_def *ports,
                       int is_input, dspi_str *why)
{
    int n = count_ports(ports);
    for (int i = 0; i < n; i++) {
        if (!ports[i].type || !ports[i].type[0]) {
            dspi_str_printf(why, "port '%s' has no type", ports[i].name);
            return DSP_EABI;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(ports[i].name, ports[j].name)) {
                dspi_str_printf(why, "port name '%s' is used twice", ports[i].name);
                return DSP_EABI;
            }
        if ((ports[i].flags & DSP_PORT_VARIADIC) && (!is_input || i != n - 1)) {
            dspi_str_printf(why, "port '%s': only the last input port may be variadic",
                            ports[i].name);
            return DSP_EABI;
        }
    }
    return 0;
}

/* Everything the scheduler and parser rely on, checked once at load time
 * so a broken table is refused with a reason instead of crashing later. */
static int check_op(const dsp_op_def *op, dspi_str *why)
{
    int n_in, err;
    char *perr = NULL;

    if (op->struct_size < OP_DEF_MIN_SIZE) {
        dspi_str_printf(why, "operator definition is %u bytes, at least %zu expected",
                        (unsigned)op->struct_size, (size_t)OP_DEF_MIN_SIZE);
        return DSP_EABI;
    }
    if (!op->name || !op->name[0]) {
        dspi_str_append(why, "an operator has no name");
        return DSP_EABI;
    }
    dspi_str_printf(why, "operator '%s': ", op->name);
    n_in = count_ports(op->inputs);
    if (!op->process && !op->process_batch) {
        dspi_str_append(why, "no process callback");
        return DSP_EABI;
    }
    if ((op->flags & DSP_OP_SOURCE) && (n_in > 0 || !op->process)) {
        dspi_str_append(why, "a source has no inputs and a process callback");
        return DSP_EABI;
    }
    if (!(op->flags & DSP_OP_SOURCE) && n_in == 0) {
        dspi_str_append(why, "has no inputs but is not flagged DSP_OP_SOURCE");
        return DSP_EABI;
    }
    if (op->flags & DSP_OP_BATCHABLE) {
        if (n_in != 1 || (op->inputs[0].flags & DSP_PORT_VARIADIC)) {
            dspi_str_append(why, "a batchable operator has exactly one input port");
            return DSP_EABI;
        }
        if (op->max_batch < 1) {
            dspi_str_append(why, "batchable but max_batch < 1");
            return DSP_EABI;
        }
    } else if (!op->process) {
        dspi_str_append(why, "process_batch without DSP_OP_BATCHABLE");
        return DSP_EABI;
    }
    if ((err = check_ports(op, op->inputs, 1, why)) < 0 ||
        (err = check_ports(op, op->outputs, 0, why)) < 0)
        return err;
    if ((err = dspi_params_check_table(op, &perr)) < 0) {
        dspi_str_append(why, perr ? perr : "bad parameter table");
        free(perr);
        return err;
    }
    why->len = 0;
    if (why->s)
        why->s[0] = 0;
    return 0;
}

/* Validate a descriptor and, only if every operator is acceptable, add
 * them all: a plugin is registered whole or not at all. */
static int register_desc(dsp_context *ctx, const dsp_plugin_desc *desc,
                         const char *origin, void *handle)
{
    dspi_str why = { 0 };
    int n = 0, err = 0;
    dspi_plugin *pl;
    dspi_opreg *ops;
    char *orig;

    if (!desc) {
        dspi_set_error(ctx, "%s: dsp_plugin_entry() returned NULL", origin);
        return DSP_EABI;
    }
    if (desc->abi_version != DSP_PLUGIN_ABI_VERSION) {
        dspi_set_error(ctx, "%s: plugin '%s' %s was built for plugin ABI %u, "
                       "this dspipe %s expects ABI %u; rebuild the plugin against this dspipe",
                       origin, desc->struct_size >= PLUGIN_DESC_MIN_SIZE && desc->name
                       ? desc->name : "?",
                       desc->struct_size >= PLUGIN_DESC_MIN_SIZE && desc->version
                       ? desc->version : "?",
                       (unsigned)desc->abi_version, DSP_VERSION_STRING,
                       (unsigned)DSP_PLUGIN_ABI_VERSION);
        return DSP_EABI;
    }
    if (desc->struct_size < PLUGIN_DESC_MIN_SIZE || !desc->name || !desc->ops) {
        dspi_set_error(ctx, "%s: malformed plugin descriptor (size %u, name %s, ops %s)",
                       origin, (unsigned)desc->struct_size,
                       desc->name ? desc->name : "missing", desc->ops ? "set" : "missing");
        return DSP_EABI;
    }
    for (n = 0; desc->ops[n]; n++) {
        const dsp_op_def *op = desc->ops[n];
        const dspi_opreg *prev;
        if ((err = check_op(op, &why)) < 0) {
            dspi_set_error(ctx, "%s: plugin '%s' %s: %s", origin, desc->name,
                           desc->version ? desc->version : "?", why.s ? why.s : "");
            goto fail;
        }
        if ((prev = find_reg(ctx, op->name))) {
            dspi_set_error(ctx, "%s: operator '%s' of plugin '%s' %s is already provided "
                           "by %s (plugin '%s' %s); not loading %s",
                           origin, op->name, desc->name, desc->version ? desc->version : "?",
                           prev->origin, prev->plugin->name,
                           prev->plugin->version ? prev->plugin->version : "?", origin);
            err = DSP_EEXIST;
            goto fail;
        }
        for (int j = 0; j < n; j++)
            if (!strcmp(desc->ops[j]->name, op->name)) {
                dspi_set_error(ctx, "%s: plugin '%s' defines operator '%s' twice",
                               origin, desc->name, op->name);
                err = DSP_EEXIST;
                goto fail;
            }
    }
    dspi_str_free(&why);

    pl = realloc(ctx->plugins, (ctx->n_plugins + 1) * sizeof(*pl));
    if (!pl)
        return DSP_ENOMEM;
    ctx->plugins = pl;
    ops = realloc(ctx->ops, (ctx->n_ops + n) * sizeof(*ops));
    if (!ops)
        return DSP_ENOMEM;
    ctx->ops = ops;
    if (!(orig = strdup(origin)))
        return DSP_ENOMEM;
    pl[ctx->n_plugins++] = (dspi_plugin){ orig, handle, desc };
    for (int i = 0; i < n; i++)
        ops[ctx->n_ops++] = (dspi_opreg){ desc->ops[i], desc, orig };
    qsort(ctx->ops, ctx->n_ops, sizeof(*ctx->ops), opreg_cmp);
    dsp_log(DSP_LOG_VERBOSE, "loader", "loaded %s: plugin '%s' %s, %d operator%s",
            origin, desc->name, desc->version ? desc->version : "", n, n == 1 ? "" : "s");
    return 0;

fail:
    dspi_str_free(&why);
    return err;
}

int dsp_context_register(dsp_context *ctx, const dsp_plugin_desc *desc,
                         const char *origin)
{
    return register_desc(ctx, desc, origin ? origin : "built-in", NULL);
}

int dsp_context_load_plugin(dsp_context *ctx, const char *path)
{
    void *h;
    dsp_plugin_entry_fn entry;
    int err;

    /* dlopen searches LD_LIBRARY_PATH for bare names; a plugin file is
     * always a path, so make that explicit. */
    if (!strchr(path, '/')) {
        dspi_str p = { 0 };
        dspi_str_printf(&p, "./%s", path);
        if (p.oom) {
            dspi_str_free(&p);
            return DSP_ENOMEM;
        }
        err = dsp_context_load_plugin(ctx, p.s);
        dspi_str_free(&p);
        return err;
    }
    if (access(path, R_OK) < 0) {
        dspi_set_error(ctx, "%s: cannot read plugin: %s", path, strerror(errno));
        return DSP_ENOENT;
    }
    if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        dspi_set_error(ctx, "%s: cannot load plugin: %s", path, dlerror());
        return DSP_EABI;
    }
    *(void **)&entry = dlsym(h, DSP_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        dspi_set_error(ctx, "%s: not a dspipe plugin: it exports no %s() "
                       "(define one with DSP_PLUGIN_DEFINE)", path, DSP_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return DSP_ENOENT;
    }
    if ((err = register_desc(ctx, entry(), path, h)) < 0) {
        dlclose(h);
        return err;
    }
    return 0;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && !strcmp(s + n - m, suf);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int loaded_basename(const dsp_context *ctx, const char *name)
{
    for (int i = 0; i < ctx->n_plugins; i++) {
        const char *o = ctx->plugins[i].origin, *sl = strrchr(o, '/');
        if (!strcmp(sl ? sl + 1 : o, name))
            return 1;
    }
    return 0;
}

/* Load the *.so files of one directory in name order. A file whose name was
 * already loaded from an earlier directory is skipped: earlier directories
 * override later ones (an in-tree build over the installed plugins). */
static int load_dir(dsp_context *ctx, const char *dir, int *failed)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    int n = 0, cap = 0, err = 0;

    if (!d) {
        dsp_log(errno == ENOENT ? DSP_LOG_VERBOSE : DSP_LOG_WARNING, "loader",
                "plugin directory %s: %s", dir, strerror(errno));
        return 0;
    }
    while ((e = readdir(d))) {
        if (!has_suffix(e->d_name, ".so"))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof(*nn));
            if (!nn) {
                err = DSP_ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            err = DSP_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (!err)
        qsort(names, n, sizeof(*names), str_cmp);
    for (int i = 0; i < n && !err; i++) {
        dspi_str path = { 0 };
        if (loaded_basename(ctx, names[i])) {
            dsp_log(DSP_LOG_VERBOSE, "loader", "%s/%s: skipped, a plugin of that name "
                    "was loaded from an earlier directory", dir, names[i]);
            continue;
        }
        dspi_str_printf(&path, "%s/%s", dir, names[i]);
        if (path.oom)
            err = DSP_ENOMEM;
        else if (dsp_context_load_plugin(ctx, path.s) < 0) {
            dsp_log(DSP_LOG_ERROR, "loader", "%s", ctx->errmsg);
            (*failed)++;
        }
        dspi_str_free(&path);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return err;
}

int dsp_context_load_plugins(dsp_context *ctx)
{
    int failed = 0, err = 0;
    const char *env = getenv("DSPIPE_PLUGIN_PATH");

    for (int i = 0; i < ctx->n_dirs && !err; i++)
        err = load_dir(ctx, ctx->dirs[i], &failed);
    if (env && *env && !err) {
        char *copy = strdup(env), *save = NULL;
        if (!copy)
            return DSP_ENOMEM;
        for (char *tok = strtok_r(copy, ":", &save); tok && !err;
             tok = strtok_r(NULL, ":", &save))
            if (*tok)
                err = load_dir(ctx, tok, &failed);
        free(copy);
    }
    if (!err && !getenv("DSPIPE_NO_DEFAULT_PLUGINS"))
        err = load_dir(ctx, DSP_PLUGIN_DIR, &failed);
    return err < 0 ? err : failed;
}

/* ---- "did you mean" -------------------------------------------------------- */

int dspi_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    int row[128], *d = row;
    int res;

    if (m + 1 > DSPI_ARRAY_LEN(row) && !(d = malloc((m + 1) * sizeof(int))))
        return (int)DSPI_MAX(n, m);
    for (size_t j = 0; j <= m; j++)
        d[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = d[0];
        d[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = d[j];
            int sub = diag + (a[i - 1] != b[j - 1]);
            int best = DSPI_MIN(up + 1, d[j - 1] + 1);
            d[j] = DSPI_MIN(best, sub);
            diag = up;
        }
    }
    res = d[m];
    if (d != row)
        free(d);
    return res;
}

const char *dspi_nearest(const char *name, const char *const *cands, int n)
{
    const char *best = NULL;
    int best_d = 1 << 30;
    /* a suggestion must keep something of the name: 'w' is not a typo of 'g' */
    int limit = DSPI_MIN(DSPI_MAX(2, (int)strlen(name) / 3), (int)strlen(name) - 1);

    for (int i = 0; i < n; i++) {
        int d = dspi_edit_distance(name, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best_d <= limit ? best : NULL;
}
