/* test_tensorio_python.c - files written by dspipe's tensor writers must read back identically in numpy and safetensors.
 *
 * Writes .npy and .safetensors files (every dtype, strided views, scalars,
 * empty tensors, bf16, metadata) plus a manifest of the values as dspipe
 * sees them, then runs tests/reference/check_tensorio_roundtrip.py, which
 * loads them with the reference libraries. Exit 77 (skip) when python3
 * cannot import numpy and safetensors. $PYTHON picks the interpreter.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <dspipe/dspipe.h>
#include <dspipe/tensorio.h>

#define FAIL(...) do { fprintf(stderr, "test_tensorio_python: " __VA_ARGS__); \
                       fputc('\n', stderr); exit(1); } while (0)

static char dir[512];
static json_t *manifest;
static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                 : ldexp(m | 0x400, e - 25);
    return h & 0x8000 ? -v : v;
}

/* Element value as text, read the way dspipe kernels read it. */
static void element_text(dsp_dtype dt, const unsigned char *p, char *dst, size_t n)
{
    switch (dt) {
    case DSP_DTYPE_F32: { float v; memcpy(&v, p, 4); snprintf(dst, n, "%.9g", v); break; }
    case DSP_DTYPE_F64: { double v; memcpy(&v, p, 8); snprintf(dst, n, "%.17g", v); break; }
    case DSP_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); snprintf(dst, n, "%.17g", half_to_double(v)); break; }
    case DSP_DTYPE_BF16: {
        uint16_t v; uint32_t u; float f;
        memcpy(&v, p, 2); u = (uint32_t)v << 16; memcpy(&f, &u, 4);
        snprintf(dst, n, "%.9g", f); break;
    }
    case DSP_DTYPE_I8:  snprintf(dst, n, "%d", *(const int8_t *)p); break;
    case DSP_DTYPE_U8:  snprintf(dst, n, "%u", *p); break;
    case DSP_DTYPE_BOOL: snprintf(dst, n, "%d", *p != 0); break;
    case DSP_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); snprintf(dst, n, "%d", v); break; }
    case DSP_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); snprintf(dst, n, "%u", v); break; }
    case DSP_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); snprintf(dst, n, "%d", v); break; }
    case DSP_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); snprintf(dst, n, "%u", v); break; }
    case DSP_DTYPE_I64: { int64_t v; memcpy(&v, p, 8); snprintf(dst, n, "%lld", (long long)v); break; }
    case DSP_DTYPE_U64: { uint64_t v; memcpy(&v, p, 8); snprintf(dst, n, "%llu", (unsigned long long)v); break; }
    default: snprintf(dst, n, "?"); break;
    }
}

static json_t *describe(const dsp_tensor *t)
{
    json_t *shape = json_array(), *vals = json_array();
    for (int d = 0; d < t->ndim; d++)
        json_array_append_new(shape, json_integer(t->shape[d]));
    size_t es = dsp_dtype_size(t->dtype);
    for (int64_t k = 0; k < dsp_tensor_numel(t); k++) {
        int64_t rem = k, off = 0;
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += (rem % t->shape[d]) * t->stride[d];
            rem /= t->shape[d];
        }
        char text[64];
        element_text(t->dtype, (const unsigned char *)dsp_tensor_data(t) + off * (int64_t)es,
                     text, sizeof text);
        json_array_append_new(vals, json_string(text));
    }
    return json_pack("{s:s, s:o, s:o}", "dtype", dsp_dtype_name(t->dtype), "shape", shape,
                     "values", vals);
}

/* Random bytes, except bool which must hold 0/1 to mean the same everywhere. */
static dsp_tensor *random_tensor(dsp_dtype dt, int ndim, const int64_t *shape)
{
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(dt, ndim, shape, &t) < 0)
        FAIL("dsp_tensor_new");
    unsigned char *p = dsp_tensor_data(t);
    for (size_t i = 0; i < dsp_tensor_nbytes(t); i++)
        p[i] = dt == DSP_DTYPE_BOOL ? (unsigned char)(rng() & 1) : (unsigned char)rng();
    return t;
}

/* A transposed view of a fresh 2-D tensor (non-contiguous). */
static dsp_tensor *transposed(dsp_dtype dt, int64_t rows, int64_t cols)
{
    int64_t shape[2] = { rows, cols }, tshape[2] = { cols, rows }, tstride[2] = { 1, cols };
    dsp_tensor *t = random_tensor(dt, 2, shape), *v = NULL;
    if (dsp_tensor_from_buffer(dt, 2, tshape, tstride, t->buf, 0, &v) < 0)
        FAIL("transposed view");
    dsp_tensor_unref(&t);
    return v;
}

static void write_npy(const char *name, dsp_tensor *t)
{
    char path[700];
    char *why = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (dsp_npy_write(path, t, &why) < 0)
        FAIL("%s", why);
    json_t *ts = json_pack("{s:o}", "x", describe(t));
    json_object_set_new(manifest, name, json_pack("{s:s, s:o}", "format", "npy",
                                                  "tensors", ts));
    dsp_tensor_unref(&t);
}

static void write_st(const char *name, int n, const char **names, dsp_tensor **ts,
                     dsp_meta *md)
{
    char path[700];
    char *why = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (dsp_safetensors_write(path, names, ts, n, md, &why) < 0)
        FAIL("%s", why);
    json_t *tj = json_object(), *mj = json_object();
    for (int i = 0; i < n; i++) {
        json_object_set_new(tj, names[i], describe(ts[i]));
        dsp_tensor_unref(&ts[i]);
    }
    if (md) {
        /* safetensors metadata is string -> string: what dspipe promises */
        char *text = dsp_meta_to_json(md);
        json_t *src = json_loads(text, 0, NULL);
        const char *k;
        json_t *v;
        json_object_foreach(src, k, v) {
            char *enc = json_is_string(v) ? strdup(json_string_value(v))
                                          : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            json_object_set_new(mj, k, json_string(enc));
            free(enc);
        }
        json_decref(src);
        dsp_free(text);
    }
    json_object_set_new(manifest, name, json_pack("{s:s, s:o, s:o}", "format",
                                                  "safetensors", "tensors", tj,
                                                  "metadata", mj));
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[800];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *py = getenv("PYTHON");
    const char *src = getenv("TESTS_SRCDIR");
    char cmd[2048];
    if (!py || !*py)
        py = "python3";
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy, safetensors' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("SKIP: %s cannot import numpy and safetensors "
               "(python3 -m pip install numpy safetensors)\n", py);
        return 77;
    }

    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dsp_tio_py_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        FAIL("mkdtemp");
    manifest = json_object();

    static const dsp_dtype all[] = {
        DSP_DTYPE_F32, DSP_DTYPE_F16, DSP_DTYPE_I8, DSP_DTYPE_U8, DSP_DTYPE_I16,
        DSP_DTYPE_I32, DSP_DTYPE_I64, DSP_DTYPE_F64, DSP_DTYPE_BOOL, DSP_DTYPE_U16,
        DSP_DTYPE_U32, DSP_DTYPE_U64,
    };
    int64_t s3[3] = { 2, 3, 4 }, s0[2] = { 0, 5 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.npy", dsp_dtype_name(all[i]));
        write_npy(name, random_tensor(all[i], 3, s3));
        snprintf(name, sizeof name, "%s_T.npy", dsp_dtype_name(all[i]));
        write_npy(name, transposed(all[i], 3, 5));
    }
    write_npy("scalar.npy", random_tensor(DSP_DTYPE_F64, 0, NULL));
    write_npy("empty.npy", random_tensor(DSP_DTYPE_F32, 2, s0));

    /* one safetensors file with every dtype, one with views and metadata */
    const char *names[16];
    dsp_tensor *ts[16];
    char nbuf[16][32];
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++, n++) {
        snprintf(nbuf[n], sizeof nbuf[n], "layer.%s", dsp_dtype_name(all[i]));
        names[n] = nbuf[n];
        ts[n] = random_tensor(all[i], 3, s3);
    }
    names[n] = "layer.bf16";
    ts[n++] = random_tensor(DSP_DTYPE_BF16, 3, s3);
    write_st("all.safetensors", n, names, ts, NULL);

    dsp_meta *md = dsp_meta_new();
    dsp_meta_set_str(md, "format", "pt");
    dsp_meta_set_int(md, "step", 1200);
    names[0] = "w.T";
    ts[0] = transposed(DSP_DTYPE_BF16, 4, 6);
    names[1] = "scale";
    ts[1] = random_tensor(DSP_DTYPE_F64, 0, NULL);
    names[2] = "none";
    ts[2] = random_tensor(DSP_DTYPE_I32, 2, s0);
    names[3] = "ids";
    ts[3] = transposed(DSP_DTYPE_U8, 7, 3);
    write_st("views.safetensors", 4, names, ts, md);
    dsp_meta_free(&md);

    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    if (json_dump_file(manifest, mpath, JSON_INDENT(1)) < 0)
        FAIL("cannot write %s", mpath);
    json_decref(manifest);

    snprintf(cmd, sizeof cmd, "%s '%s/reference/check_tensorio_roundtrip.py' '%s'", py,
             src && *src ? src : ".", dir);
    int rc = system(cmd);
    int status = rc == -1 ? 1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
    remove_dir();
    return status;
}
