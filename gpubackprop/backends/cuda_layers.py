"""The CUDA backend's layer operations: each one kernel of ``kernels/`` or one cuBLAS call (see
``cupy_backend``), in the NumPy backend's order; the training step's fused ones (``loss_backward``,
``activation_backward_bias``, the update's check pass with the gradients' check) run as one kernel
what the NumPy backend runs as its parts."""
from __future__ import annotations

import numpy

from .. import activations
from ..layouts import GUARD, STATUS
from .base import scratch_buffer

_THREADS = 256
_BIAS_TILE = 32  # columns per block of the <activation>_backward_bias kernels (BIAS_TILE, activations.cu)
_CHECK_UPDATE, _CHECK_GRADS, _ACCUMULATE = 1, 2, 4  # the optimizer kernels' mode bits (kernels/optim_common.cuh)
# One memset zeroes both flags of a check pass that also checks the gradients: they must be adjacent.
assert STATUS.update_check == STATUS.grad_check + 1, "layouts.STATUS: grad_check right before update_check"


# The output activations the loss kernels fuse (their `output` argument): identity, and sigmoid for mse.
_FUSED_OUTPUTS = {"identity": 0, "sigmoid": 1}


def _bias_arguments(grad, fused):
    """The loss kernels' (grad_bias, bias_cols): with ``fused`` = (grad_bias, bias_row) (training's
    output layer), the bias gradient's buffer and the output's width; else (grad, 0): no forward end,
    no bias gradient (the pointer is then never read)."""
    if fused is None:
        return grad, numpy.int64(0)
    return fused[0], numpy.int64(grad.shape[-1])


def _bias_row(grad, fused):
    """The loss kernels' bias pointer: the output layer's bias row, or (never read) grad."""
    return grad if fused is None else fused[1]


class CudaLayerOps:
    """Forward and backward of one layer, the losses, the checks and the update, as kernel launches
    (mixed into ``CupyBackend``: ``kernel``, ``_grid``, ``_constant``, ``matmul``, ``empty`` and
    ``copyto`` are its own)."""

    def bias_activation(self, z, bias_row, activation, scratch=None):  # fused: the kernel needs no scratch
        if activation not in activations.TABLE:
            raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")
        n = z.size
        self.kernel(f"bias_{activation}_forward", z.dtype)(
            self._grid(n), (_THREADS,), (z, bias_row, numpy.int64(n), numpy.int64(z.shape[-1])))
        return z

    def activation_backward(self, grad, a, activation, out, scratch):
        if activation not in activations.TABLE:
            raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")
        if activations.TABLE[activation].unit_derivative:
            if out is not grad:
                self.xp.copyto(out, grad)
            return out
        n = a.size
        self.kernel(f"{activation}_backward", a.dtype)(self._grid(n), (_THREADS,), (grad, a, out, numpy.int64(n)))
        return out

    def activation_backward_bias(self, grad, a, activation, out, grad_bias, scratch):
        # δ and Σ_batch δ in one launch (kernels/activations.cu: <activation>_backward_bias): a grid
        # of column tiles x row chunks, the chunks' sums added by the last block in a fixed order.
        if activation not in activations.TABLE:
            raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")
        rows, cols = a.shape
        tiles = -(-cols // _BIAS_TILE)
        chunks = max(1, min(-(-rows // (_THREADS // _BIAS_TILE)), self._max_blocks // tiles))
        key = ("bias_partials", chunks, cols, a.dtype.name)
        partials = scratch.get(key)
        if partials is None:
            partials = scratch[key] = self.empty((chunks, cols), a.dtype)
        self.kernel(f"{activation}_backward_bias", a.dtype)(
            (tiles * chunks,), (_THREADS,), (grad, a, out, numpy.int64(rows), numpy.int64(cols), grad_bias, partials,
                                             self._blocks_done(scratch)))
        return out

    def loss_backward(self, name, z, y, activation, delta, grad_bias, loss, correct, scratch, bias_row=None):
        # One launch for the output layer's bias and activation (with bias_row), the loss, its gradient,
        # the output activation's backward and the bias gradient (kernels/loss.cu); an output
        # activation the kernels do not fuse: the parts.
        output = _FUSED_OUTPUTS.get(activation)
        if bias_row is None or output is None or (output and name != "mse"):
            return super().loss_backward(name, z, y, activation, delta, grad_bias, loss, correct, scratch, bias_row)
        return getattr(self, f"_{name}_loss")(z, y, delta, loss, correct, scratch, (grad_bias, bias_row), output)

    def _mse_loss(self, yhat, y, grad, loss, correct, scratch, fused=None, output=0):
        n = yhat.size
        inv_batch = yhat.dtype.type(1.0 / yhat.shape[0])
        # One block of exactly LOSS_THREADS (= _THREADS, loss.cu) threads: a deterministic sum.
        self.kernel("mse_loss_grad", yhat.dtype)(
            (1,), (_THREADS,), (yhat, y, grad, loss, numpy.int64(n), inv_batch, *_bias_arguments(grad, fused),
                                numpy.int32(output), _bias_row(grad, fused)))
        return loss

    def _softmax_cross_entropy_loss(self, z, y, grad, loss, correct, scratch, fused=None, output=0):
        rows, classes = z.shape
        inv_batch = z.dtype.type(1.0 / rows)
        per_row = scratch_buffer(scratch, (2, rows), z.dtype, self.empty)  # row losses, row hits
        self.kernel("softmax_cross_entropy_rows", z.dtype)(
            self._grid(rows), (_THREADS,),
            (z, y, grad, per_row[0], per_row[1], numpy.int64(rows), numpy.int64(classes), inv_batch,
             _bias_row(grad, fused), numpy.int32(fused is not None)))
        # One block of exactly LOSS_THREADS (= _THREADS, loss.cu) threads: a deterministic sum.
        self.kernel("sum_row_losses", z.dtype)(
            (1,), (_THREADS,), (per_row[0], per_row[1], numpy.int64(rows), inv_batch, loss, correct, grad,
                                *_bias_arguments(grad, fused)))
        return loss

    def _sigmoid_binary_cross_entropy_loss(self, z, y, grad, loss, correct, scratch, fused=None, output=0):
        inv_batch = z.dtype.type(1.0 / z.shape[0])
        self.kernel("sigmoid_binary_cross_entropy_loss_grad", z.dtype)(
            (1,), (_THREADS,), (z, y, grad, loss, correct, numpy.int64(z.size), inv_batch,
                                *_bias_arguments(grad, fused), _bias_row(grad, fused)))
        return loss

    def sum_rows(self, x, out):
        # Σ_batch as a cuBLAS product 1ᵀ x: no reduction temporaries, so a graph can record it.
        ones = self._constant(1, (1, x.shape[0]), x.dtype)
        self.matmul(ones, x, out=out.reshape(1, -1))
        return out

    def finite_check(self, x, out, squares=False):
        if squares:  # Σ x² as a cuBLAS dot (1 x n)(n x 1): the norm for clipping, finite exactly when x is
            self.matmul(x.reshape(1, -1), x.reshape(-1, 1), out=out.reshape(1, 1))
            return out
        out.fill(0)
        n = x.size
        self.kernel("flag_nonfinite", x.dtype)(self._grid(n), (_THREADS,), (x, numpy.int64(n), out))
        return out

    def optimizer_step(self, optimizer, param, grad, state, step, lr, status, *, check, guarded=True, clip=None,
                       scratch, check_grads=False, totals=None, rows=0, flags_zero=False):
        # One kernel per rule, <name>_step (kernels/optim_<name>.cu), run as the check or the update;
        # the check pass also flags the gradients with check_grads (CHECK_GRADS): one memset of the two
        # adjacent flag slots, no separate check kernel; the update sums fit's totals with totals
        # (ACCUMULATE: in its last block, no accumulate_step launch), and then sets the check flags back
        # to 0, so that fit's next check pass runs with flags_zero (no memset).
        if totals is not None and (check or not guarded):
            raise ValueError("totals: only in a guarded update (the check pass has nothing to sum yet)")
        if check and not flags_zero:
            first = STATUS.grad_check if check_grads else STATUS.update_check
            status[first:STATUS.update_check + 1].fill(0)
        if check_grads and (not check or clip is not None):
            raise ValueError("check_grads: only in the check pass and without clipping (clipping's check is Σ g²)")
        n = param.size
        n_guard = numpy.int64(GUARD if guarded else 0)
        h0, h1, h2, h3 = (numpy.float64(h) for h in optimizer.rule.kernel_scalars(optimizer.settings))
        mode = (_CHECK_UPDATE | (_CHECK_GRADS if check_grads else 0)) if check else (0 if totals is None else _ACCUMULATE)
        # The update's last block also advances the step count (kernels/last_block.cuh) and sums fit's
        # totals: no launch of its own. Without totals the kernel reads none: lr (float64) stands in.
        self.kernel(optimizer.rule.kernel, param.dtype)(
            self._grid(n), (_THREADS,), (param, grad, state, numpy.int64(n), step, lr, h0, h1, h2, h3,
                                         numpy.float64(0.0 if clip is None else clip), status, n_guard,
                                         numpy.int32(mode), self._blocks_done(scratch),
                                         lr if totals is None else totals, numpy.float64(rows)))
        return param

    def _blocks_done(self, scratch):
        """The caller's counter of finished blocks (kernels/last_block.cuh): one unsigned int, zeroed
        once when made (a first step runs eagerly, outside any graph capture), back to 0 after every
        launch that uses it; launches in one stream share it."""
        counter = scratch.get("blocks_done")
        if counter is None:
            counter = scratch["blocks_done"] = self.empty((1,), numpy.uint32)
            self.copyto(counter, numpy.zeros(1, numpy.uint32))
        return counter
