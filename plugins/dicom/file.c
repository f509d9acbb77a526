/* file.c - read one DICOM file: sniff, check limits, read the attributes a volume needs, decode every frame. */
#include "dicom.h"
#include "dcmw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

const char *const dicom_phi_keys[PHI_COUNT] = {
    "patient_name", "patient_id", "patient_birth_date", "patient_sex", "patient_age",
    "accession_number", "institution_name", "referring_physician", "study_date",
    "study_time", "study_id"
};
static const uint32_t phi_tags[PHI_COUNT] = {
    DCMW_TAG(0x0010, 0x0010), DCMW_TAG(0x0010, 0x0020), DCMW_TAG(0x0010, 0x0030),
    DCMW_TAG(0x0010, 0x0040), DCMW_TAG(0x0010, 0x1010), DCMW_TAG(0x0008, 0x0050),
    DCMW_TAG(0x0008, 0x0080), DCMW_TAG(0x0008, 0x0090), DCMW_TAG(0x0008, 0x0020),
    DCMW_TAG(0x0008, 0x0030), DCMW_TAG(0x0020, 0x0010)
};

/* The transfer syntaxes we decode; anything else is refused by name. */
/* codec: 0 DCMTK (or native), 1 JPEG 2000 (OpenJPEG), 2 RLE (rle.c) */
static const struct { const char *uid, *name; int codec; } syntaxes[] = {
    { "1.2.840.10008.1.2", "implicit VR little endian", 0 },
    { "1.2.840.10008.1.2.1", "explicit VR little endian", 0 },
    { "1.2.840.10008.1.2.1.99", "deflated explicit VR little endian", 0 },
    { "1.2.840.10008.1.2.2", "explicit VR big endian", 0 },
    { "1.2.840.10008.1.2.4.50", "JPEG baseline", 0 },
    { "1.2.840.10008.1.2.4.51", "JPEG extended (12-bit)", 0 },
    { "1.2.840.10008.1.2.4.57", "JPEG lossless", 0 },
    { "1.2.840.10008.1.2.4.70", "JPEG lossless SV1", 0 },
    { "1.2.840.10008.1.2.4.80", "JPEG-LS lossless", 0 },
    { "1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless", 0 },
    { "1.2.840.10008.1.2.4.90", "JPEG 2000 lossless", 1 },
    { "1.2.840.10008.1.2.4.91", "JPEG 2000", 1 },
    { "1.2.840.10008.1.2.5", "RLE lossless", 2 },
};

void dicom_image_clear(dicom_image *img)
{
    free(img->path);
    free(img->ipp);
    for (int i = 0; i < PHI_COUNT; i++)
        free(img->phi[i]);
    dsp_tensor_unref(&img->pixels);
    memset(img, 0, sizeof *img);
}

static int has_dicom_extension(const char *path)
{
    const char *dot = strrchr(path, '.'), *sl = strrchr(path, '/');
    if (!dot || (sl && dot < sl))
        return 0;
    return !strcasecmp(dot, ".dcm") || !strcasecmp(dot, ".dicom") || !strcasecmp(dot, ".dic") ||
           !strcasecmp(dot, ".ima");
}

/* A dataset without the 128-byte preamble starts with a group 0002 or 0008
 * element (either byte order); anything else is not DICOM. */
static int looks_like_dicom(const uint8_t *d, size_t n)
{
    if (n >= 132 && memcmp(d + 128, "DICM", 4) == 0)
        return 1;
    if (n < 8)
        return 0;
    unsigned le = d[0] | d[1] << 8, be = d[0] << 8 | d[1];
    return le == 0x0002 || le == 0x0008 || be == 0x0002 || be == 0x0008;
}

static const char *sniff(const uint8_t *d, size_t n)
{
    static const struct { const char *magic; size_t len; const char *name; } known[] = {
        { "\x89PNG", 4, "a PNG image" }, { "\xff\xd8\xff", 3, "a JPEG image" },
        { "GIF8", 4, "a GIF image" }, { "%PDF", 4, "a PDF document" },
        { "\x93NUMPY", 6, "a .npy file" }, { "PK\x03\x04", 4, "a ZIP archive" },
        { "\x1f\x8b", 2, "a gzip file" }, { "II*\0", 4, "a TIFF image" },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (n >= known[i].len && memcmp(d, known[i].magic, known[i].len) == 0)
            return known[i].name;
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        text += (d[i] >= 32 && d[i] < 127) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t';
    return n && text == n ? "text" : "unknown format";
}

/* First bytes of the file and its size, for sniffing before DCMTK sees it. */
static int peek(const char *path, uint8_t *head, size_t *n, uint64_t *size, char *why)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, DICOM_WHY, "cannot read: %s", strerror(errno));
        return errno == ENOENT ? DSP_ENOENT : DSP_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, DICOM_WHY, "not a regular file");
        return DSP_EINVAL;
    }
    *size = (uint64_t)st.st_size;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(why, DICOM_WHY, "cannot read: %s", strerror(errno));
        return DSP_EIO;
    }
    *n = fread(head, 1, *n, fp);
    fclose(fp);
    return 0;
}

static void get_str(const dcmw_file *f, uint32_t tag, char *buf, size_t n)
{
    dcmw_get_str(f, tag, buf, n);
    /* DICOM pads with spaces; a trailing NUL pad is already gone */
    size_t len = strlen(buf);
    while (len && buf[len - 1] == ' ')
        buf[--len] = '\0';
}

/* RT dose and similar multi-frame objects give one position and each frame's
 * offset along the normal (GridFrameOffsetVector). 1 when every frame got one. */
static int grid_positions(const dcmw_file *f, dicom_image *img)
{
    double p0[3], off;
    const double *r = img->iop, *c = img->iop + 3;
    double nrm[3] = { r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2],
                      r[0] * c[1] - r[1] * c[0] };
    for (int i = 0; i < 3; i++)
        if (dcmw_get_float(f, DCMW_TAG(0x0020, 0x0032), (unsigned long)i, &p0[i]) != 0)
            return 0;
    for (int k = 0; k < img->frames; k++) {
        if (dcmw_get_float(f, DCMW_TAG(0x3004, 0x000C), (unsigned long)k, &off) != 0)
            return 0;
        for (int i = 0; i < 3; i++)
            img->ipp[3 * k + i] = p0[i] + off * nrm[i];
    }
    return 1;
}

static int read_attributes(const dcmw_file *f, int keep_phi, dicom_image *img, char *why)
{
    long v;
    get_str(f, DCMW_TAG(0x0020, 0x000D), img->study_uid, sizeof img->study_uid);
    get_str(f, DCMW_TAG(0x0020, 0x000E), img->series_uid, sizeof img->series_uid);
    get_str(f, DCMW_TAG(0x0008, 0x0018), img->sop_uid, sizeof img->sop_uid);
    get_str(f, DCMW_TAG(0x0008, 0x0016), img->sop_class, sizeof img->sop_class);
    get_str(f, DCMW_TAG(0x0020, 0x0052), img->for_uid, sizeof img->for_uid);
    get_str(f, DCMW_TAG(0x0008, 0x0060), img->modality, sizeof img->modality);
    get_str(f, DCMW_TAG(0x0008, 0x103E), img->series_desc, sizeof img->series_desc);
    get_str(f, DCMW_TAG(0x0028, 0x0004), img->photometric, sizeof img->photometric);
    img->has_series_number = dcmw_get_int(f, DCMW_TAG(0x0020, 0x0011), 0, &img->series_number) == 0;
    img->has_instance = dcmw_get_int(f, DCMW_TAG(0x0020, 0x0013), 0, &img->instance_number) == 0;

    img->rows = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0010), 0, &v) == 0 ? (int)v : 0;
    img->cols = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0011), 0, &v) == 0 ? (int)v : 0;
    img->spp = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0002), 0, &v) == 0 ? (int)v : 1;
    img->bits_allocated = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0100), 0, &v) == 0 ? (int)v : 0;
    img->bits_stored = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0101), 0, &v) == 0 ? (int)v
                                                                           : img->bits_allocated;
    img->is_signed = dcmw_get_int(f, DCMW_TAG(0x0028, 0x0103), 0, &v) == 0 && v == 1;
    img->planar = img->spp > 1 && dcmw_get_int(f, DCMW_TAG(0x0028, 0x0006), 0, &v) == 0 && v == 1;
    char nf[32] = "";
    get_str(f, DCMW_TAG(0x0028, 0x0008), nf, sizeof nf);
    img->frames = nf[0] ? atoi(nf) : 1;
    if (!img->photometric[0])
        snprintf(img->photometric, sizeof img->photometric, "%s",
                 img->spp == 3 ? "RGB" : "MONOCHROME2");

    if (img->rows <= 0 || img->cols <= 0 || img->frames <= 0) {
        snprintf(why, DICOM_WHY, "bad image size: Rows %d, Columns %d, NumberOfFrames %d",
                 img->rows, img->cols, img->frames);
        return DSP_EFORMAT;
    }
    if ((img->bits_allocated != 8 && img->bits_allocated != 16 && img->bits_allocated != 32) ||
        img->bits_stored < 1 || img->bits_stored > img->bits_allocated) {
        snprintf(why, DICOM_WHY, "unsupported sample size: BitsAllocated %d, BitsStored %d "
                 "(8, 16 and 32-bit samples are read)", img->bits_allocated, img->bits_stored);
        return DSP_EUNSUPPORTED;
    }
    if (img->spp != 1 && img->spp != 3) {
        snprintf(why, DICOM_WHY, "unsupported SamplesPerPixel %d (1 or 3 are read)", img->spp);
        return DSP_EUNSUPPORTED;
    }
    if (!strcmp(img->photometric, "PALETTE COLOR")) {
        snprintf(why, DICOM_WHY, "PALETTE COLOR images are not supported (no lookup "
                 "table is applied)");
        return DSP_EUNSUPPORTED;
    }

    /* rescale: top level, else the enhanced multi-frame functional groups */
    img->has_rescale = dcmw_get_float(f, DCMW_TAG(0x0028, 0x1053), 0, &img->slope) == 0 ||
                       dcmw_get_frame_float(f, 0, DCMW_TAG(0x0028, 0x1053), 0, &img->slope) == 0;
    if (!img->has_rescale)
        img->slope = 1.0;
    if (dcmw_get_float(f, DCMW_TAG(0x0028, 0x1052), 0, &img->intercept) != 0 &&
        dcmw_get_frame_float(f, 0, DCMW_TAG(0x0028, 0x1052), 0, &img->intercept) != 0)
        img->intercept = 0.0;
    if (!(img->slope == img->slope) || img->slope == 0.0)   /* NaN or 0: meaningless */
        img->slope = 1.0;

    int frame_fg = img->frames > 1;
    for (int i = 0; i < 2; i++)
        if (dcmw_get_float(f, DCMW_TAG(0x0028, 0x0030), i, &img->pixel_spacing[i]) == 0 ||
            dcmw_get_frame_float(f, 0, DCMW_TAG(0x0028, 0x0030), i, &img->pixel_spacing[i]) == 0)
            img->has_spacing++;
    img->has_spacing = img->has_spacing == 2 && img->pixel_spacing[0] > 0 &&
                       img->pixel_spacing[1] > 0;
    img->has_thickness = dcmw_get_float(f, DCMW_TAG(0x0018, 0x0050), 0, &img->thickness) == 0 ||
                         dcmw_get_frame_float(f, 0, DCMW_TAG(0x0018, 0x0050), 0,
                                              &img->thickness) == 0;
    img->has_between = dcmw_get_float(f, DCMW_TAG(0x0018, 0x0088), 0, &img->between) == 0 ||
                       dcmw_get_frame_float(f, 0, DCMW_TAG(0x0018, 0x0088), 0, &img->between) == 0;
    int n_iop = 0;
    for (int i = 0; i < 6; i++)
        n_iop += dcmw_get_float(f, DCMW_TAG(0x0020, 0x0037), i, &img->iop[i]) == 0 ||
                 dcmw_get_frame_float(f, 0, DCMW_TAG(0x0020, 0x0037), i, &img->iop[i]) == 0;
    img->has_iop = n_iop == 6;

    img->ipp = calloc((size_t)img->frames * 3, sizeof(double));
    if (!img->ipp)
        return DSP_ENOMEM;
    int n_ipp = 0;
    for (int k = 0; k < img->frames; k++) {
        int got = 0;
        for (int i = 0; i < 3; i++)
            got += (frame_fg && dcmw_get_frame_float(f, k, DCMW_TAG(0x0020, 0x0032), i,
                                                     &img->ipp[3 * k + i]) == 0) ||
                   (!frame_fg && dcmw_get_float(f, DCMW_TAG(0x0020, 0x0032), i,
                                                &img->ipp[3 * k + i]) == 0);
        n_ipp += got == 3;
    }
    img->has_ipp = n_ipp == img->frames;
    if (!img->has_ipp && img->frames > 1 && img->has_iop)
        img->has_ipp = grid_positions(f, img);
    img->has_window = dcmw_get_float(f, DCMW_TAG(0x0028, 0x1050), 0, &img->window_center) == 0 &&
                      dcmw_get_float(f, DCMW_TAG(0x0028, 0x1051), 0, &img->window_width) == 0;

    for (int i = 0; keep_phi && i < PHI_COUNT; i++) {
        char b[256] = "";
        get_str(f, phi_tags[i], b, sizeof b);
        if (b[0] && !(img->phi[i] = strdup(b)))
            return DSP_ENOMEM;
    }
    return 0;
}

/* Bytes of one frame as stored natively (YBR_FULL_422 keeps 2 samples a pixel). */
static uint64_t frame_bytes(const dicom_image *img, int ybr422)
{
    uint64_t px = (uint64_t)img->rows * (uint64_t)img->cols;
    return px * (ybr422 ? 2 : (uint64_t)img->spp) * (uint64_t)(img->bits_allocated / 8);
}

static int check_limits(const dicom_image *img, const dicom_limits *lim, char *why)
{
    int64_t px = (int64_t)img->rows * img->cols;
    if (px > lim->max_pixels) {
        snprintf(why, DICOM_WHY, "%d x %d pixels is more than max_pixels=%lld; raise max_pixels "
                 "if the image is real", img->cols, img->rows, (long long)lim->max_pixels);
        return DSP_ELIMIT;
    }
    if (img->frames > lim->max_frames) {
        snprintf(why, DICOM_WHY, "%d frames is more than max_frames=%lld; raise max_frames if "
                 "the file is real", img->frames, (long long)lim->max_frames);
        return DSP_ELIMIT;
    }
    uint64_t bytes = frame_bytes(img, 0) * (uint64_t)img->frames;
    if (bytes > (uint64_t)lim->max_bytes) {
        snprintf(why, DICOM_WHY, "decoded size %llu bytes is more than max_bytes=%lld; raise "
                 "max_bytes if the file is real", (unsigned long long)bytes,
                 (long long)lim->max_bytes);
        return DSP_ELIMIT;
    }
    return 0;
}

static dsp_dtype sample_dtype(const dicom_image *img)
{
    switch (img->bits_allocated) {
    case 8: return img->is_signed ? DSP_DTYPE_I8 : DSP_DTYPE_U8;
    case 16: return img->is_signed ? DSP_DTYPE_I16 : DSP_DTYPE_U16;
    default: return img->is_signed ? DSP_DTYPE_I32 : DSP_DTYPE_U32;
    }
}

/* Keep BitsStored bits: sign-extend signed samples, mask unsigned ones
 * (the bits above may hold overlays or garbage). */
static void normalize_bits(dicom_image *img, void *p, size_t n)
{
    int bs = img->bits_stored, ba = img->bits_allocated;
    if (bs >= ba)
        return;
    uint32_t mask = (1u << bs) - 1, sign = 1u << (bs - 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = ba == 8 ? ((uint8_t *)p)[i] : ba == 16 ? ((uint16_t *)p)[i] : ((uint32_t *)p)[i];
        u &= mask;
        if (img->is_signed && (u & sign))
            u |= ~mask;
        if (ba == 8)
            ((uint8_t *)p)[i] = (uint8_t)u;
        else if (ba == 16)
            ((uint16_t *)p)[i] = (uint16_t)u;
        else
            ((uint32_t *)p)[i] = u;
    }
}

static inline uint8_t clip8(double v)
{
    v = v + 0.5;
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

/* YCbCr (full range, ITU-R BT.601 as in DICOM PS3.3 C.7.6.3.1.2) to RGB, 8-bit. */
static void ybr_to_rgb(uint8_t *p, size_t px)
{
    for (size_t i = 0; i < px; i++, p += 3) {
        double y = p[0], cb = p[1] - 128.0, cr = p[2] - 128.0;
        p[0] = clip8(y + 1.402 * cr);
        p[1] = clip8(y - 0.114 * 1.772 / 0.587 * cb - 0.299 * 1.402 / 0.587 * cr);
        p[2] = clip8(y + 1.772 * cb);
    }
}

/* Turn a decoded frame into interleaved RGB: planes to pixels, 4:2:2 pairs
 * (Y Y Cb Cr) to full YCbCr, YCbCr to RGB. src holds the decoded bytes. */
static int to_rgb(const dicom_image *img, const uint8_t *src, uint8_t *dst, const char *color,
                  int planar, int native, char *why)
{
    size_t px = (size_t)img->rows * (size_t)img->cols, es = (size_t)img->bits_allocated / 8;
    int ybr422 = native && !strcmp(color, "YBR_FULL_422");
    if (ybr422) {
        if (es != 1 || img->cols % 2) {
            snprintf(why, DICOM_WHY, "YBR_FULL_422 with %d-bit samples or an odd width is not "
                     "supported", img->bits_allocated);
            return DSP_EUNSUPPORTED;
        }
        for (size_t i = 0; i < px / 2; i++) {
            const uint8_t *s = src + 4 * i;
            uint8_t *d = dst + 6 * i;
            d[0] = s[0], d[1] = s[2], d[2] = s[3], d[3] = s[1], d[4] = s[2], d[5] = s[3];
        }
    } else if (planar) {
        for (size_t i = 0; i < px; i++)
            for (int c = 0; c < 3; c++)
                memcpy(dst + (3 * i + c) * es, src + (c * px + i) * es, es);
    } else {
        memcpy(dst, src, px * 3 * es);
    }
    if (!strncmp(color, "YBR_FULL", 8)) {
        if (es != 1) {
            snprintf(why, DICOM_WHY, "%s with %d-bit samples is not supported", color,
                     img->bits_allocated);
            return DSP_EUNSUPPORTED;
        }
        ybr_to_rgb(dst, px);
    }
    return 0;
}

static int decode_frames(dcmw_file *f, dicom_image *img, int codec, int encapsulated,
                         dicom_arena *arena, char *why)
{
    int64_t shape[4] = { img->frames, img->rows, img->cols, 3 };
    int err = dicom_arena_tensor(arena, sample_dtype(img), img->spp == 3 ? 4 : 3, shape,
                                 &img->pixels);
    if (err < 0)
        return err;
    size_t out_frame = (size_t)frame_bytes(img, 0);
    /* colour frames are decoded here first, then made interleaved RGB in place */
    uint8_t *tmp = img->spp == 3 ? malloc(out_frame) : NULL;
    if (img->spp == 3 && !tmp)
        return DSP_ENOMEM;
    uint8_t *base = dsp_tensor_data(img->pixels);
    for (int k = 0; k < img->frames && !err; k++) {
        uint8_t *dst = base + (size_t)k * out_frame;
        char color[32] = "";
        int planar = 0;
        if (codec) {
            unsigned char *cs = NULL;
            size_t cn = 0;
            err = dcmw_frame_bytes(f, k, img->frames, &cs, &cn, why, DICOM_WHY);
            if (!err && codec == 2)
                err = dicom_rle_decode(cs, cn, img, img->spp == 3 ? tmp : dst, why);
            else if (!err)
                err = dicom_j2k_decode(cs, cn, img, img->spp == 3 ? tmp : dst, why);
            free(cs);
            /* OpenJPEG undoes the MCT; RLE colour is RGB (or YBR_FULL) as stored */
            snprintf(color, sizeof color, "%s", codec == 1 ? "RGB" : img->photometric);
            if (!err && img->spp == 3)
                err = to_rgb(img, tmp, dst, color, 0, 0, why);
            continue;
        }
        int ybr422 = !encapsulated && img->spp == 3 && !strcmp(img->photometric, "YBR_FULL_422");
        size_t size = ybr422 ? (size_t)frame_bytes(img, 1) : out_frame;
        if (encapsulated) {
            err = dcmw_decode_frame(f, k, img->spp == 3 ? tmp : dst, size, color, sizeof color,
                                    &planar, why, DICOM_WHY);
        } else {
            /* DCMTK's frame API refuses odd-sized frames and miscounts 4:2:2 */
            err = dcmw_read_native(f, (uint64_t)k * size, img->spp == 3 ? tmp : dst, size, why,
                                   DICOM_WHY);
            planar = img->planar;
        }
        if (!err && img->spp == 3)
            err = to_rgb(img, tmp, dst, color[0] ? color : img->photometric, planar,
                         !encapsulated, why);
    }
    free(tmp);
    if (err)
        return err;
    /* a big-endian OW value is swapped in 16-bit words: put 32-bit halves back */
    if (img->bits_allocated == 32 && !strcmp(img->transfer_syntax, "1.2.840.10008.1.2.2")) {
        uint16_t *h = dsp_tensor_data(img->pixels);
        for (int64_t i = 0; i < dsp_tensor_numel(img->pixels); i++, h += 2) {
            uint16_t t = h[0];
            h[0] = h[1];
            h[1] = t;
        }
    }
    if (img->spp == 1)
        normalize_bits(img, dsp_tensor_data(img->pixels), (size_t)dsp_tensor_numel(img->pixels));
    if (img->spp == 3)
        snprintf(img->photometric, sizeof img->photometric, "RGB");
    return 0;
}

/* Clear img and set its path; then the checks before DCMTK parses the file
 * (size, limits, not DICOM at all) and the parse itself, to the end or
 * (header_only) up to PixelData. 0 with *f open and img's transfer syntax
 * set; DICOM_SKIP (not DICOM, a DICOMDIR) or a negative code, with why.
 * *size receives the file's size. */
static int open_checked(const char *path, const dicom_limits *lim, int header_only,
                        dicom_image *img, dcmw_file **f, uint64_t *size, char *why)
{
    uint8_t head[132];
    size_t n = sizeof head;
    *f = NULL;
    *size = 0;
    memset(img, 0, sizeof *img);
    why[0] = '\0';
    if (!(img->path = strdup(path)))
        return DSP_ENOMEM;
    int err = peek(path, head, &n, size, why);
    if (err < 0)
        return err;
    if (*size == 0) {
        snprintf(why, DICOM_WHY, "empty (0 bytes): not a DICOM file; re-export or remove it");
        return DSP_EFORMAT;
    }
    if (*size > (uint64_t)lim->max_bytes) {
        snprintf(why, DICOM_WHY, "%llu bytes is more than max_bytes=%lld; raise max_bytes if "
                 "the file is real", (unsigned long long)*size, (long long)lim->max_bytes);
        return DSP_ELIMIT;
    }
    if (!looks_like_dicom(head, n)) {
        snprintf(why, DICOM_WHY, "not a DICOM file (%s)", sniff(head, n));
        if (has_dicom_extension(path)) {
            snprintf(why + strlen(why), DICOM_WHY - strlen(why), " although its name ends in "
                     "a DICOM extension; re-export it or remove it");
            return DSP_EFORMAT;
        }
        return DICOM_SKIP;
    }
    err = header_only ? dcmw_open_header(path, f, why, DICOM_WHY)
                      : dcmw_open(path, f, why, DICOM_WHY);
    if (err < 0)
        return err == DSP_EFORMAT ? (snprintf(why + strlen(why), DICOM_WHY - strlen(why),
                                              " (corrupt or truncated DICOM file)"), err) : err;
    if (dcmw_is_dicomdir(*f)) {
        snprintf(why, DICOM_WHY, "a DICOMDIR (a directory of the media, not an image)");
        dcmw_close(*f);
        *f = NULL;
        return DICOM_SKIP;
    }
    snprintf(img->transfer_syntax, sizeof img->transfer_syntax, "%s", dcmw_transfer_syntax(*f));
    return 0;
}

/* The codec of the file's transfer syntax (img->transfer_syntax), or
 * DSP_EUNSUPPORTED with why. */
static int codec_of(const dicom_image *img, char *why)
{
    for (size_t i = 0; i < sizeof syntaxes / sizeof syntaxes[0]; i++)
        if (!strcmp(img->transfer_syntax, syntaxes[i].uid))
            return syntaxes[i].codec;
    snprintf(why, DICOM_WHY, "unsupported transfer syntax %s; convert it (e.g. dcmdjpeg, "
             "gdcmconv --raw) first", img->transfer_syntax[0] ? img->transfer_syntax
                                                              : "(unknown)");
    return DSP_EUNSUPPORTED;
}

/* Uncompressed pixel data (the deflated syntax is compressed as a whole). */
static int native_syntax(const char *uid)
{
    return !strcmp(uid, "1.2.840.10008.1.2") || !strcmp(uid, "1.2.840.10008.1.2.1") ||
           !strcmp(uid, "1.2.840.10008.1.2.2");
}

static void no_pixels_note(const dcmw_file *f, char *why)
{
    char sop[68] = "";
    dcmw_get_str(f, DCMW_TAG(0x0008, 0x0016), sop, sizeof sop);
    snprintf(why, DICOM_WHY, "a DICOM object without pixel data (SOP class %s), not an image",
             sop[0] ? sop : "unknown");
}

int dicom_read_header(const char *path, const dicom_limits *lim, dicom_image *img, char *why)
{
    dcmw_file *f = NULL;
    uint64_t size;
    int err = open_checked(path, lim, 1, img, &f, &size, why);
    if (err)
        return err;
    long rows = 0;
    int codec;
    /* parsing stops early only at PixelData: a file parsed to its end has none */
    uint64_t header = dcmw_parsed_bytes(f);
    if (header >= size && (dcmw_get_int(f, DCMW_TAG(0x0028, 0x0010), 0, &rows) != 0 ||
                           rows <= 0)) {
        no_pixels_note(f, why);
        err = DICOM_SKIP;
        goto done;
    }
    if ((codec = codec_of(img, why)) < 0) {
        err = codec;
        goto done;
    }
    if ((err = read_attributes(f, 0, img, why)) < 0 || (err = check_limits(img, lim, why)) < 0)
        goto done;
    /* native pixel data must fit in what follows the header: a cut copy
     * shows here, before anything is decoded */
    int ybr422 = img->spp == 3 && !strcmp(img->photometric, "YBR_FULL_422");
    uint64_t need = frame_bytes(img, ybr422) * (uint64_t)img->frames;
    uint64_t left = size > header ? size - header : 0;
    if (native_syntax(img->transfer_syntax) && left < need) {
        snprintf(why, DICOM_WHY, "truncated: %llu bytes follow the header, the pixel data (%d "
                 "frame(s) of %d x %d) needs %llu", (unsigned long long)left, img->frames,
                 img->cols, img->rows, (unsigned long long)need);
        err = DSP_EFORMAT;
    }
done:
    dcmw_close(f);
    return err;
}

int dicom_read_file(const char *path, const dicom_limits *lim, int keep_phi, dicom_arena *arena,
                    dicom_image *img, char *why)
{
    dcmw_file *f = NULL;
    uint64_t size;
    int err = open_checked(path, lim, 0, img, &f, &size, why);
    if (err)
        return err;
    int present, encapsulated;
    uint64_t plen;
    dcmw_pixel_info(f, &present, &encapsulated, &plen);
    long rows = 0;
    if (!present && dcmw_get_int(f, DCMW_TAG(0x0028, 0x0010), 0, &rows) == 0 && rows > 0) {
        /* an image whose pixel data is gone: cut at an element boundary, or stripped */
        snprintf(why, DICOM_WHY, "an image (Rows %ld) without pixel data: the file is truncated "
                 "or its pixel data was removed", rows);
        err = DSP_EFORMAT;
        goto done;
    }
    if (!present) {
        no_pixels_note(f, why);
        err = DICOM_SKIP;
        goto done;
    }
    int codec = codec_of(img, why);
    if (codec < 0) {
        err = codec;
        goto done;
    }
    if ((err = read_attributes(f, keep_phi, img, why)) < 0 || (err = check_limits(img, lim, why)) < 0)
        goto done;
    if (!encapsulated) {
        int ybr422 = img->spp == 3 && !strcmp(img->photometric, "YBR_FULL_422");
        uint64_t need = frame_bytes(img, ybr422) * (uint64_t)img->frames;
        if (plen < need) {
            snprintf(why, DICOM_WHY, "truncated: the pixel data has %llu bytes, %d frame(s) of "
                     "%d x %d need %llu", (unsigned long long)plen, img->frames, img->cols,
                     img->rows, (unsigned long long)need);
            err = DSP_EFORMAT;
            goto done;
        }
    }
    err = decode_frames(f, img, codec, encapsulated, arena, why);
    if (err == DSP_ENOMEM)
        snprintf(why, DICOM_WHY, "out of memory");
done:
    dcmw_close(f);
    return err;
}
