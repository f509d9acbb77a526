/* inspect.c - `dspipe inspect OP`: an operator's plugin, flags, ports and parameters as text. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void write_ports(dspi_str *b, const char *title, const dsp_port_def *p)
{
    int width = 4;

    dspi_str_printf(b, "\n%s:\n", title);
    if (!p || !p[0].name) {
        dspi_str_append(b, "  none\n");
        return;
    }
    for (int k = 0; p[k].name; k++)
        width = DSPI_MAX(width, (int)strlen(p[k].name));
    for (int k = 0; p[k].name; k++) {
        dspi_str_printf(b, "  %-*s  %-14s", width, p[k].name,
                        p[k].type ? p[k].type : "any");
        if (p[k].flags & (DSP_PORT_OPTIONAL | DSP_PORT_VARIADIC))
            dspi_str_printf(b, " (%s%s%s)",
                            p[k].flags & DSP_PORT_OPTIONAL ? "optional" : "",
                            (p[k].flags & DSP_PORT_OPTIONAL) &&
                            (p[k].flags & DSP_PORT_VARIADIC) ? ", " : "",
                            p[k].flags & DSP_PORT_VARIADIC ? "variadic" : "");
        if (p[k].doc && *p[k].doc)
            dspi_str_printf(b, " %s", p[k].doc);
        dspi_str_append(b, "\n");
    }
}

static void write_params(dspi_str *b, const dsp_op_def *op)
{
    const dsp_param_def *p = op->params;

    dspi_str_append(b, "\nParameters:\n");
    if (!p || !p[0].name) {
        dspi_str_append(b, "  none\n");
        return;
    }
    for (int k = 0; p[k].name; k++) {
        dspi_str_printf(b, "  %s\n", p[k].name);
        if (p[k].doc && *p[k].doc)
            dspi_str_printf(b, "      %s\n", p[k].doc);
        dspi_str_append(b, "      type: ");
        dspi_param_describe_type(&p[k], b);
        if (p[k].def)
            dspi_str_printf(b, "\n      default: %s\n", p[k].def);
        else
            dspi_str_append(b, "\n      required\n");
    }
}

int dspi_write_inspect(const dsp_context *ctx, const dsp_op_def *op, FILE *out)
{
    const dsp_plugin_desc *pl = dsp_context_op_plugin(ctx, op);
    const char *origin = dsp_context_op_origin(ctx, op);
    dspi_str b = { 0 };
    int ret = 0, any = 0;

    dspi_str_printf(&b, "Operator: %s\n", op->name);
    if (op->doc && *op->doc)
        dspi_str_printf(&b, "  %s\n", op->doc);
    dspi_str_append(&b, "\nPlugin:\n");
    if (pl) {
        dspi_str_printf(&b, "  name         %s\n", pl->name ? pl->name : "?");
        if (pl->description && *pl->description)
            dspi_str_printf(&b, "  description  %s\n", pl->description);
        dspi_str_printf(&b, "  version      %s\n", pl->version ? pl->version : "?");
        dspi_str_printf(&b, "  license      %s\n", pl->license ? pl->license : "?");
    }
    dspi_str_printf(&b, "  origin       %s\n", origin ? origin : "?");

    dspi_str_append(&b, "\nFlags:\n ");
    if (op->flags & DSP_OP_SOURCE)
        dspi_str_append(&b, any++ ? ", source" : " source");
    if (op->flags & DSP_OP_SINK)
        dspi_str_append(&b, any++ ? ", sink" : " sink");
    if (op->flags & DSP_OP_BATCHABLE) {
        dspi_str_append(&b, any++ ? ", batchable" : " batchable");
        if (op->max_batch > 0)
            dspi_str_printf(&b, " (max batch %d)", op->max_batch);
    }
    if (op->flags & DSP_OP_CUDA)
        dspi_str_append(&b, any++ ? ", cuda" : " cuda");
    if (op->flags & DSP_OP_GATHER)
        dspi_str_append(&b, any++ ? ", gather (no --resume)" : " gather (no --resume)");
    dspi_str_append(&b, any ? "\n" : " none\n");

    write_ports(&b, "Inputs", op->inputs);
    write_ports(&b, "Outputs", op->outputs);
    write_params(&b, op);
    if (op->flags & DSP_OP_BATCHABLE)
        dspi_str_printf(&b, "\nBatching (added by the core to every batchable operator):\n"
                        "  batch              int in [1, %d], default %d\n"
                        "      most packets per call\n"
                        "  batch_timeout_ms   int in [0, 600000], default 0\n"
                        "      how long a partial batch waits for more packets "
                        "(0: run with what is queued)\n", op->max_batch, op->max_batch);
    if (b.oom)
        ret = DSP_ENOMEM;
    else if (fwrite(b.s, 1, b.len, out) != b.len)
        ret = DSP_EIO;
    dspi_str_free(&b);
    return ret;
}
