/* ops_embed.cu - embedding lookup on the GPU: a gather of table rows (f32/f16/bf16, any strides) into f32. */
#include "cuda_int.h"

/* One thread per output element; consecutive threads read one row, so a
 * contiguous table is read coalesced. The ids were range-checked by the
 * dispatcher. */
__global__ static void embedding_kernel(const void *ids, bool ids64, int64_t nids,
                                        const void *table, dsp_dtype tdt, int64_t s0, int64_t s1,
                                        int64_t dim, float *out)
{
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < nids * dim;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / dim, k = t % dim;
        const int64_t id = ids64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
        out[t] = dspi_cuda_load(table, tdt, id * s0 + k * s1);
    }
}

int dspi_cuda_embedding(const void *ids, dsp_dtype idt, int64_t nids, const void *table,
                        dsp_dtype tdt, int64_t s0, int64_t s1, int64_t dim, float *out)
{
    int rc;
    if ((rc = dspi_cuda_enter(out)) < 0 || nids * dim == 0)
        return rc;
    embedding_kernel<<<dspi_cuda_blocks(nids * dim), DSPI_CUDA_THREADS>>>(
        ids, idt == DSP_DTYPE_I64, nids, table, tdt, s0, s1, dim, out);
    return dspi_cuda_launched();
}
