/* conv_winograd.c - CPU Winograd F(2,3) convolution, F(2x2x2, 3x3x3) and F(2x2, 3x3): tile transforms around 16 or 64 batched GEMMs. */
#define _DEFAULT_SOURCE             /* madvise, MADV_HUGEPAGE */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"
#include "ops/conv_int.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_VARIANT 1
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define HAVE_AVX2_VARIANT 0
#endif

/* Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks",
 * per spatial dim: a 3-tap kernel over 4 inputs gives 2 outputs as
 * y = A^T [(G g) * (B^T d)], so a 3x3x3 kernel over a 4x4x4 input tile
 * costs 64 multiplies for 8 outputs instead of 216. Across channels the
 * 64 (or 16) products of a tile position are 64 GEMMs
 * M[p] [oc x tiles] = U[p] [oc x c] V[p] [c x tiles], with U the
 * transformed weights (G g G^T, per dim) and V the transformed input tiles.
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * A dim whose kernel is 1 (depth of a 2-D call, or a (1,3,3) kernel) has
 * tiles of 1 and no transform. */

/* Tiles transformed together: one AVX2 vector holds a value of 8 tiles. */
#define LANES 8
/* At most 4 x 4 x 4 transformed values per tile. */
#define WINO_MAX_P 64

/* Transformed input and products of one block of tiles, per thread, are
 * kept about this size, so they stay in cache between the transform, the
 * GEMMs and the inverse transform. Larger blocks make wider GEMMs, which
 * OpenBLAS (the path without AVX2) repacks U[p] for less often: bench/ops
 * conv, one thread, 0.5 / 1 / 2 / 4 MiB took 98 / 88 / 83 / 81 ms on
 * r3d_18's layer1 and 30 / 27 / 25 / 21 ms on layer3. The AVX2 kernel
 * packs nothing and likes the blocks in L2 (512 KiB on Zen 3): 66 / 65 /
 * 68 / 69 ms on layer1, 15.4 / 17.8 / 16.2 / 16.7 ms on layer3. */
#define WINO_BLOCK_BYTES ((int64_t)4 << 20)
#define WINO_BLOCK_BYTES_AVX2 ((int64_t)512 << 10)
/* The fewest tiles of a block: a GEMM narrower than this wastes OpenBLAS's
 * packing of U[p] (oc x c floats, repacked every call). */
#define WINO_MIN_BLOCK_TILES 16
/* With fewer than two blocks per thread, the whole image is one block
 * (its phases split across the threads instead) while its scratch stays
 * under this. */
#define WINO_WHOLE_BYTES ((int64_t)64 << 20)

typedef struct wino_plan {
    int64_t c, oc;
    int64_t alpha[3];           /* transformed tile size per dim: 4, or 1 for a 1-tap dim */
    int64_t m[3];               /* outputs per tile per dim: 2 or 1 */
    int64_t tiles[3], ntiles;   /* tiles per image */
    int64_t pin[3];             /* the input zero-padded to whole tiles */
    int64_t P;                  /* alpha[0] * alpha[1] * alpha[2]: GEMMs per block */
    int64_t tb;                 /* tiles per block, a multiple of LANES */
    int64_t vs, ms;             /* floats from V[p] to V[p+1], M[p] to M[p+1] */
    int64_t nblk;               /* blocks per image */
} wino_plan;

int dspi_winograd_applies(const dspi_conv_geom *g)
{
    if (g->algo == DSPI_CONV_IM2COL || g->groups != 1 || g->c < 1 || g->oc < 1)
        return 0;
    for (int d = 0; d < 3; d++)
        if (g->stride[d] != 1 || g->dil[d] != 1)
            return 0;
    /* h and w always 3-tap, so the tile code is specialised on depth only */
    if (g->k[1] != 3 || g->k[2] != 3 || !(g->k[0] == 3 || (g->k[0] == 1 && g->pad[0] == 0)))
        return 0;
    if (g->algo == DSPI_CONV_WINOGRAD)
        return 1;
    /* The transforms cost per channel, the GEMMs per channel pair, so few
     * channels leave too little GEMM work to win the transforms back.
     * bench_ops conv (bench/ops/RESULTS.md), 2 threads, 16x56x56: with the
     * AVX2 GEMM kernel Winograd was 1.64x faster than im2col at 8
     * channels and 1.35-1.77x at 4 (fewer not measured); through OpenBLAS (no
     * AVX2) 1.07x at 8 and 0.85x at 4. Small volumes win too (64 channels
     * at 2x4x4: 2.5x). */
    const int64_t min_c = dspi_cpu_use_avx2() ? 4 : 8;
    return g->c >= min_c && g->oc >= min_c;
}

static void plan_init(const dspi_conv_geom *g, int nthr, wino_plan *pl)
{
    pl->c = g->c;
    pl->oc = g->oc;
    pl->P = 1;
    pl->ntiles = 1;
    for (int d = 0; d < 3; d++) {
        pl->alpha[d] = g->k[d] == 3 ? 4 : 1;
        pl->m[d] = g->k[d] == 3 ? 2 : 1;
        pl->tiles[d] = (g->out[d] + pl->m[d] - 1) / pl->m[d];
        pl->pin[d] = pl->tiles[d] * pl->m[d] + pl->alpha[d] - pl->m[d];
        pl->P *= pl->alpha[d];
        pl->ntiles *= pl->tiles[d];
    }
    const int64_t per_tile = pl->P * (pl->c + pl->oc) * (int64_t)sizeof(float);
    int64_t tb = (dspi_cpu_use_avx2() ? WINO_BLOCK_BYTES_AVX2 : WINO_BLOCK_BYTES) / per_tile;
    tb = tb < WINO_MIN_BLOCK_TILES ? WINO_MIN_BLOCK_TILES : tb;
    tb = tb > pl->ntiles ? pl->ntiles : tb;
    if (g->n * ((pl->ntiles + tb - 1) / tb) < 2 * nthr && pl->ntiles * per_tile <= WINO_WHOLE_BYTES)
        tb = pl->ntiles;
    pl->tb = (tb + LANES - 1) / LANES * LANES;
    pl->nblk = (pl->ntiles + pl->tb - 1) / pl->tb;
    /* a cache line more than the matrices: at a multiple of 4 KiB the 64
     * rows one tile transform writes or reads would all map to one L1 set
     * and evict each other (perf showed the transforms' stores stalling) */
    pl->vs = pl->c * pl->tb + 16;
    pl->ms = pl->oc * pl->tb + 16;
}

/* ---- transforms -------------------------------------------------------- */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* B^T (inverse 0) on a line of 4 positions of d at stride s from base, or
 * A^T (inverse 1), whose 2 outputs go to the line's first 2 positions;
 * every position holds one value of LANES tiles. */
static ALWAYS_INLINE void transform_line(float (*d)[LANES], int base, int s, int inverse)
{
    float *r0 = d[base], *r1 = d[base + s], *r2 = d[base + 2 * s], *r3 = d[base + 3 * s];
    for (int l = 0; l < LANES; l++) {
        const float a = r0[l], b = r1[l], c = r2[l], e = r3[l];
        if (inverse) {
            r0[l] = a + b + c;
            r1[l] = b - c - e;
        } else {
            r0[l] = a - c;
            r1[l] = b + c;
            r2[l] = c - b;
            r3[l] = b - e;
        }
    }
}

/* The tiles d [A0][4][4] (A0 4, or 1 for a 1-tap depth; a constant
 * wherever this is inlined) transformed along w, h, then d. The inverse
 * transforms only the lines whose outputs the next dim reads: the result
 * (a, b, e) < (2, 2, 2) stays at a * 16 + b * 4 + e. */
static ALWAYS_INLINE void transform_tiles(float (*d)[LANES], const int A0, int inverse)
{
    const int keep = inverse ? 2 : 4;
    for (int i = 0; i < A0 * 4; i++)
        transform_line(d, i * 4, 1, inverse);
    for (int a = 0; a < A0; a++)
        for (int e = 0; e < keep; e++)
            transform_line(d, a * 16 + e, 4, inverse);
    for (int b = 0; A0 == 4 && b < keep; b++)
        for (int e = 0; e < keep; e++)
            transform_line(d, b * 4 + e, 16, inverse);
}

/* ---- weights ----------------------------------------------------------- */

typedef struct weight_job {
    const void *w;
    dsp_dtype wdt;
    const dspi_conv_geom *g;
    const wino_plan *pl;
    float *U;                   /* [P][oc][c] */
} weight_job;

/* Input channels converted at once per output channel. */
#define WEIGHT_CHUNK 64

/* U[p][o][ci] = (G g G^T per dim)[p] for output channels o0 .. o1-1: G
 * along w and h (3 -> 4), then along d for a 3-tap depth. */
static void weight_rows(void *arg, int64_t o0, int64_t o1)
{
    const weight_job *jb = arg;
    const wino_plan *pl = jb->pl;
    const int kd = (int)jb->g->k[0], K = kd * 9;
    float tap[WEIGHT_CHUNK * 27], out[WINO_MAX_P][WEIGHT_CHUNK];
    for (int64_t o = o0; o < o1; o++)
        for (int64_t c0 = 0; c0 < pl->c; c0 += WEIGHT_CHUNK) {
            const int64_t nc = pl->c - c0 < WEIGHT_CHUNK ? pl->c - c0 : WEIGHT_CHUNK;
            dspi_load_f32(tap, jb->w, jb->wdt, (o * pl->c + c0) * K, 1, nc * K);
            for (int64_t ci = 0; ci < nc; ci++) {
                const float *g = tap + ci * K;
                float t[3][4][4], u[4][4][4];
                for (int a = 0; a < kd; a++) {
                    float r[3][4];
                    for (int b = 0; b < 3; b++) {
                        const float *x = g + (a * 3 + b) * 3;
                        r[b][0] = x[0];
                        r[b][1] = 0.5f * (x[0] + x[1] + x[2]);
                        r[b][2] = 0.5f * (x[0] - x[1] + x[2]);
                        r[b][3] = x[2];
                    }
                    for (int e = 0; e < 4; e++) {
                        t[a][0][e] = r[0][e];
                        t[a][1][e] = 0.5f * (r[0][e] + r[1][e] + r[2][e]);
                        t[a][2][e] = 0.5f * (r[0][e] - r[1][e] + r[2][e]);
                        t[a][3][e] = r[2][e];
                    }
                }
                for (int i = 0; i < 16; i++) {
                    const float *x = &t[0][0][0] + i;
                    float *y = &u[0][0][0] + i;
                    if (kd == 1) {
                        y[0] = x[0];
                        continue;
                    }
                    y[0] = x[0];
                    y[16] = 0.5f * (x[0] + x[16] + x[32]);
                    y[32] = 0.5f * (x[0] - x[16] + x[32]);
                    y[48] = x[32];
                }
                for (int64_t p = 0; p < pl->P; p++)
                    out[p][ci] = (&u[0][0][0])[p];
            }
            /* a run of channels per tile position: 64 scattered floats
             * per channel made this pass 3x slower (perf, r3d_18) */
            for (int64_t p = 0; p < pl->P; p++)
                memcpy(jb->U + (p * pl->oc + o) * pl->c + c0, out[p], (size_t)nc * sizeof(float));
        }
}

typedef struct weight_make {
    weight_job jb;
    int64_t bytes;
} weight_make;

/* 2 MiB: the transformed weights of a large layer (64 MiB for 512
 * channels) go in transparent huge pages where the kernel gives them on
 * request: r3d_18's 268 MB were 67k page faults in 4 KiB pages. */
#define HUGE_PAGE ((size_t)2 << 20)

static int transform_weights(void *arg, void **data)
{
    weight_make *mk = arg;
    const size_t bytes = (size_t)mk->bytes;
    void *mem = NULL;
    if (bytes >= HUGE_PAGE) {
        if (posix_memalign(&mem, HUGE_PAGE, (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE))
            mem = NULL;
#ifdef MADV_HUGEPAGE
        else
            madvise(mem, bytes, MADV_HUGEPAGE);   /* advice only: failing is fine */
#endif
    } else {
        mem = malloc(bytes);
    }
    if (!(mk->jb.U = mem))
        return DSP_ENOMEM;
    dspi_parallel_for(mk->jb.pl->oc, 1, mk->jb.pl->oc * mk->jb.pl->c * 200, weight_rows, &mk->jb);
    *data = mk->jb.U;
    return 0;
}

/* What identifies transformed weights within their buffer. */
typedef struct weight_key {
    char tag[8];                /* "wino23": this module's entries */
    size_t offset;
    int64_t shape[5];
    int ndim;
    dsp_dtype dtype;
} weight_key;

/* The transformed weights: kept with w's buffer when it is read-only
 * (*owned NULL), else made for this call (*owned to free). NULL when out
 * of memory. */
static const float *weights_for(const void *w, dsp_dtype wdt, const dspi_conv_geom *g,
                                const wino_plan *pl, float **owned)
{
    weight_make mk = { { w, wdt, g, pl, NULL }, pl->P * pl->oc * pl->c * (int64_t)sizeof(float) };
    void *data = NULL;
    int rc = 0;
    *owned = NULL;
    if (g->w_src) {
        weight_key key;
        memset(&key, 0, sizeof key);
        memcpy(key.tag, "wino23", 7);
        key.offset = g->w_src->offset;
        key.ndim = g->w_src->ndim;
        key.dtype = g->w_src->dtype;
        for (int d = 0; d < g->w_src->ndim && d < 5; d++)
            key.shape[d] = g->w_src->shape[d];
        data = dspi_buffer_derived(g->w_src->buf, &key, sizeof key, transform_weights, free, &mk,
                                   &rc);
        if (data || rc < 0)
            return data;
    }
    if (transform_weights(&mk, &data) < 0)
        return NULL;
    *owned = data;
    return data;
}

/* ---- tiles ------------------------------------------------------------- */

typedef struct wino_job {
    const float *x, *U;
    const dspi_conv_geom *g;
    const wino_plan *pl;
    float *y, *scratch;         /* per thread: V [P][c][tb] then M [P][oc][tb] */
    /* the block the phases of a one-block-at-a-time call work on */
    int64_t n, t0, nt;
    int64_t n0;                 /* the first image in x (padded images of a round) */
} wino_job;

/* The first input coordinates of tile t per dim, in tile order d, h, w. */
static void tile_origin(const wino_job *jb, int64_t t, int64_t o[3])
{
    const wino_plan *pl = jb->pl;
    o[2] = t % pl->tiles[2] * pl->m[2];
    o[1] = t / pl->tiles[2] % pl->tiles[1] * pl->m[1];
    o[0] = t / pl->tiles[2] / pl->tiles[1] * pl->m[0];
}

#if HAVE_AVX2_VARIANT
/* Row b of 8 tiles side by side (tile l reads src[2l .. 2l+3]) into
 * d[0..3]: the stride-2 gathers as even/odd shuffles of 4 loads. */
AVX2 static inline void gather_row8(float (*d)[LANES], const float *src)
{
    const __m256 a = _mm256_loadu_ps(src), b = _mm256_loadu_ps(src + 8);
    const __m256 c = _mm256_loadu_ps(src + 2), e = _mm256_loadu_ps(src + 10);
    const int even = _MM_SHUFFLE(2, 0, 2, 0), odd = _MM_SHUFFLE(3, 1, 3, 1);
    const int order = _MM_SHUFFLE(3, 1, 2, 0);
#define EVEN_ODD(x, y, sel) \
    _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(x, y, sel)), order))
    _mm256_storeu_ps(d[0], EVEN_ODD(a, b, even));
    _mm256_storeu_ps(d[1], EVEN_ODD(a, b, odd));
    _mm256_storeu_ps(d[2], EVEN_ODD(c, e, even));
    _mm256_storeu_ps(d[3], EVEN_ODD(c, e, odd));
#undef EVEN_ODD
}

/* The outputs v0 (e = 0) and v1 (e = 1) of 8 whole tiles side by side
 * interleaved into dst[0..15]. */
AVX2 static inline void scatter_row8(float *dst, const float *v0, const float *v1)
{
    const __m256 a = _mm256_loadu_ps(v0), b = _mm256_loadu_ps(v1);
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}
#endif

/* V[p][ci][j] for channels c0 .. c1-1 of the job's tiles, read from the
 * padded input (every tile inside it); A0 as in transform_tiles. */
static ALWAYS_INLINE void input_tiles_body(const wino_job *jb, int64_t c0, int64_t c1, float *V,
                                           const int A0, const int avx2)
{
    const wino_plan *pl = jb->pl;
    const int64_t PH = pl->pin[1], PW = pl->pin[2], PP = pl->pin[0] * PH * PW;
    float d[WINO_MAX_P][LANES];
    for (int64_t j0 = 0; j0 < jb->nt; j0 += LANES) {
        int64_t at[LANES];
        const int nl = jb->nt - j0 < LANES ? (int)(jb->nt - j0) : LANES;
        for (int l = 0; l < nl; l++) {
            int64_t o[3];
            tile_origin(jb, jb->t0 + j0 + l, o);
            at[l] = (o[0] * PH + o[1]) * PW + o[2];
        }
#if HAVE_AVX2_VARIANT
        /* 8 tiles side by side in one row: vector gathers */
        const int row8 = avx2 && nl == LANES && at[LANES - 1] == at[0] + 2 * (LANES - 1);
#endif
        for (int64_t ci = c0; ci < c1; ci++) {
            const float *plane = jb->x + ((jb->n - jb->n0) * pl->c + ci) * PP;
            if (nl < LANES)
                memset(d, 0, sizeof d);
#if HAVE_AVX2_VARIANT
            if (row8)
                for (int a = 0; a < A0; a++)
                    for (int b = 0; b < 4; b++)
                        gather_row8(d + (a * 4 + b) * 4, plane + at[0] + (a * PH + b) * PW);
            else
#endif
            for (int l = 0; l < nl; l++)
                for (int a = 0; a < A0; a++)
                    for (int b = 0; b < 4; b++) {
                        const float *src = plane + at[l] + (a * PH + b) * PW;
                        for (int e = 0; e < 4; e++)
                            d[(a * 4 + b) * 4 + e][l] = src[e];
                    }
            transform_tiles(d, A0, 0);
            for (int p = 0; p < A0 * 16; p++)
                memcpy(V + p * pl->vs + ci * pl->tb + j0, d[p], sizeof d[p]);
        }
    }
}

/* y for output channels o0 .. o1-1 of the job's tiles from M[p][o][j]. */
static ALWAYS_INLINE void output_tiles_body(const wino_job *jb, int64_t o0, int64_t o1,
                                            const float *M, const int A0, const int avx2)
{
    const wino_plan *pl = jb->pl;
    const dspi_conv_geom *g = jb->g;
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int md = A0 == 4 ? 2 : 1;
    float d[WINO_MAX_P][LANES];
    for (int64_t j0 = 0; j0 < jb->nt; j0 += LANES) {
        const int nl = jb->nt - j0 < LANES ? (int)(jb->nt - j0) : LANES;
        int64_t org[LANES][3];
        int whole[LANES];
        for (int l = 0; l < nl; l++) {
            tile_origin(jb, jb->t0 + j0 + l, org[l]);
            whole[l] = org[l][0] + md <= OD && org[l][1] + 2 <= OH && org[l][2] + 2 <= OW;
        }
#if HAVE_AVX2_VARIANT
        /* 8 whole tiles side by side in one row: vector stores */
        int row8 = avx2 && nl == LANES && org[LANES - 1][2] == org[0][2] + 2 * (LANES - 1);
        for (int l = 0; row8 && l < LANES; l++)
            row8 = whole[l];
#endif
        for (int64_t o = o0; o < o1; o++) {
            for (int p = 0; p < A0 * 16; p++)
                memcpy(d[p], M + p * pl->ms + o * pl->tb + j0, sizeof d[p]);
            transform_tiles(d, A0, 1);
            float *yo = jb->y + (jb->n * pl->oc + o) * OD * OH * OW;
#if HAVE_AVX2_VARIANT
            if (row8) {
                for (int a = 0; a < md; a++)
                    for (int b = 0; b < 2; b++)
                        scatter_row8(yo + ((org[0][0] + a) * OH + org[0][1] + b) * OW + org[0][2],
                                     d[a * 16 + b * 4], d[a * 16 + b * 4 + 1]);
                continue;
            }
#endif
            for (int l = 0; l < nl; l++)
                for (int a = 0; a < md; a++)
                    for (int b = 0; b < 2; b++) {
                        float *dst = yo + ((org[l][0] + a) * OH + org[l][1] + b) * OW + org[l][2];
                        if (whole[l]) {
                            dst[0] = d[a * 16 + b * 4][l];
                            dst[1] = d[a * 16 + b * 4 + 1][l];
                        } else if (org[l][0] + a < OD && org[l][1] + b < OH) {
                            for (int e = 0; e < 2 && org[l][2] + e < OW; e++)
                                dst[e] = d[a * 16 + b * 4 + e][l];
                        }
                    }
        }
    }
}

/* The tile code once for baseline x86-64 (or whatever the target is) and
 * once with AVX2 and FMA, each for a 3-tap and a 1-tap depth: the same C,
 * its lane loops vectorised 8 wide in the second, which also gathers and
 * stores rows of 8 tiles with shuffles. */
static void input_tiles_base(const wino_job *jb, int64_t c0, int64_t c1, float *V)
{
    if (jb->pl->alpha[0] == 4)
        input_tiles_body(jb, c0, c1, V, 4, 0);
    else
        input_tiles_body(jb, c0, c1, V, 1, 0);
}

static void output_tiles_base(const wino_job *jb, int64_t o0, int64_t o1, const float *M)
{
    if (jb->pl->alpha[0] == 4)
        output_tiles_body(jb, o0, o1, M, 4, 0);
    else
        output_tiles_body(jb, o0, o1, M, 1, 0);
}

#if HAVE_AVX2_VARIANT
AVX2 static void input_tiles_avx2(const wino_job *jb, int64_t c0, int64_t c1, float *V)
{
    if (jb->pl->alpha[0] == 4)
        input_tiles_body(jb, c0, c1, V, 4, 1);
    else
        input_tiles_body(jb, c0, c1, V, 1, 1);
}

AVX2 static void output_tiles_avx2(const wino_job *jb, int64_t o0, int64_t o1, const float *M)
{
    if (jb->pl->alpha[0] == 4)
        output_tiles_body(jb, o0, o1, M, 4, 1);
    else
        output_tiles_body(jb, o0, o1, M, 1, 1);
}
#endif

static void input_tiles(const wino_job *jb, int64_t c0, int64_t c1, float *V)
{
#if HAVE_AVX2_VARIANT
    if (dspi_cpu_use_avx2()) {
        input_tiles_avx2(jb, c0, c1, V);
        return;
    }
#endif
    input_tiles_base(jb, c0, c1, V);
}

static void output_tiles(const wino_job *jb, int64_t o0, int64_t o1, const float *M)
{
#if HAVE_AVX2_VARIANT
    if (dspi_cpu_use_avx2()) {
        output_tiles_avx2(jb, o0, o1, M);
        return;
    }
#endif
    output_tiles_base(jb, o0, o1, M);
}

#if HAVE_AVX2_VARIANT
/* C[R][N] = A[R][K] B[K][N] for R <= 6 rows (a constant wherever this is
 * inlined) and N a multiple of 8: R x 16 accumulators in registers (named
 * ones: GCC kept an array of them on the stack), a broadcast of A per row
 * and two loads of B per k. */
AVX2 static ALWAYS_INLINE void gemm_rows_avx2(const float *A, int64_t lda, const float *B, int64_t ldb,
                                              float *C, int64_t ldc, int64_t K, int64_t N, const int R)
{
#define ROWS_DO(X) X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) \
    X(5, c50, c51)
#define ZERO(r, x0, x1) __m256 x0 = _mm256_setzero_ps(), x1 = x0;
#define ZERO1(r, x0, x1) __m256 x0 = _mm256_setzero_ps();
#define FMA2(r, x0, x1)                                                    \
    if (R > r) {                                                           \
        const __m256 a = _mm256_broadcast_ss(A + r * lda + k);             \
        x0 = _mm256_fmadd_ps(a, b0, x0);                                   \
        x1 = _mm256_fmadd_ps(a, b1, x1);                                   \
    }
#define FMA1(r, x0, x1)                                                    \
    if (R > r)                                                             \
        x0 = _mm256_fmadd_ps(_mm256_broadcast_ss(A + r * lda + k), b0, x0);
#define STORE2(r, x0, x1)                                                  \
    if (R > r) {                                                           \
        _mm256_storeu_ps(C + r * ldc + j, x0);                             \
        _mm256_storeu_ps(C + r * ldc + j + 8, x1);                         \
    }
#define STORE1(r, x0, x1)                                                  \
    if (R > r)                                                             \
        _mm256_storeu_ps(C + r * ldc + j, x0);
    int64_t j = 0;
    for (; j + 16 <= N; j += 16) {
        ROWS_DO(ZERO)
        for (int64_t k = 0; k < K; k++) {
            const __m256 b0 = _mm256_loadu_ps(B + k * ldb + j), b1 = _mm256_loadu_ps(B + k * ldb + j + 8);
            ROWS_DO(FMA2)
        }
        ROWS_DO(STORE2)
    }
    if (j < N) {
        ROWS_DO(ZERO1)
        for (int64_t k = 0; k < K; k++) {
            const __m256 b0 = _mm256_loadu_ps(B + k * ldb + j);
            ROWS_DO(FMA1)
        }
        ROWS_DO(STORE1)
    }
#undef ROWS_DO
#undef ZERO
#undef ZERO1
#undef FMA2
#undef FMA1
#undef STORE2
#undef STORE1
}

/* M[p] [oc x N] = U[p] V[p]: the blocks' GEMMs without OpenBLAS, which
 * packed both operands and zeroed M on every call (a third of the GEMM
 * time at these sizes: sgemm_oncopy, _itcopy and _beta in perf). */
AVX2 static void gemm_avx2(const float *A, int64_t M, int64_t K, const float *B, int64_t ldb,
                           int64_t N, float *C, int64_t ldc)
{
    int64_t o = 0;
    for (; o + 6 <= M; o += 6)
        gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 6);
    switch (M - o) {
    case 5: gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 5); break;
    case 4: gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 4); break;
    case 3: gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 3); break;
    case 2: gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 2); break;
    case 1: gemm_rows_avx2(A + o * K, K, B, ldb, C + o * ldc, ldc, K, N, 1); break;
    default: break;
    }
}
#endif

/* M[p] = U[p] V[p] for tile positions p0 .. p1-1 of a block of nt tiles. */
static void block_gemms(const wino_job *jb, int64_t p0, int64_t p1, int64_t nt, const float *V,
                        float *M)
{
    const wino_plan *pl = jb->pl;
#if HAVE_AVX2_VARIANT
    if (dspi_cpu_use_avx2()) {
        /* whole lane groups: input_tiles wrote every column up to there */
        const int64_t n8 = (nt + LANES - 1) / LANES * LANES;
        for (int64_t p = p0; p < p1; p++)
            gemm_avx2(jb->U + p * pl->oc * pl->c, pl->oc, pl->c, V + p * pl->vs, pl->tb, n8,
                      M + p * pl->ms, pl->tb);
        return;
    }
#endif
    for (int64_t p = p0; p < p1; p++)
        dspi_sgemm(0, pl->oc, nt, pl->c, jb->U + p * pl->oc * pl->c, pl->c,
                   V + p * pl->vs, pl->tb, M + p * pl->ms, pl->tb);
}

/* One block per task, all three phases on one thread in its own scratch:
 * the block's V and M stay in that core's cache. */
static void block_task(void *arg, int task, int thread)
{
    const wino_job *jb0 = arg;
    const wino_plan *pl = jb0->pl;
    wino_job jb = *jb0;
    float *V = jb0->scratch + thread * pl->P * (pl->vs + pl->ms);
    float *M = V + pl->P * pl->vs;
    jb.n = jb0->n0 + task / pl->nblk;
    jb.t0 = task % pl->nblk * pl->tb;
    jb.nt = pl->ntiles - jb.t0 < pl->tb ? pl->ntiles - jb.t0 : pl->tb;
    input_tiles(&jb, 0, pl->c, V);
    block_gemms(&jb, 0, pl->P, jb.nt, V, M);
    output_tiles(&jb, 0, pl->oc, M);
}

/* The phases of one shared block, each split across the threads. */
static void phase_input(void *arg, int64_t c0, int64_t c1)
{
    const wino_job *jb = arg;
    input_tiles(jb, c0, c1, jb->scratch);
}

static void phase_gemm(void *arg, int task, int thread)
{
    const wino_job *jb = arg;
    const float *V = jb->scratch;
    block_gemms(jb, task, task + 1, jb->nt, V, jb->scratch + jb->pl->P * jb->pl->vs);
}

static void phase_output(void *arg, int64_t o0, int64_t o1)
{
    const wino_job *jb = arg;
    output_tiles(jb, o0, o1, jb->scratch + jb->pl->P * jb->pl->vs);
}

typedef struct pad_job {
    const float *x;
    const dspi_conv_geom *g;
    const wino_plan *pl;
    float *xp;
} pad_job;

/* Planes p0 .. p1-1 of x copied into the zero-padded xp. */
static void pad_planes(void *arg, int64_t p0, int64_t p1)
{
    const pad_job *jb = arg;
    const dspi_conv_geom *g = jb->g;
    const int64_t *pin = jb->pl->pin;
    for (int64_t p = p0; p < p1; p++) {
        float *dst = jb->xp + p * pin[0] * pin[1] * pin[2];
        const float *src = jb->x + p * g->in[0] * g->in[1] * g->in[2];
        memset(dst, 0, (size_t)(pin[0] * pin[1] * pin[2]) * sizeof *dst);
        for (int64_t z = 0; z < g->in[0]; z++)
            for (int64_t h = 0; h < g->in[1]; h++)
                memcpy(dst + ((z + g->pad[0]) * pin[1] + h + g->pad[1]) * pin[2] + g->pad[2],
                       src + (z * g->in[1] + h) * g->in[2], (size_t)g->in[2] * sizeof *dst);
    }
}

int dspi_cpu_conv_winograd(const float *x, const void *w, dsp_dtype wdt, const dspi_conv_geom *g,
                           float *y)
{
    const int nthr = dsp_ops_threads();
    wino_plan pl;
    plan_init(g, nthr, &pl);
    float *owned = NULL;
    const float *U = weights_for(w, wdt, g, &pl, &owned);
    if (!U)
        return DSP_ENOMEM;
    /* Images are padded and run a few at a time, enough for two blocks per
     * thread: a batch's padded copy would be as large as the input (and
     * fresh pages to fault in on every call). */
    int64_t ng = pl.nblk >= 2 * nthr ? 1 : (2 * nthr + pl.nblk - 1) / pl.nblk;
    ng = ng > g->n ? g->n : ng;
    const int per_block = ng * pl.nblk >= 2 * nthr || nthr < 2;
    const int64_t per_thread = pl.P * (pl.vs + pl.ms);
    const int64_t pin = pl.pin[0] * pl.pin[1] * pl.pin[2], IP = g->in[0] * g->in[1] * g->in[2];
    pad_job pj = { x, g, &pl, malloc((size_t)(ng * g->c * pin) * sizeof(float)) };
    wino_job jb = { pj.xp, U, g, &pl, y, NULL, 0, 0, 0, 0 };
    if (!pj.xp ||
        !(jb.scratch = malloc((size_t)((per_block ? nthr : 1) * per_thread) * sizeof(float)))) {
        free(pj.xp);
        free(owned);
        return DSP_ENOMEM;
    }
    for (jb.n0 = 0; jb.n0 < g->n; jb.n0 += ng) {
        const int64_t nn = g->n - jb.n0 < ng ? g->n - jb.n0 : ng;
        pj.x = x + jb.n0 * g->c * IP;
        dspi_parallel_for(nn * g->c, 1, nn * g->c * pin, pad_planes, &pj);
        if (per_block) {
            dsp_parallel_tasks((int)(nn * pl.nblk), block_task, &jb);
            continue;
        }
        for (jb.n = jb.n0; jb.n < jb.n0 + nn; jb.n++)
            for (jb.t0 = 0; jb.t0 < pl.ntiles; jb.t0 += pl.tb) {
                jb.nt = pl.ntiles - jb.t0 < pl.tb ? pl.ntiles - jb.t0 : pl.tb;
                const int64_t tw = jb.nt * pl.P;
                dspi_parallel_for(pl.c, 1, pl.c * tw * 4, phase_input, &jb);
                dsp_parallel_tasks((int)pl.P, phase_gemm, &jb);
                dspi_parallel_for(pl.oc, 1, pl.oc * tw * 4, phase_output, &jb);
            }
    }
    free(jb.scratch);
    free(pj.xp);
    free(owned);
    return 0;
}
