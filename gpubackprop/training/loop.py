"""``fit``: the epoch loop. Everything else is a part it calls: an epoch runner (``epochs``: local
or data-parallel), the learning rates (``epochs.LearningRates``), the validation pass
(``evaluation``), and callbacks (``callbacks``, ``progress``) for what happens between epochs.

The training loss reported for an epoch is the batch-size-weighted mean of the losses that
``train_step`` returned during the epoch (each one before its update): the mean per-sample loss
over the epoch while the parameters were moving, not a second pass at the epoch's end. The
validation loss is measured at the end of the epoch, at the epoch's final parameters. For a
classification loss the accuracy comes the same way, from the same passes. A step whose loss or
gradients are not finite is refused, and so is every later step of the epoch (on the device,
without a host read): ``NonFiniteLossError`` names the epoch and the batch, and the parameters are
those after the last good step. ``fit`` is called by ``MLP.fit``, under the network's lock and device.
"""
from __future__ import annotations

import math
import time

from .. import defaults, errors, validation
from ..errors import NonFiniteLossError, TrainingInterrupted
from . import callbacks as cb
from .epochs import DataParallelEpochs, LearningRates, LocalEpochs
from .evaluation import accuracy_units, loss_sums, predict_chunk, to_device
from .history import History
from .interrupts import DeferredInterrupt
from .progress import Progress, ProgressLine, progress_wanted


def fit(net, X, Y, *, epochs=defaults.EPOCHS, batch_size=defaults.BATCH_SIZE, lr=defaults.LR, shuffle=True,
        seed=None, progress=None, validation_data=None, on_epoch=None, patience=None, restore_best=True,
        clip_norm=None, callbacks=(), comm=None):
    """Train ``net`` with mini-batch steps of its optimizer; returns a :class:`History`.

    X: (samples, inputs), Y: (samples, outputs) or (samples,) when there is one output; NumPy,
    backend or any DLPack array. ``lr``: a number, or a schedule ``lr(step) -> float`` (``step``: the
    network's accepted optimizer steps before this one, 0 at its first; see
    ``gpubackprop.optimizers.schedules``). ``shuffle``: a new permutation per epoch, drawn from
    ``numpy.random.default_rng(seed)`` on the host (the same batches on every backend). ``progress``:
    a status line on stderr (None: only when stderr is a terminal and CI is unset).
    ``validation_data``: (X_val, Y_val), measured after each epoch. ``clip_norm``: gradient clipping
    by global norm (``torch.nn.utils.clip_grad_norm_``) before each update. ``on_epoch``: a function
    called with each epoch's record; ``callbacks``: ``training.Callback`` objects; either stops
    training by returning True. ``patience`` (with ``restore_best``): ``EarlyStopping("val_loss",
    patience)``, which needs ``validation_data``.

    Ctrl-C raises ``TrainingInterrupted`` (a KeyboardInterrupt) holding the history of the complete
    epochs; the parameters and the optimizer's state are those after the last complete step (in the
    main thread a Ctrl-C is held until the running step is done; a second one interrupts at once).
    ``comm`` (a ``gpubackprop.distributed.Communicator``): data-parallel training, every rank with its
    own shard and the same other arguments; every rank ends with the same network and history.
    """
    epochs = validation.positive_int("epochs", epochs)
    batch_size = validation.positive_int("batch_size", batch_size)
    clip = validation.check_clip_norm(clip_norm)
    lrs = LearningRates(lr, net)
    hooks = _callbacks(on_epoch, callbacks, patience, restore_best, validation_data)
    X, Y = to_device(net, X, Y)  # the one check of the data: gathered batches are not checked again
    # Validation data is held to the training data's rules, up front: a NaN/Inf would make every
    # val_loss NaN/Inf (and early stopping blind), so it is refused here, before any step.
    val = None if validation_data is None else to_device(net, *_pair(validation_data), what="validation_data ",
                                                          finite=True)
    n, units = X.shape[0], accuracy_units(net)
    plan = None if comm is None else comm.plan(net, n, batch_size=batch_size, epochs=epochs, lr=lrs.describe(),
                                               shuffle=shuffle, validation=val is not None, patience=patience,
                                               restore_best=restore_best, clip_norm=clip)
    rows = n if plan is None else plan.rows  # over every rank
    parallel = plan is not None and plan.sync is not None  # (one rank: the ordinary path)
    # (The data-parallel path reads every step back and stops with every rank: interrupts there are not deferred.)
    interrupt = DeferredInterrupt(enabled=not parallel)
    runner = DataParallelEpochs(net, X, Y, min(batch_size, n), lrs, clip, shuffle, seed, units, plan) if parallel \
        else LocalEpochs(net, X, Y, min(batch_size, n), lrs, clip, shuffle, seed, units, interrupt)
    first = net.epochs_trained + 1
    bar = ProgressLine(first + epochs - 1, n) if progress_wanted(progress) and (plan is None or plan.is_root) else None
    stoppers = [hook for hook in hooks if isinstance(hook, cb.EarlyStopping)]  # first: the best epoch is
    hooks = stoppers + ([Progress(bar)] if bar is not None else []) + [h for h in hooks if h not in stoppers]
    history, epoch = History(), first
    for hook in hooks:
        hook.on_train_begin(net, _metrics(units, val))
    try:
        with interrupt:
            for epoch in range(first, first + epochs):
                record = _epoch(net, runner, epoch, bar, val, plan, rows, units)
                history.records.append(record)
                net.epochs_trained = epoch
                stop = [hook.on_epoch(record, history) is True for hook in hooks]  # every hook sees every epoch
                interrupt.check()
                if any(stop):
                    history.stopped_early = epoch < first + epochs - 1
                    break
    except KeyboardInterrupt:
        # Raised at a step boundary (see DeferredInterrupt), or by a second Ctrl-C or the caller's
        # own code, where a step writes all the weights in one operation: applied whole or not at
        # all. Wait for queued work, so that the parameters read next are those of the last step.
        net.backend.synchronize()
        note = _end(hooks, history, completed=False)  # with restore_best: the best epoch's parameters back
        raise TrainingInterrupted(history, epoch, restored_epoch=history.best_epoch if history.restored_best else None,
                                  note=note) from None
    except BaseException as exc:
        _carry(exc, hooks, history)
        raise
    _end(hooks, history, completed=True)
    return history


def _carry(exc, hooks, history):
    """Whatever ends fit from inside the epoch loop (NonFiniteLossError, BatchTooLargeError, a
    DistributedError, an error of on_epoch, ...) carries the history of the complete epochs, and with
    restore_best the network goes back to the best epoch, as at a normal end."""
    note = _end(hooks, history, completed=False)
    exc.history = history
    if history.restored_best:
        errors.tell_restored(exc, history.best_epoch)
    elif note is not None:
        errors.add_note(exc, note)


def _end(hooks, history, completed):
    """Every hook's on_train_end (each one, whatever the others do); the first note any returns."""
    notes = [hook.on_train_end(history, completed) for hook in hooks]
    return next((note for note in notes if note is not None), None)


def _epoch(net, runner, epoch, bar, val, plan, rows, units) -> dict:
    """One epoch of training, then its validation: the epoch's record."""
    start_time = time.perf_counter()
    weighted, correct = runner.run(epoch, bar)
    seconds = time.perf_counter() - start_time
    val_total = val_correct = val_rows = 0
    if val is not None:
        val_total, val_correct = loss_sums(net, val[0], val[1], chunk=predict_chunk(net))
        val_rows = val[0].shape[0]
    if plan is not None:  # the slowest rank's time, the sums over the ranks; replicas checked
        seconds, val_total, val_correct, val_rows = plan.end_epoch(net, epoch, seconds, val_total, val_correct, val_rows)
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
    return record


def _metrics(units, val) -> set:
    """The keys every record of this fit holds."""
    names = {"epoch", "loss", "seconds", "samples_per_s"} | ({"accuracy"} if units is not None else set())
    return names | ({f"val_{name}" for name in names & {"loss", "accuracy"}} if val is not None else set())


def _pair(validation_data):
    try:
        X_val, Y_val = validation_data
    except (TypeError, ValueError):
        raise TypeError(f"validation_data must be an (X, Y) pair, got {type(validation_data).__name__}") from None
    return X_val, Y_val


def _callbacks(on_epoch, callbacks, patience, restore_best, validation_data) -> list:
    hooks = [] if on_epoch is None else [on_epoch if isinstance(on_epoch, cb.Callback) else cb.Function(on_epoch)]
    for hook in callbacks:
        if not isinstance(hook, cb.Callback):
            raise TypeError(f"callbacks must be gpubackprop.training.Callback objects, got {hook!r}")
        hooks.append(hook)
    if patience is not None:
        patience = validation.positive_int("patience", patience)
        if validation_data is None:
            raise ValueError("early stopping (patience) watches the validation loss: pass validation_data=(X_val, Y_val)")
        hooks.append(cb.EarlyStopping("val_loss", patience, restore_best=restore_best))
    return hooks
