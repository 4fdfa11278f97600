"""The NumPy backend's epoch operations: what ``fit`` runs around a step on the device (the row
gather at a device cursor, the epoch's totals) and the optimizer's guarded update."""
from __future__ import annotations

import math

import numpy

from ..layouts import GUARD, STATUS, TOTALS

_multiply, _dot = numpy.multiply, numpy.dot


class NumpyEpochOps:
    """As kernels/fit.cu and kernels/optim_*.cu, operation by operation."""

    def gather_rows_at(self, source, order, cursor, out):
        start = cursor.item()
        # as gather_rows; the method, positionally: numpy.take's dispatch doubles the cost of a small batch
        source.take(order[start:start + out.shape[0]], 0, out, "clip")
        return out

    def advance_cursor(self, cursor, rows):
        cursor[0] += rows

    def accumulate_step(self, status, totals, rows):
        # The kernel of kernels/fit.cu, in the same double operations (on Python floats: no warnings).
        T, S = TOTALS, STATUS
        total = totals.tolist()
        bad = (total[T.bad_loss], total[T.bad_grad_check], total[T.bad_update_check])
        if not all(map(math.isfinite, bad)):
            status[S.grad_check] = bad[0] + bad[1] + bad[2]  # non-finite: the update's guard refuses the step
            return
        now = status.tolist()
        if math.isfinite(now[S.loss]) and math.isfinite(now[S.grad_check]) and math.isfinite(now[S.update_check]):
            totals[T.loss_rows] = total[T.loss_rows] + now[S.loss] * float(rows)
            totals[T.good_steps] = total[T.good_steps] + 1.0
            totals[T.correct] = total[T.correct] + now[S.correct]
        else:
            totals[T.bad_loss], totals[T.bad_grad_check], totals[T.bad_update_check] = \
                now[S.loss], now[S.grad_check], now[S.update_check]

    def optimizer_step(self, optimizer, param, grad, state, step, lr, status, *, check, guarded=True, clip=None,
                       scratch, check_grads=False, totals=None, rows=0, flags_zero=False):
        # The guard, the clipping and the step count as kernels/optim_common.cuh; the rule's own
        # arithmetic is its NumPy reference (gpubackprop.optimizers.<rule>.numpy_step). flags_zero: the
        # kernel's check pass needs its flags 0 on entry; here every check overwrites its flag.
        if totals is not None:  # fit's totals, as the kernel's ACCUMULATE: the same outcome as summing them
            if check or not guarded:  # first (its refusal makes the status non-finite), then the guarded update
                raise ValueError("totals: only in a guarded update (the check pass has nothing to sum yet)")
            self.accumulate_step(status, totals, rows)
            self.optimizer_step(optimizer, param, grad, state, step, lr, status, check=False, clip=clip, scratch=scratch)
            status[STATUS.grad_check:STATUS.update_check + 1] = 0  # as the kernel's last block, for the next check
            return param
        if not check and guarded and not all(map(math.isfinite, status[:GUARD].tolist())):
            return param  # the kernel's guard, checked on the host: parameters, state and step untouched
        key = ("optimizer", state.shape[0], grad.shape, grad.dtype, id(status))
        views = scratch.get(key)
        if views is None:  # the scratch rows: candidates, state candidates, work, clipped gradients; made once
            k = state.shape[0]
            block = self.empty((4 + k, *grad.shape), grad.dtype)
            views = scratch[key] = (block[0], block[1:1 + k], block[1 + k:3 + k], block[3 + k], block[:1 + k].reshape(-1),
                                    status[STATUS.update_check:STATUS.update_check + 1].reshape(()))
        candidate, state_candidate, work, clipped, flat, flag = views
        if clip is not None:
            coef = clip / (math.sqrt(float(status[STATUS.grad_check])) + 1e-6)  # in double, as the kernel
            if coef < 1.0:
                grad = _multiply(grad, coef, clipped)  # torch.nn.utils.clip_grad_norm_'s g·coef
        t, rate = int(step[0]) + 1, float(lr[0])
        if check_grads:  # the gradients' finite check, as the kernel's CHECK_GRADS pass (here the sum, as finite_check)
            if not check or clip is not None:
                raise ValueError("check_grads: only in the check pass and without clipping (clipping's check is Σ g²)")
            self.finite_check(grad, status[STATUS.grad_check:STATUS.grad_check + 1].reshape(()))
        if check:  # every candidate value computed as the update will, then ONE flag
            optimizer.rule.numpy_step(optimizer.settings, t, rate, param, grad, state, candidate, state_candidate, work)
            # 0 when every candidate is finite, NaN otherwise (Inf·0 and NaN·0 are NaN), in one BLAS pass.
            _dot(flat, self._zeros_vector(flat.shape[0], flat.dtype), flag)
            return param
        optimizer.rule.numpy_step(optimizer.settings, t, rate, param, grad, state, param, state, work)
        step[0] += 1  # as the update kernel's last block
        return param
