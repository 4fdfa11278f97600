// What every optimizer kernel shares (gpubackprop/optimizers/base.py describes a rule): ONE
// grid-stride kernel per rule, <name>_step, over the flat parameter buffer and its state rows
// (row j of the state at state + j n), run twice per step as the guarded update; mode (check below:
// its bits CHECK_UPDATE | CHECK_GRADS):
//   check != 0: every candidate parameter and state value is computed as the update will, nothing
//              stored but a NaN into status[GB_STATUS_UPDATE_CHECK] (0 on entry) if any is NaN/Inf;
//              with the bit CHECK_GRADS (2) set, also the gradients' finite check, in the same read of
//              g: a NaN into status[GB_STATUS_GRAD_CHECK] (0 on entry) if any g is NaN/Inf (g - g is
//              NaN exactly then; every writer writes the same NaN, so the race is harmless). Both
//              flags are complete when the kernel ends, before the update reads them: the guard
//              semantics of a separate check kernel, one launch fewer;
//   check = 0: the update, skipped whole when any of the first n_guard status slots is NaN/Inf, so a
//              refused step leaves parameters AND state bit-identical;
//   mode = ACCUMULATE (4): the update of a fit step, which also sums the step into fit's totals
//              (kernels/totals.cuh, accumulate_totals: what a separate accumulate_step launch did
//              between the check and the update): skipped also when the totals hold an earlier bad
//              step (the sticky refusal), and the totals written by the last block, after every
//              block has read them and the status for its guard (last_block.cuh; refused or not,
//              every block gets there then), which then sets both check flags back to 0 (fit's next
//              check pass needs them 0 on entry: no memset of their own but at a launch's first
//              step). totals: fit's (float64, TOTALS), rows: the batch's.
// The learning rate is read on the device (lr[0], double), so a recorded step survives its changes;
// t = step[0] + 1 (the accepted steps so far, plus this one); the update's last block advances it
// (last_block.cuh; blocks_done: 0 before the launch, 0 after), only when the update was let through. With clip > 0 the gradients are first scaled as torch.nn.utils.clip_grad_norm_
// does: g * min(1, clip / (norm + 1e-6)), norm = sqrt(status[GB_STATUS_GRAD_CHECK]) (the check pass
// stored sum g^2 there). A rule is a struct with no constructor: STATE (state rows), init(t, lr,
// h0..h3) and candidate(p, g, s) returning the new p, s[] updated in place. Its init runs once per
// block (thread 0, into shared memory: Adam's two double pows are not repeated by every thread). The layouts' GB_STATUS_* come
// from gpubackprop/layouts.py, prepended to the source.
#ifndef GB_OPTIM_COMMON_CUH
#define GB_OPTIM_COMMON_CUH
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;
#include "last_block.cuh"
#include "totals.cuh"
#ifndef GB_STATUS_GUARD
#error "GB_STATUS_* are defined by gpubackprop.layouts.cuda_defines(), prepended to the source"
#endif

#define CHECK_UPDATE 1  // the check pass: the candidates' finite check
#define CHECK_GRADS 2   // with it: the gradients' finite check too (no clipping: then the check is Σ g²)
#define ACCUMULATE 4    // the update (not a check) summing the step into fit's totals

__device__ __forceinline__ bool optimizer_guard_passes(const real* status, long long n_guard) {
    for (long long k = 0; k < n_guard; ++k)
        if (!isfinite(status[k])) return false;
    return true;
}

__device__ __forceinline__ double clip_coefficient(const real* status, double clip) {
    if (clip <= 0.0) return 1.0;
    const double coef = clip / (sqrt((double)status[GB_STATUS_GRAD_CHECK]) + 1e-6);
    return coef < 1.0 ? coef : 1.0;
}

// The check pass or the update's arithmetic over every element (see above).
template <class Rule>
__device__ __forceinline__ void optimizer_pass(real* param, const real* grad, real* state, long long n,
                                               long long* step, const double* lr, double h0, double h1,
                                               double h2, double h3, double clip, real* status, int check) {
    __shared__ Rule rule;
    __shared__ real coef;
    if (threadIdx.x == 0) {
        rule.init(step[0] + 1, lr[0], h0, h1, h2, h3);
        coef = (real)clip_coefficient(status, clip);
    }
    __syncthreads();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real g = grad[i];
        if (check & CHECK_GRADS) {
            const real dg = g - g;
            if (dg != (real)0) status[GB_STATUS_GRAD_CHECK] = dg;
        }
        if (clip > 0.0) g = g * coef;
        real s[Rule::STATE > 0 ? Rule::STATE : 1];
        for (int j = 0; j < Rule::STATE; ++j) s[j] = state[j * n + i];
        const real p = rule.candidate(param[i], g, s);
        if (check) {
            real d = p - p;
            for (int j = 0; j < Rule::STATE; ++j) d = d + (s[j] - s[j]);
            if (d != (real)0) status[GB_STATUS_UPDATE_CHECK] = d;
        } else {
            param[i] = p;
            for (int j = 0; j < Rule::STATE; ++j) state[j * n + i] = s[j];
        }
    }
}

template <class Rule>
__device__ __forceinline__ void optimizer_step(real* param, const real* grad, real* state, long long n,
                                               long long* step, const double* lr, double h0, double h1,
                                               double h2, double h3, double clip, real* status, long long n_guard,
                                               int mode, unsigned int* blocks_done, double* totals, double rows) {
    const bool accumulate = (mode & ACCUMULATE) != 0;
    const int check = mode & (CHECK_UPDATE | CHECK_GRADS);
    // The guard reads the same values in every thread: all skip the work, or none (no divergent
    // barrier below); with ACCUMULATE, a refused update's blocks still count themselves below.
    const bool apply = check || (optimizer_guard_passes(status, n_guard) && (!accumulate || totals_all_good(totals)));
    if (!apply && !accumulate) return;
    if (apply) optimizer_pass<Rule>(param, grad, state, n, step, lr, h0, h1, h2, h3, clip, status, check);
    // The update's last block to finish, after every block has read step[0], the status and the totals:
    // fit's totals (ACCUMULATE), then the accepted-step count when the update was let through.
    // Then the two check flags back to 0, read by no one after this launch in fit (the host reads the
    // totals): 0 on entry to the next fit step's check pass, with no memset of its own.
    if (!check && last_block_done(blocks_done)) {
        if (accumulate) {
            accumulate_totals(status, totals, rows);
            status[GB_STATUS_GRAD_CHECK] = (real)0;
            status[GB_STATUS_UPDATE_CHECK] = (real)0;
        }
        if (apply) step[0] = step[0] + 1;
    }
}

// Adam's scalars for step t, in double as torch computes them in Python floats.
struct AdamScalars {
    real step_size, sqrt_bc2, b1, b2, one_minus_b1, one_minus_b2, eps;
    __device__ void init(long long t_, double lr, double beta1, double beta2, double eps_) {
        const double t = (double)t_;
        step_size = (real)(lr / (1.0 - pow(beta1, t)));
        sqrt_bc2 = (real)sqrt(1.0 - pow(beta2, t));
        b1 = (real)beta1;
        b2 = (real)beta2;
        one_minus_b1 = (real)(1.0 - beta1);
        one_minus_b2 = (real)(1.0 - beta2);
        eps = (real)eps_;
    }
    // m = b1 m + (1 - b1) d;  v = b2 v + ((1 - b2) d) d;  returns step_size (m / (sqrt(v) / sqrt_bc2 + eps)).
    __device__ __forceinline__ real step(real d, real* s) const {
        real m = s[0] * b1;
        real tmp = d * one_minus_b1;
        m = m + tmp;
        real v = s[1] * b2;
        tmp = d * one_minus_b2;
        tmp = tmp * d;
        v = v + tmp;
        real u = sqrt(v);
        u = u / sqrt_bc2;
        u = u + eps;
        u = m / u;
        u = u * step_size;
        s[0] = m;
        s[1] = v;
        return u;
    }
};

#endif
