/* jpeg_io.c - JPEG decoding and encoding with TurboJPEG's 2.x API (tjDecompress2 / tjCompress2). */
#include "image.h"

#include <stdio.h>
#include <string.h>

#include <turbojpeg.h>

static const char *const colorspace_names[] = { "RGB", "YCbCr", "gray", "CMYK", "YCCK" };

/* TurboJPEG 2.1's tjGetErrorCode says TJERR_WARNING whenever a warning came
 * first, even when a fatal error ended the decode; the message is always
 * the last one. So a failure counts as a warning only when the message is
 * one of libjpeg's warnings (the JWRN_* texts of jerror.h). */
static int is_libjpeg_warning(const char *msg)
{
    static const char *const warnings[] = {
        "Premature end of JPEG file", "Corrupt JPEG data", "Warning: unknown JFIF revision",
        "Unknown Adobe color transform", "Inconsistent progression sequence",
        "Invalid SOS parameters for sequential JPEG", "Application transferred too many",
    };
    for (size_t i = 0; i < sizeof warnings / sizeof warnings[0]; i++)
        if (strncmp(msg, warnings[i], strlen(warnings[i])) == 0)
            return 1;
    return 0;
}

int image_jpeg_decode(const uint8_t *data, size_t size, const image_decode_opts *o,
                      image_decoded *out, char *why)
{
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        snprintf(why, IMAGE_WHY, "cannot start TurboJPEG: %s", tjGetErrorStr2(NULL));
        return DSP_ENOMEM;
    }
    int err = 0, w = 0, h = 0, subsamp = 0, cs = 0;
    dsp_tensor *t = NULL;
    if (tjDecompressHeader3(tj, data, (unsigned long)size, &w, &h, &subsamp, &cs) < 0) {
        snprintf(why, IMAGE_WHY, "%s", tjGetErrorStr2(tj));
        err = DSP_EFORMAT;
        goto done;
    }
    if (w < 1 || h < 1) {
        /* TurboJPEG returns 0 x 0 without an error when the data ends in the header */
        snprintf(why, IMAGE_WHY, "no image: the data ends before the frame header (%s)",
                 tjGetErrorStr2(tj));
        err = DSP_EFORMAT;
        goto done;
    }
    if ((double)w * (double)h > (double)o->max_pixels) {
        snprintf(why, IMAGE_WHY, "%d x %d pixels is more than max_pixels=%lld", w, h,
                 (long long)o->max_pixels);
        err = DSP_ELIMIT;
        goto done;
    }
    if (cs != TJCS_GRAY && cs != TJCS_YCbCr && cs != TJCS_RGB) {
        snprintf(why, IMAGE_WHY, "a %s JPEG: image.decode reads gray, YCbCr and RGB JPEGs; "
                 "convert it to RGB first (e.g. with ImageMagick: convert IN -colorspace "
                 "sRGB OUT)", cs >= 0 && cs <= TJCS_YCCK ? colorspace_names[cs] : "unknown");
        err = DSP_EUNSUPPORTED;
        goto done;
    }
    int gray = cs == TJCS_GRAY;
    int64_t shape[3] = { h, w, gray ? 1 : 3 };
    if (dsp_tensor_new(DSP_DTYPE_U8, 3, shape, &t) < 0) {
        snprintf(why, IMAGE_WHY, "out of memory for %d x %d pixels", w, h);
        err = DSP_ENOMEM;
        goto done;
    }
    /* ISLOW IDCT and fancy upsampling: libjpeg's defaults, which Pillow uses too;
       LIMITSCANS refuses progressive files with absurd scan counts (a known DoS) */
    int flags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS;
    if (o->strict)
        flags |= TJFLAG_STOPONWARNING;
    if (tjDecompress2(tj, data, (unsigned long)size, dsp_tensor_data(t), w, 0, h,
                      gray ? TJPF_GRAY : TJPF_RGB, flags) < 0) {
        const char *msg = tjGetErrorStr2(tj);
        int warning = is_libjpeg_warning(msg);
        if (warning && !o->strict) {
            snprintf(out->warning, sizeof out->warning, "%s", msg);
        } else if (warning) {
            snprintf(why, IMAGE_WHY, "libjpeg warning: %s; set strict=false to accept "
                     "damaged JPEGs (what cannot be decoded comes out gray)", msg);
            err = DSP_EFORMAT;
        } else {
            snprintf(why, IMAGE_WHY, "%s", msg);
            err = DSP_EFORMAT;
        }
    }
    if (!err)
        out->orientation = image_jpeg_orientation(data, size);
done:
    tjDestroy(tj);
    if (err)
        dsp_tensor_unref(&t);
    out->t = t;
    return err;
}

int image_jpeg_write(void *fp, const dsp_tensor *t, int quality, int subsampling, char *why)
{
    static const int tj_samp[] = { TJSAMP_444, TJSAMP_422, TJSAMP_420 };
    int subsamp = tj_samp[subsampling >= 0 && subsampling <= 2 ? subsampling : 2];
    int64_t h = t->shape[0], w = t->shape[1], c = t->shape[2];
    why[0] = '\0';
    tjhandle tj = tjInitCompress();
    if (!tj) {
        snprintf(why, IMAGE_WHY, "cannot start TurboJPEG: %s", tjGetErrorStr2(NULL));
        return DSP_ENOMEM;
    }
    unsigned char *buf = NULL;
    unsigned long n = 0;
    int err = 0;
    if (tjCompress2(tj, dsp_tensor_data(t), (int)w, 0, (int)h, c == 1 ? TJPF_GRAY : TJPF_RGB,
                    &buf, &n, c == 1 ? TJSAMP_GRAY : subsamp, quality,
                    TJFLAG_ACCURATEDCT) < 0) {
        snprintf(why, IMAGE_WHY, "%s", tjGetErrorStr2(tj));
        err = DSP_EINVAL;
    } else if (fwrite(buf, 1, n, (FILE *)fp) != n) {
        snprintf(why, IMAGE_WHY, "write failed (disk full?)");
        err = DSP_EIO;
    }
    tjFree(buf);
    tjDestroy(tj);
    return err;
}
