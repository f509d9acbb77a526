/* dspipe/packet.h - packets (named tensors + metadata + stream position) and metadata dictionaries. */
#ifndef DSPIPE_PACKET_H
#define DSPIPE_PACKET_H

#include <dspipe/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * dsp_meta: a dictionary of string keys to numbers, strings, booleans,
 * arrays and nested dictionaries (JSON's data model). Getters return
 * DSP_ENOENT when the key is absent and DSP_EINVAL when it has another type.
 * Strings returned by getters are borrowed: valid while the dictionary lives
 * and the key is not overwritten.
 * ------------------------------------------------------------------------- */
typedef struct dsp_meta dsp_meta;

DSP_API dsp_meta *dsp_meta_new(void);               /* NULL on OOM */
DSP_API void dsp_meta_free(dsp_meta **m);
/* Deep copy. NULL on OOM. */
DSP_API dsp_meta *dsp_meta_copy(const dsp_meta *m);

DSP_API int dsp_meta_set_int(dsp_meta *m, const char *key, int64_t v);
DSP_API int dsp_meta_set_float(dsp_meta *m, const char *key, double v);
DSP_API int dsp_meta_set_bool(dsp_meta *m, const char *key, int v);
DSP_API int dsp_meta_set_str(dsp_meta *m, const char *key, const char *v);
DSP_API int dsp_meta_set_floats(dsp_meta *m, const char *key, const double *v,
                                size_t n);
DSP_API int dsp_meta_set_ints(dsp_meta *m, const char *key, const int64_t *v,
                              size_t n);
/* An array of strings (each valid UTF-8; DSP_EINVAL otherwise). */
DSP_API int dsp_meta_set_strs(dsp_meta *m, const char *key, const char *const *v,
                              size_t n);
/* Parse json and store the value under key. DSP_EFORMAT if it does not parse. */
DSP_API int dsp_meta_set_json(dsp_meta *m, const char *key, const char *json);
/* The nested dictionary under key, created (replacing a non-dictionary) if
 * needed. Borrowed; NULL on OOM. */
DSP_API dsp_meta *dsp_meta_dict(dsp_meta *m, const char *key);
/* Copy every key of src into dst (deep), overwriting. */
DSP_API int dsp_meta_update(dsp_meta *dst, const dsp_meta *src);
DSP_API int dsp_meta_remove(dsp_meta *m, const char *key);

DSP_API int dsp_meta_has(const dsp_meta *m, const char *key);
DSP_API int dsp_meta_get_int(const dsp_meta *m, const char *key, int64_t *out);
/* Accepts integers too. JSON has no NaN or infinity: set_float(s) stores
 * them as null, which get_float(s) reads back as NaN. */
DSP_API int dsp_meta_get_float(const dsp_meta *m, const char *key, double *out);
DSP_API int dsp_meta_get_bool(const dsp_meta *m, const char *key, int *out);
DSP_API int dsp_meta_get_str(const dsp_meta *m, const char *key,
                             const char **out);
/* Reads up to max numbers into out; *n receives the array's length (which
 * may exceed max). */
DSP_API int dsp_meta_get_floats(const dsp_meta *m, const char *key, double *out,
                                size_t max, size_t *n);
/* An array of strings: up to max borrowed pointers into out, *n the
 * array's length; DSP_EINVAL when an element is not a string. */
DSP_API int dsp_meta_get_strs(const dsp_meta *m, const char *key, const char **out,
                              size_t max, size_t *n);
/* Nested dictionary or NULL. Borrowed. */
DSP_API const dsp_meta *dsp_meta_get_dict(const dsp_meta *m, const char *key);
DSP_API size_t dsp_meta_size(const dsp_meta *m);
/* Compact JSON text of the whole dictionary (keys sorted). Free with
 * dsp_free. NULL on OOM. */
DSP_API char *dsp_meta_to_json(const dsp_meta *m);

/* ---------------------------------------------------------------------------
 * dsp_packet: what travels on an edge. Named tensors, a metadata dictionary
 * and the packet's place in the stream:
 *   item  - which input item it belongs to (a file, a study, a sentence),
 *   part  - which part of that item when an op splits it (frame, clip, patch),
 *   last  - whether this is the item's last part,
 *   pts   - a timestamp in seconds, or NaN.
 * Packets are refcounted (atomically). Once emitted a packet is read-only:
 * an op that wants to change a received packet calls dsp_packet_make_writable.
 * ------------------------------------------------------------------------- */
typedef struct dsp_packet dsp_packet;

/* New empty packet: item 0, part 0, last 1, pts NaN. */
DSP_API int dsp_packet_new(dsp_packet **out);
DSP_API dsp_packet *dsp_packet_ref(dsp_packet *p);
DSP_API void dsp_packet_unref(dsp_packet **p);

/* A new writable packet with src's position, a deep copy of its metadata
 * and new references to its tensors. */
DSP_API int dsp_packet_derive(const dsp_packet *src, dsp_packet **out);
/* Replace *p by a derived copy unless this is the only reference and it was
 * never emitted. */
DSP_API int dsp_packet_make_writable(dsp_packet **p);
/* 1 while p has a single reference and was never emitted. */
DSP_API int dsp_packet_is_writable(const dsp_packet *p);

/* Attach a tensor under name (transfer full: the caller's reference moves
 * into the packet, also on failure). Replaces a tensor of the same name.
 * DSP_ESTATE if the packet is not writable (emitted or shared). */
DSP_API int dsp_packet_set_tensor(dsp_packet *p, const char *name,
                                  dsp_tensor *t);
/* Borrowed tensor, or NULL when the packet has none of that name. */
DSP_API dsp_tensor *dsp_packet_tensor(const dsp_packet *p, const char *name);
DSP_API int dsp_packet_tensor_count(const dsp_packet *p);
/* i-th tensor in insertion order, its name in *name (borrowed). */
DSP_API dsp_tensor *dsp_packet_tensor_at(const dsp_packet *p, int i,
                                         const char **name);
/* DSP_ENOENT when absent, DSP_ESTATE when the packet is not writable. */
DSP_API int dsp_packet_remove_tensor(dsp_packet *p, const char *name);

/* The packet's metadata (borrowed, never NULL). Only modify it while
 * dsp_packet_is_writable(p). */
DSP_API dsp_meta *dsp_packet_meta(dsp_packet *p);
DSP_API const dsp_meta *dsp_packet_meta_const(const dsp_packet *p);

DSP_API int64_t dsp_packet_item(const dsp_packet *p);
DSP_API int64_t dsp_packet_part(const dsp_packet *p);
DSP_API int dsp_packet_last(const dsp_packet *p);
DSP_API double dsp_packet_pts(const dsp_packet *p);
/* On an emitted packet these are ignored with a warning in the log. */
DSP_API void dsp_packet_set_pos(dsp_packet *p, int64_t item, int64_t part,
                                int last);
DSP_API void dsp_packet_set_pts(dsp_packet *p, double pts);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_PACKET_H */
