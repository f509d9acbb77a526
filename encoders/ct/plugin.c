/* plugin.c - descriptor of dsp_ct_classifier.so: the learned lung nodule classifier (ct.classify). */
#include "ct.h"

static const dsp_op_def *const classifier_ops[] = {
    &ct_classify_op,
    NULL
};

DSP_PLUGIN_DEFINE("ct_classifier", "0.1.0", "MIT",
                  "learned lung nodule classifier: a small 3-D CNN over ct.nodules' candidates",
                  classifier_ops)
