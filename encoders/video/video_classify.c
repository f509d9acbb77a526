/* video_classify.c - video.classify: clips (video.decode's u8 frames, or normalised f32) to class logits, label and top-k. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <dspipe/dspipe.h>

#include "video_model.h"
#include "video_encoder.h"

/* aggregate=mean: the sums of one video's clips so far */
typedef struct clip_sum {
    int64_t item;                       /* -1: none */
    int64_t clips;
    int failed;                         /* one of its clips failed: the video gets no result */
    double start;                       /* first clip's clip_start; NAN: it had none */
    float *logits, *prob;               /* [classes] */
} clip_sum;

typedef struct classify_ctx {
    /* parameters */
    char *model;
    char *input;
    char *output;
    int64_t top_k;
    int keep_input;
    int aggregate;                      /* AGG_* */
    /* state */
    video_model *vm;
    clip_sum sum;
} classify_ctx;

enum { AGG_NONE, AGG_MEAN };
static const char *const aggregate_names[] = { "none", "mean", NULL };

static const dsp_param_def classify_params[] = {
    { .name = "model", .type = DSP_PARAM_PATH, .def = NULL, .flags = DSP_PARAM_MUST_EXIST,
      .offset = offsetof(classify_ctx, model),
      .doc = "model folder: VideoMAEForVideoClassification (Hugging Face) or a torchvision video ResNet "
             "(tests/reference/export_video_resnet.py)" },
    { .name = "input", .type = DSP_PARAM_STRING, .def = "frames", .offset = offsetof(classify_ctx, input),
      .doc = "the clip tensor: u8 [T, H, W, 3] (video.decode) or f32 [3, T, H, W] already normalised" },
    { .name = "output", .type = DSP_PARAM_STRING, .def = "logits", .offset = offsetof(classify_ctx, output),
      .doc = "name of the f32 [classes] logits tensor added to the packet" },
    { .name = "top_k", .type = DSP_PARAM_INT, .def = "5", .min = 1, .max = 1000,
      .offset = offsetof(classify_ctx, top_k), .doc = "entries in meta topk (at most the number of classes)" },
    { .name = "keep_input", .type = DSP_PARAM_BOOL, .def = "false", .offset = offsetof(classify_ctx, keep_input),
      .doc = "keep the clip tensor on the output packet (with aggregate=mean: the video's last clip)" },
    { .name = "aggregate", .type = DSP_PARAM_ENUM, .def = "none", .choices = aggregate_names,
      .offset = offsetof(classify_ctx, aggregate),
      .doc = "none: a result per clip; mean: one per video (the packets of one item, e.g. video.decode "
             "num_clips=N), from the mean of its clips' softmax scores" },
    { NULL }
};

static const dsp_port_def classify_in[] = {
    { .name = "in", .type = "frames", .doc = "one clip per packet (video.decode clip_len=T)" },
    { NULL }
};
static const dsp_port_def classify_out[] = {
    { .name = "out", .type = "tensor",
      .doc = "the packet with f32 logits and meta label, score, topk (aggregate=mean: one per video, meta clips)" },
    { NULL }
};

static int classify_init(dsp_node *node)
{
    classify_ctx *c = dsp_node_priv(node);
    char *why = NULL;
    int rc = video_model_open(c->model, &c->vm, &why);
    if (rc < 0) {
        rc = dsp_node_fail(node, rc, "%s", why ? why : dsp_strerror(rc));
        free(why);
        return rc;
    }
    const video_model_info *in = video_model_get_info(c->vm);
    dsp_node_log(node, DSP_LOG_VERBOSE, "%s: %s, %lld classes", c->model, in->arch_name, (long long)in->num_classes);
    c->sum.item = -1;
    if (c->aggregate == AGG_MEAN) {
        c->sum.logits = calloc((size_t)in->num_classes, sizeof *c->sum.logits);
        c->sum.prob = calloc((size_t)in->num_classes, sizeof *c->sum.prob);
        if (!c->sum.logits || !c->sum.prob)
            return dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    }
    return 0;
}

/* One item of a batch: its clip's frames x height x width, or why it cannot run. */
typedef struct clip_slot {
    const dsp_tensor *clip;
    int64_t t, h, w;
    int is_u8;
    char why[256];
    int group;                          /* index of the first item of its batch */
    float *logits;                      /* into the batch's logits */
} clip_slot;

static void check_clip(const classify_ctx *c, const dsp_packet *p, clip_slot *s)
{
    const video_model_info *in = video_model_get_info(c->vm);
    char desc[96];
    s->clip = dsp_packet_tensor(p, c->input);
    s->why[0] = '\0';
    if (!s->clip) {
        snprintf(s->why, sizeof s->why, "no tensor '%s': connect video.decode (clip_len=%lld) or set input=",
                 c->input, (long long)(in->frames ? in->frames : 16));
        return;
    }
    const dsp_tensor *x = s->clip;
    dsp_tensor_describe(x, desc, sizeof desc);
    s->is_u8 = x->dtype == DSP_DTYPE_U8 && x->ndim == 4 && x->shape[3] == 3;
    int is_f32 = x->dtype == DSP_DTYPE_F32 && x->ndim == 4 && x->shape[0] == 3;
    if ((!s->is_u8 && !is_f32) || x->device.type != DSP_DEVICE_CPU) {
        snprintf(s->why, sizeof s->why, "clip '%s' is %s: expected u8 [frames, height, width, 3] (video.decode, rgb) "
                 "or f32 [3, frames, height, width] on the CPU", c->input, desc);
        return;
    }
    s->t = x->shape[s->is_u8 ? 0 : 1];
    s->h = x->shape[s->is_u8 ? 1 : 2];
    s->w = x->shape[s->is_u8 ? 2 : 3];
    if (s->t < 1 || s->h < 1 || s->w < 1)
        snprintf(s->why, sizeof s->why, "clip '%s' is %s: empty", c->input, desc);
    else if (in->frames && (s->t != in->frames || s->h != in->height || s->w != in->width))
        snprintf(s->why, sizeof s->why, "clip '%s' is %s: %s takes %lld frames of %lld x %lld (video.decode "
                 "clip_len=%lld width=%lld height=%lld)", c->input, desc, in->arch_name, (long long)in->frames,
                 (long long)in->width, (long long)in->height, (long long)in->frames, (long long)in->width,
                 (long long)in->height);
}

/* Clip k of x [n, 3, T, H, W]: u8 frames / 255, normalised with the model's
 * mean/std, as torchvision's and transformers' preprocessing does in f32. */
static void fill_clip(const video_model_info *in, const clip_slot *s, float *dst)
{
    const dsp_tensor *x = s->clip;
    const int64_t *st = x->stride, plane = s->t * s->h * s->w;
    if (s->is_u8) {
        const uint8_t *src = dsp_tensor_data(x);
        for (int64_t t = 0; t < s->t; t++)
            for (int64_t y = 0; y < s->h; y++)
                for (int64_t xx = 0; xx < s->w; xx++) {
                    const uint8_t *px = src + t * st[0] + y * st[1] + xx * st[2];
                    int64_t at = (t * s->h + y) * s->w + xx;
                    for (int ch = 0; ch < 3; ch++)
                        dst[ch * plane + at] = ((float)px[ch * st[3]] / 255.0f - in->mean[ch]) / in->std[ch];
                }
        return;
    }
    const float *src = dsp_tensor_data(x);
    for (int ch = 0; ch < 3; ch++)
        for (int64_t t = 0; t < s->t; t++)
            for (int64_t y = 0; y < s->h; y++)
                for (int64_t xx = 0; xx < s->w; xx++)
                    dst[ch * plane + (t * s->h + y) * s->w + xx] = src[ch * st[0] + t * st[1] + y * st[2] + xx * st[3]];
}

/* Run the items of group g (all of one clip size) as one batch; their
 * softmax scores land in probs (row per item of the group, in order). */
static int run_group(dsp_node *node, classify_ctx *c, clip_slot *slots, int n, int g, dsp_tensor **logits,
                     dsp_tensor **probs)
{
    const video_model_info *in = video_model_get_info(c->vm);
    int64_t count = 0;
    for (int k = g; k < n; k++)
        count += slots[k].group == g;
    int64_t shape[5] = { count, 3, slots[g].t, slots[g].h, slots[g].w };
    dsp_tensor *x = NULL;
    int rc = dsp_tensor_new(DSP_DTYPE_F32, 5, shape, &x);
    if (rc < 0)
        return dsp_node_fail(node, rc, "out of memory for a batch of %lld clips", (long long)count);
    float *dst = dsp_tensor_data(x);
    for (int k = g; k < n; k++)
        if (slots[k].group == g) {
            fill_clip(in, &slots[k], dst);
            dst += 3 * shape[2] * shape[3] * shape[4];
        }
    rc = video_model_forward(c->vm, x, logits);
    dsp_tensor_unref(&x);
    if (rc < 0)
        return dsp_node_fail(node, rc, "%s: %s", c->model, video_model_errmsg(c->vm));
    if ((rc = dsp_softmax(*logits, NULL, probs)) < 0)
        return dsp_node_fail(node, rc, "softmax: %s", dsp_ops_error());
    return 0;
}

/* meta label, score and topk ([{label, score}], best first) from one row of scores */
static int set_prediction(const classify_ctx *c, dsp_meta *meta, const float *prob)
{
    int64_t n = video_model_get_info(c->vm)->num_classes, k = c->top_k < n ? c->top_k : n;
    int64_t *idx = malloc((size_t)k * sizeof *idx);
    json_t *top = json_array();
    int rc = idx && top ? 0 : DSP_ENOMEM;
    /* selection of the k best, ties to the lower class index (as torch.topk on distinct values) */
    for (int64_t j = 0; rc == 0 && j < k; j++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int64_t q = 0; q < j && !taken; q++)
                taken = idx[q] == i;
            if (!taken && (best < 0 || prob[i] > prob[best]))
                best = i;
        }
        idx[j] = best;
        if (json_array_append_new(top, json_pack("{s:s, s:f}", "label", video_model_label(c->vm, best), "score",
                                                 (double)prob[best])) < 0)
            rc = DSP_ENOMEM;
    }
    char *text = rc == 0 ? json_dumps(top, JSON_COMPACT) : NULL;
    if (rc == 0 && !text)
        rc = DSP_ENOMEM;
    if (rc == 0 && ((rc = dsp_meta_set_str(meta, "label", video_model_label(c->vm, idx[0]))) == 0) &&
        (rc = dsp_meta_set_float(meta, "score", (double)prob[idx[0]])) == 0)
        rc = dsp_meta_set_json(meta, "topk", text);
    free(text);
    json_decref(top);
    free(idx);
    return rc;
}

/* The result packet of src: its logits tensor and prediction meta; with
 * mean (aggregate=mean), the mean over the clips of one video, src its last. */
static int emit_result(dsp_node *node, classify_ctx *c, dsp_packet *src, const float *logits, const float *prob,
                       const clip_sum *mean)
{
    int64_t n = video_model_get_info(c->vm)->num_classes;
    dsp_packet *p = dsp_packet_ref(src);
    dsp_tensor *t = NULL;
    int err = dsp_packet_make_writable(&p);
    if (!err && !c->keep_input)
        dsp_packet_remove_tensor(p, c->input);
    if (!err && (err = dsp_tensor_new(DSP_DTYPE_F32, 1, &n, &t)) == 0) {
        memcpy(dsp_tensor_data(t), logits, (size_t)n * sizeof *logits);
        err = dsp_packet_set_tensor(p, c->output, t);   /* transfer full */
    }
    if (!err)
        err = set_prediction(c, dsp_packet_meta(p), prob);
    if (!err && mean) {
        dsp_meta *m = dsp_packet_meta(p);
        /* the video's span; the last clip's own frame lists would mislead */
        if (!isnan(mean->start))
            err = dsp_meta_set_float(m, "clip_start", mean->start);
        if (!err)
            err = dsp_meta_set_int(m, "clips", mean->clips);
        dsp_meta_remove(m, "clip_index");
        dsp_meta_remove(m, "pts");
        dsp_meta_remove(m, "frame_index");
        dsp_packet_set_pos(p, dsp_packet_item(src), 0, 1);
    }
    if (err < 0) {
        dsp_packet_unref(&p);
        dsp_node_fail_packet(node, src, err, "cannot build the output packet");
        return 0;               /* that clip's item fails; the others go on */
    }
    return dsp_node_emit(node, 0, p);
}

/* aggregate=mean: add clip src's scores to its video's sums (a new item
 * starts new sums: the clips of an item arrive together, video.decode sends
 * them in order); at the video's last clip, emit the means. A video whose
 * last clip never comes (it failed upstream) is dropped when the next one
 * starts; one with a failed clip (prob NULL) gets no result. */
static int average_clip(dsp_node *node, classify_ctx *c, dsp_packet *src, const float *logits, const float *prob)
{
    int64_t n = video_model_get_info(c->vm)->num_classes;
    clip_sum *sum = &c->sum;
    if (sum->item != dsp_packet_item(src)) {
        sum->item = dsp_packet_item(src);
        sum->clips = 0;
        sum->failed = 0;
        if (dsp_meta_get_float(dsp_packet_meta_const(src), "clip_start", &sum->start) < 0)
            sum->start = NAN;
        memset(sum->logits, 0, (size_t)n * sizeof *sum->logits);
        memset(sum->prob, 0, (size_t)n * sizeof *sum->prob);
    }
    if (!prob)
        sum->failed = 1;
    else if (!sum->failed) {
        for (int64_t i = 0; i < n; i++) {
            sum->logits[i] += logits[i];
            sum->prob[i] += prob[i];
        }
        sum->clips++;
    }
    if (!dsp_packet_last(src))
        return 0;
    sum->item = -1;
    if (sum->failed)
        return 0;
    for (int64_t i = 0; i < n; i++) {
        sum->logits[i] /= (float)sum->clips;
        sum->prob[i] /= (float)sum->clips;
    }
    return emit_result(node, c, src, sum->logits, sum->prob, sum);
}

/* Clips of one size run as one batch; a bad clip fails its item alone
 * (dsp_node_fail_packet) and the valid ones all go out, in order. */
static int classify_batch(dsp_node *node, dsp_packet **in, int n)
{
    classify_ctx *c = dsp_node_priv(node);
    clip_slot *slots = calloc((size_t)n, sizeof *slots);
    dsp_tensor **logits = calloc((size_t)n, sizeof *logits), **probs = calloc((size_t)n, sizeof *probs);
    int rc = slots && logits && probs ? 0 : dsp_node_fail(node, DSP_ENOMEM, "out of memory");
    for (int k = 0; rc == 0 && k < n; k++) {
        check_clip(c, in[k], &slots[k]);
        slots[k].group = -1;
        if (slots[k].why[0]) {
            dsp_node_fail_packet(node, in[k], DSP_EINVAL, "%s", slots[k].why);
            continue;
        }
        for (int j = 0; j < k && slots[k].group < 0; j++)
            if (slots[j].group == j && slots[j].t == slots[k].t && slots[j].h == slots[k].h && slots[j].w == slots[k].w)
                slots[k].group = j;
        if (slots[k].group < 0)
            slots[k].group = k;
    }
    for (int g = 0; rc == 0 && g < n; g++) {
        if (slots[g].group != g)
            continue;
        if ((rc = run_group(node, c, slots, n, g, &logits[g], &probs[g])) < 0)
            break;
        int64_t classes = logits[g]->shape[1], row = 0;
        for (int k = g; k < n; k++)
            if (slots[k].group == g)
                slots[k].logits = (float *)dsp_tensor_data(logits[g]) + classes * row++;
    }
    for (int k = 0; rc == 0 && k < n; k++) {
        int g = slots[k].group;
        const float *row_logits = g < 0 ? NULL : slots[k].logits;
        const float *prob = g < 0 ? NULL : (const float *)dsp_tensor_data(probs[g]) +
                                           (row_logits - (const float *)dsp_tensor_data(logits[g]));
        if (c->aggregate == AGG_MEAN)
            rc = average_clip(node, c, in[k], row_logits, prob);
        else if (g >= 0)
            rc = emit_result(node, c, in[k], row_logits, prob, NULL);
    }
    if (rc < 0 && c->aggregate == AGG_MEAN && n > 0) {
        /* the whole batch failed: a video that goes on past it gets no result */
        c->sum.item = dsp_packet_last(in[n - 1]) ? -1 : dsp_packet_item(in[n - 1]);
        c->sum.failed = 1;
    }
    for (int k = 0; k < n && logits && probs; k++) {
        dsp_tensor_unref(&logits[k]);
        dsp_tensor_unref(&probs[k]);
    }
    free(logits);
    free(probs);
    free(slots);
    return rc;
}

static int classify_process(dsp_node *node, dsp_packet **in)
{
    return classify_batch(node, in, 1);
}

static void classify_fini(dsp_node *node)
{
    classify_ctx *c = dsp_node_priv(node);
    video_model_close(&c->vm);
    free(c->sum.logits);
    free(c->sum.prob);
    c->sum.logits = c->sum.prob = NULL;
}

const dsp_op_def video_classify_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "video.classify",
    .doc = "action recognition on clips with VideoMAE (Hugging Face) or torchvision's r3d_18 / mc3_18 / r2plus1d_18: "
           "logits, label, score, top-k",
    .inputs = classify_in,
    .outputs = classify_out,
    .params = classify_params,
    .priv_size = sizeof(classify_ctx),
    .flags = DSP_OP_BATCHABLE,
    .max_batch = 64,
    .init = classify_init,
    .process = classify_process,
    .process_batch = classify_batch,
    .fini = classify_fini,
};
