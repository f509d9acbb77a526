/* builtin.h - helpers shared by the operators of the built-in plugin (not API). */
#ifndef DSP_BUILTIN_H
#define DSP_BUILTIN_H

#include <dspipe/plugin.h>
#include <jansson.h>

/* The operators, each defined in its own file and listed in plugin.c. */
extern const dsp_op_def builtin_files_list_op;
extern const dsp_op_def builtin_tensor_read_op;
extern const dsp_op_def builtin_tensor_source_op;
extern const dsp_op_def builtin_tensor_write_op;
extern const dsp_op_def builtin_sink_jsonl_op;
extern const dsp_op_def builtin_sink_json_op;
extern const dsp_op_def builtin_sink_null_op;
extern const dsp_op_def builtin_csv_write_op;
extern const dsp_op_def builtin_meta_set_op;

/* Read the tensor file at path into pkt (writable), telling .npy from
 * .safetensors by their first bytes, not the extension. A .npy tensor is
 * stored under npy_name; safetensors tensors under their own names, with
 * "__metadata__" copied into meta "safetensors_metadata". On failure the
 * reason (naming the file) is recorded with dsp_node_fail and the code
 * returned. Used by tensor.read and tensor.source. */
int builtin_read_tensor_file(dsp_node *node, const char *path,
                             const char *npy_name, dsp_packet *pkt);

/* One packet as a JSON record {"item", "part", "meta", "tensors"}; tensor
 * values are included (flat, C order) only when numel <= max_values.
 * New reference, NULL on OOM. Used by sink.jsonl and sink.json. */
json_t *builtin_packet_record(const dsp_packet *pkt, int64_t max_values);

/* The output file of a sink that writes one file of all items (sink.jsonl,
 * csv.write), kept per-item so the pipeline can resume: when the run keeps
 * a journal, every record is appended and flushed to PATH.part with its
 * item number and journal key, and commit builds PATH from it in item
 * order (atomically); a --resume run first takes up the records of the
 * items the journal lists and drops the rest (they run again). Without a
 * journal the records go straight into the temporary output. docs/plugins.md
 * "Resumable sinks". */
typedef struct builtin_sink_file builtin_sink_file;

/* From init: open the temporary output (an unwritable destination fails
 * the run before any work) and, resuming, take up PATH.part. 0, or the code
 * with the reason recorded on the node (a malformed side file: file:line). */
int builtin_sink_file_open(dsp_node *node, const char *path, builtin_sink_file **out);
/* The first line of a side file taken up (the head a sink set in the
 * earlier run, e.g. CSV columns), or NULL. Borrowed. */
const json_t *builtin_sink_file_head(const builtin_sink_file *f);
/* What the side file's first line records (transfer full; an object) and
 * the text the output starts with (copied; NULL for none). Call before the
 * first record. 0 or DSP_ENOMEM. */
int builtin_sink_file_set_head(dsp_node *node, builtin_sink_file *f, json_t *head,
                               const char *prologue);
/* One record of item (len bytes of text, a whole line or row). 0, or the
 * code with the reason recorded on the node. */
int builtin_sink_file_write(dsp_node *node, builtin_sink_file *f, int64_t item,
                            const char *text, size_t len);
/* From flush: build and rename the output into place. */
int builtin_sink_file_commit(dsp_node *node, builtin_sink_file *f);
/* From fini: discard an output not committed; remove the side file when the
 * run completed (else it stays for --resume). Frees *pf, sets it NULL. */
void builtin_sink_file_close(dsp_node *node, builtin_sink_file **pf);

#endif /* DSP_BUILTIN_H */
