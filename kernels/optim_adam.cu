// adam (gpubackprop/optimizers/adam.py): d = g + wd p, then AdamScalars::step (optim_common.cuh).
// h0 = beta1, h1 = beta2, h2 = eps, h3 = wd.
#include "optim_common.cuh"

struct Adam {
    static const int STATE = 2;
    AdamScalars a;
    real wd;
    __device__ void init(long long t, double lr, double h0, double h1, double h2, double h3) {
        a.init(t, lr, h0, h1, h2);
        wd = (real)h3;
    }
    __device__ __forceinline__ real candidate(real p, real g, real* s) const {
        real d = g;
        if (wd != (real)0) {
            real decay = p * wd;
            d = g + decay;
        }
        return p - a.step(d, s);
    }
};

extern "C" __global__ void adam_step(real* param, const real* grad, real* state, long long n, long long* step,
                                     const double* lr, double h0, double h1, double h2, double h3, double clip,
                                     real* status, long long n_guard, int mode,
                                     unsigned int* blocks_done, double* totals, double rows) {
    optimizer_step<Adam>(param, grad, state, n, step, lr, h0, h1, h2, h3, clip, status, n_guard, mode, blocks_done, totals, rows);
}
