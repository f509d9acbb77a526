/* graph.c - turns a parsed .pipe file into a validated dspi_graph: operators, parameters, ports, edges, cycles. */
#include <stdlib.h>
#include <string.h>

#include "parse_int.h"

/* An edge while the graph is built: ports, not yet slots. */
typedef struct bedge {
    int src, src_port, dst, dst_port;
    dspi_span arrow, dst_at;
} bedge;

typedef struct builder {
    dsp_context *ctx;
    dspi_pfile *pf;
    dspi_graph *g;
    unsigned char *broken;  /* per node: declaration failed, stay quiet */
    bedge *edges;
    int n_edges, cap_edges;
    int **port_first;       /* per node, per input port: first edge or -1 */
    int **port_count;
} builder;

static int count_ports(const dsp_port_def *p)
{
    int n = 0;

    while (p && p[n].name)
        n++;
    return n;
}

static int variadic_last(const dsp_op_def *op)
{
    int n = count_ports(op->inputs);

    return n > 0 && (op->inputs[n - 1].flags & DSP_PORT_VARIADIC);
}

static char *port_names(const dsp_port_def *p)
{
    dspi_str b = { 0 };

    for (int k = 0; p && p[k].name; k++)
        dspi_str_printf(&b, "%s%s", k ? ", " : "", p[k].name);
    return dspi_str_take(&b);
}

int dspi_types_compatible(const char *out_type, const char *in_type)
{
    const char *a = out_type ? out_type : "any", *b = in_type ? in_type : "any";

    if (strcmp(a, "any") == 0 || strcmp(b, "any") == 0)
        return 1;
    /* compare ':'-separated components pairwise while both sides have one */
    for (;;) {
        size_t la = strcspn(a, ":"), lb = strcspn(b, ":");
        if (la != lb || memcmp(a, b, la) != 0)
            return 0;
        a += la;
        b += lb;
        if (!*a || !*b)
            return 1;
        a++;
        b++;
    }
}

/* ---- options ------------------------------------------------------------- */

static void build_options(builder *bd)
{
    static const char *const keys[] = { "on_error", "errors", "queue", "journal" };
    dspi_pfile *pf = bd->pf;
    int seen[4] = { 0, 0, 0, 0 };

    for (int k = 0; k < pf->n_opts; k++) {
        dspi_popt *o = &pf->opts[k];
        const char *v;
        int which = -1;

        if (!o->key || o->damaged)
            continue;
        for (int j = 0; j < (int)DSPI_ARRAY_LEN(keys); j++)
            if (strcmp(o->key, keys[j]) == 0)
                which = j;
        if (which < 0) {
            const char *near = dspi_nearest(o->key, keys, (int)DSPI_ARRAY_LEN(keys));
            dspi_diag_add(pf, o->at, near ? dspi_fmt("did you mean '%s'?", near)
                          : dspi_fmt("options are: on_error, errors, queue, journal"),
                          "unknown option '%s'", o->key);
            continue;
        }
        if (seen[which]++) {
            dspi_diag_add(pf, o->at, NULL, "option '%s' is given twice", o->key);
            continue;
        }
        if (o->val.is_list || o->val.n != 1) {
            dspi_diag_add(pf, o->val.at, NULL, "option '%s' takes a single "
                          "value, not a list", o->key);
            continue;
        }
        if (!(v = o->val.items[0].text))
            continue;           /* substitution failed: already reported */
        if (which == 0) {
            if (strcmp(v, "abort") == 0)
                bd->g->on_error = DSP_ON_ERROR_ABORT;
            else if (strcmp(v, "skip") == 0)
                bd->g->on_error = DSP_ON_ERROR_SKIP;
            else
                dspi_diag_add(pf, o->val.at, dspi_fmt("use abort (stop at the "
                              "first failed item) or skip (record it and go on)"),
                              "option on_error: '%s' is not abort or skip", v);
        } else if (which == 1) {
            free(bd->g->errors_path);
            bd->g->errors_path = dspi_fmt("%s", v);
        } else if (which == 3) {
            free(bd->g->journal_path);
            bd->g->journal_path = dspi_fmt("%s", v);
        } else {
            char *end;
            long q = strtol(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || q < 1 || q > 1000000)
                dspi_diag_add(pf, o->val.at, dspi_fmt("packets per edge, "
                              "1 to 1000000"),
                              "option queue: '%s' is not a whole number >= 1", v);
            else
                bd->g->queue_size = (int)q;
        }
    }
}

/* ---- nodes and their parameters ----------------------------------------- */

static int find_param(const dsp_op_def *op, const char *name)
{
    for (int k = 0; op->params && op->params[k].name; k++)
        if (strcmp(op->params[k].name, name) == 0)
            return k;
    return -1;
}

/* Parameters the core adds to every BATCHABLE operator: the scheduler, not
 * the operator, forms the batches. */
typedef struct batch_params {
    int64_t batch;
    int64_t timeout_ms;
} batch_params;

static const dsp_param_def batch_defs[] = {
    { .name = "batch", .type = DSP_PARAM_INT, .offset = offsetof(batch_params, batch),
      .def = "0", .min = 0, .max = 1 << 20,
      .doc = "most packets per call (0: the operator's maximum)" },
    { .name = "batch_timeout_ms", .type = DSP_PARAM_INT,
      .offset = offsetof(batch_params, timeout_ms), .def = "0", .min = 0, .max = 600000,
      .doc = "how long a partial batch waits for more packets (0: run at once)" },
};

static int find_batch_param(const dsp_op_def *op, const char *name)
{
    if (!(op->flags & DSP_OP_BATCHABLE))
        return -1;
    for (int k = 0; k < (int)DSPI_ARRAY_LEN(batch_defs); k++)
        if (strcmp(batch_defs[k].name, name) == 0)
            return k;
    return -1;
}

static char *param_hint(const dsp_op_def *op, const char *name)
{
    const char *names[256];
    const char *near;
    char *all, *hint;
    int n = 0;

    for (; op->params && op->params[n].name && n < 256; n++)
        names[n] = op->params[n].name;
    if (!n)
        return dspi_fmt("%s takes no parameters", op->name);
    near = dspi_nearest(name, names, n);
    all = dspi_join_names(names, n);
    if (near)
        hint = dspi_fmt("did you mean '%s'? %s takes: %s", near, op->name,
                        all ? all : "");
    else
        hint = dspi_fmt("%s takes: %s", op->name, all ? all : "");
    free(all);
    return hint;
}

static void store_param(builder *bd, dspi_gnode *gn, dspi_pparam *p,
                        const dsp_param_def *def, void *dst)
{
    const char **texts;
    char *err = NULL, *hint = NULL;
    dspi_str ty = { 0 };

    if (def->type != DSP_PARAM_LIST && p->val.is_list) {
        dspi_param_describe_type(def, &ty);
        dspi_diag_add(bd->pf, p->val.at, dspi_fmt("%s is %s", p->key, ty.s ? ty.s : ""),
                      "parameter '%s' of node '%s' takes a single value, "
                      "not a list", p->key, gn->name);
        dspi_str_free(&ty);
        return;
    }
    for (int k = 0; k < p->val.n; k++)
        if (!p->val.items[k].text)
            return;             /* substitution failed: already reported */
    if (!(texts = calloc((size_t)DSPI_MAX(p->val.n, 1), sizeof(*texts)))) {
        bd->pf->oom = 1;
        return;
    }
    for (int k = 0; k < p->val.n; k++)
        texts[k] = p->val.items[k].text;
    if (dspi_param_store(def, dst, texts, p->val.n, bd->g->dir, &err,
                         &hint) < 0) {
        dspi_diag_add(bd->pf, p->val.at, hint, "bad value for parameter '%s' "
                      "of node '%s' (%s): %s", p->key, gn->name, gn->op->name,
                      err ? err : "out of memory");
        hint = NULL;
    }
    free(err);
    free(hint);
    free(texts);
}

static void build_node(builder *bd, int k)
{
    dspi_pfile *pf = bd->pf;
    dspi_pnode *nd = &pf->nodes[k];
    dspi_gnode *gn = &bd->g->nodes[k];
    const dsp_op_def *op;
    int *first = NULL, n_defs;

    gn->line = nd->at.line;
    gn->col = nd->at.col;
    gn->name = dspi_fmt("%s", nd->name ? nd->name : "");
    bd->broken[k] = 1;
    if (!nd->name || !nd->op || nd->damaged)
        return;
    for (int j = 0; j < k; j++) {
        if (pf->nodes[j].name && strcmp(pf->nodes[j].name, nd->name) == 0) {
            dspi_diag_add(pf, nd->at, dspi_fmt("first declared at line %d:%d",
                                               pf->nodes[j].at.line,
                                               pf->nodes[j].at.col),
                          "node '%s' is declared twice", nd->name);
            return;
        }
    }
    if (!(op = dsp_context_find_op(bd->ctx, nd->op))) {
        const char **names = malloc(((size_t)DSPI_MAX(bd->ctx->n_ops, 0) + 1) *
                                   sizeof(*names));
        const char *near = NULL;
        if (names) {
            for (int j = 0; j < bd->ctx->n_ops; j++)
                names[j] = bd->ctx->ops[j].op->name;
            near = dspi_nearest(nd->op, names, bd->ctx->n_ops);
        }
        dspi_diag_add(pf, nd->op_at, near ? dspi_fmt("did you mean '%s'?", near)
                      : dspi_fmt("`dspipe plugins` lists the operators that "
                                 "are loaded"),
                      "unknown operator '%s'", nd->op);
        free(names);
        return;
    }
    gn->op = op;
    gn->n_out = count_ports(op->outputs);
    n_defs = 0;
    while (op->params && op->params[n_defs].name)
        n_defs++;
    if (!(gn->priv = calloc(1, DSPI_MAX(op->priv_size, 1))) ||
        !(first = malloc((size_t)(n_defs ? n_defs : 1) * sizeof(*first)))) {
        pf->oom = 1;
        return;
    }
    for (int j = 0; j < n_defs; j++)
        first[j] = -1;
    for (int p = 0; p < nd->n_params; p++) {
        dspi_pparam *pp = &nd->params[p];
        int d;
        if (!pp->key)
            continue;
        if ((d = find_param(op, pp->key)) < 0 && (d = find_batch_param(op, pp->key)) >= 0) {
            batch_params bp = { gn->batch, gn->batch_timeout_ms };
            store_param(bd, gn, pp, &batch_defs[d], &bp);
            if (d == 0 && bp.batch > op->max_batch)
                dspi_diag_add(pf, pp->val.at, dspi_fmt("allowed: 1 to %d", op->max_batch),
                              "batch=%lld is more than %s takes at once", (long long)bp.batch,
                              op->name);
            gn->batch = (int)bp.batch;
            gn->batch_timeout_ms = (int)bp.timeout_ms;
            continue;
        }
        if (d < 0) {
            dspi_diag_add(pf, pp->at, param_hint(op, pp->key), "operator '%s' "
                          "has no parameter '%s'", op->name, pp->key);
            continue;
        }
        if (first[d] >= 0) {
            dspi_diag_add(pf, pp->at, dspi_fmt("first given at line %d:%d",
                                               nd->params[first[d]].at.line,
                                               nd->params[first[d]].at.col),
                          "parameter '%s' of node '%s' is given twice",
                          pp->key, nd->name);
            continue;
        }
        first[d] = p;
        store_param(bd, gn, pp, &op->params[d], gn->priv);
    }
    {
        unsigned char given[n_defs ? n_defs : 1];
        for (int j = 0; j < n_defs; j++)
            given[j] = first[j] >= 0;
        if (dspi_params_store_defaults(op, gn->priv, given) < 0)
            pf->oom = 1;
    }
    for (int j = 0; j < n_defs; j++) {
        dspi_str ty = { 0 };
        if (first[j] >= 0 || op->params[j].def)
            continue;
        dspi_param_describe_type(&op->params[j], &ty);
        dspi_diag_add(pf, nd->at, dspi_fmt("add %s=VALUE (%s)",
                                           op->params[j].name, ty.s ? ty.s : ""),
                      "node '%s' (%s) needs parameter '%s'", nd->name, op->name,
                      op->params[j].name);
        dspi_str_free(&ty);
    }
    free(first);
    bd->broken[k] = 0;
}

/* ---- edges --------------------------------------------------------------- */

static int find_node(const dspi_pfile *pf, const char *name)
{
    for (int k = 0; k < pf->n_nodes; k++)
        if (pf->nodes[k].name && strcmp(pf->nodes[k].name, name) == 0)
            return k;
    return -1;
}

static int resolve_node(builder *bd, const dspi_pend *e)
{
    dspi_pfile *pf = bd->pf;
    const char **names;
    const char *near = NULL;
    int k = find_node(pf, e->node);

    if (k >= 0)
        return k;
    if ((names = malloc((size_t)(pf->n_nodes + 1) * sizeof(*names)))) {
        int n = 0;
        for (int j = 0; j < pf->n_nodes; j++)
            if (pf->nodes[j].name)
                names[n++] = pf->nodes[j].name;
        near = dspi_nearest(e->node, names, n);
    }
    dspi_diag_add(pf, (dspi_span){ e->at.line, e->at.col, (int)strlen(e->node) },
                  near ? dspi_fmt("did you mean '%s'?", near)
                       : dspi_fmt("declare it: %s = family.op ...", e->node),
                  "unknown node '%s'", e->node);
    free(names);
    return -1;
}

/* Find port `name` in ports; report and return -1 when missing. */
static int resolve_port(builder *bd, int node, const dspi_pend *e, int output)
{
    const dsp_op_def *op = bd->g->nodes[node].op;
    const dsp_port_def *ports = output ? op->outputs : op->inputs;
    int n = count_ports(ports);
    const char *names[64];
    const char *near;
    char *all;

    if (n == 0) {
        dspi_diag_add(bd->pf, e->at, dspi_fmt(output ? "it is a sink: edges "
                                              "can only end at it"
                                              : "it is a source: edges can "
                                              "only start at it"),
                      "node '%s' (%s) has no %s", e->node, op->name,
                      output ? "outputs" : "inputs");
        return -1;
    }
    if (!e->port) {
        int req = -1, n_req = 0;
        if (output || n == 1)
            return 0;
        /* Optional ports are never picked implicitly, so `a -> sink` keeps
         * meaning "sink's main input" when sink also has an optional one. */
        for (int k = 0; k < n; k++)
            if (!(ports[k].flags & DSP_PORT_OPTIONAL) && n_req++ == 0)
                req = k;
        if (n_req == 1)
            return req;
        all = port_names(ports);
        dspi_diag_add(bd->pf, e->at, dspi_fmt("write %s.%s", e->node,
                                              ports[0].name),
                      "node '%s' has inputs %s: name one (%s.%s)", e->node,
                      all ? all : "", e->node, ports[0].name);
        free(all);
        return -1;
    }
    for (int k = 0; k < n; k++)
        if (strcmp(ports[k].name, e->port) == 0)
            return k;
    for (int k = 0; k < n && k < 64; k++)
        names[k] = ports[k].name;
    near = dspi_nearest(e->port, names, DSPI_MIN(n, 64));
    all = port_names(ports);
    dspi_diag_add(bd->pf, e->port_at,
                  near ? dspi_fmt("did you mean '%s'?", near)
                       : dspi_fmt("its %s: %s", output ? "outputs" : "inputs",
                                  all ? all : ""),
                  "node '%s' (%s) has no %s port '%s'", e->node, op->name,
                  output ? "output" : "input", e->port);
    free(all);
    return -1;
}

static void add_edge(builder *bd, const dspi_pchain *c, int k, int src, int dst)
{
    const dspi_pend *se = &c->ends[k], *de = &c->ends[k + 1];
    const dsp_op_def *sop, *dop;
    int sp, dp;
    bedge *e;

    sp = bd->broken[src] ? -1 : resolve_port(bd, src, se, 1);
    dp = bd->broken[dst] ? -1 : resolve_port(bd, dst, de, 0);
    if (sp < 0 || dp < 0) {
        /* Count the input as connected all the same: an error is already
         * reported, and "not connected" would only repeat it. The graph
         * is not finished after errors, so the counts need not be exact. */
        if (dp >= 0)
            bd->port_count[dst][dp]++;
        return;
    }
    sop = bd->g->nodes[src].op;
    dop = bd->g->nodes[dst].op;
    if (!dspi_types_compatible(sop->outputs[sp].type, dop->inputs[dp].type)) {
        dspi_diag_add(bd->pf, c->arrows[k], NULL, "type mismatch: '%s.%s' "
                      "gives %s but '%s.%s' takes %s", se->node,
                      sop->outputs[sp].name, sop->outputs[sp].type, de->node,
                      dop->inputs[dp].name, dop->inputs[dp].type);
        bd->port_count[dst][dp]++;
        return;
    }
    if (!(dop->inputs[dp].flags & DSP_PORT_VARIADIC && dp == count_ports(dop->inputs) - 1) &&
        bd->port_first[dst][dp] >= 0) {
        const bedge *f = &bd->edges[bd->port_first[dst][dp]];
        dspi_diag_add(bd->pf, de->at, dspi_fmt("only a variadic input takes "
                                               "several edges"),
                      "input '%s.%s' is already connected (from '%s' at line "
                      "%d:%d)", de->node, dop->inputs[dp].name,
                      bd->g->nodes[f->src].name, f->arrow.line, f->arrow.col);
        return;
    }
    if (bd->n_edges == bd->cap_edges) {
        int cap = bd->cap_edges ? 2 * bd->cap_edges : 16;
        bedge *ne = realloc(bd->edges, (size_t)cap * sizeof(*ne));
        if (!ne) {
            bd->pf->oom = 1;
            return;
        }
        bd->edges = ne;
        bd->cap_edges = cap;
    }
    if (bd->port_first[dst][dp] < 0)
        bd->port_first[dst][dp] = bd->n_edges;
    bd->port_count[dst][dp]++;
    e = &bd->edges[bd->n_edges++];
    e->src = src;
    e->src_port = sp;
    e->dst = dst;
    e->dst_port = dp;
    e->arrow = c->arrows[k];
    e->dst_at = de->at;
}

static void build_chain(builder *bd, const dspi_pchain *c)
{
    int idx[c->n];
    int ok = 1;

    if (c->damaged)
        return;

    for (int k = 1; k + 1 < c->n; k++) {
        if (c->ends[k].port) {
            dspi_diag_add(bd->pf, c->ends[k].port_at,
                          dspi_fmt("split the chain: '... -> %s.%s' and "
                                   "'%s -> ...'", c->ends[k].node,
                                   c->ends[k].port, c->ends[k].node),
                          "a port can only be named at either end of a chain");
            ok = 0;
        }
    }
    for (int k = 0; k < c->n; k++)
        idx[k] = resolve_node(bd, &c->ends[k]);
    if (!ok)
        return;
    /* the links between known nodes still count, so an unknown name in a
     * chain does not also make its neighbours look unconnected */
    for (int k = 0; k + 1 < c->n; k++)
        if (idx[k] >= 0 && idx[k + 1] >= 0)
            add_edge(bd, c, k, idx[k], idx[k + 1]);
}

static void check_inputs(builder *bd, int k)
{
    const dsp_op_def *op = bd->g->nodes[k].op;
    const char *name = bd->g->nodes[k].name;
    int n = count_ports(op->inputs);

    for (int p = 0; p < n; p++) {
        const dsp_port_def *pd = &op->inputs[p];
        if (bd->port_count[k][p] || (pd->flags & DSP_PORT_OPTIONAL))
            continue;
        dspi_diag_add(bd->pf, bd->pf->nodes[k].at,
                      n == 1 ? dspi_fmt("connect it: SOURCE -> %s", name)
                             : dspi_fmt("connect it: SOURCE -> %s.%s", name, pd->name),
                      "input '%s' (%s) of node '%s' (%s) is not connected",
                      pd->name, pd->type, name, op->name);
    }
}

/* Input slots: fixed ports keep their index; each edge into the variadic
 * last port gets its own slot, in file order. */
static int assign_slots(builder *bd, int *dst_slot)
{
    dspi_graph *g = bd->g;

    for (int k = 0; k < g->n_nodes; k++) {
        dspi_gnode *gn = &g->nodes[k];
        int n = count_ports(gn->op->inputs), var = variadic_last(gn->op);
        int fixed = var ? n - 1 : n;

        gn->n_in_slots = fixed + (var ? bd->port_count[k][n - 1] : 0);
        if (!(gn->slot_port = calloc((size_t)DSPI_MAX(gn->n_in_slots, 1), sizeof(int))))
            return DSP_ENOMEM;
        for (int s = 0; s < gn->n_in_slots; s++)
            gn->slot_port[s] = s < fixed ? s : n - 1;
    }
    for (int e = 0; e < bd->n_edges; e++) {
        const bedge *be = &bd->edges[e];
        const dsp_op_def *op = g->nodes[be->dst].op;
        int n = count_ports(op->inputs);
        if (variadic_last(op) && be->dst_port == n - 1) {
            int ord = 0;
            for (int j = 0; j < e; j++)
                ord += bd->edges[j].dst == be->dst && bd->edges[j].dst_port == n - 1;
            dst_slot[e] = n - 1 + ord;
        } else {
            dst_slot[e] = be->dst_port;
        }
    }
    return 0;
}

/* ---- cycles -------------------------------------------------------------- */

static int find_cycle(builder *bd, int u, unsigned char *color, int *stack,
                      int depth)
{
    color[u] = 1;
    stack[depth] = u;
    for (int e = 0; e < bd->n_edges; e++) {
        int v = bd->edges[e].dst;
        if (bd->edges[e].src != u)
            continue;
        if (color[v] == 1) {
            dspi_str path = { 0 };
            int from = depth;
            while (from > 0 && stack[from] != v)
                from--;
            for (int j = from; j <= depth; j++)
                dspi_str_printf(&path, "%s -> ", bd->g->nodes[stack[j]].name);
            dspi_str_append(&path, bd->g->nodes[v].name);
            dspi_diag_add(bd->pf, bd->edges[e].arrow, dspi_fmt("a pipeline is "
                          "a directed acyclic graph; remove one of these edges"),
                          "cycle: %s", path.s ? path.s : "");
            dspi_str_free(&path);
            return 1;
        }
        if (color[v] == 0 && find_cycle(bd, v, color, stack, depth + 1))
            return 1;
    }
    color[u] = 2;
    return 0;
}

static void check_cycles(builder *bd)
{
    int n = bd->g->n_nodes;
    unsigned char *color = calloc((size_t)DSPI_MAX(n, 1), 1);
    int *stack = calloc((size_t)DSPI_MAX(n, 1), sizeof(int));

    if (!color || !stack) {
        bd->pf->oom = 1;
    } else {
        /* one cycle is enough to say: the rest usually share its edges */
        for (int k = 0; k < n; k++)
            if (!color[k] && find_cycle(bd, k, color, stack, 0))
                break;
    }
    free(color);
    free(stack);
}

/* ---- assembling ----------------------------------------------------------- */

static int cmp_edge(const void *a, const void *b)
{
    const dspi_gedge *x = a, *y = b;

    if (x->dst != y->dst)
        return x->dst < y->dst ? -1 : 1;
    return (x->dst_slot > y->dst_slot) - (x->dst_slot < y->dst_slot);
}

static int finish(builder *bd)
{
    dspi_graph *g = bd->g;
    int *slot = calloc((size_t)DSPI_MAX(bd->n_edges, 1), sizeof(int));

    g->edges = calloc((size_t)DSPI_MAX(bd->n_edges, 1), sizeof(*g->edges));
    if (!slot || !g->edges || assign_slots(bd, slot) < 0) {
        free(slot);
        return DSP_ENOMEM;
    }
    for (int e = 0; e < bd->n_edges; e++) {
        dspi_gedge *ge = &g->edges[e];
        ge->src = bd->edges[e].src;
        ge->src_port = bd->edges[e].src_port;
        ge->dst = bd->edges[e].dst;
        ge->dst_slot = slot[e];
        ge->line = bd->edges[e].arrow.line;
        ge->col = bd->edges[e].arrow.col;
    }
    g->n_edges = bd->n_edges;
    qsort(g->edges, (size_t)g->n_edges, sizeof(*g->edges), cmp_edge);
    free(slot);
    return 0;
}

static int build(builder *bd)
{
    dspi_pfile *pf = bd->pf;
    dspi_graph *g = bd->g;
    int n = pf->n_nodes;

    g->nodes = calloc((size_t)DSPI_MAX(n, 1), sizeof(*g->nodes));
    bd->broken = calloc((size_t)DSPI_MAX(n, 1), 1);
    bd->port_first = calloc((size_t)DSPI_MAX(n, 1), sizeof(*bd->port_first));
    bd->port_count = calloc((size_t)DSPI_MAX(n, 1), sizeof(*bd->port_count));
    if (!g->nodes || !bd->broken || !bd->port_first || !bd->port_count)
        return DSP_ENOMEM;
    g->n_nodes = n;
    build_options(bd);
    for (int k = 0; k < n && !pf->oom; k++) {
        int np;
        build_node(bd, k);
        np = bd->broken[k] ? 0 : count_ports(g->nodes[k].op->inputs);
        bd->port_first[k] = malloc((size_t)DSPI_MAX(np, 1) * sizeof(int));
        bd->port_count[k] = calloc((size_t)DSPI_MAX(np, 1), sizeof(int));
        if (!bd->port_first[k] || !bd->port_count[k])
            return DSP_ENOMEM;
        for (int p = 0; p < np; p++)
            bd->port_first[k][p] = -1;
    }
    for (int c = 0; c < pf->n_chains && !pf->oom; c++)
        build_chain(bd, &pf->chains[c]);
    for (int k = 0; k < n; k++)
        if (!bd->broken[k])
            check_inputs(bd, k);
    check_cycles(bd);
    if (pf->oom)
        return DSP_ENOMEM;
    return pf->n_diags ? DSP_ESYNTAX : finish(bd);
}

int dspi_graph_parse(dsp_context *ctx, const char *path, const char *text,
                     const dsp_pipe_args *args, dspi_graph **out)
{
    dspi_pfile pf;
    builder bd = { 0 };
    int ret;

    *out = NULL;
    ret = dspi_pfile_parse(&pf, path ? path : "<string>", text ? text : "");
    if (ret == 0)
        ret = dspi_pfile_bind(&pf, args);
    if (ret == 0) {
        bd.ctx = ctx;
        bd.pf = &pf;
        if (!(bd.g = calloc(1, sizeof(*bd.g))) ||
            !(bd.g->path = dspi_fmt("%s", pf.path)) ||
            !(bd.g->dir = dspi_fmt("%s", pf.dir)))
            ret = DSP_ENOMEM;
        else
            ret = build(&bd);
    }
    if (ret == DSP_ESYNTAX) {
        char *msg = dspi_pfile_render(&pf);
        if (msg)
            dspi_set_error_owned(ctx, msg);
        else
            ret = DSP_ENOMEM;
    }
    if (ret == DSP_ENOMEM)
        dspi_set_error(ctx, "out of memory while reading %s", path ? path : "<string>");
    for (int k = 0; k < pf.n_nodes && bd.port_first; k++) {
        free(bd.port_first[k]);
        free(bd.port_count[k]);
    }
    free(bd.port_first);
    free(bd.port_count);
    free(bd.broken);
    free(bd.edges);
    dspi_pfile_free(&pf);
    if (ret < 0)
        dspi_graph_free(&bd.g);
    *out = bd.g;
    return ret;
}

void dspi_graph_free(dspi_graph **gp)
{
    dspi_graph *g = gp ? *gp : NULL;

    if (!g)
        return;
    for (int k = 0; g->nodes && k < g->n_nodes; k++) {
        dspi_gnode *gn = &g->nodes[k];
        if (gn->op && gn->priv)
            dspi_params_free(gn->op, gn->priv);
        free(gn->priv);
        free(gn->name);
        free(gn->slot_port);
    }
    free(g->nodes);
    free(g->edges);
    free(g->path);
    free(g->dir);
    free(g->errors_path);
    free(g->journal_path);
    free(g);
    *gp = NULL;
}

/* ---- Graphviz -------------------------------------------------------------- */

/* Text inside a dot "..." string; newlines become dot's \n. */
static void dot_escape(dspi_str *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            dspi_str_printf(b, "\\%c", *s);
        else if (*s == '\n')
            dspi_str_append(b, "\\n");
        else
            dspi_str_appendn(b, s, 1);
    }
}

static void dot_node(dspi_str *b, const dspi_gnode *gn, int k)
{
    const dsp_op_def *op = gn->op;
    void *defaults = calloc(1, DSPI_MAX(op->priv_size, 1));

    dspi_str_printf(b, "  n%d [label=\"", k);
    dot_escape(b, gn->name);
    dspi_str_append(b, "\\n");
    dot_escape(b, op->name);
    if (defaults)
        dspi_params_store_defaults(op, defaults, NULL);
    for (int p = 0; op->params && op->params[p].name; p++) {
        const dsp_param_def *def = &op->params[p];
        dspi_str now = { 0 }, dflt = { 0 };
        dspi_param_format_value(def, gn->priv, &now);
        if (defaults && def->def)
            dspi_param_format_value(def, defaults, &dflt);
        if (!def->def || !defaults || !now.s || !dflt.s || strcmp(now.s, dflt.s)) {
            dspi_str_printf(b, "\\n%s=", def->name);
            dot_escape(b, now.s ? now.s : "");
        }
        dspi_str_free(&now);
        dspi_str_free(&dflt);
    }
    if (defaults)
        dspi_params_free(op, defaults);
    free(defaults);
    dspi_str_append(b, "\"];\n");
}

int dspi_graph_write_dot(const dspi_graph *g, FILE *out)
{
    dspi_str b = { 0 };
    int ret = 0;

    dspi_str_append(&b, "digraph \"");
    dot_escape(&b, g->path ? g->path : "pipeline");
    dspi_str_append(&b, "\" {\n  rankdir=LR;\n"
                    "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
                    "  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (int k = 0; k < g->n_nodes; k++)
        dot_node(&b, &g->nodes[k], k);
    for (int e = 0; e < g->n_edges; e++) {
        const dspi_gedge *ge = &g->edges[e];
        const dspi_gnode *s = &g->nodes[ge->src], *d = &g->nodes[ge->dst];
        const dsp_port_def *op = &s->op->outputs[ge->src_port];
        int port = d->slot_port[ge->dst_slot];
        const dsp_port_def *ip = &d->op->inputs[port];

        dspi_str_printf(&b, "  n%d -> n%d [label=\"", ge->src, ge->dst);
        dot_escape(&b, op->name);
        dspi_str_append(&b, " -> ");
        dot_escape(&b, ip->name);
        if (ip->flags & DSP_PORT_VARIADIC)
            dspi_str_printf(&b, "[%d]", ge->dst_slot - port);
        dspi_str_append(&b, "\\n");
        dot_escape(&b, op->type);
        if (strcmp(op->type, ip->type) != 0) {
            dspi_str_append(&b, " / ");
            dot_escape(&b, ip->type);
        }
        dspi_str_append(&b, "\"];\n");
    }
    dspi_str_append(&b, "}\n");
    if (b.oom)
        ret = DSP_ENOMEM;
    else if (fwrite(b.s, 1, b.len, out) != b.len)
        ret = DSP_EIO;
    dspi_str_free(&b);
    return ret;
}
