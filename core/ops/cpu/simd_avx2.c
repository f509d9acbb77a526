/* simd_avx2.c - AVX2/FMA versions of the row-wise and elementwise CPU kernels, with a vector expf and erf. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "ops/cpu/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Only these functions are compiled for AVX2: the library itself stays
 * baseline x86-64 and runs them only after dspi_cpu_use_avx2() said yes. */
#define AVX2 __attribute__((target("avx2,fma")))

static int g_use_avx2;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void detect(void)
{
    const char *env = getenv("DSPIPE_OPS_SIMD");
    __builtin_cpu_init();
    g_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 !(env && !strcmp(env, "0"));
}

int dspi_cpu_use_avx2(void)
{
    pthread_once(&g_once, detect);
    return g_use_avx2;
}

/* e^x, Cephes expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so
 * n ln2 is exact), e^r by a degree-5 polynomial (~1 ulp), then 2^n applied
 * as 2^(n/2) 2^(n - n/2) so results stay right into the subnormals.
 * -inf and anything below -104 give 0, above ln(FLT_MAX) +inf, NaN NaN. */
AVX2 static inline __m256 exp_ps(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.72283935546875f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), hi);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_cvtps_epi32(fx);
    __m256i n1 = _mm256_srai_epi32(n, 1);
    __m256i n2 = _mm256_sub_epi32(n, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

AVX2 static inline float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* The 8 lanes summed in double. */
AVX2 static inline double hsum_pd(__m256 v)
{
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* Sums run in f32 over 32 lanes within blocks of BLOCK elements, and the
 * block sums in double: each f32 partial adds at most BLOCK/32 terms, so
 * long rows keep the precision of the double loops they replace. */
#define BLOCK 1024

AVX2 int dspi_avx2_softmax_row(const float *x, int64_t n, float *o)
{
    int64_t j = 0;
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    for (; j + 8 <= n; j += 8)
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
    float mx = hmax_ps(_mm256_max_ps(m0, m1));
    for (; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY)
        return -1;

    const __m256 vmx = _mm256_set1_ps(mx);
    double sum = 0.0;
    j = 0;
    while (j + 8 <= n) {
        int64_t end = j + BLOCK < n ? j + BLOCK : n;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        for (; j + 16 <= end; j += 16) {
            __m256 e0 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmx));
            __m256 e1 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vmx));
            _mm256_storeu_ps(o + j, e0);
            _mm256_storeu_ps(o + j + 8, e1);
            s0 = _mm256_add_ps(s0, e0);
            s1 = _mm256_add_ps(s1, e1);
        }
        for (; j + 8 <= end; j += 8) {
            __m256 e0 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmx));
            _mm256_storeu_ps(o + j, e0);
            s0 = _mm256_add_ps(s0, e0);
        }
        sum += hsum_pd(_mm256_add_ps(s0, s1));
    }
    for (; j < n; j++) {
        float e = expf(x[j] - mx);
        o[j] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (j = 0; j + 8 <= n; j += 8)
        _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(o + j), vinv));
    for (; j < n; j++)
        o[j] *= inv;
    return 0;
}

/* sum of (x[j] - c)^2 when sq, else of x[j] - c */
AVX2 static double row_sum(const float *x, int64_t n, float c, int sq)
{
    const __m256 vc = _mm256_set1_ps(c);
    double sum = 0.0;
    int64_t j = 0;
    while (j + 8 <= n) {
        int64_t end = j + BLOCK < n ? j + BLOCK : n;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (; j + 32 <= end; j += 32) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), vc);
            __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vc);
            __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 16), vc);
            __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 24), vc);
            if (sq) {
                s0 = _mm256_fmadd_ps(d0, d0, s0);
                s1 = _mm256_fmadd_ps(d1, d1, s1);
                s2 = _mm256_fmadd_ps(d2, d2, s2);
                s3 = _mm256_fmadd_ps(d3, d3, s3);
            } else {
                s0 = _mm256_add_ps(s0, d0);
                s1 = _mm256_add_ps(s1, d1);
                s2 = _mm256_add_ps(s2, d2);
                s3 = _mm256_add_ps(s3, d3);
            }
        }
        for (; j + 8 <= end; j += 8) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), vc);
            s0 = sq ? _mm256_fmadd_ps(d0, d0, s0) : _mm256_add_ps(s0, d0);
        }
        sum += hsum_pd(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    }
    for (; j < n; j++) {
        double d = (double)x[j] - c;
        sum += sq ? d * d : d;
    }
    return sum;
}

AVX2 void dspi_avx2_layernorm_row(const float *x, int64_t n, const float *w, const float *b,
                                  float eps, float *o)
{
    /* two passes, as the scalar kernel: the variance never goes negative */
    float m = (float)(row_sum(x, n, 0.0f, 0) / (double)n);
    double ss = row_sum(x, n, m, 1);
    float rstd = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(rstd);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vr);
        _mm256_storeu_ps(o + j, _mm256_fmadd_ps(t, _mm256_loadu_ps(w + j),
                                                _mm256_loadu_ps(b + j)));
    }
    for (; j < n; j++)
        o[j] = (x[j] - m) * rstd * w[j] + b[j];
}

AVX2 void dspi_avx2_rmsnorm_row(const float *x, int64_t n, const float *w, float eps, float *o)
{
    double ss = row_sum(x, n, 0.0f, 1);
    float rstd = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vr = _mm256_set1_ps(rstd);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(w + j),
                                              _mm256_mul_ps(_mm256_loadu_ps(x + j), vr)));
    for (; j < n; j++)
        o[j] = w[j] * (x[j] * rstd);
}

/* x / (1 + e^-k·x): silu at k = 1, and tanh-gelu's 0.5·(1 + tanh(u)) = 1/(1 + e^-2u) */
AVX2 static inline __m256 x_sigmoid(__m256 x, __m256 u)
{
    __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* gelu(x) = x/2 · (1 + erf(x/√2)). erfc(z) for z >= 0 by Abramowitz-Stegun
 * 7.1.26 (absolute error <= 1.5e-7, the formula PyTorch's vectorised erf
 * uses); for x < 0, 1 + erf = erfc(|z|) is used directly, which avoids
 * the cancellation in 1 - (1 - erfc) for large negative x. */
AVX2 static inline __m256 gelu_erf_ps(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_andnot_ps(sign, _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 erfc = _mm256_mul_ps(p, exp_ps(_mm256_xor_ps(sign, _mm256_mul_ps(z, z))));
    __m256 pos = _mm256_sub_ps(_mm256_set1_ps(2.0f), erfc);
    __m256 f = _mm256_blendv_ps(pos, erfc, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_mul_ps(_mm256_mul_ps(half, x), f);
}

AVX2 void dspi_avx2_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *o)
{
    int64_t j = 0;
    if (kind == DSP_GELU_EXACT) {
        const float inv_sqrt2 = 0.70710678118654752f;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(o + j, gelu_erf_ps(_mm256_loadu_ps(x + j)));
        for (; j < n; j++)
            o[j] = 0.5f * x[j] * (1.0f + erff(x[j] * inv_sqrt2));
    } else {
        const float k = 0.79788456080286536f; /* sqrt(2/pi) */
        const __m256 k2 = _mm256_set1_ps(2.0f * k), c = _mm256_set1_ps(0.044715f);
        for (; j + 8 <= n; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
            __m256 u2 = _mm256_mul_ps(k2, _mm256_fmadd_ps(c, v3, v));
            _mm256_storeu_ps(o + j, x_sigmoid(v, u2));
        }
        for (; j < n; j++) {
            float v = x[j];
            o[j] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    }
}

AVX2 void dspi_avx2_silu(const float *x, int64_t n, float *o)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        _mm256_storeu_ps(o + j, x_sigmoid(v, v));
    }
    for (; j < n; j++)
        o[j] = x[j] / (1.0f + expf(-x[j]));
}

AVX2 void dspi_avx2_swiglu(const float *gate, const float *up, int64_t n, float *o)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 g = _mm256_loadu_ps(gate + j);
        _mm256_storeu_ps(o + j, _mm256_mul_ps(x_sigmoid(g, g), _mm256_loadu_ps(up + j)));
    }
    for (; j < n; j++)
        o[j] = gate[j] / (1.0f + expf(-gate[j])) * up[j];
}

#define BINARY_ROW(name, vop, sop)                                                     \
    AVX2 void name(const float *a, const float *b, int64_t bs, int64_t n, float *o)    \
    {                                                                                  \
        int64_t j = 0;                                                                 \
        if (bs == 1) {                                                                 \
            for (; j + 8 <= n; j += 8)                                                 \
                _mm256_storeu_ps(o + j, vop(_mm256_loadu_ps(a + j),                    \
                                            _mm256_loadu_ps(b + j)));                  \
        } else if (bs == 0) {                                                          \
            const __m256 vb = _mm256_set1_ps(b[0]);                                    \
            for (; j + 8 <= n; j += 8)                                                 \
                _mm256_storeu_ps(o + j, vop(_mm256_loadu_ps(a + j), vb));              \
        }                                                                              \
        for (; j < n; j++)                                                             \
            o[j] = a[j] sop b[j * bs];                                                 \
    }

BINARY_ROW(dspi_avx2_add_row, _mm256_add_ps, +)
BINARY_ROW(dspi_avx2_mul_row, _mm256_mul_ps, *)

#else /* not x86: the scalar kernels only; the entry points exist so that
       * callers link, and are never reached */

int dspi_cpu_use_avx2(void)
{
    return 0;
}

int dspi_avx2_softmax_row(const float *x, int64_t n, float *o) { abort(); }
void dspi_avx2_layernorm_row(const float *x, int64_t n, const float *w, const float *b,
                             float eps, float *o) { abort(); }
void dspi_avx2_rmsnorm_row(const float *x, int64_t n, const float *w, float eps, float *o)
{ abort(); }
void dspi_avx2_gelu(const float *x, int64_t n, dsp_gelu_kind kind, float *o) { abort(); }
void dspi_avx2_silu(const float *x, int64_t n, float *o) { abort(); }
void dspi_avx2_swiglu(const float *gate, const float *up, int64_t n, float *o) { abort(); }
void dspi_avx2_add_row(const float *a, const float *b, int64_t bs, int64_t n, float *o)
{ abort(); }
void dspi_avx2_mul_row(const float *a, const float *b, int64_t bs, int64_t n, float *o)
{ abort(); }

#endif
