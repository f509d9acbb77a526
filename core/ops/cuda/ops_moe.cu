/* ops_moe.cu - the mixture-of-experts layer on the GPU: router GEMM, scores and top-k, a counting sort of the assignments by expert, one GEMM chain per expert over its tokens, a fixed-order weighted combine. */
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "cuda_int.h"

extern "C" {
#include "ops/quant_int.h"
}

#define GRID_STRIDE(i, n)                                                       \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

/* Assignments (token t's j-th choice is a = t * top_k + j) are ranked in
 * chunks of this many, one thread block per chunk. */
#define CHUNK 256

/* ---- routing: one thread per token ---------------------------------------
 * The same steps, in the same order, as the CPU's route() in quant_moe.c:
 * scores in place over the token's logits, top-k by repeated selection of
 * the largest score not yet taken (equal scores: the lower expert first),
 * then renormalisation and routed_scale. */
__global__ static void route_kernel(float *logits, int64_t T, int E, int K, int sigmoid,
                                    int renormalize, float routed_scale, int *sel, float *wt)
{
    GRID_STRIDE(t, T) {
        float *s = logits + t * E;
        int *ts = sel + t * K;
        float *tw = wt + t * K;
        if (sigmoid) {
            for (int i = 0; i < E; i++)
                s[i] = 1.0f / (1.0f + expf(-s[i]));
        } else {
            float mx = s[0], sum = 0.0f;
            for (int i = 1; i < E; i++)
                mx = s[i] > mx ? s[i] : mx;
            for (int i = 0; i < E; i++) {
                s[i] = expf(s[i] - mx);
                sum += s[i];
            }
            for (int i = 0; i < E; i++)
                s[i] /= sum;
        }
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int i = 0; i < E; i++) {
                bool taken = false;
                for (int p = 0; p < j && !taken; p++)
                    taken = ts[p] == i;
                if (!taken && (best < 0 || s[i] > s[best]))
                    best = i;
            }
            ts[j] = best;
            tw[j] = s[best];
        }
        float sum = 0.0f;
        for (int j = 0; j < K; j++)
            sum += tw[j];
        for (int j = 0; j < K; j++) {
            float v = tw[j];
            if (renormalize && sum > 0.0f)
                v /= sum;
            tw[j] = v * routed_scale;
        }
    }
}

/* ---- counting sort of the assignments by expert -------------------------
 * Stable (token order within an expert), so the layout of every expert's
 * rows, and with it every result bit, is the same from run to run.
 * 1. rank_kernel: per chunk, each assignment's rank among the earlier ones
 *    of the chunk with the same expert, and the chunk's histogram
 *    hist[chunk][expert];
 * 2. offsets_kernel: counts[e], and hist turned into the first sorted row of
 *    expert e's assignments from each chunk (experts in order, chunks in
 *    order within an expert);
 * 3. place_kernel: pos[a] (the assignment's row among the sorted ones) and
 *    its inverse tok[row] (the token of a sorted row). */
__global__ static void rank_kernel(const int *sel, int64_t A, int E, int *hist, int *rank)
{
    __shared__ int s[CHUNK];
    int64_t a = (int64_t)blockIdx.x * CHUNK + threadIdx.x;
    int e = a < A ? sel[a] : -1;
    s[threadIdx.x] = e;
    __syncthreads();
    if (a >= A)
        return;
    int r = 0;
    for (int j = 0; j < (int)threadIdx.x; j++)
        r += s[j] == e;
    rank[a] = r;
    atomicAdd(&hist[(int64_t)blockIdx.x * E + e], 1);
}

__global__ static void offsets_kernel(int *hist, int64_t nchunks, int E, int *counts)
{
    __shared__ int start_of_next;
    /* per expert: its total over the chunks */
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        int n = 0;
        for (int64_t c = 0; c < nchunks; c++)
            n += hist[c * E + e];
        counts[e] = n;
    }
    __syncthreads();
    /* experts in order: a block-wide exclusive scan, blockDim experts at a
     * time, with the running total carried between rounds */
    __shared__ int part[1024];
    int carry = 0;
    for (int e0 = 0; e0 < E; e0 += blockDim.x) {
        int e = e0 + threadIdx.x;
        int v = e < E ? counts[e] : 0;
        part[threadIdx.x] = v;
        __syncthreads();
        for (int o = 1; o < (int)blockDim.x; o <<= 1) {
            int add = threadIdx.x >= (unsigned)o ? part[threadIdx.x - o] : 0;
            __syncthreads();
            part[threadIdx.x] += add;
            __syncthreads();
        }
        /* part[] is now inclusive: expert e starts at carry + part - v */
        if (e < E) {
            int run = carry + part[threadIdx.x] - v;
            for (int64_t c = 0; c < nchunks; c++) {
                int h = hist[c * E + e];
                hist[c * E + e] = run;
                run += h;
            }
        }
        if (threadIdx.x == blockDim.x - 1)
            start_of_next = carry + part[threadIdx.x];
        __syncthreads();
        carry = start_of_next;
        __syncthreads();
    }
}

__global__ static void place_kernel(const int *sel, const int *rank, const int *hist, int64_t A,
                                    int E, int K, int *pos, int *tok)
{
    GRID_STRIDE(a, A) {
        int p = hist[(a / CHUNK) * E + sel[a]] + rank[a];
        pos[a] = p;
        tok[p] = (int)(a / K);
    }
}

/* xe[row, :] = x[tok[row], :] */
__global__ static void gather_kernel(const float *x, const int *tok, int64_t rows, int64_t dim,
                                     float *xe)
{
    GRID_STRIDE(i, rows * dim) {
        int64_t r = i / dim, c = i % dim;
        xe[i] = x[(int64_t)tok[r] * dim + c];
    }
}

static __device__ __forceinline__ float silu(float v)
{
    return v / (1.0f + expf(-v));
}

__global__ static void swiglu_kernel(float *h, const float *u, int64_t n)
{
    GRID_STRIDE(i, n) h[i] = silu(h[i]) * u[i];
}

__global__ static void accumulate_kernel(float *out, const float *y, int64_t n)
{
    GRID_STRIDE(i, n) out[i] += y[i];
}

/* out[t, :] = (shared ? out[t, :] : 0) + sum over j in order of
 * wt[t, j] * ye[pos[t, j], :]: each token's contributions in a fixed order,
 * no atomics, so the result does not depend on scheduling. */
__global__ static void combine_kernel(const float *ye, const int *pos, const float *wt,
                                      int64_t T, int64_t dim, int K, int shared, float *out)
{
    GRID_STRIDE(i, T * dim) {
        int64_t t = i / dim, c = i % dim;
        float acc = shared ? out[i] : 0.0f;
        for (int j = 0; j < K; j++) {
            int64_t a = t * K + j;
            acc += wt[a] * ye[(int64_t)pos[a] * dim + c];
        }
        out[i] = acc;
    }
}

/* y[n, dim] = down(silu(gate x) * up x) for the n rows of x; h and u hold
 * n * inter floats each. */
static int mlp(const float *x, int64_t n, const dspi_moe_mlp *m, float *h, float *u, float *y)
{
    int rc;
    int64_t inter = m->gate.rows;
    if ((rc = dspi_cuda_wmat_linear(x, n, &m->gate, h)) < 0 ||
        (rc = dspi_cuda_wmat_linear(x, n, &m->up, u)) < 0)
        return rc;
    swiglu_kernel<<<dspi_cuda_blocks(n * inter), DSPI_CUDA_THREADS, 0, DSPI_CUDA_STREAM>>>(
        h, u, n * inter);
    if ((rc = dspi_cuda_launched()) < 0)
        return rc;
    return dspi_cuda_wmat_linear(h, n, &m->down, y);
}

/* Pooled scratch for n elements of T; NULL when out of memory. */
template <typename T>
static T *scratch(int64_t n)
{
    return (T *)dspi_cuda_scratch((size_t)(n > 0 ? n : 1) * sizeof(T));
}

int dspi_cuda_moe(const float *x, int64_t T, int64_t dim, const dspi_wmat *router,
                  const dspi_moe_mlp *experts, int n_experts, const dspi_moe_mlp *shared,
                  int n_shared, int top_k, dsp_moe_score score, int renormalize,
                  float routed_scale, float *out)
{
    int rc;
    int64_t E = n_experts, K = top_k, A = T * K;
    int64_t nchunks = (A + CHUNK - 1) / CHUNK;
    if ((rc = dspi_cuda_enter(out)) < 0)
        return rc;
    if (T == 0 || dim == 0)
        return 0;
    /* rows and sorted positions are int on the device and in cuBLAS */
    if (A > INT_MAX || T > INT_MAX || dim > INT_MAX || nchunks * E > INT_MAX)
        return DSP_EUNSUPPORTED;

    float *logits = NULL, *wt = NULL, *xe = NULL, *ye = NULL, *h = NULL, *u = NULL, *ys = NULL;
    int *sel = NULL, *rank = NULL, *hist = NULL, *counts = NULL, *pos = NULL, *tok = NULL;
    int *hcounts = NULL;
    int64_t max_rows_inter = 0, shared_inter = 0;

    if (!(logits = scratch<float>(T * E)) || !(sel = scratch<int>(A)) ||
        !(wt = scratch<float>(A)) || !(rank = scratch<int>(A)) ||
        !(hist = scratch<int>(nchunks * E)) || !(counts = scratch<int>(E)) ||
        !(pos = scratch<int>(A)) || !(tok = scratch<int>(A)) ||
        !(hcounts = (int *)malloc((size_t)E * sizeof(int)))) {
        rc = DSP_ENOMEM;
        goto done;
    }

    /* router logits [T, E], then routing */
    if ((rc = dspi_cuda_wmat_linear(x, T, router, logits)) < 0)
        goto done;
    route_kernel<<<dspi_cuda_blocks(T), DSPI_CUDA_THREADS, 0, DSPI_CUDA_STREAM>>>(
        logits, T, (int)E, (int)K, score == DSP_MOE_SIGMOID, renormalize, routed_scale, sel, wt);
    if ((rc = dspi_cuda_launched()) < 0)
        goto done;

    /* counting sort by expert */
    if (cudaMemsetAsync(hist, 0, (size_t)(nchunks * E) * sizeof(int), DSPI_CUDA_STREAM) !=
        cudaSuccess) {
        rc = DSP_EDEVICE;
        goto done;
    }
    rank_kernel<<<(unsigned)nchunks, CHUNK, 0, DSPI_CUDA_STREAM>>>(sel, A, (int)E, hist, rank);
    offsets_kernel<<<1, 1024, 0, DSPI_CUDA_STREAM>>>(hist, nchunks, (int)E, counts);
    place_kernel<<<dspi_cuda_blocks(A), DSPI_CUDA_THREADS, 0, DSPI_CUDA_STREAM>>>(
        sel, rank, hist, A, (int)E, (int)K, pos, tok);
    if ((rc = dspi_cuda_launched()) < 0)
        goto done;
    /* The one host synchronisation of the call: the experts' row counts
     * size their GEMMs. Everything else stays queued on the stream. */
    if (cudaMemcpyAsync(hcounts, counts, (size_t)E * sizeof(int), cudaMemcpyDeviceToHost,
                        DSPI_CUDA_STREAM) != cudaSuccess ||
        cudaStreamSynchronize(DSPI_CUDA_STREAM) != cudaSuccess) {
        cudaGetLastError();
        rc = DSP_EDEVICE;
        goto done;
    }
    {
        int64_t total = 0;
        for (int64_t e = 0; e < E; e++) {
            int64_t rows = hcounts[e] * experts[e].gate.rows;
            max_rows_inter = rows > max_rows_inter ? rows : max_rows_inter;
            total += hcounts[e];
        }
        if (total != A) {       /* a routing bug, not bad input */
            rc = DSP_EDEVICE;
            goto done;
        }
    }
    for (int s = 0; s < n_shared; s++)
        shared_inter = shared[s].gate.rows > shared_inter ? shared[s].gate.rows : shared_inter;
    if (T * shared_inter > max_rows_inter)
        max_rows_inter = T * shared_inter;

    if (!(xe = scratch<float>(A * dim)) || !(ye = scratch<float>(A * dim)) ||
        !(h = scratch<float>(max_rows_inter)) || !(u = scratch<float>(max_rows_inter)) ||
        (n_shared > 1 && !(ys = scratch<float>(T * dim)))) {
        rc = DSP_ENOMEM;
        goto done;
    }

    /* shared experts see every token, straight from x: the first writes
     * out, the others are added in order */
    for (int s = 0; s < n_shared; s++) {
        if ((rc = mlp(x, T, &shared[s], h, u, s == 0 ? out : ys)) < 0)
            goto done;
        if (s > 0) {
            accumulate_kernel<<<dspi_cuda_blocks(T * dim), DSPI_CUDA_THREADS, 0,
                                DSPI_CUDA_STREAM>>>(out, ys, T * dim);
            if ((rc = dspi_cuda_launched()) < 0)
                goto done;
        }
    }

    /* routed experts: gather each expert's tokens into its run of rows,
     * one GEMM chain per expert over all of them, results in ye's rows */
    gather_kernel<<<dspi_cuda_blocks(A * dim), DSPI_CUDA_THREADS, 0, DSPI_CUDA_STREAM>>>(
        x, tok, A, dim, xe);
    if ((rc = dspi_cuda_launched()) < 0)
        goto done;
    {
        int64_t start = 0;
        for (int64_t e = 0; e < E; e++) {
            int64_t n = hcounts[e];
            if (n > 0 &&
                (rc = mlp(xe + start * dim, n, &experts[e], h, u, ye + start * dim)) < 0)
                goto done;
            start += n;
        }
    }
    combine_kernel<<<dspi_cuda_blocks(T * dim), DSPI_CUDA_THREADS, 0, DSPI_CUDA_STREAM>>>(
        ye, pos, wt, T, dim, (int)K, n_shared > 0, out);
    rc = dspi_cuda_launched();
done:
    /* stream-ordered frees: after the last kernel that reads them */
    dspi_cuda_scratch_free(logits);
    dspi_cuda_scratch_free(sel);
    dspi_cuda_scratch_free(wt);
    dspi_cuda_scratch_free(rank);
    dspi_cuda_scratch_free(hist);
    dspi_cuda_scratch_free(counts);
    dspi_cuda_scratch_free(pos);
    dspi_cuda_scratch_free(tok);
    dspi_cuda_scratch_free(xe);
    dspi_cuda_scratch_free(ye);
    dspi_cuda_scratch_free(h);
    dspi_cuda_scratch_free(u);
    dspi_cuda_scratch_free(ys);
    free(hcounts);
    return rc;
}
