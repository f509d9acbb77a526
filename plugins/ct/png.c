/* png.c - 8-bit gray / RGB PNG writer for ct.report's key images (libpng). */
#include "ct.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef HAVE_PNG
#include <png.h>

typedef struct png_job {
    char *why;
    png_bytep *rows;
} png_job;

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->why, 256, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int ct_png_write(void *fp, const uint8_t *px, int64_t h, int64_t w, int c, char *why)
{
    png_job *const j = calloc(1, sizeof *j);
    png_structp png = NULL;
    png_infop info = NULL;
    volatile int err = 0;   /* set after setjmp */
    why[0] = '\0';
    if (!j || !(j->rows = malloc((size_t)h * sizeof *j->rows))) {
        free(j);
        snprintf(why, 256, "out of memory");
        return DSP_ENOMEM;
    }
    j->why = why;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
    if (!png || !(info = png_create_info_struct(png))) {
        snprintf(why, 256, "out of memory");
        err = DSP_ENOMEM;
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        err = DSP_EIO;
        goto done;
    }
    png_init_io(png, (FILE *)fp);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < h; y++)
        j->rows[y] = (png_bytep)(px + (size_t)y * (size_t)w * (size_t)c);
    png_write_image(png, j->rows);
    png_write_end(png, NULL);
done:
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(j->rows);
    free(j);
    return err;
}
#else
int ct_png_write(void *fp, const uint8_t *px, int64_t h, int64_t w, int c, char *why)
{
    (void)fp; (void)px; (void)h; (void)w; (void)c;
    snprintf(why, 256, "this dspipe was built without libpng");
    return DSP_EUNSUPPORTED;
}
#endif
