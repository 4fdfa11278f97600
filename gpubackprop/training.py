"""Training on a whole data set: ``fit`` (mini-batch SGD over epochs) and ``predict`` (chunked).

``fit`` checks the data once and moves it to the backend's device once. An epoch is a few
launches of recorded work (``MLP._fit_launch``: up to ``STEPS_PER_LAUNCH`` steps each, each step
gathering its batch at a cursor that lives on the device, then training on it and adding its loss
to a device accumulator) and ONE host read at its end: [Σ loss·rows, good steps, the first bad
step]. A recording backend (CUDA graphs) thus runs many steps per host round trip; on NumPy the
same code runs step by step, with the same arithmetic as ``train_step`` on the same batches. The
permutation is drawn on the host (the same batches on every backend for the same seed) and copied
to the device once per epoch. No array is allocated per batch and the data set is never copied per
epoch. The last, partial batch of an epoch is used, with its own (cached) workspace size. A step
whose loss or gradients are not finite is refused, and so is every later step of the epoch (on
the device, without a host read): ``NonFiniteLossError`` names the epoch and the batch, and the
parameters are those after the last good step. The progress line reads the accumulator at most
about ten times a second, between launches. These functions are called by the ``MLP`` methods of
the same names, under the network's lock and device.

The training loss reported for an epoch is the batch-size-weighted mean of the losses that
``train_step`` returned during the epoch (each one before its update): the mean per-sample loss
over the epoch while the parameters were moving, not a second pass at the epoch's end. The
validation loss is measured at the end of the epoch, at the epoch's final parameters. For a
classification loss the accuracy comes the same way, from the same passes: the loss kernel counts
the right predictions into the step's status, summed on the device with the loss (one more slot of
the epoch's accumulator, no extra read).
"""
from __future__ import annotations

import math
import numbers
import os
import signal
import sys
import threading
import time

import numpy

from . import errors, losses, validation
from .errors import NonFiniteLossError, TrainingInterrupted

# predict()'s default chunk: rows such that the widest activation buffer holds about this many
# elements (16 MiB in float32), so that huge X never needs a batch-sized workspace of its own.
_CHUNK_ELEMENTS = 1 << 22
# fit's steps per launch: recorded as one piece of work (one CUDA graph of this many steps) and
# launched without a host read between launches. Long enough that a launch's own cost vanishes
# beside its steps; short enough that the graph stays small (about 20 nodes a step) and the
# progress line can be redrawn between launches.
STEPS_PER_LAUNCH = 32


class History:
    """What ``fit`` measured, one record per epoch.

    Each record is a dict: ``epoch`` (1-based), ``loss`` (training loss: the batch-size-weighted
    mean of the epoch's step losses), ``val_loss`` (only with validation data), ``seconds`` (wall
    time of the epoch's training steps, validation excluded) and ``samples_per_s``; for
    classification losses also ``accuracy`` (the share of right predictions over the epoch's steps,
    each before its update) and ``val_accuracy`` (with validation data).
    ``history["loss"]`` gives one column as a list; ``len(history)`` the number of epochs.
    With early stopping (``fit(patience=...)``): ``best_epoch`` (lowest validation loss),
    ``stopped_early`` (True when the patience ran out before ``epochs``) and ``restored_best`` (True
    when ``restore_best`` put the best epoch's parameters back into the network: the training had
    gone past them, at its end or by an error); else None, False and False.
    """

    def __init__(self):
        self.records: list[dict] = []
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.restored_best = False

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, key):
        if isinstance(key, str):
            if self.records and key not in self.records[0]:
                raise KeyError(f"{key!r}; the history holds {', '.join(self.records[0])}")
            return [record[key] for record in self.records]
        return self.records[key]

    @property
    def loss(self) -> list[float]:
        return self["loss"]

    @property
    def val_loss(self) -> list[float]:
        return self._column("val_loss")

    @property
    def accuracy(self) -> list[float]:
        return self._column("accuracy")

    @property
    def val_accuracy(self) -> list[float]:
        return self._column("val_accuracy")

    def _column(self, key) -> list[float]:
        return self[key] if self.records and key in self.records[0] else []

    def __repr__(self):
        if not self.records:
            return "History(0 epochs)"
        last = self.records[-1]
        extra = "".join(f", {key}={last[key]:.4g}" for key in ("val_loss", "accuracy", "val_accuracy") if key in last)
        return f"History({len(self)} epoch{'' if len(self) == 1 else 's'}, loss={last['loss']:.4g}{extra}, samples_per_s={last['samples_per_s']:.4g})"


class Evaluation(float):
    """What ``MLP.evaluate`` returns: the loss, as a float (so existing code reads it as before),
    with ``.loss`` and ``.accuracy`` (None for a loss that is not a classification loss)."""

    def __new__(cls, loss: float, accuracy: float | None = None):
        self = super().__new__(cls, loss)
        self.accuracy = accuracy
        return self

    @property
    def loss(self) -> float:
        return float(self)

    def __repr__(self):
        accuracy = "" if self.accuracy is None else f", accuracy={self.accuracy!r}"
        return f"Evaluation(loss={float(self)!r}{accuracy})"


# ---------------------------------------------------------------------- progress
def progress_wanted(progress, stream=None) -> bool:
    """``progress`` None means: only when ``stream`` (stderr) is a terminal and not under CI."""
    if progress is not None:
        return bool(progress)
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return tty and not os.environ.get("CI")


class ProgressLine:
    """One self-overwriting status line on stderr: epoch, share of the epoch, loss, samples/s.

    Redrawn at most every ``interval`` seconds, and at the end of every epoch.
    """

    def __init__(self, epochs: int, samples: int, stream=None, interval: float = 0.1):
        self.epochs, self.samples = epochs, samples
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self._next_draw = 0.0
        self._width = 0

    def due(self) -> bool:
        """True when the next ``update`` would redraw (so that a caller reads its figures only then)."""
        return time.monotonic() >= self._next_draw

    def update(self, epoch: int, done: int, loss: float, rate: float, force: bool = False, val_loss=None,
               accuracy=None, val_accuracy=None):
        now = time.monotonic()
        if not force and now < self._next_draw:
            return
        self._next_draw = now + self.interval
        text = (f"epoch {epoch}/{self.epochs} {100 * done // self.samples:3d}%  "
                f"loss {loss:.4g}" + (f"  acc {accuracy:.2%}" if accuracy is not None else "")
                + (f"  val {val_loss:.4g}" if val_loss is not None else "")
                + (f"  val acc {val_accuracy:.2%}" if val_accuracy is not None else "")
                + f"  {rate:,.0f} samples/s")
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self):
        if self._width:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------- helpers
def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _to_device(net, X, Y, what="", finite=False):
    """(X, Y) checked and placed on the net's device in its dtype, C-contiguous; copied only when
    they are not already in that form. The targets' values are checked for the loss (one pass:
    ``validation.check_target_values``); with ``finite`` (validation data) X and Y are checked to
    hold no NaN/Inf first (one pass each)."""
    backend = net.backend
    X = validation.as_batch(backend, X, f"{what}X", net.layer_sizes[0])
    if finite:
        validation.check_finite(X, f"{what}X")
    Y = validation.as_targets(backend, Y, f"{what}Y", net.layer_sizes[-1], X.shape[0], net._loss_spec,
                              check_values=True, finite=finite)
    return backend.asarray(X, net.dtype), backend.asarray(Y, net.dtype)


def _accuracy_units(net) -> int | None:
    """Predictions counted per row (None: the loss reports no accuracy)."""
    spec = net._loss_spec
    return losses.correct_per_batch_unit(spec.name, net.layer_sizes[-1]) if spec.classification else None


def _mean_loss(net, X, Y, chunk: int) -> "Evaluation":
    """The mean loss over device arrays (X, Y) at the current parameters, in chunks (each chunk's
    loss is the mean over its rows, so it is weighted by them), with the accuracy for a
    classification loss."""
    n = X.shape[0]
    total, correct = _loss_sums(net, X, Y, chunk)
    units = _accuracy_units(net)
    return Evaluation(total / n, None if units is None else correct / (n * units))


def _loss_sums(net, X, Y, chunk: int):
    """(Σ loss·rows, Σ right predictions) over device arrays (X, Y) in chunks: ``_mean_loss`` before
    the division, which a data-parallel fit makes after summing over the ranks."""
    n = X.shape[0]
    total = correct = 0.0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ws = net._workspace(stop - start)
        xb, yb = net._own_or_copied(ws.inputs, X[start:stop]), net._own_or_copied(ws.targets, Y[start:stop])
        net._loss_async(xb, yb, ws)
        loss, _, _, hits = ws.status.tolist()  # one transfer: the loss and the right predictions
        total += loss * (stop - start)
        correct += hits
    return total, correct


# ---------------------------------------------------------------------- fit / predict
# fit's defaults, as the tools users know have them (Keras: one epoch, batches of 32, SGD lr 0.01).
DEFAULT_EPOCHS = 1
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 0.01


class _DeferredInterrupt:
    """Ctrl-C during ``fit`` lands between two steps, never inside one: while this is entered in the
    main thread, SIGINT only sets ``requested``, and ``check()`` (called at step boundaries) raises
    the KeyboardInterrupt. A step writes the parameters and the optimizer's state in several
    operations; interrupted halfway, they would disagree. A second Ctrl-C interrupts at once, as
    usual (a way out of a step that never ends). In other threads, or under a SIGINT handler of the
    caller's own, nothing changes."""

    def __init__(self, enabled=True):
        self.requested = False
        self._previous = None
        self._enabled = enabled

    def __enter__(self):
        if self._enabled and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def fit(net, X, Y, *, epochs=DEFAULT_EPOCHS, batch_size=DEFAULT_BATCH_SIZE, lr=DEFAULT_LR, shuffle=True, seed=None,
        progress=None, validation_data=None, on_epoch=None, patience=None, restore_best=True, comm=None):
    """Train ``net`` with mini-batch steps of its optimizer; returns a :class:`History`.

    X: (samples, inputs), Y: (samples, outputs) or (samples,) when there is one output; NumPy,
    backend or any DLPack array (see ``gpubackprop.backends.conversion``). ``shuffle``: a new permutation per
    epoch, drawn from ``numpy.random.default_rng(seed)`` on the host (the same batches on every
    backend for the same seed). ``progress``: a status line on stderr; None shows it only when
    stderr is a terminal (and the CI environment variable is unset). ``validation_data``: an
    (X_val, Y_val) pair whose loss is measured after each epoch, held to the training data's rules
    and checked up front: a NaN/Inf in it is a ValueError naming ``validation_data`` and the first
    bad value (index and value), before any step. ``on_epoch``: called with each epoch's record
    (the dict appended to the history) as soon as the epoch is done, e.g. to print it.

    Targets are checked by kind before anything changes (one pass over Y and over validation Y,
    see ``validation.check_target_values``): "sigmoid_binary_cross_entropy" takes targets in
    [0, 1]; "softmax_cross_entropy" integer labels (batch,) or probability rows (values in [0, 1],
    each row summing to 1); a ValueError names the first bad target. Int and bool targets are cast,
    for every loss. Class labels (batch,) for an "mse" network with several outputs, and string
    labels, are errors saying what fits.

    Defaults: ``epochs=1``, ``batch_size=32``, ``lr=0.01``. Ctrl-C (KeyboardInterrupt) raises
    ``TrainingInterrupted`` (a KeyboardInterrupt) holding the history of the complete epochs; the
    parameters and the optimizer's state are those after the last complete step (in the main thread
    a Ctrl-C is held until the running step is done; a second one interrupts at once), or with early
    stopping and ``restore_best`` the best epoch's parameters (below).

    Early stopping (off by default): with ``patience`` = k, training stops once the validation loss
    has not fallen below its lowest so far for k epochs in a row; with ``restore_best`` (the
    default) the parameters of the epoch with the lowest validation loss are put back (the
    optimizer's state stays as the last step left it). Needs ``validation_data``.

    Nothing measured or kept is lost however fit ends (the patience runs out, the epochs run out,
    an error, Ctrl-C): every exception that escapes fit after the first epoch started
    (``NonFiniteLossError``, ``TrainingInterrupted``, ``BatchTooLargeError``, an error of
    ``on_epoch`` or any other) carries ``exc.history``, the History of the complete epochs with
    ``best_epoch`` as far as known; with ``patience`` and ``restore_best`` the network holds the
    best epoch's parameters in every case, and ``history.restored_best`` is True when they were put
    back (the training had gone past them), as the error's message says. A validation loss that is
    not finite (the outputs overflow on the finite validation data) ends fit with
    ``NonFiniteLossError`` (``where`` "validation").

    ``comm`` (a ``gpubackprop.distributed.Communicator``): data-parallel training. Every rank calls
    fit with its own shard (X, Y and validation_data) and the same other arguments; each step is one
    step on the concatenation of the ranks' batches, and every rank ends with the same network and
    the same history, whose figures are global (losses and accuracies over all ranks' rows, samples/s
    of all ranks together). Each step's loss is read back (the ranks synchronise at every step's
    all-reduce anyway), so a bad step raises at once, on every rank. The progress line shows on rank
    0 only. See ``gpubackprop.distributed.Plan``.
    """
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    lr = validation.check_lr(lr, net.dtype)
    if patience is not None:
        patience = _positive_int("patience", patience)
        if validation_data is None:
            raise ValueError("early stopping (patience) watches the validation loss: pass validation_data=(X_val, Y_val)")
    backend = net.backend
    X, Y = _to_device(net, X, Y)  # the one check of the data: gathered batches are not checked again
    val = None
    if validation_data is not None:
        try:
            X_val, Y_val = validation_data
        except (TypeError, ValueError):
            raise TypeError(f"validation_data must be an (X, Y) pair, got {type(validation_data).__name__}") from None
        # Held to the training data's rules, up front: a NaN/Inf would make every val_loss NaN/Inf
        # (and early stopping blind), so it is refused here, before any step.
        val = _to_device(net, X_val, Y_val, what="validation_data ", finite=True)

    n = X.shape[0]
    plan = None if comm is None else comm.plan(net, n, batch_size=batch_size, epochs=epochs, lr=lr, shuffle=shuffle,
                                               validation=val is not None, patience=patience,
                                               restore_best=restore_best)
    rows = n if plan is None else plan.rows  # over every rank
    batch_size = min(batch_size, n)
    # Rows are gathered in this order (shuffled on the host each epoch when ``shuffle``, so every
    # backend sees the same batches, and copied to the device once per epoch) at a cursor that
    # lives on the device, straight into the workspace of each batch size.
    order = numpy.arange(n, dtype=numpy.int64)
    order_dev, cursor, totals = net._fit_buffers(n)  # kept by the network: a later fit replays the same graphs
    zero_cursor, zero_totals, host_totals = numpy.zeros(1, numpy.int64), numpy.zeros(totals.shape), numpy.zeros(totals.shape)
    backend.copyto(order_dev, order)
    rng = numpy.random.default_rng(seed)
    launches = _launches(net, n, batch_size)
    n_batches = sum(steps for _, steps, _ in launches)

    def read_totals(epoch):
        """The one host round trip: [Σ loss·rows, good steps, first bad step's loss and checks, right
        predictions]; returns (Σ loss·rows, right predictions)."""
        total, good, bad_loss, bad_check, bad_update, correct = backend.to_host(totals, host_totals).tolist()
        if not (math.isfinite(bad_loss) and math.isfinite(bad_check) and math.isfinite(bad_update)):
            where = "loss" if not math.isfinite(bad_loss) else "gradients" if not math.isfinite(bad_check) else "update"
            raise NonFiniteLossError(bad_loss, where, epoch=epoch, batch=int(good) + 1, batches=n_batches)
        return total, correct

    units = _accuracy_units(net)
    best_params = None
    if patience is not None and restore_best:  # one copy of the flat parameter buffer, made once
        best_params = backend.empty(net._flat_params.shape, net.dtype)
    best_loss, waited = math.inf, 0

    bar = ProgressLine(epochs, n) if progress_wanted(progress) and (plan is None or plan.is_root) else None
    history = History()
    epoch = 1
    # (The data-parallel path reads every step back and stops with every rank: interrupts there are not deferred.)
    interrupt = _DeferredInterrupt(enabled=plan is None or plan.sync is None)
    try:
        with interrupt:
            for epoch in range(1, epochs + 1):
                start_time = time.perf_counter()
                if shuffle:
                    rng.shuffle(order)
                    backend.copyto(order_dev, order)
                backend.copyto(cursor, zero_cursor)
                backend.copyto(totals, zero_totals)
                if plan is not None and plan.sync is not None:  # (one rank: the ordinary path)
                    weighted, correct = _data_parallel_epoch(net, X, Y, order_dev, lr, plan, batch_size, epoch, units)
                else:
                    for ws, steps, done in launches:
                        net._fit_launch(steps, X, Y, order_dev, cursor, ws, lr, totals, between_steps=interrupt.check)
                        interrupt.check()
                        if bar is not None and bar.due():  # a read (a wait) only when the line is redrawn
                            elapsed = time.perf_counter() - start_time
                            total, correct = read_totals(epoch)
                            bar.update(epoch, done, total / done, done / elapsed if elapsed > 0 else 0.0,
                                       accuracy=None if units is None else correct / (done * units))
                    weighted, correct = read_totals(epoch)  # waits for the epoch's work
                seconds = time.perf_counter() - start_time
                val_total = val_correct = val_rows = 0
                if val is not None:
                    val_total, val_correct = _loss_sums(net, val[0], val[1], chunk=_predict_chunk(net))
                    val_rows = val[0].shape[0]
                if plan is not None:  # the slowest rank's time, the sums over the ranks; replicas checked
                    seconds, val_total, val_correct, val_rows = plan.end_epoch(net, epoch, seconds, val_total, val_correct,
                                                                               val_rows)
                record = {"epoch": epoch, "loss": weighted / rows}
                if units is not None:
                    record["accuracy"] = correct / (rows * units)
                if val is not None:
                    record["val_loss"] = val_total / val_rows
                    if not math.isfinite(record["val_loss"]):  # finite data (checked): the outputs overflow
                        raise NonFiniteLossError(record["val_loss"], "validation", epoch=epoch)
                    if units is not None:
                        record["val_accuracy"] = val_correct / (val_rows * units)
                record["seconds"] = seconds
                record["samples_per_s"] = rows / seconds if seconds > 0 else math.inf
                history.records.append(record)
                if patience is not None:  # the best epoch is known before anything else can end fit
                    if record["val_loss"] < best_loss:
                        best_loss, waited, history.best_epoch = record["val_loss"], 0, epoch
                        if best_params is not None:
                            backend.device_copy(best_params, net._flat_params)
                    else:
                        waited += 1
                if bar is not None:
                    bar.update(epoch, n, record["loss"], record["samples_per_s"], force=True, val_loss=record.get("val_loss"),
                               accuracy=record.get("accuracy"), val_accuracy=record.get("val_accuracy"))
                if on_epoch is not None:
                    on_epoch(record)
                interrupt.check()
                if patience is not None and waited >= patience:
                    history.stopped_early = epoch < epochs
                    break
    except KeyboardInterrupt:
        # Raised at a step boundary (see _DeferredInterrupt), or by a second Ctrl-C or the caller's
        # own code, where a step writes all the weights in one operation (one ufunc call, one kernel
        # launch): applied whole or not at all. Wait for queued work, so that the parameters read
        # next are those of the last step.
        backend.synchronize()
        note = _restore_after_error(net, best_params, history)
        raise TrainingInterrupted(history, epoch, restored_epoch=history.best_epoch if history.restored_best else None,
                                  note=note) from None
    except BaseException as exc:
        # Whatever ends fit from inside the epoch loop (NonFiniteLossError, BatchTooLargeError, a
        # DistributedError, an error of on_epoch, ...) carries the history of the complete epochs, and
        # with restore_best the network goes back to the best epoch, as at a normal end.
        note = _restore_after_error(net, best_params, history)
        exc.history = history
        if history.restored_best:
            errors.tell_restored(exc, history.best_epoch)
        elif note is not None:
            errors.add_note(exc, note)
        raise
    finally:
        if bar is not None:
            bar.close()
    if best_params is not None and history.best_epoch is not None and history.best_epoch != len(history):
        backend.device_copy(net._flat_params, best_params)  # every W and b is a view into it
        history.restored_best = True
    return history


def _restore_after_error(net, best_params, history):
    """With restore_best and a best epoch: its parameters back into ``net`` (``history.restored_best``
    = True). Returns None, or a line saying why that failed (the device that raised may fail again):
    the error that ended fit matters more."""
    if best_params is None or history.best_epoch is None:
        return None
    try:
        net.backend.device_copy(net._flat_params, best_params)  # every W and b is a view into it
        net.backend.synchronize()
    except Exception as exc:  # pragma: no cover - a failing device
        return (f"restore_best: the parameters of epoch {history.best_epoch} could not be put back "
                f"({type(exc).__name__}: {exc}); the network holds those after the last complete step")
    history.restored_best = True
    return None


def _data_parallel_epoch(net, X, Y, order, lr, plan, batch_size, epoch, units):
    """One epoch of a data-parallel ``fit``, step by step: this rank's batches of the permutation
    ``order``, then, if its shard ran out before the others', steps with no rows (they take part in
    the all-reduce and the update). Returns (Σ loss·rows, Σ right predictions) over every rank."""
    n, backend = X.shape[0], net.backend
    weighted = correct = 0.0
    ws = None
    for step in range(plan.steps):
        start = step * batch_size
        batch = min(batch_size, n - start) if start < n else 0
        if batch:
            ws = net._workspace(batch)
            index = order[start:start + batch]
            backend.gather_rows(X, index, ws.inputs)
            backend.gather_rows(Y, index, ws.targets)
        try:
            loss = net._train_step(ws.inputs if batch else None, ws.targets if batch else None, ws, lr, True, plan.sync)
        except NonFiniteLossError as exc:  # on every rank: the all-reduced checks are the same everywhere
            raise NonFiniteLossError(exc.loss, exc.where, epoch=epoch, batch=step + 1, batches=plan.steps) from None
        weighted += loss * plan.step_rows[step]
        if units is not None:
            correct += float(ws.correct)  # the right predictions of every rank's batch, all-reduced
    return weighted, correct


def _launches(net, n, batch_size):
    """An epoch as launches of ``net._fit_launch``: [(workspace, steps, rows done after it)]:
    the full batches in runs of at most STEPS_PER_LAUNCH steps, then the partial last batch
    (its own workspace size). Each distinct (workspace, steps) is recorded once and replayed."""
    full, partial = divmod(n, batch_size)
    launches, done = [], 0
    ws = net._workspace(batch_size)
    for start in range(0, full, STEPS_PER_LAUNCH):
        steps = min(STEPS_PER_LAUNCH, full - start)
        done += steps * batch_size
        launches.append((ws, steps, done))
    if partial:
        launches.append((net._workspace(partial), 1, n))
    return launches


def _predict_chunk(net) -> int:
    return max(256, _CHUNK_ELEMENTS // max(net.layer_sizes[1:]))


def predict(net, X, batch_size=None):
    """ŷ for every row of X as a NumPy array (samples, outputs), computed ``batch_size`` rows at a
    time (default: chunks sized so the widest layer's buffer stays near 16 MiB); each chunk's ŷ is
    copied once, from the workspace straight into the result."""
    chunk = _predict_chunk(net) if batch_size is None else _positive_int("batch_size", batch_size)
    X = validation.as_batch(net.backend, X, "X", net.layer_sizes[0])
    n = X.shape[0]
    out = numpy.empty((n, net.layer_sizes[-1]), dtype=net.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ws = net._workspace(stop - start)
        yhat = net._forward(net._own_or_copied(ws.inputs, X[start:stop]), ws)
        net.backend.to_host(yhat, out[start:stop])
    return out


def evaluate(net, X, Y, batch_size=None) -> Evaluation:
    """The loss (and accuracy) over every row of (X, Y), in chunks as ``predict``: an ``Evaluation``."""
    chunk = _predict_chunk(net) if batch_size is None else _positive_int("batch_size", batch_size)
    X, Y = _to_device(net, X, Y)
    return _mean_loss(net, X, Y, chunk)
