// Plain SGD, in place: param = param - lr * grad. NumpyBackend.sgd_update mirrors it.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

// guard[0..1] = {loss, finite check of the gradients}: when either is NaN/Inf the step is
// skipped on the device, so train_step can refuse a bad batch without a host round trip
// between the backward pass and the update (every weight stays bit-identical).
extern "C" __global__ void sgd_update(real* param, const real* grad, real lr, long long n, const real* guard) {
    if (!(isfinite(guard[0]) && isfinite(guard[1]))) return;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real step = lr * grad[i];
        param[i] = param[i] - step;
    }
}

// flag[0] must be 0 on entry; it becomes NaN if any x[i] is NaN or Inf (x - x is NaN exactly
// then). Every writer writes the same NaN, so the race between threads is harmless.
extern "C" __global__ void flag_nonfinite(const real* x, long long n, real* flag) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real d = x[i] - x[i];
        if (d != (real)0) flag[0] = d;
    }
}
