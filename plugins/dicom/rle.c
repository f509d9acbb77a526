/* rle.c - DICOM RLE Lossless (PS3.5 Annex G) frames, decoded in C with every read and write bounds-checked.
 *
 * DCMTK 3.6.7's DcmRLECodecDecoder::decodeFrame crashed (SIGSEGV in
 * DcmRLEDecoder::decompress) on a mutated RLE file found by
 * tests/fuzz_dicom.c (kept as tests/data/dicom/regress/); the format is
 * small enough to decode here instead.
 */
#include "dicom.h"

#include <stdio.h>
#include <string.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* PackBits one segment into out[0..n) with the given stride. Returns the
 * bytes written. */
static size_t unpack(const uint8_t *s, size_t len, uint8_t *out, size_t n, size_t stride)
{
    size_t i = 0, o = 0;
    while (i < len && o < n) {
        int c = (int8_t)s[i++];
        if (c >= 0) {
            size_t run = (size_t)c + 1;
            for (size_t k = 0; k < run && i < len && o < n; k++)
                out[(o++) * stride] = s[i++];
        } else if (c != -128) {
            if (i >= len)
                break;
            uint8_t v = s[i++];
            for (size_t k = 0, run = (size_t)(1 - c); k < run && o < n; k++)
                out[(o++) * stride] = v;
        }
    }
    return o;
}

int dicom_rle_decode(const uint8_t *data, size_t size, const dicom_image *img, void *out,
                     char *why)
{
    size_t px = (size_t)img->rows * (size_t)img->cols;
    int bytes = img->bits_allocated / 8, spp = img->spp;
    uint32_t want = (uint32_t)(spp * bytes);
    if (size < 64) {
        snprintf(why, DICOM_WHY, "RLE: the frame is %zu bytes, shorter than its 64-byte header",
                 size);
        return DSP_EFORMAT;
    }
    uint32_t nseg = le32(data);
    if (nseg != want) {
        snprintf(why, DICOM_WHY, "RLE: %u segments, the image attributes need %u", nseg, want);
        return DSP_EFORMAT;
    }
    uint8_t *o = out;
    for (uint32_t s = 0; s < nseg; s++) {
        uint32_t start = le32(data + 4 + 4 * s);
        uint32_t end = s + 1 < nseg ? le32(data + 8 + 4 * s) : (uint32_t)size;
        if (start < 64 || start > end || end > size) {
            snprintf(why, DICOM_WHY, "RLE: segment %u has offsets %u-%u outside the %zu-byte "
                     "frame", s + 1, start, end, size);
            return DSP_EFORMAT;
        }
        /* segment s holds byte (s % bytes) of sample (s / bytes), most significant first;
         * the output is interleaved samples in host (little-endian) byte order */
        int c = (int)(s / (uint32_t)bytes), b = bytes - 1 - (int)(s % (uint32_t)bytes);
        size_t got = unpack(data + start, end - start, o + (size_t)c * bytes + b, px,
                            (size_t)(spp * bytes));
        if (got < px) {
            snprintf(why, DICOM_WHY, "RLE: segment %u decodes to %zu bytes, the image needs %zu "
                     "(corrupt or truncated data)", s + 1, got, px);
            return DSP_EFORMAT;
        }
    }
    return 0;
}
