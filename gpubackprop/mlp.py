"""A multilayer perceptron trained with the matrix form of backpropagation.

Per layer, forward:   z = X Wᵀ + b,  a = act(z)                 (the lesson's z = Wx + b, batched)
Per layer, backward:  δ = ∂L/∂a ⊙ act'(z)
                      ∂L/∂W = δᵀ X,  ∂L/∂b = Σ_batch δ,  ∂L/∂X = δ W   (passed to the layer below)
The same five steps at every depth; every array operation goes through the backend.

A network owns everything mutable it computes with (parameters, per-batch-size workspaces with
their scratch space, recorded steps), so separate networks never share state; one network used
from several threads serializes on its own lock, and runs with its backend's device current.
"""
from __future__ import annotations

import math
import threading

import numpy

from . import activations, checkpoint, losses, optimizers, training, validation
from .backends import Backend, get_backend
from .errors import BatchTooLargeError, NonFiniteLossError

_NO_TARGETS = object()  # forward's call of _batch_inputs
_MAX_WORKSPACES = 8  # buffer sets kept per network, one per batch size


class _Workspace:
    """Every buffer one step needs at one batch size, allocated once and reused."""

    def __init__(self, backend: Backend, sizes, batch: int, dtype):
        empty = backend.empty
        self.inputs = empty((batch, sizes[0]), dtype)  # X converted to our dtype/device, or gathered by fit
        self.targets = empty((batch, sizes[-1]), dtype)
        self.activations = [empty((batch, n), dtype) for n in sizes[1:]]
        # ∂L/∂a of each layer; turned into δ in place by the activation backward.
        self.grad_outputs = [empty((batch, n), dtype) for n in sizes[1:]]
        # Every ∂L/∂W and ∂L/∂b is a view into one flat buffer, so that one reduction over it
        # tells whether all of them are finite (train_step's check before the update).
        n_grads = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        # [gradients..., status (below), batch rows]: what a data-parallel step all-reduces, at once
        # (gpubackprop.distributed); ``grads`` and ``status`` are views into it.
        self.payload = empty((n_grads + 5,), dtype)
        self.grads = self.payload[:n_grads]
        self.grad_weights, self.grad_biases, offset = [], [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.grad_weights.append(self.grads[offset:offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            self.grad_biases.append(self.grads[offset:offset + n_out])
            offset += n_out
        # [loss, finite check of all gradients, finite check of the update, right predictions
        # (classification losses)]: read back in ONE device-to-host transfer per step. The update's
        # guard is the first three.
        self.status = self.payload[n_grads:n_grads + 4]
        backend.copyto(self.status, numpy.zeros(4))  # the count stays 0 where no loss writes it (mse)
        self.loss = self.status[0:1].reshape(())  # 0-d views: the loss kernel writes status[0]
        self.grad_check = self.status[1:2].reshape(())
        self.update_check = self.status[2:3].reshape(())
        self.correct = self.status[3:4].reshape(())
        self.guard = self.status[0:3]
        self.scratch = {}  # temporaries the backend's operations ask for (see backends.base.scratch_buffer)
        self.recordings = {}  # recorded steps on these buffers (CUDA graphs), see the backend's recorder

    @staticmethod
    def nbytes(sizes, batch: int, dtype) -> int:
        """Bytes that the buffers of one batch size take (for the out-of-memory message)."""
        per_row = sizes[0] + sizes[-1] + 2 * sum(sizes[1:])
        grads = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        return (batch * per_row + grads + 5) * numpy.dtype(dtype).itemsize


class MLP:
    """A fully connected network ``layer_sizes[0] -> ... -> layer_sizes[-1]``.

    Hidden layers use ``hidden_activation``; the last one ``output_activation`` (the choices:
    ``gpubackprop.activations``). ``loss`` (the choices: ``gpubackprop.losses``): "mse" (the
    default), the mean squared error L = 1/(2B) Σ (ŷ − y)², which for one sample and one output is
    the lesson's L = ½(ŷ − y)²; "softmax_cross_entropy" (Y: class labels (B,) or probability rows)
    or "sigmoid_binary_cross_entropy" (Y: probabilities), both on logits: their output activation
    is the identity. ``optimizer``: "sgd" (the default: θ ← θ − lr·∂L/∂θ), "momentum" or "adam",
    with ``momentum``, ``nesterov``, ``beta1``, ``beta2``, ``eps``, ``weight_decay`` as PyTorch
    defines them (None: the default; see ``gpubackprop.optimizers``), or an ``optimizers.Optimizer``;
    the learning rate is given per step (``train_step``, ``fit``). ``backend``: a name ("numpy",
    "cupy", "cupy:1", "auto"), a Backend, or None for the GPUBACKPROP_BACKEND variable / "auto".
    ``precision``: "fp32" (default) the GEMMs in the dtype's full precision; "tf32" (float32 only)
    the GEMMs on TF32 tensor cores (inputs rounded to a 10-bit mantissa, float32 accumulation);
    on a backend without them (NumPy, GPUs before Ampere) "tf32" computes in float32.
    """

    def __init__(self, layer_sizes, *, hidden_activation="sigmoid", output_activation="identity",
                 loss="mse", optimizer="sgd", momentum=None, nesterov=None, beta1=None, beta2=None, eps=None,
                 weight_decay=None, dtype="float32", precision="fp32", backend=None, seed=None):
        self.layer_sizes = validation.check_layer_sizes(layer_sizes)
        self.hidden_activation = validation.check_choice("hidden_activation", hidden_activation, activations.HIDDEN)
        self.output_activation = validation.check_choice("output_activation", output_activation, activations.OUTPUT)
        self.loss = validation.check_choice("loss", loss, losses.NAMES)
        self._loss_spec = spec = losses.TABLE[self.loss]
        if spec.output_activation is not None and self.output_activation != spec.output_activation:
            raise ValueError(f"loss {self.loss!r} takes logits: its output_activation must be "
                             f"{spec.output_activation!r} (the {self.loss.split('_')[0]} lives in the loss), "
                             f"got {self.output_activation!r}")
        if self.layer_sizes[-1] < spec.min_outputs:
            raise ValueError(f"loss {self.loss!r} needs at least {spec.min_outputs} outputs (one per class), "
                             f"got layer_sizes {self.layer_sizes}")
        optimizer = optimizers.configure(optimizer, momentum=momentum, nesterov=nesterov, beta1=beta1,
                                         beta2=beta2, eps=eps, weight_decay=weight_decay)
        self.dtype = validation.check_dtype(dtype)
        optimizer.check_dtype(self.dtype)
        self.precision = validation.check_precision(precision, self.dtype)
        self._tf32 = self.precision == "tf32"  # every GEMM of the step asks the backend for TF32
        self.backend = get_backend(backend)
        # The backend's fused loss of a classification loss (None: mse_loss_grad).
        self._classification_loss_grad = getattr(self.backend, f"{self.loss}_loss_grad") if spec.classification else None
        n_layers = len(self.layer_sizes) - 1
        self.activations = (self.hidden_activation,) * (n_layers - 1) + (self.output_activation,)
        self._lock = threading.RLock()
        self._recorder = self.backend.recorder()
        self._weights, self._biases, self._bias_rows, self._flat_params = (), (), (), None
        self._workspaces = {}
        self._fit_state = None  # (samples, (permutation, cursor, totals)): fit's device buffers, see _fit_buffers
        self.set_params(self._initial_params(seed))
        self._optimizer = None
        self._optimizer_state = self._optimizer_step = None
        self.optimizer = optimizer  # its state, fresh

    # ------------------------------------------------------------------ parameters
    def _initial_params(self, seed):
        """Weights drawn uniformly as each activation's row of the table says (Glorot, He for
        relu), zero biases; drawn on the host so every backend starts from the same numbers."""
        rng = numpy.random.default_rng(seed)
        params = []
        for (n_in, n_out), act in zip(zip(self.layer_sizes[:-1], self.layer_sizes[1:]), self.activations):
            limit = activations.TABLE[act].init_limit(n_in, n_out)
            params.append((rng.uniform(-limit, limit, size=(n_out, n_in)), numpy.zeros(n_out)))
        return params

    def set_params(self, params):
        """Replace every (W, b); W is (out, in) as in z = Wx + b, b is (out,). Copies.

        Everything is checked before anything is changed.
        """
        with self._lock, self.backend.activate():
            checked = validation.check_params(params, self.layer_sizes, self.backend)
            backend = self.backend
            # Every W and b becomes a view into one flat buffer, laid out as the workspace's
            # ``grads`` (W₁, b₁, W₂, b₂, ...), so that train_step updates all of them in one
            # operation (one kernel launch).
            arrays = [array for pair in checked for array in pair]
            flat = backend.empty((sum(array.size for array in arrays),), self.dtype)
            views, offset = [], 0
            for array in arrays:
                view = flat[offset:offset + array.size].reshape(array.shape)
                backend.copyto(view, array)  # a copy, cast to our dtype: the caller's arrays stay theirs
                views.append(view)
                offset += array.size
            # Only once every copy has succeeded:
            self._weights, self._biases, self._flat_params = tuple(views[0::2]), tuple(views[1::2]), flat
            self._bias_rows = tuple(b.reshape(1, -1) for b in self._biases)  # broadcast over the batch rows

    @property
    def optimizer(self) -> optimizers.Optimizer:
        """The network's optimizer (``optimizers.Optimizer``: its name and settings).

        Assigning one (an ``Optimizer`` or a name such as "adam", checked as the constructor checks
        it, also against the network's dtype) replaces the optimizer and starts its state fresh
        (zero moments, step count 0, as ``reset_optimizer``), whatever state the old one had; on a
        bad value nothing changes. Recorded steps (CUDA graphs) of the old optimizer are dropped."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        with self._lock, self.backend.activate():
            optimizer = optimizers.configure(optimizer)
            optimizer.check_dtype(self.dtype)
            # The optimizer's state, laid out like the flat parameter buffer (one row per buffer:
            # momentum's velocity; Adam's m and v), starting at 0, and Adam's count of accepted steps.
            shape = (optimizer.state_buffers, self._flat_params.size)
            state = self.backend.empty(shape, self.dtype)
            step = self.backend.empty((1,), numpy.int64)
            self.backend.copyto(state, numpy.zeros(shape))
            self.backend.copyto(step, numpy.zeros(1, numpy.int64))
            if self._optimizer is not None:
                # A recorded step holds the old update's kernels, settings and state buffers.
                for ws in self._workspaces.values():
                    ws.recordings.clear()
            self._optimizer, self._optimizer_state, self._optimizer_step = optimizer, state, step

    def reset_optimizer(self):
        """Zero the optimizer's state (momentum's velocity; Adam's moments and step count)."""
        with self._lock, self.backend.activate():
            zeros = numpy.zeros(self._optimizer_state.shape)
            self.backend.copyto(self._optimizer_state, zeros)
            self.backend.copyto(self._optimizer_step, numpy.zeros(1, numpy.int64))

    def get_optimizer_state(self):
        """The optimizer's state as NumPy copies: {"buffers": (k, parameters) array, one row per
        state buffer laid out like the flat parameters (W₁, b₁, W₂, ...): momentum's velocity, or
        Adam's m and v; "step": Adam's count of accepted steps}."""
        with self._lock, self.backend.activate():
            return {"buffers": self.backend.to_numpy(self._optimizer_state),
                    "step": int(self.backend.to_numpy(self._optimizer_step)[0])}

    def set_optimizer_state(self, state):
        """Replace the optimizer's state with ``state`` as ``get_optimizer_state`` returns it
        (copied). Checked before anything changes: a dict with "buffers" (k, parameters) and
        "step"; a state that no training can produce (another shape, a NaN/Inf value once in the
        network's dtype, a negative second moment for Adam, a negative step count) is a
        ``ValueError`` naming what is wrong (``TypeError`` for a non-dict)."""
        with self._lock, self.backend.activate():
            try:
                buffers, step = state["buffers"], state["step"]
            except (TypeError, KeyError, IndexError):
                raise TypeError("state must be a dict with 'buffers' and 'step', as get_optimizer_state returns") from None
            buffers = self.backend.to_numpy(buffers) if self.backend.is_native(buffers) else numpy.asarray(buffers)
            if buffers.dtype.kind in "fiub" and buffers.dtype != self.dtype:
                with numpy.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
                    buffers = buffers.astype(self.dtype)
            problem = self.optimizer.check_state(buffers, step, self._flat_params.size)
            if problem is not None:
                raise ValueError(f"optimizer state: expected {problem}")
            self.backend.copyto(self._optimizer_state, buffers)
            self.backend.copyto(self._optimizer_step, numpy.array([step], numpy.int64))

    @property
    def weights(self):
        """The W of each layer, (out, in), as backend arrays: views into the network's parameter
        buffer (writable in place; replace them with ``set_params``)."""
        return self._weights

    @property
    def biases(self):
        """The b of each layer, (out,), as backend arrays, like ``weights``."""
        return self._biases

    @property
    def capture_error(self):
        """Why recording this network's step (a CUDA graph) failed, if it did; None otherwise."""
        return self._recorder.error

    @property
    def recording(self):
        """How steps run, for reports: None on a backend that does not record them, else "used"
        (recorded once, replayed after) or ``"not used: <why>"``."""
        if not self._recorder.records:
            return None
        return "used" if self._recorder.error is None else f"not used: {self._recorder.error}"

    def get_params(self):
        """A list of (W, b) per layer, as NumPy copies."""
        with self._lock, self.backend.activate():
            to_numpy = self.backend.to_numpy
            return [(to_numpy(W), to_numpy(b)) for W, b in zip(self._weights, self._biases)]

    def save(self, path):
        """Write the network (sizes, activations, loss, dtype, every W and b, the optimizer's settings
        and state) to the .npz file ``path``,
        atomically. See ``gpubackprop.checkpoint``."""
        with self._lock:
            checkpoint.save(self, path)

    @classmethod
    def load(cls, path, backend=None):
        """The network saved at ``path``, bit for bit, on ``backend`` (None: the default one).
        Raises ``CheckpointError`` for anything but a valid checkpoint. See ``gpubackprop.checkpoint``."""
        content = checkpoint.read(path)
        net = cls(content["layer_sizes"], hidden_activation=content["hidden_activation"],
                  output_activation=content["output_activation"], loss=content["loss"],
                  optimizer=content["optimizer"], dtype=content["dtype"], precision=content["precision"],
                  backend=backend, seed=0)
        net.set_params(content["params"])
        if content["optimizer_state"] is not None:
            net.set_optimizer_state(content["optimizer_state"])
        return net

    # ------------------------------------------------------------------ public API
    def forward(self, X):
        """ŷ for a batch X of shape (batch, inputs): a new backend array (batch, outputs)."""
        with self._lock, self.backend.activate():
            X = self._batch_inputs(X)
            return self._forward(X, self._workspace(X.shape[0])).copy()

    def loss_and_grads(self, X, Y):
        """(loss, [(∂L/∂W, ∂L/∂b) per layer]) at the current parameters; nothing is updated."""
        with self._lock, self.backend.activate():
            X, Y = self._batch_inputs(X, Y)
            ws = self._workspace(X.shape[0])
            loss = self._loss(X, Y, ws)
            self._backward(X, ws)
            to_numpy = self.backend.to_numpy
            return loss, [(to_numpy(gW), to_numpy(gb)) for gW, gb in zip(ws.grad_weights, ws.grad_biases)]

    def train_step(self, X, Y, lr, *, check_finite=True, comm=None):
        """One step of the network's optimizer (SGD by default) on the batch (X, Y); returns the
        loss before the update.

        With ``check_finite`` (the default), a NaN/Inf in X, Y, the loss or any gradient, or an
        update that would make any parameter NaN/Inf (an overflow: lr too large), raises
        ``NonFiniteLossError`` before any parameter is touched: every weight and bias stays
        bit-identical, and so does the optimizer's state. The check costs one reduction over the gradients (not over X), one over the
        candidate parameters, and no extra host synchronisation: the loss and both checks come
        back in one transfer.
        ``check_finite=False`` skips it (and queues the update before reading the loss back): a
        bad batch then silently turns the parameters into NaN/Inf and the NaN loss is returned.

        ``comm`` (a ``gpubackprop.distributed.Communicator``): a data-parallel step, called by every
        rank with its own batch; it is the step on the concatenation of all ranks' batches, the same
        on every rank (the loss returned too), and refused on every rank when any rank's is bad.
        """
        lr = validation.check_lr(lr, self.dtype)
        with self._lock, self.backend.activate(quiet=True):  # the checks report NaN/Inf, not NumPy
            sync = None if comm is None else comm.gradient_sync(self.backend)
            X, Y = self._batch_inputs(X, Y)
            return self._train_step(X, Y, self._workspace(X.shape[0]), lr, check_finite, sync)

    def _train_step(self, X, Y, ws, lr, check_finite=True, sync=None):
        """train_step on checked backend arrays of our dtype (X, Y may be ws.inputs/targets).
        ``sync``: the data-parallel all-reduce (``distributed.GradientSync``); X None then means
        that this rank has no rows at this step (its shard ran out before the others')."""
        if sync is None:
            self._recorder.run(lambda: self._step(X, Y, ws, lr, check_finite), ws.recordings,
                               arrays=(X, Y, self._flat_params), scalars=(lr, check_finite))
        else:
            step = lambda: self._step(X, Y, ws, lr, check_finite, sync=sync)  # noqa: E731
            if X is not None and sync.capturable:  # the all-reduce recorded inside the step's graph
                self._recorder.run(step, ws.recordings, arrays=(X, Y, self._flat_params),
                                   scalars=(lr, check_finite, sync))
            else:
                step()
            sync.wait()
        loss, grad_check, update_check, _ = ws.status.tolist()  # the one host synchronisation of a step
        if check_finite:
            # The guarded update was skipped (on the device, too) if any value is NaN/Inf.
            if not math.isfinite(loss):
                raise NonFiniteLossError(loss)
            if not math.isfinite(grad_check):
                raise NonFiniteLossError(loss, "gradients")
            if not math.isfinite(update_check):
                raise NonFiniteLossError(loss, "update")
        return loss

    def _step(self, X, Y, ws, lr, check_finite, totals=None, sync=None):
        """Forward, loss, backward, update: only queued work, no host synchronisation, so that a
        device backend can record it once and replay it (see the backend's recorder).
        ``totals``: fit's per-epoch device accumulator (see ``Backend.accumulate_step``). ``sync``:
        the data-parallel all-reduce of the gradients, loss and check, before the update's check."""
        ops = self.backend
        if X is not None:
            self._loss_async(X, Y, ws)
            self._backward(X, ws)
            if check_finite:
                # An Inf in X can leave the loss finite (a saturated sigmoid) yet make ∂L/∂W NaN/Inf,
                # so every gradient is checked too, in one pass over the flat gradient buffer.
                ops.finite_check(ws.grads, out=ws.grad_check)
        if sync is not None:  # every rank now holds the global batch's gradients, loss and checks
            sync.reduce_mean(ws.payload, 0 if X is None else X.shape[0])
        guard = None
        if check_finite:
            # The update is checked before it is applied: a candidate parameter (or optimizer
            # state) holding NaN/Inf (an overflow: lr too large) refuses the step, in a pass that
            # stores nothing.
            self._update(ws, lr, check=True)
            guard = ws.guard  # [loss, gradient check, update check]: no update if any is NaN/Inf
            if totals is not None:  # fit: the loss summed on the device; after a bad step, refuse the rest
                ops.accumulate_step(ws.status, totals, X.shape[0])
        self._update(ws, lr, guard=guard)

    def _update(self, ws, lr, guard=None, check=False):
        """The optimizer's update of every W and b at once, one operation over the flat buffers
        (see gpubackprop.optimizers), guarded by ``guard``; with ``check``, its first pass instead:
        ws.update_check = NaN when any candidate parameter or state value would not be finite."""
        ops, opt = self.backend, self._optimizer  # (the attribute: no property call per step)
        params, grads, state = self._flat_params, ws.grads, self._optimizer_state
        if opt.rule == "sgd":  # W ← W − lr ∂L/∂W, b ← b − lr ∂L/∂b
            if check:
                ops.sgd_check(params, grads, lr, ws.update_check, ws.scratch)
            else:
                ops.sgd_update(params, grads, lr, guard, ws.scratch)
        elif opt.rule == "momentum":
            # (sgd with weight decay runs this update with momentum 0: its momentum is None)
            args = (params, grads, state[0], lr, opt.momentum or 0.0, bool(opt.nesterov), opt.weight_decay)
            if check:
                ops.momentum_check(*args, ws.update_check, ws.scratch)
            else:
                ops.momentum_update(*args, guard, ws.scratch)
        else:
            args = (params, grads, state[0], state[1], self._optimizer_step, lr, opt.beta1, opt.beta2, opt.eps,
                    opt.weight_decay)
            if check:
                ops.adam_check(*args, ws.update_check, ws.scratch)
            else:
                ops.adam_update(*args, guard, ws.scratch)

    def _fit_buffers(self, samples: int):
        """fit's device buffers for a data set of ``samples`` rows: the epoch's permutation (int64),
        the gather cursor (int64, 1) and the epoch's totals (float64, 6; see Backend.accumulate_step).
        Kept for the last size seen, so that fit called again (e.g. one epoch at a time) reuses
        them, and with them the recorded launches, whose keys hold their addresses."""
        if self._fit_state is None or self._fit_state[0] != samples:
            empty = self.backend.empty
            self._fit_state = None  # the old buffers go before the new ones are made
            self._fit_state = (samples, (empty((samples,), numpy.int64), empty((1,), numpy.int64),
                                         empty((6,), numpy.float64)))
        return self._fit_state[1]

    def _fit_step(self, X, Y, order, cursor, ws, lr, totals):
        """One step of ``fit``, queued only: the next batch of the permutation ``order`` gathered
        at the device's ``cursor`` into the workspace, then ``_step`` summing into ``totals``."""
        ops = self.backend
        ops.gather_rows_at(X, order, cursor, ws.inputs)
        ops.gather_rows_at(Y, order, cursor, ws.targets)
        ops.advance_cursor(cursor, ws.inputs.shape[0])
        self._step(ws.inputs, ws.targets, ws, lr, True, totals)

    def _fit_launch(self, steps, X, Y, order, cursor, ws, lr, totals, between_steps=None):
        """``steps`` consecutive ``_fit_step`` s as one piece of recorded work: a recording backend
        records them once (one CUDA graph) and replays them at every launch, each replay gathering
        the batches after the last; nothing is read back. ``between_steps``: called after each step
        where steps run one by one (a backend that does not record; a recorded launch is one unit)."""
        between_steps = None if self._recorder.records else between_steps

        def launch():
            for _ in range(steps):
                self._fit_step(X, Y, order, cursor, ws, lr, totals)
                if between_steps is not None:
                    between_steps()

        self._recorder.run(launch, ws.recordings, arrays=(X, Y, order, cursor, totals, self._flat_params),
                           scalars=("fit", steps, lr, X.shape[0]))

    def fit(self, X, Y, *, epochs=training.DEFAULT_EPOCHS, batch_size=training.DEFAULT_BATCH_SIZE,
            lr=training.DEFAULT_LR, shuffle=True, seed=None, progress=None, validation_data=None, on_epoch=None,
            patience=None, restore_best=True, comm=None):
        """Mini-batch training with the network's optimizer over ``epochs`` passes of (X, Y)
        (defaults: 1 epoch, batches of 32, lr 0.01); returns a ``training.History`` (per epoch: loss,
        val_loss with validation_data, accuracy and val_accuracy for classification losses, seconds,
        samples_per_s). ``patience``: early stopping on the validation loss, restoring the best
        parameters (``restore_best``) however fit ends, an error included. Targets and validation
        data are checked up front (one pass). Every exception escaping fit after its first epoch
        started carries ``history``. ``comm``: data-parallel, each rank with its shard (see
        ``gpubackprop.distributed``). See ``gpubackprop.training.fit``."""
        with self._lock, self.backend.activate(quiet=True):
            return training.fit(self, X, Y, epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle,
                                seed=seed, progress=progress, validation_data=validation_data, on_epoch=on_epoch,
                                patience=patience, restore_best=restore_best, comm=comm)

    def predict(self, X, batch_size=None):
        """ŷ for every row of X as a NumPy array, computed in chunks. See ``gpubackprop.training.predict``."""
        with self._lock, self.backend.activate():
            return training.predict(self, X, batch_size=batch_size)

    def predict_proba(self, X, batch_size=None):
        """Class probabilities for every row of X (NumPy): the softmax of each row of logits
        (softmax_cross_entropy) or the sigmoid of each output (sigmoid_binary_cross_entropy)."""
        return losses.probabilities(self.loss, self.predict(X, batch_size=batch_size))

    def predict_classes(self, X, batch_size=None):
        """Predicted labels for every row of X (NumPy int64): argmax of each row, shape (N,)
        (softmax_cross_entropy), or [logit > 0] per output, shape (N, outputs) (sigmoid_binary_cross_entropy)."""
        return losses.classes(self.loss, self.predict(X, batch_size=batch_size))

    def evaluate(self, X, Y, batch_size=None) -> training.Evaluation:
        """The loss over all N rows of (X, Y) at the current parameters (for "mse"
        L = 1/(2N) Σ (ŷ − y)²), computed in chunks; nothing is updated.

        Returns an ``Evaluation``: a float (the loss, so ``evaluate`` reads as it always did) with
        ``.loss`` and ``.accuracy`` (the share of right predictions for a classification loss, None
        for "mse"), both from the same pass."""
        with self._lock, self.backend.activate():
            return training.evaluate(self, X, Y, batch_size=batch_size)

    def trace(self, X, Y):
        """Every intermediate quantity of one forward and backward pass, as NumPy arrays.

        Returns {"loss": float, "layers": [per layer: inputs, z, a, grad_a, act_grad, delta,
        grad_weight, grad_bias]}; nothing is updated. Made for teaching and for tests: it runs
        the same code as ``train_step`` and copies its buffers out as it goes.
        """
        with self._lock, self.backend.activate():
            X, Y = self._batch_inputs(X, Y)
            ws = self._workspace(X.shape[0])
            layers = [dict() for _ in self._weights]
            loss = self._loss(X, Y, ws, trace=layers)
            self._backward(X, ws, trace=layers)
            return {"loss": loss, "layers": layers}

    # ------------------------------------------------------------------ the math
    def _forward(self, X, ws, trace=None):
        ops = self.backend
        inputs = X
        for i, (W, bias_row, act) in enumerate(zip(self._weights, self._bias_rows, self.activations)):
            a = ws.activations[i]
            ops.matmul(inputs, W, out=a, trans_b=True, tf32=self._tf32)  # z = X Wᵀ (+ b below)
            if trace is not None:
                trace[i]["inputs"] = ops.to_numpy(inputs)
                trace[i]["z"] = ops.to_numpy(a) + ops.to_numpy(bias_row)
            ops.bias_activation(a, bias_row, act)  # a = act(z + b), fused, in place
            if trace is not None:
                trace[i]["a"] = ops.to_numpy(a)
            inputs = a
        return inputs

    def _loss_async(self, X, Y, ws, trace=None):
        """Forward pass, then L into ws.loss and ∂L/∂ŷ into the last layer's grad_outputs;
        returns ws.loss (on the device: nothing waits)."""
        yhat = self._forward(X, ws, trace)
        if self._classification_loss_grad is not None:  # also counts the right predictions into ws.correct
            return self._classification_loss_grad(yhat, Y, ws.grad_outputs[-1], ws.loss, ws.correct, ws.scratch)
        return self.backend.mse_loss_grad(yhat, Y, ws.grad_outputs[-1], ws.loss)

    def _loss(self, X, Y, ws, trace=None) -> float:
        """``_loss_async``, read back as a float; a NaN/Inf loss raises NonFiniteLossError."""
        value = float(self._loss_async(X, Y, ws, trace))  # a host synchronisation
        if not math.isfinite(value):
            raise NonFiniteLossError(value)
        return value

    def _backward(self, X, ws, trace=None):
        ops = self.backend
        for i in reversed(range(len(self._weights))):
            a, grad = ws.activations[i], ws.grad_outputs[i]
            inputs = ws.activations[i - 1] if i > 0 else X
            if trace is not None:
                trace[i]["grad_a"] = ops.to_numpy(grad)
                ones = ops.asarray(numpy.ones(a.shape), a.dtype)
                trace[i]["act_grad"] = ops.to_numpy(
                    ops.activation_backward(ones, a, self.activations[i], out=ones, scratch=ws.scratch))
            delta = ops.activation_backward(grad, a, self.activations[i], out=grad, scratch=ws.scratch)  # δ = ∂L/∂a ⊙ act'(z)
            ops.matmul(delta, inputs, out=ws.grad_weights[i], trans_a=True, tf32=self._tf32)  # ∂L/∂W = δᵀ X
            ops.sum_rows(delta, out=ws.grad_biases[i])  # ∂L/∂b = Σ_batch δ
            if i > 0:
                ops.matmul(delta, self._weights[i], out=ws.grad_outputs[i - 1], tf32=self._tf32)  # ∂L/∂X = δ W
            if trace is not None:
                trace[i]["delta"] = ops.to_numpy(delta)
                trace[i]["grad_weight"] = ops.to_numpy(ws.grad_weights[i])
                trace[i]["grad_bias"] = ops.to_numpy(ws.grad_biases[i])

    # ------------------------------------------------------------------ buffers and inputs
    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            try:
                ws = _Workspace(self.backend, self.layer_sizes, batch, self.dtype)
            except MemoryError as exc:  # numpy's _ArrayMemoryError, cupy's OutOfMemoryError
                raise self._batch_too_large(batch, exc) from None  # from None: frees the partial buffers
            if len(self._workspaces) >= _MAX_WORKSPACES:  # many batch sizes seen (forward, predict
                del self._workspaces[next(iter(self._workspaces))]  # remainders): drop the oldest
            self._workspaces[batch] = ws
        return ws

    def _batch_too_large(self, batch, exc):
        nbytes = _Workspace.nbytes(self.layer_sizes, batch, self.dtype)
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

    def _batch_inputs(self, X, Y=_NO_TARGETS):
        """X (and Y) as C-contiguous backend arrays of our dtype, checked for shape.

        Arrays already in that form are used as they are; others are copied into the
        workspace's buffers, so a step allocates nothing once its batch size has been seen.
        """
        X = validation.as_batch(self.backend, X, "X", self.layer_sizes[0])
        ws = self._workspace(X.shape[0])
        X = self._own_or_copied(ws.inputs, X)
        if Y is _NO_TARGETS:  # not None: Y=None from a caller is a bad argument, reported as such
            return X
        Y = validation.as_targets(self.backend, Y, "Y", self.layer_sizes[-1], X.shape[0], self._loss_spec)
        return X, self._own_or_copied(ws.targets, Y)

    def _own_or_copied(self, buffer, array):
        """``array`` itself when the step can use it as it is, else ``buffer`` holding a copy."""
        if self.backend.is_native(array) and array.dtype == self.dtype and array.flags.c_contiguous:
            return array
        self.backend.copyto(buffer, array)
        return buffer

    @property
    def precision_note(self) -> str:
        """The precision as computed here: "fp32", "tf32", or ``"tf32 (computed in float32: <why>)"``."""
        if self._tf32 and not self.backend.tf32:
            return f"tf32 (computed in float32: no TF32 tensor cores on {self.backend.describe()})"
        return self.precision

    def __repr__(self):
        loss = "" if self.loss == "mse" else f"loss={self.loss!r}, "
        if self.optimizer.name != "sgd":
            loss += f"optimizer={self.optimizer.name!r}, "
        precision = "" if self.precision == "fp32" else f"precision={self.precision_note!r}, "
        return (f"MLP({self.layer_sizes}, hidden_activation={self.hidden_activation!r}, "
                f"output_activation={self.output_activation!r}, {loss}dtype={self.dtype.name!r}, {precision}"
                f"backend={self.backend.spec!r})")
