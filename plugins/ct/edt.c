/* edt.c - exact 3-D Euclidean distance transform (Felzenszwalb & Huttenlocher, 2012), anisotropic voxels. */
#include "ct.h"

#include <math.h>
#include <stdlib.h>

#define EDT_BIG 1e20f

typedef struct edt_ctx {
    float *out;
    int64_t d, h, w;
    int axis;                   /* 0 slices, 1 rows, 2 columns */
    double s2;                  /* squared spacing along the axis */
    int failed;
} edt_ctx;

/* Lower envelope of the parabolas s2 (q - p)^2 + f(p) over one line: f in
 * place becomes the squared distance. Points with f = BIG contribute none. */
static void edt_line(float *f, int64_t n, double s2, int64_t *v, double *z, float *tmp)
{
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        if (f[q] >= EDT_BIG)
            continue;
        if (k < 0) {
            k = 0;
            v[0] = q;
            z[0] = -HUGE_VAL;
            z[1] = HUGE_VAL;
            continue;
        }
        double s;
        for (;;) {
            int64_t p = v[k];
            s = ((f[q] + s2 * (double)q * q) - (f[p] + s2 * (double)p * p)) /
                (2.0 * s2 * (double)(q - p));
            if (s <= z[k] && k > 0) {
                k--;
                continue;
            }
            break;
        }
        if (s <= z[k]) {
            /* k == 0 and q dominates everywhere */
            v[0] = q;
            z[0] = -HUGE_VAL;
            z[1] = HUGE_VAL;
            continue;
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = HUGE_VAL;
    }
    if (k < 0)
        return;     /* no feature on this line: stays BIG */
    k = 0;
    for (int64_t q = 0; q < n; q++) {
        while (z[k + 1] < (double)q)
            k++;
        double dq = (double)(q - v[k]);
        tmp[q] = (float)(s2 * dq * dq + f[v[k]]);
    }
    for (int64_t q = 0; q < n; q++)
        f[q] = tmp[q];
}

static void edt_lines(void *arg, int64_t l0, int64_t l1)
{
    edt_ctx *c = arg;
    int64_t n = c->axis == 0 ? c->d : c->axis == 1 ? c->h : c->w;
    int64_t stride = c->axis == 0 ? c->h * c->w : c->axis == 1 ? c->w : 1;
    int64_t *v = malloc((size_t)n * sizeof *v);
    double *z = malloc((size_t)(n + 1) * sizeof *z);
    float *line = malloc((size_t)n * sizeof *line), *tmp = malloc((size_t)n * sizeof *tmp);
    if (!v || !z || !line || !tmp) {
        c->failed = 1;
        goto done;
    }
    for (int64_t l = l0; l < l1; l++) {
        int64_t base;
        if (c->axis == 0)
            base = l;                                   /* l = row * w + col */
        else if (c->axis == 1)
            base = (l / c->w) * c->h * c->w + l % c->w; /* l = slice * w + col */
        else
            base = l * c->w;                            /* l = slice * h + row */
        float *p = c->out + base;
        for (int64_t q = 0; q < n; q++)
            line[q] = p[q * stride];
        edt_line(line, n, c->s2, v, z, tmp);
        for (int64_t q = 0; q < n; q++)
            p[q * stride] = line[q];
    }
done:
    free(v);
    free(z);
    free(line);
    free(tmp);
}

int ct_edt(const uint8_t *m, int64_t d, int64_t h, int64_t w, const double sp[3], int threads,
           float *out)
{
    int64_t total = d * h * w;
    for (int64_t i = 0; i < total; i++)
        out[i] = m[i] ? EDT_BIG : 0.0f;
    /* the column pass first: its lines are contiguous and it leaves most
     * voxels finite, which keeps the later strided passes short */
    static const int order[3] = { 2, 1, 0 };
    for (int a = 0; a < 3; a++) {
        int axis = order[a];
        edt_ctx c = { out, d, h, w, axis, sp[axis] * sp[axis], 0 };
        int64_t lines = axis == 0 ? h * w : axis == 1 ? d * w : d * h;
        ct_parallel_for(lines, threads, edt_lines, &c);
        if (c.failed)
            return DSP_ENOMEM;
    }
    return 0;
}
