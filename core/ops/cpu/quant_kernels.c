/* quant_kernels.c - CPU kernels of weight-only quantization: quantize, dequantize a row block, linear on quantized weights. */
#include "config.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/quant_int.h"
#include "ops/cpu/simd.h"

/* Codes are rounded to nearest, ties to even (rintf under the default
 * rounding mode; torch.round does the same), so the PyTorch reference
 * reproduces every code bit for bit. */
static int code_of(float v, float scale, int lo, int hi)
{
    float q = rintf(v / scale);
    /* |v| <= amax, so |v / scale| exceeds the top code only by rounding */
    if (q < (float)lo)
        q = (float)lo;
    if (q > (float)hi)
        q = (float)hi;
    return (int)q;
}

int dspi_cpu_quantize(const dspi_wmat *src, dsp_qweight *w, int64_t *bad_row)
{
    int64_t K = w->in, gs = w->group_size, ng = K / gs, rb = dspi_qrow_bytes(w);
    int int4 = w->kind == DSP_QUANT_INT4;
    float qmax = int4 ? 7.0f : 127.0f;
    float *row = malloc((size_t)(K > 0 ? K : 1) * sizeof *row);
    if (!row)
        return DSP_ENOMEM;
    for (int64_t r = 0; r < w->out; r++) {
        /* one row at a time: f16/bf16 and strided sources never need a full f32 copy */
        dspi_load_f32(row, src->data, src->dt, r * src->s0, src->s1, K);
        uint8_t *codes = w->codes + r * rb;
        for (int64_t g = 0; g < ng; g++) {
            const float *v = row + g * gs;
            float amax = 0.0f;
            int finite = 1;
            for (int64_t i = 0; i < gs; i++) {
                float a = fabsf(v[i]);
                finite &= isfinite(a) != 0;
                amax = a > amax ? a : amax;
            }
            if (!finite) {
                free(row);
                *bad_row = r;
                return DSP_EINVAL;
            }
            float scale = amax / qmax;
            w->scales[r * ng + g] = scale;
            for (int64_t i = 0; i < gs; i++) {
                /* an all-zero group keeps scale 0 and codes 0 (no 0/0) */
                int q = scale > 0.0f ? code_of(v[i], scale, int4 ? -8 : -127, int4 ? 7 : 127)
                                     : 0;
                int64_t e = g * gs + i;
                if (!int4) {
                    codes[e] = (uint8_t)(int8_t)q;
                } else if (e % 2 == 0) {
                    codes[e / 2] = (uint8_t)(q & 0xf);
                } else {
                    codes[e / 2] |= (uint8_t)((q & 0xf) << 4);
                }
            }
        }
    }
    free(row);
    return 0;
}

/* ng groups of gs weights from codes (int8: a byte each; int4: two per
 * byte, the even element in the low nibble) times their scales sc[0..ng),
 * into d. */
static void dequant_groups(dsp_quant_kind kind, int64_t gs, const uint8_t *codes,
                           const float *sc, int64_t ng, float *d)
{
    for (int64_t g = 0; g < ng; g++) {
        float s = sc[g];
        float *o = d + g * gs;
        if (kind == DSP_QUANT_INT8) {
            const int8_t *c = (const int8_t *)codes + g * gs;
            for (int64_t i = 0; i < gs; i++)
                o[i] = (float)c[i] * s;
        } else {
            const uint8_t *c = codes + g * gs / 2;
            for (int64_t j = 0; j < gs / 2; j++) {
                /* sign-extend each nibble: (n ^ 8) - 8 */
                int lo = (int)(c[j] & 0xf), hi = (int)(c[j] >> 4);
                o[2 * j] = (float)((lo ^ 8) - 8) * s;
                o[2 * j + 1] = (float)((hi ^ 8) - 8) * s;
            }
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/* dequant_groups with AVX2, 8 or 32 codes per step. The products are the
 * same float32 multiplies as the scalar loop's, so the result is
 * identical bit for bit. */
AVX2 static void dequant_groups_avx2(dsp_quant_kind kind, int64_t gs, const uint8_t *codes,
                                     const float *sc, int64_t ng, float *d)
{
    if (kind == DSP_QUANT_INT8) {
        for (int64_t g = 0; g < ng; g++) {
            __m256 s = _mm256_set1_ps(sc[g]);
            const uint8_t *c = codes + g * gs;
            for (int64_t i = 0; i < gs; i += 8) {
                __m128i b = _mm_loadl_epi64((const __m128i *)(c + i));
                __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
                _mm256_storeu_ps(d + g * gs + i, _mm256_mul_ps(f, s));
            }
        }
        return;
    }
    /* int4: 16 bytes hold 32 codes; low nibbles are the even elements, high
     * the odd. A table lookup sign-extends each nibble to a byte, an
     * interleave puts the bytes back in element order. */
    const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
    const __m128i mask = _mm_set1_epi8(0x0f);
    for (int64_t g = 0; g < ng; g++) {
        __m256 s = _mm256_set1_ps(sc[g]);
        const uint8_t *c = codes + g * gs / 2;
        float *o = d + g * gs;
        for (int64_t i = 0; i < gs; i += 32) {
            __m128i b = _mm_loadu_si128((const __m128i *)(c + i / 2));
            __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(b, mask));
            __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(b, 4), mask));
            __m128i e0 = _mm_unpacklo_epi8(lo, hi), e1 = _mm_unpackhi_epi8(lo, hi);
            __m128i q[4] = {e0, _mm_srli_si128(e0, 8), e1, _mm_srli_si128(e1, 8)};
            for (int h = 0; h < 4; h++)
                _mm256_storeu_ps(o + i + 8 * h,
                                 _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q[h])), s));
        }
    }
}
#endif

/* Groups [g0, g0 + ng) of row r of w into d. */
static void dequant_part(const dsp_qweight *w, int64_t r, int64_t g0, int64_t ng, float *d)
{
    int64_t gs = w->group_size, rb = dspi_qrow_bytes(w);
    const uint8_t *codes = w->codes + r * rb + (w->kind == DSP_QUANT_INT4 ? g0 * gs / 2 : g0 * gs);
    const float *sc = w->scales + r * (w->in / gs) + g0;
#if defined(__x86_64__) || defined(__i386__)
    if (dspi_cpu_use_avx2()) {
        dequant_groups_avx2(w->kind, gs, codes, sc, ng, d);
        return;
    }
#endif
    dequant_groups(w->kind, gs, codes, sc, ng, d);
}

void dspi_cpu_dequant_rows(const dsp_qweight *w, int64_t r0, int64_t n, float *dst)
{
    for (int64_t r = r0; r < r0 + n; r++)
        dequant_part(w, r, 0, w->in / w->group_size, dst + (r - r0) * w->in);
}

/* Rows of a dequantized panel: about 128 KiB of f32 scratch, so the panel
 * stays in L2 while sgemm streams x past it (as gemm.c does for f16). */
static int64_t panel_rows(int64_t K)
{
    int64_t p = (32 * 1024) / (K > 0 ? K : 1);
    return p < 16 ? 16 : p;
}

int dspi_cpu_linear_q(const float *x, int64_t M, const dsp_qweight *w, const void *b,
                      dsp_dtype bdt, float *y)
{
    int64_t N = w->out, K = w->in, P = panel_rows(K);
    if (P > N)
        P = N;
    /* The matrix is never dequantized whole: a block of P output rows is
     * expanded into the panel, then one sgemm covers all M inputs. */
    float *panel = malloc((size_t)(P * K > 0 ? P * K : 1) * sizeof *panel);
    if (!panel)
        return DSP_ENOMEM;
    for (int64_t n0 = 0; n0 < N; n0 += P) {
        int64_t np = N - n0 < P ? N - n0 : P;
        dspi_cpu_dequant_rows(w, n0, np, panel);
        dspi_sgemm(1, M, np, K, x, K, panel, K, y + n0, N);
    }
    free(panel);
    if (b) {
        float *bias = malloc((size_t)(N > 0 ? N : 1) * sizeof *bias);
        if (!bias)
            return DSP_ENOMEM;
        dspi_load_f32(bias, b, bdt, 0, 1, N);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                y[m * N + n] += bias[n];
        free(bias);
    }
    return 0;
}

const float *dspi_wmat_row(const dspi_wmat *w, int64_t r, int64_t k0, int64_t n, float *buf)
{
    if (w->q) {
        dequant_part(w->q, r, k0 / w->q->group_size, n / w->q->group_size, buf);
        return buf;
    }
    if (w->dt == DSP_DTYPE_F32 && w->s1 == 1)
        return (const float *)w->data + r * w->s0 + k0;
    dspi_load_f32(buf, w->data, w->dt, r * w->s0 + k0 * w->s1, w->s1, n);
    return buf;
}
