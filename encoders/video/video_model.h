/* video_model.h - video classifiers on core/ops: VideoMAE (Hugging Face) and torchvision's video ResNets.
 *
 * The library behind the video.classify operator, usable on its own (the
 * check tests call it directly):
 *
 *     video_model *m; char *why = NULL;
 *     if (video_model_open("videomae-base-finetuned-kinetics", &m, &why) < 0) {
 *         fprintf(stderr, "%s\n", why); free(why); ...
 *     }
 *     const video_model_info *in = video_model_get_info(m);
 *     // x: f32 [batch, 3, T, H, W], normalised with in->mean / in->std
 *     dsp_tensor *logits = NULL;
 *     if (video_model_forward(m, x, &logits) < 0) fprintf(stderr, "%s\n", video_model_errmsg(m));
 *     video_model_close(&m);
 *
 * A folder is either a transformers VideoMAEForVideoClassification
 * (config.json with model_type "videomae" + model.safetensors, optional
 * preprocessor_config.json) or a torchvision VideoResNet written by
 * tests/reference/export_video_resnet.py (config.json with model_type
 * "torchvision_video_resnet" and arch r3d_18 | mc3_18 | r2plus1d_18).
 * docs/video_encoder.md describes both layouts.
 *
 * Threading: the weights are read-only; a video_model keeps its last error
 * message, so one model serves one thread at a time.
 * Errors: functions return 0 or a negative DSP_E* code; video_model_open's
 * message is malloc'd into *errmsg (the caller frees it), the others' is in
 * video_model_errmsg().
 */
#ifndef DSPIPE_ENC_VIDEO_MODEL_H
#define DSPIPE_ENC_VIDEO_MODEL_H

#include <stdint.h>
#include <dspipe/ops.h>

typedef enum video_arch {
    VIDEO_ARCH_VIDEOMAE = 0,
    VIDEO_ARCH_R3D_18,
    VIDEO_ARCH_MC3_18,
    VIDEO_ARCH_R2PLUS1D_18
} video_arch;

typedef struct video_model_info {
    video_arch arch;
    const char *arch_name;      /* "videomae", "r3d_18", ... */
    int64_t num_classes;
    /* the clip the model takes; 0 = any (the ResNets pool adaptively) */
    int64_t frames, height, width;
    int64_t channels;           /* 3 */
    float mean[3], std[3];      /* to normalise x / 255 per channel */
} video_model_info;

typedef struct video_model video_model;

/* Open a model folder. Refused with a message naming the folder and the
 * reason: an unknown model_type or arch, a missing tensor, a tensor whose
 * shape disagrees with config.json or with the tensors before it, an
 * unsupported hidden_act. *out is NULL on failure. */
int video_model_open(const char *dir, video_model **out, char **errmsg);
void video_model_close(video_model **m);
const video_model_info *video_model_get_info(const video_model *m);
/* Label of class i: config.json's id2label, or "LABEL_<i>" without one.
 * Borrowed: valid until video_model_close. */
const char *video_model_label(const video_model *m, int64_t i);
/* The last failure's message ("" if none); valid until the next call. */
const char *video_model_errmsg(const video_model *m);

/* Logits [batch, num_classes] (f32, a new CPU tensor the caller owns) for
 * x f32 [batch, channels, T, H, W] on the CPU (any strides), already
 * normalised. The whole batch runs as one convolution / GEMM per layer.
 * A clip size the model cannot take (VideoMAE: other than frames x height
 * x width) is DSP_EINVAL with a message saying what it expects. */
int video_model_forward(video_model *m, const dsp_tensor *x, dsp_tensor **logits);

#endif /* DSPIPE_ENC_VIDEO_MODEL_H */
