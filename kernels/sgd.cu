// Plain SGD, in place and guarded: param = param - lr * grad, in two passes. NumpyBackend.sgd_check
// and sgd_update mirror them operation by operation.
//
// guard[0..n_guard) is the step's status, read back in one transfer after the step: {loss, finite
// check of the gradients, finite check of the update}. sgd_check (first pass) writes the last
// slot; sgd_update (second pass) changes nothing when any slot is NaN/Inf, so train_step can refuse
// a bad batch or an overflowing update without a host round trip between the backward pass and the
// update: every weight stays bit-identical. Another update rule reuses the same structure: a check
// of its candidate values into the last slot, then the guarded apply.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

// First pass, nothing written but the flag: flag[0] must be 0 on entry; it becomes NaN if any
// candidate param[i] - lr * grad[i] is NaN or Inf (candidate - candidate is NaN exactly then).
extern "C" __global__ void sgd_check(const real* param, const real* grad, real lr, long long n, real* flag) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real step = lr * grad[i];
        real candidate = param[i] - step;
        real d = candidate - candidate;
        if (d != (real)0) flag[0] = d;
    }
}

// Second pass: the update, unless any of the n_guard status values is NaN/Inf.
extern "C" __global__ void sgd_update(real* param, const real* grad, real lr, long long n, const real* guard,
                                      long long n_guard) {
    for (long long k = 0; k < n_guard; ++k) {
        if (!isfinite(guard[k])) return;
    }
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
