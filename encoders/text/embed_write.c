/* embed_write.c - embed.write: stack every item's embedding into one [N, dim] .npy, with a JSONL index of the rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"

typedef struct write_ctx {
    /* parameters */
    char *path;
    char *index;
    char *field;
    char *text_field;
    /* state */
    dsp_outfile *npy, *idx;
    float *rows;
    int64_t n, cap, dim;
} write_ctx;

static const dsp_param_def write_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .def = NULL, .offset = offsetof(write_ctx, path),
      .doc = "the .npy file: f32 [items, dim], one row per item in stream order (written at the end, atomically)" },
    { .name = "index", .type = DSP_PARAM_PATH, .def = "", .offset = offsetof(write_ctx, index),
      .doc = "JSONL file with one line per row: row, item, source, text (optional)" },
    { .name = "field", .type = DSP_PARAM_STRING, .def = "embedding", .offset = offsetof(write_ctx, field),
      .doc = "the tensor to write (f32 [dim])" },
    { .name = "text_field", .type = DSP_PARAM_STRING, .def = "text", .offset = offsetof(write_ctx, text_field),
      .doc = "string metadata copied into the index as \"text\"" },
    { NULL }
};

static const dsp_port_def write_in[] = {
    { .name = "in", .type = "embedding", .doc = "packets with an f32 [dim] embedding" },
    { NULL }
};

static int write_init(dsp_node *node)
{
    write_ctx *c = dsp_node_priv(node);
    /* open now so an unwritable destination fails before any work */
    int rc = dsp_outfile_open(node, c->path, &c->npy);
    if (rc == 0 && c->index)
        rc = dsp_outfile_open(node, c->index, &c->idx);
    return rc;
}

static int write_index_line(dsp_node *node, write_ctx *c, const dsp_packet *p)
{
    const dsp_meta *pm = dsp_packet_meta_const(p);
    dsp_meta *m = dsp_meta_new();
    const char *s = NULL;
    int rc = m ? 0 : DSP_ENOMEM;
    if (!rc)
        rc = dsp_meta_set_int(m, "row", c->n);
    if (!rc)
        rc = dsp_meta_set_int(m, "item", dsp_packet_item(p));
    if (!rc && dsp_meta_get_str(pm, "source", &s) == 0)
        rc = dsp_meta_set_str(m, "source", s);
    if (!rc && dsp_meta_get_str(pm, c->text_field, &s) == 0)
        rc = dsp_meta_set_str(m, "text", s);
    char *json = rc ? NULL : dsp_meta_to_json(m);
    dsp_meta_free(&m);
    if (!json)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", c->index);
    FILE *fp = dsp_outfile_stream(c->idx);
    int bad = fputs(json, fp) == EOF || fputc('\n', fp) == EOF;
    dsp_free(json);
    return bad ? dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", c->index) : 0;
}

static int write_process(dsp_node *node, dsp_packet **in)
{
    write_ctx *c = dsp_node_priv(node);
    const dsp_tensor *t = dsp_packet_tensor(in[0], c->field);
    if (!t || t->dtype != DSP_DTYPE_F32 || t->ndim != 1 || t->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EINVAL, "no f32 [dim] tensor '%s' (set field=...)", c->field);
    if (c->n == 0)
        c->dim = t->shape[0];
    if (t->shape[0] != c->dim)
        return dsp_node_fail(node, DSP_EINVAL, "'%s' has %lld values, the earlier rows %lld",
                             c->field, (long long)t->shape[0], (long long)c->dim);
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        float *r = realloc(c->rows, (size_t)(cap * c->dim) * sizeof *r);
        if (!r)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory for %lld rows", (long long)cap);
        c->rows = r;
        c->cap = cap;
    }
    const float *src = dsp_tensor_data(t);
    for (int64_t j = 0; j < c->dim; j++)
        c->rows[c->n * c->dim + j] = src[j * t->stride[0]];
    int rc = c->idx ? write_index_line(node, c, in[0]) : 0;
    if (rc == 0)
        c->n++;
    return rc;
}

/* .npy version 1.0: magic, header length, a Python dict padded to 64 bytes, little-endian f32 rows. */
static int write_npy(FILE *fp, const float *rows, int64_t n, int64_t dim)
{
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)n, (long long)dim);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    unsigned hlen = (unsigned)(len + pad + 1);
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8) };
    if (fwrite(pre, 1, 10, fp) != 10 || fwrite(dict, 1, (size_t)len, fp) != (size_t)len)
        return DSP_EIO;
    for (int i = 0; i < pad; i++)
        if (fputc(' ', fp) == EOF)
            return DSP_EIO;
    if (fputc('\n', fp) == EOF)
        return DSP_EIO;
    size_t count = (size_t)(n * dim);
    return count && fwrite(rows, sizeof *rows, count, fp) != count ? DSP_EIO : 0;
}

static int write_flush(dsp_node *node)
{
    write_ctx *c = dsp_node_priv(node);
    if (write_npy(dsp_outfile_stream(c->npy), c->rows, c->n, c->dim) < 0)
        return dsp_node_fail(node, DSP_EIO, "%s: write failed (disk full?)", c->path);
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %lld rows of %lld", c->path, (long long)c->n, (long long)c->dim);
    int rc = dsp_outfile_commit(node, &c->npy);
    if (rc == 0 && c->idx)
        rc = dsp_outfile_commit(node, &c->idx);
    return rc;
}

static void write_fini(dsp_node *node)
{
    write_ctx *c = dsp_node_priv(node);
    dsp_outfile_discard(&c->npy);
    dsp_outfile_discard(&c->idx);
    free(c->rows);
}

const dsp_op_def embed_write_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "embed.write",
    .doc = "write all embeddings as one [items, dim] .npy (row = stream order) and a JSONL index of the rows",
    .inputs = write_in,
    .params = write_params,
    .priv_size = sizeof(write_ctx),
    .flags = DSP_OP_SINK | DSP_OP_GATHER,
    .init = write_init,
    .process = write_process,
    .flush = write_flush,
    .fini = write_fini,
};
