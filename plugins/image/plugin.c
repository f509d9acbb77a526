/* plugin.c - descriptor of dsp_image.so: PNG/JPEG decode and encode, resize, crop, pad, normalize, overlay. */
#include "image.h"

static const dsp_op_def *const image_ops[] = {
    &image_decode_op,
    &image_encode_op,
    &image_resize_op,
    &image_crop_op,
    &image_pad_op,
    &image_normalize_op,
    &image_overlay_op,
    NULL
};

DSP_PLUGIN_DEFINE("image", "0.1.0", "MIT",
                  "PNG/JPEG decode and encode, Pillow-exact resize, centre crop, pad, normalize, "
                  "overlays (boxes, contours, text)",
                  image_ops)
