// fit's per-epoch totals (the layout TOTALS of gpubackprop/layouts.py, GB_TOTALS_*), summed on the
// device step by step, and the sticky refusal that follows a bad step. Run by one thread: the
// accumulate_step kernel (kernels/fit.cu) or, in a fit step, the update's last block
// (kernels/optim_common.cuh), so that the step has no launch of its own for it. In double, as the
// host's float sum it replaces. NumpyBackend.accumulate_step mirrors it.
#ifndef GB_TOTALS_CUH
#define GB_TOTALS_CUH

// Whether every step since the totals were zeroed was good (no first bad step recorded).
__device__ __forceinline__ bool totals_all_good(const double* totals) {
    return isfinite(totals[GB_TOTALS_BAD_LOSS]) && isfinite(totals[GB_TOTALS_BAD_GRAD_CHECK])
           && isfinite(totals[GB_TOTALS_BAD_UPDATE_CHECK]);
}

// A step is good when its status (the slots before GB_STATUS_CORRECT: the update's guard) is
// finite and no earlier step since the totals were zeroed was bad; a good step adds its loss x rows
// and its right predictions and counts itself, a bad one is recorded as the first bad step. After a
// bad step every later step is refused: its status is made non-finite (the bad step's sum), so the
// guarded update skips it and the parameters stay those after the last good step.
__device__ __forceinline__ void accumulate_totals(real* status, double* totals, double rows) {
    if (!totals_all_good(totals)) {
        status[GB_STATUS_GRAD_CHECK] = (real)(totals[GB_TOTALS_BAD_LOSS] + totals[GB_TOTALS_BAD_GRAD_CHECK]
                                              + totals[GB_TOTALS_BAD_UPDATE_CHECK]);
        return;
    }
    const double loss = (double)status[GB_STATUS_LOSS];
    const double check = (double)status[GB_STATUS_GRAD_CHECK];
    const double update = (double)status[GB_STATUS_UPDATE_CHECK];
    if (isfinite(loss) && isfinite(check) && isfinite(update)) {
        totals[GB_TOTALS_LOSS_ROWS] = totals[GB_TOTALS_LOSS_ROWS] + loss * rows;
        totals[GB_TOTALS_GOOD_STEPS] = totals[GB_TOTALS_GOOD_STEPS] + 1.0;
        totals[GB_TOTALS_CORRECT] = totals[GB_TOTALS_CORRECT] + (double)status[GB_STATUS_CORRECT];
    } else {
        totals[GB_TOTALS_BAD_LOSS] = loss;
        totals[GB_TOTALS_BAD_GRAD_CHECK] = check;
        totals[GB_TOTALS_BAD_UPDATE_CHECK] = update;
    }
}
#endif
