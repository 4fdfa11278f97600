"""Test helpers for the step recorder (shared by tests/test_fit.py and tests/test_lr_on_device.py)."""


class CountingRecorder:
    """Runs each step eagerly, and keeps the keys a recording backend would record under (the
    arrays by identity, as the CUDA recorder keys them by address)."""

    records, error = True, None

    def __init__(self):
        self.keys = []

    def run(self, step, recordings, arrays, scalars):
        self.keys.append((*scalars, *(id(a) for a in arrays)))
        step()
