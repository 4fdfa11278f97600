"""A network's step: forward, loss, backward, the guarded update, and its recording.

Per layer, forward:   z = X Wᵀ + b,  a = act(z)                 (the lesson's z = Wx + b, batched)
Per layer, backward:  δ = ∂L/∂a ⊙ act'(z)
                      ∂L/∂W = δᵀ X,  ∂L/∂b = Σ_batch δ,  ∂L/∂X = δ W   (passed to the layer below)
The same five steps at every depth; every array operation goes through the backend. A step is
only queued work (no host synchronisation), so a device backend can record it once and replay it;
the learning rate is read on the device (``Parameters.lrs``), so it is not part of a recording.
"""
from __future__ import annotations

import math

import numpy

from ..errors import BatchTooLargeError, NonFiniteLossError
from ..layouts import STATUS, TOTALS
from .workspace import Workspace

MAX_WORKSPACES = 8  # buffer sets kept per network, one per batch size


class Steps:
    """What a network computes with: its parameters, workspaces, recorder, and the step itself.
    Training (``gpubackprop.training``) and data-parallel code drive a network through this object."""

    def __init__(self, backend, layer_sizes, dtype, activations, loss, params, tf32):
        self.backend, self.layer_sizes, self.dtype = backend, layer_sizes, dtype
        self.activations, self.loss, self.params = activations, loss, params
        self.tf32 = tf32  # every GEMM of the step asks the backend for TF32
        self.recorder = backend.recorder()
        self.workspaces = {}
        self.fit_state = None  # (samples, (permutation, cursor, totals)): fit's device buffers
        self.known_batch = None  # (X, Y, their layout): the last batch checked and used as it is

    # ------------------------------------------------------------------ the math
    def forward(self, X, ws, trace=None, output_end=True):
        """The activations of every layer into ws.activations; returns the output's. Without
        ``output_end``, the output layer's buffer holds X Wᵀ only (its bias and activation are then
        ``Backend.loss_backward``'s, in the loss kernel)."""
        ops = self.backend
        inputs = X
        last = len(self.params.weights) - 1
        for i, (W, bias_row, act) in enumerate(zip(self.params.weights, self.params.bias_rows, self.activations)):
            a = ws.activations[i]
            ops.matmul(inputs, W, out=a, trans_b=True, tf32=self.tf32)  # z = X Wᵀ (+ b below)
            if trace is not None:
                trace[i]["inputs"] = ops.to_numpy(inputs)
                trace[i]["z"] = ops.to_numpy(a) + ops.to_numpy(bias_row)
            if i == last and not output_end:
                return a
            ops.bias_activation(a, bias_row, act, ws.scratch)  # a = act(z + b), fused, in place
            if trace is not None:
                trace[i]["a"] = ops.to_numpy(a)
            inputs = a
        return inputs

    def loss_async(self, X, Y, ws, trace=None):
        """Forward pass, then L into ws.loss and ∂L/∂ŷ into the last layer's grad_outputs (and the
        right predictions into ws.correct for a classification loss); returns ws.loss (on the
        device: nothing waits)."""
        yhat = self.forward(X, ws, trace)
        return self.backend.loss_grad(self.loss, yhat, Y, ws.grad_outputs[-1], ws.loss, ws.correct, ws.scratch)

    def loss_value(self, X, Y, ws, trace=None) -> float:
        """``loss_async``, read back as a float; a NaN/Inf loss raises NonFiniteLossError."""
        value = float(self.loss_async(X, Y, ws, trace))  # a host synchronisation
        if not math.isfinite(value):
            raise NonFiniteLossError(value)
        return value

    def backward(self, X, ws, trace=None, output_done=False):
        """∂L/∂W, ∂L/∂b of every layer into ws.grads, from ∂L/∂ŷ in ws.grad_outputs[-1]; with
        ``output_done``, the output layer's δ and ∂L/∂b are there already (``Backend.loss_backward``)."""
        ops = self.backend
        last = len(self.params.weights) - 1
        for i in reversed(range(len(self.params.weights))):
            a, grad = ws.activations[i], ws.grad_outputs[i]
            inputs = ws.activations[i - 1] if i > 0 else X
            if trace is not None:
                trace[i]["grad_a"] = ops.to_numpy(grad)
                ones = ops.asarray(numpy.ones(a.shape), a.dtype)
                trace[i]["act_grad"] = ops.to_numpy(
                    ops.activation_backward(ones, a, self.activations[i], out=ones, scratch=ws.scratch))
            if output_done and i == last:  # δ and ∂L/∂b made with the loss
                delta = grad
            else:  # δ = ∂L/∂a ⊙ act'(z), ∂L/∂b = Σ_batch δ: one kernel on a GPU
                delta = ops.activation_backward_bias(grad, a, self.activations[i], grad, ws.grad_biases[i], ws.scratch)
            ops.matmul(delta, inputs, out=ws.grad_weights[i], trans_a=True, tf32=self.tf32)  # ∂L/∂W = δᵀ X
            if i > 0:
                ops.matmul(delta, self.params.weights[i], out=ws.grad_outputs[i - 1], tf32=self.tf32)  # ∂L/∂X = δ W
            if trace is not None:
                trace[i]["delta"] = ops.to_numpy(delta)
                trace[i]["grad_weight"] = ops.to_numpy(ws.grad_weights[i])
                trace[i]["grad_bias"] = ops.to_numpy(ws.grad_biases[i])

    def update(self, ws, lr, check=False, guarded=True, clip=None, check_grads=False, totals=None, rows=0,
               flags_zero=False):
        """The optimizer's update of every W and b at once, one backend operation over the flat
        buffers, guarded by the workspace's status; with ``check``, its first pass instead (the
        candidate values' finite check into ws.update_check, and with ``check_grads`` the gradients'
        into ws.grad_check). ``lr``: a (1,) device array. ``totals``: fit's, summed by the update,
        which then zeroes the check flags; ``flags_zero``: they are 0 (``Backend.optimizer_step``)."""
        p = self.params
        self.backend.optimizer_step(p.optimizer, p.flat, ws.grads, p.optimizer_state, p.step, lr, ws.status,
                                    check=check, guarded=guarded, clip=clip, scratch=ws.scratch,
                                    check_grads=check_grads, totals=totals, rows=rows, flags_zero=flags_zero)

    def set_optimizer(self, optimizer):
        """Replace the optimizer, its state fresh; recorded steps (which hold the old update's
        kernel, settings and state buffers) are dropped."""
        self.params.set_optimizer(optimizer)
        for ws in self.workspaces.values():
            ws.recordings.clear()

    # ------------------------------------------------------------------ one step
    def step(self, X, Y, ws, lr, check_finite, totals=None, sync=None, clip=None, flags_zero=False):
        """Forward, loss, backward, update: only queued work. ``totals``: fit's per-epoch device
        accumulator (``Backend.accumulate_step``), summed by the update (``Backend.optimizer_step``).
        ``sync``: the data-parallel all-reduce of the gradients, loss and checks, before the update's
        check. ``clip``: the global gradient norm to clip to (its square is computed by the
        gradients' finite check, in the same pass). ``flags_zero``: the status's check flags are 0
        on entry (fit, after a step with ``totals``: ``fit_step``).
        Where the backend plans steps (``Backend.plan_step``), the same work runs as the workspace's
        plan and the status comes back as a list (the step is done then, not queued)."""
        if sync is None and clip is None and X is not None:
            plan = self.plan(ws, check_finite)
            if plan is not None:
                return plan.run(X, Y, lr, totals, X.shape[0])
        ops = self.backend
        # An Inf in X can leave the loss finite (a saturated sigmoid) yet make ∂L/∂W NaN/Inf, so every
        # gradient is checked too: in the update's check pass (one read of the gradients, one launch)
        # unless clipping needs Σ g² first or the gradients are all-reduced in between.
        fused_check = check_finite and clip is None and sync is None
        if X is not None:
            # the output layer's bias and activation, the loss, ∂L/∂ŷ, its δ and ∂L/∂b: one backend
            # operation (one kernel on a GPU)
            ops.loss_backward(self.loss, self.forward(X, ws, output_end=False), Y, self.activations[-1],
                              ws.grad_outputs[-1], ws.grad_biases[-1], ws.loss, ws.correct, ws.scratch,
                              bias_row=self.params.bias_rows[-1])
            self.backward(X, ws, output_done=True)
            if (check_finite or clip is not None) and not fused_check:
                ops.finite_check(ws.grads, out=ws.grad_check, squares=clip is not None)
        if sync is not None:  # every rank now holds the global batch's gradients, loss and checks
            sync.reduce_mean(ws.payload, 0 if X is None else X.shape[0])
            if clip is not None:  # the norm of the all-reduced gradients, not the mean of the ranks' norms
                ops.finite_check(ws.grads, out=ws.grad_check, squares=True)
        if check_finite:
            # The update is checked before it is applied: a candidate parameter (or optimizer
            # state) holding NaN/Inf (an overflow: lr too large) refuses the step, in a pass that
            # stores nothing.
            self.update(ws, lr, check=True, clip=clip, check_grads=fused_check, flags_zero=flags_zero)
        # fit: the loss summed on the device by the update (after a bad step it refuses the rest)
        accumulate = totals is not None and check_finite
        self.update(ws, lr, guarded=check_finite, clip=clip, totals=totals if accumulate else None,
                    rows=X.shape[0] if accumulate else 0)

    def train(self, X, Y, ws, check_finite=True, sync=None, clip=None):
        """One step on checked backend arrays at the learning rate in ``params.lrs[0]``; returns the
        loss before the update, or raises NonFiniteLossError for a refused step. ``sync``: the
        data-parallel all-reduce; X None then means this rank has no rows at this step."""
        lr = self.params.lr_views[0]
        if sync is None and clip is None and self.backend.plans and not self.recorder.records:  # NumPy: planned once
            status = self.step(X, Y, ws, lr, check_finite)
            return read_status(ws, check_finite) if status is None else status_loss(status, check_finite)
        step = lambda: self.step(X, Y, ws, lr, check_finite, sync=sync, clip=clip)  # noqa: E731
        if sync is None:
            self.recorder.run(step, ws.recordings, arrays=(X, Y, self.params.flat, self.params.lrs),
                              scalars=(check_finite, clip))
        else:
            if X is not None and sync.capturable:  # the all-reduce recorded inside the step's graph
                self.recorder.run(step, ws.recordings, arrays=(X, Y, self.params.flat, self.params.lrs),
                                  scalars=(check_finite, clip, sync))
            else:
                step()
            sync.wait()
        return read_status(ws, check_finite)

    def plan(self, ws, check_finite):
        """The backend's plan of a step on ``ws`` (``Backend.plan_step``), made once and kept with
        the workspace's recordings (dropped with them when the optimizer changes; made again when
        the parameters' buffers were replaced); None where the backend records steps instead."""
        if not self.backend.plans:
            return None
        key = ("plan", check_finite)
        plan = ws.recordings.get(key)
        if plan is None or not plan.valid(self.params):
            plan = ws.recordings[key] = self.backend.plan_step(self, ws, check_finite)
        return plan

    # ------------------------------------------------------------------ fit's launches
    def fit_buffers(self, samples: int):
        """fit's device buffers for a data set of ``samples`` rows: the epoch's permutation (int64),
        the gather cursor (int64, 1) and the epoch's totals (float64, ``layouts.TOTALS``). Kept for
        the last size seen, so that fit called again reuses them, and with them the recorded
        launches, whose keys hold their addresses."""
        if self.fit_state is None or self.fit_state[0] != samples:
            empty = self.backend.empty
            self.fit_state = None  # the old buffers go before the new ones are made
            self.fit_state = (samples, (empty((samples,), numpy.int64), empty((1,), numpy.int64),
                                        empty((len(TOTALS),), numpy.float64)))
        return self.fit_state[1]

    def fit_step(self, X, Y, order, cursor, ws, lr, totals, clip=None, first=True):
        """One step of ``fit``, queued only: the next batch of the permutation ``order`` gathered
        at the device's ``cursor`` into the workspace, then ``step`` summing into ``totals``.
        ``first``: the first step of a launch; after it, the check flags are 0 on entry (the
        previous step's update, summing into ``totals``, zeroed them; nothing between writes them)."""
        ops = self.backend
        ops.gather_batch_at(X, Y, order, cursor, ws.inputs, ws.targets, ws.scratch)  # one kernel on a GPU
        self.step(ws.inputs, ws.targets, ws, lr, True, totals, clip=clip, flags_zero=not first)

    def launch(self, steps, X, Y, order, cursor, ws, totals, clip=None, between_steps=None):
        """``steps`` consecutive ``fit_step`` s as one piece of recorded work, step i at the learning
        rate ``params.lrs[i]`` (written before the launch): a recording backend records them once
        (one CUDA graph) and replays them at every launch; nothing is read back. ``between_steps``:
        called after each step where steps run one by one (a backend that does not record)."""
        between_steps = None if self.recorder.records else between_steps
        lrs = self.params.lr_views

        def launch():
            for i in range(steps):
                self.fit_step(X, Y, order, cursor, ws, lrs[i], totals, clip, i == 0)  # first: i == 0
                if between_steps is not None:
                    between_steps()

        self.recorder.run(launch, ws.recordings, arrays=(X, Y, order, cursor, totals, self.params.flat, self.params.lrs),
                          scalars=("fit", steps, X.shape[0], clip))

    # ------------------------------------------------------------------ buffers and inputs
    def workspace(self, batch: int) -> Workspace:
        ws = self.workspaces.get(batch)
        if ws is None:
            try:
                ws = Workspace(self.backend, self.layer_sizes, batch, self.dtype)
            except MemoryError as exc:  # numpy's _ArrayMemoryError, cupy's OutOfMemoryError
                raise self._batch_too_large(batch, exc) from None  # from None: frees the partial buffers
            if len(self.workspaces) >= MAX_WORKSPACES:  # many batch sizes seen (forward, predict
                del self.workspaces[next(iter(self.workspaces))]  # remainders): drop the oldest
            self.workspaces[batch] = ws
        return ws

    def _batch_too_large(self, batch, exc):
        nbytes = Workspace.nbytes(self.layer_sizes, batch, self.dtype)
        try:
            device = self.backend.device_name()
        except Exception:  # the message matters more than the device's name
            device = "device"
        return BatchTooLargeError(
            f"a batch of {batch} rows does not fit: its buffers need {nbytes} bytes ({nbytes / 2**30:.1f} GiB) "
            f"for layer_sizes {self.layer_sizes} in {self.dtype.name} on the {self.backend.name} backend "
            f"({device}), and allocating them failed ({type(exc).__name__}: {exc}); nothing was changed: "
            f"use smaller batches (e.g. fit(..., batch_size=...) or predict(X, batch_size=...))",
            batch, nbytes)

    def same_batch(self, X, Y) -> bool:
        """Whether (X, Y) are the very arrays of the last ``remember_batch``, with the same shape,
        strides and dtype: checked then (no pass over the data, so nothing to check again) and used
        as they are. A train_step loop on one batch skips its input checks this way."""
        known = self.known_batch
        return known is not None and X is known[0] and Y is known[1] and \
            (X.shape, X.strides, X.dtype, Y.shape, Y.strides, Y.dtype) == known[2]

    def remember_batch(self, given, X, Y):
        """After ``batch_inputs`` checked ``given`` = (X, Y): remember them when both are used as
        they are (no conversion, no copy: anything converted is converted again at every call)."""
        if given[0] is X and given[1] is Y:
            self.known_batch = (X, Y, (X.shape, X.strides, X.dtype, Y.shape, Y.strides, Y.dtype))
        else:
            self.known_batch = None

    def own_or_copied(self, buffer, array):
        """``array`` itself when the step can use it as it is, else ``buffer`` holding a copy."""
        if self.backend.is_native(array) and array.dtype == self.dtype and array.flags.c_contiguous:
            return array
        self.backend.copyto(buffer, array)
        return buffer


def read_status(ws, check_finite) -> float:
    """The step's loss from its status (the one host synchronisation of a step); with
    ``check_finite``, NonFiniteLossError when the guarded update was refused."""
    return status_loss(ws.status.tolist(), check_finite)


def status_loss(status, check_finite) -> float:
    """``read_status`` of a status already read (a list)."""
    loss = status[STATUS.loss]
    if check_finite:
        # The guarded update was skipped (on the device, too) if any value is NaN/Inf.
        if not math.isfinite(loss):
            raise NonFiniteLossError(loss)
        if not math.isfinite(status[STATUS.grad_check]):
            raise NonFiniteLossError(loss, "gradients")
        if not math.isfinite(status[STATUS.update_check]):
            raise NonFiniteLossError(loss, "update")
    return loss
