"""The ``MLP`` front: what a user builds, trains, queries and saves.

A network owns everything mutable it computes with (parameters, per-batch-size workspaces with
their scratch space, recorded steps: its ``steps``), so separate networks never share state; one
network used from several threads serializes on its own lock, and runs with its backend's device
current. Checkpoints: ``save``/``load`` go through ``MLP.file_format``, which the package sets
(``gpubackprop.checkpoint``); the model does not know the file format.
"""
from __future__ import annotations

import threading

import numpy

from .. import activations, defaults, losses, optimizers, training, validation
from ..backends import get_backend
from .parameters import Parameters
from .step import Steps

_NO_TARGETS = object()  # forward's call of batch_inputs


class MLP:
    """A fully connected network ``layer_sizes[0] -> ... -> layer_sizes[-1]``.

    Hidden layers use ``hidden_activation``; the last one ``output_activation`` (the choices:
    ``gpubackprop.activations``). ``loss`` (the choices: ``gpubackprop.losses``): "mse" (the
    default), the mean squared error L = 1/(2B) Σ (ŷ − y)², which for one sample and one output is
    the lesson's L = ½(ŷ − y)²; "softmax_cross_entropy" (Y: class labels (B,) or probability rows)
    or "sigmoid_binary_cross_entropy" (Y: probabilities), both on logits: their output activation
    is the identity. ``optimizer``: "sgd" (the default: θ ← θ − lr·∂L/∂θ), "momentum", "adam" or
    "adamw", with ``momentum``, ``nesterov``, ``beta1``, ``beta2``, ``eps``, ``weight_decay`` as
    PyTorch defines them (None: the default; see ``gpubackprop.optimizers``), or an
    ``optimizers.Optimizer``; the learning rate is given per step (``train_step``, ``fit``).
    ``backend``: a name ("numpy", "cupy", "cupy:1", "auto"), a Backend, or None for the
    GPUBACKPROP_BACKEND variable / "auto". ``precision``: "fp32" (default) the GEMMs in the dtype's
    full precision; "tf32" (float32 only) the GEMMs on TF32 tensor cores (inputs rounded to a 10-bit
    mantissa, float32 accumulation); on a backend without them "tf32" computes in float32.
    """

    file_format = None  # set by gpubackprop/__init__: save(net, path), read(path)

    def __init__(self, layer_sizes, *, hidden_activation=defaults.ACTIVATION, output_activation=defaults.OUTPUT_ACTIVATION,
                 loss=defaults.LOSS, optimizer=defaults.OPTIMIZER, momentum=None, nesterov=None, beta1=None, beta2=None,
                 eps=None, weight_decay=None, dtype=defaults.DTYPE, precision=defaults.PRECISION, backend=None, seed=None):
        self.layer_sizes = validation.check_layer_sizes(layer_sizes)
        self.hidden_activation = validation.check_choice("hidden_activation", hidden_activation, activations.HIDDEN)
        self.output_activation = validation.check_choice("output_activation", output_activation, activations.OUTPUT)
        self.loss = validation.check_choice("loss", loss, losses.NAMES)
        self.loss_spec = validation.check_loss_fits(losses.TABLE[self.loss], self.output_activation, self.layer_sizes)
        optimizer = optimizers.configure(optimizer, momentum=momentum, nesterov=nesterov, beta1=beta1,
                                         beta2=beta2, eps=eps, weight_decay=weight_decay)
        self.dtype = validation.check_dtype(dtype)
        optimizer.check_dtype(self.dtype)
        self.precision = validation.check_precision(precision, self.dtype)
        self.backend = get_backend(backend)
        n_layers = len(self.layer_sizes) - 1
        self.activations = (self.hidden_activation,) * (n_layers - 1) + (self.output_activation,)
        self.epochs_trained = 0  # fit's epochs so far: a later fit's history numbers on from here
        self._lock = threading.RLock()
        with self.backend.activate():
            params = Parameters(self.backend, self.layer_sizes, self.dtype, optimizer)  # its state fresh
            self.steps = Steps(self.backend, self.layer_sizes, self.dtype, self.activations, self.loss, params,
                               tf32=self.precision == "tf32")
        self.set_params(self._initial_params(seed))

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
        """Replace every (W, b); W is (out, in) as in z = Wx + b, b is (out,). Copies; everything is
        checked before anything is changed."""
        with self._lock, self.backend.activate():
            self.steps.params.set(params)

    def get_params(self):
        """A list of (W, b) per layer, as NumPy copies."""
        with self._lock, self.backend.activate():
            return self.steps.params.get()

    @property
    def optimizer(self) -> optimizers.Optimizer:
        """The network's optimizer (``optimizers.Optimizer``: its name and settings).

        Assigning one (an ``Optimizer`` or a name such as "adam", checked as the constructor checks
        it, also against the network's dtype) replaces the optimizer and starts its state fresh
        (zero moments, step count 0, as ``reset_optimizer``), whatever state the old one had; on a
        bad value nothing changes. Recorded steps (CUDA graphs) of the old optimizer are dropped."""
        return self.steps.params.optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        with self._lock, self.backend.activate():
            optimizer = optimizers.configure(optimizer)
            optimizer.check_dtype(self.dtype)
            self.steps.set_optimizer(optimizer)

    def reset_optimizer(self):
        """Zero the optimizer's state (momentum's velocity; Adam's moments) and its step count."""
        with self._lock, self.backend.activate():
            self.steps.params.reset_optimizer()

    def get_optimizer_state(self):
        """The optimizer's state as NumPy copies: {"buffers": (k, parameters) array, one row per
        state buffer laid out like the flat parameters (W₁, b₁, W₂, ...): momentum's velocity, or
        Adam's m and v; "step": the count of accepted optimizer steps (what schedules count)}."""
        with self._lock, self.backend.activate():
            return self.steps.params.get_optimizer_state()

    def set_optimizer_state(self, state):
        """Replace the optimizer's state with ``state`` as ``get_optimizer_state`` returns it
        (copied). Checked before anything changes: a dict with "buffers" (k, parameters) and
        "step"; a state that no training can produce (another shape, a NaN/Inf value once in the
        network's dtype, a negative second moment for Adam, a negative step count) is a
        ``ValueError`` naming what is wrong (``TypeError`` for a non-dict)."""
        with self._lock, self.backend.activate():
            self.steps.params.set_optimizer_state(state)

    @property
    def weights(self):
        """The W of each layer, (out, in), as backend arrays: views into the network's parameter
        buffer (writable in place; replace them with ``set_params``)."""
        return self.steps.params.weights

    @property
    def biases(self):
        """The b of each layer, (out,), as backend arrays, like ``weights``."""
        return self.steps.params.biases

    @property
    def capture_error(self):
        """Why recording this network's step (a CUDA graph) failed, if it did; None otherwise."""
        return self.steps.recorder.error

    @property
    def recording(self):
        """How steps run, for reports: None on a backend that does not record them, else "used"
        (recorded once, replayed after) or ``"not used: <why>"``."""
        recorder = self.steps.recorder
        if not recorder.records:
            return None
        return "used" if recorder.error is None else f"not used: {recorder.error}"

    def save(self, path):
        """Write the network (sizes, activations, loss, dtype, every W and b, the optimizer's
        settings and state) to the .npz file ``path``, atomically. See ``gpubackprop.checkpoint``."""
        with self._lock:
            self.file_format.save(self, path)

    @classmethod
    def load(cls, path, backend=None):
        """The network saved at ``path``, bit for bit, on ``backend`` (None: the default one).
        Raises ``CheckpointError`` for anything but a valid checkpoint. See ``gpubackprop.checkpoint``."""
        content = cls.file_format.read(path)
        net = cls(content["layer_sizes"], hidden_activation=content["hidden_activation"],
                  output_activation=content["output_activation"], loss=content["loss"],
                  optimizer=content["optimizer"], dtype=content["dtype"], precision=content["precision"],
                  backend=backend, seed=0)
        net.set_params(content["params"])
        if content["optimizer_state"] is not None:
            net.set_optimizer_state(content["optimizer_state"])
        return net

    # ------------------------------------------------------------------ one batch
    def forward(self, X):
        """ŷ for a batch X of shape (batch, inputs): a new backend array (batch, outputs)."""
        with self._lock, self.backend.activate():
            X = self.batch_inputs(X)
            return self.steps.forward(X, self.steps.workspace(X.shape[0])).copy()

    def loss_and_grads(self, X, Y):
        """(loss, [(∂L/∂W, ∂L/∂b) per layer]) at the current parameters; nothing is updated."""
        with self._lock, self.backend.activate():
            X, Y = self.batch_inputs(X, Y)
            ws = self.steps.workspace(X.shape[0])
            loss = self.steps.loss_value(X, Y, ws)
            self.steps.backward(X, ws)
            to_numpy = self.backend.to_numpy
            return loss, [(to_numpy(gW), to_numpy(gb)) for gW, gb in zip(ws.grad_weights, ws.grad_biases)]

    def train_step(self, X, Y, lr, *, check_finite=True, clip_norm=None, comm=None):
        """One step of the network's optimizer (SGD by default) on the batch (X, Y) at learning
        rate ``lr``; returns the loss before the update.

        With ``check_finite`` (the default), a NaN/Inf in X, Y, the loss or any gradient, or an
        update that would make any parameter NaN/Inf (an overflow: lr too large), raises
        ``NonFiniteLossError`` before any parameter is touched: every weight and bias stays
        bit-identical, and so does the optimizer's state. The check costs one reduction over the
        gradients (not over X), one over the candidate parameters, and no extra host
        synchronisation: the loss and both checks come back in one transfer.
        ``check_finite=False`` skips it (and queues the update before reading the loss back): a
        bad batch then silently turns the parameters into NaN/Inf and the NaN loss is returned.

        ``clip_norm``: first scale the gradients so that their global norm is at most this
        (``torch.nn.utils.clip_grad_norm_``: g·min(1, clip_norm / (‖g‖ + 1e-6))), the norm computed
        in the pass that checks the gradients. ``comm`` (a ``gpubackprop.distributed.Communicator``):
        a data-parallel step, called by every rank with its own batch; it is the step on the
        concatenation of all ranks' batches, the same on every rank (the loss returned too), and
        refused on every rank when any rank's is bad.
        """
        lr = validation.check_lr(lr, self.dtype)
        clip_norm = validation.check_clip_norm(clip_norm)
        with self._lock, self.backend.activate(quiet=True):  # the checks report NaN/Inf, not NumPy
            sync = None if comm is None else comm.gradient_sync(self.backend)
            X, Y = self.batch_inputs(X, Y)
            self.steps.params.write_lr(lr)
            return self.steps.train(X, Y, self.steps.workspace(X.shape[0]), check_finite, sync, clip_norm)

    # ------------------------------------------------------------------ data sets
    def fit(self, X, Y, *, epochs=defaults.EPOCHS, batch_size=defaults.BATCH_SIZE, lr=defaults.LR, shuffle=True,
            seed=None, progress=None, validation_data=None, on_epoch=None, patience=None, restore_best=True,
            clip_norm=None, callbacks=(), comm=None):
        """Mini-batch training with the network's optimizer over ``epochs`` passes of (X, Y)
        (defaults: 1 epoch, batches of 32, lr 0.01); returns a ``training.History``. ``lr``: a
        number, or a schedule ``lr(step) -> float`` (``step``: the network's accepted optimizer
        steps before this one; see ``gpubackprop.optimizers.schedules``). ``clip_norm``: gradient
        clipping by global norm, as ``train_step``. ``on_epoch`` and ``callbacks``: called after each
        epoch; one returning True stops training (see ``gpubackprop.training.callbacks``).
        ``patience``: early stopping on the validation loss, restoring the best parameters
        (``restore_best``) however fit ends, an error included. Targets and validation data are
        checked up front (one pass). Every exception escaping fit after its first epoch started
        carries ``history``. ``comm``: data-parallel. See ``gpubackprop.training.fit``."""
        with self._lock, self.backend.activate(quiet=True):
            return training.fit(self, X, Y, epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=seed,
                                progress=progress, validation_data=validation_data, on_epoch=on_epoch,
                                patience=patience, restore_best=restore_best, clip_norm=clip_norm,
                                callbacks=callbacks, comm=comm)

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

    def to_onnx(self, path=None, *, probabilities=False, labels=None, opset=None):
        """The network as an ONNX model (one Gemm and one activation per layer; "probabilities"
        appended with ``probabilities``, "label" with ``labels``), written to ``path`` when given;
        returns the ``onnx.ModelProto``. Needs the onnx package. See ``gpubackprop.onnx.to_onnx``."""
        from .. import onnx as onnx_export
        return onnx_export.to_onnx(self, path, probabilities=probabilities, labels=labels, opset=opset)

    def evaluate(self, X, Y, batch_size=None) -> training.Evaluation:
        """The loss over all N rows of (X, Y) at the current parameters (for "mse"
        L = 1/(2N) Σ (ŷ − y)²), computed in chunks; nothing is updated. Returns an ``Evaluation``: a
        float (the loss) with ``.loss`` and ``.accuracy`` (classification losses; None for "mse")."""
        with self._lock, self.backend.activate():
            return training.evaluate(self, X, Y, batch_size=batch_size)

    def trace(self, X, Y):
        """Every intermediate quantity of one forward and backward pass, as NumPy arrays.

        Returns {"loss": float, "layers": [per layer: inputs, z, a, grad_a, act_grad, delta,
        grad_weight, grad_bias]}; nothing is updated. Made for teaching and for tests: it runs
        the same code as ``train_step`` and copies its buffers out as it goes.
        """
        with self._lock, self.backend.activate():
            X, Y = self.batch_inputs(X, Y)
            ws = self.steps.workspace(X.shape[0])
            layers = [dict() for _ in self.layer_sizes[1:]]
            loss = self.steps.loss_value(X, Y, ws, trace=layers)
            self.steps.backward(X, ws, trace=layers)
            return {"loss": loss, "layers": layers}

    # ------------------------------------------------------------------ inputs
    def batch_inputs(self, X, Y=_NO_TARGETS):
        """X (and Y) as C-contiguous backend arrays of our dtype, checked for shape. Arrays already
        in that form are used as they are; others are copied into the workspace's buffers, so a
        step allocates nothing once its batch size has been seen."""
        if Y is not _NO_TARGETS and self.steps.same_batch(X, Y):  # checked last time, used as they are
            return X, Y
        given = X, Y
        X = validation.as_batch(self.backend, X, "X", self.layer_sizes[0])
        ws = self.steps.workspace(X.shape[0])
        X = self.steps.own_or_copied(ws.inputs, X)
        if Y is _NO_TARGETS:  # not None: Y=None from a caller is a bad argument, reported as such
            return X
        Y = validation.as_targets(self.backend, Y, "Y", self.layer_sizes[-1], X.shape[0], self.loss_spec)
        Y = self.steps.own_or_copied(ws.targets, Y)
        self.steps.remember_batch(given, X, Y)
        return X, Y

    @property
    def precision_note(self) -> str:
        """The precision as computed here: "fp32", "tf32", or ``"tf32 (computed in float32: <why>)"``."""
        if self.precision == "tf32" and not self.backend.tf32:
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
