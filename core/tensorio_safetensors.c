/* tensorio_safetensors.c - Hugging Face .safetensors reader (mmap, validated header) and atomic writer. */
#include "internal.h"
#include "dspipe/tensorio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Defined in tensorio_npy.c. */

/* The reference implementation refuses headers above 100 MB; a length
 * beyond that is corruption, not a big model. */
#define ST_MAX_HEADER 100000000ULL

typedef struct st_entry {
    char *name;
    dsp_dtype dtype;
    int ndim;
    int64_t shape[DSP_MAX_DIMS];
    uint64_t begin, end;        /* byte range inside the data section */
} st_entry;

struct dsp_safetensors {
    char *path;
    dsp_buffer *buf;            /* the read-only mapping */
    size_t data_start;          /* 8 + header length */
    int n;
    st_entry *e;                /* file order: by (begin, end, name) */
    int *by_name;               /* indices into e, sorted by name */
    int n_meta;
    char **meta_keys, **meta_vals;
};

static const struct { const char *name; dsp_dtype dt; } st_dtypes[] = {
    { "F32", DSP_DTYPE_F32 },  { "F16", DSP_DTYPE_F16 },  { "BF16", DSP_DTYPE_BF16 },
    { "I8", DSP_DTYPE_I8 },    { "U8", DSP_DTYPE_U8 },    { "I16", DSP_DTYPE_I16 },
    { "I32", DSP_DTYPE_I32 },  { "I64", DSP_DTYPE_I64 },  { "F64", DSP_DTYPE_F64 },
    { "BOOL", DSP_DTYPE_BOOL },{ "U16", DSP_DTYPE_U16 },  { "U32", DSP_DTYPE_U32 },
    { "U64", DSP_DTYPE_U64 },
};

static const char *st_dtype_name(dsp_dtype dt)
{
    for (size_t i = 0; i < DSPI_ARRAY_LEN(st_dtypes); i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return NULL;
}

/* Safetensors' other dtypes (F8_*, C64, ...) are valid files we cannot
 * represent: unsupported rather than malformed. */
static const char *const st_known_foreign[] = {
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64", NULL
};

static void st_free(dsp_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n; i++)
        free(st->e[i].name);
    free(st->e);
    free(st->by_name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    dsp_buffer_unref(&st->buf);
    free(st->path);
    free(st);
}

static int cmp_file_order(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no user pointer; the entries are passed through this
 * thread-local while the index is sorted. */
static _Thread_local const st_entry *sort_entries;

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(sort_entries[*(const int *)a].name,
                  sort_entries[*(const int *)b].name);
}

static int st_parse_metadata(dsp_safetensors *st, json_t *md, char **errmsg)
{
    if (!json_is_object(md))
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: __metadata__ is not a JSON object of strings",
                              st->path);
    size_t n = json_object_size(md);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_vals = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_vals)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", st->path);
    const char *key;
    json_t *v;
    json_object_foreach(md, key, v) {
        if (!json_is_string(v))
            return dspi_tio_error(errmsg, DSP_EFORMAT,
                                  "%s: __metadata__ entry '%s' is not a string "
                                  "(safetensors metadata maps strings to strings)",
                                  st->path, key);
        st->meta_keys[st->n_meta] = strdup(key);
        st->meta_vals[st->n_meta] = strdup(json_string_value(v));
        st->n_meta++;
        if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1])
            return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", st->path);
    }
    return 0;
}

/* Validate one header entry into *e. data_size is the data section's length. */
static int st_parse_entry(const char *path, const char *name, json_t *v,
                          uint64_t data_size, st_entry *e, char **errmsg)
{
    if (!json_is_object(v))
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': header entry is not a JSON object",
                              path, name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': header entry lacks \"%s\"", path,
                              name, !jd ? "dtype" : !js ? "shape" : "data_offsets");

    if (!json_is_string(jd))
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': dtype is not a string", path, name);
    const char *ds = json_string_value(jd);
    int found = 0;
    for (size_t i = 0; i < DSPI_ARRAY_LEN(st_dtypes); i++)
        if (strcmp(ds, st_dtypes[i].name) == 0) {
            e->dtype = st_dtypes[i].dt;
            found = 1;
        }
    if (!found) {
        for (int i = 0; st_known_foreign[i]; i++)
            if (strcmp(ds, st_known_foreign[i]) == 0)
                return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                                      "%s: tensor '%s': dtype %s is not supported "
                                      "by dspipe; convert the checkpoint to F16, "
                                      "BF16 or F32", path, name, ds);
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': unknown dtype \"%.40s\" (expected "
                              "one of F32 F16 BF16 I8 U8 I16 I32 I64 F64 BOOL U16 "
                              "U32 U64)", path, name, ds);
    }

    if (!json_is_array(js))
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': shape is not an array", path, name);
    size_t nd = json_array_size(js);
    if (nd > DSP_MAX_DIMS)
        return dspi_tio_error(errmsg, DSP_EUNSUPPORTED,
                              "%s: tensor '%s': %zu dimensions (dspipe supports "
                              "at most %d)", path, name, nd, DSP_MAX_DIMS);
    e->ndim = (int)nd;
    /* numel may exceed 2^64 in a hostile header: compute it saturating and
     * compare against the byte range, which is bounded by the file size. */
    uint64_t numel = 1;
    int huge = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return dspi_tio_error(errmsg, DSP_EFORMAT,
                                  "%s: tensor '%s': shape[%zu] is not a "
                                  "non-negative integer", path, name, i);
        e->shape[i] = (int64_t)json_integer_value(d);
        uint64_t s = (uint64_t)e->shape[i];
        if (s && numel > UINT64_MAX / s)
            huge = 1;
        else
            numel *= s;
    }
    for (size_t i = 0; i < nd; i++)
        if (e->shape[i] == 0)
            numel = 0, huge = 0;

    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)) ||
        json_integer_value(json_array_get(jo, 0)) < 0 ||
        json_integer_value(json_array_get(jo, 1)) < 0)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': data_offsets is not a pair "
                              "[begin, end] of non-negative integers", path, name);
    e->begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
    e->end = (uint64_t)json_integer_value(json_array_get(jo, 1));
    if (e->begin > e->end)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': data_offsets [%llu, %llu] has begin "
                              "after end", path, name,
                              (unsigned long long)e->begin,
                              (unsigned long long)e->end);
    if (e->end > data_size)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': data_offsets [%llu, %llu] lie "
                              "outside the data section of %llu bytes (truncated "
                              "file?)", path, name, (unsigned long long)e->begin,
                              (unsigned long long)e->end,
                              (unsigned long long)data_size);
    uint64_t es = dsp_dtype_size(e->dtype);
    if (huge || numel > UINT64_MAX / es || numel * es != e->end - e->begin)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: tensor '%s': data_offsets cover %llu bytes but "
                              "shape and dtype %s need %s%llu", path, name,
                              (unsigned long long)(e->end - e->begin), ds,
                              huge || numel > UINT64_MAX / es ? "more than " : "",
                              huge || numel > UINT64_MAX / es
                                  ? (unsigned long long)UINT64_MAX
                                  : (unsigned long long)(numel * es));
    e->name = strdup(name);
    if (!e->name)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", path);
    return 0;
}

static int st_parse(dsp_safetensors *st, char **errmsg)
{
    const unsigned char *b = dsp_buffer_data(st->buf);
    size_t size = dsp_buffer_size(st->buf);
    if (size < 8)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: not a safetensors file: %zu bytes, too short "
                              "for the 8-byte header length", st->path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: not a safetensors file: header length %llu is "
                              "over the 100 MB limit", st->path,
                              (unsigned long long)hlen);
    if (hlen > size - 8)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: header length %llu runs past the end of the "
                              "file (%zu bytes): truncated or not safetensors",
                              st->path, (unsigned long long)hlen, size);
    if (hlen < 2 || b[8] != '{')
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: not a safetensors file: the header does not "
                              "start with '{'", st->path);
    st->data_start = 8 + (size_t)hlen;
    uint64_t data_size = size - st->data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)b + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dspi_tio_error(errmsg, DSP_EFORMAT,
                              "%s: header is not valid JSON: %s (at byte %d of "
                              "the header)", st->path, jerr.text, jerr.position);
    int err = 0;
    if (!json_is_object(root)) {
        err = dspi_tio_error(errmsg, DSP_EFORMAT,
                             "%s: header is not a JSON object", st->path);
        goto done;
    }
    size_t cap = json_object_size(root);
    st->e = calloc(cap ? cap : 1, sizeof(st_entry));
    st->by_name = calloc(cap ? cap : 1, sizeof(int));
    if (!st->e || !st->by_name) {
        err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", st->path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((err = st_parse_metadata(st, v, errmsg)) < 0)
                goto done;
            continue;
        }
        if ((err = st_parse_entry(st->path, key, v, data_size, &st->e[st->n],
                                  errmsg)) < 0)
            goto done;
        st->n++;
    }

    qsort(st->e, (size_t)st->n, sizeof(st_entry), cmp_file_order);
    /* Sorted by begin, a tensor overlaps an earlier one exactly when it starts
     * before the furthest end seen so far. Empty tensors occupy nothing. */
    uint64_t max_end = 0;
    int max_i = -1;
    for (int i = 0; i < st->n; i++) {
        const st_entry *e = &st->e[i];
        if (e->begin == e->end)
            continue;
        if (max_i >= 0 && e->begin < max_end) {
            err = dspi_tio_error(errmsg, DSP_EFORMAT,
                                 "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, "
                                 "%llu] overlap in the data section", st->path,
                                 st->e[max_i].name,
                                 (unsigned long long)st->e[max_i].begin,
                                 (unsigned long long)st->e[max_i].end, e->name,
                                 (unsigned long long)e->begin,
                                 (unsigned long long)e->end);
            goto done;
        }
        max_end = e->end;
        max_i = i;
    }
    for (int i = 0; i < st->n; i++)
        st->by_name[i] = i;
    sort_entries = st->e;
    qsort(st->by_name, (size_t)st->n, sizeof(int), cmp_by_name);
    sort_entries = NULL;
done:
    json_decref(root);
    return err;
}

int dsp_safetensors_open(const char *path, dsp_safetensors **out, char **errmsg)
{
    if (!out)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_safetensors_open: out is NULL");
    *out = NULL;
    if (!path)
        return dspi_tio_error(errmsg, DSP_EINVAL, "dsp_safetensors_open: path is NULL");
    dsp_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", path);
    }
    errno = 0;
    int err = dsp_buffer_map_file(path, &st->buf);
    if (err < 0) {
        err = dspi_tio_error(errmsg, err, "%s: cannot open: %s", path,
                             errno ? strerror(errno) : dsp_strerror(err));
        st_free(st);
        return err;
    }
    if ((err = st_parse(st, errmsg)) < 0) {
        st_free(st);
        return err;
    }
    *out = st;
    return 0;
}

void dsp_safetensors_close(dsp_safetensors **st)
{
    if (!st)
        return;
    st_free(*st);
    *st = NULL;
}

int dsp_safetensors_count(const dsp_safetensors *st)
{
    return st ? st->n : 0;
}

const char *dsp_safetensors_name(const dsp_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? st->e[i].name : NULL;
}

static const st_entry *st_find(const dsp_safetensors *st, const char *name)
{
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_entry *e = &st->e[st->by_name[mid]];
        int c = strcmp(name, e->name);
        if (c == 0)
            return e;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

int dsp_safetensors_get(const dsp_safetensors *st, const char *name,
                        dsp_tensor **out)
{
    if (!out)
        return DSP_EINVAL;
    *out = NULL;
    if (!st || !name)
        return DSP_EINVAL;
    const st_entry *e = st_find(st, name);
    if (!e)
        return DSP_ENOENT;
    if (e->begin == e->end)
        return dsp_tensor_new(e->dtype, e->ndim, e->shape, out);
    size_t off = st->data_start + (size_t)e->begin;
    size_t es = dsp_dtype_size(e->dtype);
    const unsigned char *src = (const unsigned char *)dsp_buffer_data(st->buf) + off;
    if ((uintptr_t)src % es == 0)
        return dsp_tensor_from_buffer(e->dtype, e->ndim, e->shape, NULL, st->buf,
                                      off, out);
    /* Files from other writers may leave data misaligned; hand out an aligned
     * copy so kernels can load elements directly. */
    int err = dsp_tensor_new(e->dtype, e->ndim, e->shape, out);
    if (err == 0)
        memcpy(dsp_tensor_data(*out), src, (size_t)(e->end - e->begin));
    return err;
}

const char *dsp_safetensors_metadata(const dsp_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_vals[i];
    return NULL;
}

int dsp_safetensors_metadata_count(const dsp_safetensors *st)
{
    return st ? st->n_meta : 0;
}

const char *dsp_safetensors_metadata_key(const dsp_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

/* ---------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------- */

/* __metadata__ from a dsp_meta: safetensors only has string values, so
 * anything else is stored as its compact JSON text. */
static json_t *st_metadata_json(const dsp_meta *m)
{
    char *text = dsp_meta_to_json(m);
    if (!text)
        return NULL;
    json_t *src = json_loads(text, 0, NULL);
    dsp_free(text);
    json_t *dst = json_object();
    if (!src || !dst || !json_is_object(src)) {
        json_decref(src);
        json_decref(dst);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(src, key, v) {
        json_t *s;
        if (json_is_string(v)) {
            s = json_string(json_string_value(v));
        } else {
            char *enc = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            s = enc ? json_string(enc) : NULL;
            dspi_json_free(enc);
        }
        if (!s || json_object_set_new(dst, key, s) < 0) {
            json_decref(src);
            json_decref(dst);
            return NULL;
        }
    }
    json_decref(src);
    return dst;
}

static json_t *json_pair(uint64_t a, uint64_t b)
{
    json_t *arr = json_array();
    if (arr && (json_array_append_new(arr, json_integer((json_int_t)a)) < 0 ||
                json_array_append_new(arr, json_integer((json_int_t)b)) < 0)) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *st_entry_json(const dsp_tensor *t, uint64_t begin, uint64_t end)
{
    json_t *o = json_object();
    json_t *shape = json_array();
    int bad = !o || !shape;
    for (int d = 0; !bad && d < t->ndim; d++)
        bad = json_array_append_new(shape, json_integer(t->shape[d])) < 0;
    if (!bad)
        /* shape first: json_object_set_new takes it even when it fails */
        bad = json_object_set_new(o, "shape", shape) < 0 ||
              json_object_set_new(o, "dtype", json_string(st_dtype_name(t->dtype))) < 0 ||
              json_object_set_new(o, "data_offsets", json_pair(begin, end)) < 0;
    else
        json_decref(shape);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int dsp_safetensors_write(const char *path, const char *const *names,
                          dsp_tensor *const *tensors, int n,
                          const dsp_meta *metadata, char **errmsg)
{
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return dspi_tio_error(errmsg, DSP_EINVAL,
                              "dsp_safetensors_write: invalid arguments");
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0] || strcmp(names[i], "__metadata__") == 0)
            return dspi_tio_error(errmsg, DSP_EINVAL,
                                  "%s: tensor %d has an empty or reserved name",
                                  path, i);
        if (!tensors[i])
            return dspi_tio_error(errmsg, DSP_EINVAL, "%s: tensor '%s' is NULL",
                                  path, names[i]);
        if (!st_dtype_name(tensors[i]->dtype))
            return dspi_tio_error(errmsg, DSP_EINVAL,
                                  "%s: tensor '%s' has an invalid dtype", path,
                                  names[i]);
        if (tensors[i]->device.type != DSP_DEVICE_CPU)
            return dspi_tio_error(errmsg, DSP_EDEVICE,
                                  "%s: tensor '%s' is on a GPU; copy it to the "
                                  "CPU before writing", path, names[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return dspi_tio_error(errmsg, DSP_EINVAL,
                                      "%s: two tensors are named '%s'; names in a "
                                      "safetensors file must be unique", path,
                                      names[i]);
    }

    /* Lay out by decreasing element size (stable), so with an 8-aligned
     * header every tensor starts aligned to its element size and no padding
     * is needed between tensors (readers require contiguous data). */
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!order)
        return dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", path);
    int k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < n; i++)
            if (dsp_dtype_size(tensors[i]->dtype) == es)
                order[k++] = i;

    int err = 0;
    char *text = NULL;
    json_t *root = json_object();
    if (!root)
        goto oom;
    if (metadata && dsp_meta_size(metadata) > 0) {
        json_t *md = st_metadata_json(metadata);
        if (!md || json_object_set_new(root, "__metadata__", md) < 0)
            goto oom;
    }
    uint64_t off = 0;
    for (int j = 0; j < n; j++) {
        const dsp_tensor *t = tensors[order[j]];
        uint64_t nb = dsp_tensor_nbytes(t);
        json_t *ent = st_entry_json(t, off, off + nb);
        if (!ent)
            goto oom;
        if (json_object_set_new(root, names[order[j]], ent) < 0) {
            err = dspi_tio_error(errmsg, DSP_EINVAL,
                                 "%s: tensor name '%s' is not valid UTF-8", path,
                                 names[order[j]]);
            goto out;
        }
        off += nb;
    }
    text = json_dumps(root, JSON_COMPACT);   /* freed with dspi_json_free */
    if (!text)
        goto oom;

    size_t hlen = strlen(text);
    size_t padded = (hlen + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    dsp_outfile *of;
    char *msg = NULL;
    if ((err = dspi_outfile_open(path, &of, &msg)) < 0) {
        dspi_tio_error(errmsg, err, "%s", msg ? msg : dsp_strerror(err));
        free(msg);
        goto out;
    }
    FILE *fp = dsp_outfile_stream(of);
    errno = 0;                          /* what the writes leave is theirs */
    fwrite(len8, 1, 8, fp);
    fwrite(text, 1, hlen, fp);
    for (size_t i = hlen; i < padded; i++)
        fputc(' ', fp);
    for (int j = 0; j < n && !ferror(fp); j++)
        if (dspi_tio_write_data(fp, tensors[order[j]]) < 0)
            break;
    if (ferror(fp)) {
        err = dspi_tio_error(errmsg, DSP_EIO, "%s: write failed: %s", path,
                             strerror(errno ? errno : EIO));
        dsp_outfile_discard(&of);
        goto out;
    }
    if ((err = dspi_outfile_commit(&of, &msg)) < 0)
        dspi_tio_error(errmsg, err, "%s", msg ? msg : dsp_strerror(err));
    free(msg);
    goto out;
oom:
    err = dspi_tio_error(errmsg, DSP_ENOMEM, "%s: out of memory", path);
out:
    dspi_json_free(text);
    json_decref(root);
    free(order);
    return err;
}
