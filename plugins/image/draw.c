/* draw.c - clipped drawing primitives on u8 RGB/RGBA images: colours, blending, rectangles, Bresenham lines, mask contours. */
#include "image.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    image_rgb rgb;
} named_colors[] = {
    { "red", { 255, 0, 0 } },       { "green", { 0, 255, 0 } },   { "blue", { 0, 0, 255 } },
    { "yellow", { 255, 255, 0 } },  { "cyan", { 0, 255, 255 } },  { "magenta", { 255, 0, 255 } },
    { "white", { 255, 255, 255 } }, { "black", { 0, 0, 0 } },     { "orange", { 255, 165, 0 } },
};

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int image_parse_color(const char *s, image_rgb *out)
{
    if (s[0] == '#') {
        int d[6];
        if (strlen(s) != 7)
            return DSP_EINVAL;
        for (int i = 0; i < 6; i++)
            if ((d[i] = hex_digit(s[1 + i])) < 0)
                return DSP_EINVAL;
        *out = (image_rgb){ (uint8_t)(d[0] * 16 + d[1]), (uint8_t)(d[2] * 16 + d[3]),
                            (uint8_t)(d[4] * 16 + d[5]) };
        return 0;
    }
    for (size_t i = 0; i < sizeof named_colors / sizeof named_colors[0]; i++)
        if (strcasecmp(s, named_colors[i].name) == 0) {
            *out = named_colors[i].rgb;
            return 0;
        }
    return DSP_EINVAL;
}

void image_blend(const image_canvas *cv, int64_t x, int64_t y, image_rgb col, unsigned cover)
{
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h || cover == 0)
        return;
    uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * (size_t)cv->c;
    const uint8_t v[3] = { col.r, col.g, col.b };
    unsigned keep = 255 - cover;
    for (int ch = 0; ch < 3; ch++)
        p[ch] = (uint8_t)((p[ch] * keep + v[ch] * cover + 127) / 255);
    if (cv->c == 4)
        p[3] = (uint8_t)(cover + (p[3] * keep + 127) / 255);
}

/* An opaque filled rectangle, inclusive corners, clipped. */
static void fill_rect(const image_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                      image_rgb col)
{
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 >= cv->w)
        x1 = cv->w - 1;
    if (y1 >= cv->h)
        y1 = cv->h - 1;
    for (int64_t y = y0; y <= y1; y++)
        for (int64_t x = x0; x <= x1; x++)
            image_blend(cv, x, y, col, 255);
}

void image_draw_rect(const image_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                     int thickness, image_rgb col)
{
    /* a band per side; where the bands meet the box is filled */
    int64_t t = thickness;
    if (2 * t > x1 - x0 || 2 * t > y1 - y0) {
        fill_rect(cv, x0, y0, x1, y1, col);
        return;
    }
    fill_rect(cv, x0, y0, x1, y0 + t - 1, col);             /* top */
    fill_rect(cv, x0, y1 - t + 1, x1, y1, col);             /* bottom */
    fill_rect(cv, x0, y0 + t, x0 + t - 1, y1 - t, col);     /* left */
    fill_rect(cv, x1 - t + 1, y0 + t, x1, y1 - t, col);     /* right */
}

void image_draw_line(const image_canvas *cv, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                     int thickness, image_rgb col)
{
    int64_t lo = (thickness - 1) / 2, hi = thickness / 2;
    /* wholly on one outside side: nothing to walk */
    if ((x0 > x1 ? x0 : x1) + hi < 0 || (y0 > y1 ? y0 : y1) + hi < 0 ||
        (x0 < x1 ? x0 : x1) - lo >= cv->w || (y0 < y1 ? y0 : y1) - lo >= cv->h)
        return;
    int64_t dx = llabs(x1 - x0), dy = -llabs(y1 - y0);
    int64_t sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        /* a point whose brush misses the image draws nothing: only the
         * pixels inside are touched */
        if (x0 + hi >= 0 && y0 + hi >= 0 && x0 - lo < cv->w && y0 - lo < cv->h)
            fill_rect(cv, x0 - lo, y0 - lo, x0 + hi, y0 + hi, col);
        if (x0 == x1 && y0 == y1)
            break;
        int64_t e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

void image_draw_contours(const image_canvas *cv, const uint8_t *mask, const image_rgb *palette,
                         int n)
{
    int64_t w = cv->w, h = cv->h;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            uint8_t v = mask[y * w + x];
            if (!v)
                continue;
            int edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 ||
                       mask[y * w + x - 1] != v || mask[y * w + x + 1] != v ||
                       mask[(y - 1) * w + x] != v || mask[(y + 1) * w + x] != v;
            if (edge)
                image_blend(cv, x, y, palette[(v - 1) % n], 255);
        }
}
