// The stateful optimizers (gpubackprop/optimizers.py has the definitions, PyTorch's), each ONE
// grid-stride kernel over the flat parameter buffer, with its state buffers laid out alike, and
// guarded as sgd.cu's update: a first pass (<rule>_check) computes every candidate parameter and
// state value as the update will and stores nothing but a flag in the status's update-check slot;
// the second pass (<rule>_update) changes nothing when any of the n_guard status values is NaN/Inf,
// so a refused step leaves parameters AND state bit-identical. Both passes call the same
// __device__ function, so the check sees exactly the values the update would write.
// NumpyBackend.momentum_check/update and adam_check/update perform the same operations in the same order.
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

__device__ __forceinline__ bool optimizer_guard_passes(const real* guard, long long n_guard) {
    for (long long k = 0; k < n_guard; ++k)
        if (!isfinite(guard[k])) return false;
    return true;
}

// d = g + wd p;  b = mu b + d;  u = lr b (Nesterov: lr (d + mu b));  the new p is p - u.
__device__ __forceinline__ void momentum_candidate(real p, real g, real b_in, real lr, real mu, real wd, int nesterov,
                                                   real* b_out, real* u_out) {
    real d = g;
    if (wd != (real)0) {
        real decay = p * wd;
        d = g + decay;
    }
    real b = b_in * mu;
    b = b + d;
    real u;
    if (nesterov) {
        u = b * mu;
        u = d + u;
        u = u * lr;
    } else {
        u = b * lr;
    }
    *b_out = b;
    *u_out = u;
}

// flag[0] must be 0 on entry; it becomes NaN if any candidate parameter or velocity is NaN/Inf.
extern "C" __global__ void momentum_check(const real* param, const real* grad, const real* velocity, real lr, real mu,
                                          real wd, int nesterov, long long n, real* flag) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real b, u;
        momentum_candidate(param[i], grad[i], velocity[i], lr, mu, wd, nesterov, &b, &u);
        real p = param[i] - u;
        real d = (p - p) + (b - b);
        if (d != (real)0) flag[0] = d;
    }
}

extern "C" __global__ void momentum_update(real* param, const real* grad, real* velocity, real lr, real mu, real wd,
                                           int nesterov, long long n, const real* guard, long long n_guard) {
    if (!optimizer_guard_passes(guard, n_guard)) return;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real b, u;
        momentum_candidate(param[i], grad[i], velocity[i], lr, mu, wd, nesterov, &b, &u);
        param[i] = param[i] - u;
        velocity[i] = b;
    }
}

// Adam's scalars for step t = step[0] + 1 (accepted steps so far, plus this one): step_size =
// lr / (1 - b1^t) and sqrt(1 - b2^t), in double as torch computes them in Python floats.
struct AdamScalars {
    real step_size, sqrt_bc2, b1, b2, one_minus_b1, one_minus_b2;
};

__device__ __forceinline__ AdamScalars adam_scalars(const long long* step, double lr, double beta1, double beta2) {
    const double t = (double)(step[0] + 1);
    AdamScalars s;
    s.step_size = (real)(lr / (1.0 - pow(beta1, t)));
    s.sqrt_bc2 = (real)sqrt(1.0 - pow(beta2, t));
    s.b1 = (real)beta1;
    s.b2 = (real)beta2;
    s.one_minus_b1 = (real)(1.0 - beta1);
    s.one_minus_b2 = (real)(1.0 - beta2);
    return s;
}

// d = g + wd p;  m = b1 m + (1 - b1) d;  v = b2 v + ((1 - b2) d) d;
// u = step_size (m / (sqrt(v) / sqrt_bc2 + eps));  the new p is p - u.
__device__ __forceinline__ void adam_candidate(real p, real g, real m_in, real v_in, const AdamScalars& s, real eps,
                                               real wd, real* m_out, real* v_out, real* u_out) {
    real d = g;
    if (wd != (real)0) {
        real decay = p * wd;
        d = g + decay;
    }
    real m = m_in * s.b1;
    real tmp = d * s.one_minus_b1;
    m = m + tmp;
    real v = v_in * s.b2;
    tmp = d * s.one_minus_b2;
    tmp = tmp * d;
    v = v + tmp;
    real u = sqrt(v);
    u = u / s.sqrt_bc2;
    u = u + eps;
    u = m / u;
    u = u * s.step_size;
    *m_out = m;
    *v_out = v;
    *u_out = u;
}

// flag[0] must be 0 on entry; it becomes NaN if any candidate parameter, m or v is NaN/Inf.
extern "C" __global__ void adam_check(const real* param, const real* grad, const real* m, const real* v,
                                      const long long* step, double lr, double beta1, double beta2, real eps, real wd,
                                      long long n, real* flag) {
    __shared__ AdamScalars s;  // the bias corrections (two double pows) once per block, not per thread
    if (threadIdx.x == 0) s = adam_scalars(step, lr, beta1, beta2);
    __syncthreads();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real mi, vi, u;
        adam_candidate(param[i], grad[i], m[i], v[i], s, eps, wd, &mi, &vi, &u);
        real p = param[i] - u;
        real d = (p - p) + (mi - mi) + (vi - vi);
        if (d != (real)0) flag[0] = d;
    }
}

// step[0] is advanced by adam_advance_step, launched after this kernel: every thread here reads the same t.
extern "C" __global__ void adam_update(real* param, const real* grad, real* m, real* v, const long long* step,
                                       double lr, double beta1, double beta2, real eps, real wd, long long n,
                                       const real* guard, long long n_guard) {
    if (!optimizer_guard_passes(guard, n_guard)) return;  // the same for every thread: no divergent barrier below
    __shared__ AdamScalars s;  // the bias corrections (two double pows) once per block, not per thread
    if (threadIdx.x == 0) s = adam_scalars(step, lr, beta1, beta2);
    __syncthreads();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        real mi, vi, u;
        adam_candidate(param[i], grad[i], m[i], v[i], s, eps, wd, &mi, &vi, &u);
        param[i] = param[i] - u;
        m[i] = mi;
        v[i] = vi;
    }
}

// One thread: the accepted-step count advances only when the update was let through.
extern "C" __global__ void adam_advance_step(long long* step, const real* guard, long long n_guard) {
    if (optimizer_guard_passes(guard, n_guard)) step[0] = step[0] + 1;
}
