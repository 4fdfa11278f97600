"""The progress line: one self-overwriting status line on stderr, and the callback that draws it."""
from __future__ import annotations

import os
import sys
import time

from .callbacks import Callback


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



class Progress(Callback):
    """Draws the ProgressLine at the end of each epoch (the runner redraws it between launches)."""

    def __init__(self, line: ProgressLine):
        self.line = line

    def on_epoch(self, record, history):
        self.line.update(record["epoch"], self.line.samples, record["loss"], record["samples_per_s"], force=True,
                         val_loss=record.get("val_loss"), accuracy=record.get("accuracy"),
                         val_accuracy=record.get("val_accuracy"))

    def on_train_end(self, history, completed):
        self.line.close()
        return None
