// What fit adds around a training step so that many steps run per host round trip: the batch
// gathered by a cursor that lives on the device, and each step's loss and status accumulated on
// the device. NumpyBackend.gather_rows_at / accumulate_step mirror them
// (the cursor advances by an elementwise add, after both gathers).
#ifndef GB_REAL
#define GB_REAL float
#endif
typedef GB_REAL real;
#include "last_block.cuh"
#include "totals.cuh"
#ifndef GB_STATUS_GUARD
#error "GB_STATUS_* and GB_TOTALS_* are defined by gpubackprop.layouts.cuda_defines(), prepended to the source"
#endif

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

// Both gathers of a batch and the cursor's advance, in one launch: x_out = x_src's rows and y_out =
// y_src's rows order[cursor[0] + r] for r < rows (elements [0, rows x_cols) of the grid-stride range are
// x_out's, the rest y_out's), then cursor[0] += rows by the last block to finish (last_block_done:
// every block has read the cursor by then). NumpyBackend (Backend.gather_batch_at): gather_rows_at
// twice, then advance_cursor.
extern "C" __global__ void gather_batch_at(const real* x_src, const real* y_src, const long long* order,
                                           long long* cursor, real* x_out, real* y_out, long long rows,
                                           long long x_cols, long long y_cols, unsigned int* blocks_done) {
    const long long start = cursor[0];
    const long long nx = rows * x_cols, n = nx + rows * y_cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        if (i < nx) {
            const long long r = i / x_cols;
            x_out[i] = x_src[order[start + r] * x_cols + (i - r * x_cols)];
        } else {
            const long long j = i - nx, r = j / y_cols;
            y_out[j] = y_src[order[start + r] * y_cols + (j - r * y_cols)];
        }
    }
    if (last_block_done(blocks_done)) cursor[0] = start + rows;
}

// One thread, between the finite checks and the update: the step's totals (kernels/totals.cuh). A fit
// step on the device runs the same code in its update's last block instead (no launch of its own:
// kernels/optim_common.cuh, ACCUMULATE); this kernel is Backend.accumulate_step.
extern "C" __global__ void accumulate_step(real* status, double* totals, double rows) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    accumulate_totals(status, totals, rows);
}
