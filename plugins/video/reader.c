/* reader.c - FFmpeg demuxing and decoding of one video held in memory, with limits, frame threads and optional CUDA. */
#include "video.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/hwcontext.h>
#include <libavutil/pixdesc.h>

/* ---- FFmpeg's log: keep the last error per thread for our messages -------- */

static _Thread_local char last_error[256];

static void ffmpeg_log(void *avcl, int level, const char *fmt, va_list ap)
{
    if (level > AV_LOG_WARNING)
        return;
    char line[512];
    int prefix = 0;     /* the message only: no "[mov @ 0x55...]" */
    av_log_format_line2(avcl, level, fmt, ap, line, sizeof line, &prefix);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (level <= AV_LOG_ERROR && n) {
        size_t k = n < sizeof last_error - 1 ? n : sizeof last_error - 1;
        memcpy(last_error, line, k);
        last_error[k] = '\0';
    }
    /* FFmpeg is chatty about damaged streams: details for -v debug only */
    dsp_log(DSP_LOG_DEBUG, "ffmpeg", "%s", line);
}

static void log_install(void)
{
    av_log_set_callback(ffmpeg_log);
}

/* The callback lives in this plugin: give FFmpeg its default back if the
 * plugin is ever unloaded while libavutil stays (it is linked -z nodelete,
 * so normally neither goes). */
__attribute__((destructor)) static void log_uninstall(void)
{
    av_log_set_callback(av_log_default_callback);
}

const char *video_ffmpeg_last_error(void)
{
    return last_error;
}

/* "reason (FFmpeg: last logged error)" into why. */
static int fail_why(char *why, int code, const char *what, int averr)
{
    char e[AV_ERROR_MAX_STRING_SIZE] = "";
    if (averr)
        av_strerror(averr, e, sizeof e);
    snprintf(why, VIDEO_WHY, "%s%s%s%s%s%s", what, e[0] ? ": " : "", e,
             last_error[0] ? " (FFmpeg: " : "", last_error, last_error[0] ? ")" : "");
    return code;
}

/* ---- memory I/O: every byte FFmpeg reads comes from data[0..size) ---------- */

static int mem_read(void *opaque, uint8_t *buf, int n)
{
    video_reader *r = opaque;
    size_t left = r->size - r->pos;
    if (left == 0)
        return AVERROR_EOF;
    if ((size_t)n > left)
        n = (int)left;
    memcpy(buf, r->data + r->pos, (size_t)n);
    r->pos += (size_t)n;
    return n;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence)
{
    video_reader *r = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)r->size;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)r->pos; break;
    case SEEK_END: base = (int64_t)r->size; break;
    default: return AVERROR(EINVAL);
    }
    if (off < -base || off > (int64_t)r->size - base)
        return AVERROR(EINVAL);
    r->pos = (size_t)(base + off);
    return (int64_t)r->pos;
}

/* ---- hardware decoding ---------------------------------------------------- */

static enum AVPixelFormat pick_format(AVCodecContext *dec, const enum AVPixelFormat *fmts)
{
    const video_reader *r = dec->opaque;
    for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
        if (*p == (enum AVPixelFormat)r->hw_pix)
            return *p;
    /* the CUDA path is refused for this stream (size, profile): software */
    for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++) {
        const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(*p);
        if (d && !(d->flags & AV_PIX_FMT_FLAG_HWACCEL))
            return *p;
    }
    return AV_PIX_FMT_NONE;
}

/* Set up NVDEC through FFmpeg's CUDA hwaccel; on any obstacle leave the
 * decoder in software and say why in hwaccel_note. */
static void try_cuda(video_reader *r, const AVCodec *codec)
{
    r->hw_pix = AV_PIX_FMT_NONE;
    for (int i = 0;; i++) {
        const AVCodecHWConfig *cfg = avcodec_get_hw_config(codec, i);
        if (!cfg)
            break;
        if ((cfg->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) &&
            cfg->device_type == AV_HWDEVICE_TYPE_CUDA) {
            r->hw_pix = cfg->pix_fmt;
            break;
        }
    }
    if (r->hw_pix == AV_PIX_FMT_NONE) {
        snprintf(r->hwaccel_note, sizeof r->hwaccel_note,
                 "the installed FFmpeg has no CUDA decoding for %s", codec->name);
        return;
    }
    int err = av_hwdevice_ctx_create(&r->hwdev, AV_HWDEVICE_TYPE_CUDA, NULL, NULL, 0);
    if (err < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(err, e, sizeof e);
        snprintf(r->hwaccel_note, sizeof r->hwaccel_note, "no usable CUDA device (%s%s%s)", e,
                 last_error[0] ? "; FFmpeg: " : "", last_error);
        last_error[0] = '\0';
        return;
    }
    r->dec->hw_device_ctx = av_buffer_ref(r->hwdev);
    r->dec->opaque = r;
    r->dec->get_format = pick_format;
    snprintf(r->hwaccel_used, sizeof r->hwaccel_used, "cuda");
}

/* ---- opening ----------------------------------------------------------------- */

/* What the first bytes say a file is when FFmpeg recognises no container. */
static const char *sniff(const uint8_t *d, size_t n)
{
    static const struct { const char *magic; size_t len; const char *name; } known[] = {
        { "%PDF", 4, "a PDF document" }, { "PK\x03\x04", 4, "a ZIP archive" },
        { "\x93NUMPY", 6, "a .npy file" }, { "\x1f\x8b", 2, "gzip data" },
        { "\x7f" "ELF", 4, "an ELF binary" },
    };
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0)
        return "a DICOM file";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (n >= known[i].len && memcmp(d, known[i].magic, known[i].len) == 0)
            return known[i].name;
    size_t text = 0, m = n < 512 ? n : 512;
    for (size_t i = 0; i < m; i++)
        text += (d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t';
    return text == m ? "text" : NULL;
}

/* ---- demuxer ---------------------------------------------------------------- */

static int open_demuxer(video_reader *r, char *why)
{
    unsigned char *iobuf = av_malloc(65536);
    r->pos = 0;
    r->fmt = avformat_alloc_context();
    if (iobuf)
        r->io = avio_alloc_context(iobuf, 65536, 0, r, mem_read, NULL, mem_seek);
    if (!iobuf || !r->fmt || !r->io) {
        if (!r->io)
            av_free(iobuf);
        return fail_why(why, DSP_ENOMEM, "out of memory", 0);
    }
    r->fmt->pb = r->io;
    r->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    /* no file name: the format is told by the content, never the extension */
    int err = avformat_open_input(&r->fmt, NULL, NULL, NULL);
    if (err < 0) {  /* avformat_open_input freed fmt */
        const char *what = sniff(r->data, r->size);
        if (what) {
            snprintf(why, VIDEO_WHY, "not a video: the content is %s", what);
            return DSP_EUNSUPPORTED;
        }
        return fail_why(why, DSP_EFORMAT, "not a video container FFmpeg recognises, or its "
                        "header is damaged", err);
    }
    err = avformat_find_stream_info(r->fmt, NULL);
    if (err < 0)
        return fail_why(why, DSP_EFORMAT, "cannot read the stream headers", err);
    return 0;
}

/* Image "containers" (image2, png_pipe, ...) open as one-frame videos: that
 * is an image.decode job, and a clear message beats a one-frame clip. */
static int is_image_format(const AVInputFormat *f)
{
    size_t n = strlen(f->name);
    return strcmp(f->name, "image2") == 0 ||
           (n > 5 && strcmp(f->name + n - 5, "_pipe") == 0);
}

static int check_stream(video_reader *r, char *why)
{
    if (is_image_format(r->fmt->iformat)) {
        snprintf(why, VIDEO_WHY, "an image (%s), not a video; use image.decode",
                 r->fmt->iformat->name);
        return DSP_EUNSUPPORTED;
    }
    int s = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (s < 0) {
        snprintf(why, VIDEO_WHY, "no video stream (%s with %u stream%s: audio or data only?)",
                 r->fmt->iformat->name, r->fmt->nb_streams, r->fmt->nb_streams == 1 ? "" : "s");
        return DSP_EUNSUPPORTED;
    }
    r->stream = s;
    const AVCodecParameters *par = r->fmt->streams[s]->codecpar;
    if (par->width <= 0 || par->height <= 0) {
        snprintf(why, VIDEO_WHY, "the video stream has no frame size (%dx%d): corrupt header",
                 par->width, par->height);
        return DSP_EFORMAT;
    }
    int64_t declared = r->fmt->streams[s]->nb_frames;
    if (declared > r->o.max_frames) {
        snprintf(why, VIDEO_WHY, "the header declares %lld frames, more than max_frames=%lld",
                 (long long)declared, (long long)r->o.max_frames);
        return DSP_ELIMIT;
    }
    if ((int64_t)par->width * par->height > r->o.max_pixels) {
        snprintf(why, VIDEO_WHY, "%dx%d frames (%lld pixels) exceed max_pixels=%lld",
                 par->width, par->height, (long long)par->width * par->height,
                 (long long)r->o.max_pixels);
        return DSP_ELIMIT;
    }
    return 0;
}

static void read_stream_facts(video_reader *r)
{
    const AVStream *st = r->fmt->streams[r->stream];
    const AVCodecParameters *par = st->codecpar;
    r->tb = av_q2d(st->time_base);
    r->start_pts = st->start_time;
    AVRational fr = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    r->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    if (st->duration > 0 && st->duration != AV_NOPTS_VALUE)
        r->duration = (double)st->duration * r->tb;
    else if (r->fmt->duration > 0)
        r->duration = (double)r->fmt->duration / AV_TIME_BASE;
    r->declared_frames = st->nb_frames > 0 ? st->nb_frames : 0;
    r->width = par->width;
    r->height = par->height;
    r->codec = avcodec_get_name(par->codec_id);
    r->container = r->fmt->iformat->name;
}

static int open_decoder(video_reader *r, char *why)
{
    const AVCodecParameters *par = r->fmt->streams[r->stream]->codecpar;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec) {
        char tag[AV_FOURCC_MAX_STRING_SIZE] = "";
        av_fourcc_make_string(tag, par->codec_tag);
        snprintf(why, VIDEO_WHY, "unsupported codec %s (tag %s): the installed FFmpeg has no "
                 "decoder for it; transcode the file (ffmpeg -i IN -c:v libx264 OUT.mp4)",
                 par->codec_id == AV_CODEC_ID_NONE ? "(unknown)" : avcodec_get_name(par->codec_id),
                 tag);
        return DSP_EUNSUPPORTED;
    }
    r->dec = avcodec_alloc_context3(codec);
    if (!r->dec)
        return fail_why(why, DSP_ENOMEM, "out of memory", 0);
    int err = avcodec_parameters_to_context(r->dec, par);
    if (err < 0)
        return fail_why(why, DSP_EFORMAT, "bad codec parameters", err);
    r->dec->pkt_timebase = r->fmt->streams[r->stream]->time_base;
    r->dec->thread_count = r->o.threads;
    r->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    snprintf(r->hwaccel_used, sizeof r->hwaccel_used, "none");
    if (r->o.hwaccel == VIDEO_HWACCEL_CUDA)
        try_cuda(r, codec);
    err = avcodec_open2(r->dec, codec, NULL);
    if (err < 0)
        return fail_why(why, DSP_EUNSUPPORTED, "cannot open the decoder", err);
    return 0;
}

static void close_demuxer(video_reader *r)
{
    avformat_close_input(&r->fmt);
    if (r->io) {
        av_freep(&r->io->buffer);
        avio_context_free(&r->io);
    }
}

int video_open(video_reader *r, const uint8_t *data, size_t size, const video_open_opts *o,
               char *why)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, log_install);
    last_error[0] = '\0';
    memset(r, 0, sizeof *r);
    r->data = data;
    r->size = size;
    r->o = *o;
    r->stream = -1;
    r->hw_pix = AV_PIX_FMT_NONE;
    int err = open_demuxer(r, why);
    if (!err)
        err = check_stream(r, why);
    if (!err) {
        read_stream_facts(r);
        err = open_decoder(r, why);
    }
    if (!err) {
        r->pkt = av_packet_alloc();
        r->frame = av_frame_alloc();
        r->sw = av_frame_alloc();
        if (!r->pkt || !r->frame || !r->sw)
            err = fail_why(why, DSP_ENOMEM, "out of memory", 0);
    }
    if (err < 0)
        video_close(r);
    return err;
}

int video_scan(video_reader *r, video_scan_result *res, char *why)
{
    int64_t count = 0;
    double end = 0;
    int err;
    while ((err = av_read_frame(r->fmt, r->pkt)) >= 0) {
        const AVPacket *p = r->pkt;
        if (p->stream_index == r->stream) {
            count++;
            int64_t ts = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
            if (ts != AV_NOPTS_VALUE) {
                int64_t start = r->start_pts != AV_NOPTS_VALUE ? r->start_pts : 0;
                double e = (double)(ts - start + (p->duration > 0 ? p->duration : 0)) * r->tb;
                end = e > end ? e : end;
            }
        }
        av_packet_unref(r->pkt);
        if (count > r->o.max_frames) {
            snprintf(why, VIDEO_WHY, "more than max_frames=%lld frames",
                     (long long)r->o.max_frames);
            return DSP_ELIMIT;
        }
    }
    res->packets = count;
    res->end = end;
    res->read_error = err != AVERROR_EOF ? err : 0;
    /* Seeking back is not reliable in every container: start over */
    close_demuxer(r);
    err = open_demuxer(r, why);
    if (!err && (err = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0)) !=
        r->stream)
        err = fail_why(why, DSP_EFORMAT, "the video stream changed when reopened", 0);
    return err < 0 ? err : 0;
}

int video_truncation(const video_reader *r, const video_scan_result *s, char *why)
{
    why[0] = '\0';
    if (r->declared_frames > 0 && s->packets < r->declared_frames)
        snprintf(why, VIDEO_WHY, "only %lld of the %lld frames the header declares are in the "
                 "file (truncated or damaged?)", (long long)s->packets, (long long)r->declared_frames);
    else if (r->fmt->nb_streams == 1 && r->duration > 0 && s->end > 0 &&
             s->end < r->duration - 0.5)
        /* with audio beside it, the container's duration may be the audio's */
        snprintf(why, VIDEO_WHY, "the frames end at %.3f s of the %.3f s the header declares "
                 "(truncated?)", s->end, r->duration);
    else if (s->read_error) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(s->read_error, e, sizeof e);
        snprintf(why, VIDEO_WHY, "reading stops after %lld frames: %s%s%s%s", (long long)s->packets,
                 e, last_error[0] ? " (FFmpeg: " : "", last_error, last_error[0] ? ")" : "");
    }
    return why[0] != '\0';
}

/* Feed the decoder one packet of our stream, or start draining at the end. */
static int feed(video_reader *r, char *why)
{
    for (;;) {
        int err = av_read_frame(r->fmt, r->pkt);
        if (err < 0) {
            /* truncation shows as EOF or an I/O error here: the caller
             * compares what was decoded with what the header declared */
            r->draining = 1;
            return avcodec_send_packet(r->dec, NULL) < 0 ? DSP_EOF : 0;
        }
        if (r->pkt->stream_index != r->stream) {
            av_packet_unref(r->pkt);
            continue;
        }
        err = avcodec_send_packet(r->dec, r->pkt);
        av_packet_unref(r->pkt);
        if (err == AVERROR(ENOMEM))
            return fail_why(why, DSP_ENOMEM, "out of memory", err);
        if (err < 0 && err != AVERROR(EAGAIN))
            r->bad_packets++;
        return 0;
    }
}

/* The frame in system memory, as swscale needs it. */
static int download(video_reader *r, AVFrame **out, char *why)
{
    if (r->frame->format != r->hw_pix || r->hw_pix == AV_PIX_FMT_NONE) {
        *out = r->frame;
        return 0;
    }
    av_frame_unref(r->sw);
    int err = av_hwframe_transfer_data(r->sw, r->frame, 0);
    if (err < 0)
        return fail_why(why, DSP_EIO, "cannot copy a frame from the GPU", err);
    av_frame_copy_props(r->sw, r->frame);
    *out = r->sw;
    return 0;
}

static void note_timing(video_reader *r, const AVFrame *f, double *pts)
{
    int64_t ts = f->best_effort_timestamp;
    double t;
    if (ts == AV_NOPTS_VALUE) {
        /* no timestamps at all: count frames at the nominal rate */
        t = r->frames == 0 ? 0 : r->last_pts + (r->last_dur > 0 ? r->last_dur : 1 / 25.0);
    } else {
        if (r->start_pts == AV_NOPTS_VALUE)
            r->start_pts = ts;
        t = (double)(ts - r->start_pts) * r->tb;
    }
    /* presentation order is ascending; a broken stream must not run time backwards */
    if (r->frames > 0 && t < r->last_pts)
        t = r->last_pts;
    double d = f->pkt_duration > 0 ? (double)f->pkt_duration * r->tb : 0;
    if (d <= 0 && r->fps > 0)
        d = 1 / r->fps;
    r->last_pts = t;
    r->last_dur = d;
    *pts = t;
}

int video_next_frame(video_reader *r, AVFrame **out, double *pts, char *why)
{
    for (;;) {
        av_frame_unref(r->frame);
        int err = avcodec_receive_frame(r->dec, r->frame);
        if (err == 0) {
            const AVFrame *f = r->frame;
            if ((int64_t)f->width * f->height > r->o.max_pixels) {
                snprintf(why, VIDEO_WHY, "a %dx%d frame exceeds max_pixels=%lld", f->width,
                         f->height, (long long)r->o.max_pixels);
                return DSP_ELIMIT;
            }
            if (r->frames >= r->o.max_frames) {
                snprintf(why, VIDEO_WHY, "more than max_frames=%lld frames",
                         (long long)r->o.max_frames);
                return DSP_ELIMIT;
            }
            if (f->flags & AV_FRAME_FLAG_CORRUPT || f->decode_error_flags)
                r->corrupt_frames++;
            note_timing(r, f, pts);
            r->frames++;
            return download(r, out, why);
        }
        if (err == AVERROR_EOF)
            return DSP_EOF;
        if (err == AVERROR(ENOMEM))
            return fail_why(why, DSP_ENOMEM, "out of memory", err);
        if (err != AVERROR(EAGAIN)) {
            /* a damaged frame: count it, the next one may decode */
            r->bad_packets++;
            if (r->draining)
                return DSP_EOF;
            continue;
        }
        if (r->draining)
            return DSP_EOF;
        if ((err = feed(r, why)) < 0)
            return err;
    }
}

void video_close(video_reader *r)
{
    av_packet_free(&r->pkt);
    av_frame_free(&r->frame);
    av_frame_free(&r->sw);
    avcodec_free_context(&r->dec);
    av_buffer_unref(&r->hwdev);
    close_demuxer(r);
}
