"""Choosing a backend: NumPy always, CuPy when it imports AND a CUDA device is usable."""
from __future__ import annotations

import os

from .base import ACTIVATIONS, Backend
from .numpy_backend import NumpyBackend

BACKEND_NAMES = ("auto", "numpy", "cupy")
ENV_VAR = "GPUBACKPROP_BACKEND"
_INSTALL_HINT = "pip install 'gpubackprop[cuda12]' (CUDA 12 driver) or 'gpubackprop[cuda13]' (CUDA 13 driver)"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why and how to fix it."""


_instances: dict = {}
_cupy_problem: list = []  # memo of _probe(): [(None, None)] when usable, [(short, full)] when not


def probe_cupy(short: bool = False) -> str | None:
    """None when CuPy imports and a CUDA device is usable; otherwise why not, and the fix
    (``short``: only the why, for one-line headers).

    "CuPy importable" and "a device usable" are told apart: CI has CuPy and no GPU.
    """
    if not _cupy_problem:
        _cupy_problem.append(_probe())
    return _cupy_problem[0][0 if short else 1]


def _probe():
    try:
        import cupy
    except Exception as exc:  # ImportError, but also broken installs raising anything else
        what = "CuPy not installed" if isinstance(exc, ImportError) else "CuPy not importable"
        return what, f"{what} ({type(exc).__name__}: {exc}); to fix: {_INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        try:
            driver = cupy.cuda.runtime.driverGetVersion()
            runtime = cupy.cuda.runtime.runtimeGetVersion()
        except Exception:
            driver = runtime = None
        if driver == 0:
            what = "no CUDA driver found"
        elif driver is not None and runtime is not None and driver < runtime:
            what = f"CUDA driver too old (it supports CUDA {driver}, CuPy needs {runtime})"
        else:
            what = "no usable CUDA device"
        return what, (
            f"CuPy {cupy.__version__} is installed but {what} ({type(exc).__name__}: {exc}); "
            f"to fix: run on a machine with an NVIDIA GPU and its driver, or install the CuPy "
            f"wheel that matches the driver: {_INSTALL_HINT}"
        )
    if count < 1:
        what = "no CUDA device"
        return what, f"CuPy {cupy.__version__} is installed but sees {what}; to fix: run on a machine with an NVIDIA GPU"
    return None, None


def available_backends() -> list[str]:
    """Names of the backends usable here, e.g. ["numpy"] or ["numpy", "cupy"]."""
    return ["numpy"] if probe_cupy() else ["numpy", "cupy"]


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``: "auto" | "numpy" | "cupy".

    None means the GPUBACKPROP_BACKEND environment variable, else "auto"; "auto" picks CuPy when
    it is usable and NumPy otherwise. Backends are created once and shared.
    """
    if isinstance(name, Backend):
        return name
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR) or "auto"
        source = f"environment variable {ENV_VAR}" if os.environ.get(ENV_VAR) else "default"
    if not isinstance(name, str) or name.strip().lower() not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r} (from the {source}); valid names: {', '.join(BACKEND_NAMES)}")
    name = name.strip().lower()
    if name == "auto":
        name = "numpy" if probe_cupy() else "cupy"
    if name == "cupy":
        problem = probe_cupy()
        if problem:
            raise BackendUnavailableError(f"the cupy backend is unavailable: {problem}")
    backend = _instances.get(name)
    if backend is None:
        if name == "cupy":
            from .cupy_backend import CupyBackend

            backend = CupyBackend()
        else:
            backend = NumpyBackend()
        _instances[name] = backend
    return backend


__all__ = [
    "ACTIVATIONS",
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailableError",
    "NumpyBackend",
    "available_backends",
    "get_backend",
    "probe_cupy",
]
