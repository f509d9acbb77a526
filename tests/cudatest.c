/* cudatest.c - helpers of the cross-backend CUDA tests (see cudatest.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudatest.h"

dsp_context *ctx;
dsp_device gpu, cpu = {DSP_DEVICE_CPU, 0};
int failures, checks;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

dsp_tensor *host(dsp_dtype dt, int ndim, const int64_t *shape)
{
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(dt, ndim, shape, &t) < 0) {
        fprintf(stderr, "cannot allocate a host tensor\n");
        exit(99);
    }
    return t;
}

dsp_tensor *rand_f32(int ndim, const int64_t *shape)
{
    dsp_tensor *t = host(DSP_DTYPE_F32, ndim, shape);
    float *p = dsp_tensor_data(t);
    for (int64_t i = 0; i < dsp_tensor_numel(t); i++)
        p[i] = frand();
    return t;
}

dsp_tensor *to(const dsp_tensor *t, dsp_device dev)
{
    dsp_tensor *d = NULL;
    if (!t)
        return NULL;
    if (dsp_tensor_to_device(ctx, t, dev, &d) < 0) {
        fprintf(stderr, "dsp_tensor_to_device: %s\n", dsp_context_errmsg(ctx));
        exit(99);
    }
    return d;
}

/* The GPU result (copied back) against the CPU one. Consumes both. */
void compare(const char *what, dsp_tensor *c, dsp_tensor *g, double atol, double rtol)
{
    dsp_tensor *gh = NULL;
    checks++;
    if (!c || !g) {
        FAIL("%s: missing result (cpu %p, gpu %p)", what, (void *)c, (void *)g);
        goto out;
    }
    if (g->device.type != DSP_DEVICE_CUDA) {
        FAIL("%s: the CUDA call returned a tensor on the CPU", what);
        goto out;
    }
    gh = to(g, cpu);
    if (dsp_tensor_numel(c) != dsp_tensor_numel(gh) || c->ndim != gh->ndim) {
        FAIL("%s: shapes differ", what);
        goto out;
    }
    const float *a = dsp_tensor_data(c), *b = dsp_tensor_data(gh);
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < dsp_tensor_numel(c); i++) {
        double err = fabs((double)a[i] - (double)b[i]), lim = atol + rtol * fabs((double)a[i]);
        if (!(err <= lim) && (at < 0 || err > worst)) {
            worst = err;
            at = i;
        }
    }
    if (at >= 0)
        FAIL("%s: element %lld: cpu %.9g, cuda %.9g (|diff| %.3g)", what, (long long)at,
             (double)a[at], (double)b[at], worst);
out:
    dsp_tensor_unref(&c);
    dsp_tensor_unref(&g);
    dsp_tensor_unref(&gh);
}


void cross(const char *what, op3 fn, const dsp_tensor *x, const dsp_tensor *y,
                  const dsp_tensor *z, const void *arg, double atol, double rtol)
{
    dsp_tensor *c = NULL, *g = NULL;
    dsp_tensor *dx = to(x, gpu), *dy = to(y, gpu), *dz = to(z, gpu);
    int rc = fn(x, y, z, arg, &c);
    if (rc < 0)
        FAIL("%s on the CPU: %s", what, dsp_ops_error());
    rc = fn(dx, dy, dz, arg, &g);
    if (rc < 0)
        FAIL("%s on cuda:%d: %s", what, gpu.index, dsp_ops_error());
    compare(what, c, g, atol, rtol);
    dsp_tensor_unref(&dx);
    dsp_tensor_unref(&dy);
    dsp_tensor_unref(&dz);
}

void expect_msg(const char *what, const char *needle)
{
    checks++;
    if (!strstr(dsp_ops_error(), needle))
        FAIL("%s: message '%s' lacks '%s'", what, dsp_ops_error(), needle);
}

/* Without a GPU: the error paths that need none, then skip. */
static int no_gpu(void)
{
    dsp_tensor *x = rand_f32(SHAPE(2, 3)), *d = NULL, *c = NULL;
    int rc = 0;
    printf("SKIP: no usable CUDA device: %s\n", dsp_context_errmsg(ctx));
    if (dsp_tensor_to_device(ctx, x, (dsp_device){DSP_DEVICE_CUDA, 0}, &d) != DSP_EDEVICE || d) {
        fprintf(stderr, "FAIL: copy to cuda:0 without a GPU did not fail with DSP_EDEVICE\n");
        rc = 1;
    } else
        printf("copy to cuda:0 fails as it should: %s\n", dsp_context_errmsg(ctx));
    if (dsp_tensor_to_device(ctx, x, cpu, &c) < 0 || !c || c->device.type != DSP_DEVICE_CPU) {
        fprintf(stderr, "FAIL: a CPU to CPU copy failed: %s\n", dsp_context_errmsg(ctx));
        rc = 1;
    }
    dsp_tensor_unref(&c);
    dsp_tensor_unref(&x);
    return rc ? 1 : 77;
}

int cudatest_open(void)
{
    char name[64];
    int rc;
    if (dsp_context_new(&ctx) < 0) {
        fprintf(stderr, "cannot create a context\n");
        return 99;
    }
    if (dsp_device_open(ctx, "cuda", &gpu) < 0) {
        rc = no_gpu();
        dsp_context_free(&ctx);
        return rc;
    }
    printf("comparing the CPU with %s\n", dsp_device_name(gpu, name, sizeof name));
    return 0;
}

int cudatest_close(void)
{
    printf("%d checks, %d failures\n", checks, failures);
    dsp_context_free(&ctx);
    return failures ? 1 : 0;
}
