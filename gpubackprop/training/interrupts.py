"""Ctrl-C during ``fit`` lands between two steps, never inside one."""
from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    """While entered in the main thread, SIGINT only sets ``requested``, and ``check()`` (called at
    step boundaries) raises the KeyboardInterrupt. A step writes the parameters and the optimizer's
    state in several operations; interrupted halfway, they would disagree. A second Ctrl-C
    interrupts at once, as usual (a way out of a step that never ends). In other threads, or under
    a SIGINT handler of the caller's own, nothing changes."""

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
