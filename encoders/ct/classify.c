/* classify.c - ct.classify: a 3-D CNN scores each ct.nodules candidate; its nodule probability becomes the finding's confidence and low ones are dropped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dspipe/ops.h>

#include "ct.h"
#include "ctcnn.h"

typedef struct classify_ctx {
    /* parameters */
    char *model;
    double min_prob;
    int screening;
    int64_t patch;
    char *name;
    /* state */
    ctcnn *cnn;                 /* NULL: pass packets through (no weights) */
    char *label;                /* meta "classifier": what scored the findings */
} classify_ctx;

static const dsp_param_def classify_params[] = {
    { .name = "model", .type = DSP_PARAM_STRING, .def = "", .offset = offsetof(classify_ctx, model),
      .doc = "model folder (config.json + model.safetensors, examples/ct_classifier/train.py); "
             "\"\": none, packets pass unchanged; auto: $DSPIPE_CT_CLASSIFIER, else the model "
             "shipped in examples/ct_classifier/model, else none" },
    { .name = "min_prob", .type = DSP_PARAM_FLOAT, .def = "0.5", .min = 0, .max = 1,
      .offset = offsetof(classify_ctx, min_prob),
      .doc = "findings whose nodule probability is below this are dropped" },
    { .name = "screening", .type = DSP_PARAM_BOOL, .def = "false",
      .offset = offsetof(classify_ctx, screening),
      .doc = "use the model's screening operating point (config.json "
             "training.screening_min_prob: 99 % of held-out nodules kept) instead of min_prob" },
    { .name = "patch", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 256,
      .offset = offsetof(classify_ctx, patch),
      .doc = "side of the cube cut around each candidate, voxels; 0: the model's patch_size" },
    { .name = "name", .type = DSP_PARAM_STRING, .def = "volume",
      .offset = offsetof(classify_ctx, name), .doc = "the f32 HU volume ct.nodules analysed" },
    { NULL }
};

static const dsp_port_def classify_in[] = {
    { "in", "any", "a CT volume with ct.nodules' nodules tensor and findings" }, { NULL }
};
static const dsp_port_def classify_out[] = {
    { "out", "any", "the same with each finding's confidence the nodule probability, findings "
      "below min_prob removed, meta classifier and classifier_dropped" },
    { NULL }
};

/* model=auto: the environment's choice, else the model shipped with the
 * sources when the source tree the build came from still holds it. */
static const char *auto_model(void)
{
    const char *env = getenv("DSPIPE_CT_CLASSIFIER");
    if (env && env[0])
        return env;
#ifdef CT_SHIPPED_MODEL
    struct stat st;
    if (stat(CT_SHIPPED_MODEL "/config.json", &st) == 0)
        return CT_SHIPPED_MODEL;
#endif
    return NULL;
}

static int classify_init(dsp_node *node)
{
    classify_ctx *c = dsp_node_priv(node);
    const char *dir = c->model;
    if (strcmp(dir, "auto") == 0)
        dir = auto_model();
    if (!dir || !dir[0]) {
        dsp_node_log(node, DSP_LOG_INFO, "no classifier weights (model=%s): the classical "
                     "detector runs alone, findings pass unchanged",
                     c->model[0] ? c->model : "\"\"");
        return 0;
    }
    char why[CTCNN_WHY];
    int rc = ctcnn_open(dir, &c->cnn, why, sizeof why);
    if (rc < 0)
        return dsp_node_fail(node, rc, "%s", why);
    const ctcnn_config *cfg = ctcnn_get_config(c->cnn);
    if (c->screening && cfg->screening_min_prob < 0)
        return dsp_node_fail(node, DSP_EINVAL, "%s: screening=true, but config.json has no "
                             "training.screening_min_prob (train.py --report adds it); give "
                             "min_prob instead", dir);
    if (c->screening)
        c->min_prob = cfg->screening_min_prob;
    if (c->patch == 0)
        c->patch = cfg->patch;
    else if (c->patch != cfg->patch)
        dsp_node_log(node, DSP_LOG_WARNING, "patch=%lld, but the model was trained on %lld^3 "
                     "patches: it sees more or less context than it learned from",
                     (long long)c->patch, (long long)cfg->patch);
    size_t n = strlen(dir) + 96;
    if (!(c->label = malloc(n)))
        return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    snprintf(c->label, n, "ct_nodule_cnn %s (%lld^3 patches at %g mm, min_prob %.3f%s)", dir,
             (long long)c->patch, cfg->spacing_mm, c->min_prob,
             c->screening ? ": screening operating point" : "");
    dsp_node_log(node, DSP_LOG_VERBOSE, "classifier %s", c->label);
    return 0;
}

/* The nodule probability of each of the n findings f: their patches as one batch. */
static int score(dsp_node *node, classify_ctx *c, const ct_volume *v, const double *f,
                 int64_t n, double *prob)
{
    int64_t P = c->patch, shape[5] = { n, 1, P, P, P };
    dsp_tensor *x = NULL, *logits = NULL, *p = NULL;
    int rc = dsp_tensor_new(DSP_DTYPE_F32, 5, shape, &x);
    if (rc < 0)
        return dsp_node_fail(node, rc, "out of memory for %lld patches of %lld^3",
                             (long long)n, (long long)P);
    float *px = dsp_tensor_data(x);
    for (int64_t q = 0; q < n; q++)
        ctcnn_cut_patch(ctcnn_get_config(c->cnn), v->hu, v->d, v->h, v->w,
                        f + q * CT_F_COUNT + CT_F_SLICE, P, px + q * P * P * P);
    rc = ctcnn_forward(c->cnn, x, &logits);
    if (rc == 0)
        rc = dsp_softmax(logits, NULL, &p);
    if (rc < 0) {
        rc = dsp_node_fail(node, rc, "classifier: %s", dsp_ops_error()[0] ? dsp_ops_error()
                                                                          : dsp_strerror(rc));
    } else {
        const float *pp = dsp_tensor_data(p);
        for (int64_t q = 0; q < n; q++)
            prob[q] = pp[2 * q + 1];
    }
    dsp_tensor_unref(&x);
    dsp_tensor_unref(&logits);
    dsp_tensor_unref(&p);
    return rc;
}

/* The packet with only the findings kept (rows of f whose prob >= min_prob),
 * their confidence the probability, in tensor and meta alike. */
static int emit_kept(dsp_node *node, classify_ctx *c, const dsp_packet *in, const double *f,
                     int64_t n, const double *prob, const char *where)
{
    int64_t kept = 0;
    for (int64_t q = 0; q < n; q++)
        kept += prob[q] >= c->min_prob;
    int64_t shape[2] = { kept, CT_F_COUNT };
    dsp_tensor *t = NULL;
    dsp_packet *out = NULL;
    char *json = NULL;
    int err = dsp_tensor_new(DSP_DTYPE_F64, 2, shape, &t);
    if (err == 0) {
        double *r = dsp_tensor_data(t);
        for (int64_t q = 0; q < n; q++) {
            if (prob[q] < c->min_prob)
                continue;
            memcpy(r, f + q * CT_F_COUNT, CT_F_COUNT * sizeof *r);
            r[CT_F_CONFIDENCE] = prob[q];
            r += CT_F_COUNT;
        }
        json = ct_findings_json(dsp_tensor_data(t), kept);
    }
    if (err < 0 || !json || (err = dsp_packet_derive(in, &out)) < 0) {
        dsp_tensor_unref(&t);
        free(json);
        return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", where);
    }
    dsp_meta *m = dsp_packet_meta(out);
    err = dsp_packet_set_tensor(out, "nodules", t);
    err = err ? err : dsp_meta_set_json(m, "findings", json);
    err = err ? err : dsp_meta_set_str(m, "classifier", c->label);
    err = err ? err : dsp_meta_set_int(m, "classifier_dropped", n - kept);
    free(json);
    if (err < 0) {
        dsp_packet_unref(&out);
        return dsp_node_fail(node, err, "%s: out of memory", where);
    }
    if (kept < n) {
        char list[256] = "";
        size_t len = 0;
        for (int64_t q = 0; q < n && len + 16 < sizeof list; q++)
            if (prob[q] < c->min_prob)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s#%lld %.2f",
                                        len ? ", " : "", (long long)q + 1, prob[q]);
        dsp_node_log(node, DSP_LOG_INFO, "%s: %lld of %lld finding(s) dropped, nodule "
                     "probability below min_prob %.2f (%s)", where, (long long)(n - kept),
                     (long long)n, c->min_prob, list);
    }
    return dsp_node_emit(node, 0, out);
}

static int classify_process(dsp_node *node, dsp_packet **in)
{
    classify_ctx *c = dsp_node_priv(node);
    if (!c->cnn)
        return dsp_node_emit(node, 0, dsp_packet_ref(in[0]));
    ct_volume v;
    dsp_tensor *vt;
    char wb[64], desc[96];
    const char *where = ct_where(in[0], wb, sizeof wb);
    int err = ct_volume_find(node, in[0], c->name, &v, &vt);
    if (err < 0)
        return err;
    const ctcnn_config *cfg = ctcnn_get_config(c->cnn);
    for (int a = 0; a < 3; a++)
        if (fabs(v.sp[a] - cfg->spacing_mm) > 0.02 * cfg->spacing_mm)
            return dsp_node_fail(node, DSP_EINVAL, "%s: voxels are %g x %g x %g mm, the "
                                 "classifier was trained on %g mm: resample first "
                                 "(dicom.resample spacing_mm=%g before ct.lung_mask)", where,
                                 v.sp[0], v.sp[1], v.sp[2], cfg->spacing_mm, cfg->spacing_mm);
    dsp_tensor *ft = dsp_packet_tensor(in[0], "nodules");
    if (!ft)
        return dsp_node_fail(node, DSP_ENOENT, "%s: no \"nodules\" tensor: run ct.nodules "
                             "before ct.classify", where);
    dsp_tensor_describe(ft, desc, sizeof desc);
    if (ft->dtype != DSP_DTYPE_F64 || ft->ndim != 2 || ft->shape[1] != CT_F_COUNT ||
        !dsp_tensor_is_contiguous(ft))
        return dsp_node_fail(node, DSP_EINVAL, "%s: \"nodules\" is %s, not ct.nodules' f64 "
                             "[n, %d]", where, desc, CT_F_COUNT);
    const double *f = dsp_tensor_data(ft);
    int64_t n = ft->shape[0];
    double *prob = malloc((size_t)(n > 0 ? n : 1) * sizeof *prob);
    if (!prob)
        return dsp_node_fail(node, DSP_ENOMEM, "%s: out of memory", where);
    double t0 = ct_now();
    err = n > 0 ? score(node, c, &v, f, n, prob) : 0;
    if (err == 0) {
        dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %lld candidate(s) scored in %.3f s", where,
                     (long long)n, ct_now() - t0);
        err = emit_kept(node, c, in[0], f, n, prob, where);
    }
    free(prob);
    return err;
}

static void classify_fini(dsp_node *node)
{
    classify_ctx *c = dsp_node_priv(node);
    ctcnn_close(&c->cnn);
    free(c->label);
}

const dsp_op_def ct_classify_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "ct.classify",
    .doc = "learned lung nodule classifier: a 3-D CNN scores the patch around each ct.nodules "
           "finding, sets its confidence and drops the unlikely ones; without weights a "
           "pass-through",
    .inputs = classify_in,
    .outputs = classify_out,
    .params = classify_params,
    .priv_size = sizeof(classify_ctx),
    .init = classify_init,
    .process = classify_process,
    .fini = classify_fini,
};
