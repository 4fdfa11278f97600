// Fused activation kernels, forward and backward side by side, each a grid-stride loop over elements.
//
// Compiled by gpubackprop.backends.cupy_backend once per dtype, with `GB_REAL` defined as
// float or double and with --fmad=false, so that every operation rounds as NumPy's ufuncs do
// (NumpyBackend in gpubackprop/backends/base.py performs the same operations in the same order).
// The grids are capped and every kernel strides over the elements, so any n works with any grid.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;
#include "activation_math.cuh"
#include "last_block.cuh"

// NaN propagates as in numpy.maximum(z, 0).
__device__ __forceinline__ real relu_of(real z) { return z < (real)0 ? (real)0 : z; }
__device__ __forceinline__ real tanh_of(real z) { return tanh(z); }
__device__ __forceinline__ real identity_of(real z) { return z; }

// Forward, in place: z (rows x cols, C order) holds X W^T; it becomes a = act(z + bias).
// The column of element i is i % cols; a 64-bit modulo per element costs about as much as the
// memory traffic, so it is taken once per thread and then advanced by stride % cols.
#define BIAS_ACTIVATION_FORWARD(name, act)                                                    \
    extern "C" __global__ void name(real* z, const real* bias, long long n, long long cols) { \
        const long long stride = (long long)blockDim.x * gridDim.x;                          \
        const long long stride_cols = stride % cols;                                         \
        long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;                      \
        long long col = i % cols;                                                            \
        for (; i < n; i += stride) {                                                         \
            z[i] = act(z[i] + bias[col]);                                                    \
            col += stride_cols;                                                              \
            if (col >= cols) col -= cols;                                                    \
        }                                                                                    \
    }
BIAS_ACTIVATION_FORWARD(bias_sigmoid_forward, sigmoid_of)
BIAS_ACTIVATION_FORWARD(bias_tanh_forward, tanh_of)
BIAS_ACTIVATION_FORWARD(bias_relu_forward, relu_of)
BIAS_ACTIVATION_FORWARD(bias_identity_forward, identity_of)

// Backward: delta = grad * act'(z), with act'(z) read off the stored activation a (sigmoid's in
// activation_math.cuh).
// tanh'(z) = 1 - a^2
__device__ __forceinline__ real tanh_backward_of(real g, real a) {
    real s = a * a;
    s = (real)1 - s;
    return g * s;
}
// relu'(z) = [a > 0]
__device__ __forceinline__ real relu_backward_of(real g, real a) {
    real s = a > (real)0 ? (real)1 : (real)0;
    return g * s;
}

// Each thread loads four elements of each input before it stores any: four independent loads
// in flight per thread instead of one, which is what keeps HBM busy (a plain grid-stride loop
// reaches ~85% of a copy's bandwidth). Loads before stores also make delta == grad safe.
#define ACTIVATION_BACKWARD(name, f)                                                               \
    extern "C" __global__ void name(const real* grad, const real* a, real* delta, long long n) {     \
        const long long stride = (long long)blockDim.x * gridDim.x;                                 \
        long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;                             \
        for (; i + 3 * stride < n; i += 4 * stride) {                                               \
            real g0 = grad[i], g1 = grad[i + stride], g2 = grad[i + 2 * stride], g3 = grad[i + 3 * stride]; \
            real a0 = a[i], a1 = a[i + stride], a2 = a[i + 2 * stride], a3 = a[i + 3 * stride];     \
            delta[i] = f(g0, a0);                                                                   \
            delta[i + stride] = f(g1, a1);                                                          \
            delta[i + 2 * stride] = f(g2, a2);                                                      \
            delta[i + 3 * stride] = f(g3, a3);                                                      \
        }                                                                                           \
        for (; i < n; i += stride) delta[i] = f(grad[i], a[i]);                                     \
    }
ACTIVATION_BACKWARD(sigmoid_backward, sigmoid_backward_of)
ACTIVATION_BACKWARD(tanh_backward, tanh_backward_of)
ACTIVATION_BACKWARD(relu_backward, relu_backward_of)

// Backward with the bias gradient: delta = grad * act'(a) as above, and grad_bias[c] = sum over the
// rows of delta[:, c], in the same pass (delta is not read again by a 1^T delta GEMM). A block is
// BIAS_TILE columns x (blockDim.x / BIAS_TILE) row lanes: a warp reads BIAS_TILE consecutive columns
// of one row (coalesced). Block b takes column tile b % tiles and row chunk b / tiles of
// chunks = gridDim.x / tiles; each thread adds its rows of its column, the block's lanes are added in
// shared memory (a fixed tree), the chunk's sums go to partials[chunk * cols + c], and the last block
// to finish (last_block_done) adds the chunks in order: a deterministic sum, one launch, no atomics
// on floats. gridDim.x must be a multiple of tiles. NumpyBackend: activation_backward, then sum_rows.
#define BIAS_TILE 32
#define ACTIVATION_BACKWARD_BIAS(name, f)                                                                  \
    extern "C" __global__ void name(const real* grad, const real* a, real* delta, long long rows,             \
                                    long long cols, real* grad_bias, real* partials,                         \
                                    unsigned int* blocks_done) {                                             \
        __shared__ real lanes[1024];                                                                         \
        __shared__ bool last;                                                                                \
        const long long tiles = (cols + BIAS_TILE - 1) / BIAS_TILE;                                         \
        const long long chunks = gridDim.x / tiles, chunk = blockIdx.x / tiles;                             \
        const int lane = threadIdx.x / BIAS_TILE, lanes_per_block = blockDim.x / BIAS_TILE;                 \
        const long long c = (blockIdx.x % tiles) * BIAS_TILE + threadIdx.x % BIAS_TILE;                     \
        real sum = (real)0;                                                                                  \
        if (c < cols)                                                                                        \
            for (long long r = chunk * lanes_per_block + lane; r < rows; r += chunks * lanes_per_block) {    \
                const long long i = r * cols + c;                                                            \
                const real d = f(grad[i], a[i]);                                                             \
                delta[i] = d;                                                                                \
                sum = sum + d;                                                                               \
            }                                                                                                \
        lanes[threadIdx.x] = sum;                                                                            \
        __syncthreads();                                                                                     \
        for (int width = lanes_per_block; width > 1;) {                                                      \
            const int half = (width + 1) / 2;                                                                \
            if (lane < width - half) lanes[threadIdx.x] = lanes[threadIdx.x] + lanes[threadIdx.x + half * BIAS_TILE]; \
            __syncthreads();                                                                                 \
            width = half;                                                                                    \
        }                                                                                                    \
        if (lane == 0 && c < cols) {                                                                         \
            partials[chunk * cols + c] = lanes[threadIdx.x];                                                 \
            __threadfence(); /* the writer's own fence, before the block counts itself */                    \
        }                                                                                                    \
        if (threadIdx.x == 0) last = false;                                                                  \
        if (last_block_done(blocks_done)) last = true;                                                       \
        __syncthreads();                                                                                     \
        if (!last) return;                                                                                   \
        __threadfence();                                                                                     \
        for (long long k = threadIdx.x; k < cols; k += blockDim.x) {                                         \
            real total = partials[k];                                                                        \
            for (long long j = 1; j < chunks; ++j) total = total + partials[j * cols + k];                  \
            grad_bias[k] = total;                                                                            \
        }                                                                                                    \
    }
__device__ __forceinline__ real identity_backward_of(real g, real) { return g; }
ACTIVATION_BACKWARD_BIAS(sigmoid_backward_bias, sigmoid_backward_of)
ACTIVATION_BACKWARD_BIAS(tanh_backward_bias, tanh_backward_of)
ACTIVATION_BACKWARD_BIAS(relu_backward_bias, relu_backward_of)
ACTIVATION_BACKWARD_BIAS(identity_backward_bias, identity_backward_of)
