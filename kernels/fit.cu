// What fit adds around a training step so that many steps run per host round trip: the batch
// gathered by a cursor that lives on the device, and each step's loss and status accumulated on
// the device. NumpyBackend.gather_rows_at / accumulate_step mirror them
// (the cursor advances by an elementwise add, after both gathers).
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;

// out[r, :] = source[order[cursor[0] + r], :] for r < rows: the rows of the next batch of the
// epoch's permutation. The cursor is read on the device, so a recorded step (CUDA graph) gathers
// a different batch at each replay.
extern "C" __global__ void gather_rows_at(const real* source, const long long* order, const long long* cursor,
                                          real* out, long long rows, long long cols) {
    const long long start = cursor[0];
    const long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        long long r = i / cols;
        out[i] = source[order[start + r] * cols + (i - r * cols)];
    }
}

// One thread, between the finite checks and the update. totals = {Σ loss·rows, good steps,
// loss, gradient check and update check of the first bad step (0 until a step is bad), Σ right
// predictions}; status = {loss, gradient check, update check, right predictions} of this step,
// the first three the update's guard. A step is good when its
// status is finite and no earlier step since the totals were zeroed was bad; a bad step's status
// is kept and every later step is refused by making its guard non-finite (sticky), so the parameters
// stay those after the last good step. In double, as the host's float sum it replaces.
extern "C" __global__ void accumulate_step(real* status, double* totals, double rows) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const bool earlier_good = isfinite(totals[2]) && isfinite(totals[3]) && isfinite(totals[4]);
    if (!earlier_good) {
        // Refused: sgd_update skips a non-finite guard, and the bad step's sum is non-finite.
        status[1] = (real)(totals[2] + totals[3] + totals[4]);
        return;
    }
    const double loss = (double)status[0];
    const double check = (double)status[1];
    const double update = (double)status[2];
    if (isfinite(loss) && isfinite(check) && isfinite(update)) {
        totals[0] = totals[0] + loss * rows;
        totals[1] = totals[1] + 1.0;
        totals[5] = totals[5] + (double)status[3];
    } else {
        totals[2] = loss;
        totals[3] = check;
        totals[4] = update;
    }
}
