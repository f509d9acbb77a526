/* text_lines.c - text.lines: one item per line of a text or JSONL file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "text.h"

typedef struct lines_ctx {
    /* parameters */
    char *path;
    char *field;
    char *key;
    int skip_empty;
    int64_t limit;
    /* state */
    FILE *fp;
    int64_t line_no, emitted, size, skipped;
    char *buf, *fixed;
    size_t cap, fixed_cap;
} lines_ctx;

static const dsp_param_def lines_params[] = {
    { .name = "path", .type = DSP_PARAM_PATH, .def = NULL, .flags = DSP_PARAM_MUST_EXIST,
      .offset = offsetof(lines_ctx, path), .doc = "a text file (one item per line) or a JSONL file" },
    { .name = "field", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(lines_ctx, field),
      .doc = "JSONL: the string field of each line's object to read (empty: plain text lines)" },
    { .name = "key", .type = DSP_PARAM_STRING, .def = "text", .offset = offsetof(lines_ctx, key),
      .doc = "metadata key the text is stored under" },
    { .name = "skip_empty", .type = DSP_PARAM_BOOL, .def = "false", .offset = offsetof(lines_ctx, skip_empty),
      .doc = "leave out empty lines" },
    { .name = "limit", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1e15,
      .offset = offsetof(lines_ctx, limit), .doc = "emit at most this many items (0 = all)" },
    { NULL }
};

static const dsp_port_def lines_out[] = {
    { .name = "out", .type = "text", .doc = "one packet per line: metadata <key>, line (1-based), source" },
    { NULL }
};

static int lines_init(dsp_node *node)
{
    lines_ctx *c = dsp_node_priv(node);
    c->fp = fopen(c->path, "rb");
    if (!c->fp)
        return dsp_node_fail(node, DSP_EIO, "%s: cannot open: %s", c->path, strerror(errno));
    struct stat st;
    c->size = fstat(fileno(c->fp), &st) == 0 ? (int64_t)st.st_size : -1;
    if (!c->key[0])
        return dsp_node_fail(node, DSP_EINVAL, "key must not be empty");
    return 0;
}

/* Valid UTF-8 for the metadata (JSON strings): invalid bytes become U+FFFD. */
static const char *fix_utf8(lines_ctx *c, const char *s, size_t len, int *replaced)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = 0;
    *replaced = 0;
    if (len * 3 + 1 > c->fixed_cap) {
        char *f = realloc(c->fixed, len * 3 + 1);
        if (!f)
            return NULL;
        c->fixed = f;
        c->fixed_cap = len * 3 + 1;
    }
    for (size_t i = 0; i < len;) {
        unsigned b = u[i];
        size_t need = b < 0x80 ? 0 : b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 9;
        size_t got = 1;
        if (need > 0 && need < 9)
            for (; got <= need && i + got < len; got++) {
                unsigned lo = 0x80, hi = 0xBF, d = u[i + got];
                if (got == 1) {
                    lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
                    hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
                }
                if (d < lo || d > hi)
                    break;
            }
        if (need == 0 || (need < 9 && got == need + 1)) {
            memcpy(c->fixed + k, s + i, need + 1);
            k += need + 1;
            i += need + 1;
        } else {
            memcpy(c->fixed + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += got;
            *replaced = 1;
        }
    }
    c->fixed[k] = '\0';
    return c->fixed;
}

static int lines_process(dsp_node *node, dsp_packet **in)
{
    lines_ctx *c = dsp_node_priv(node);
    (void)in;
    for (;;) {
        if (dsp_node_stopping(node) || (c->limit > 0 && c->emitted >= c->limit))
            return DSP_EOF;
        ssize_t r = getline(&c->buf, &c->cap, c->fp);
        if (r < 0) {
            if (ferror(c->fp))
                return dsp_node_fail(node, DSP_EIO, "%s: read error after line %lld", c->path,
                                     (long long)c->line_no);
            return DSP_EOF;
        }
        c->line_no++;
        size_t len = (size_t)r;
        if (len && c->buf[len - 1] == '\n')
            len--;
        if (len && c->buf[len - 1] == '\r')     /* CRLF files */
            len--;
        const char *text = c->buf;
        size_t tlen = len;
        json_t *obj = NULL;
        if (c->field[0]) {
            if (len == 0)
                continue;
            json_error_t je;
            obj = json_loadb(c->buf, len, JSON_ALLOW_NUL, &je);
            const json_t *v = obj ? json_object_get(obj, c->field) : NULL;
            if (!json_is_string(v)) {
                if (c->skipped++ < 5)
                    dsp_node_log(node, DSP_LOG_WARNING, "%s:%lld: %s; line skipped", c->path,
                                 (long long)c->line_no, obj ? "no such string field" : je.text);
                json_decref(obj);
                continue;
            }
            text = json_string_value(v);
            tlen = json_string_length(v);
        }
        if (c->skip_empty && tlen == 0) {
            json_decref(obj);
            continue;
        }
        int replaced;
        const char *fixed = fix_utf8(c, text, tlen, &replaced);
        dsp_packet *p = fixed ? dsp_node_packet_new(node) : NULL;
        if (!p) {
            json_decref(obj);
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        }
        char src[4200];
        snprintf(src, sizeof src, "%s:%lld", c->path, (long long)c->line_no);
        dsp_meta *m = dsp_packet_meta(p);
        int err = dsp_meta_set_str(m, c->key, fixed);
        if (!err)
            err = dsp_meta_set_int(m, "line", c->line_no);
        if (!err)
            err = dsp_meta_set_str(m, "source", src);
        if (!err && replaced)
            err = dsp_meta_set_bool(m, "utf8_replaced", 1);
        json_decref(obj);
        if (err < 0) {
            dsp_packet_unref(&p);
            return dsp_node_fail(node, err, "%s: cannot set metadata", src);
        }
        c->emitted++;
        if (c->size > 0)
            dsp_node_progress(node, (int64_t)ftell(c->fp), c->size);
        return dsp_node_emit(node, 0, p);
    }
}

static int lines_flush(dsp_node *node)
{
    lines_ctx *c = dsp_node_priv(node);
    if (c->skipped)
        dsp_node_log(node, DSP_LOG_WARNING, "%s: %lld lines without a string '%s' were skipped", c->path,
                     (long long)c->skipped, c->field);
    return 0;
}

static void lines_fini(dsp_node *node)
{
    lines_ctx *c = dsp_node_priv(node);
    if (c->fp)
        fclose(c->fp);
    free(c->buf);
    free(c->fixed);
}

const dsp_op_def text_lines_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "text.lines",
    .doc = "one item per line of a text file, or per object of a JSONL file",
    .outputs = lines_out,
    .params = lines_params,
    .priv_size = sizeof(lines_ctx),
    .flags = DSP_OP_SOURCE,
    .init = lines_init,
    .process = lines_process,
    .flush = lines_flush,
    .fini = lines_fini,
};
