/* dcmw.h - the thin extern "C" face of DCMTK used by the dicom plugin (dcmw.cc reads, dcmw_write.cc writes). */
#ifndef DSP_DICOM_DCMW_H
#define DSP_DICOM_DCMW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One loaded DICOM file (DcmFileFormat). Owned by the caller of dcmw_open. */
typedef struct dcmw_file dcmw_file;

#define DCMW_TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))

/* Register DCMTK's decoders (JPEG, JPEG-LS, RLE) and silence its logger;
 * idempotent and thread-safe. 0, or DSP_EUNSUPPORTED with the reason in why
 * when DCMTK's data dictionary is missing (every file would fail). */
int dcmw_init(char *why, size_t n);

/* Load path (meta header optional; values longer than 4 KiB stay on disk
 * until read). 0, or a negative DSP_E* code with DCMTK's reason in why. */
int dcmw_open(const char *path, dcmw_file **out, char *why, size_t n);
/* The same, but parsing stops before PixelData: the attributes only, the
 * pixels are never read (dcmw_pixel_info and the decoders then see none). */
int dcmw_open_header(const char *path, dcmw_file **out, char *why, size_t n);
/* Bytes of the file parsed: after dcmw_open_header, where the pixel data
 * starts (or the file ends). */
uint64_t dcmw_parsed_bytes(const dcmw_file *f);
/* NULL is a no-op. */
void dcmw_close(dcmw_file *f);

/* Transfer syntax UID of the dataset as read ("" when unknown). */
const char *dcmw_transfer_syntax(const dcmw_file *f);
/* 1 when the file is a DICOMDIR (media storage directory), else 0. */
int dcmw_is_dicomdir(const dcmw_file *f);

/* The value of a top-level attribute as text, every value joined by '\'
 * (DCMTK's findAndGetOFStringArray). Truncated to n-1 bytes. 0, or
 * DSP_ENOENT when absent or empty. Meta header tags (0002,xxxx) included. */
int dcmw_get_str(const dcmw_file *f, uint32_t tag, char *buf, size_t n);
/* Integer value (US, SS, UL, SL, IS) number pos. 0 or DSP_ENOENT. */
int dcmw_get_int(const dcmw_file *f, uint32_t tag, unsigned long pos, long *v);
/* Floating point value (DS, FD, FL, IS) number pos. 0 or DSP_ENOENT. */
int dcmw_get_float(const dcmw_file *f, uint32_t tag, unsigned long pos, double *v);
/* The same for one frame of an enhanced multi-frame object: looked up in
 * item `frame` of PerFrameFunctionalGroupsSequence, then in
 * SharedFunctionalGroupsSequence (searching their nested macros). */
int dcmw_get_frame_float(const dcmw_file *f, int frame, uint32_t tag, unsigned long pos,
                         double *v);

/* Pixel data: *present 1 when (7FE0,0010) exists; *encapsulated 1 for a
 * compressed (fragment) representation; *length the native value length
 * in bytes (0 when encapsulated). */
int dcmw_pixel_info(const dcmw_file *f, int *present, int *encapsulated, uint64_t *length);

/* Decode frame `frame` (0-based) into buf (size bytes, exactly the frame
 * size) through DCMTK (native, deflate, RLE, JPEG, JPEG-LS). Samples come
 * in host byte order. color receives the photometric interpretation of the
 * decoded data (DCMTK converts YBR JPEG to RGB), planar the planar
 * configuration of the output (0 interleaved, 1 planes). 0 or a negative
 * DSP_E* code with the reason in why. */
int dcmw_decode_frame(dcmw_file *f, int frame, void *buf, size_t size, char *color,
                      size_t color_n, int *planar, char *why, size_t n);

/* size bytes of native (uncompressed, possibly deflated) pixel data from
 * byte offset, in host byte order. 0 or a negative code with why. */
int dcmw_read_native(dcmw_file *f, uint64_t offset, void *buf, size_t size, char *why,
                     size_t n);

/* The compressed bytes of frame `frame` of an encapsulated pixel data
 * element: its fragments concatenated (frame boundaries from a fragment
 * count equal to the frame count, else from JPEG 2000 SOC markers). *data
 * is malloc'd, the caller frees it. 0 or a negative code with why. */
int dcmw_frame_bytes(dcmw_file *f, int frame, int n_frames, unsigned char **data,
                     size_t *size, char *why, size_t n);

/* ---- writers (dcmw_write.cc) ------------------------------------------------
 * Strings are borrowed for the call; NULL or "" writes a type 2 attribute
 * empty. Files are written to an open stream (the caller's dsp_outfile) as
 * DICOM Part 10, explicit VR little endian. */

/* Patient and study attributes that identify the patient: only filled with
 * phi=keep, otherwise every field is NULL and written empty. */
typedef struct dcmw_patient {
    const char *name, *id, *birth_date, *sex, *age;
    const char *study_date, *study_time, *study_id, *accession, *referring;
} dcmw_patient;

/* A new UID under root (NULL or "": DCMTK's site root) into buf (65 bytes). */
void dcmw_new_uid(const char *root, char *buf);

/* One Secondary Capture image: 8-bit RGB [rows, cols, 3], interleaved. */
typedef struct dcmw_sc {
    const char *study_uid, *series_uid, *sop_uid;
    int series_number, instance_number;
    const char *series_description, *derivation, *comments;
    const uint8_t *rgb;
    int rows, cols;
    const dcmw_patient *patient;    /* never NULL */
} dcmw_sc;

/* 0 or a negative DSP_E* code with the reason in why. */
int dcmw_write_sc(void *fp, const dcmw_sc *sc, char *why, size_t n);

/* One finding of the structured report. */
typedef struct dcmw_finding {
    double center_mm[3];            /* patient LPS */
    double diameter_mm, volume_mm3, mean_hu, confidence;
    const char *type;               /* "solid" / "subsolid" */
    const char *lung_rads;          /* category, e.g. "4A" */
    const char *key_image_uid;      /* its SC instance, or NULL */
} dcmw_finding;

/* A Comprehensive 3D SR of lung nodule findings. */
typedef struct dcmw_sr {
    const char *study_uid, *series_uid, *sop_uid, *for_uid;
    int series_number;
    const char *source_series_uid, *source_sop_class;
    const char *const *source_sops; /* n_source SOP instance UIDs */
    int n_source;
    const char *sc_series_uid;      /* the key images' series, or NULL */
    const dcmw_finding *f;
    int nf;
    const char *detector;           /* free text for the observer context */
    const dcmw_patient *patient;    /* never NULL */
} dcmw_sr;

/* 0 or a negative DSP_E* code with the reason (DCMTK's SR checks) in why. */
int dcmw_write_sr(void *fp, const dcmw_sr *sr, char *why, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* DSP_DICOM_DCMW_H */
