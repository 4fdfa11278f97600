// sgd (gpubackprop/optimizers/sgd.py): d = g + wd p;  the new p is p - d lr.
#include "optim_common.cuh"

struct Sgd {
    static const int STATE = 0;
    real lr, wd;
    __device__ void init(long long, double lr_, double h0, double, double, double) {
        lr = (real)lr_;
        wd = (real)h0;
    }
    __device__ __forceinline__ real candidate(real p, real g, real*) const {
        real d = g;
        if (wd != (real)0) {
            real decay = p * wd;
            d = g + decay;
        }
        real u = d * lr;
        return p - u;
    }
};

extern "C" __global__ void sgd_step(real* param, const real* grad, real* state, long long n, long long* step,
                                    const double* lr, double h0, double h1, double h2, double h3, double clip,
                                    real* status, long long n_guard, int mode,
                                    unsigned int* blocks_done, double* totals, double rows) {
    optimizer_step<Sgd>(param, grad, state, n, step, lr, h0, h1, h2, h3, clip, status, n_guard, mode, blocks_done, totals, rows);
}
