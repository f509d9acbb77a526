/* ctcnn.h - the lung nodule classifier of ct.classify: a small 3-D CNN over candidate patches (not API). */
#ifndef DSPIPE_ENC_CTCNN_H
#define DSPIPE_ENC_CTCNN_H

#include <stddef.h>
#include <stdint.h>

#include <dspipe/tensor.h>

/* What config.json says (examples/ct_classifier/train.py writes it):
 *   model_type   "ct_nodule_cnn"
 *   patch_size   side of the cubic patch, voxels
 *   spacing_mm   the voxel size the model was trained on (isotropic)
 *   hu_min, hu_max  HU are clipped to this range and scaled to [0, 1]
 *   bn_eps       batch norm epsilon
 *   blocks       [{channels, kernel, stride, pool}, ...]: conv3d (no bias,
 *                zero padding kernel / 2) + batch norm + ReLU, then a max
 *                pool of `pool` (1: none); then a global average pool and a
 *                linear layer to 2 logits (other, nodule).
 *   training.screening_min_prob  optional: the threshold that kept 99 % of
 *                the held-out nodules (train.py's operating point). */
typedef struct ctcnn_config {
    int64_t patch;
    double spacing_mm;
    double hu_min, hu_max;
    double bn_eps;
    int n_blocks;
    double screening_min_prob;  /* training.screening_min_prob; -1 when absent */
} ctcnn_config;

typedef struct ctcnn ctcnn;

/* Open a model folder (config.json + model.safetensors) and check the
 * config and every tensor's shape against each other. On failure returns a
 * negative DSP_E* code (DSP_EFORMAT for a config or tensor that does not
 * fit, dsp_model_open's codes otherwise) with a message naming the folder
 * and what is wrong in why (n bytes, CTCNN_WHY is enough). */
#define CTCNN_WHY 768
int ctcnn_open(const char *dir, ctcnn **out, char *why, size_t n);

/* Free the model and set *m to NULL; NULL is a no-op. */
void ctcnn_close(ctcnn **m);

const ctcnn_config *ctcnn_get_config(const ctcnn *m);

/* Cut the patch x patch x patch cube of HU values centred on voxel
 * (floor(c + 0.5) per axis; the centre voxel is at index patch / 2) from the
 * [d, h, w] volume hu, air (-1000 HU) outside the volume, and normalise it as
 * the config says into out (patch^3 floats). */
void ctcnn_cut_patch(const ctcnn_config *cfg, const float *hu, int64_t d, int64_t h, int64_t w,
                     const double c[3], int64_t patch, float *out);

/* Logits [n, 2] (other, nodule) for normalised patches x, f32 [n, 1, p, p, p]
 * (*logits: transfer full). Returns 0 or the failing operator's code, with
 * its message in dsp_ops_error(). */
int ctcnn_forward(const ctcnn *m, const dsp_tensor *x, dsp_tensor **logits);

#endif /* DSPIPE_ENC_CTCNN_H */
