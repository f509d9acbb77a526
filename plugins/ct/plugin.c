/* plugin.c - descriptor of dsp_ct.so: chest CT lung mask, lung nodule detection, findings report. */
#include "ct.h"

static const dsp_op_def *const ct_ops[] = {
    &ct_lung_mask_op,
    &ct_nodules_op,
    &ct_report_op,
    NULL
};

DSP_PLUGIN_DEFINE("ct", "0.1.0", "MIT",
                  "chest CT: lung mask, lung nodule candidates, findings.json and key images",
                  ct_ops)
