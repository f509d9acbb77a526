/* exif.c - the EXIF Orientation tag, read from a TIFF-structured block or a JPEG's APP1 segment, bounds-checked. */
#include "image.h"

#include <string.h>

static unsigned rd16(const uint8_t *p, int be)
{
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, int be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int image_exif_orientation(const uint8_t *tiff, size_t size)
{
    if (!tiff || size < 8)
        return 0;
    int be;
    if (memcmp(tiff, "II*\0", 4) == 0)
        be = 0;
    else if (memcmp(tiff, "MM\0*", 4) == 0)
        be = 1;
    else
        return 0;
    uint32_t ifd = rd32(tiff + 4, be);
    /* every offset is checked against size before it is used; size_t sums
       cannot overflow here because ifd and the count are below 2^32 */
    if ((size_t)ifd > size || size - ifd < 2)
        return 0;
    unsigned count = rd16(tiff + ifd, be);
    for (unsigned k = 0; k < count; k++) {
        size_t at = (size_t)ifd + 2 + (size_t)k * 12;
        if (at > size || size - at < 12)
            return 0;
        const uint8_t *e = tiff + at;
        if (rd16(e, be) != 0x0112)
            continue;
        unsigned type = rd16(e + 2, be);
        uint32_t n = rd32(e + 4, be);
        uint32_t v;
        if (type == 3 && n >= 1)            /* SHORT, stored in the entry */
            v = rd16(e + 8, be);
        else if (type == 4 && n >= 1)       /* LONG, as some writers do */
            v = rd32(e + 8, be);
        else
            return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
    return 0;
}

int image_jpeg_orientation(const uint8_t *data, size_t size)
{
    if (size < 4 || data[0] != 0xFF || data[1] != 0xD8)
        return 0;
    size_t i = 2;
    while (i + 4 <= size) {
        if (data[i] != 0xFF)
            return 0;                       /* not at a marker: give up */
        uint8_t m = data[i + 1];
        if (m == 0xFF) {                    /* fill byte */
            i++;
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            i += 2;                         /* markers without a length */
            continue;
        }
        if (m == 0xDA || m == 0xD9)
            return 0;                       /* scan data or the end: no EXIF before it */
        size_t len = (size_t)data[i + 2] << 8 | data[i + 3];
        if (len < 2 || len > size - i - 2)
            return 0;
        if (m == 0xE1 && len >= 2 + 6 + 8 && memcmp(data + i + 4, "Exif\0\0", 6) == 0)
            return image_exif_orientation(data + i + 10, len - 8);
        i += 2 + len;
    }
    return 0;
}
