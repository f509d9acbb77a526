/* video.h - the FFmpeg reader, frame sampling and scaling shared by the video operators (not API). */
#ifndef DSP_VIDEO_H
#define DSP_VIDEO_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <dspipe/plugin.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>

extern const dsp_op_def video_decode_op;
extern const dsp_op_def video_probe_op;
extern const dsp_op_def video_contact_sheet_op;

/* Room for a reason, without the file name (the caller adds it). */
#define VIDEO_WHY 512

enum { VIDEO_HWACCEL_NONE, VIDEO_HWACCEL_CUDA };

typedef struct video_open_opts {
    int threads;                /* decoder threads, 0 = one per core */
    int hwaccel;                /* VIDEO_HWACCEL_* asked for */
    int64_t max_pixels;         /* coded width x height above this: DSP_ELIMIT */
    int64_t max_frames;         /* more frames (or packets) than this: DSP_ELIMIT */
} video_open_opts;

/* One open video stream: demuxer over memory, decoder, and where it stands. */
typedef struct video_reader {
    AVFormatContext *fmt;
    AVIOContext *io;
    const uint8_t *data;        /* borrowed: the whole file */
    size_t size, pos;
    AVCodecContext *dec;
    AVBufferRef *hwdev;
    int hw_pix;                 /* enum AVPixelFormat the CUDA decoder outputs */
    int stream;                 /* index of the video stream */
    AVPacket *pkt;
    AVFrame *frame, *sw;        /* sw: a hardware frame copied to memory */
    int draining;               /* the demuxer is done; the decoder is flushing */
    video_open_opts o;

    /* what the file says about itself */
    double tb;                  /* seconds per pts tick of the stream */
    int64_t start_pts;          /* stream start, AV_NOPTS_VALUE if unknown */
    double fps;                 /* average frame rate, 0 if unknown */
    double duration;            /* seconds, 0 if unknown */
    int64_t declared_frames;    /* frames the header declares, 0 if unknown */
    int width, height;
    const char *codec;          /* static names */
    const char *container;
    char hwaccel_used[16];      /* "cuda" or "none" */
    char hwaccel_note[VIDEO_WHY]; /* why software was used although cuda was asked */

    /* counters while decoding */
    int64_t frames;             /* frames returned so far */
    int64_t bad_packets;        /* packets the decoder refused */
    int64_t corrupt_frames;     /* frames the decoder flagged as corrupt */
    double last_pts;            /* seconds (relative to the start) of the last frame */
    double last_dur;            /* its duration in seconds, 0 if unknown */
} video_reader;

/* Open the video stream of a file held in memory (data stays borrowed until
 * video_close); the container is told by the content. Returns
 * 0 or a negative DSP_E* code with the reason in why (VIDEO_WHY bytes):
 * DSP_EFORMAT (not a video container, corrupt header), DSP_EUNSUPPORTED (no
 * video stream, no decoder for its codec, an image), DSP_ELIMIT, DSP_ENOMEM.
 * Never reads outside data[0..size). */
int video_open(video_reader *r, const uint8_t *data, size_t size, const video_open_opts *o,
               char *why);
/* What a pass over the packets (no decoding) found. */
typedef struct video_scan_result {
    int64_t packets;            /* video packets: the frames the decoder will output */
    double end;                 /* seconds: where the last packet ends */
    int read_error;             /* an AVERROR other than EOF that stopped reading, or 0 */
} video_scan_result;

/* Read every packet from the current position (cheap: nothing is decoded),
 * then rewind to the start by reopening. DSP_ELIMIT past max_frames. */
int video_scan(video_reader *r, video_scan_result *res, char *why);
/* 1 with the reason in why when the scan shows a truncated or unreadable
 * file: fewer packets than the header declares, packets ending well before
 * the declared duration, or a read error; else 0. */
int video_truncation(const video_reader *r, const video_scan_result *s, char *why);
/* Next decoded frame in presentation order (borrowed until the next call),
 * its pts in seconds from the stream start in *pts. 0, DSP_EOF at the end, or a
 * negative code with why. Packets the decoder refuses are counted in
 * bad_packets and skipped. */
int video_next_frame(video_reader *r, AVFrame **out, double *pts, char *why);
void video_close(video_reader *r);

/* The last FFmpeg error message logged on this thread ("" if none), cleared
 * by video_open. FFmpeg's own log is routed here and to dsp_log (debug). */
const char *video_ffmpeg_last_error(void);

/* ---- sampling (sample.c): pure functions, tested directly ----------------- */
/* PyTorchVideo's UniformTemporalSubsample per clip: the n frames split into
 * num_clips equal spans, k indices in each, linspace(first, last, k) truncated
 * (repeats when the span is shorter than k). idx gets num_clips * k entries,
 * non-decreasing. n >= 1. */
void video_uniform_indices(int64_t n, int num_clips, int k, int64_t *idx);
/* Seconds by which a frame's pts may miss the grid time it stands for
 * (timebase rounding: Matroska stores milliseconds). */
#define VIDEO_PTS_TOLERANCE 1e-3
/* How many points of the grid j / fps (j >= 0) fall in [t0, t1), both ends
 * moved VIDEO_PTS_TOLERANCE earlier: the frames shown at those times. */
int64_t video_fps_hits(double fps, double t0, double t1);
/* Output size for a w x h source: exact width x height when both are given,
 * one of them (other side keeps the aspect ratio, rounded), shorter side =
 * shorter (torchvision's Resize(int): the longer side truncated), else the
 * source size. Never below 1. */
void video_target_size(int w, int h, int width, int height, int shorter, int *ow, int *oh);

#endif /* DSP_VIDEO_H */
