"""Shared fixtures: the backends usable here, and the skip rule of the ``gpu`` marker."""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends import probe_cupy


def pytest_collection_modifyitems(config, items):
    problem = probe_cupy()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"no usable CUDA device: {problem}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not item.keywords: that holds parameter ids too
            item.add_marker(skip)


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    """Each backend in turn; cupy is skipped (with the reason) where no device is usable."""
    if request.param == "cupy" and probe_cupy():
        pytest.skip(f"cupy backend unavailable: {probe_cupy(short=True)}")
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
