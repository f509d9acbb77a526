/* png_io.c - PNG decoding from memory and encoding to a stream with libpng, errors caught with setjmp. */
#include "image.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the error handler and the cleanup need lives here, not in
 * locals, so nothing depends on the value of a non-volatile local after
 * longjmp. */
typedef struct png_job {
    const uint8_t *data;
    size_t size, pos;
    char *why;                  /* IMAGE_WHY bytes */
    char warning[IMAGE_WHY];
    png_bytep *rows;
    dsp_tensor *t;
    int err;
} png_job;

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->why, IMAGE_WHY, "%s", msg && *msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    if (!j->warning[0])
        snprintf(j->warning, sizeof j->warning, "%s", msg ? msg : "");
}

static void read_mem(png_structp png, png_bytep dst, png_size_t n)
{
    png_job *j = png_get_io_ptr(png);
    if (n > j->size - j->pos)
        png_error(png, "unexpected end of file: the file is truncated");
    memcpy(dst, j->data + j->pos, n);
    j->pos += n;
}

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int image_png_decode(const uint8_t *data, size_t size, const image_decode_opts *o,
                     image_decoded *out, char *why)
{
    png_structp png = NULL;
    png_infop info = NULL;
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    /* on the heap: after longjmp only the pointer (never reassigned) is read */
    png_job *const j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(why, IMAGE_WHY, "out of memory");
        return DSP_ENOMEM;
    }
    *j = (png_job){ .data = data, .size = size, .why = why };

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
    if (!png || !(info = png_create_info_struct(png))) {
        snprintf(why, IMAGE_WHY, "out of memory");
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(j);
        return DSP_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        /* also after the last row: png_read_end checks the last IDAT's CRC and
           what follows, and a file cut there is not trusted either */
        j->err = DSP_EFORMAT;
        goto done;
    }
    png_set_read_fn(png, j, read_mem);
    /* dimensions are checked against max_pixels below, not libpng's
       1,000,000-per-side default, so large real images decode */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 w, h;
    int bits, color, interlace;
    png_get_IHDR(png, info, &w, &h, &bits, &color, &interlace, NULL, NULL);
    if ((double)w * (double)h > (double)o->max_pixels) {
        snprintf(why, IMAGE_WHY, "%lu x %lu pixels is more than max_pixels=%lld",
                 (unsigned long)w, (unsigned long)h, (long long)o->max_pixels);
        j->err = DSP_ELIMIT;
        goto done;
    }
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && bits < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    int keep16 = bits == 16 && o->keep16;
    if (bits == 16) {
        if (!keep16)
            png_set_strip_16(png);      /* the high byte, as Pillow does */
        else if (host_is_le())
            png_set_swap(png);
    }
    if (interlace != PNG_INTERLACE_NONE)
        png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int64_t shape[3] = { h, w, png_get_channels(png, info) };
    size_t sample = keep16 ? 2 : 1;
    if (shape[2] < 1 || shape[2] > 4 ||
        png_get_rowbytes(png, info) != (size_t)w * (size_t)shape[2] * sample) {
        snprintf(why, IMAGE_WHY, "unexpected row layout after libpng's transforms "
                 "(%d channels, %lu bytes per row)", (int)shape[2],
                 (unsigned long)png_get_rowbytes(png, info));
        j->err = DSP_EFORMAT;
        goto done;
    }
    if (dsp_tensor_new(keep16 ? DSP_DTYPE_U16 : DSP_DTYPE_U8, 3, shape, &j->t) < 0 ||
        !(j->rows = malloc((size_t)h * sizeof *j->rows))) {
        snprintf(why, IMAGE_WHY, "out of memory for %lu x %lu pixels",
                 (unsigned long)w, (unsigned long)h);
        j->err = DSP_ENOMEM;
        goto done;
    }
    uint8_t *base = dsp_tensor_data(j->t);
    size_t stride = (size_t)w * (size_t)shape[2] * sample;
    for (png_uint_32 y = 0; y < h; y++)
        j->rows[y] = base + (size_t)y * stride;
    png_read_image(png, j->rows);
    png_read_end(png, info);

done:
    if (!j->err && j->t && png_get_valid(png, info, PNG_INFO_eXIf)) {
        png_uint_32 n = 0;
        png_bytep exif = NULL;
        if (png_get_eXIf_1(png, info, &n, &exif) && exif)
            out->orientation = image_exif_orientation(exif, n);
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(j->rows);
    int err = j->err;
    if (err)
        dsp_tensor_unref(&j->t);
    else
        snprintf(out->warning, sizeof out->warning, "%s", j->warning);
    out->t = j->t;
    free(j);
    return err;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct png_wjob {
    char *why;
    png_bytep *rows;
    int err;
} png_wjob;

static void on_write_error(png_structp png, png_const_charp msg)
{
    png_wjob *j = png_get_error_ptr(png);
    snprintf(j->why, IMAGE_WHY, "%s", msg && *msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void on_write_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int image_png_write(void *fp, const dsp_tensor *t, int level, char *why)
{
    static const int color_of[5] = { 0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                     PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA };
    png_structp png = NULL;
    png_infop info = NULL;
    int64_t h = t->shape[0], w = t->shape[1], c = t->shape[2];
    int bits = t->dtype == DSP_DTYPE_U16 ? 16 : 8;
    why[0] = '\0';
    png_wjob *const j = calloc(1, sizeof *j);
    if (!j || !(j->rows = malloc((size_t)h * sizeof *j->rows))) {
        free(j);
        snprintf(why, IMAGE_WHY, "out of memory");
        return DSP_ENOMEM;
    }
    j->why = why;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, on_write_error, on_write_warning);
    if (!png || !(info = png_create_info_struct(png))) {
        snprintf(why, IMAGE_WHY, "out of memory");
        png_destroy_write_struct(png ? &png : NULL, NULL);
        free(j->rows);
        free(j);
        return DSP_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        j->err = DSP_EIO;
        goto done;
    }
    png_init_io(png, (FILE *)fp);
    png_set_compression_level(png, level);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bits, color_of[c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bits == 16 && host_is_le())
        png_set_swap(png);
    const uint8_t *base = dsp_tensor_data(t);
    size_t stride = (size_t)w * (size_t)c * (size_t)(bits / 8);
    for (int64_t y = 0; y < h; y++)
        j->rows[y] = (png_bytep)(base + (size_t)y * stride);
    png_write_image(png, j->rows);
    png_write_end(png, NULL);
done:
    png_destroy_write_struct(&png, &info);
    int err = j->err;
    free(j->rows);
    free(j);
    return err;
}
