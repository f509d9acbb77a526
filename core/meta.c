/* meta.c - dsp_meta: JSON-model metadata dictionaries backed by jansson. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

/* A dsp_meta is a jansson object in disguise: nested dictionaries are then
 * just the child objects, so dsp_meta_dict can hand out a pointer that
 * stays valid as long as the key is not replaced.
 *
 * JSON has no NaN or infinity and jansson refuses them, so non-finite
 * floats are stored as JSON null; dsp_meta_get_float(s) reads null back as
 * NaN (an infinity therefore comes back as NaN). */
#define J(m) ((json_t *)(m))
#define CJ(m) ((const json_t *)(m))

/* jansson rejects invalid UTF-8 with the same -1/NULL it uses for OOM;
 * checking first lets us tell the caller which one happened. */
static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        unsigned c = *p++;
        int n;
        unsigned min, cp;

        if (c < 0x80)
            continue;
        if ((c & 0xe0) == 0xc0) {
            n = 1; min = 0x80; cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2; min = 0x800; cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3; min = 0x10000; cp = c & 0x07;
        } else {
            return 0;
        }
        for (int i = 0; i < n; i++) {
            if ((*p & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p++ & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

static json_t *json_float(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

dsp_meta *dsp_meta_new(void)
{
    return (dsp_meta *)json_object();
}

void dsp_meta_free(dsp_meta **m)
{
    if (!m || !*m)
        return;
    json_decref(J(*m));
    *m = NULL;
}

dsp_meta *dsp_meta_copy(const dsp_meta *m)
{
    if (!m)
        return NULL;
    return (dsp_meta *)json_deep_copy(CJ(m));
}

/* Store v under key, taking v's reference in every case. */
static int meta_set(dsp_meta *m, const char *key, json_t *v)
{
    if (!m || !key || !utf8_valid(key)) {
        json_decref(v);
        return DSP_EINVAL;
    }
    if (!v)
        return DSP_ENOMEM;
    return json_object_set_new(J(m), key, v) == 0 ? 0 : DSP_ENOMEM;
}

int dsp_meta_set_int(dsp_meta *m, const char *key, int64_t v)
{
    return meta_set(m, key, json_integer((json_int_t)v));
}

int dsp_meta_set_float(dsp_meta *m, const char *key, double v)
{
    return meta_set(m, key, json_float(v));
}

int dsp_meta_set_bool(dsp_meta *m, const char *key, int v)
{
    return meta_set(m, key, json_boolean(v));
}

int dsp_meta_set_str(dsp_meta *m, const char *key, const char *v)
{
    if (!v || !utf8_valid(v))
        return DSP_EINVAL;
    return meta_set(m, key, json_string(v));
}

/* A JSON array of n elements, elem(v, i) each (NULL on OOM). */
static json_t *array_of(const void *v, size_t n, json_t *(*elem)(const void *v, size_t i))
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, elem(v, i)) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

static json_t *float_at(const void *v, size_t i)
{
    return json_float(((const double *)v)[i]);
}

static json_t *int_at(const void *v, size_t i)
{
    return json_integer((json_int_t)((const int64_t *)v)[i]);
}

static json_t *str_at(const void *v, size_t i)
{
    return json_string(((const char *const *)v)[i]);
}

int dsp_meta_set_floats(dsp_meta *m, const char *key, const double *v,
                        size_t n)
{
    if (n && !v)
        return DSP_EINVAL;
    return meta_set(m, key, array_of(v, n, float_at));
}

int dsp_meta_set_strs(dsp_meta *m, const char *key, const char *const *v, size_t n)
{
    if (n && !v)
        return DSP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!v[i] || !utf8_valid(v[i]))
            return DSP_EINVAL;
    return meta_set(m, key, array_of(v, n, str_at));
}

int dsp_meta_set_ints(dsp_meta *m, const char *key, const int64_t *v,
                      size_t n)
{
    if (n && !v)
        return DSP_EINVAL;
    return meta_set(m, key, array_of(v, n, int_at));
}

int dsp_meta_set_json(dsp_meta *m, const char *key, const char *json)
{
    json_error_t jerr;
    json_t *v;

    if (!json)
        return DSP_EINVAL;
    v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!v)
        return DSP_EFORMAT;
    return meta_set(m, key, v);
}

dsp_meta *dsp_meta_dict(dsp_meta *m, const char *key)
{
    json_t *v;

    if (!m || !key)
        return NULL;
    v = json_object_get(J(m), key);
    if (json_is_object(v))
        return (dsp_meta *)v;
    v = json_object();
    /* On success m holds v, which keeps the returned pointer valid. */
    if (meta_set(m, key, v) < 0)
        return NULL;
    return (dsp_meta *)v;
}

int dsp_meta_update(dsp_meta *dst, const dsp_meta *src)
{
    const char *key;
    json_t *v;
    int err;

    if (!dst || !src)
        return DSP_EINVAL;
    if (dst == src)
        return 0;
    /* src may be a dictionary inside dst that the writes below replace:
     * iterate over a copy taken first */
    json_t *copy = json_deep_copy(CJ(src));
    if (!copy)
        return DSP_ENOMEM;
    err = 0;
    json_object_foreach(copy, key, v) {
        if ((err = meta_set(dst, key, json_incref(v))) < 0)
            break;
    }
    json_decref(copy);
    return err < 0 ? err : 0;
}

int dsp_meta_remove(dsp_meta *m, const char *key)
{
    if (!m || !key)
        return DSP_EINVAL;
    return json_object_del(J(m), key) == 0 ? 0 : DSP_ENOENT;
}

int dsp_meta_has(const dsp_meta *m, const char *key)
{
    return m && key && json_object_get(CJ(m), key) != NULL;
}

/* The value under key; DSP_ENOENT/DSP_EINVAL as the getters report. */
static int meta_get(const dsp_meta *m, const char *key, const void *out,
                    json_t **v)
{
    if (!m || !key || !out)
        return DSP_EINVAL;
    *v = json_object_get(CJ(m), key);
    return *v ? 0 : DSP_ENOENT;
}

int dsp_meta_get_int(const dsp_meta *m, const char *key, int64_t *out)
{
    json_t *v;
    int err = meta_get(m, key, out, &v);

    if (err < 0)
        return err;
    if (!json_is_integer(v))
        return DSP_EINVAL;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int json_to_double(const json_t *v, double *out)
{
    if (json_is_null(v))
        *out = NAN;
    else if (json_is_number(v))
        *out = json_number_value(v);
    else
        return DSP_EINVAL;
    return 0;
}

int dsp_meta_get_float(const dsp_meta *m, const char *key, double *out)
{
    json_t *v;
    int err = meta_get(m, key, out, &v);

    return err < 0 ? err : json_to_double(v, out);
}

int dsp_meta_get_bool(const dsp_meta *m, const char *key, int *out)
{
    json_t *v;
    int err = meta_get(m, key, out, &v);

    if (err < 0)
        return err;
    if (!json_is_boolean(v))
        return DSP_EINVAL;
    *out = json_is_true(v);
    return 0;
}

int dsp_meta_get_str(const dsp_meta *m, const char *key, const char **out)
{
    json_t *v;
    int err = meta_get(m, key, out, &v);

    if (err < 0)
        return err;
    if (!json_is_string(v))
        return DSP_EINVAL;
    *out = json_string_value(v);
    return 0;
}

int dsp_meta_get_floats(const dsp_meta *m, const char *key, double *out,
                        size_t max, size_t *n)
{
    json_t *v, *e;
    size_t i;
    double x;
    int err = meta_get(m, key, n, &v);

    if (err < 0)
        return err;
    if (!json_is_array(v) || (max && !out))
        return DSP_EINVAL;
    /* Check every element first so a failure leaves out untouched. */
    json_array_foreach(v, i, e) {
        if (json_to_double(e, &x) < 0)
            return DSP_EINVAL;
    }
    json_array_foreach(v, i, e) {
        if (i < max)
            json_to_double(e, &out[i]);
    }
    *n = json_array_size(v);
    return 0;
}

int dsp_meta_get_strs(const dsp_meta *m, const char *key, const char **out,
                      size_t max, size_t *n)
{
    json_t *v, *e;
    size_t i;
    int err = meta_get(m, key, n, &v);

    if (err < 0)
        return err;
    if (!json_is_array(v) || (max && !out))
        return DSP_EINVAL;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return DSP_EINVAL;
    }
    json_array_foreach(v, i, e) {
        if (i < max)
            out[i] = json_string_value(e);
    }
    *n = json_array_size(v);
    return 0;
}

const dsp_meta *dsp_meta_get_dict(const dsp_meta *m, const char *key)
{
    json_t *v;

    if (!m || !key)
        return NULL;
    v = json_object_get(CJ(m), key);
    return json_is_object(v) ? (const dsp_meta *)v : NULL;
}

size_t dsp_meta_size(const dsp_meta *m)
{
    return m ? json_object_size(CJ(m)) : 0;
}

char *dsp_meta_to_json(const dsp_meta *m)
{
    char *text, *copy;

    if (!m)
        return NULL;
    /* jansson allocates with its own (global) allocator; our callers free
     * with dsp_free, so hand them a copy. */
    text = json_dumps(CJ(m), JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return NULL;
    copy = dsp_strdup(text);
    dspi_json_free(text);
    return copy;
}
