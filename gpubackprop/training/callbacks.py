"""Callbacks: what ``fit`` calls around its epochs, each concern in its own small class.

A callback's ``on_epoch(record, history)`` runs after each epoch (the record already in the
history) and may stop training by returning True; ``on_train_begin(net, metrics)`` runs before the
first epoch (``metrics``: the keys every record will hold), ``on_train_end(history, completed)``
after the last, also when training ends by an error or an interrupt (``completed`` False). Early
stopping runs first, so the best epoch is known before any other callback can end training. ``fit(on_epoch=f)`` wraps a plain function
``f(record)`` (it stops training by returning True); ``fit(callbacks=[...])`` takes Callback objects.
"""
from __future__ import annotations

import math

from .. import validation


class Callback:
    """The base: every hook does nothing."""

    def on_train_begin(self, net, metrics):
        pass

    def on_epoch(self, record, history) -> bool | None:
        return None

    def on_train_end(self, history, completed) -> str | None:
        """Returns None, or a line for the error that ended fit (``completed`` False)."""
        return None


class Function(Callback):
    """``fit(on_epoch=function)``: ``function(record)`` after each epoch; True stops training."""

    def __init__(self, function):
        if not callable(function):
            raise TypeError(f"on_epoch must be callable (it is called with each epoch's record), got {function!r}")
        self.function = function

    def on_epoch(self, record, history):
        return self.function(record) is True


class EarlyStopping(Callback):
    """Stops training once ``monitor`` (any metric of the history: "val_loss", "loss", "accuracy",
    ...) has not improved by more than ``min_delta`` for ``patience`` epochs in a row; "improved"
    means lower (``mode="min"``) or higher ("max"; "auto": "max" for accuracies, else "min"), as
    Keras's EarlyStopping. With ``restore_best`` the parameters of the best epoch are put back at
    the end (one device copy of the flat parameter buffer per improvement; the optimizer's state
    stays as the last step left it) however training ends, an error or an interrupt included
    (``history.restored_best`` then True). Sets the history's ``best_epoch`` and ``stopped_early``."""

    def __init__(self, monitor="val_loss", patience=1, min_delta=0.0, mode="auto", restore_best=True):
        self.monitor = monitor
        self.patience = validation.positive_int("patience", patience)
        self.min_delta = float(min_delta)
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if "accuracy" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.sign = 1.0 if mode == "min" else -1.0
        self.restore_best = restore_best

    def on_train_begin(self, net, metrics):
        if self.monitor not in metrics:
            if self.monitor.startswith("val_") and self.monitor[4:] in metrics:
                raise ValueError(f"early stopping watches {self.monitor!r}: pass validation_data=(X_val, Y_val)")
            raise ValueError(f"early stopping watches {self.monitor!r}, which the history will not hold; "
                             f"it holds {', '.join(sorted(metrics))}")
        self.net, self.best, self.waited, self.best_epoch = net, math.inf, 0, None
        params = net.steps.params
        self.saved = net.backend.empty(params.flat.shape, net.dtype) if self.restore_best else None

    def on_epoch(self, record, history):
        value = self.sign * record[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.waited, self.best_epoch = value, 0, record["epoch"]
            history.best_epoch = record["epoch"]
            if self.saved is not None:
                self.net.backend.device_copy(self.saved, self.net.steps.params.flat)
            return False
        self.waited += 1
        return self.waited >= self.patience

    def on_train_end(self, history, completed):
        net, saved, self.net, self.saved = self.net, self.saved, None, None
        if saved is None or self.best_epoch is None:
            return None
        if completed and self.best_epoch == history.records[-1]["epoch"]:
            return None  # the network holds the best epoch's parameters already
        try:  # after an error, too: the device that raised may fail again, the error matters more
            net.backend.device_copy(net.steps.params.flat, saved)  # every W and b is a view into it
            net.backend.synchronize()
        except Exception as exc:  # pragma: no cover - a failing device
            return (f"restore_best: the parameters of epoch {self.best_epoch} could not be put back "
                    f"({type(exc).__name__}: {exc}); the network holds those after the last complete step")
        history.restored_best = True
        return None
