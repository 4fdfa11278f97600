"""Shared fixtures: the backends usable here, the skip rule of the ``gpu`` marker, and the one way
every test skips (``skip``, ``need``, ``missing`` and the ``requires`` marker)."""
import importlib

import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends import probe_cupy


# One short reason per kind of skip, raised here (one place), so that `pytest -ra` folds every test of
# a kind into one line; the probe's full message (what is missing and how to fix it) is printed once,
# after the summary.
_NO_DEVICE = "no usable CUDA device"


NOT_INSTALLED = "not installed"
DEVICE_USABLE = "a CUDA device is usable here (the test is of machines without one)"
# The distribution to install for an import name, where they differ (for the note after the summary).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "mpi4py": "mpi4py mpich"}


def skip(reason: str):
    """Skip this test (or, at import, its module) for ``reason``: one short reason per kind of skip.

    Every skip of the suite is raised on this one line, so that `pytest -ra` folds each kind into one
    summary line whatever file and test it comes from (pytest folds skips by where they were raised
    and why): "torch not installed" is one line, not one per test and file. Test files import it as
    ``from conftest import skip`` (tests/ is on sys.path)."""
    pytest.skip(reason, allow_module_level=True)


def missing(module: str, minversion: str | None = None):
    """The kind of skip when ``module`` cannot be imported ("torch not installed", "sklearn older than
    1.6"), else None. For ``pytest.mark.requires(missing("torch"))`` on tests and modules."""
    try:
        imported = importlib.import_module(module)
    except ImportError:
        return f"{module.split('.')[0]} {NOT_INSTALLED}"
    if minversion is not None:
        from packaging.version import Version

        if Version(getattr(imported, "__version__", "0")) < Version(minversion):
            return f"{module.split('.')[0]} older than {minversion}"
    return None


def need(module: str, minversion: str | None = None):
    """``module`` imported, or a ``skip`` with the kind's one reason (``missing``): the suite's
    pytest.importorskip, whose skips fold across files."""
    reason = missing(module, minversion)
    if reason is not None:
        skip(reason)
    return importlib.import_module(module)


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(reason): skip with this one short reason (a kind, e.g. "
                                       "conftest.missing('torch')) unless it is None")


def _no_device_reason(kind):
    problem = probe_cupy(short=True)
    return None if problem is None else f"{kind}: {_NO_DEVICE} (cupy: {problem}; full reason at the end)"


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own short summary
def pytest_terminal_summary(terminalreporter):
    yield
    reasons = [str(getattr(report, "longrepr", "")) for report in terminalreporter.stats.get("skipped", [])]
    if any(_NO_DEVICE in reason for reason in reasons):
        terminalreporter.write_line(f"{_NO_DEVICE}: {probe_cupy()}")
    absent = sorted({word for reason in reasons for word in reason.replace("'", " ").split()
                     if f"{word} {NOT_INSTALLED}" in reason})
    if absent:
        terminalreporter.write_line(f"{', '.join(absent)} {NOT_INSTALLED}: pip install -e '.[test]' in this checkout "
                                    "installs them (torch's CPU build: pip install torch --index-url "
                                    "https://download.pytorch.org/whl/cpu)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        if mark.args and mark.args[0] is not None:
            skip(mark.args[0])
    if item.get_closest_marker("gpu") is not None:  # not item.keywords: that holds parameter ids too
        reason = _no_device_reason("gpu test")
    elif getattr(item, "callspec", None) is not None and item.callspec.params.get("backend") == "cupy":
        reason = _no_device_reason("cupy backend")
    else:
        return
    if reason is not None:
        skip(reason)


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
