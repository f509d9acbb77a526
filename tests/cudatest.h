/* cudatest.h - what the cross-backend CUDA tests share: seeded inputs, copies to and from cuda:0, CPU-vs-GPU comparison with stated tolerances, and the skip without a GPU. */
#ifndef DSPIPE_TESTS_CUDATEST_H
#define DSPIPE_TESTS_CUDATEST_H

#include <stdint.h>
#include <stdio.h>

#include <dspipe/dspipe.h>
#include <dspipe/ops.h>

extern dsp_context *ctx;
extern dsp_device gpu, cpu;
extern int failures, checks;

#define FAIL(...)                                                                  \
    do {                                                                           \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        failures++;                                                                \
    } while (0)

#define EXPECT_RC(call, want)                                                      \
    do {                                                                           \
        int rc_ = (call);                                                          \
        checks++;                                                                  \
        if (rc_ != (want))                                                         \
            FAIL("%s returned %d (%s), expected %d: %s", #call, rc_,               \
                 dsp_strerror(rc_), (want), dsp_ops_error());                      \
    } while (0)

/* rank and dims for the helpers below: rand_f32(SHAPE(2, 3)) */
#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

/* Uniform in [-1, 1), from a fixed seed. */
float frand(void);
/* A new host tensor (exits 99 when it cannot allocate). */
dsp_tensor *host(dsp_dtype dt, int ndim, const int64_t *shape);
dsp_tensor *rand_f32(int ndim, const int64_t *shape);
/* A copy of t on dev (NULL for NULL; exits 99 on failure). */
dsp_tensor *to(const dsp_tensor *t, dsp_device dev);
/* The GPU result (copied back) against the CPU one, elementwise
 * |gpu - cpu| <= atol + rtol * |cpu|. Consumes both. */
void compare(const char *what, dsp_tensor *c, dsp_tensor *g, double atol, double rtol);

/* An operator of one to three tensor arguments run on both devices. */
typedef int (*op3)(const dsp_tensor *, const dsp_tensor *, const dsp_tensor *, const void *,
                   dsp_tensor **);
void cross(const char *what, op3 fn, const dsp_tensor *x, const dsp_tensor *y,
           const dsp_tensor *z, const void *arg, double atol, double rtol);

/* dsp_ops_error() contains needle. */
void expect_msg(const char *what, const char *needle);

/* Create ctx and open cuda:0 into gpu. Returns 0 when there is a GPU;
 * otherwise checks the error paths that need none, frees ctx and returns
 * the exit status (77: skip, 1: those checks failed). */
int cudatest_open(void);
/* Print the tally, free ctx, return the exit status. */
int cudatest_close(void);

#endif /* DSPIPE_TESTS_CUDATEST_H */
