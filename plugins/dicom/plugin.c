/* plugin.c - descriptor of dsp_dicom.so: DICOM series to HU volumes (DCMTK, OpenJPEG), windowing, resampling, SC / SR writers. */
#include "dicom.h"

static const dsp_op_def *const dicom_ops[] = {
    &dicom_studies_op,
    &dicom_read_op,
    &dicom_window_op,
    &dicom_resample_op,
    &dicom_write_sc_op,
    &dicom_write_sr_op,
    NULL
};

DSP_PLUGIN_DEFINE("dicom", "0.1.0", "MIT",
                  "DICOM series to HU volumes (DCMTK + OpenJPEG), windowing, resampling, SC / SR writers",
                  dicom_ops)
