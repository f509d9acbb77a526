/* video_model.c - open a video classifier folder (VideoMAE or torchvision ResNet): config, labels, normalisation, errors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "video_model_int.h"

static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f }, imagenet_std[3] = { 0.229f, 0.224f, 0.225f };
static const float kinetics_mean[3] = { 0.43216f, 0.394666f, 0.37645f },
                   kinetics_std[3] = { 0.22803f, 0.22145f, 0.216989f };

int vm_load_fail(vm_loader *ld, int code, const char *fmt, ...)
{
    if (!ld->errmsg)
        return code;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t n = strlen(ld->dir) + strlen(buf) + 3;
    free(*ld->errmsg);
    if ((*ld->errmsg = malloc(n)))
        snprintf(*ld->errmsg, n, "%s: %s", ld->dir, buf);
    return code;
}

int vm_has_tensor(const vm_loader *ld, const char *name)
{
    dsp_tensor *t = NULL;
    if (dsp_model_tensor(ld->model, name, &t) < 0)
        return 0;
    dsp_tensor_unref(&t);
    return 1;
}

static void describe_shape(int ndim, const int64_t *shape, char *dst, size_t n)
{
    size_t at = (size_t)snprintf(dst, n, "[");
    for (int d = 0; d < ndim && at < n; d++) {
        if (shape[d] < 0)
            at += (size_t)snprintf(dst + at, n - at, "%s*", d ? ", " : "");
        else
            at += (size_t)snprintf(dst + at, n - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    if (at < n)
        snprintf(dst + at, n - at, "]");
}

int vm_get_tensor(vm_loader *ld, const char *name, int ndim, const int64_t *shape, dsp_tensor **out)
{
    int rc = dsp_model_tensor(ld->model, name, out);
    if (rc < 0)
        return vm_load_fail(ld, rc, "tensor '%s' %s", name,
                            rc == DSP_ENOENT ? "is missing: not a checkpoint of this architecture, or a truncated one?"
                                             : dsp_strerror(rc));
    const dsp_tensor *t = *out;
    int ok = t->ndim == ndim && t->dtype == DSP_DTYPE_F32;
    for (int d = 0; ok && d < ndim; d++)
        ok = shape[d] < 0 || t->shape[d] == shape[d];
    if (!ok) {
        char got[96], want[96];
        dsp_tensor_describe(t, got, sizeof got);
        describe_shape(ndim, shape, want, sizeof want);
        dsp_tensor_unref(out);
        return vm_load_fail(ld, DSP_EFORMAT, "tensor '%s' is %s, expected f32%s (from config.json and the tensors "
                            "before it)", name, got, want);
    }
    return 0;
}

int vm_read_int(vm_loader *ld, const char *key, int64_t def, int64_t *out)
{
    int rc = dsp_model_config_int(ld->model, key, out);
    if (rc == DSP_ENOENT && def >= 0) {
        *out = def;
        return 0;
    }
    if (rc < 0)
        return vm_load_fail(ld, DSP_EFORMAT, "config.json: '%s' %s", key,
                            rc == DSP_ENOENT ? "is missing" : "is not an integer");
    if (*out <= 0 || *out > (1 << 20))
        return vm_load_fail(ld, DSP_EFORMAT, "config.json: '%s' = %lld is out of range", key, (long long)*out);
    return 0;
}

int vm_read_bool(const vm_loader *ld, const char *key, int def)
{
    const char *text = dsp_model_config_json(ld->model);
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    json_t *v = root ? json_object_get(root, key) : NULL;
    int r = json_is_boolean(v) ? json_is_true(v) : def;
    json_decref(root);
    return r;
}

void vm_unref_all(dsp_tensor **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dsp_tensor_unref(&t[i]);
}

int vm_set_err(video_model *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return code;
}

int vm_ops_err(video_model *m, int code, const char *what)
{
    return vm_set_err(m, code, "%s: %s", what, dsp_ops_error());
}

/* Three floats from a JSON array (config key, or preprocessor_config.json). */
static int floats3(json_t *arr, float out[3])
{
    if (!json_is_array(arr) || json_array_size(arr) != 3)
        return DSP_EFORMAT;
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_number(v))
            return DSP_EFORMAT;
        out[i] = (float)json_number_value(v);
    }
    return 0;
}

/* image_mean / image_std from file (NULL: config.json), else the defaults */
static int read_normalisation(vm_loader *ld, const char *file, const float *dmean, const float *dstd,
                              video_model_info *in)
{
    memcpy(in->mean, dmean, sizeof in->mean);
    memcpy(in->std, dstd, sizeof in->std);
    json_t *root = NULL;
    json_error_t jerr;
    char path[4096];
    if (file) {
        snprintf(path, sizeof path, "%s/%s", ld->dir, file);
        FILE *fp = fopen(path, "r");
        if (!fp)
            return 0;   /* optional */
        root = json_loadf(fp, 0, &jerr);
        fclose(fp);
        if (!root)
            return vm_load_fail(ld, DSP_EFORMAT, "%s:%d:%d: %s", file, jerr.line, jerr.column, jerr.text);
    } else {
        root = json_loads(dsp_model_config_json(ld->model), 0, NULL);
    }
    int rc = 0;
    const char *name = file ? file : "config.json";
    json_t *mean = json_object_get(root, "image_mean"), *std = json_object_get(root, "image_std");
    if (mean && floats3(mean, in->mean) < 0)
        rc = vm_load_fail(ld, DSP_EFORMAT, "%s: image_mean must be 3 numbers", name);
    else if (std && floats3(std, in->std) < 0)
        rc = vm_load_fail(ld, DSP_EFORMAT, "%s: image_std must be 3 numbers", name);
    for (int c = 0; rc == 0 && c < 3; c++)
        if (!(in->std[c] > 0))
            rc = vm_load_fail(ld, DSP_EFORMAT, "%s: image_std[%d] = %g is not positive", name, c, in->std[c]);
    json_decref(root);
    return rc;
}

static int read_labels(vm_loader *ld, video_model *m)
{
    int64_t n = m->info.num_classes;
    if (!(m->labels = calloc((size_t)n, sizeof *m->labels)))
        return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        char key[48], fallback[32];
        const char *label = NULL;
        snprintf(key, sizeof key, "id2label.%lld", (long long)i);
        if (dsp_model_config_str(ld->model, key, &label) < 0) {
            snprintf(fallback, sizeof fallback, "LABEL_%lld", (long long)i);
            label = fallback;
        }
        if (!(m->labels[i] = strdup(label)))
            return vm_load_fail(ld, DSP_ENOMEM, "out of memory");
    }
    return 0;
}

int video_model_open(const char *dir, video_model **out, char **errmsg)
{
    *out = NULL;
    dsp_model *model = NULL;
    int rc = dsp_model_open(dir, &model, errmsg);
    if (rc < 0)
        return rc;
    vm_loader ld = { .model = model, .dir = dir, .errmsg = errmsg };
    video_model *m = calloc(1, sizeof *m);
    const char *type = NULL;
    if (!m) {
        rc = vm_load_fail(&ld, DSP_ENOMEM, "out of memory");
        goto fail;
    }
    if (dsp_model_config_str(model, "model_type", &type) < 0) {
        rc = vm_load_fail(&ld, DSP_EFORMAT, "config.json: no \"model_type\" (videomae or torchvision_video_resnet)");
        goto fail;
    }
    if (strcmp(type, "videomae") == 0) {
        m->info.arch = VIDEO_ARCH_VIDEOMAE;
        m->info.arch_name = "videomae";
        if ((rc = videomae_load(&ld, m)) < 0 ||
            (rc = read_normalisation(&ld, "preprocessor_config.json", imagenet_mean, imagenet_std, &m->info)) < 0)
            goto fail;
    } else if (strcmp(type, "torchvision_video_resnet") == 0) {
        if ((rc = video_resnet_load(&ld, m)) < 0 ||
            (rc = read_normalisation(&ld, NULL, kinetics_mean, kinetics_std, &m->info)) < 0)
            goto fail;
    } else {
        rc = vm_load_fail(&ld, DSP_EUNSUPPORTED, "config.json: model_type '%s' is not a video classifier this encoder "
                          "runs (videomae, torchvision_video_resnet)", type);
        goto fail;
    }
    if ((rc = read_labels(&ld, m)) < 0)
        goto fail;
    dsp_model_close(&model);   /* the tensors keep their mappings */
    *out = m;
    return 0;
fail:
    video_model_close(&m);
    dsp_model_close(&model);
    return rc;
}

void video_model_close(video_model **mp)
{
    video_model *m = mp ? *mp : NULL;
    if (!m)
        return;
    if (m->impl)
        m->impl->free(m->priv);
    for (int64_t i = 0; m->labels && i < m->info.num_classes; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m);
    *mp = NULL;
}

const video_model_info *video_model_get_info(const video_model *m)
{
    return &m->info;
}

const char *video_model_label(const video_model *m, int64_t i)
{
    return i >= 0 && i < m->info.num_classes ? m->labels[i] : "";
}

const char *video_model_errmsg(const video_model *m)
{
    return m ? m->err : "";
}

int video_model_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits)
{
    if (!m || !x || !logits)
        return DSP_EINVAL;
    if (x->dtype != DSP_DTYPE_F32 || x->device.type != DSP_DEVICE_CPU)
        return vm_set_err(m, DSP_EINVAL, "clip must be an f32 tensor on the CPU, not %s", dsp_dtype_name(x->dtype));
    m->err[0] = '\0';
    return m->impl->forward(m, x, logits);
}
