/* dspipe/harness.h - push packets through a single operator, for unit tests of plugins.
 *
 * Like GStreamer's GstHarness: no graph, no threads. The harness creates one
 * node of the named operator with the given parameters, calls init(), and
 * lets the test push packets into its input slots and pull what it emitted.
 *
 *     dsp_harness *h;
 *     const char *params[] = { "factor=3", NULL };
 *     ck_assert_int_eq(dsp_harness_new(ctx, "demo.scale", params, 1, &h), 0);
 *     dsp_harness_push(h, 0, pkt);                  // transfer full; runs process()
 *     dsp_packet *out = dsp_harness_pull(h, 0);     // NULL when nothing is left
 *     ...
 *     dsp_harness_flush(h);                         // flush(): end of stream
 *     dsp_harness_free(&h);                         // fini()
 */
#ifndef DSPIPE_HARNESS_H
#define DSPIPE_HARNESS_H

#include <dspipe/dspipe.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsp_harness dsp_harness;

/* Create a node of operator op_name. params is a NULL-terminated list of
 * "name=value" strings, parsed exactly as in a .pipe file (lists as
 * "[a, b]"). n_inputs is the number of input slots (a variadic port counts
 * each slot). init() has run when this returns 0; on failure the message
 * is in dsp_context_errmsg(ctx) and *out is NULL. */
DSP_API int dsp_harness_new(dsp_context *ctx, const char *op_name,
                            const char *const *params, int n_inputs,
                            dsp_harness **out);

/* Queue pkt on input slot (transfer full). As soon as every connected slot
 * holds a packet, process() (or process_batch with one packet) runs.
 * Returns process()'s result, or 0 when it did not run yet. */
DSP_API int dsp_harness_push(dsp_harness *h, int slot, dsp_packet *pkt);
/* Run process_batch() on n packets of slot 0 (transfer full of each). */
DSP_API int dsp_harness_push_batch(dsp_harness *h, dsp_packet **pkts, int n);
/* For a source: call process() once. Returns its result (DSP_EOF at end). */
DSP_API int dsp_harness_step(dsp_harness *h);
/* Call flush(). */
DSP_API int dsp_harness_flush(dsp_harness *h);
/* Next packet emitted on output port (transfer full), NULL if none. */
DSP_API dsp_packet *dsp_harness_pull(dsp_harness *h, int port);
DSP_API int dsp_harness_pending(const dsp_harness *h, int port);
/* The message of the last failure (dsp_node_fail), "" if none. */
DSP_API const char *dsp_harness_errmsg(const dsp_harness *h);
/* Items failed one by one with dsp_node_fail_packet (a batch that went on
 * without them), in the order recorded: their count, and the item number
 * and message of the i-th (borrowed; valid until dsp_harness_free). */
DSP_API int dsp_harness_item_failures(const dsp_harness *h);
DSP_API int dsp_harness_item_failure(const dsp_harness *h, int i, int64_t *item, const char **msg);
DSP_API dsp_node *dsp_harness_node(dsp_harness *h);
/* Call fini() and free everything, including unpulled packets. */
DSP_API void dsp_harness_free(dsp_harness **h);

#ifdef __cplusplus
}
#endif
#endif /* DSPIPE_HARNESS_H */
