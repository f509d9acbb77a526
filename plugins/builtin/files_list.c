/* files_list.c - files.list: one record per file of a directory tree or a list file. */
#include "builtin.h"

#include <string.h>

typedef struct files_list_ctx {
    /* parameters */
    char *dir;
    char *glob;
    int recursive;
    char *list;
    int sort;
    int hidden;
    int64_t limit;
    /* state */
    char **paths;
    size_t n;
    size_t next;
} files_list_ctx;

static const dsp_param_def files_list_params[] = {
    /* optional paths (empty default): exactly one of dir/list is given */
    { .name = "dir", .type = DSP_PARAM_PATH, .def = "",
      .offset = offsetof(files_list_ctx, dir),
      .doc = "directory to list (exactly one of dir and list)" },
    { .name = "glob", .type = DSP_PARAM_STRING, .def = "*",
      .offset = offsetof(files_list_ctx, glob),
      .doc = "shell pattern matched against each file name, e.g. \"*.npy\"" },
    { .name = "recursive", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(files_list_ctx, recursive),
      .doc = "descend into subdirectories" },
    { .name = "list", .type = DSP_PARAM_PATH, .def = "",
      .offset = offsetof(files_list_ctx, list),
      .doc = "text file of paths, one per line, '#' starts a comment line; "
             "relative paths are relative to the list file" },
    { .name = "sort", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(files_list_ctx, sort),
      .doc = "sort by full path (byte order) so runs are deterministic" },
    { .name = "hidden", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(files_list_ctx, hidden),
      .doc = "include files and directories whose name starts with '.'" },
    { .name = "limit", .type = DSP_PARAM_INT, .def = "0",
      .offset = offsetof(files_list_ctx, limit), .min = 0, .max = 1e15,
      .doc = "emit at most this many files (0 = all)" },
    { NULL }
};

static const dsp_port_def files_list_out[] = {
    { "out", "record", "one record per file: meta path, name, source, index" },
    { NULL }
};

static int files_list_init(dsp_node *node)
{
    files_list_ctx *c = dsp_node_priv(node);
    dsp_file_list_opts o = { .dir = c->dir, .list = c->list, .glob = c->glob,
                             .recursive = c->recursive, .hidden = c->hidden,
                             .sort = c->sort, .limit = c->limit };
    return dsp_list_files(node, &o, &c->paths, &c->n);
}

static int files_list_process(dsp_node *node, dsp_packet **in)
{
    files_list_ctx *c = dsp_node_priv(node);
    (void)in;
    if (c->next >= c->n || dsp_node_stopping(node))
        return DSP_EOF;
    const char *path = c->paths[c->next++];
    dsp_packet *p = dsp_node_packet_new(node);
    if (!p)
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    dsp_meta *m = dsp_packet_meta(p);
    int err = dsp_meta_set_str(m, "path", path);
    if (!err)
        err = dsp_meta_set_str(m, "name", name);
    if (!err)
        err = dsp_meta_set_str(m, "source", path);
    if (!err)
        err = dsp_meta_set_int(m, "index", dsp_packet_item(p));
    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "%s: cannot set metadata: %s", path,
                             dsp_strerror(err));
    }
    dsp_node_progress(node, (int64_t)c->next, (int64_t)c->n);
    return dsp_node_emit(node, 0, p);
}

static void files_list_fini(dsp_node *node)
{
    files_list_ctx *c = dsp_node_priv(node);
    dsp_list_files_free(&c->paths, c->n);
    c->n = 0;
}

const dsp_op_def builtin_files_list_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "files.list",
    .doc = "list the files of a directory tree or a list file, one record each",
    .outputs = files_list_out,
    .params = files_list_params,
    .priv_size = sizeof(files_list_ctx),
    .flags = DSP_OP_SOURCE,
    .init = files_list_init,
    .process = files_list_process,
    .fini = files_list_fini,
};
