// The step's finite check of the gradients: flag_nonfinite. (With gradient clipping the check is
// the sum of squares, a cuBLAS dot, which also gives the norm; see CupyBackend.finite_check.)
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

// flag[0] must be 0 on entry; it becomes NaN if any x[i] is NaN or Inf (x - x is NaN exactly
// then). Every writer writes the same NaN, so the race between threads is harmless.
extern "C" __global__ void flag_nonfinite(const real* x, long long n, real* flag) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real d = x[i] - x[i];
        if (d != (real)0) flag[0] = d;
    }
}
