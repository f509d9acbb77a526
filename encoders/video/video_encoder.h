/* video_encoder.h - the operators of dsp_video_encoder.so (video.classify). */
#ifndef DSPIPE_ENC_VIDEO_ENCODER_H
#define DSPIPE_ENC_VIDEO_ENCODER_H

#include <dspipe/plugin.h>

extern const dsp_op_def video_classify_op;

#endif
