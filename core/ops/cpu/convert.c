/* convert.c - f16/bf16 to f32 conversion for the CPU kernels (weights are converted a row at a time). */
#include <string.h>
#include "ops/ops_int.h"

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact for every input: subnormals are
 * renormalised (binary32 has room for them as normals), inf stays inf and a
 * NaN keeps its sign and payload bits. */
float dspi_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0) {
        if (mant == 0)
            return bits_to_f32(sign);
        /* subnormal: value = mant * 2^-24; shift until the implicit bit shows */
        uint32_t e = 127 - 15 + 1;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        mant &= 0x3ffu;
        return bits_to_f32(sign | (e << 23) | (mant << 13));
    }
    if (exp == 31)
        return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    return bits_to_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

/* bf16 is the top half of a binary32, so widening is a shift: subnormals,
 * inf and NaN all come out exact. */
float dspi_bf16_to_f32(uint16_t h)
{
    return bits_to_f32((uint32_t)h << 16);
}

void dspi_load_f32(float *dst, const void *src, dsp_dtype dt, int64_t first, int64_t step,
                   int64_t n)
{
    if (dt == DSP_DTYPE_F32) {
        const float *s = (const float *)src + first;
        if (step == 1) {
            memcpy(dst, s, (size_t)n * sizeof *dst);
        } else {
            for (int64_t i = 0; i < n; i++)
                dst[i] = s[i * step];
        }
    } else {
        const uint16_t *s = (const uint16_t *)src + first;
        if (dt == DSP_DTYPE_F16) {
            for (int64_t i = 0; i < n; i++)
                dst[i] = dspi_f16_to_f32(s[i * step]);
        } else {
            for (int64_t i = 0; i < n; i++)
                dst[i] = dspi_bf16_to_f32(s[i * step]);
        }
    }
}
