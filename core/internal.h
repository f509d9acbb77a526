/* internal.h - structures and functions shared between libdspipe's files (not API). */
#ifndef DSPIPE_INTERNAL_H
#define DSPIPE_INTERNAL_H

#include <stdio.h>
#include "dspipe/dspipe.h"

#define DSPI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define DSPI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DSPI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- growable string (strbuf.c) ---------------------------------------- */
typedef struct dspi_str {
    char *s;        /* always NUL-terminated when len > 0 or after any append */
    size_t len, cap;
    int oom;        /* an append failed; s holds what fitted */
} dspi_str;

void dspi_str_append(dspi_str *b, const char *s);
void dspi_str_appendn(dspi_str *b, const char *s, size_t n);
void dspi_str_printf(dspi_str *b, const char *fmt, ...) DSP_PRINTF(2, 3);
void dspi_str_vprintf(dspi_str *b, const char *fmt, va_list ap);
/* A malloc'd formatted string, NULL on OOM. */
char *dspi_fmt(const char *fmt, ...) DSP_PRINTF(1, 2);
/* Hand the text over (caller frees with free()); b is reset. "" if empty. */
char *dspi_str_take(dspi_str *b);
void dspi_str_free(dspi_str *b);

/* ---- context and registry (context.c, loader.c) ------------------------ */
typedef struct dspi_opreg {
    const dsp_op_def *op;
    const dsp_plugin_desc *plugin;
    const char *origin;     /* borrowed from the plugin record */
} dspi_opreg;

typedef struct dspi_plugin {
    char *origin;           /* file path or "built-in:NAME" */
    void *handle;           /* dlopen handle or NULL */
    const dsp_plugin_desc *desc;
} dspi_plugin;

struct dspi_backend;

struct dsp_context {
    char **dirs;            /* --plugin-path dirs, in order */
    int n_dirs;
    dspi_plugin *plugins;
    int n_plugins;
    dspi_opreg *ops;        /* sorted by name */
    int n_ops;
    char *errmsg;           /* malloc'd; never NULL after dsp_context_new */
    const struct dspi_backend *cuda; /* loaded CUDA backend, or NULL */
    void *cuda_handle;
    char *cuda_error;       /* why the backend is unavailable */
    int cuda_tried;
};

/* Replace the context's message. */
void dspi_set_error(dsp_context *ctx, const char *fmt, ...) DSP_PRINTF(2, 3);
/* Take ownership of a malloc'd message. */
void dspi_set_error_owned(dsp_context *ctx, char *msg);

/* Edit distance, for "did you mean" hints. */
int dspi_edit_distance(const char *a, const char *b);
/* The candidate nearest to name, or NULL when none is close enough
 * (distance > max(2, strlen(name)/3)). */
const char *dspi_nearest(const char *name, const char *const *cands, int n);

/* ---- parameters (params.c) --------------------------------------------- */

/* Check an operator definition's parameter table: names unique, types
 * known, defaults parse and lie in range, enum choices present. Used by the
 * loader so a plugin with a broken table is refused at load time.
 * Returns 0 or DSP_EABI with a malloc'd message in *err. */
int dspi_params_check_table(const dsp_op_def *op, char **err);

/* Store a parameter value given as text, as written in a .pipe file after
 * argument substitution and unquoting. For DSP_PARAM_LIST, items holds
 * the list's elements (n items); for every other type n == 1.
 * Returns 0, or DSP_EINVAL with a malloc'd one-line reason in *err
 * ("value 300 is out of range [0, 255]") and a malloc'd hint in *hint
 * (may be NULL). */
int dspi_param_store(const dsp_param_def *def, void *priv,
                     const char *const *items, int n, const char *base_dir,
                     char **err, char **hint);

/* Store the default of every parameter not in `given` (a flag per table
 * entry). Required parameters without a value are the caller's error. */
int dspi_params_store_defaults(const dsp_op_def *op, void *priv,
                               const unsigned char *given);

/* Free STRING/PATH/LIST storage inside priv. Safe on zeroed storage. */
void dspi_params_free(const dsp_op_def *op, void *priv);

/* "int in [0, 255]", "enum: lung|bone", "list of float" ... */
void dspi_param_describe_type(const dsp_param_def *def, dspi_str *out);
/* Current value of a stored parameter, as text (for dot and logs). */
void dspi_param_format_value(const dsp_param_def *def, const void *priv,
                             dspi_str *out);

/* `dspipe inspect OP`: ports, parameters, flags, origin. */
int dspi_write_inspect(const dsp_context *ctx, const dsp_op_def *op, FILE *out);

/* ---- the validated graph (parse.c, graph.c) ---------------------------- */

typedef struct dspi_gnode {
    char *name;
    const dsp_op_def *op;
    int line, col;          /* where the node was declared */
    void *priv;             /* priv_size bytes (at least 1), params stored */
    int n_in_slots;         /* input ports, variadic port expanded */
    int *slot_port;         /* slot -> input port index (n_in_slots) */
    int n_out;              /* output ports */
    int batch;              /* BATCHABLE: `batch=` (0: op's max_batch) */
    int batch_timeout_ms;   /* BATCHABLE: `batch_timeout_ms=` (0: none) */
} dspi_gnode;

typedef struct dspi_gedge {
    int src, src_port;      /* node index, output port index */
    int dst, dst_slot;      /* node index, input slot */
    int line, col;
} dspi_gedge;

typedef struct dspi_graph {
    char *path;             /* pipe file path, or the name given */
    char *dir;              /* directory of path ("." for strings) */
    dspi_gnode *nodes;
    int n_nodes;
    dspi_gedge *edges;      /* sorted by (dst, dst_slot) */
    int n_edges;
    /* `option` statements; 0 / NULL when not given */
    dsp_on_error on_error;
    char *errors_path;
    char *journal_path;
    int queue_size;
} dspi_graph;

/* Parse, bind args, resolve operators and ports, store parameters,
 * validate (types, required inputs, cycles). On failure returns
 * DSP_ESYNTAX and sets ctx's message to every diagnostic (at most 20). */
int dspi_graph_parse(dsp_context *ctx, const char *path, const char *text,
                     const dsp_pipe_args *args, dspi_graph **out);
/* Frees parameter storage (dspi_params_free) and everything else. */
void dspi_graph_free(dspi_graph **g);
int dspi_graph_write_dot(const dspi_graph *g, FILE *out);

/* Two port type strings connect (see plugin.h). */
int dspi_types_compatible(const char *out_type, const char *in_type);

/* ---- devices (device.c) ------------------------------------------------- */

/* Function table of a compute backend module (core/ops/cuda). Grows at
 * the end only; the module checks struct_size. */
typedef struct dspi_backend {
    uint32_t struct_size;
    const char *name;
    /* Number of usable devices; 0 with *why set when none. */
    int (*device_count)(const char **why);
    int (*device_name)(int index, char *dst, size_t n);
    int (*malloc)(int index, size_t size, void **out);
    void (*free)(int index, void *p);
    int (*memcpy_h2d)(int index, void *dst, const void *src, size_t n);
    int (*memcpy_d2h)(int index, void *dst, const void *src, size_t n);
    int (*synchronize)(int index);
    /* The module's operator kernels (ops/ops_int.h): device pointers in
     * and out, NULL entries for operators not ported yet. */
    const struct dspi_ops_backend *ops;
} dspi_backend;

#define DSPI_BACKEND_ENTRY_SYMBOL "dspi_cuda_backend"
typedef const dspi_backend *(*dspi_backend_entry_fn)(void);

/* Unload the backend module (dsp_context_free). */
void dspi_device_close(dsp_context *ctx);

/* The CUDA backend for ctx, loading it on first use; NULL (reason in
 * ctx->cuda_error) when it cannot be loaded. */
const dspi_backend *dspi_device_backend(dsp_context *ctx);

/* The CUDA backend some context loaded in this process, or NULL. Modules
 * are never unloaded, so the pointer stays valid: operators, which see
 * tensors but no context, reach device memory through it. */
const dspi_backend *dspi_device_loaded_backend(void);

/* ---- device tensors (device_tensor.c) ----------------------------------- */

/* New contiguous tensor in memory be allocates on dev (contents undefined);
 * the memory goes back to be when the last reference goes. */
int dspi_device_tensor_new(const dspi_backend *be, dsp_device dev, dsp_dtype dtype,
                           int ndim, const int64_t *shape, dsp_tensor **out);

/* ---- buffers (buffer.c) ------------------------------------------------- */

/* Wrap memory a compute backend allocated on dev (kind DSP_BUFFER_DEVICE);
 * release(opaque, ptr) frees it when the last reference goes. */
int dspi_buffer_new_device(dsp_device dev, void *ptr, size_t size,
                           void (*release)(void *opaque, void *data),
                           void *opaque, dsp_buffer **out);

/* Data derived from the bytes of a read-only buffer (a file mapping, or
 * memory wrapped read-only), such as a convolution's transformed weights:
 * kept with the buffer and freed by release(data) with its last reference.
 * An entry is found by its key bytes (the deriving module's tag, the
 * source tensor's offset and shape, ...); on a miss make(ctx, &data) builds
 * it (returning 0 or a negative code) under a lock, so it is built once.
 * Returns the data, owned by the buffer (valid while the caller holds a
 * reference to buf); NULL with *rc 0 when buf is writable (its bytes may
 * change: the caller derives per use), NULL with *rc < 0 when make or an
 * allocation failed. */
void *dspi_buffer_derived(dsp_buffer *buf, const void *key, size_t key_len,
                          int (*make)(void *ctx, void **data), void (*release)(void *data),
                          void *ctx, int *rc);

/* ---- packets (packet.c) ------------------------------------------------- */

/* Mark p as emitted: from now on it is read-only for everyone
 * (dsp_packet_is_writable is 0, set/remove_tensor give DSP_ESTATE). */
void dspi_packet_freeze(dsp_packet *p);

/* Free what jansson allocated (json_dumps): with jansson's own allocator,
 * which an embedding program may have replaced (common.c). */
void dspi_json_free(void *p);

/* ---- atomic output files (outfile.c) ---------------------------------- */

/* dsp_outfile_open/commit without a node: on failure *errmsg is a
 * malloc'd message naming the path (NULL for DSP_ENOMEM). */
int dspi_outfile_open(const char *path, dsp_outfile **out, char **errmsg);
/* mkdir -p for the directory part of path: 0 or an errno value. */
int dspi_make_parent_dirs(const char *path);
int dspi_outfile_commit(dsp_outfile **f, char **errmsg);

/* ---- tensor files (tensorio_npy.c, shared with tensorio_safetensors.c) -- */

int dspi_tio_error(char **errmsg, int code, const char *fmt, ...) DSP_PRINTF(3, 4);
int dspi_tio_write_data(FILE *fp, const dsp_tensor *t);
void dspi_tio_byteswap(void *data, size_t elsize, size_t count);

#endif /* DSPIPE_INTERNAL_H */
