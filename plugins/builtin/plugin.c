/* plugin.c - descriptor of dsp_builtin.so: file lists, tensor readers/writers, JSON and CSV sinks. */
#include "builtin.h"

static const dsp_op_def *const builtin_ops[] = {
    &builtin_files_list_op,
    &builtin_tensor_read_op,
    &builtin_tensor_source_op,
    &builtin_tensor_write_op,
    &builtin_sink_jsonl_op,
    &builtin_sink_json_op,
    &builtin_sink_null_op,
    &builtin_csv_write_op,
    &builtin_meta_set_op,
    NULL
};

DSP_PLUGIN_DEFINE("builtin", "0.1.0", "MIT",
                  "file lists, .npy/.safetensors readers and writers, JSON and CSV sinks",
                  builtin_ops)
