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
