"""The CPU backend: NumPy, with the operations of ``Backend`` as written there."""
from __future__ import annotations

import numpy

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = numpy

    def device_name(self) -> str:
        return "CPU"

    def to_numpy(self, array):
        return numpy.array(array, copy=True)
