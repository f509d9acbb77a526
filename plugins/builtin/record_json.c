/* record_json.c - a packet as a JSON record, shared by sink.jsonl and sink.json. */
#include "builtin.h"

#include <math.h>
#include <string.h>

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp(m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp(m | 0x400, e - 25);
    return h & 0x8000 ? -v : v;
}

static double bf16_to_double(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* JSON has no NaN or infinity: those become null. */
static json_t *json_number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *element_json(dsp_dtype dt, const unsigned char *p)
{
    switch (dt) {
    case DSP_DTYPE_F32: { float v; memcpy(&v, p, 4); return json_number(v); }
    case DSP_DTYPE_F64: { double v; memcpy(&v, p, 8); return json_number(v); }
    case DSP_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); return json_number(half_to_double(v)); }
    case DSP_DTYPE_BF16: { uint16_t v; memcpy(&v, p, 2); return json_number(bf16_to_double(v)); }
    case DSP_DTYPE_I8:  return json_integer(*(const int8_t *)p);
    case DSP_DTYPE_U8:  return json_integer(*p);
    case DSP_DTYPE_BOOL: return json_boolean(*p != 0);
    case DSP_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return json_integer(v); }
    case DSP_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); return json_integer(v); }
    case DSP_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return json_integer(v); }
    case DSP_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); return json_integer(v); }
    case DSP_DTYPE_I64: { int64_t v; memcpy(&v, p, 8); return json_integer(v); }
    case DSP_DTYPE_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        /* beyond int64 JSON integers would not round-trip through jansson */
        return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
    }
    default: return json_null();
    }
}

/* Values in C order, following the strides. */
static json_t *tensor_values(const dsp_tensor *t)
{
    json_t *arr = json_array();
    int64_t numel = dsp_tensor_numel(t);
    size_t es = dsp_dtype_size(t->dtype);
    const unsigned char *base = dsp_tensor_data(t);
    int64_t idx[DSP_MAX_DIMS] = { 0 };
    for (int64_t k = 0; arr && k < numel; k++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        if (json_array_append_new(arr, element_json(t->dtype, base + off * (int64_t)es)) < 0) {
            json_decref(arr);
            return NULL;
        }
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return arr;
}

static json_t *tensor_json(const dsp_tensor *t, int64_t max_values)
{
    json_t *o = json_object();
    json_t *shape = json_array();
    int bad = !o || !shape;
    for (int d = 0; !bad && d < t->ndim; d++)
        bad = json_array_append_new(shape, json_integer(t->shape[d])) < 0;
    if (bad) {
        json_decref(shape);
        json_decref(o);
        return NULL;
    }
    /* shape first: json_object_set_new takes it even when it fails */
    bad = json_object_set_new(o, "shape", shape) < 0 ||
          json_object_set_new(o, "dtype", json_string(dsp_dtype_name(t->dtype))) < 0;
    /* data of a GPU tensor is not addressable here: shape and dtype only */
    if (!bad && t->device.type == DSP_DEVICE_CPU && dsp_tensor_numel(t) <= max_values)
        bad = json_object_set_new(o, "data", tensor_values(t)) < 0;
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *builtin_packet_record(const dsp_packet *pkt, int64_t max_values)
{
    json_t *tensors = json_object();
    char *mtext = dsp_meta_to_json(dsp_packet_meta_const(pkt));
    json_t *meta = mtext ? json_loads(mtext, 0, NULL) : NULL;
    dsp_free(mtext);
    int bad = !tensors || !meta;
    for (int i = 0; !bad && i < dsp_packet_tensor_count(pkt); i++) {
        const char *name;
        const dsp_tensor *t = dsp_packet_tensor_at(pkt, i, &name);
        bad = json_object_set_new(tensors, name, tensor_json(t, max_values)) < 0;
    }
    if (bad) {
        json_decref(tensors);
        json_decref(meta);
        return NULL;
    }
    /* "o" steals the references, also when json_pack fails */
    return json_pack("{s:I, s:I, s:o, s:o}", "item", (json_int_t)dsp_packet_item(pkt),
                     "part", (json_int_t)dsp_packet_part(pkt), "meta", meta,
                     "tensors", tensors);
}
