"""The slot layouts that the host and the kernels share, each named once, here.

- ``STATUS``: a step's status, read back in one transfer: its loss, the finite check of every
  gradient (with gradient clipping: Σ g², finite exactly when every gradient is), the finite check
  of the update's candidate values, and the right predictions (classification losses). The first
  ``GUARD`` slots are the guard of the update: any NaN/Inf there and the update is skipped.
- ``TOTALS``: fit's per-epoch accumulator on the device (float64), see ``Backend.accumulate_step``.
- ``PAYLOAD``: what a data-parallel step all-reduces: the flat gradients, then the status, then
  the batch's rows. Every slot before ``correct`` is averaged (weighted by rows), ``correct`` summed.

The kernels get the same numbers as ``#define``s (``cuda_defines``), prepended to their source by
the CUDA backend (and by the compile test), so a slot moves in one place.
"""
from __future__ import annotations


class Layout:
    """Named slots of a small vector: ``layout.loss`` is the index of slot "loss"; ``len(layout)``."""

    def __init__(self, name: str, slots):
        self.name, self.slots = name, tuple(slots)
        for index, slot in enumerate(self.slots):
            setattr(self, slot, index)

    def __len__(self):
        return len(self.slots)

    def defines(self) -> str:
        prefix = f"GB_{self.name.upper()}"
        lines = [f"#define {prefix}_{slot.upper()} {index}" for index, slot in enumerate(self.slots)]
        return "\n".join(lines + [f"#define {prefix}_SIZE {len(self)}"])


STATUS = Layout("status", ("loss", "grad_check", "update_check", "correct"))
GUARD = STATUS.correct  # the update's guard: the status slots before "correct"
TOTALS = Layout("totals", ("loss_rows", "good_steps", "bad_loss", "bad_grad_check", "bad_update_check", "correct"))
# After the gradients: the status, then the rows of the batch.
PAYLOAD_TAIL = Layout("payload", STATUS.slots + ("rows",))


# fit's steps per launch: recorded as one piece of work (one CUDA graph of this many steps) and
# launched without a host read between launches; also the learning rates a network keeps on the
# device (one per step of a launch, written in one copy before it). Long enough that a launch's own
# cost vanishes beside its steps; short enough that the graph stays small and the progress line can
# be redrawn between launches.
STEPS_PER_LAUNCH = 32


def cuda_defines() -> str:
    """Every layout as C preprocessor definitions (GB_STATUS_LOSS 0, ..., GB_STATUS_GUARD 3)."""
    return "\n".join([STATUS.defines(), f"#define GB_STATUS_GUARD {GUARD}", TOTALS.defines(), ""])
