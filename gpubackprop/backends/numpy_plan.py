"""A step planned once per workspace: the NumPy backend's ``train_step`` and ``fit`` step as a list
of bound calls ``[(function, args)]`` on the workspace's buffers, replayed as ``f(*args)``.

At small sizes a step is nothing but Python calls (a 2-2-1 network at batch 1: ~110 per step, for
24 array operations); a plan makes every table lookup, cache lookup and view once, when it is
built, and the replay runs the same operations in the same order on the same buffers: the same
numbers, bit for bit, as the step made call by call (``Steps.step``). It is the NumPy
counterpart of a recorded CUDA graph:

- it binds the buffers of its workspace, the parameters' flat buffer and views, the optimizer
  and its state buffers: ``valid`` is False (the plan is rebuilt) when any of them was replaced
  (``set_params``, a new optimizer);
- it binds X and Y (the calls that read them are rebound when other arrays come; it holds the last
  batch's arrays, not copies, until the next step);
- it never binds the learning rate: each run reads it from ``Parameters.lrs`` (the device's
  copy), so a schedule runs on one plan.

The guard (``check_finite``) for plain SGD (no weight decay) proves instead of computing: with
‖g‖² (the gradients' finite check: finite exactly when every gradient is, barring an overflow of
the sum itself, checked exactly then) and ‖θ‖², every candidate θ − lr·g is finite when
‖θ‖ + lr·‖g‖ < max/2 (|θᵢ| ≤ ‖θ‖, |gᵢ| ≤ ‖g‖, also as computed: a rounded sum of non-negative
terms never falls below its largest term by more than a rounding, whatever the summation order;
the factor 2 covers the roundings of lr in the dtype, of lr·g and of θ − lr·g, each a relative
2⁻²⁴ at most); only when that bound fails does the exact check run (the rule's
candidates computed and reduced: ``optimizer_step(check=True)``). Two reads of the parameters
and gradients in place of the exact check's two passes writing a candidate array and its
reduction. Other rules keep their exact check.
"""
from __future__ import annotations

import math

import numpy

from ..layouts import STATUS
from .numpy_blocks import blocked

_X, _Y = object(), object()  # placeholders of the batch in a call's arguments, bound per run
_dot = getattr(numpy.dot, "__wrapped__", numpy.dot)
_isfinite = math.isfinite
_LOSS, _GRAD, _UPDATE = STATUS.loss, STATUS.grad_check, STATUS.update_check


class StepPlan:
    """One network's step on one workspace (``steps``: the network's ``model.step.Steps``)."""

    def __init__(self, ops, steps, ws, check_finite: bool):
        p = steps.params
        self.ops, self.ws, self.check_finite = ops, ws, check_finite
        self.flat, self.optimizer, self.state, self.step = p.flat, p.optimizer, p.optimizer_state, p.step
        dtype = p.flat.dtype
        self.calls = forward_backward(ops, steps, ws)
        # Where X and Y enter: their calls' arguments as lists, written in place by ``bind`` (no new
        # object per step: X and Y may be new views of the same arrays at every call).
        self.slots = []
        for i, (f, args) in enumerate(self.calls):
            for k, a in enumerate(args):
                if a is _X or a is _Y:
                    if not isinstance(args, list):
                        args = list(args)
                        self.calls[i] = (f, args)
                    self.slots.append((args, k, a is _X))
        self.calls = blocked(self.calls)  # long runs of elementwise calls in cache-sized blocks (numpy_blocks)
        self.X = self.Y = None
        grads, status = ws.grads, ws.status
        self.status = status
        rule = p.optimizer.rule
        settings = p.optimizer.settings
        self.plain_sgd = rule.name == "sgd" and not settings["weight_decay"]
        if self.plain_sgd:  # θ ← θ − lr·g, as optimizers.sgd.numpy_step: lr rounded to the dtype first
            self.lr = numpy.empty((), dtype)  # the dtype's lr (0-d: a ufunc's scalar fast path), from lrs[0]
            self.lr_in = self.lr.reshape(1)  # the same number, as the (1,) that lrs[0] is
            # lr·g written over g (read by nothing after the update): the same two roundings as
            # numpy_step's, without a third parameter-sized array in the cache. Not in blocks: the
            # parameters are written by ONE call, so a KeyboardInterrupt (train_step does not defer
            # it as fit does) never lands between two blocks of the θ write (it can still land
            # between that call and the step count's advance, as before).
            self.update = [(numpy.multiply, (grads, self.lr, grads)), (numpy.subtract, (p.flat, grads, p.flat)),
                           (numpy.add, (p.step, 1, p.step))]
        self.grad_norm2 = ws.grad_check  # ‖g‖²: the gradients' finite check, into the status
        self.param_norm2 = numpy.empty((), dtype)
        self.limit = float(numpy.finfo(dtype).max) / 2

    def valid(self, params) -> bool:
        """Still bound to ``params``' buffers and optimizer (else: build a new plan)."""
        return params.flat is self.flat and params.optimizer is self.optimizer and \
            params.optimizer_state is self.state and params.step is self.step

    def bind(self, X, Y):
        """The calls that read the batch, on (X, Y) (only when other arrays than the last come)."""
        if X is self.X and Y is self.Y:
            return
        for args, k, is_x in self.slots:
            args[k] = X if is_x else Y
        self.X, self.Y = X, Y

    def run(self, X, Y, lr, totals=None, rows=0):
        """Forward, loss, backward, the guard and the guarded update, on (X, Y) at the learning rate
        ``lr`` (a (1,) float64 view of ``Parameters.lrs``, read now); with ``totals`` (fit), the
        step's loss summed into them first (``accumulate_step``). Returns the status as a list
        (``layouts.STATUS``)."""
        self.bind(X, Y)
        for f, args in self.calls:
            f(*args)
        if not self.check_finite:
            self.apply(lr)
            return self.status.tolist()
        self.check(lr)
        if totals is not None:  # fit: after a bad step the totals refuse the rest (status changed)
            self.ops.accumulate_step(self.status, totals, rows)
        status = self.status.tolist()
        if _isfinite(status[_LOSS]) and _isfinite(status[_GRAD]) and _isfinite(status[_UPDATE]):
            self.apply(lr)
        return status

    def check(self, lr):
        """The gradients' and the update's finite checks, into the status (see the module's text)."""
        ws, ops = self.ws, self.ops
        grads, flat = ws.grads, self.flat
        if not self.plain_sgd:
            ops.finite_check(grads, out=ws.grad_check)
            self.exact_update_check(lr)
            return
        _dot(grads, grads, self.grad_norm2)
        g2 = float(self.grad_norm2)
        if not _isfinite(g2):  # a NaN/Inf gradient, or Σ g² overflowed: the exact check decides
            ops.finite_check(grads, out=ws.grad_check)
            if not _isfinite(float(ws.grad_check)):
                return  # refused: the update's check does not matter
        _dot(flat, flat, self.param_norm2)
        p2 = float(self.param_norm2)
        if math.sqrt(p2) + float(lr[0]) * math.sqrt(g2) < self.limit:  # (NaN, Inf: False)
            ws.update_check[()] = 0.0  # proved: every candidate is finite
        else:
            self.exact_update_check(lr)

    def exact_update_check(self, lr):
        ws = self.ws
        self.ops.optimizer_step(self.optimizer, self.flat, ws.grads, self.state, self.step, lr, ws.status,
                                check=True, scratch=ws.scratch)

    def apply(self, lr):
        """The update (the guard decided already)."""
        if self.plain_sgd:
            numpy.copyto(self.lr_in, lr, "same_kind")  # float64 -> the dtype, rounded as a Python float would be
            for f, args in self.update:
                f(*args)
            return
        ws = self.ws
        self.ops.optimizer_step(self.optimizer, self.flat, ws.grads, self.state, self.step, lr, ws.status,
                                check=False, guarded=False, scratch=ws.scratch)


def forward_backward(ops, steps, ws):
    """[(function, args)]: forward, loss and backward as ``Steps.forward``/``loss_async``/
    ``backward`` run them, with the placeholders _X and _Y for the batch."""
    p, calls, scratch = steps.params, [], ws.scratch
    inputs = _X
    for i, (W, bias_row, act) in enumerate(zip(p.weights, p.bias_rows, steps.activations)):
        a = ws.activations[i]
        calls.append((_dot, (inputs, W.T, a)))  # z = X Wᵀ
        calls += ops.forward_calls(a, bias_row, act, scratch)  # a = act(z + b)
        inputs = a
    yhat, grad = ws.activations[-1], ws.grad_outputs[-1]
    if steps.loss == "mse":
        calls += ops.mse_calls(yhat, _Y, grad, ws.loss)
    else:
        calls.append((ops.loss_grad, (steps.loss, yhat, _Y, grad, ws.loss, ws.correct, scratch)))
    for i in reversed(range(len(p.weights))):
        a, grad = ws.activations[i], ws.grad_outputs[i]
        inputs = ws.activations[i - 1] if i > 0 else _X
        calls += ops.backward_calls(grad, a, steps.activations[i], grad, scratch)  # δ = ∂L/∂a ⊙ act'(z)
        calls.append((_dot, (grad.T, inputs, ws.grad_weights[i])))  # ∂L/∂W = δᵀ X
        calls.append((_dot, (ops._ones_vector(grad.shape[0], grad.dtype), grad, ws.grad_biases[i])))  # ∂L/∂b = 1ᵀ δ
        if i > 0:
            calls.append((_dot, (grad, p.weights[i], ws.grad_outputs[i - 1])))  # ∂L/∂X = δ W
    return calls
