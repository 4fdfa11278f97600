"""Timers of a device's work, for the benchmark: ``measure(fn, n)`` is the seconds ``n`` calls took."""
from __future__ import annotations

import time


class WallTimer:
    """Wall time of the calls with time.perf_counter (the CPU: its work is done when a call returns)."""

    def measure(self, fn, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - start


class EventTimer:
    """Device time of the calls between two events recorded on the current stream (CuPy's events
    for our work, PyTorch's for its own: each library's current stream)."""

    def __init__(self, start, stop, elapsed_ms):
        self.start, self.stop, self._elapsed_ms = start, stop, elapsed_ms

    def measure(self, fn, n: int) -> float:
        self.start.record()
        for _ in range(n):
            fn()
        self.stop.record()
        self.stop.synchronize()
        return self._elapsed_ms(self.start, self.stop) / 1e3
