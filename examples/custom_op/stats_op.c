/* stats_op.c - stats.summary: an out-of-tree dspipe operator that adds per-tensor statistics to each packet's metadata.
 *
 * For every tensor of a packet (or the ones named in tensors=[...]) it
 * computes count, mean, population std, min, max, L2 norm and the number of
 * NaNs, in double precision whatever the tensor's dtype, and stores them as
 *
 *     meta.stats.<tensor name> = { "dtype": "f32", "count": 1000, "nan": 0,
 *                                  "mean": ..., "std": ..., "min": ...,
 *                                  "max": ..., "l2": ... }
 *
 * The tensors themselves are forwarded untouched. NaNs are counted and left
 * out of the other statistics; when every element is NaN (or the tensor is
 * empty) mean, std, min and max are NaN, which JSON shows as null.
 *
 * Build it against an installed dspipe:
 *
 *     cc -shared -fPIC stats_op.c $(pkg-config --cflags --libs dspipe) -o stats_op.so
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <dspipe/plugin.h>

/* The private state. The core zeroes it, then stores every parameter at the
 * offset its table entry names, before init() runs. */
typedef struct stats_ctx {
    dsp_list tensors;           /* names to summarize; n == 0: every tensor */
    int fail_on_nan;
} stats_ctx;

static const dsp_param_def stats_params[] = {
    { .name = "tensors", .type = DSP_PARAM_LIST, .elem = DSP_PARAM_STRING, .def = "[]",
      .offset = offsetof(stats_ctx, tensors),
      .doc = "names of the tensors to summarize, e.g. [x, mask]; empty: every tensor" },
    { .name = "fail_on_nan", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(stats_ctx, fail_on_nan),
      .doc = "fail the item (errors.jsonl) when a summarized tensor holds a NaN" },
    { NULL }
};

static const dsp_port_def stats_in[] = {
    { .name = "in", .type = "tensor", .doc = "packets with tensors (e.g. from tensor.read)" },
    { NULL }
};
static const dsp_port_def stats_out[] = {
    { .name = "out", .type = "tensor", .doc = "the same packets, with meta stats.<tensor> added" },
    { NULL }
};

/* ---- statistics ------------------------------------------------------------ */

typedef struct summary {
    int64_t count;              /* elements seen */
    int64_t nan;                /* of which NaN */
    int64_t n;                  /* of which not NaN: what mean/std/min/max cover */
    double mean, m2;            /* Welford: running mean and sum of squared deviations */
    double min, max;
    double scale, ssq;          /* L2 norm as scale * sqrt(ssq), safe from overflow */
    int inf;                    /* an infinity was seen: the norm is infinite */
} summary;

static void summary_init(summary *s)
{
    memset(s, 0, sizeof(*s));
    s->min = INFINITY;
    s->max = -INFINITY;
    s->ssq = 1.0;
}

static void summary_add(summary *s, const double *x, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        double v = x[k], d, a;

        s->count++;
        if (isnan(v)) {
            s->nan++;
            continue;
        }
        s->n++;
        d = v - s->mean;
        s->mean += d / (double)s->n;
        s->m2 += d * (v - s->mean);
        if (v < s->min)
            s->min = v;
        if (v > s->max)
            s->max = v;
        a = fabs(v);
        if (isinf(a))
            s->inf = 1;
        else if (a > s->scale) {
            s->ssq = 1.0 + s->ssq * (s->scale / a) * (s->scale / a);
            s->scale = a;
        } else if (a > 0) {
            s->ssq += (a / s->scale) * (a / s->scale);
        }
    }
}

/* ---- reading any dtype as doubles ---------------------------------------- */

/* IEEE half to double through its bits: sign, exponent rebiased 15 -> 127. */
static double half_to_double(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    float f;

    if (e == 0) {                               /* zero and subnormals: m * 2^-24 */
        f = (float)m * 0x1p-24f;
        return sign ? -(double)f : (double)f;
    }
    u = sign | (e == 31 ? 0x7f800000u : (e + 127 - 15) << 23) | m << 13;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static double bf16_to_double(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* n elements of type dt, `step` bytes apart from p, into out[]. memcpy keeps
 * unaligned data (a mapped file, a strided view) safe on every CPU. */
static int load_doubles(dsp_dtype dt, const unsigned char *p, ptrdiff_t step, int64_t n,
                        double *out)
{
#define LOAD(T, CONV)                                                          \
    for (int64_t k = 0; k < n; k++) {                                          \
        T v;                                                                   \
        memcpy(&v, p + k * step, sizeof(v));                                   \
        out[k] = CONV(v);                                                      \
    }                                                                          \
    return 0
#define AS_DOUBLE(v) ((double)(v))
#define AS_BOOL(v) ((v) != 0 ? 1.0 : 0.0)
    switch (dt) {
    case DSP_DTYPE_F32:  LOAD(float, AS_DOUBLE);
    case DSP_DTYPE_F64:  LOAD(double, AS_DOUBLE);
    case DSP_DTYPE_F16:  LOAD(uint16_t, half_to_double);
    case DSP_DTYPE_BF16: LOAD(uint16_t, bf16_to_double);
    case DSP_DTYPE_I8:   LOAD(int8_t, AS_DOUBLE);
    case DSP_DTYPE_U8:   LOAD(uint8_t, AS_DOUBLE);
    case DSP_DTYPE_I16:  LOAD(int16_t, AS_DOUBLE);
    case DSP_DTYPE_U16:  LOAD(uint16_t, AS_DOUBLE);
    case DSP_DTYPE_I32:  LOAD(int32_t, AS_DOUBLE);
    case DSP_DTYPE_U32:  LOAD(uint32_t, AS_DOUBLE);
    case DSP_DTYPE_I64:  LOAD(int64_t, AS_DOUBLE);
    case DSP_DTYPE_U64:  LOAD(uint64_t, AS_DOUBLE);
    case DSP_DTYPE_BOOL: LOAD(uint8_t, AS_BOOL);
    default:
        return DSP_EUNSUPPORTED;    /* a dtype newer than this plugin */
    }
#undef LOAD
#undef AS_DOUBLE
#undef AS_BOOL
}

#define CHUNK 1024

/* Walk the tensor row by row along its last dimension, following the
 * strides, so C-order, Fortran-order and sliced views all work. */
static int summarize_tensor(const dsp_tensor *t, summary *s)
{
    const size_t es = dsp_dtype_size(t->dtype);
    const unsigned char *base = dsp_tensor_data(t);
    const int last = t->ndim - 1;
    const int64_t numel = dsp_tensor_numel(t);
    const int64_t len = t->ndim ? t->shape[last] : 1;
    const int64_t lstride = t->ndim ? t->stride[last] : 1;
    int64_t idx[DSP_MAX_DIMS] = { 0 };
    double buf[CHUNK];

    summary_init(s);
    if (numel == 0)
        return 0;
    for (int64_t row = 0; row < numel / len; row++) {
        int64_t off = 0;
        for (int d = 0; d < last; d++)
            off += idx[d] * t->stride[d];
        for (int64_t k = 0; k < len; k += CHUNK) {
            int64_t n = len - k < CHUNK ? len - k : CHUNK;
            int err = load_doubles(t->dtype, base + (off + k * lstride) * (int64_t)es,
                                   (ptrdiff_t)(lstride * (int64_t)es), n, buf);
            if (err < 0)
                return err;
            summary_add(s, buf, n);
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return 0;
}

/* ---- the operator -------------------------------------------------------- */

/* What to call the item in messages: the input file when there is one. */
static const char *item_source(const dsp_packet *p)
{
    const char *s;
    if (dsp_meta_get_str(dsp_packet_meta_const(p), "source", &s) == 0 ||
        dsp_meta_get_str(dsp_packet_meta_const(p), "path", &s) == 0)
        return s;
    return "(no source)";
}

/* "x, mask" into dst (truncated with "..." when long). */
static void tensor_names(const dsp_packet *p, char *dst, size_t size)
{
    size_t len = 0;

    dst[0] = 0;
    for (int i = 0; i < dsp_packet_tensor_count(p); i++) {
        const char *name;
        int n;
        dsp_packet_tensor_at(p, i, &name);
        n = snprintf(dst + len, size - len, "%s%s", i ? ", " : "", name);
        if (n < 0 || (size_t)n >= size - len) {
            if (size > 4)
                strcpy(dst + size - 4, "...");
            return;
        }
        len += (size_t)n;
    }
    if (!len)
        snprintf(dst, size, "none");
}

static int write_summary(dsp_meta *stats, const char *name, const dsp_tensor *t,
                         const summary *s)
{
    dsp_meta *d = dsp_meta_dict(stats, name);
    int have = s->n > 0;
    int err;

    if (!d)
        return DSP_ENOMEM;
    err = dsp_meta_set_str(d, "dtype", dsp_dtype_name(t->dtype));
    if (!err)
        err = dsp_meta_set_int(d, "count", s->count);
    if (!err)
        err = dsp_meta_set_int(d, "nan", s->nan);
    if (!err)
        err = dsp_meta_set_float(d, "mean", have ? s->mean : NAN);
    if (!err)
        err = dsp_meta_set_float(d, "std", have ? sqrt(s->m2 / (double)s->n) : NAN);
    if (!err)
        err = dsp_meta_set_float(d, "min", have ? s->min : NAN);
    if (!err)
        err = dsp_meta_set_float(d, "max", have ? s->max : NAN);
    if (!err)
        err = dsp_meta_set_float(d, "l2", s->inf ? INFINITY : s->scale * sqrt(s->ssq));
    return err;
}

/* Summarize one tensor into meta "stats" of p. Fails the item on NaN when
 * asked to; the message names the tensor and the input file. */
static int stats_one(dsp_node *node, const stats_ctx *c, dsp_packet *p, const char *name,
                     const dsp_tensor *t, const char *source)
{
    summary s;
    dsp_meta *stats;
    int err;

    if (t->device.type != DSP_DEVICE_CPU)
        return dsp_node_fail(node, DSP_EUNSUPPORTED, "%s: tensor '%s' is not in CPU "
                             "memory; run stats.summary before moving it to the GPU",
                             source, name);
    if ((err = summarize_tensor(t, &s)) < 0)
        return dsp_node_fail(node, err, "%s: tensor '%s' has dtype %s, which this "
                             "version of stats.summary cannot read", source, name,
                             dsp_dtype_name(t->dtype));
    if (c->fail_on_nan && s.nan > 0)
        return dsp_node_fail(node, DSP_EFORMAT, "%s: tensor '%s' contains %lld NaN "
                             "value%s out of %lld (fail_on_nan=true)", source, name,
                             (long long)s.nan, s.nan == 1 ? "" : "s", (long long)s.count);
    if (!(stats = dsp_meta_dict(dsp_packet_meta(p), "stats")) ||
        (err = write_summary(stats, name, t, &s)) < 0)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", source);
    return 0;
}

static int stats_init(dsp_node *node)
{
    stats_ctx *c = dsp_node_priv(node);

    for (int i = 0; i < c->tensors.n; i++)
        if (!c->tensors.s[i][0])
            return dsp_node_fail(node, DSP_EINVAL, "tensors: element %d is an empty name",
                                 i + 1);
    if (c->tensors.n)
        dsp_node_log(node, DSP_LOG_VERBOSE, "summarizing %d named tensor%s", c->tensors.n,
                     c->tensors.n == 1 ? "" : "s");
    return 0;
}

static int stats_process(dsp_node *node, dsp_packet **in)
{
    const stats_ctx *c = dsp_node_priv(node);
    const char *source = item_source(in[0]);    /* borrowed from in[0] */
    dsp_packet *p = dsp_packet_ref(in[0]);      /* we forward the input ... */
    int err = dsp_packet_make_writable(&p);     /* ... with new metadata: copy it */

    if (err < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail(node, err, "%s: out of memory", source);
    }
    if (c->tensors.n == 0) {
        for (int i = 0; i < dsp_packet_tensor_count(p) && err == 0; i++) {
            const char *name;
            const dsp_tensor *t = dsp_packet_tensor_at(p, i, &name);
            err = stats_one(node, c, p, name, t, source);
        }
    }
    for (int i = 0; i < c->tensors.n && err == 0; i++) {
        const char *name = c->tensors.s[i];
        const dsp_tensor *t = dsp_packet_tensor(p, name);
        if (!t) {
            char have[256];
            tensor_names(p, have, sizeof(have));
            err = dsp_node_fail(node, DSP_ENOENT, "%s: no tensor '%s' in this item (it has: "
                                "%s); check tensors=[...]", source, name, have);
        } else {
            err = stats_one(node, c, p, name, t, source);
        }
    }
    if (err < 0) {
        dsp_packet_unref(&p);
        return err;
    }
    return dsp_node_emit(node, 0, p);           /* transfer full */
}

static const dsp_op_def stats_summary_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "stats.summary",
    .doc = "add count, mean, std, min, max, L2 norm and NaN count of each tensor to meta stats",
    .inputs = stats_in,
    .outputs = stats_out,
    .params = stats_params,
    .priv_size = sizeof(stats_ctx),
    .init = stats_init,
    .process = stats_process,
};

static const dsp_op_def *const stats_ops[] = { &stats_summary_op, NULL };

DSP_PLUGIN_DEFINE("stats", "1.0.0", "MIT", "per-tensor summary statistics (example plugin)",
                  stats_ops)
