/* j2k.c - JPEG 2000 frames with OpenJPEG (Debian's DCMTK has no JPEG 2000 decoder). */
#include "dicom.h"

#include <stdio.h>
#include <string.h>

#ifdef HAVE_OPENJPEG
#include <openjpeg.h>

typedef struct mem_stream {
    const uint8_t *data;
    size_t size, pos;
} mem_stream;

static OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *user)
{
    mem_stream *m = user;
    if (m->pos >= m->size)
        return (OPJ_SIZE_T)-1;
    size_t k = m->size - m->pos < n ? m->size - m->pos : n;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return k;
}

static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user)
{
    mem_stream *m = user;
    if (n < 0 || (size_t)n > m->size - m->pos)
        n = (OPJ_OFF_T)(m->size - m->pos);
    m->pos += (size_t)n;
    return n;
}

static OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user)
{
    mem_stream *m = user;
    if (n < 0 || (size_t)n > m->size)
        return OPJ_FALSE;
    m->pos = (size_t)n;
    return OPJ_TRUE;
}

/* OpenJPEG reports through callbacks; keep the last error for the message */
static void on_error(const char *msg, void *user)
{
    char *why = user;
    if (!why[0]) {
        snprintf(why, DICOM_WHY, "JPEG 2000: %s", msg);
        size_t n = strlen(why);
        while (n && why[n - 1] == '\n')
            why[--n] = '\0';
    }
}

static void quiet(const char *msg, void *user)
{
    (void)msg;
    (void)user;
}

static int store(const opj_image_t *im, const dicom_image *img, void *out)
{
    size_t px = (size_t)img->rows * (size_t)img->cols;
    int spp = img->spp;
    for (int c = 0; c < spp; c++) {
        const OPJ_INT32 *s = im->comps[c].data;
        for (size_t i = 0; i < px; i++) {
            int64_t v = s[i];
            size_t o = i * (size_t)spp + (size_t)c;
            switch (img->bits_allocated) {
            case 8: ((uint8_t *)out)[o] = (uint8_t)v; break;
            case 16: ((uint16_t *)out)[o] = (uint16_t)v; break;
            default: ((uint32_t *)out)[o] = (uint32_t)v; break;
            }
        }
    }
    return 0;
}

int dicom_j2k_decode(const uint8_t *data, size_t size, const dicom_image *img, void *out,
                     char *why)
{
    why[0] = '\0';
    /* a JP2 file box or a bare codestream */
    int jp2 = size >= 12 && memcmp(data + 4, "jP  ", 4) == 0;
    if (!jp2 && (size < 4 || data[0] != 0xFF || data[1] != 0x4F)) {
        snprintf(why, DICOM_WHY, "JPEG 2000: the frame does not start with a codestream (SOC) "
                 "marker");
        return DSP_EFORMAT;
    }
    mem_stream m = { data, size, 0 };
    opj_stream_t *st = opj_stream_create(1 << 16, OPJ_TRUE);
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    opj_image_t *im = NULL;
    int err = DSP_EFORMAT;
    if (!st || !codec) {
        err = DSP_ENOMEM;
        goto out;
    }
    opj_stream_set_user_data(st, &m, NULL);
    opj_stream_set_user_data_length(st, size);
    opj_stream_set_read_function(st, mem_read);
    opj_stream_set_skip_function(st, mem_skip);
    opj_stream_set_seek_function(st, mem_seek);
    opj_set_error_handler(codec, on_error, why);
    opj_set_warning_handler(codec, quiet, NULL);
    opj_set_info_handler(codec, quiet, NULL);
    opj_dparameters_t par;
    opj_set_default_decoder_parameters(&par);
    if (!opj_setup_decoder(codec, &par) || !opj_read_header(st, codec, &im) || !im)
        goto out;
    /* check the header against the DICOM attributes before decoding anything */
    if ((int)im->numcomps < img->spp || (int64_t)(im->x1 - im->x0) != img->cols ||
        (int64_t)(im->y1 - im->y0) != img->rows) {
        snprintf(why, DICOM_WHY, "JPEG 2000: the codestream is %u x %u with %u component(s), "
                 "the DICOM attributes say %d x %d with %d", im->x1 - im->x0, im->y1 - im->y0,
                 im->numcomps, img->cols, img->rows, img->spp);
        goto out;
    }
    if (!opj_decode(codec, st, im) || !opj_end_decompress(codec, st)) {
        if (!why[0])
            snprintf(why, DICOM_WHY, "JPEG 2000: decoding failed (corrupt or truncated data)");
        goto out;
    }
    for (int c = 0; c < img->spp; c++)
        if (!im->comps[c].data || im->comps[c].w != (OPJ_UINT32)img->cols ||
            im->comps[c].h != (OPJ_UINT32)img->rows) {
            snprintf(why, DICOM_WHY, "JPEG 2000: subsampled or missing component %d", c);
            err = DSP_EUNSUPPORTED;
            goto out;
        }
    err = store(im, img, out);
out:
    if (im)
        opj_image_destroy(im);
    if (codec)
        opj_destroy_codec(codec);
    if (st)
        opj_stream_destroy(st);
    return err;
}

#else

int dicom_j2k_decode(const uint8_t *data, size_t size, const dicom_image *img, void *out,
                     char *why)
{
    (void)data, (void)size, (void)img, (void)out;
    snprintf(why, DICOM_WHY, "JPEG 2000, but this dspipe was built without OpenJPEG "
             "(apt-get install libopenjp2-7-dev, re-run configure)");
    return DSP_EUNSUPPORTED;
}

#endif
