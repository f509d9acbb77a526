/* text.c - text on u8 RGB/RGBA images: FreeType glyphs, anti-aliased and alpha-blended. */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_FREETYPE
#include <ft2build.h>
#include FT_FREETYPE_H

struct image_font {
    FT_Library lib;
    FT_Face face;
    char *path;
};

int image_font_open(const char *path, int size, image_font **out, char *why)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        snprintf(why, IMAGE_WHY, "font '%s': %s%s", path, strerror(e),
                 e == ENOENT ? "; install it (apt-get install fonts-dejavu-core gives "
                               "DejaVuSansMono.ttf) or set font= to a .ttf file" : "");
        return e == ENOENT ? DSP_ENOENT : DSP_EIO;
    }
    fclose(fp);
    image_font *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        snprintf(why, IMAGE_WHY, "out of memory");
        return DSP_ENOMEM;
    }
    FT_Error fe = FT_Init_FreeType(&f->lib);
    if (!fe && (fe = FT_New_Face(f->lib, path, 0, &f->face)) != 0) {
        snprintf(why, IMAGE_WHY, "font '%s': FreeType cannot read it (error 0x%02x): not "
                 "a TrueType/OpenType font?", path, (unsigned)fe);
        image_font_free(&f);
        return DSP_EFORMAT;
    }
    if (!fe && (fe = FT_Set_Pixel_Sizes(f->face, 0, (FT_UInt)size)) != 0) {
        snprintf(why, IMAGE_WHY, "font '%s': cannot set a size of %d pixels (error 0x%02x)",
                 path, size, (unsigned)fe);
        image_font_free(&f);
        return DSP_EFORMAT;
    }
    if (fe) {
        snprintf(why, IMAGE_WHY, "FreeType cannot start (error 0x%02x)", (unsigned)fe);
        image_font_free(&f);
        return DSP_ENOMEM;
    }
    *out = f;
    return 0;
}

void image_font_free(image_font **f)
{
    if (!f || !*f)
        return;
    if ((*f)->face)
        FT_Done_Face((*f)->face);
    if ((*f)->lib)
        FT_Done_FreeType((*f)->lib);
    free((*f)->path);
    free(*f);
    *f = NULL;
}

int image_font_line_height(const image_font *f)
{
    /* FreeType rounds a hinted size's ascender up and descender down */
    const FT_Size_Metrics *m = &f->face->size->metrics;
    return (int)((m->ascender - m->descender + 63) >> 6);
}

/* The next code point of UTF-8 text at *s, advancing *s; -1 when malformed. */
static long next_code_point(const unsigned char **s)
{
    const unsigned char *p = *s;
    long cp;
    int n;
    if (p[0] < 0x80) {
        cp = p[0];
        n = 0;
    } else if ((p[0] & 0xe0) == 0xc0) {
        cp = p[0] & 0x1f;
        n = 1;
    } else if ((p[0] & 0xf0) == 0xe0) {
        cp = p[0] & 0x0f;
        n = 2;
    } else if ((p[0] & 0xf8) == 0xf0) {
        cp = p[0] & 0x07;
        n = 3;
    } else {
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    *s = p + n + 1;
    return cp;
}

int image_draw_text(const image_canvas *cv, image_font *f, int64_t x, int64_t y,
                    const char *text, image_rgb col, char *why)
{
    FT_Face face = f->face;
    int64_t ascender = (face->size->metrics.ascender + 63) >> 6;
    int64_t pen = x, baseline = y + ascender;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        long cp = next_code_point(&s);
        if (cp < 0) {
            snprintf(why, IMAGE_WHY, "not valid UTF-8 text");
            return DSP_EFORMAT;
        }
        if (cp == '\n') {
            pen = x;
            baseline += image_font_line_height(f);
            continue;
        }
        /* a code point the font lacks renders its .notdef box, as Pillow does */
        FT_Error fe = FT_Load_Char(face, (FT_ULong)cp, FT_LOAD_RENDER);
        if (fe) {
            snprintf(why, IMAGE_WHY, "font '%s': cannot render U+%04lX (FreeType error "
                     "0x%02x)", f->path, cp, (unsigned)fe);
            return DSP_EFORMAT;
        }
        FT_GlyphSlot g = face->glyph;
        const FT_Bitmap *bm = &g->bitmap;
        if (bm->pixel_mode == FT_PIXEL_MODE_GRAY) {
            int64_t left = pen + g->bitmap_left, top = baseline - g->bitmap_top;
            for (unsigned r = 0; r < bm->rows; r++) {
                const unsigned char *row = bm->buffer + (ptrdiff_t)r * bm->pitch;
                for (unsigned c = 0; c < bm->width; c++)
                    image_blend(cv, left + c, top + r, col, row[c]);
            }
        }
        pen += (g->advance.x + 32) >> 6;
    }
    return 0;
}

#else /* !HAVE_FREETYPE */

struct image_font {
    int unused;
};

int image_font_open(const char *path, int size, image_font **out, char *why)
{
    *out = NULL;
    snprintf(why, IMAGE_WHY, "this dspipe was built without FreeType: cannot draw text with "
             "'%s' (apt-get install libfreetype-dev, then re-run configure)", path);
    return DSP_EUNSUPPORTED;
}

void image_font_free(image_font **f)
{
    if (f)
        *f = NULL;
}

int image_font_line_height(const image_font *f)
{
    return 0;
}

int image_draw_text(const image_canvas *cv, image_font *f, int64_t x, int64_t y,
                    const char *text, image_rgb col, char *why)
{
    snprintf(why, IMAGE_WHY, "built without FreeType");
    return DSP_EUNSUPPORTED;
}

#endif
