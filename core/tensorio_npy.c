/* tensorio_npy.c - NumPy .npy reader/writer, plus the strided-write helpers tensorio shares. */
#include "internal.h"
#include "dspipe/tensorio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG_ENDIAN 1
#else
#define HOST_BIG_ENDIAN 0
#endif


/* ---------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------- */

int dspi_tio_error(char **errmsg, int code, const char *fmt, ...)
{
    if (!errmsg)
        return code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    free(*errmsg);
    *errmsg = s;
    return code;
}

void dspi_tio_byteswap(void *data, size_t elsize, size_t count)
{
    unsigned char *p = data;
    if (elsize < 2)
        return;
    for (size_t i = 0; i < count; i++, p += elsize)
        for (size_t a = 0, b = elsize - 1; a < b; a++, b--) {
            unsigned char c = p[a];
            p[a] = p[b];
            p[b] = c;
        }
}

/* Write t's elements in C order. Rows with unit inner stride go out with one
 * fwrite; other layouts are gathered into a small staging buffer. */
int dspi_tio_write_data(FILE *fp, const dsp_tensor *t)
{
    size_t es = dsp_dtype_size(t->dtype);
    int64_t numel = dsp_tensor_numel(t);
    if (numel <= 0)
        return 0;
    const unsigned char *base = dsp_tensor_data(t);
    if (dsp_tensor_is_contiguous(t))
        return fwrite(base, es, (size_t)numel, fp) == (size_t)numel ? 0 : DSP_EIO;

    int nd = t->ndim;
    int64_t inner = t->shape[nd - 1];
    int64_t inner_stride = t->stride[nd - 1];
    int64_t rows = numel / inner;
    int64_t idx[DSP_MAX_DIMS] = { 0 };
    unsigned char stage[8192];
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0;
        for (int d = 0; d < nd - 1; d++)
            off += idx[d] * t->stride[d];
        const unsigned char *row = base + off * (int64_t)es;
        if (inner_stride == 1) {
            if (fwrite(row, es, (size_t)inner, fp) != (size_t)inner)
                return DSP_EIO;
        } else {
            size_t fill = 0;
            for (int64_t k = 0; k < inner; k++) {
                memcpy(stage + fill, row + k * inner_stride * (int64_t)es, es);
                fill += es;
                if (fill + es > sizeof stage || k == inner - 1) {
                    if (fwrite(stage, 1, fill, fp) != fill)
                        return DSP_EIO;
                    fill = 0;
                }
            }
        }
        for (int d = nd - 2; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Header parsing: the header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * Only that subset of Python syntax is accepted; everything is bounds-checked.
 * ------------------------------------------------------------------------- */

typedef struct npy_header {
    char descr[32];
    int fortran;
    int ndim;
    int64_t shape[DSP_MAX_DIMS];
    int have_descr, have_fortran, have_shape;
} npy_header;

typedef struct npy_lexer {
    const char *p, *end;
    const char *why;        /* static reason on failure */
} npy_lexer;

static void lex_ws(npy_lexer *lx)
{
    while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' ||
                               *lx->p == '\n' || *lx->p == '\r'))
        lx->p++;
}

static int lex_char(npy_lexer *lx, char c)
{
    lex_ws(lx);
    if (lx->p < lx->end && *lx->p == c) {
        lx->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (keys and descr never need them). */
static int lex_string(npy_lexer *lx, char *dst, size_t cap)
{
    lex_ws(lx);
    if (lx->p >= lx->end || (*lx->p != '\'' && *lx->p != '"')) {
        lx->why = "expected a quoted string";
        return -1;
    }
    char q = *lx->p++;
    size_t n = 0;
    while (lx->p < lx->end && *lx->p != q) {
        if (*lx->p == '\\' || n + 1 >= cap) {
            lx->why = *lx->p == '\\' ? "escapes in strings are not supported"
                                     : "string too long";
            return -1;
        }
        dst[n++] = *lx->p++;
    }
    if (lx->p >= lx->end) {
        lx->why = "unterminated string";
        return -1;
    }
    lx->p++;
    dst[n] = '\0';
    return 0;
}

static int lex_word(npy_lexer *lx, const char *w)
{
    size_t n = strlen(w);
    lex_ws(lx);
    if ((size_t)(lx->end - lx->p) >= n && memcmp(lx->p, w, n) == 0) {
        lx->p += n;
        return 1;
    }
    return 0;
}

static int lex_shape(npy_lexer *lx, npy_header *h)
{
    if (!lex_char(lx, '(')) {
        lx->why = "shape is not a tuple";
        return -1;
    }
    h->ndim = 0;
    for (;;) {
        if (lex_char(lx, ')'))
            return 0;
        lex_ws(lx);
        if (lx->p >= lx->end || *lx->p < '0' || *lx->p > '9') {
            lx->why = "shape holds something other than non-negative integers";
            return -1;
        }
        int64_t v = 0;
        while (lx->p < lx->end && *lx->p >= '0' && *lx->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) {
                lx->why = "shape dimension too large";
                return -1;
            }
            v = v * 10 + (*lx->p++ - '0');
        }
        if (lx->p < lx->end && *lx->p == 'L')   /* Python 2 long literal */
            lx->p++;
        if (h->ndim >= DSP_MAX_DIMS) {
            lx->why = "more than 8 dimensions";
            return -2;
        }
        h->shape[h->ndim++] = v;
        if (lex_char(lx, ','))
            continue;
        if (lex_char(lx, ')'))
            return 0;
        lx->why = "malformed shape tuple";
        return -1;
    }
}

/* Returns 0, -1 (malformed: lx->why says why) or -2 (unsupported). */
static int npy_parse_header(const char *text, size_t len, npy_header *h,
                            const char **why)
{
    npy_lexer lx = { text, text + len, NULL };
    memset(h, 0, sizeof *h);
    if (!lex_char(&lx, '{')) {
        lx.why = "header is not a dictionary";
        goto bad;
    }
    for (;;) {
        char key[32];
        if (lex_char(&lx, '}'))
            break;
        if (lex_string(&lx, key, sizeof key) < 0)
            goto bad;
        if (!lex_char(&lx, ':')) {
            lx.why = "expected ':' after a key";
            goto bad;
        }
        if (strcmp(key, "descr") == 0 && !h->have_descr) {
            lex_ws(&lx);
            if (lx.p < lx.end && *lx.p == '[') {
                lx.why = "structured dtypes (a descr list) are not supported";
                return -2;
            }
            if (lex_string(&lx, h->descr, sizeof h->descr) < 0)
                goto bad;
            h->have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !h->have_fortran) {
            if (lex_word(&lx, "True"))
                h->fortran = 1;
            else if (lex_word(&lx, "False"))
                h->fortran = 0;
            else {
                lx.why = "fortran_order is neither True nor False";
                goto bad;
            }
            h->have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !h->have_shape) {
            int r = lex_shape(&lx, h);
            if (r == -2)
                return -2;
            if (r < 0)
                goto bad;
            h->have_shape = 1;
        } else {
            lx.why = "unexpected or repeated key (only descr, fortran_order and "
                     "shape are allowed)";
            goto bad;
        }
        if (lex_char(&lx, ','))
            continue;
        if (lex_char(&lx, '}'))
            break;
        lx.why = "expected ',' or '}'";
        goto bad;
    }
    if (!h->have_descr || !h->have_fortran || !h->have_shape) {
        lx.why = "header lacks descr, fortran_order or shape";
        goto bad;
    }
    return 0;
bad:
    *why = lx.why ? lx.why : "parse error";
    return -1;
}

/* "<f4" -> dtype and whether bytes must be swapped. Returns 0 or -1. */
static int npy_parse_descr(const char *descr, dsp_dtype *dt, int *swap)
{
    const char *d = descr;
    char order = '=';
    if (*d == '<' || *d == '>' || *d == '|' || *d == '=')
        order = *d++;
    if (strcmp(d, "?") == 0)
        d = "b1";
    static const struct { const char *code; dsp_dtype dt; } codes[] = {
        { "f2", DSP_DTYPE_F16 }, { "f4", DSP_DTYPE_F32 }, { "f8", DSP_DTYPE_F64 },
        { "i1", DSP_DTYPE_I8 },  { "i2", DSP_DTYPE_I16 }, { "i4", DSP_DTYPE_I32 },
        { "i8", DSP_DTYPE_I64 }, { "u1", DSP_DTYPE_U8 },  { "u2", DSP_DTYPE_U16 },
        { "u4", DSP_DTYPE_U32 }, { "u8", DSP_DTYPE_U64 }, { "b1", DSP_DTYPE_BOOL },
    };
    for (size_t i = 0; i < DSPI_ARRAY_LEN(codes); i++) {
        if (strcmp(d, codes[i].code) == 0) {
            *dt = codes[i].dt;
            int big = order == '>' || (order == '=' && HOST_BIG_ENDIAN);
            *swap = dsp_dtype_size(*dt) > 1 && big != HOST_BIG_ENDIAN;
            return 0;
        }
    }
    return -1;
}

static int npy_read_mapped(const char *path, dsp_buffer *buf, dsp_tensor **out,
                           char **errmsg)
{
    const unsigned char *b = dsp_buffer_data(buf);
    size_t size = dsp_buffer_size(buf);
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: not a .npy file (no \\x93NUMPY magic)", path);
    int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12)
            return dspi_tio_error(errmsg, DSP_EFORMAT,
                                  "%s: truncated .npy header", path);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
               (size_t)b[11] << 24;
        hstart = 12;
    } else {
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: .npy format version %d.%d is not supported "
                              "(1.0, 2.0 and 3.0 are)", path, major, b[7]);
    }
    if (hlen > size - hstart)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: truncated .npy file: header of %zu bytes but "
                              "the file has %zu", path, hlen, size);

    npy_header h;
    const char *why = NULL;
    int r = npy_parse_header((const char *)b + hstart, hlen, &h, &why);
    if (r == -2)
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: .npy header: structured dtypes and more than "
                              "%d dimensions are not supported", path, DSP_MAX_DIMS);
    if (r < 0)
        return dspi_tio_error(errmsg, DSP_EFORMAT, "%s: malformed .npy header: %s",
                              path, why);
    dsp_dtype dt;
    int swap;
    if (npy_parse_descr(h.descr, &dt, &swap) < 0)
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: .npy dtype '%s' is not supported (use f2/f4/f8, "
                              "i1..i8, u1..u8 or b1)", path, h.descr);

    size_t es = dsp_dtype_size(dt);
    size_t data_off = hstart + hlen;
    size_t avail = size - data_off;
    int64_t numel = 1;
    for (int i = 0; i < h.ndim; i++)
        if (h.shape[i] == 0)
            numel = 0;
    for (int i = 0; i < h.ndim && numel != 0; i++) {
        if (numel > (int64_t)(avail / es) / h.shape[i]) {
            /* more elements than the file could hold: it is truncated */
            numel = -1;
            break;
        }
        numel *= h.shape[i];
    }
    if (numel < 0 || (size_t)numel * es > avail)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: truncated .npy file: the shape needs more data "
                              "than the %zu bytes after the header", path, avail);

    int err;
    if (numel == 0) {
        /* No data to view; still refuse shapes whose other dimensions would
         * overflow size arithmetic downstream. */
        int64_t nz = 1;
        for (int i = 0; i < h.ndim; i++) {
            if (h.shape[i] == 0)
                continue;
            if (nz > (INT64_MAX / 16) / h.shape[i])
                return dspi_tio_error(errmsg, DSP_EFORMAT,
                                      "%s: .npy shape is too large", path);
            nz *= h.shape[i];
        }
        err = dsp_tensor_new(dt, h.ndim, h.shape, out);
        return err < 0 ? dspi_tio_error(errmsg, err, "%s: %s", path,
                                        dsp_strerror(err)) : 0;
    }

    /* numel > 0 bounds every dimension, so these products cannot overflow */
    int64_t stride[DSP_MAX_DIMS];
    int64_t acc = 1;
    if (h.fortran) {
        for (int i = 0; i < h.ndim; i++) {
            stride[i] = acc;
            acc *= h.shape[i];
        }
    } else {
        for (int i = h.ndim - 1; i >= 0; i--) {
            stride[i] = acc;
            acc *= h.shape[i];
        }
    }
    size_t nbytes = (size_t)numel * es;
    if (!swap && ((uintptr_t)(b + data_off)) % es == 0) {
        err = dsp_tensor_from_buffer(dt, h.ndim, h.shape, stride, buf, data_off,
                                     out);
    } else {
        /* Misaligned or foreign byte order: convert into an owned copy that
         * keeps the file's layout (strides stay valid). */
        dsp_buffer *copy = NULL;
        err = dsp_buffer_new(nbytes, &copy);
        if (err == 0) {
            memcpy(dsp_buffer_data(copy), b + data_off, nbytes);
            if (swap)
                dspi_tio_byteswap(dsp_buffer_data(copy), es, (size_t)numel);
            err = dsp_tensor_from_buffer(dt, h.ndim, h.shape, stride, copy, 0, out);
            dsp_buffer_unref(&copy);
        }
    }
    if (err < 0)
        return dspi_tio_error(errmsg, err, "%s: cannot make the tensor: %s", path,
                              dsp_strerror(err));
    return 0;
}

int dsp_npy_read(const char *path, dsp_tensor **out, char **errmsg)
{
    if (!out)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_npy_read: out is NULL");
    *out = NULL;
    if (!path)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_npy_read: path is NULL");
    dsp_buffer *buf = NULL;
    errno = 0;
    int err = dsp_buffer_map_file(path, &buf);
    if (err < 0)
        return dspi_tio_error(errmsg, err, "%s: cannot open: %s", path,
                              errno ? strerror(errno) : dsp_strerror(err));
    err = npy_read_mapped(path, buf, out, errmsg);
    dsp_buffer_unref(&buf);
    return err;
}

/* ---------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------- */

static const char *npy_descr_of(dsp_dtype dt)
{
    switch (dt) {
    case DSP_DTYPE_F16:  return HOST_BIG_ENDIAN ? ">f2" : "<f2";
    case DSP_DTYPE_F32:  return HOST_BIG_ENDIAN ? ">f4" : "<f4";
    case DSP_DTYPE_F64:  return HOST_BIG_ENDIAN ? ">f8" : "<f8";
    case DSP_DTYPE_I8:   return "|i1";
    case DSP_DTYPE_U8:   return "|u1";
    case DSP_DTYPE_BOOL: return "|b1";
    case DSP_DTYPE_I16:  return HOST_BIG_ENDIAN ? ">i2" : "<i2";
    case DSP_DTYPE_I32:  return HOST_BIG_ENDIAN ? ">i4" : "<i4";
    case DSP_DTYPE_I64:  return HOST_BIG_ENDIAN ? ">i8" : "<i8";
    case DSP_DTYPE_U16:  return HOST_BIG_ENDIAN ? ">u2" : "<u2";
    case DSP_DTYPE_U32:  return HOST_BIG_ENDIAN ? ">u4" : "<u4";
    case DSP_DTYPE_U64:  return HOST_BIG_ENDIAN ? ">u8" : "<u8";
    default:             return NULL;
    }
}

int dsp_npy_write(const char *path, const dsp_tensor *t, char **errmsg)
{
    if (!path || !t)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_npy_write: %s is NULL",
                              path ? "tensor" : "path");
    if (t->dtype == DSP_DTYPE_BF16)
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: .npy has no bfloat16 type; convert the tensor "
                              "to f32 first or write .safetensors", path);
    const char *descr = npy_descr_of(t->dtype);
    if (!descr)
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: dtype %s cannot be written as .npy", path,
                              dsp_dtype_name(t->dtype));
    if (t->device.type != DSP_DEVICE_CPU)
        return dspi_tio_error(errmsg, DSP_EDEVICE,
                              "%s: the tensor is on a GPU; copy it to the CPU "
                              "before writing", path);
    if (t->ndim < 0 || t->ndim > DSP_MAX_DIMS)
        return dspi_tio_error(errmsg, DSP_EINVAL, "%s: tensor has %d dims", path,
                              t->ndim);

    /* Header: magic, version 1.0, length, dict, padded with spaces so the
     * data starts on a 64-byte boundary (as NumPy does), ending in '\n'. */
    char dict[512];
    int len = snprintf(dict, sizeof dict,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++)
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%lld",
                        i ? ", " : "", (long long)t->shape[i]);
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }",
                    t->ndim == 1 ? "," : "");
    size_t total = 10 + (size_t)len + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8) };

    dsp_outfile *of;
    char *msg = NULL;
    int err = dspi_outfile_open(path, &of, &msg);
    if (err < 0) {
        dspi_tio_error(errmsg, err, "%s", msg ? msg : dsp_strerror(err));
        free(msg);
        return err;
    }
    FILE *fp = dsp_outfile_stream(of);
    errno = 0;                          /* what the writes leave is theirs */
    fwrite(pre, 1, sizeof pre, fp);
    fwrite(dict, 1, (size_t)len, fp);
    for (size_t i = 10 + (size_t)len; i < padded - 1; i++)
        fputc(' ', fp);
    fputc('\n', fp);
    if (dspi_tio_write_data(fp, t) < 0 || ferror(fp)) {
        err = dspi_tio_error(errmsg, DSP_EIO, "%s: write failed: %s", path,
                             strerror(errno ? errno : EIO));
        dsp_outfile_discard(&of);
        return err;
    }
    if ((err = dspi_outfile_commit(&of, &msg)) < 0)
        dspi_tio_error(errmsg, err, "%s", msg ? msg : dsp_strerror(err));
    free(msg);
    return err;
}
