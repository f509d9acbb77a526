/* dspipe/tensorio.h - reading and writing tensor files: NumPy .npy and Hugging Face .safetensors.
 *
 * Readers map the file read-only and hand out tensors that view the mapping
 * (no copy) whenever the bytes can be used as they are; writers produce the
 * file atomically (a temporary file beside the target, renamed into place),
 * so a crash never leaves a half-written tensor file behind.
 *
 *     dsp_tensor *x; char *why = NULL;
 *     if (dsp_npy_read("x.npy", &x, &why) < 0) { fprintf(stderr, "%s\n", why); free(why); }
 *
 *     dsp_safetensors *st;
 *     if (dsp_safetensors_open("model.safetensors", &st, &why) == 0) {
 *         for (int i = 0; i < dsp_safetensors_count(st); i++) {
 *             dsp_tensor *w;
 *             dsp_safetensors_get(st, dsp_safetensors_name(st, i), &w);
 *             ...
 *             dsp_tensor_unref(&w);      // the tensor keeps the mapping alive
 *         }
 *         dsp_safetensors_close(&st);
 *     }
 *
 * Error messages (errmsg) are malloc'd, name the file (and the tensor where
 * there is one), say what is wrong and, where it helps, what to do; the
 * caller free()s them. errmsg may be NULL when the caller does not want one.
 * On success *errmsg is left untouched.
 *
 * Byte order: files are converted to the host's order on reading (.npy
 * may be either; safetensors is little-endian by definition).
 */
#ifndef DSPIPE_TENSORIO_H
#define DSPIPE_TENSORIO_H

#include <dspipe/tensor.h>
#include <dspipe/packet.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * NumPy .npy (format versions 1.0, 2.0 and 3.0).
 * ------------------------------------------------------------------------- */

/* Read a .npy file into a new tensor (*out, transfer full).
 *
 * Supported: descr with byte order '<', '>', '|' or '=' and kinds f2 f4 f8,
 * i1 i2 i4 i8, u1 u2 u4 u8, b1 ('?'); C order and fortran_order (the tensor
 * is then a strided view with column-major strides); 0-d arrays and
 * zero-size dimensions; up to DSP_MAX_DIMS dimensions.
 *
 * When the data is in host byte order and aligned to its element size the
 * tensor views a read-only mapping of the file (dsp_tensor_make_writable
 * copies before a write); otherwise it owns a converted copy with the same
 * layout.
 *
 * Returns 0; DSP_EINVAL (NULL argument); DSP_ENOENT / DSP_EIO (cannot open
 * or map the file); DSP_EFORMAT (not a .npy file, malformed header,
 * truncated data); DSP_EUNSUPPORTED (structured or object dtypes, complex,
 * strings, more than DSP_MAX_DIMS dims); DSP_ENOMEM. *out is NULL on
 * failure. Never crashes on malformed input. */
DSP_API int dsp_npy_read(const char *path, dsp_tensor **out, char **errmsg);

/* Write t (borrowed) as a format 1.0 .npy file in C order, little-endian
 * for multi-byte types, atomically (temporary file + rename in the target's
 * directory; missing directories are created, and stay if the write then
 * fails). Strided tensors are written in C order.
 * Any dtype except bf16, which NumPy has no type for: convert it to f32
 * first (DSP_EUNSUPPORTED). CPU tensors only (DSP_EDEVICE otherwise).
 *
 * Returns 0, DSP_EINVAL, DSP_EUNSUPPORTED, DSP_EDEVICE, DSP_EIO (cannot
 * create, write or rename; no temporary file is left behind) or
 * DSP_ENOMEM. */
DSP_API int dsp_npy_write(const char *path, const dsp_tensor *t, char **errmsg);

/* ---------------------------------------------------------------------------
 * safetensors: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw data.
 * ------------------------------------------------------------------------- */
typedef struct dsp_safetensors dsp_safetensors;

/* Map a .safetensors file and validate its whole header: the length is sane
 * and lies within the file; the header is a JSON object; every entry has a
 * known dtype (F32 F16 BF16 I8 U8 I16 I32 I64 F64 BOOL U16 U32 U64), a shape
 * of non-negative integers (at most DSP_MAX_DIMS) and data_offsets
 * [begin, end] with begin <= end inside the data section and
 * end - begin == numel * dtype size; no two tensors overlap; the optional
 * "__metadata__" is a string-to-string map. Tensor data is not read.
 *
 * *out receives the handle (free with dsp_safetensors_close). Returns 0;
 * DSP_EINVAL; DSP_ENOENT / DSP_EIO; DSP_EFORMAT (any rule above broken: the
 * message names the file and the tensor); DSP_EUNSUPPORTED (a dtype such as
 * F8_E4M3 that dspipe has no type for, or too many dims); DSP_ENOMEM. */
DSP_API int dsp_safetensors_open(const char *path, dsp_safetensors **out,
                                 char **errmsg);

/* Release the handle and set *st to NULL; NULL or *st == NULL is a no-op.
 * Tensors obtained from it stay valid: each holds a reference to the
 * mapping. */
DSP_API void dsp_safetensors_close(dsp_safetensors **st);

/* Number of tensors (not counting __metadata__). */
DSP_API int dsp_safetensors_count(const dsp_safetensors *st);

/* Name of the i-th tensor in file order (sorted by data offset, then by
 * name), or NULL when i is out of range. Borrowed: valid until close. */
DSP_API const char *dsp_safetensors_name(const dsp_safetensors *st, int i);

/* The tensor called name as a new reference (*out, transfer full) viewing
 * the mapping. A tensor whose data is not aligned to its element size in
 * the file is returned as an aligned copy instead, so kernels may load it
 * directly. Returns 0, DSP_EINVAL, DSP_ENOENT (no tensor of that name) or
 * DSP_ENOMEM. */
DSP_API int dsp_safetensors_get(const dsp_safetensors *st, const char *name,
                                dsp_tensor **out);

/* The "__metadata__" value for key, or NULL when absent. Borrowed: valid
 * until close. */
DSP_API const char *dsp_safetensors_metadata(const dsp_safetensors *st,
                                             const char *key);

/* Number of "__metadata__" entries, and the i-th key in file order (NULL
 * when out of range; borrowed until close). For copying the metadata
 * without knowing its keys. */
DSP_API int dsp_safetensors_metadata_count(const dsp_safetensors *st);
DSP_API const char *dsp_safetensors_metadata_key(const dsp_safetensors *st,
                                                 int i);

/* Write n tensors (borrowed) under names as one .safetensors file,
 * atomically (temporary file + rename in the target's directory; missing
 * directories are created). Names must be unique, non-empty and not
 * "__metadata__".
 * Strided tensors are written contiguously (C order). Tensors are laid out
 * by decreasing element size, then in the given order, so every tensor's
 * data is aligned to its element size; the JSON header is padded with
 * spaces to a multiple of 8 bytes, as the reference implementation does.
 * metadata (may be NULL) becomes "__metadata__": string values as they
 * are, any other value as its compact JSON text. CPU tensors only.
 *
 * Returns 0, DSP_EINVAL (bad or duplicate name, NULL tensor),
 * DSP_EDEVICE, DSP_EIO (nothing is left behind) or DSP_ENOMEM. */
DSP_API int dsp_safetensors_write(const char *path, const char *const *names,
                                  dsp_tensor *const *tensors, int n,
                                  const dsp_meta *metadata, char **errmsg);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_TENSORIO_H */
