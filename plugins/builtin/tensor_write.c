/* tensor_write.c - tensor.write: write each packet's tensors as .npy or .safetensors files named by a template. */
#include "builtin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dspipe/tensorio.h>

enum { FORMAT_AUTO, FORMAT_NPY, FORMAT_SAFETENSORS };
static const char *const tensor_write_formats[] = { "auto", "npy", "safetensors", NULL };

typedef struct tensor_write_ctx {
    char *path;                 /* template */
    int format;
    int fmt;                    /* resolved: FORMAT_NPY or FORMAT_SAFETENSORS */
    int has_name;               /* template uses {name} */
} tensor_write_ctx;

static const dsp_param_def tensor_write_params[] = {
    { .name = "path", .type = DSP_PARAM_STRING,
      .offset = offsetof(tensor_write_ctx, path),
      .doc = "output file template: {item}, {part}, {stem} (of meta path/source, "
             "else the item number), {name} (tensor name, npy only); a "
             ".safetensors file gets meta safetensors_metadata as __metadata__" },
    { .name = "format", .type = DSP_PARAM_ENUM, .def = "auto",
      .choices = tensor_write_formats, .offset = offsetof(tensor_write_ctx, format),
      .doc = "file format; auto picks it from the extension (.npy, .safetensors)" },
    { NULL }
};

static const dsp_port_def tensor_write_in[] = {
    { "in", "any", "packets whose tensors are written (any packet type)" },
    { NULL }
};

static const char *const placeholders[] = { "item", "part", "stem", "name", NULL };

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Check every {...} in the template names a known placeholder. */
static int check_template(dsp_node *node, tensor_write_ctx *c)
{
    for (const char *p = c->path; (p = strchr(p, '{')); ) {
        const char *close = strchr(p, '}');
        size_t len = close ? (size_t)(close - p - 1) : 0;
        int ok = 0;
        for (int i = 0; close && placeholders[i]; i++)
            if (strlen(placeholders[i]) == len && strncmp(p + 1, placeholders[i], len) == 0) {
                ok = 1;
                if (i == 3)
                    c->has_name = 1;
            }
        if (!ok)
            return dsp_node_fail(node, DSP_EINVAL,
                                 "path '%s': unknown placeholder '%.*s'; use {item}, "
                                 "{part}, {stem} or {name}", c->path,
                                 close ? (int)(close - p + 1) : (int)strlen(p), p);
        p = close + 1;
    }
    return 0;
}

static int tensor_write_init(dsp_node *node)
{
    tensor_write_ctx *c = dsp_node_priv(node);
    if (!c->path || !c->path[0])
        return dsp_node_fail(node, DSP_EINVAL, "path must not be empty");
    int err = check_template(node, c);
    if (err < 0)
        return err;
    c->fmt = c->format;
    if (c->fmt == FORMAT_AUTO) {
        if (ends_with(c->path, ".npy"))
            c->fmt = FORMAT_NPY;
        else if (ends_with(c->path, ".safetensors"))
            c->fmt = FORMAT_SAFETENSORS;
        else
            return dsp_node_fail(node, DSP_EINVAL,
                                 "cannot tell the format from path '%s': end it in "
                                 ".npy or .safetensors, or set format=npy|safetensors",
                                 c->path);
    }
    if (c->fmt == FORMAT_SAFETENSORS && c->has_name)
        return dsp_node_fail(node, DSP_EINVAL,
                             "path '%s': {name} is for format=npy (one file per "
                             "tensor); a .safetensors file holds all of a packet's "
                             "tensors", c->path);
    return 0;
}

/* A template value must not steer the file out of the template's
 * directory: '/' becomes '_', and "." or ".." become "_". Malloc'd. */
static char *path_component(const char *v, size_t len)
{
    char *c = strndup(v, len);
    if (!c)
        return NULL;
    for (char *q = c; *q; q++)
        if (*q == '/')
            *q = '_';
    if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
        strcpy(c, "_");
    return c;
}

/* The file name's stem (basename without its last extension), made safe
 * as a path component. Malloc'd. */
static char *stem_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    return path_component(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

/* Expand the template; NULL on OOM. */
static char *expand(const tensor_write_ctx *c, const dsp_packet *p,
                    const char *stem, const char *name)
{
    size_t cap = strlen(c->path) + 1;
    char num[32];
    const char *vals[4];
    snprintf(num, sizeof num, "%" PRId64, dsp_packet_item(p));
    char part[32];
    snprintf(part, sizeof part, "%" PRId64, dsp_packet_part(p));
    char *safe = path_component(name ? name : "", name ? strlen(name) : 0);
    if (!safe)
        return NULL;
    vals[0] = num;
    vals[1] = part;
    vals[2] = stem;
    vals[3] = safe;
    for (int i = 0; i < 4; i++)
        cap += strlen(vals[i]) * 8;     /* generous: each may appear a few times */
    char *out = NULL;
    for (;;) {
        free(out);
        if (!(out = malloc(cap))) {
            free(safe);
            return NULL;
        }
        size_t o = 0;
        int overflow = 0;
        for (const char *s = c->path; *s && !overflow; ) {
            const char *v = NULL;
            if (*s == '{') {
                for (int i = 0; placeholders[i]; i++) {
                    size_t l = strlen(placeholders[i]);
                    if (strncmp(s + 1, placeholders[i], l) == 0 && s[1 + l] == '}') {
                        v = vals[i];
                        s += l + 2;
                        break;
                    }
                }
            }
            if (!v) {
                if (o + 1 >= cap)
                    overflow = 1;
                else
                    out[o++] = *s++;
                continue;
            }
            size_t l = strlen(v);
            if (o + l >= cap)
                overflow = 1;
            else {
                memcpy(out + o, v, l);
                o += l;
            }
        }
        if (!overflow) {
            out[o] = '\0';
            free(safe);
            return out;
        }
        cap *= 2;
    }
}

/* Write one file (one tensor for npy, all for safetensors). */
static int write_one(dsp_node *node, tensor_write_ctx *c, const dsp_packet *p,
                     const char *file, const char *const *names,
                     dsp_tensor *const *tensors, int n)
{
    int err = dsp_node_claim_output(node, file);
    if (err == DSP_ENOMEM)
        return dsp_node_fail(node, err, "out of memory");
    if (err < 0)
        return dsp_node_fail(node, DSP_EEXIST,
                             "%s: already written for an earlier item in this run "
                             "(item %" PRId64 " part %" PRId64 " maps to the same "
                             "file); make path '%s' unique, e.g. with {item} or "
                             "{stem}", file, dsp_packet_item(p), dsp_packet_part(p),
                             c->path);
    char *why = NULL;
    err = c->fmt == FORMAT_NPY
                  ? dsp_npy_write(file, tensors[0], &why)
                  : dsp_safetensors_write(file, names, tensors, n,
                                          dsp_meta_get_dict(dsp_packet_meta_const(p),
                                                            "safetensors_metadata"),
                                          &why);
    if (err < 0) {
        err = dsp_node_fail(node, err, "%s", why ? why : dsp_strerror(err));
        free(why);
        return err;
    }
    return 0;
}

static int tensor_write_process(dsp_node *node, dsp_packet **in)
{
    tensor_write_ctx *c = dsp_node_priv(node);
    const dsp_packet *p = in[0];
    int n = dsp_packet_tensor_count(p);
    if (n == 0)
        return dsp_node_fail(node, DSP_EINVAL,
                             "item %" PRId64 " has no tensors to write",
                             dsp_packet_item(p));
    if (c->fmt == FORMAT_NPY && n > 1 && !c->has_name)
        return dsp_node_fail(node, DSP_EINVAL,
                             "item %" PRId64 " has %d tensors but path '%s' has no "
                             "{name}: add {name} (one .npy per tensor) or write "
                             "format=safetensors", dsp_packet_item(p), n, c->path);

    char *stem, num[32];
    const char *src = NULL;
    const dsp_meta *m = dsp_packet_meta_const(p);
    snprintf(num, sizeof num, "%" PRId64, dsp_packet_item(p));
    if (dsp_meta_get_str(m, "path", &src) == 0 ||
        dsp_meta_get_str(m, "source", &src) == 0)
        stem = stem_of(src);
    else
        stem = strdup(num);
    if (!stem)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");

    const char **names = calloc((size_t)n, sizeof *names);
    dsp_tensor **tensors = calloc((size_t)n, sizeof *tensors);
    int err = 0;
    if (!names || !tensors) {
        err = dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        tensors[i] = dsp_packet_tensor_at(p, i, &names[i]);

    if (c->fmt == FORMAT_SAFETENSORS) {
        char *file = expand(c, p, stem, NULL);
        err = file ? write_one(node, c, p, file, names, tensors, n)
                   : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
        free(file);
    } else {
        for (int i = 0; i < n && err == 0; i++) {
            char *file = expand(c, p, stem, names[i]);
            err = file ? write_one(node, c, p, file, &names[i], &tensors[i], 1)
                       : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
            free(file);
        }
    }
out:
    free(stem);
    free(names);
    free(tensors);
    return err;
}

const dsp_op_def builtin_tensor_write_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "tensor.write",
    .doc = "write packet tensors as .npy or .safetensors files (atomic, never overwrites within a run)",
    .inputs = tensor_write_in,
    .params = tensor_write_params,
    .priv_size = sizeof(tensor_write_ctx),
    .flags = DSP_OP_SINK,
    .init = tensor_write_init,
    .process = tensor_write_process,
};
