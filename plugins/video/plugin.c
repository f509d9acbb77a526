/* plugin.c - descriptor of dsp_video.so: FFmpeg video decoding with frame sampling for models. */
#include "video.h"

static const dsp_op_def *const video_ops[] = {
    &video_decode_op,
    &video_probe_op,
    &video_contact_sheet_op,
    NULL
};

DSP_PLUGIN_DEFINE("video", "0.1.0", "MIT",
                  "FFmpeg video decode: sampled frames or clips (uniform, fps, every Nth, "
                  "sliding windows), libswscale scaling, optional CUDA hwaccel; contact sheets",
                  video_ops)
