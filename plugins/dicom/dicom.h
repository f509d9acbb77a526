/* dicom.h - what the files of the dicom plugin share (not API): one decoded file, series building, limits. */
#ifndef DSP_DICOM_H
#define DSP_DICOM_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <dspipe/plugin.h>

extern const dsp_op_def dicom_read_op;
extern const dsp_op_def dicom_studies_op;
extern const dsp_op_def dicom_window_op;
extern const dsp_op_def dicom_resample_op;
extern const dsp_op_def dicom_write_sc_op;
extern const dsp_op_def dicom_write_sr_op;

/* Room for a reason, without the file name (the caller adds it). */
#define DICOM_WHY 512
/* dicom_read_file's "not an image, skip it with a note" result */
#define DICOM_SKIP 1

typedef struct dicom_limits {
    int64_t max_pixels;         /* rows * columns of one frame */
    int64_t max_frames;         /* frames of one file */
    int64_t max_slices;         /* slices of one series */
    int64_t max_bytes;          /* size of one file, and of one decoded file or volume */
} dicom_limits;

/* Patient-identifying attributes: read only with phi=keep. */
enum { PHI_NAME, PHI_ID, PHI_BIRTH_DATE, PHI_SEX, PHI_AGE, PHI_ACCESSION, PHI_INSTITUTION,
       PHI_REFERRING, PHI_STUDY_DATE, PHI_STUDY_TIME, PHI_STUDY_ID, PHI_COUNT };
extern const char *const dicom_phi_keys[PHI_COUNT];

/* One DICOM image file, decoded. */
typedef struct dicom_image {
    char *path;                 /* owned */
    int64_t item;               /* the input item it came from */
    char study_uid[68], series_uid[68], sop_uid[68], sop_class[68], for_uid[68];
    char modality[20], series_desc[72], transfer_syntax[68], photometric[20];
    long series_number, instance_number;
    int has_series_number, has_instance;
    int rows, cols, frames, spp;
    int bits_allocated, bits_stored, is_signed;
    int planar;                 /* PlanarConfiguration 1: colour by plane */
    double slope, intercept;    /* 1, 0 when absent */
    int has_rescale;
    double pixel_spacing[2];    /* between rows, between columns (mm) */
    int has_spacing;
    double thickness, between;  /* SliceThickness, SpacingBetweenSlices */
    int has_thickness, has_between;
    double iop[6];              /* ImageOrientationPatient */
    int has_iop;
    double *ipp;                /* frames x 3 ImagePositionPatient, owned */
    int has_ipp;                /* every frame has a position */
    double window_center, window_width;
    int has_window;
    char *phi[PHI_COUNT];       /* owned, NULL unless phi=keep */
    /* [frames, rows, cols] or [frames, rows, cols, 3] (RGB), the stored
     * values (sign-extended / masked to BitsStored), u8/i8/u16/i16/u32/i32 */
    dsp_tensor *pixels;
} dicom_image;

/* Memory for the decoded images of one dicom.read node: 64 MiB chunks with
 * huge pages, handed out in pieces. A series is hundreds of half-megabyte
 * images held until the end of the stream; allocated one by one they were
 * faulted in 4 KiB at a time, a third of the time of reading a CT series.
 * Each image's tensor holds a reference to its chunk, so a chunk lives as
 * long as any of its images. */
typedef struct dicom_arena {
    dsp_buffer *chunk;          /* the chunk pieces are cut from, NULL before the first */
    size_t used;                /* bytes of it handed out */
} dicom_arena;

/* A new contiguous tensor, from arena's current chunk when it is small
 * enough (a new chunk when the current one is full); a separate allocation
 * (with huge pages when large) when it is not, when arena is NULL, and under
 * AddressSanitizer, which should see every image's bounds. 0, DSP_ENOMEM or
 * DSP_EINVAL (a bad shape). */
int dicom_arena_tensor(dicom_arena *arena, dsp_dtype dt, int ndim, const int64_t *shape,
                       dsp_tensor **out);
/* Drop the arena's reference to its chunk (images keep theirs). */
void dicom_arena_release(dicom_arena *arena);
/* Ask the kernel for transparent huge pages on [p, p + n) (n >= 4 MiB, the
 * whole pages inside): a new volume or chunk is then faulted in 2 MiB at a
 * time, as numpy does for its large arrays. Only advice: a kernel without
 * THP, or with it off, ignores it. */
void dicom_advise_huge_pages(void *p, size_t n);

/* Read and decode one file, its pixels from arena (NULL: a separate
 * allocation). 0; DICOM_SKIP (not DICOM, a DICOMDIR, no pixel data) with
 * the note in why; or a negative DSP_E* code with the reason in why
 * (DICOM_WHY bytes). img is cleared first and must be released with
 * dicom_image_clear either way. */
int dicom_read_file(const char *path, const dicom_limits *lim, int keep_phi, dicom_arena *arena,
                    dicom_image *img, char *why);
void dicom_image_clear(dicom_image *img);
/* The same checks, notes and attributes from the header only (parsing
 * stops before PixelData; img->pixels stays NULL, PHI is not read): for
 * grouping files before reading them. Native pixel data longer than what
 * follows the header is refused as truncated; other damage to the pixels
 * shows only when the file is read. */
int dicom_read_header(const char *path, const dicom_limits *lim, dicom_image *img, char *why);

/* Decode one JPEG 2000 codestream (or JP2 file) with OpenJPEG into out:
 * rows x cols x spp samples, interleaved, of img's bits_allocated and
 * signedness. 0 or a negative code with why. */
int dicom_j2k_decode(const uint8_t *data, size_t size, const dicom_image *img, void *out,
                     char *why);

/* Decode one RLE Lossless frame (its fragments) into out, interleaved
 * samples in host byte order. 0 or DSP_EFORMAT with why. */
int dicom_rle_decode(const uint8_t *data, size_t size, const dicom_image *img, void *out,
                     char *why);

/* ---- series (series.c) ------------------------------------------------------ */
typedef struct dicom_series {
    dicom_image **img;          /* borrowed from the reader's list */
    int n_img;
    int64_t slices;             /* frames of all files */
} dicom_series;

/* A built volume: the tensor and the geometry for the metadata. */
typedef struct dicom_volume {
    dsp_tensor *t;              /* f32 [S, R, C] (HU), or u8/u16/u32 [S, R, C, 3] */
    double spacing[3];          /* slice, row, column (mm) */
    double origin[3];           /* first voxel centre, patient LPS (mm) */
    double direction[9];        /* row dir, column dir, slice dir */
    const char *sort;           /* "position", "instance_number", "file_order" */
    char note[DICOM_WHY];       /* a warning worth passing on, or "" */
} dicom_volume;

/* Sort the series' slices, check them and build the volume. 0, or
 * DSP_EFORMAT / DSP_ELIMIT / DSP_ENOMEM with the reason (naming files) in
 * why. spacing_tol is the relative tolerance on slice spacing; allow_shear
 * turns an in-plane offset between slices into a note. */
int dicom_series_build(const dicom_series *s, double spacing_tol, int allow_shear,
                       const dicom_limits *lim, dicom_volume *v, char *why);

/* Append s to a JSON array text held in *json (malloc'd, starts as NULL). */
int dicom_json_append(char **json, const char *s);

/* ---- writers (write_common.c; ops in write_sc.c, write_sr.c) ----------------- */
struct dcmw_patient;

/* The folder a writer puts this packet's study in, malloc'd into *out:
 * dir/<study_uid> when dir is set, else meta "report_dir" (ct.report's
 * per-study folder). Fails the item (dsp_node_fail) when neither exists. */
int dicom_out_dir(dsp_node *node, const dsp_packet *p, const char *dir, char **out);

/* Patient and study attributes from meta "patient" (dicom.read phi=keep)
 * when keep is set and the dictionary exists; otherwise all NULL, so the
 * writers leave them empty. Strings borrowed from p. */
void dicom_patient_from_meta(const dsp_packet *p, int keep, struct dcmw_patient *pt);

/* Claim path for this run, write it atomically with fn(stream, arg, why,
 * n) and commit. 0 or the failure recorded on the node. */
typedef int (*dicom_write_fn)(void *fp, const void *arg, char *why, size_t n);
int dicom_write_file(dsp_node *node, const char *path, dicom_write_fn fn, const void *arg);

/* 0 when root is empty or a valid UID root for generated UIDs (digits and
 * dots, at most 24 characters, so 40 remain for DCMTK's suffix). */
int dicom_uid_root_check(dsp_node *node, const char *root);

#endif /* DSP_DICOM_H */
