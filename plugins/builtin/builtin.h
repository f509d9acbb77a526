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

#endif /* DSP_BUILTIN_H */
