/* dspipe/plugin.h - the one header a dspipe plugin needs.
 *
 * A plugin is a shared object that exports one function, dsp_plugin_entry(),
 * returning a constant descriptor: the ABI version it was built against, its
 * name and version, and a NULL-terminated table of operator definitions.
 * The host refuses a plugin built for another ABI version.
 *
 * A complete operator, "demo.scale", that multiplies every f32 tensor of a
 * packet by a factor:
 *
 *     #include <dspipe/plugin.h>
 *
 *     typedef struct { double factor; } scale_ctx;      // parameters land here
 *
 *     static const dsp_param_def scale_params[] = {
 *         { .name = "factor", .type = DSP_PARAM_FLOAT, .def = "2.0",
 *           .offset = offsetof(scale_ctx, factor), .min = -1e6, .max = 1e6,
 *           .doc = "multiplier applied to every element" },
 *         { NULL }
 *     };
 *     static const dsp_port_def scale_in[]  = { { "in",  "tensor", "input", 0 },  { NULL } };
 *     static const dsp_port_def scale_out[] = { { "out", "tensor", "scaled", 0 }, { NULL } };
 *
 *     static int scale_process(dsp_node *node, dsp_packet **in)
 *     {
 *         scale_ctx *s = dsp_node_priv(node);
 *         dsp_packet *p = dsp_packet_ref(in[0]);      // we forward the input
 *         int err = dsp_packet_make_writable(&p);     // copies only if shared
 *         for (int i = 0; !err && i < dsp_packet_tensor_count(p); i++) {
 *             const char *name;
 *             dsp_tensor *t = dsp_tensor_ref(dsp_packet_tensor_at(p, i, &name));
 *             if (t->dtype != DSP_DTYPE_F32) { dsp_tensor_unref(&t); continue; }
 *             if ((err = dsp_tensor_make_writable(&t)) < 0) break;
 *             float *x = dsp_tensor_data(t);
 *             for (int64_t k = 0; k < dsp_tensor_numel(t); k++) x[k] *= s->factor;
 *             err = dsp_packet_set_tensor(p, name, t);  // transfer full
 *         }
 *         if (err < 0) { dsp_packet_unref(&p); return dsp_node_fail(node, err, "cannot scale"); }
 *         return dsp_node_emit(node, 0, p);            // transfer full
 *     }
 *
 *     static const dsp_op_def scale_op = {
 *         .struct_size = sizeof(dsp_op_def), .name = "demo.scale",
 *         .doc = "multiply f32 tensors by a constant",
 *         .inputs = scale_in, .outputs = scale_out, .params = scale_params,
 *         .priv_size = sizeof(scale_ctx), .process = scale_process,
 *     };
 *     static const dsp_op_def *const ops[] = { &scale_op, NULL };
 *     DSP_PLUGIN_DEFINE("demo", "1.0", "MIT", "demonstration operators", ops)
 *
 * Build it against an installed dspipe and use it:
 *
 *     cc -shared -fPIC scale.c $(pkg-config --cflags --libs dspipe) -o scale.so
 *     DSPIPE_PLUGIN_PATH=. dspipe inspect demo.scale
 *
 * Ownership rules, everywhere in this API: "(transfer full)" means the
 * callee takes the caller's reference, also when it fails; "borrowed" means
 * the caller must not free it and must not keep it past the stated lifetime.
 */
#ifndef DSPIPE_PLUGIN_H
#define DSPIPE_PLUGIN_H

#include <dspipe/common.h>
#include <dspipe/tensor.h>
#include <dspipe/packet.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the structs or callbacks below. The
 * host loads only plugins whose descriptor carries exactly this number. */
#define DSP_PLUGIN_ABI_VERSION 1
#define DSP_PLUGIN_ENTRY_SYMBOL "dsp_plugin_entry"

typedef struct dsp_node dsp_node;

/* ---------------------------------------------------------------------------
 * Parameters: a declarative table. The core parses values from .pipe files,
 * checks types, ranges and choices, applies defaults and stores the result
 * at `offset` inside the operator's private state before init() runs. An
 * operator never parses its own parameter strings.
 *
 *   type            stored as (at offset)
 *   DSP_PARAM_INT    int64_t
 *   DSP_PARAM_FLOAT  double
 *   DSP_PARAM_BOOL   int (0/1); accepts true/false/yes/no/on/off/1/0
 *   DSP_PARAM_STRING char *  (owned by the core, freed after fini)
 *   DSP_PARAM_PATH   char *  (as STRING; "~/" expanded; NULL when optional
 *                            and not given)
 *   DSP_PARAM_ENUM   int     (index into choices)
 *   DSP_PARAM_LIST   dsp_list (elements of type `elem`)
 * ------------------------------------------------------------------------- */
typedef enum dsp_param_type {
    DSP_PARAM_INT = 1,
    DSP_PARAM_FLOAT,
    DSP_PARAM_BOOL,
    DSP_PARAM_STRING,
    DSP_PARAM_PATH,
    DSP_PARAM_ENUM,
    DSP_PARAM_LIST
} dsp_param_type;

enum {
    DSP_PARAM_MUST_EXIST = 1 << 0   /* PATH: must name an existing file or dir */
};

typedef struct dsp_param_def {
    const char *name;
    dsp_param_type type;
    size_t offset;              /* offsetof(private struct, field)          */
    const char *def;            /* default, written as in a .pipe file;
                                   NULL makes the parameter required; "" for
                                   a PATH makes it optional (stored NULL)    */
    double min, max;            /* INT/FLOAT (and LIST elements): inclusive
                                   range; none when both are 0               */
    const char *const *choices; /* ENUM: NULL-terminated names              */
    dsp_param_type elem;        /* LIST: element type (INT, FLOAT, STRING, PATH) */
    unsigned flags;             /* DSP_PARAM_*                               */
    const char *doc;            /* one line                                  */
} dsp_param_def;

/* Storage of a DSP_PARAM_LIST. Exactly one of i/f/s is set, by elem type;
 * s holds the element texts for STRING and PATH. Owned by the core. */
typedef struct dsp_list {
    int n;
    int64_t *i;
    double *f;
    char **s;
} dsp_list;

/* ---------------------------------------------------------------------------
 * Ports. type is a short type name, optionally narrowed with ':'
 * ("image", "image:u8:rgb", "tokens", "any"). Two ports connect when their
 * base types are equal (or either is "any") and every narrowing both sides
 * give agrees.
 * ------------------------------------------------------------------------- */
enum {
    DSP_PORT_OPTIONAL = 1 << 0, /* input may stay unconnected (in[k] is NULL) */
    DSP_PORT_VARIADIC = 1 << 1  /* last input only: accepts any number of
                                   edges, each its own slot in in[]           */
};

typedef struct dsp_port_def {
    const char *name;
    const char *type;
    const char *doc;
    unsigned flags;
} dsp_port_def;

/* ---------------------------------------------------------------------------
 * Operators.
 * ------------------------------------------------------------------------- */
enum {
    DSP_OP_SOURCE    = 1 << 0,  /* no inputs; process() called until DSP_EOF */
    DSP_OP_SINK      = 1 << 1,  /* writes results; counted for progress      */
    DSP_OP_BATCHABLE = 1 << 2,  /* single input; process_batch() gets up to
                                   `batch` packets (see max_batch)            */
    DSP_OP_CUDA      = 1 << 3,  /* can run on a CUDA device                  */
    DSP_OP_GATHER    = 1 << 4   /* keeps what it took from an item past the
                                   call that consumed it: emits or commits
                                   results at end of stream (one file of all
                                   items, one volume from many files). Such a
                                   pipeline cannot journal items as done one
                                   by one, so --resume refuses it. Ops whose
                                   behaviour depends on a parameter set it per
                                   node with dsp_node_set_gather().           */
};

typedef struct dsp_op_def {
    uint32_t struct_size;       /* sizeof(dsp_op_def) at build time          */
    const char *name;           /* "family.op", unique across all plugins    */
    const char *doc;            /* one line                                  */
    const dsp_port_def *inputs; /* terminated by { NULL }; NULL = none       */
    const dsp_port_def *outputs;
    const dsp_param_def *params;/* terminated by { NULL }; NULL = none       */
    size_t priv_size;           /* private state, zeroed, params stored in it */
    unsigned flags;             /* DSP_OP_*                                  */
    int max_batch;              /* BATCHABLE: largest batch the op accepts   */

    /* All callbacks return 0 or a negative DSP_E* code. A node's callbacks
     * are never called concurrently: private state needs no locking. */

    /* After parameters are stored: validate combinations, load weights. */
    int (*init)(dsp_node *node);
    /* One packet per input slot (in[k] NULL for an unconnected optional
     * port; all share one (item, part)). Borrowed: ref what you keep.
     * Sources get in == NULL and return DSP_EOF when exhausted. Emit any
     * number of packets (including none) with dsp_node_emit. */
    int (*process)(dsp_node *node, dsp_packet **in);
    /* BATCHABLE ops: n packets (1 <= n <= batch) of the single input, in
     * stream order. Borrowed. When absent, process() is called per packet. */
    int (*process_batch)(dsp_node *node, dsp_packet **in, int n);
    /* End of stream on every input: emit what is still held, commit outputs. */
    int (*flush)(dsp_node *node);
    /* Always called once if init() was called (even if init failed):
     * release everything. Parameters are freed by the core afterwards. */
    void (*fini)(dsp_node *node);

    void *reserved[8];          /* zero; room to grow without an ABI break  */
} dsp_op_def;

typedef struct dsp_plugin_desc {
    uint32_t abi_version;       /* DSP_PLUGIN_ABI_VERSION                    */
    uint32_t struct_size;       /* sizeof(dsp_plugin_desc)                   */
    const char *name;
    const char *version;
    const char *license;        /* SPDX identifier                           */
    const char *description;
    const dsp_op_def *const *ops; /* NULL-terminated                         */
    void *reserved[8];
} dsp_plugin_desc;

typedef const dsp_plugin_desc *(*dsp_plugin_entry_fn)(void);

#define DSP_PLUGIN_DEFINE(name_, version_, license_, desc_, ops_)            \
    __attribute__((visibility("default")))                                   \
    const dsp_plugin_desc *dsp_plugin_entry(void);                           \
    const dsp_plugin_desc *dsp_plugin_entry(void)                            \
    {                                                                        \
        static const dsp_plugin_desc d = {                                   \
            DSP_PLUGIN_ABI_VERSION, sizeof(dsp_plugin_desc), name_,          \
            version_, license_, desc_, ops_, { 0 } };                        \
        return &d;                                                           \
    }

/* ---------------------------------------------------------------------------
 * What an operator can ask of the host about its node.
 * ------------------------------------------------------------------------- */

/* The private state (priv_size bytes, zeroed before parameters are stored). */
DSP_API void *dsp_node_priv(const dsp_node *node);
/* The node's name in the pipeline ("nodules"). */
DSP_API const char *dsp_node_name(const dsp_node *node);
DSP_API const dsp_op_def *dsp_node_op(const dsp_node *node);
/* Number of input slots: input ports, with a variadic port expanded to the
 * number of edges connected to it. */
DSP_API int dsp_node_input_count(const dsp_node *node);
/* The batch size chosen for a BATCHABLE node (1 otherwise). */
DSP_API int dsp_node_batch_size(const dsp_node *node);
/* The device this run computes on. */
DSP_API dsp_device dsp_node_device(const dsp_node *node);
/* Directory of the .pipe file the node was declared in ("." for strings). */
DSP_API const char *dsp_node_pipe_dir(const dsp_node *node);

/* New writable packet positioned for this node's output: the (item, part,
 * last, pts) of the input being processed, or for a source the next item
 * (0, 1, 2, ... per call). NULL on OOM. */
DSP_API dsp_packet *dsp_node_packet_new(dsp_node *node);

/* Send pkt on output port `port` (transfer full). Output packets of one
 * output must have non-decreasing item numbers, and an item's packets are
 * emitted no later than the call that consumes a later item (joins
 * downstream rely on both; holding items back belongs in flush only when
 * no join follows). Returns 0, DSP_EINVAL for a bad port or a decreasing
 * item, DSP_ESTATE outside process/flush. The packet becomes read-only. */
DSP_API int dsp_node_emit(dsp_node *node, int port, dsp_packet *pkt);

/* Record why the current item failed and return code, so callbacks end with
 * `return dsp_node_fail(node, DSP_EFORMAT, "%s: not a PNG file", path);`.
 * The message should say what failed and what to do about it. */
DSP_API int dsp_node_fail(dsp_node *node, int code, const char *fmt, ...)
    DSP_PRINTF(3, 4);

/* Record that the item of pkt (one of the callback's inputs) failed, while
 * the callback goes on with the others and returns 0: a batch with one bad
 * packet fails that item alone (errors file under --on-error skip) and
 * emits the rest. The message says what is wrong with this input, without
 * its item number (the core adds it). Returns 0, or DSP_ESTATE outside a
 * callback or for a NULL packet. */
DSP_API int dsp_node_fail_packet(dsp_node *node, const dsp_packet *pkt, int code, const char *fmt, ...)
    DSP_PRINTF(4, 5);

/* Log with the node's context: "[name@op] message". */
DSP_API void dsp_node_log(const dsp_node *node, dsp_log_level level,
                          const char *fmt, ...) DSP_PRINTF(3, 4);

/* Progress of a long-running source: done out of total (total <= 0 when
 * unknown). Feeds the progress bar and --profile. */
DSP_API void dsp_node_progress(dsp_node *node, int64_t done, int64_t total);

/* Say from init() whether this node gathers items (see DSP_OP_GATHER),
 * overriding the op's flag: an op that gathers only in some modes clears it
 * when the parameters ask for one output per item. Other callbacks: no
 * effect. */
DSP_API void dsp_node_set_gather(dsp_node *node, int gathers);

/* Non-zero once the run is stopping (SIGINT, abort): long loops inside a
 * callback should return early. */
DSP_API int dsp_node_stopping(const dsp_node *node);

/* ---------------------------------------------------------------------------
 * Resuming (dspipe --resume; docs/plugins.md "Resumable sinks"). A sink that
 * writes one file of all items stays per-item, so the pipeline can resume,
 * by streaming each record to a side file on disk tagged with its item's
 * journal key, and building its output from that file at flush. Under the
 * harness these say "no journal": 0 / DSP_ENOENT.
 * ------------------------------------------------------------------------- */

/* 1 when this run journals its items one by one (a later --resume skips the
 * finished ones), else 0. Settled after every node's init: ask from process
 * or flush (from init it is always 0). */
DSP_API int dsp_node_journaling(const dsp_node *node);
/* 1 when this run resumes an earlier one: --resume and a journal that lists
 * at least one finished item (those are skipped at the source). 0 for a
 * fresh run, and for --resume with no or an empty journal (every item
 * runs). Valid from init on. */
DSP_API int dsp_node_resuming(const dsp_node *node);
/* The journal key of source item `item` while it is in flight (an item of
 * the callback's inputs): *key is malloc'd, the caller frees it with
 * dsp_free. 0; DSP_ENOENT when the run keeps no journal or the item is not
 * in flight (*key NULL); DSP_ENOMEM. */
DSP_API int dsp_node_item_key(const dsp_node *node, int64_t item, char **key);
/* 1 when the journal read at the start of a --resume run lists key as done
 * (its item is skipped this run), else 0 (also for NULL). Valid from init. */
DSP_API int dsp_node_key_done(const dsp_node *node, const char *key);
/* From fini: 1 when the run went through every item with no failure, no
 * interrupt and no abort, so a later --resume would have nothing to redo;
 * else 0. */
DSP_API int dsp_node_run_complete(const dsp_node *node);

/* ---------------------------------------------------------------------------
 * Atomic output files: written to a temporary file beside `path` and
 * renamed into place on commit, so no half-written output ever exists.
 * Missing parent directories are created.
 * ------------------------------------------------------------------------- */
typedef struct dsp_outfile dsp_outfile;

/* Open a temporary file for path; on failure the reason is recorded on the
 * node (as by dsp_node_fail) and the code returned. */
DSP_API int dsp_outfile_open(dsp_node *node, const char *path,
                             dsp_outfile **out);
/* The stdio stream to write to (borrowed). */
DSP_API void *dsp_outfile_stream(dsp_outfile *f);  /* FILE * */
DSP_API const char *dsp_outfile_path(const dsp_outfile *f);
/* Flush, fsync and rename into place; frees *f and sets it NULL. A write or
 * rename error removes the temporary file and returns DSP_EIO. */
DSP_API int dsp_outfile_commit(dsp_node *node, dsp_outfile **f);
/* Remove the temporary file; frees *f and sets it NULL. NULL is a no-op. */
DSP_API void dsp_outfile_discard(dsp_outfile **f);
/* Claim path as an output of this node for the current run, before writing
 * it: 0 the first time, DSP_EEXIST when an earlier item of the run claimed
 * the same path (two items would overwrite each other: the caller should
 * fail the item and say how to make its path pattern unique), DSP_ENOMEM.
 * Records nothing on the node. */
DSP_API int dsp_node_claim_output(dsp_node *node, const char *path);
/* Copy s into out (n bytes) keeping only the characters safe in one path
 * component: letters, digits, '.', '-' and '_'. Returns the length; 0 (out
 * "") when nothing usable is left, s is NULL, or the result is "." or "..". */
DSP_API size_t dsp_path_component(const char *s, char *out, size_t n);

/* ---------------------------------------------------------------------------
 * Input files for source operators (files.list, dicom.studies): the regular
 * files of a directory tree or the paths of a list file.
 * ------------------------------------------------------------------------- */
typedef struct dsp_file_list_opts {
    const char *dir;            /* a directory (exactly one of dir and list) */
    const char *list;           /* a text file of paths, one a line, '#' a
                                   comment; relative to the list's folder   */
    const char *glob;           /* shell pattern on the file name; NULL: "*" */
    int recursive;              /* descend into subdirectories               */
    int hidden;                 /* include names starting with '.'           */
    int sort;                   /* sort by full path (byte order)            */
    int64_t limit;              /* keep at most this many (0 = all)          */
} dsp_file_list_opts;

/* List the files o selects into *paths (malloc'd array of malloc'd paths,
 * owned by the caller, freed with dsp_list_files_free) and *n. Symlinked
 * directories are entered once; an unreadable subdirectory is logged and
 * skipped. 0, or a code with the reason recorded on the node (a missing
 * dir or list file, both or neither given, DSP_ENOMEM). */
DSP_API int dsp_list_files(dsp_node *node, const dsp_file_list_opts *o, char ***paths,
                           size_t *n);
/* Free what dsp_list_files returned and set *paths NULL. NULL is a no-op. */
DSP_API void dsp_list_files_free(char ***paths, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_PLUGIN_H */
