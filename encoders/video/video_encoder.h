/* video_encoder.h - the operators of dsp_video_encoder.so (video.classify, video.segments). */
#ifndef DSPIPE_ENC_VIDEO_ENCODER_H
#define DSPIPE_ENC_VIDEO_ENCODER_H

#include <dspipe/plugin.h>

extern const dsp_op_def video_classify_op;
extern const dsp_op_def video_segments_op;

#endif
