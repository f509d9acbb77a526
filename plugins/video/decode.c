/* decode.c - video.decode: a video file (or bytes) to sampled frames or clips of u8 T x H x W x C tensors. */
#include "video.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>

enum { SAMPLE_ALL, SAMPLE_EVERY, SAMPLE_FPS, SAMPLE_UNIFORM };
static const char *const sample_names[] = { "all", "every", "fps", "uniform", NULL };
enum { INTERP_BILINEAR, INTERP_BICUBIC, INTERP_AREA, INTERP_NEAREST, INTERP_LANCZOS };
static const char *const interp_names[] = { "bilinear", "bicubic", "area", "nearest", "lanczos",
                                            NULL };
static const int interp_flags[] = { SWS_BILINEAR, SWS_BICUBIC, SWS_AREA, SWS_POINT,
                                    SWS_LANCZOS };
enum { PIX_RGB24, PIX_GRAY };
static const char *const pix_names[] = { "rgb24", "gray", NULL };
static const char *const hwaccel_names[] = { "none", "cuda", NULL };

typedef struct decode_ctx {
    char *name;
    char *bytes;
    int sample;
    int64_t every;
    double fps;
    int64_t clip_len;
    int64_t stride;
    int64_t num_clips;
    int pad;
    int64_t width, height, shorter;
    int interp;
    int pix_fmt;
    int64_t threads;
    int hwaccel;
    int strict;
    int64_t max_pixels, max_frames, max_bytes;
    int hw_warned;              /* the software fallback was logged once */
} decode_ctx;

static const dsp_param_def decode_params[] = {
    { .name = "name", .type = DSP_PARAM_STRING, .def = "frames",
      .offset = offsetof(decode_ctx, name),
      .doc = "output tensor: T x H x W x C per clip, or H x W x C per frame (clip_len=0)" },
    { .name = "bytes", .type = DSP_PARAM_STRING, .def = "bytes",
      .offset = offsetof(decode_ctx, bytes),
      .doc = "a 1-D u8 tensor of this name holding a video file is decoded (and removed); "
             "without one, the file named by meta \"path\" is read" },
    { .name = "sample", .type = DSP_PARAM_ENUM, .def = "all", .choices = sample_names,
      .offset = offsetof(decode_ctx, sample),
      .doc = "which frames: all, every (every Nth), fps (the frame shown at each 1/fps "
             "step, by pts), uniform (clip_len frames spread evenly over each of "
             "num_clips equal spans)" },
    { .name = "every", .type = DSP_PARAM_INT, .def = "1", .min = 1, .max = 1e6,
      .offset = offsetof(decode_ctx, every), .doc = "sample=every: keep frames 0, N, 2N, ..." },
    { .name = "fps", .type = DSP_PARAM_FLOAT, .def = "1", .min = 1e-3, .max = 1000,
      .offset = offsetof(decode_ctx, fps), .doc = "sample=fps: the target frame rate" },
    { .name = "clip_len", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 4096,
      .offset = offsetof(decode_ctx, clip_len),
      .doc = "frames per clip (T); 0 emits one packet per sampled frame "
             "(sample=uniform needs T >= 1)" },
    { .name = "stride", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 1e6,
      .offset = offsetof(decode_ctx, stride),
      .doc = "sliding windows: a clip starts every stride sampled frames; 0 = clip_len "
             "(back to back)" },
    { .name = "num_clips", .type = DSP_PARAM_INT, .def = "1", .min = 1, .max = 1024,
      .offset = offsetof(decode_ctx, num_clips),
      .doc = "sample=uniform: clips per video, each from its own equal span" },
    { .name = "pad", .type = DSP_PARAM_BOOL, .def = "true", .offset = offsetof(decode_ctx, pad),
      .doc = "a video too short for one clip gives one clip with its last frame repeated "
             "(false: the item fails)" },
    { .name = "width", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 65536,
      .offset = offsetof(decode_ctx, width),
      .doc = "output width (0: from height keeping the aspect ratio, or the source's)" },
    { .name = "height", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 65536,
      .offset = offsetof(decode_ctx, height), .doc = "output height (0: as width says)" },
    { .name = "shorter", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 65536,
      .offset = offsetof(decode_ctx, shorter),
      .doc = "scale the shorter side to this, as torchvision Resize(int) (when width and "
             "height are 0)" },
    { .name = "interp", .type = DSP_PARAM_ENUM, .def = "bilinear", .choices = interp_names,
      .offset = offsetof(decode_ctx, interp), .doc = "libswscale filter when scaling" },
    { .name = "pix_fmt", .type = DSP_PARAM_ENUM, .def = "rgb24", .choices = pix_names,
      .offset = offsetof(decode_ctx, pix_fmt), .doc = "output pixels: rgb24 (C=3) or gray (C=1)" },
    { .name = "threads", .type = DSP_PARAM_INT, .def = "0", .min = 0, .max = 256,
      .offset = offsetof(decode_ctx, threads),
      .doc = "decoder threads (frame + slice threading); 0 = one per core" },
    { .name = "hwaccel", .type = DSP_PARAM_ENUM, .def = "none", .choices = hwaccel_names,
      .offset = offsetof(decode_ctx, hwaccel),
      .doc = "cuda: decode on the GPU with FFmpeg's NVDEC hwaccel when FFmpeg and a GPU "
             "allow, else software (logged, meta hwaccel_fallback)" },
    { .name = "strict", .type = DSP_PARAM_BOOL, .def = "true",
      .offset = offsetof(decode_ctx, strict),
      .doc = "fail a truncated or damaged video; false keeps what decodes and sets meta "
             "decode_warning" },
    { .name = "max_pixels", .type = DSP_PARAM_INT, .def = "268435456", .min = 1, .max = 1e12,
      .offset = offsetof(decode_ctx, max_pixels),
      .doc = "refuse frames with more pixels (coded width x height, 16384 x 16384 by default)" },
    { .name = "max_frames", .type = DSP_PARAM_INT, .def = "50000000", .min = 1, .max = 1e15,
      .offset = offsetof(decode_ctx, max_frames),
      .doc = "refuse videos with more frames, decoded or sampled (default: 9 days at "
             "60 fps)" },
    { .name = "max_bytes", .type = DSP_PARAM_INT, .def = "1099511627776", .min = 1,
      .max = 1e18, .offset = offsetof(decode_ctx, max_bytes),
      .doc = "refuse larger files (default 1 TiB)" },
    { NULL }
};

static const dsp_port_def decode_in[] = {
    { "in", "any", "records with meta \"path\" (files.list) or a u8 tensor of file bytes" },
    { NULL }
};
static const dsp_port_def decode_out[] = {
    { "out", "frames", "one packet per clip (parts of the video's item) or per frame, with "
      "meta pts, frame_index, fps, duration, codec, clip_index, clip_start, clip_end" },
    { NULL }
};

/* ---- the state of one video being decoded --------------------------------- */

typedef struct slot {
    dsp_tensor *t;              /* H x W x C, owned */
    double pts, dur;
    int64_t index;              /* frame number in the video */
} slot;

typedef struct job {
    dsp_node *node;
    decode_ctx *c;
    const dsp_packet *in;
    const char *where;          /* the path or source, for messages */
    video_reader r;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt, sws_cs, sws_range;
    int ow, oh, ch;
    uint8_t *scratch[4];        /* aligned output rows for swscale */
    int scratch_ls[4];
    int64_t clip_len, stride;   /* stride >= 1 */
    int64_t *uidx, n_uidx, upos; /* sample=uniform: the chosen frame numbers */
    int64_t n_frames;           /* video packets counted before decoding */
    AVFrame *held;              /* sample=fps: the frame waiting for its successor */
    double held_pts, held_dur;
    int64_t held_index;
    slot *ring;                 /* the last clip_len sampled frames */
    int64_t sampled, clips;
    dsp_packet *pending;        /* the newest output, sent when the next one exists */
    int64_t part;
    char why[3 * VIDEO_WHY];    /* the reason of a failure, without the file name */
    char damage[VIDEO_WHY];     /* truncation found by the scan (strict=false) */
} job;

static int sws_flags_of(const decode_ctx *c)
{
    /* no SWS_ACCURATE_RND: it turns off swscale's fast unscaled YUV -> RGB
     * converters, and without it the pixels equal the ffmpeg command's */
    return interp_flags[c->interp];
}

/* Scale and convert one frame into a new H x W x C tensor. */
static int scale_frame(job *j, const AVFrame *f, dsp_tensor **out)
{
    int fmt = f->format;
    int range = f->color_range == AVCOL_RANGE_JPEG;
    if (!j->sws || f->width != j->sws_w || f->height != j->sws_h || fmt != j->sws_fmt ||
        (int)f->colorspace != j->sws_cs || range != j->sws_range) {
        sws_freeContext(j->sws);
        enum AVPixelFormat dst = j->ch == 3 ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_GRAY8;
        j->sws = sws_getContext(f->width, f->height, fmt, j->ow, j->oh, dst,
                                sws_flags_of(j->c), NULL, NULL, NULL);
        if (!j->sws) {
            snprintf(j->why, sizeof j->why, "libswscale cannot convert %s %dx%d to %s %dx%d",
                     av_get_pix_fmt_name(fmt) ? av_get_pix_fmt_name(fmt) : "?", f->width,
                     f->height, av_get_pix_fmt_name(dst), j->ow, j->oh);
            return DSP_EUNSUPPORTED;
        }
        /* YUV -> RGB with the matrix and range the stream declares (BT.709 for
         * HD); swscale would assume BT.601 limited range otherwise */
        const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(fmt);
        int yuv = desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
        int *inv, *tab, srcr, dstr, bri, con, sat;
        if (yuv && sws_getColorspaceDetails(j->sws, &inv, &srcr, &tab, &dstr, &bri, &con,
                                            &sat) >= 0)
            sws_setColorspaceDetails(j->sws, sws_getCoefficients(f->colorspace), range || srcr,
                                     tab, dstr, bri, con, sat);
        j->sws_w = f->width;
        j->sws_h = f->height;
        j->sws_fmt = fmt;
        j->sws_cs = f->colorspace;
        j->sws_range = range;
    }
    int64_t shape[3] = { j->oh, j->ow, j->ch };
    dsp_tensor *t = NULL;
    if (dsp_tensor_new(DSP_DTYPE_U8, 3, shape, &t) < 0) {
        snprintf(j->why, sizeof j->why, "out of memory for a %dx%d frame", j->ow, j->oh);
        return DSP_ENOMEM;
    }
    /* swscale's SIMD converters get the last pixels of a row wrong (and may
     * write past it) unless rows start 64-byte aligned: tensor rows of
     * another length go through an aligned scratch image */
    int row = j->ow * j->ch;
    uint8_t *data = dsp_tensor_data(t);
    if (row % 64 == 0 && (uintptr_t)data % 64 == 0) {
        uint8_t *dst[4] = { data };
        int dst_stride[4] = { row };
        sws_scale(j->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst,
                  dst_stride);
    } else {
        if (!j->scratch[0] &&
            av_image_alloc(j->scratch, j->scratch_ls, j->ow, j->oh + 1,
                           j->ch == 3 ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_GRAY8, 64) < 0) {
            dsp_tensor_unref(&t);
            snprintf(j->why, sizeof j->why, "out of memory for a %dx%d frame", j->ow, j->oh);
            return DSP_ENOMEM;
        }
        sws_scale(j->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height,
                  j->scratch, j->scratch_ls);
        for (int y = 0; y < j->oh; y++)
            memcpy(data + (size_t)y * (size_t)row, j->scratch[0] + (size_t)y * j->scratch_ls[0],
                   (size_t)row);
    }
    *out = t;
    return 0;
}

/* ---- output packets -------------------------------------------------------- */

static int set_video_meta(job *j, dsp_meta *m)
{
    const video_reader *r = &j->r;
    int err = dsp_meta_set_float(m, "fps", r->fps);
    if (!err)
        err = dsp_meta_set_float(m, "duration", r->duration);
    if (!err)
        err = dsp_meta_set_str(m, "codec", r->codec);
    if (!err)
        err = dsp_meta_set_str(m, "container", r->container);
    if (!err)
        err = dsp_meta_set_int(m, "src_width", r->width);
    if (!err)
        err = dsp_meta_set_int(m, "src_height", r->height);
    if (!err)
        err = dsp_meta_set_int(m, "width", j->ow);
    if (!err)
        err = dsp_meta_set_int(m, "height", j->oh);
    if (!err)
        err = dsp_meta_set_int(m, "channels", j->ch);
    if (!err)
        err = dsp_meta_set_str(m, "pix_fmt", pix_names[j->c->pix_fmt]);
    if (!err)
        err = dsp_meta_set_str(m, "layout", j->clip_len ? "thwc" : "hwc");
    if (!err)
        err = dsp_meta_set_str(m, "sample", sample_names[j->c->sample]);
    if (!err)
        err = dsp_meta_set_str(m, "hwaccel", r->hwaccel_used);
    if (!err && r->hwaccel_note[0])
        err = dsp_meta_set_str(m, "hwaccel_fallback", r->hwaccel_note);
    if (!err)
        err = dsp_meta_set_int(m, "num_frames", j->n_frames);
    return err;
}

/* Queue p as the newest output; the one before it is sent now, not last. */
static int queue_output(job *j, dsp_packet *p)
{
    dsp_packet_set_pos(p, dsp_packet_item(j->in), j->part++, 0);
    int err = 0;
    if (j->pending)
        err = dsp_node_emit(j->node, 0, j->pending);
    j->pending = p;
    return err;
}

static int new_output(job *j, dsp_tensor *t, dsp_packet **out)
{
    dsp_packet *p = NULL;
    int err = dsp_packet_derive(j->in, &p);
    if (err < 0) {
        dsp_tensor_unref(&t);
        return err;
    }
    if (j->c->bytes[0] && dsp_packet_tensor(p, j->c->bytes))
        dsp_packet_remove_tensor(p, j->c->bytes);
    err = dsp_packet_set_tensor(p, j->c->name, t);
    if (!err)
        err = set_video_meta(j, dsp_packet_meta(p));
    if (err < 0)
        dsp_packet_unref(&p);
    *out = p;
    return err;
}

static int emit_frame(job *j, const slot *s)
{
    dsp_packet *p = NULL;
    int err = new_output(j, dsp_tensor_ref(s->t), &p);
    if (err < 0)
        return err;
    dsp_meta *m = dsp_packet_meta(p);
    err = dsp_meta_set_float(m, "pts", s->pts);
    if (!err)
        err = dsp_meta_set_int(m, "frame_index", s->index);
    if (err < 0) {
        dsp_packet_unref(&p);
        return err;
    }
    dsp_packet_set_pts(p, s->pts);
    return queue_output(j, p);
}

/* The clip of the clip_len sampled frames ending with sampled frame `end`. */
static int emit_clip(job *j, int64_t end)
{
    int64_t T = j->clip_len, first = end - T + 1;
    int64_t shape[4] = { T, j->oh, j->ow, j->ch };
    size_t frame_bytes = (size_t)j->oh * (size_t)j->ow * (size_t)j->ch;
    dsp_tensor *t = NULL;
    double *pts = malloc((size_t)T * sizeof *pts);
    int64_t *idx = malloc((size_t)T * sizeof *idx);
    int err = pts && idx ? dsp_tensor_new(DSP_DTYPE_U8, 4, shape, &t) : DSP_ENOMEM;
    if (err < 0) {
        free(pts);
        free(idx);
        return err;
    }
    uint8_t *dst = dsp_tensor_data(t);
    for (int64_t k = 0; k < T; k++) {
        const slot *s = &j->ring[(first + k) % T];
        memcpy(dst + (size_t)k * frame_bytes, dsp_tensor_data(s->t), frame_bytes);
        pts[k] = s->pts;
        idx[k] = s->index;
    }
    const slot *last = &j->ring[end % T];
    dsp_packet *p = NULL;
    err = new_output(j, t, &p);
    dsp_meta *m = err ? NULL : dsp_packet_meta(p);
    if (!err)
        err = dsp_meta_set_floats(m, "pts", pts, (size_t)T);
    if (!err)
        err = dsp_meta_set_ints(m, "frame_index", idx, (size_t)T);
    if (!err)
        err = dsp_meta_set_int(m, "clip_index", j->clips);
    if (!err)
        err = dsp_meta_set_float(m, "clip_start", pts[0]);
    if (!err)
        err = dsp_meta_set_float(m, "clip_end", last->pts + last->dur);
    if (!err)
        dsp_packet_set_pts(p, pts[0]);
    free(pts);
    free(idx);
    if (err < 0) {
        dsp_packet_unref(&p);
        return err;
    }
    j->clips++;
    return queue_output(j, p);
}

/* Append a frame to the sampled stream `count` times; emit what completes. */
static int push_sampled(job *j, dsp_tensor *t, double pts, double dur, int64_t index,
                        int64_t count)
{
    int64_t cap = j->clip_len ? j->clip_len : 1;
    for (int64_t k = 0; k < count; k++) {
        int64_t s = j->sampled++;
        slot *sl = &j->ring[s % cap];
        dsp_tensor_unref(&sl->t);
        *sl = (slot){ dsp_tensor_ref(t), pts, dur, index };
        int err = 0;
        if (!j->clip_len)
            err = emit_frame(j, sl);
        else if (s >= j->clip_len - 1 && (s - (j->clip_len - 1)) % j->stride == 0)
            err = emit_clip(j, s);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Only frames that are used are scaled: the rest cost a decode only. */
static int use_frame(job *j, const AVFrame *f, double pts, double dur, int64_t index,
                     int64_t count)
{
    if (count <= 0)
        return 0;
    /* sample=fps repeats a frame for every grid time it covers: a damaged
     * or hostile timestamp (a jump of years) must not make that endless */
    if (count > j->c->max_frames - j->sampled) {
        snprintf(j->why, sizeof j->why, "sampling would give more than max_frames=%" PRId64
                 " frames (frame %" PRId64 " at %.3f s stands for %" PRId64 " of them: a "
                 "damaged timestamp?)", j->c->max_frames, index, pts, count);
        return DSP_ELIMIT;
    }
    dsp_tensor *t = NULL;
    int err = scale_frame(j, f, &t);
    if (!err)
        err = push_sampled(j, t, pts, dur, index, count);
    dsp_tensor_unref(&t);
    return err;
}

/* How often frame `index` appears in the sampled stream (sample=fps is
 * handled with one frame of look-ahead by the caller). */
static int64_t count_of(job *j, int64_t index)
{
    switch (j->c->sample) {
    case SAMPLE_EVERY:
        return index % j->c->every == 0;
    case SAMPLE_UNIFORM: {
        int64_t n = 0;
        while (j->upos < j->n_uidx && j->uidx[j->upos] == index) {
            j->upos++;
            n++;
        }
        return n;
    }
    default:
        return 1;
    }
}

static int on_frame(job *j, const AVFrame *f, double pts)
{
    int64_t index = j->r.frames - 1;
    if (j->c->sample != SAMPLE_FPS)
        return use_frame(j, f, pts, j->r.last_dur, index, count_of(j, index));
    int err = 0;
    if (j->held->buf[0])
        err = use_frame(j, j->held, j->held_pts, j->held_dur, j->held_index,
                        video_fps_hits(j->c->fps, j->held_pts, pts));
    av_frame_unref(j->held);
    if (!err && av_frame_ref(j->held, f) < 0)
        err = DSP_ENOMEM;
    j->held_pts = pts;
    j->held_dur = j->r.last_dur;
    j->held_index = index;
    return err;
}

/* After the last frame: the held fps frame, frames the uniform choice
 * counted on but the decoder did not deliver, and padding. */
static int finish_sampling(job *j)
{
    int err = 0;
    if (j->c->sample == SAMPLE_FPS && j->held->buf[0]) {
        double end = j->held_pts + (j->held_dur > 0 ? j->held_dur : 1 / j->c->fps);
        int64_t n = video_fps_hits(j->c->fps, j->held_pts, end);
        /* the last frame of a video always counts when nothing was sampled */
        err = use_frame(j, j->held, j->held_pts, j->held_dur, j->held_index,
                        n ? n : j->sampled == 0);
    }
    if (err < 0 || j->sampled == 0 || !j->clip_len)
        return err;
    int64_t cap = j->clip_len;
    slot last = j->ring[(j->sampled - 1) % cap];
    int64_t missing = 0;
    if (j->c->sample == SAMPLE_UNIFORM)
        missing = j->n_uidx - j->upos;
    else if (j->clips == 0 && j->c->pad)
        missing = j->clip_len - j->sampled;
    if (missing > 0) {
        dsp_tensor *t = dsp_tensor_ref(last.t);
        err = push_sampled(j, t, last.pts, last.dur, last.index, missing);
        dsp_tensor_unref(&t);
    }
    return err;
}

/* ---- one video ---------------------------------------------------------------- */

static int fail(job *j, int code, const char *what)
{
    if (code == DSP_ELIMIT)
        return dsp_node_fail(j->node, code, "%s: %s; raise the limit if the video is real",
                             j->where, j->why);
    return dsp_node_fail(j->node, code, "%s: %s%s%s", j->where, what ? what : "",
                         what ? ": " : "", j->why);
}

/* Damage the decoder got past: an error (strict) or a warning in meta,
 * together with a truncation the scan found (strict=false). */
static int judge_damage(job *j)
{
    const video_reader *r = &j->r;
    char w[2 * VIDEO_WHY] = "";
    const char *ff = video_ffmpeg_last_error();
    if (r->bad_packets)
        snprintf(w, sizeof w, "%" PRId64 " damaged packet%s skipped%s%s%s", r->bad_packets,
                 r->bad_packets == 1 ? "" : "s", ff[0] ? " (FFmpeg: " : "", ff, ff[0] ? ")" : "");
    if (r->bad_packets && j->c->strict) {
        snprintf(j->why, sizeof j->why, "%s; strict=false keeps the frames that decode", w);
        return fail(j, DSP_EFORMAT, "damaged video");
    }
    if (j->damage[0]) {
        size_t n = strlen(w);
        snprintf(w + n, sizeof w - n, "%s%s", n ? "; " : "", j->damage);
    }
    if (!w[0])
        return 0;
    if (r->bad_packets)
        dsp_node_log(j->node, DSP_LOG_WARNING, "%s: %s (strict=false: kept)", j->where, w);
    if (j->pending)
        return dsp_meta_set_str(dsp_packet_meta(j->pending), "decode_warning", w);
    return 0;
}

static int plan(job *j, const uint8_t *data, size_t size)
{
    decode_ctx *c = j->c;
    video_open_opts o = { .threads = (int)c->threads, .hwaccel = c->hwaccel,
                          .max_pixels = c->max_pixels, .max_frames = c->max_frames };
    int err = video_open(&j->r, data, size, &o, j->why);
    if (err < 0)
        return fail(j, err, NULL);
    if (c->hwaccel == VIDEO_HWACCEL_CUDA && j->r.hwaccel_note[0] && !c->hw_warned) {
        dsp_node_log(j->node, DSP_LOG_WARNING, "hwaccel=cuda: %s; decoding in software",
                     j->r.hwaccel_note);
        c->hw_warned = 1;
    }
    video_target_size(j->r.width, j->r.height, (int)c->width, (int)c->height, (int)c->shorter,
                      &j->ow, &j->oh);
    if ((int64_t)j->ow * j->oh > c->max_pixels) {
        snprintf(j->why, sizeof j->why, "the output size %dx%d exceeds max_pixels=%" PRId64,
                 j->ow, j->oh, c->max_pixels);
        return fail(j, DSP_ELIMIT, NULL);
    }
    /* One pass over the packets first (no decoding): the frame count for
     * sample=uniform and meta, and truncation found before anything is sent */
    video_scan_result scan;
    if ((err = video_scan(&j->r, &scan, j->why)) < 0)
        return fail(j, err, "cannot read the packets");
    j->n_frames = scan.packets;
    if (j->n_frames == 0) {
        snprintf(j->why, sizeof j->why, "the video stream has no frames%s%s",
                 video_ffmpeg_last_error()[0] ? "; FFmpeg: " : "", video_ffmpeg_last_error());
        return fail(j, DSP_EFORMAT, "corrupt or truncated video");
    }
    if (video_truncation(&j->r, &scan, j->damage)) {
        if (c->strict) {
            snprintf(j->why, sizeof j->why, "%s; strict=false keeps the frames that decode",
                     j->damage);
            return fail(j, DSP_EFORMAT, "damaged video");
        }
        dsp_node_log(j->node, DSP_LOG_WARNING, "%s: %s (strict=false: decoding what is there)",
                     j->where, j->damage);
    }
    if (c->sample == SAMPLE_UNIFORM) {
        j->n_uidx = c->num_clips * j->clip_len;
        if (!(j->uidx = malloc((size_t)j->n_uidx * sizeof *j->uidx)))
            return dsp_node_fail(j->node, DSP_ENOMEM, "%s: out of memory", j->where);
        video_uniform_indices(j->n_frames, (int)c->num_clips, (int)j->clip_len, j->uidx);
    }
    int64_t cap = j->clip_len ? j->clip_len : 1;
    j->ring = calloc((size_t)cap, sizeof *j->ring);
    j->held = av_frame_alloc();
    if (!j->ring || !j->held)
        return dsp_node_fail(j->node, DSP_ENOMEM, "%s: out of memory", j->where);
    return 0;
}

/* A failure of on_frame / finish_sampling: out of memory, a conversion
 * swscale refuses (reason in why), or an emit or metadata error. */
static int fail_output(job *j, int err)
{
    if (err == DSP_ENOMEM)
        return dsp_node_fail(j->node, err, "%s: out of memory (%dx%d frames, clip_len=%" PRId64
                             ")", j->where, j->ow, j->oh, j->clip_len);
    if (err == DSP_EUNSUPPORTED || err == DSP_ELIMIT)
        return fail(j, err, NULL);
    return dsp_node_fail(j->node, err, "%s: cannot send the frames: %s", j->where,
                         dsp_strerror(err));
}

static int run(job *j, const uint8_t *data, size_t size)
{
    int err = plan(j, data, size);
    if (err < 0)
        return err;     /* plan recorded the reason */
    AVFrame *f;
    double pts;
    while ((err = video_next_frame(&j->r, &f, &pts, j->why)) == 0) {
        if (dsp_node_stopping(j->node))
            return dsp_node_fail(j->node, DSP_EINTR, "%s: interrupted", j->where);
        if ((err = on_frame(j, f, pts)) < 0)
            return fail_output(j, err);
    }
    if (err != DSP_EOF)
        return fail(j, err, NULL);
    if (j->r.frames == 0) {
        snprintf(j->why, sizeof j->why, "no frame could be decoded (%" PRId64 " damaged "
                 "packets%s%s)", j->r.bad_packets,
                 video_ffmpeg_last_error()[0] ? "; FFmpeg: " : "", video_ffmpeg_last_error());
        return fail(j, DSP_EFORMAT, "corrupt or truncated video");
    }
    if ((err = finish_sampling(j)) < 0)
        return fail_output(j, err);
    if (j->clip_len && j->clips == 0) {
        snprintf(j->why, sizeof j->why, "only %" PRId64 " frames after sampling, a clip needs "
                 "clip_len=%" PRId64 "; set pad=true or lower clip_len", j->sampled, j->clip_len);
        return fail(j, DSP_EINVAL, "video too short");
    }
    if ((err = judge_damage(j)) < 0)
        return err;
    if (!j->pending)    /* e.g. sample=every with every > frames: nothing to send */
        return 0;
    dsp_packet_set_pos(j->pending, dsp_packet_item(j->in), dsp_packet_part(j->pending),
                       dsp_packet_last(j->in));
    err = dsp_node_emit(j->node, 0, j->pending);
    j->pending = NULL;
    return err;
}

static void job_free(job *j)
{
    int64_t cap = j->clip_len ? j->clip_len : 1;
    for (int64_t k = 0; j->ring && k < cap; k++)
        dsp_tensor_unref(&j->ring[k].t);
    free(j->ring);
    free(j->uidx);
    av_frame_free(&j->held);
    sws_freeContext(j->sws);
    av_freep(&j->scratch[0]);
    dsp_packet_unref(&j->pending);
    video_close(&j->r);
}

/* The bytes to decode: the tensor `bytes`, else the file at meta path. */
static int input_bytes(dsp_node *node, decode_ctx *c, const dsp_packet *in, dsp_buffer **file,
                       dsp_tensor **bytes, const char **where)
{
    const char *path = NULL;
    dsp_tensor *enc = c->bytes[0] ? dsp_packet_tensor(in, c->bytes) : NULL;
    const dsp_meta *m = dsp_packet_meta_const(in);
    if (dsp_meta_get_str(m, "path", &path) < 0 && dsp_meta_get_str(m, "source", &path) < 0)
        path = NULL;
    if (enc) {
        char desc[96];
        *where = path ? path : "bytes";
        if (enc->dtype != DSP_DTYPE_U8 || enc->ndim != 1 || enc->device.type != DSP_DEVICE_CPU)
            return dsp_node_fail(node, DSP_EINVAL, "%s: tensor '%s' is %s; a video file's "
                                 "bytes are a 1-D u8 CPU tensor", *where, c->bytes,
                                 dsp_tensor_describe(enc, desc, sizeof desc));
        int err = dsp_tensor_contiguous(enc, bytes);
        return err < 0 ? dsp_node_fail(node, err, "%s: out of memory", *where) : 0;
    }
    if (dsp_meta_get_str(m, "path", &path) < 0)
        return dsp_node_fail(node, DSP_EINVAL,
                             "item %" PRId64 " has neither a tensor '%s' of file bytes nor a "
                             "string meta \"path\"; connect video.decode to files.list",
                             dsp_packet_item(in), c->bytes);
    *where = path;
    int err = dsp_buffer_map_file(path, file);
    if (err < 0)
        return dsp_node_fail(node, err, "%s: cannot read: %s", path,
                             err == DSP_EINVAL ? "not a regular file" : strerror(errno));
    return 0;
}

static int decode_process(dsp_node *node, dsp_packet **in)
{
    decode_ctx *c = dsp_node_priv(node);
    dsp_buffer *file = NULL;
    dsp_tensor *bytes = NULL;
    const char *where = NULL;
    int err = input_bytes(node, c, in[0], &file, &bytes, &where);
    if (err < 0)
        return err;
    const uint8_t *data = file ? dsp_buffer_data(file) : dsp_tensor_data(bytes);
    size_t size = file ? dsp_buffer_size(file) : (size_t)bytes->shape[0];
    if (size == 0) {
        err = dsp_node_fail(node, DSP_EFORMAT, "%s: empty (0 bytes): not a video; re-export "
                            "or remove the file", where);
    } else if ((uint64_t)size > (uint64_t)c->max_bytes) {
        err = dsp_node_fail(node, DSP_ELIMIT, "%s: %zu bytes exceed max_bytes=%" PRId64
                            "; raise the limit if the video is real", where, size, c->max_bytes);
    } else {
        job j = { .node = node, .c = c, .in = in[0], .where = where,
                  .ch = c->pix_fmt == PIX_GRAY ? 1 : 3,
                  .clip_len = c->sample == SAMPLE_UNIFORM && !c->clip_len ? 1 : c->clip_len };
        j.stride = c->stride ? c->stride : j.clip_len ? j.clip_len : 1;
        err = run(&j, data, size);
        job_free(&j);
    }
    dsp_tensor_unref(&bytes);
    dsp_buffer_unref(&file);
    return err;
}

static int decode_init(dsp_node *node)
{
    decode_ctx *c = dsp_node_priv(node);
    if (c->sample == SAMPLE_UNIFORM && c->clip_len == 0)
        return dsp_node_fail(node, DSP_EINVAL, "sample=uniform needs clip_len >= 1 (the "
                             "frames per clip, e.g. clip_len=16)");
    if (c->sample != SAMPLE_UNIFORM && c->num_clips != 1)
        return dsp_node_fail(node, DSP_EINVAL, "num_clips applies to sample=uniform; for "
                             "sliding windows set clip_len and stride");
    if (c->stride && !c->clip_len)
        return dsp_node_fail(node, DSP_EINVAL, "stride needs clip_len >= 1 (windows of "
                             "clip_len sampled frames)");
    if ((c->width > 0 || c->height > 0) && c->shorter > 0)
        return dsp_node_fail(node, DSP_EINVAL, "give either shorter= or width=/height=, "
                             "not both");
    if (c->sample == SAMPLE_UNIFORM && c->stride)
        return dsp_node_fail(node, DSP_EINVAL, "sample=uniform makes num_clips clips; "
                             "stride is for sliding windows");
    return 0;
}

const dsp_op_def video_decode_op = {
    .struct_size = sizeof(dsp_op_def),
    .name = "video.decode",
    .doc = "decode a video (FFmpeg) into sampled frames or T x H x W x C u8 clips "
           "(uniform, fps, every Nth, sliding windows), scaled with libswscale",
    .inputs = decode_in,
    .outputs = decode_out,
    .params = decode_params,
    .priv_size = sizeof(decode_ctx),
    .init = decode_init,
    .process = decode_process,
};
