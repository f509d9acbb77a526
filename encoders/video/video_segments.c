/* video_segments.c - video.segments: the labelled windows of one video merged into segments of one label each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <dspipe/dspipe.h>

#include "video_encoder.h"

typedef struct segment {
    char *label;
    double start, end;                  /* seconds: first window's clip_start, last one's clip_end */
    double score_sum;
    int64_t windows;
} segment;

typedef struct segments_ctx {
    /* parameters */
    char *output;
    /* state: the item being gathered */
    int64_t item;                       /* -1: none */
    segment *seg;
    size_t n, cap;
} segments_ctx;

static const dsp_param_def segments_params[] = {
    { .name = "output", .type = DSP_PARAM_STRING, .def = "segments",
      .offset = offsetof(segments_ctx, output),
      .doc = "meta key of the segment array on the video's packet" },
    { NULL }
};

static const dsp_port_def segments_in[] = {
    { .name = "in", .type = "tensor",
      .doc = "one classified window per packet (video.classify after video.decode clip_len + stride)" },
    { NULL }
};
static const dsp_port_def segments_out[] = {
    { .name = "out", .type = "tensor",
      .doc = "one packet per video: meta segments [{label, start_s, end_s, score, windows}]" },
    { NULL }
};

static void segments_reset(segments_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->seg[i].label);
    c->n = 0;
    c->item = -1;
}

/* Append the window to the last segment when it has the same label, else start a new one. */
static int segments_add(segments_ctx *c, const char *label, double score, double start, double end)
{
    segment *last = c->n ? &c->seg[c->n - 1] : NULL;
    if (last && strcmp(last->label, label) == 0) {
        last->end = end;
        last->score_sum += score;
        last->windows++;
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        segment *s = realloc(c->seg, cap * sizeof(*s));
        if (!s)
            return DSP_ENOMEM;
        c->seg = s;
        c->cap = cap;
    }
    char *copy = strdup(label);
    if (!copy)
        return DSP_ENOMEM;
    c->seg[c->n++] = (segment){ .label = copy, .start = start, .end = end, .score_sum = score,
                                .windows = 1 };
    return 0;
}

static int segments_emit(dsp_node *node, segments_ctx *c, const dsp_packet *last)
{
    json_t *arr = json_array();
    int rc = arr ? 0 : DSP_ENOMEM;
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        const segment *s = &c->seg[i];
        json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:I}", "label", s->label, "start_s", s->start,
                              "end_s", s->end, "score", s->score_sum / (double)s->windows,
                              "windows", (json_int_t)s->windows);
        if (!o || json_array_append_new(arr, o) < 0)
            rc = DSP_ENOMEM;
    }
    char *text = rc == 0 ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (rc == 0 && !text)
        rc = DSP_ENOMEM;
    dsp_packet *p = NULL;
    if (rc == 0)
        rc = dsp_packet_derive(last, &p);
    if (rc == 0)
        rc = dsp_meta_set_json(dsp_packet_meta(p), c->output, text);
    if (rc == 0)
        rc = dsp_meta_set_int(dsp_packet_meta(p), "num_segments", (int64_t)c->n);
    free(text);
    if (rc < 0) {
        dsp_packet_unref(&p);
        return dsp_node_fail_packet(node, last, rc, "cannot build the segments: %s", dsp_strerror(rc));
    }
    dsp_packet_set_pos(p, dsp_packet_item(last), 0, 1);
    return dsp_node_emit(node, 0, p);
}

static int segments_process(dsp_node *node, dsp_packet **in)
{
    segments_ctx *c = dsp_node_priv(node);
    const dsp_packet *p = in[0];
    const dsp_meta *m = dsp_packet_meta_const(p);
    /* an item whose last window never came (it failed upstream) is dropped */
    if (c->item != dsp_packet_item(p))
        segments_reset(c);
    c->item = dsp_packet_item(p);
    const char *label;
    double score, start, end;
    if (dsp_meta_get_str(m, "label", &label) < 0 || dsp_meta_get_float(m, "score", &score) < 0)
        return dsp_node_fail_packet(node, p, DSP_EINVAL, "window %lld has no meta label and score: "
                                    "put video.classify before video.segments",
                                    (long long)dsp_packet_part(p));
    if (dsp_meta_get_float(m, "clip_start", &start) < 0 || dsp_meta_get_float(m, "clip_end", &end) < 0)
        return dsp_node_fail_packet(node, p, DSP_EINVAL, "window %lld has no meta clip_start and "
                                    "clip_end: decode clips with video.decode clip_len=T",
                                    (long long)dsp_packet_part(p));
    int rc = segments_add(c, label, score, start, end);
    if (rc < 0)
        return dsp_node_fail_packet(node, p, rc, "%s", dsp_strerror(rc));
    if (!dsp_packet_last(p))
        return 0;
    rc = segments_emit(node, c, p);
    segments_reset(c);
    return rc;
}

static int segments_init(dsp_node *node)
{
    segments_ctx *c = dsp_node_priv(node);
    c->item = -1;
    return 0;
}

static void segments_fini(dsp_node *node)
{
    segments_ctx *c = dsp_node_priv(node);
    segments_reset(c);
    free(c->seg);
    c->seg = NULL;
}

const dsp_op_def video_segments_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "video.segments",
    .doc = "merge consecutive classified windows of a video with the same label into segments "
           "{label, start_s, end_s, score}",
    .inputs = segments_in,
    .outputs = segments_out,
    .params = segments_params,
    .priv_size = sizeof(segments_ctx),
    .init = segments_init,
    .process = segments_process,
    .fini = segments_fini,
};
