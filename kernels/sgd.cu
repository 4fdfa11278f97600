// Plain SGD, in place: param = param - lr * grad. NumpyBackend.sgd_update mirrors it.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

extern "C" __global__ void sgd_update(real* param, const real* grad, real lr, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real step = lr * grad[i];
        param[i] = param[i] - step;
    }
}
