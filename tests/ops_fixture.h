/* ops_fixture.h - shared helpers of the test_ops* programs: PyTorch fixture files (tests/data/<dir>/<op>.safetensors), tolerance checks and strided views. */
#ifndef DSPIPE_TESTS_OPS_FIXTURE_H
#define DSPIPE_TESTS_OPS_FIXTURE_H

#include "dspipe/ops.h"
#include "dspipe/tensorio.h"

/* Flags of ops_compare. */
enum {
    OPS_CMP_NONFINITE = 1,      /* NaN/inf in expected: got must be NaN / the same inf */
    OPS_CMP_EXP_CONTIG = 2,     /* assert expected contiguous instead of got being f32 */
    OPS_CMP_TERSE_SHAPE = 4,    /* shape mismatch says "shapes differ", not both shapes */
};

/* Path of $TESTS_SRCDIR/data/<dir>/<op>.safetensors ("." when TESTS_SRCDIR
 * is unset or empty), in a static buffer overwritten by the next call. */
const char *ops_fixture_path(const char *dir, const char *op);

/* Opens the fixture <dir>/<op>; asserts that it opens. Close with
 * dsp_safetensors_close. */
dsp_safetensors *ops_fixture_open(const char *dir, const char *op);

/* Tensor caseN.name (i >= 0) or shared.name (i < 0), or NULL when the
 * fixture has no such tensor. The caller unrefs it. */
dsp_tensor *ops_get(const dsp_safetensors *st, int i, const char *name);

/* The scalar caseN.name (f32, or else i64) as a double; asserts it exists. */
double ops_scalar(const dsp_safetensors *st, int i, const char *name);

/* Number of cases: N such that case0..caseN-1 have an "expected" tensor. */
int ops_ncases(const dsp_safetensors *st);

/* Max abs error of got against expected (same shape, contiguous f32).
 * Prints "<what, left-aligned in width> max abs err E (limit L)", asserts
 * E <= tol * (1 + max|expected|) and returns E. A NaN in got where expected
 * is finite becomes the error; flags (OPS_CMP_*) select the variants. */
double ops_compare(const char *what, const dsp_tensor *got, const dsp_tensor *exp, double tol,
                   int width, unsigned flags);

/* A non-contiguous view equal to t: the data stored with the last two dims
 * swapped, viewed back through swapped strides (a transposed view). NULL
 * when t has fewer than 2 dims. The caller unrefs it. */
dsp_tensor *ops_transposed_view(const dsp_tensor *t);

/* ---- the same fixtures on CUDA ----------------------------------------- */

/* cuda:0 when the CUDA backend and a GPU are usable, else NULL; the first
 * call opens it (once per process) and, without a GPU, prints that the
 * fixture cases run on the CPU only and why. */
const dsp_device *ops_gpu(void);

/* Runs a fixture case: in[] are the case's inputs, *out the result. */
typedef int (*ops_runner)(const char *op, const dsp_safetensors *st, int i, dsp_tensor **in,
                          dsp_tensor **out);

/* With a GPU: run the case once more with in[0..nin) copied to it, copy the
 * result back and ops_compare it with exp at tol (what gets " cuda").
 * Returns 1 when it ran, 0 without a GPU or when the operator refuses
 * these inputs on CUDA (DSP_EUNSUPPORTED: printed with the reason, so a
 * gap shows in the log instead of failing the CPU test). */
int ops_check_on_gpu(const char *what, ops_runner run, const char *op,
                     const dsp_safetensors *st, int i, dsp_tensor **in, int nin,
                     const dsp_tensor *exp, double tol, int width, unsigned flags);

/* Case i of op's fixture four ways: *out NULL, a preallocated *out
 * (overwritten in place), each input of 2 dims or more replaced by a
 * transposed (strided) view, and on the GPU when one is usable. in[0..nin)
 * are the inputs (NULL where absent), names[k] their names for messages.
 * Returns the max abs error of the first way. */
double ops_check_case(const char *op, int i, ops_runner run, const dsp_safetensors *st,
                      dsp_tensor **in, int nin, const char *const *names, const dsp_tensor *exp,
                      double tol, int width, unsigned flags);

/* Asserts rc == want and that dsp_ops_error() contains needle. */
void ops_assert_error(int rc, int want, const char *needle);

#endif
