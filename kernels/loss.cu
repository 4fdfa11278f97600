// Mean squared error over a batch, L = 1/(2B) * sum (yhat - y)^2, and its gradient
// dL/dyhat = (yhat - y) / B, in one pass. NumpyBackend.mse_loss_grad mirrors it.
//
// One block does the whole reduction: the output layer of an MLP is small (batch x outputs),
// and a single block gives a deterministic loss with no atomics and no second launch.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;
#include "activation_math.cuh"

#define LOSS_THREADS 256

// A count of right predictions: 0/1 values added as integers, so the count is exact at any size (a
// float32 running sum is exact only to 2^24); stored into the real status slot once, rounded to
// nearest as NumPy's count_nonzero stored into the same slot is.
struct hit_count {
    unsigned long long n;
    __device__ __forceinline__ hit_count operator+(real hit) const { return {n + (unsigned long long)hit}; }
};

// The block's LOSS_THREADS (sum, count) pairs added up in a fixed tree order (the same totals on
// every run, no atomics); every thread of the block calls it, and the totals land in partial[0]
// and hits[0] (shared arrays of LOSS_THREADS).
__device__ __forceinline__ void block_sum_pair(real* partial, unsigned long long* hits, real sum, hit_count count) {
    partial[threadIdx.x] = sum;
    hits[threadIdx.x] = count.n;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            partial[threadIdx.x] = partial[threadIdx.x] + partial[threadIdx.x + half];
            hits[threadIdx.x] = hits[threadIdx.x] + hits[threadIdx.x + half];
        }
        __syncthreads();
    }
}

// The output layer's bias gradient, grad_bias[c] = sum_r x[r, c] over a (rows x cols) C-order x that
// this block has just written (every thread calls it, after a __syncthreads that made x visible). A
// fixed order of additions, no atomics: for cols <= LOSS_THREADS, the block is `groups` groups of cols
// threads, thread (k, c) adds rows k, k + groups, ... of column c (a warp reads consecutive columns),
// then the groups' sums are added in a tree (any number of groups); for wider outputs, one thread per
// column adds every row. partial: a shared array of LOSS_THREADS, free on entry and on return.
__device__ __forceinline__ void block_column_sums(const real* x, long long rows, long long cols, real* grad_bias,
                                                  real* partial) {
    if (cols > LOSS_THREADS) {  // the same branch in every thread: no barrier inside
        for (long long c = threadIdx.x; c < cols; c += LOSS_THREADS) {
            real sum = (real)0;
            for (long long r = 0; r < rows; ++r) sum = sum + x[r * cols + c];
            grad_bias[c] = sum;
        }
        return;
    }
    const int groups = LOSS_THREADS / (int)cols;
    const int c = threadIdx.x % (int)cols, k = threadIdx.x / (int)cols;
    real sum = (real)0;
    if (k < groups)
        for (long long r = k; r < rows; r += groups) sum = sum + x[r * cols + c];
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int width = groups; width > 1;) {  // groups [0, width) -> [0, half): k adds k + half
        const int half = (width + 1) / 2;
        if (k < width - half) partial[threadIdx.x] = partial[threadIdx.x] + partial[threadIdx.x + half * (int)cols];
        __syncthreads();
        width = half;
    }
    if (k == 0) grad_bias[c] = partial[threadIdx.x];
    __syncthreads();
}

// With bias_cols > 0 (training's output layer, NumpyBackend.loss_backward's order): first the output
// layer's bias and activation, in place (yhat holds X W^T on entry, a = act(z + bias) on return, as
// bias_<act>_forward), then the loss, and the activation's backward in the same pass, delta = grad *
// act'(a) (output 1: sigmoid, as sigmoid_backward; 0: the identity, nothing), and the bias gradient
// sum_batch delta into grad_bias (block_column_sums): the output layer's forward end, the loss, its
// gradient and the output layer's backward in one launch.
extern "C" __global__ void mse_loss_grad(real* yhat, const real* y, real* grad, real* loss,
                                         long long n, real inv_batch, real* grad_bias, long long bias_cols,
                                         int output, const real* bias) {
    __shared__ real partial[LOSS_THREADS];
    real sum = (real)0;
    for (long long i = threadIdx.x; i < n; i += LOSS_THREADS) {
        real a = yhat[i];
        if (bias_cols > 0) {  // the output layer's forward too: a = act(z + b), as bias_<act>_forward
            a = a + bias[i % bias_cols];
            if (output == 1) a = sigmoid_of(a);
            yhat[i] = a;
        }
        real diff = a - y[i];
        real g = diff * inv_batch;
        if (output == 1) g = sigmoid_backward_of(g, a);
        grad[i] = g;
        sum = sum + diff * diff;
    }
    if (bias_cols > 0) {
        __syncthreads();  // grad written by the whole block
        block_column_sums(grad, n / bias_cols, bias_cols, grad_bias, partial);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] = partial[threadIdx.x] + partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = partial[0] * ((real)0.5 * inv_batch);
}

// Softmax cross-entropy over rows of logits z (rows x classes, C order) against target rows y
// (one-hot or probabilities), with the log-sum-exp shift d = z - max z (no overflow at any finite
// logit): per row, loss_r = (sum_j y_j) log(sum_j e^d_j) - sum_j y_j d_j and
// grad_j = (softmax_j * sum_j y_j - y_j) / B. One thread per row (rows across the whole grid), so
// every row is computed in one pass over its classes, as NumpyBackend.softmax_cross_entropy_loss_grad
// does per row; the per-row losses and hits (argmax z == argmax y, first maximum) then go through
// sum_row_losses, one block: a deterministic total, no atomics.
extern "C" __global__ void softmax_cross_entropy_rows(real* z, const real* y, real* grad, real* row_loss,
                                                      real* row_hit, long long rows, long long classes,
                                                      real inv_batch, const real* bias, int add_bias) {
    for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < rows;
         r += (long long)blockDim.x * gridDim.x) {
        if (add_bias)  // training's output layer: z = z + bias first, in place (as bias_identity_forward)
            for (long long j = 0; j < classes; ++j) z[r * classes + j] = z[r * classes + j] + bias[j];
        const real* zr = z + r * classes;
        const real* yr = y + r * classes;
        real* gr = grad + r * classes;
        real m = zr[0], ym = yr[0];
        long long zarg = 0, yarg = 0;
        for (long long j = 1; j < classes; ++j) {
            if (zr[j] > m) { m = zr[j]; zarg = j; }
            if (yr[j] > ym) { ym = yr[j]; yarg = j; }
        }
        real s = (real)0, sy = (real)0, syd = (real)0;
        for (long long j = 0; j < classes; ++j) {
            real d = zr[j] - m;
            s = s + exp(d);
            sy = sy + yr[j];
            syd = syd + yr[j] * d;
        }
        real l = log(s);
        l = l * sy;
        row_loss[r] = l - syd;
        row_hit[r] = zarg == yarg ? (real)1 : (real)0;
        for (long long j = 0; j < classes; ++j) {
            real p = exp(zr[j] - m) / s;
            p = p * sy;
            gr[j] = (p - yr[j]) * inv_batch;
        }
    }
}

// loss[0] = sum(row_loss) * inv_batch, correct[0] = sum(row_hit): one block of LOSS_THREADS
// threads, a fixed order of additions (the same total every run).
// With classes > 0 (training's output layer, identity activation): also the bias gradient, the
// column sums of grad (rows x classes, written by softmax_cross_entropy_rows before this launch).
extern "C" __global__ void sum_row_losses(const real* row_loss, const real* row_hit, long long rows, real inv_batch,
                                          real* loss, real* correct, const real* grad, real* grad_bias,
                                          long long classes) {
    __shared__ real partial[LOSS_THREADS];
    __shared__ unsigned long long hits[LOSS_THREADS];
    if (classes > 0) block_column_sums(grad, rows, classes, grad_bias, partial);
    real sum = (real)0;
    hit_count count = {0};
    for (long long i = threadIdx.x; i < rows; i += LOSS_THREADS) {
        sum = sum + row_loss[i];
        count = count + row_hit[i];
    }
    block_sum_pair(partial, hits, sum, count);
    if (threadIdx.x == 0) {
        loss[0] = partial[0] * inv_batch;
        correct[0] = hits[0];
    }
}

// Sigmoid binary cross-entropy on logits, elementwise over n = rows x outputs:
// l = (max(z, 0) + log(1 + e^-|z|)) - z y (no overflow at any finite z), grad = (sigmoid(z) - y) / B
// with sigmoid(z) = num / (1 + e^-|z|) as the activations compute it (kernels/activations.cu: sigmoid_of,
// relative precision for every z); a hit when [z > 0] == [y >= 1/2].
// One block, like mse_loss_grad: a deterministic loss. NumpyBackend.sigmoid_binary_cross_entropy_loss_grad
// mirrors it.
// With bias_cols > 0 (training's output layer, identity activation): z = z + bias first, in place (the
// output layer's forward end, as bias_identity_forward), and the bias gradient.
extern "C" __global__ void sigmoid_binary_cross_entropy_loss_grad(real* z, const real* y, real* grad,
                                                                  real* loss, real* correct, long long n,
                                                                  real inv_batch, real* grad_bias,
                                                                  long long bias_cols, const real* bias) {
    __shared__ real partial[LOSS_THREADS];
    __shared__ unsigned long long hits[LOSS_THREADS];
    real sum = (real)0;
    hit_count count = {0};
    for (long long i = threadIdx.x; i < n; i += LOSS_THREADS) {
        real zi = z[i], yi = y[i];
        if (bias_cols > 0) {
            zi = zi + bias[i % bias_cols];
            z[i] = zi;
        }
        real e = exp(-fabs(zi));  // e^-|z| in (0, 1]: subnormal, then 0, for large |z|
        real softplus = log1p(e);
        real l = (zi > (real)0 ? zi : (real)0) + softplus;
        real zy = zi * yi;
        sum = sum + (l - zy);
        real num = zi >= (real)0 ? (real)1 : e;  // sigmoid(z) = num / (1 + e), as sigmoid_of
        real sigma = num / (e + (real)1);
        grad[i] = (sigma - yi) * inv_batch;
        count = count + (((zi > (real)0) == (yi >= (real)0.5)) ? (real)1 : (real)0);
    }
    if (bias_cols > 0) {
        __syncthreads();  // grad written by the whole block
        block_column_sums(grad, n / bias_cols, bias_cols, grad_bias, partial);
    }
    block_sum_pair(partial, hits, sum, count);
    if (threadIdx.x == 0) {
        loss[0] = partial[0] * inv_batch;
        correct[0] = hits[0];
    }
}
