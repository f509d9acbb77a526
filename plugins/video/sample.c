/* sample.c - which frames a model sees: uniform indices per clip, fps grid hits, target sizes. */
#include "video.h"

#include <math.h>

void video_uniform_indices(int64_t n, int num_clips, int k, int64_t *idx)
{
    for (int c = 0; c < num_clips; c++) {
        /* clip c covers frames [lo, hi): equal spans, as integer division */
        int64_t lo = n * c / num_clips, hi = n * (c + 1) / num_clips;
        if (hi <= lo)           /* fewer frames than clips: lo < n still */
            hi = lo + 1;
        int64_t last = hi - 1;
        for (int j = 0; j < k; j++) {
            /* torch.linspace(lo, last, k).long(): truncation toward zero */
            double x = k == 1 ? (double)lo : (double)lo + (double)(last - lo) * j / (k - 1);
            int64_t i = (int64_t)x;
            idx[(int64_t)c * k + j] = i < lo ? lo : i > last ? last : i;
        }
    }
}

int64_t video_fps_hits(double fps, double t0, double t1)
{
    /* Grid points j / fps (j >= 0) with t0 - tol <= j / fps < t1 - tol. The
     * tolerance keeps a frame whose pts is a rounded grid time (1/30 s is
     * 0.033 in Matroska's 1 ms timebase) on the grid point it stands for. */
    const double tol = VIDEO_PTS_TOLERANCE;
    double a = t0 - tol, b = t1 - tol;
    if (!(b > a) || b <= 0)
        return 0;
    int64_t first = a <= 0 ? 0 : (int64_t)ceil(a * fps), end = (int64_t)ceil(b * fps);
    return end > first ? end - first : 0;
}

void video_target_size(int w, int h, int width, int height, int shorter, int *ow, int *oh)
{
    if (width > 0 && height > 0) {
        *ow = width;
        *oh = height;
    } else if (width > 0) {
        *ow = width;
        *oh = (int)lround((double)h * width / w);
    } else if (height > 0) {
        *oh = height;
        *ow = (int)lround((double)w * height / h);
    } else if (shorter > 0) {
        /* torchvision Resize(int): the shorter side becomes `shorter`, the
         * longer int(shorter * long / short) */
        if (w <= h) {
            *ow = shorter;
            *oh = (int)((double)shorter * h / w);
        } else {
            *oh = shorter;
            *ow = (int)((double)shorter * w / h);
        }
    } else {
        *ow = w;
        *oh = h;
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}
