"""Every exception gpubackprop raises on purpose, in one place (all exported as ``gb.<Name>``).

What ``fit`` keeps when it ends with an error: every exception that escapes ``fit`` after its first
epoch started (``NonFiniteLossError``, ``TrainingInterrupted``, ``BatchTooLargeError``, a
``DistributedError``, an error raised by ``on_epoch``, any other) carries ``history``: the
``training.History`` of the complete epochs, with ``best_epoch`` as far as it is known. With early
stopping (``patience``) and ``restore_best`` (the default), the network holds the best epoch's
parameters however ``fit`` ends, an error included: ``history.restored_best`` is True when they were
put back, and the message says so.
"""
from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """The requested backend (device) cannot run here; the message says why and how to fix it."""


class NonFiniteLossError(FloatingPointError):
    """A training step met NaN or Inf (in the loss, in the gradients, or in the parameters the
    update would give); the step changed no parameter.

    ``loss`` holds the loss value of the step (itself finite when only the gradients or the update
    were not: e.g. an Inf input behind a saturated sigmoid, or an lr so large that lr·∂L/∂W
    overflows). ``where`` is "loss", "gradients" or "update". From ``fit``, ``epoch`` and ``batch``
    (1-based) name the step, and the parameters are those after the last good step; else they are None.
    From ``fit`` also ``where`` = "validation": the validation loss measured at the end of epoch
    ``epoch`` (``batch`` None) is not finite, on validation data checked finite: the network's
    outputs overflow there; every step of that epoch was applied. From ``fit``, ``history`` holds
    the complete epochs (see the module's documentation: with ``restore_best``, the network holds
    the best epoch's parameters instead, and the message says so).
    """

    def __init__(self, loss: float, where: str = "loss", *, epoch: int | None = None, batch: int | None = None,
                 batches: int | None = None):
        if where == "validation":
            what = (f"the validation loss is {loss!r}, not finite, on finite validation data: the network's outputs "
                    f"overflow there (training diverged: learning rate too high?)")
        elif where == "loss":
            what = (f"the loss is {loss!r}, not finite: the inputs or targets hold NaN/Inf values, or "
                    f"training diverged (learning rate too high?)")
        elif where == "update":
            what = (f"the loss ({loss!r}) and the gradients are finite but the update overflowed: "
                    f"W - lr·∂L/∂W would hold NaN/Inf values (learning rate too high)")
        else:
            what = (f"the loss is {loss!r} but the {where} hold NaN/Inf values (or values so large their sum "
                    f"overflows): the inputs or targets hold NaN/Inf values, or training diverged "
                    f"(learning rate too high?)")
        if epoch is None:
            at, kept = "", "no parameter was changed"
        elif where == "validation":
            at, kept = f"epoch {epoch}: ", f"the parameters are those at the end of epoch {epoch}"
        else:  # from fit: the steps before this one were applied
            at = f"epoch {epoch}, batch {batch}" + (f" of {batches}" if batches else "") + ": "
            kept = ("this batch and the rest of the epoch were not applied: the parameters are "
                    + (f"those after the last good step (batch {batch - 1})" if batch and batch > 1
                       else "as at the start of this epoch"))
        super().__init__(f"{at}{what}; {kept}")
        self.loss = loss
        self.where = where
        self.epoch, self.batch = epoch, batch
        self.history = None  # from fit: the complete epochs (set by fit)


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` was interrupted (Ctrl-C: a KeyboardInterrupt) during epoch ``epoch``.

    A step writes all the weights and biases in one operation (one ufunc call, one kernel launch),
    applied whole or not at all, so they are those after the last complete step. (Momentum's and
    Adam's state is written by separate operations beside it: an interrupt between them leaves
    that state one step apart from the weights.) ``history`` holds the epochs completed before it
    (a ``training.History``). With early stopping and ``restore_best``, the parameters are the best
    epoch's instead (``restored_epoch``, also ``history.best_epoch`` with
    ``history.restored_best``); else ``restored_epoch`` is None. A KeyboardInterrupt: uncaught, it
    stops the program as Ctrl-C does.
    """

    def __init__(self, history, epoch: int, restored_epoch: int | None = None, note: str | None = None):
        kept = ("the parameters are those after the last complete step" if restored_epoch is None else
                f"restore_best: the parameters are those of epoch {restored_epoch} (the lowest validation loss)")
        super().__init__(f"training interrupted in epoch {epoch} after {len(history)} complete epoch(s); {kept}"
                         + (f"; {note}" if note else ""))
        self.history = history
        self.epoch = epoch
        self.restored_epoch = restored_epoch


class BatchTooLargeError(MemoryError):
    """The buffers for one batch do not fit in the backend's memory; nothing was changed.

    ``batch`` and ``nbytes`` (what the buffers of that batch size need) are attributes.
    """

    def __init__(self, message: str, batch: int, nbytes: int):
        super().__init__(message)
        self.batch = batch
        self.nbytes = nbytes


class CheckpointError(ValueError):
    """A file that is not a readable gpubackprop checkpoint; the message names the file and why."""


class DistributedError(RuntimeError):
    """The ranks of a data-parallel run disagree (different arguments, diverged replicas) or one failed."""


class DistributedTimeoutError(DistributedError):
    """A collective did not complete within the deadline: another rank died, hangs or stopped taking part."""


class DistributedUnavailableError(ImportError):
    """mpi4py (or an MPI library) is missing; the message says how to install it."""


def tell_restored(exc: BaseException, epoch: int) -> None:
    """Say in ``exc``'s message (one line) that ``fit`` then put back the parameters of ``epoch``:
    our own one-message errors get it appended, any other error a note (Python 3.11+)."""
    text = f"restore_best then set the parameters back to those of epoch {epoch} (the lowest validation loss)"
    if isinstance(exc, (NonFiniteLossError, BatchTooLargeError, DistributedError)) and len(exc.args) == 1 \
            and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}; {text}",)
    else:
        add_note(exc, text)


def add_note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)`` where Python has it (3.11+), else nothing."""
    adder = getattr(exc, "add_note", None)
    if adder is not None:
        adder(text)
