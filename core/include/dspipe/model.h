/* dspipe/model.h - Hugging Face model folders: config.json plus safetensors weights, found by tensor name.
 *
 * A model folder is what transformers' save_pretrained writes and what the
 * Hub serves: config.json and either one model.safetensors or
 * model.safetensors.index.json with the shards it names. Every shard is
 * mapped read-only and validated when the model is opened; tensors view the
 * mappings (no copy) and are found by their original names.
 *
 *     dsp_model *m; char *why = NULL;
 *     if (dsp_model_open("models/bert-base-uncased", &m, &why) < 0) {
 *         fprintf(stderr, "%s\n", why); free(why); return 1;
 *     }
 *     int64_t hidden;
 *     dsp_model_config_int(m, "hidden_size", &hidden);
 *     dsp_tensor *wq;
 *     dsp_model_tensor(m, "encoder.layer.0.attention.self.query.weight", &wq);
 *     ...
 *     dsp_tensor_unref(&wq);
 *     dsp_model_close(&m);
 *
 * Error messages (errmsg) follow tensorio.h: malloc'd, naming the folder or
 * file, what is wrong and what to do; the caller free()s them; errmsg may be
 * NULL; on success *errmsg is left untouched.
 *
 * Thread-safety: once dsp_model_open has returned, every function except
 * dsp_model_close may be called on the same model from several threads at
 * once (they only read). Close it after the last of them has returned.
 * Tensors handed out stay valid after dsp_model_close.
 */
#ifndef DSPIPE_MODEL_H
#define DSPIPE_MODEL_H

#include <dspipe/ops.h>
#include <dspipe/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsp_model dsp_model;

/* Open a model. path is either
 *  - a folder holding config.json and either model.safetensors or
 *    model.safetensors.index.json ({"metadata": {...}, "weight_map":
 *    {tensor name: shard file}}) with its shards, or
 *  - one safetensors file (any name); the model then has no config.
 *
 * Rules, each failure with a message naming the folder or file:
 *  - the folder must exist (DSP_ENOENT) and hold config.json (DSP_ENOENT: a
 *    folder without config.json is refused; pass the .safetensors file to
 *    load weights alone); config.json must be a JSON object (DSP_EFORMAT,
 *    with line:column).
 *  - when both model.safetensors and the index exist, model.safetensors is
 *    used, as transformers does, and a warning is logged.
 *  - PyTorch pickles (pytorch_model.bin, *.bin/.pt/.pth/.ckpt files), and
 *    TensorFlow/Flax weights, are refused with DSP_EUNSUPPORTED and the
 *    command that converts the folder to safetensors. No weights at all:
 *    DSP_ENOENT.
 *  - the index must be a JSON object with a non-empty "weight_map" object
 *    of strings (DSP_EFORMAT); each shard name must be a relative path
 *    inside the folder: absolute paths and ".." components are refused
 *    (DSP_EFORMAT). Symbolic links are followed, so Hub cache snapshots
 *    (links into ../../blobs) load.
 *  - every shard named must exist (DSP_ENOENT) and pass
 *    dsp_safetensors_open (its code and message are passed through).
 *  - every tensor the index lists must be in the shard it names
 *    (DSP_EFORMAT); no tensor name may appear in two shards (DSP_EFORMAT).
 *  - a tensor in a shard but not listed in the index is kept and loadable
 *    by name (transformers loads it too); one warning (dsp_log, context
 *    "model") says how many there are and names the first.
 *  - shard files in the folder that the index does not name are ignored.
 *
 * *out receives the model (free with dsp_model_close); NULL on failure.
 * Returns 0, DSP_EINVAL (NULL argument, path neither file nor folder, a
 * .json file given instead of its folder), DSP_ENOENT, DSP_EIO (cannot
 * read), DSP_EFORMAT, DSP_EUNSUPPORTED, DSP_ELIMIT (more than INT_MAX
 * tensors) or DSP_ENOMEM. Never crashes on malformed files. */
DSP_API int dsp_model_open(const char *path, dsp_model **out, char **errmsg);

/* Weight-only quantization at load (the `quant=int8|int4` of model
 * operators). With quant set, dsp_model_open_opts quantizes every weight
 * matrix a GEMM reads, group-wise with one f32 scale per group_size inputs
 * (see dsp_quantize in ops.h), and afterwards drops the stored weights'
 * pages from memory (they stay mapped: dsp_model_tensor still reads them,
 * from the page cache or the file). A tensor is quantized when
 *  - its name ends in ".weight", it is 2-D [out, in] and f32, f16 or bf16,
 *  - in is a multiple of group_size (otherwise it is kept as stored and
 *    counted in dsp_model_memory's n_kept), and
 *  - its name matches none of the fnmatch(3) patterns in skip. skip NULL
 *    means the default list, DSP_MODEL_QUANT_SKIP: embedding tables (read by
 *    row lookups, not GEMMs), norms, and MoE routers (".gate.weight": small
 *    and decisive, so kept exact as llama.cpp and AutoGPTQ keep them).
 * Model code asks dsp_model_qweight for each weight and falls back to
 * dsp_model_tensor + dsp_linear when it returns none. */
#define DSP_MODEL_QUANT_SKIP {"*embed*", "*norm*", "*.gate.weight", NULL}

typedef struct dsp_model_opts {
    dsp_quant_kind quant;       /* 0: keep weights as stored; or INT8 / INT4 */
    int group_size;             /* 32 or 128; 0 means 128                    */
    const char *const *skip;    /* NULL-terminated patterns; NULL: default   */
} dsp_model_opts;

/* dsp_model_open, then quantize as opts says (opts NULL or quant 0: the
 * same as dsp_model_open). Extra failures: DSP_EINVAL for a bad quant kind
 * or group size; a weight holding inf or NaN is refused (DSP_EINVAL,
 * naming the tensor and row) because it has no finite scale. */
DSP_API int dsp_model_open_opts(const char *path, const dsp_model_opts *opts,
                                dsp_model **out, char **errmsg);

/* The quantized form of weight name (borrowed: valid until
 * dsp_model_close) in *out, or NULL when the model keeps that tensor as
 * stored (not quantized, or opened without quant). Returns 0, DSP_EINVAL
 * (NULL argument) or DSP_ENOENT (no tensor of that name). */
DSP_API int dsp_model_qweight(const dsp_model *m, const char *name,
                              const dsp_qweight **out);

/* What the weights take, for memory reports. */
typedef struct dsp_model_memory {
    size_t stored_bytes;        /* every tensor as stored in the files       */
    size_t quantized_from;      /* stored bytes of the quantized tensors     */
    size_t quantized_bytes;     /* their codes and scales                    */
    size_t resident_bytes;      /* what inference reads: stored_bytes -
                                   quantized_from + quantized_bytes          */
    int n_quantized;            /* tensors quantized                         */
    int n_kept;                 /* eligible by name and shape but kept: in
                                   not a multiple of group_size             */
} dsp_model_memory;
DSP_API int dsp_model_memory_info(const dsp_model *m, dsp_model_memory *out);

/* Unmap everything not still used by a tensor and set *m to NULL; NULL or
 * *m == NULL is a no-op. Tensors obtained from the model stay valid (each
 * holds a reference to its shard's mapping). */
DSP_API void dsp_model_close(dsp_model **m);

/* The tensor called name as a new reference (*out, transfer full) viewing
 * its shard's read-only mapping (an aligned copy when the file leaves it
 * misaligned; see dsp_safetensors_get). Returns 0, DSP_EINVAL (NULL
 * argument), DSP_ENOENT (no tensor of that name) or DSP_ENOMEM; *out is
 * NULL on failure. */
DSP_API int dsp_model_tensor(const dsp_model *m, const char *name,
                             dsp_tensor **out);

/* Number of tensors over all shards (0 for NULL). */
DSP_API int dsp_model_tensor_count(const dsp_model *m);

/* Name of the i-th tensor, sorted by name (strcmp order), or NULL when i is
 * out of range. Borrowed: valid until dsp_model_close. */
DSP_API const char *dsp_model_tensor_name(const dsp_model *m, int i);

/* config.json values by key path: dots separate object keys
 * ("text_config.hidden_size"), and a number selects an array element
 * ("architectures.0"). A key that itself contains a dot cannot be reached.
 *
 * Return 0; DSP_ENOENT when the path leads nowhere (a missing key, a step
 * into something that is not an object or array, an index out of range,
 * a JSON null value, or a model opened from a bare .safetensors file);
 * DSP_EINVAL for a NULL argument or a value of the wrong type; DSP_ENOMEM
 * (only for a key segment over 127 bytes). *out is written only on success.
 *  - _int: a JSON integer, or a real with an integral value that fits
 *    int64 (1e5, 2.0); booleans are not integers.
 *  - _float: a JSON integer or real.
 *  - _str: a JSON string, borrowed: valid until dsp_model_close. */
DSP_API int dsp_model_config_int(const dsp_model *m, const char *key,
                                 int64_t *out);
DSP_API int dsp_model_config_float(const dsp_model *m, const char *key,
                                   double *out);
DSP_API int dsp_model_config_str(const dsp_model *m, const char *key,
                                 const char **out);

/* The whole config as compact JSON (keys in file order), borrowed: valid
 * until dsp_model_close. NULL when the model has no config (opened from a
 * .safetensors file) or m is NULL. */
DSP_API const char *dsp_model_config_json(const dsp_model *m);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_MODEL_H */
