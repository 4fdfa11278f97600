"""Every exception gpubackprop raises on purpose, in one place (all exported as ``gb.<Name>``)."""
from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """The requested backend (device) cannot run here; the message says why and how to fix it."""


class NonFiniteLossError(FloatingPointError):
    """A training step met NaN or Inf (in the loss or in the gradients); no parameter was changed.

    ``loss`` holds the loss value of the step (itself finite when only the gradients were not:
    e.g. an Inf input behind a saturated sigmoid).
    """

    def __init__(self, loss: float, where: str = "loss"):
        if where == "loss":
            what = f"the loss is {loss!r}, not finite"
        else:
            what = f"the loss is {loss!r} but the {where} hold NaN/Inf values (or values so large their sum overflows)"
        super().__init__(
            f"{what}: the inputs or targets hold NaN/Inf values, or training diverged "
            f"(learning rate too high?); no parameter was changed"
        )
        self.loss = loss
        self.where = where


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
