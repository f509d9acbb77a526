/* plugin.c - descriptor of dsp_video_encoder.so: video classifiers (VideoMAE, torchvision video ResNets). */
#include "video_encoder.h"

static const dsp_op_def *const encoder_ops[] = {
    &video_classify_op,
    &video_segments_op,
    NULL
};

DSP_PLUGIN_DEFINE("video_encoder", "0.1.0", "MIT",
                  "video classifiers: VideoMAE (Hugging Face) and torchvision's r3d_18, mc3_18, r2plus1d_18",
                  encoder_ops)
