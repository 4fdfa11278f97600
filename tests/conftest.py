"""Shared fixtures: the backends usable here, and the skip rule of the ``gpu`` marker."""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends import probe_cupy


# One short reason per kind of skip, raised here (one place), so that `pytest -ra` folds every test of
# a kind into one line; the probe's full message (what is missing and how to fix it) is printed once,
# after the summary.
_NO_DEVICE = "no usable CUDA device"


def _no_device_reason(kind):
    problem = probe_cupy(short=True)
    return None if problem is None else f"{kind}: {_NO_DEVICE} (cupy: {problem}; full reason at the end)"


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own short summary
def pytest_terminal_summary(terminalreporter):
    yield
    if any(_NO_DEVICE in str(getattr(report, "longrepr", "")) for report in terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(f"{_NO_DEVICE}: {probe_cupy()}")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None:  # not item.keywords: that holds parameter ids too
        reason = _no_device_reason("gpu test")
    elif getattr(item, "callspec", None) is not None and item.callspec.params.get("backend") == "cupy":
        reason = _no_device_reason("cupy backend")
    else:
        return
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    """Each backend in turn; cupy is skipped (see pytest_runtest_setup) where no device is usable."""
    return gb.get_backend(request.param)


# The gpu test files' handles: the cupy module and the two backends whose results they compare.
@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


@pytest.fixture(scope="module")
def gpu():
    return gb.get_backend("cupy")


@pytest.fixture(scope="module")
def cpu():
    return gb.get_backend("numpy")


@pytest.fixture
def rng():
    return numpy.random.default_rng(12345)


# ---------------------------------------------------------------------- one body, two devices
class Device:
    """A CupyBackend and the array module of its device: the CUDA emulator (tests/cuda_emulator) on
    every machine with a C++ compiler, or a real CUDA device through CuPy."""

    def __init__(self, kind, backend, xp):
        self.kind, self.backend, self.xp = kind, backend, xp

    def __repr__(self):
        return f"Device({self.kind})"


_emulated = []


@pytest.fixture(scope="session", params=["emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Each device in turn: "emulated" always (skipped, with the reason, only where no C++ compiler
    exists), "cuda" (marked gpu) where CuPy has a device."""
    if request.param == "cuda":
        import cupy

        return Device("cuda", gb.get_backend("cupy"), cupy)
    from cuda_emulator import device as emulated_device, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(f"CUDA emulator unavailable: {reason}")
    if not _emulated:
        _emulated.append(Device("emulated", emulated_device.emulated_backend(), emulated_device.make_cupy()))
    return _emulated[0]


@pytest.fixture
def race_check(device):
    """On the emulator, every launch runs in the index, reversed and shuffled order of threads and must
    give the same bytes (a race between threads shows as a difference); a no-op on a real device."""
    if device.kind != "emulated":
        yield
        return
    from cuda_emulator import SETTINGS

    SETTINGS.race_check = True
    try:
        yield
    finally:
        SETTINGS.race_check = False
