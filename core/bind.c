/* bind.c - a .pipe file's args: command-line values bound, then $name substituted. */
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

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
        if (!(name = dspi_pfile_strndup(pf, s, (size_t)(eq - s))))
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
