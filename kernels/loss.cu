// Mean squared error over a batch, L = 1/(2B) * sum (yhat - y)^2, and its gradient
// dL/dyhat = (yhat - y) / B, in one pass. NumpyBackend.mse_loss_grad mirrors it.
//
// One block does the whole reduction: the output layer of an MLP is small (batch x outputs),
// and a single block gives a deterministic loss with no atomics and no second launch.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

#define LOSS_THREADS 256

extern "C" __global__ void mse_loss_grad(const real* yhat, const real* y, real* grad, real* loss,
                                         long long n, real inv_batch) {
    __shared__ real partial[LOSS_THREADS];
    real sum = (real)0;
    for (long long i = threadIdx.x; i < n; i += LOSS_THREADS) {
        real diff = yhat[i] - y[i];
        grad[i] = diff * inv_batch;
        sum = sum + diff * diff;
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] = partial[threadIdx.x] + partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = partial[0] * ((real)0.5 * inv_batch);
}
