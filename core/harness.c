/* harness.c - one operator, no graph, no threads: push packets in, pull what it emitted (for plugin tests). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "dspipe/harness.h"

typedef struct pktlist {
    dsp_packet **v;
    int head, n, cap;
} pktlist;

struct dsp_harness {
    dsp_context *ctx;
    dspi_gnode g;
    dsp_node node;
    pktlist *in;                /* per slot */
    pktlist *out;               /* per output port */
    char *err;
};

static int list_push(pktlist *l, dsp_packet *p)
{
    if (l->head + l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        dsp_packet **v = malloc(cap * sizeof(*v));
        if (!v)
            return DSP_ENOMEM;
        if (l->n)
            memcpy(v, l->v + l->head, l->n * sizeof(*v));
        free(l->v);
        l->v = v;
        l->cap = cap;
        l->head = 0;
    }
    l->v[l->head + l->n++] = p;
    return 0;
}

static dsp_packet *list_pop(pktlist *l)
{
    if (!l->n)
        return NULL;
    l->n--;
    return l->v[l->head++];
}

static void list_free(pktlist *l)
{
    dsp_packet *p;
    while ((p = list_pop(l)))
        dsp_packet_unref(&p);
    free(l->v);
}

/* Move what the last callback emitted to the output lists and keep its
 * error message. */
static int collect(dsp_harness *h, int err)
{
    dsp_node *n = &h->node;
    for (int i = 0; i < n->n_outbox; i++)
        if (list_push(&h->out[n->outbox[i].port], n->outbox[i].pkt) < 0)
            dsp_packet_unref(&n->outbox[i].pkt);
    n->n_outbox = 0;
    if (err < 0 && err != DSP_EOF) {
        free(h->err);
        h->err = n->errmsg ? strdup(n->errmsg) : strdup(dsp_strerror(err));
    }
    dspi_node_clear_error(n);
    return err;
}

/* Split "[a, "b, c", d]" into its items, quotes removed (\" and \\ kept
 * as escapes), as the .pipe language reads a list. Items point into text,
 * which is modified. Returns the count, or -1 on OOM or a bad quote. */
static int split_list(char *text, char ***items)
{
    char **v = NULL, *r = text, *w = text, *start = text;
    int n = 0, cap = 0, quoted = 0;

    for (;; r++) {
        if (quoted) {
            if (!*r)
                goto bad;
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                *w++ = *++r;
            else if (*r == '"')
                quoted = 0;
            else
                *w++ = *r;
            continue;
        }
        if (*r == '"') {
            quoted = 1;
            continue;
        }
        if (*r && *r != ',') {
            if (*r != ' ' || w != start)    /* leading blanks go */
                *w++ = *r;
            continue;
        }
        while (w > start && w[-1] == ' ')   /* trailing blanks go */
            w--;
        if (n == cap) {
            char **nv = realloc(v, (cap = cap ? 2 * cap : 8) * sizeof(*nv));
            if (!nv)
                goto bad;
            v = nv;
        }
        v[n++] = start;
        if (!*r) {
            *w = 0;
            break;
        }
        *w++ = 0;
        start = w;
    }
    /* "[]" is the empty list, not one empty item */
    if (n == 1 && !v[0][0])
        n = 0;
    *items = v;
    return n;
bad:
    free(v);
    return -1;
}

/* "name=value" or "name=[a, b, "c d"]" into the parameter's storage. */
static int store_param(dsp_harness *h, const char *spec, unsigned char *given)
{
    const dsp_op_def *op = h->g.op;
    const char *eq = strchr(spec, '=');
    char *name, *val, **items = NULL, *one[1], *err = NULL, *hint = NULL;
    int n = 1, idx = -1, rc;
    size_t len;

    if (!eq) {
        dspi_set_error(h->ctx, "harness: parameter '%s' is not name=value", spec);
        return DSP_EINVAL;
    }
    if (!(name = strndup(spec, eq - spec)) || !(val = strdup(eq + 1))) {
        free(name);
        return DSP_ENOMEM;
    }
    for (int i = 0; op->params && op->params[i].name; i++)
        if (!strcmp(op->params[i].name, name))
            idx = i;
    if (idx < 0) {
        dspi_set_error(h->ctx, "harness: %s has no parameter '%s'", op->name, name);
        free(name);
        free(val);
        return DSP_ENOENT;
    }
    len = strlen(val);
    if (len >= 2 && val[0] == '[' && val[len - 1] == ']') {
        val[len - 1] = 0;
        if ((n = split_list(val + 1, &items)) < 0) {
            dspi_set_error(h->ctx, "harness: %s %s: unterminated quote in a list", op->name,
                           name);
            free(name);
            free(val);
            return DSP_EINVAL;
        }
    } else {
        one[0] = val;
        items = one;
    }
    rc = dspi_param_store(&op->params[idx], h->g.priv, (const char *const *)items, n, ".",
                          &err, &hint);
    if (rc < 0)
        dspi_set_error(h->ctx, "harness: %s %s: %s%s%s", op->name, name, err ? err : "",
                       hint ? "; " : "", hint ? hint : "");
    else
        given[idx] = 1;
    if (items != one)
        free(items);
    free(err);
    free(hint);
    free(name);
    free(val);
    return rc;
}

int dsp_harness_new(dsp_context *ctx, const char *op_name, const char *const *params,
                    int n_inputs, dsp_harness **out)
{
    const dsp_op_def *op = dsp_context_find_op(ctx, op_name);
    dsp_harness *h;
    unsigned char *given = NULL;
    int n_params = 0, n_out = 0, n_ports = 0, variadic, err;
    dsp_device cpu = { DSP_DEVICE_CPU, 0 };

    *out = NULL;
    if (!op) {
        dspi_set_error(ctx, "harness: no operator '%s' is loaded", op_name);
        return DSP_ENOENT;
    }
    while (op->params && op->params[n_params].name)
        n_params++;
    while (op->outputs && op->outputs[n_out].name)
        n_out++;
    while (op->inputs && op->inputs[n_ports].name)
        n_ports++;
    /* one slot per input port; a variadic last port takes any number (also
     * none when it is optional) */
    variadic = n_ports && (op->inputs[n_ports - 1].flags & DSP_PORT_VARIADIC);
    if (variadic ? n_inputs < n_ports - 1 : n_inputs != n_ports) {
        dspi_set_error(ctx, "harness: %s has %d input port%s%s; %d input slot%s asked for",
                       op->name, n_ports, n_ports == 1 ? "" : "s",
                       variadic ? " (the last variadic)" : "", n_inputs,
                       n_inputs == 1 ? "" : "s");
        return DSP_EINVAL;
    }
    if (!(h = calloc(1, sizeof(*h))))
        return DSP_ENOMEM;
    h->ctx = ctx;
    h->g.name = (char *)"harness";
    h->g.op = op;
    h->g.n_in_slots = n_inputs;
    h->g.n_out = n_out;
    if (!(h->g.priv = calloc(1, DSPI_MAX(op->priv_size, 1))) ||
        !(given = calloc(DSPI_MAX(n_params, 1), 1)) ||
        !(h->in = calloc(DSPI_MAX(n_inputs, 1), sizeof(*h->in))) ||
        !(h->out = calloc(DSPI_MAX(n_out, 1), sizeof(*h->out)))) {
        err = DSP_ENOMEM;
        goto fail;
    }
    for (int i = 0; params && params[i]; i++)
        if ((err = store_param(h, params[i], given)) < 0)
            goto fail;
    for (int i = 0; i < n_params; i++)
        if (!given[i] && !op->params[i].def) {
            dspi_set_error(ctx, "harness: %s needs parameter '%s'", op->name,
                           op->params[i].name);
            err = DSP_EINVAL;
            goto fail;
        }
    if ((err = dspi_params_store_defaults(op, h->g.priv, given)) < 0)
        goto fail;
    if ((err = dspi_node_setup(&h->node, &h->g, 0, ".", cpu)) < 0)
        goto fail;
    h->node.harness = h;
    if (op->flags & DSP_OP_BATCHABLE)
        h->node.batch = op->max_batch;
    err = collect(h, dspi_node_call_init(&h->node));
    if (err < 0) {
        dspi_set_error(ctx, "harness: %s init failed: %s", op->name, h->err ? h->err : "");
        goto fail;
    }
    free(given);
    *out = h;
    return 0;

fail:
    free(given);
    dsp_harness_free(&h);
    return err;
}

int dsp_harness_push(dsp_harness *h, int slot, dsp_packet *pkt)
{
    dsp_packet *stack[16] = { 0 }, **in = stack;
    int n_in = h->node.n_in, err;

    if (slot < 0 || slot >= n_in) {
        dsp_packet_unref(&pkt);
        return DSP_EINVAL;
    }
    dspi_packet_freeze(pkt);
    if (list_push(&h->in[slot], pkt) < 0) {
        dsp_packet_unref(&pkt);
        return DSP_ENOMEM;
    }
    for (int i = 0; i < n_in; i++)
        if (!h->in[i].n)
            return 0;
    if (n_in > 16 && !(in = malloc(n_in * sizeof(*in))))
        return DSP_ENOMEM;
    for (int i = 0; i < n_in; i++)
        in[i] = list_pop(&h->in[i]);
    if (h->node.batch > 1 && h->node.op->process_batch)
        err = dspi_node_call_batch(&h->node, in, 1);
    else
        err = dspi_node_call_process(&h->node, in);
    err = collect(h, err);
    for (int i = 0; i < n_in; i++)
        dsp_packet_unref(&in[i]);
    if (in != stack)
        free(in);
    return err;
}

int dsp_harness_push_batch(dsp_harness *h, dsp_packet **pkts, int n)
{
    int err;
    if (n < 1 || h->node.n_in != 1)
        return DSP_EINVAL;
    for (int i = 0; i < n; i++)
        dspi_packet_freeze(pkts[i]);
    err = collect(h, dspi_node_call_batch(&h->node, pkts, n));
    for (int i = 0; i < n; i++)
        dsp_packet_unref(&pkts[i]);
    return err;
}

int dsp_harness_step(dsp_harness *h)
{
    if (!(h->node.op->flags & DSP_OP_SOURCE))
        return DSP_ESTATE;
    return collect(h, dspi_node_call_process(&h->node, NULL));
}

int dsp_harness_flush(dsp_harness *h)
{
    return collect(h, dspi_node_call_flush(&h->node));
}

dsp_packet *dsp_harness_pull(dsp_harness *h, int port)
{
    if (port < 0 || port >= h->g.n_out)
        return NULL;
    return list_pop(&h->out[port]);
}

int dsp_harness_pending(const dsp_harness *h, int port)
{
    if (port < 0 || port >= h->g.n_out)
        return 0;
    return h->out[port].n;
}

int dsp_harness_item_failures(const dsp_harness *h)
{
    return h ? h->node.n_pkt_fails : 0;
}

int dsp_harness_item_failure(const dsp_harness *h, int i, int64_t *item, const char **msg)
{
    if (!h || i < 0 || i >= h->node.n_pkt_fails)
        return DSP_EINVAL;
    if (item)
        *item = h->node.pkt_fails[i].item;
    if (msg)
        *msg = h->node.pkt_fails[i].msg;
    return 0;
}

const char *dsp_harness_errmsg(const dsp_harness *h)
{
    return h->err ? h->err : "";
}

dsp_node *dsp_harness_node(dsp_harness *h)
{
    return &h->node;
}

void dsp_harness_free(dsp_harness **ph)
{
    dsp_harness *h = ph ? *ph : NULL;
    if (!h)
        return;
    if (h->node.op) {
        dspi_node_call_fini(&h->node);
        dspi_node_cleanup(&h->node);
    }
    for (int i = 0; h->in && i < h->g.n_in_slots; i++)
        list_free(&h->in[i]);
    for (int i = 0; h->out && i < h->g.n_out; i++)
        list_free(&h->out[i]);
    if (h->g.priv) {
        dspi_params_free(h->g.op, h->g.priv);
        free(h->g.priv);
    }
    free(h->in);
    free(h->out);
    free(h->err);
    free(h);
    *ph = NULL;
}
