/* backend.c - the CPU compute backend: its table of kernels for ops.c's dispatcher. */
#include "ops/attn_int.h"
#include "ops/conv_int.h"
#include "ops/ops_int.h"
#include "ops/quant_int.h"
#include "ops/seq_int.h"

/* Threads: GEMMs use OpenBLAS's own thread pool; row loops use the pool of
 * cpu/parallel.c. */
const dspi_ops_backend dspi_ops_cpu = {
    .name = "cpu",
    .linear = dspi_cpu_linear,
    .matmul = dspi_cpu_matmul,
    .embedding = dspi_cpu_embedding,
    .softmax = dspi_cpu_softmax,
    .layernorm = dspi_cpu_layernorm,
    .rmsnorm = dspi_cpu_rmsnorm,
    .gelu = dspi_cpu_gelu,
    .silu = dspi_cpu_silu,
    .swiglu = dspi_cpu_swiglu,
    .add = dspi_cpu_add,
    .mul = dspi_cpu_mul,
    .rope = dspi_cpu_rope,
    .attention = dspi_cpu_attention,
    .linear_q = dspi_cpu_linear_q,
    .moe = dspi_cpu_moe,
    .conv = dspi_cpu_conv,
    .pool = dspi_cpu_pool,
    .adaptive_pool = dspi_cpu_adaptive_pool,
    .batchnorm = dspi_cpu_batchnorm,
    .upsample = dspi_cpu_upsample,
    .csr_aggregate = dspi_cpu_csr_aggregate,
    .lstm = dspi_cpu_lstm,
    .relu = dspi_cpu_relu,
};
