/* volume.c - CT volume geometry, a pthread for-loop, connected components and 2-D hole filling. */
#include "ct.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double ct_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *ct_where(const dsp_packet *p, char *buf, size_t n)
{
    const char *s = NULL;
    if (dsp_meta_get_str(dsp_packet_meta_const(p), "source", &s) == 0 && s && s[0])
        return s;
    snprintf(buf, n, "item %" PRId64, dsp_packet_item(p));
    return buf;
}

int ct_volume_find(dsp_node *node, const dsp_packet *p, const char *name, ct_volume *v,
                   dsp_tensor **t)
{
    char wb[64], desc[96];
    const char *where = ct_where(p, wb, sizeof wb);
    dsp_tensor *x = dsp_packet_tensor(p, name);
    if (!x)
        return dsp_node_fail(node, DSP_ENOENT, "%s: no tensor '%s' in the packet; ct operators "
                             "take dicom.read's f32 HU volume (set name= to use another)",
                             where, name);
    dsp_tensor_describe(x, desc, sizeof desc);
    if (x->dtype != DSP_DTYPE_F32 || x->ndim != 3 || x->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is %s; expected an f32 "
                             "HU volume [slices, rows, columns] on the CPU", where, name, desc);
    if (!dsp_tensor_is_contiguous(x))
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' (%s) is not contiguous",
                             where, name, desc);
    if (x->shape[0] < 1 || x->shape[1] < 3 || x->shape[2] < 3)
        return dsp_node_fail(node, DSP_EINVAL, "%s: tensor '%s' (%s) is too small for a CT "
                             "volume", where, name, desc);
    memset(v, 0, sizeof *v);
    v->hu = dsp_tensor_data(x);
    v->d = x->shape[0];
    v->h = x->shape[1];
    v->w = x->shape[2];
    const dsp_meta *m = dsp_packet_meta_const(p);
    size_t n = 0;
    if (dsp_meta_get_floats(m, "spacing_mm", v->sp, 3, &n) < 0 || n != 3) {
        dsp_node_log(node, DSP_LOG_WARNING, "%s: no meta spacing_mm [slice, row, col]: "
                     "assuming 1 mm voxels", where);
        v->sp[0] = v->sp[1] = v->sp[2] = 1.0;
    }
    for (int a = 0; a < 3; a++)
        if (!(v->sp[a] > 0 && v->sp[a] < 1e4))
            return dsp_node_fail(node, DSP_EINVAL, "%s: meta spacing_mm [%g, %g, %g] is not "
                                 "positive", where, v->sp[0], v->sp[1], v->sp[2]);
    /* Nodules are told from vessels in 3D: a single image (CT_small.dcm, a
     * scout, one key slice) or a slab a few slices thick cannot be
     * analysed, and a 2D guess would be silently worse. Say what is needed. */
    if ((double)v->d * v->sp[0] < CT_MIN_EXTENT_MM)
        return dsp_node_fail(node, DSP_EINVAL, "%s: %lld slice%s covering %.1f mm: lung nodule "
                             "detection works in 3D and needs a chest series at least %g mm "
                             "long (normally the whole chest, 150-400 slices); give the folder "
                             "that holds every slice of the series", where, (long long)v->d,
                             v->d == 1 ? "" : "s", (double)v->d * v->sp[0], CT_MIN_EXTENT_MM);
    if (dsp_meta_get_floats(m, "origin_mm", v->origin, 3, &n) < 0 || n != 3)
        v->origin[0] = v->origin[1] = v->origin[2] = 0.0;
    if (dsp_meta_get_floats(m, "direction", v->dir, 9, &n) < 0 || n != 9) {
        static const double id[9] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 };
        memcpy(v->dir, id, sizeof id);
    }
    *t = x;
    return 0;
}

void ct_voxel_to_mm(const ct_volume *v, double k, double j, double i, double mm[3])
{
    for (int a = 0; a < 3; a++)
        mm[a] = v->origin[a] + i * v->sp[2] * v->dir[a] + j * v->sp[1] * v->dir[3 + a] +
                k * v->sp[0] * v->dir[6 + a];
}

/* ---- a small for-loop on pthreads ---------------------------------------- */
typedef struct par_job {
    ct_range_fn fn;
    void *ctx;
    int64_t begin, end;
} par_job;

static void *par_run(void *arg)
{
    par_job *j = arg;
    j->fn(j->ctx, j->begin, j->end);
    return NULL;
}

void ct_parallel_for(int64_t n, int threads, ct_range_fn fn, void *ctx)
{
    enum { MAX_THREADS = 64 };
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (int)c : 1;
    }
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > n)
        threads = (int)(n > 0 ? n : 1);
    if (threads <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_t tid[MAX_THREADS];
    par_job job[MAX_THREADS];
    int started[MAX_THREADS] = { 0 };
    for (int t = 0; t < threads; t++) {
        job[t] = (par_job){ fn, ctx, n * t / threads, n * (t + 1) / threads };
        /* the calling thread takes slice 0; a thread that cannot start is
         * run inline below, so the loop always completes */
        if (t > 0)
            started[t] = pthread_create(&tid[t], NULL, par_run, &job[t]) == 0;
    }
    fn(ctx, job[0].begin, job[0].end);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            fn(ctx, job[t].begin, job[t].end);
    }
}

/* ---- connected components -------------------------------------------------- */
static int32_t uf_find(int32_t *parent, int32_t x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static void uf_union(int32_t *parent, int32_t a, int32_t b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

int ct_label(const uint8_t *m, int64_t d, int64_t h, int64_t w, int32_t *labels,
             int64_t **sizes, int32_t *n)
{
    int64_t hw = h * w, total = d * hw;
    int32_t cap = 1 << 16, next = 1;
    int32_t *parent = malloc((size_t)cap * sizeof *parent);
    *sizes = NULL;
    *n = 0;
    if (!parent)
        return DSP_ENOMEM;
    parent[0] = 0;
    /* first pass: provisional labels from the three earlier neighbours */
    for (int64_t v = 0; v < total; v++) {
        if (!m[v]) {
            labels[v] = 0;
            continue;
        }
        int64_t i = v % w, j = (v / w) % h, k = v / hw;
        int32_t a = i > 0 ? labels[v - 1] : 0;
        int32_t b = j > 0 ? labels[v - w] : 0;
        int32_t c = k > 0 ? labels[v - hw] : 0;
        int32_t l = a ? a : b ? b : c;
        if (!l) {
            if (next == cap) {
                if (cap > INT32_MAX / 2) {
                    free(parent);
                    return DSP_ENOMEM;
                }
                int32_t *np = realloc(parent, (size_t)cap * 2 * sizeof *np);
                if (!np) {
                    free(parent);
                    return DSP_ENOMEM;
                }
                parent = np;
                cap *= 2;
            }
            parent[next] = next;
            l = next++;
        } else {
            if (a && a != l)
                uf_union(parent, l, a);
            if (b && b != l)
                uf_union(parent, l, b);
            if (c && c != l)
                uf_union(parent, l, c);
        }
        labels[v] = l;
    }
    /* compact the roots to 1..n: a root has the smallest provisional label
     * of its set, so it is numbered before any of its members */
    int32_t count = 0;
    int32_t *map = malloc((size_t)next * sizeof *map);
    if (!map) {
        free(parent);
        return DSP_ENOMEM;
    }
    map[0] = 0;
    for (int32_t l = 1; l < next; l++) {
        int32_t r = uf_find(parent, l);
        map[l] = r == l ? ++count : map[r];
    }
    free(parent);
    parent = map;
    int64_t *sz = calloc((size_t)count + 1, sizeof *sz);
    if (!sz) {
        free(parent);
        return DSP_ENOMEM;
    }
    for (int64_t v = 0; v < total; v++) {
        if (labels[v]) {
            labels[v] = parent[labels[v]];
            sz[labels[v]]++;
        }
    }
    free(parent);
    *sizes = sz;
    *n = count;
    return 0;
}

/* ---- 2-D hole filling ------------------------------------------------------ */
typedef struct fill_ctx {
    uint8_t *m;
    int64_t h, w;
    uint8_t value;
} fill_ctx;

/* Mark (2) the m == 0 pixels reachable from the border, set the rest of the
 * m == 0 pixels to value, and restore the reachable ones. */
static void fill_slices(void *arg, int64_t k0, int64_t k1)
{
    fill_ctx *c = arg;
    int64_t h = c->h, w = c->w, hw = h * w;
    int64_t *stack = malloc((size_t)hw * sizeof *stack);
    if (!stack)
        return;     /* holes stay unfilled: a weaker mask, never a crash */
    for (int64_t k = k0; k < k1; k++) {
        uint8_t *s = c->m + k * hw;
        int64_t top = 0;
        for (int64_t j = 0; j < h; j++)
            for (int64_t i = 0; i < w; i++)
                if ((j == 0 || i == 0 || j == h - 1 || i == w - 1) && !s[j * w + i]) {
                    s[j * w + i] = 2;
                    stack[top++] = j * w + i;
                }
        while (top) {
            int64_t p = stack[--top], i = p % w, j = p / w;
            if (i > 0 && !s[p - 1]) { s[p - 1] = 2; stack[top++] = p - 1; }
            if (i < w - 1 && !s[p + 1]) { s[p + 1] = 2; stack[top++] = p + 1; }
            if (j > 0 && !s[p - w]) { s[p - w] = 2; stack[top++] = p - w; }
            if (j < h - 1 && !s[p + w]) { s[p + w] = 2; stack[top++] = p + w; }
        }
        for (int64_t p = 0; p < hw; p++)
            s[p] = s[p] == 2 ? 0 : s[p] ? s[p] : c->value;
    }
    free(stack);
}

void ct_fill_holes_2d(uint8_t *m, int64_t d, int64_t h, int64_t w, uint8_t value, int threads)
{
    fill_ctx c = { m, h, w, value };
    ct_parallel_for(d, threads, fill_slices, &c);
}

/* ---- Lung-RADS ------------------------------------------------------------- */
const char *ct_lungrads(int solid, double dmm, const char **size_class)
{
    /* ACR Lung-RADS v2022, baseline screening, by mean diameter. Sub-solid
     * findings are treated as part-solid (the solid component is not
     * measured): under 6 mm category 2, otherwise at least 3. */
    if (solid) {
        if (dmm < 6) { *size_class = "<6 mm"; return "2"; }
        if (dmm < 8) { *size_class = "6-<8 mm"; return "3"; }
        if (dmm < 15) { *size_class = "8-<15 mm"; return "4A"; }
        *size_class = ">=15 mm";
        return "4B";
    }
    if (dmm < 6) { *size_class = "<6 mm"; return "2"; }
    *size_class = ">=6 mm";
    return "3+";
}
