"""The ``cp`` and ``gpu`` fixtures of the tests that run on both devices (one body, two devices): the
array module and the CupyBackend of conftest's ``device`` fixture (the CUDA emulator always, a CUDA
device where there is one). A test file takes them with ``from device_fixtures import cp, gpu``; they
shadow conftest's CUDA-only ``cp``/``gpu``, which the GPU-only files keep using."""
import pytest


@pytest.fixture
def cp(device):
    """The device's array module: CuPy, or the emulator's stand-in for it."""
    return device.xp


@pytest.fixture
def gpu(device):
    """The device's CupyBackend."""
    return device.backend
