// momentum (gpubackprop/optimizers/momentum.py): d = g + wd p;  b = mu b + d;
// u = lr b (Nesterov: lr (d + mu b));  the new p is p - u.  h0 = mu, h1 = nesterov, h2 = wd.
#include "optim_common.cuh"

struct Momentum {
    static const int STATE = 1;
    real lr, mu, wd;
    bool nesterov;
    __device__ void init(long long, double lr_, double h0, double h1, double h2, double) {
        lr = (real)lr_;
        mu = (real)h0;
        wd = (real)h2;
        nesterov = h1 != 0.0;
    }
    __device__ __forceinline__ real candidate(real p, real g, real* s) const {
        real d = g;
        if (wd != (real)0) {
            real decay = p * wd;
            d = g + decay;
        }
        real b = s[0] * mu;
        b = b + d;
        real u;
        if (nesterov) {
            u = b * mu;
            u = d + u;
            u = u * lr;
        } else {
            u = b * lr;
        }
        s[0] = b;
        return p - u;
    }
};

extern "C" __global__ void momentum_step(real* param, const real* grad, real* state, long long n,
                                         long long* step, const double* lr, double h0, double h1, double h2,
                                         double h3, double clip, real* status, long long n_guard, int mode,
                                         unsigned int* blocks_done, double* totals, double rows) {
    optimizer_step<Momentum>(param, grad, state, n, step, lr, h0, h1, h2, h3, clip, status, n_guard, mode, blocks_done, totals, rows);
}
