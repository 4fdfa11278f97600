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
