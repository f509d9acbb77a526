/* backend.c - the CPU compute backend: its table of kernels for ops.c's dispatcher. */
#include "ops/ops_int.h"

/* Threads: GEMMs use OpenBLAS's own thread pool; the other CPU kernels are
 * single-threaded in this first cut (they are memory-bound and correctness
 * came first). */
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
};
