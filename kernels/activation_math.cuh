// The logistic function and its backward, shared by the activation kernels (activations.cu) and the
// loss kernels (loss.cu: mse's output-layer backward). Inlined once into the translation unit by
// gpubackprop.backends.cuda_kernels.kernel_source, in place of each file's #include.
#ifndef GB_ACTIVATION_MATH_CUH
#define GB_ACTIVATION_MATH_CUH
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

// sigma(z) = 1 / (1 + exp(-z)) to the dtype's relative precision for every z, with nothing that
// overflows: with t = exp(-|z|) in (0, 1], sigma = 1 / (1 + t) for z >= 0 and t / (1 + t) for z < 0
// (= e^z / (1 + e^z)). num is 1 or t exactly; NaN gives NaN (z >= 0 is false, t is NaN). Beyond the
// dtype's range t is subnormal, then 0, and so is sigma for z < 0. The same operations in the same
// order as gpubackprop.backends.numpy_layers.sigmoid_calls (exp's last bit aside; there -|z| is one
// pass setting the sign bit: the same bits as -fabs(z)).
__device__ __forceinline__ real sigmoid_of(real z) {
    real t = fabs(z);
    t = -t;
    t = exp(t);
    real num = z >= (real)0 ? (real)1 : t;
    t = t + (real)1;
    return num / t;
}
// THE fused sigmoid derivative: delta = g * a * (1 - a), one read of g and a, one write.
__device__ __forceinline__ real sigmoid_backward_of(real g, real a) {
    real s = (real)1 - a;
    s = s * a;
    return g * s;
}
#endif
