"""Backends are devices: "numpy" is the CPU, "cupy:N" the N-th CUDA device ("cupy" is cupy:0).

Each backend class registers here under its name and says itself, through ``probe()``, why it
cannot run. ``get_backend`` gives one shared instance per device: a backend holds only values
that never change once made (compiled kernels, constants), so networks may share it.
"""
from __future__ import annotations

import os
import threading

from ..errors import BackendUnavailableError
from .base import Backend
from .cupy_backend import CupyBackend
from .numpy_backend import NumpyBackend

REGISTRY = {"numpy": NumpyBackend, "cupy": CupyBackend}  # the CPU fallback first
BACKEND_NAMES = ("auto", *REGISTRY)
ENV_VAR = "GPUBACKPROP_BACKEND"

_instances: dict = {}  # (name, device index) -> Backend
_instances_lock = threading.Lock()


def probe_cupy(short: bool = False) -> str | None:
    """None when CuPy imports and a CUDA device is usable; otherwise why not, and the fix
    (``short``: only the why, for one-line headers). "CuPy importable" and "a device usable" are
    told apart: CI has CuPy and no GPU."""
    return CupyBackend.probe(short)


def available_backends() -> list[str]:
    """Every usable device, e.g. ["numpy"] or ["numpy", "cupy:0", "cupy:1"]."""
    names = []
    for name, cls in REGISTRY.items():
        if cls is NumpyBackend:
            names.append(name)
        else:
            names.extend(f"{name}:{index}" for index in range(cls.device_count()))
    return names


def _parse(spec, source):
    """("cupy", 1) from "cupy:1"; index None when the spec names none; ValueError naming the valid forms."""
    valid = f"valid names: {', '.join(BACKEND_NAMES)}, or cupy:N for the N-th CUDA device"
    if not isinstance(spec, str):
        raise ValueError(f"unknown backend {spec!r} (from the {source}); {valid}")
    name, colon, index = spec.strip().lower().partition(":")
    if name not in BACKEND_NAMES or (colon and name == "auto"):
        raise ValueError(f"unknown backend {spec!r} (from the {source}); {valid}")
    if not colon:
        return name, None
    if not index.isdigit():
        raise ValueError(f"bad device index in backend {spec!r} (from the {source}): expected a "
                         f"non-negative integer as in '{name}:0'")
    return name, int(index)


def get_backend(spec=None) -> Backend:
    """The backend ``spec``: "auto" | "numpy" | "cupy" | "cupy:N", or a Backend (returned as it is).

    None means the GPUBACKPROP_BACKEND environment variable, else "auto"; "auto" picks the first
    CUDA device when CuPy can use one, and NumPy otherwise. One backend object per device, shared
    (it holds only what never changes: compiled kernels, constants).

    Raises:
        BackendUnavailableError: the backend cannot run here (CuPy not installed or broken, no CUDA
            driver, driver too old, no device, or no device N on this machine); the message says
            why, with the underlying error, and how to fix it.
        ValueError: an unknown name or a bad device index (``"cupy:x"``), from the argument or the
            environment variable; the message lists the valid forms.
    """
    if isinstance(spec, Backend):
        return spec
    source = "argument"
    if spec is None:
        spec = os.environ.get(ENV_VAR) or "auto"
        source = f"environment variable {ENV_VAR}" if os.environ.get(ENV_VAR) else "default"
    name, index = _parse(spec, source)
    if name == "auto":
        name = "numpy" if CupyBackend.probe() else "cupy"
    cls = REGISTRY[name]
    index = 0 if index is None else index
    problem = cls.probe()
    if problem:
        raise BackendUnavailableError(f"the {name} backend is unavailable: {problem}")
    if cls is not NumpyBackend:
        count = cls.device_count()
        if index >= count:
            exists = ", ".join(f"{name}:{i}" for i in range(count))
            raise BackendUnavailableError(
                f"there is no device {name}:{index}: this machine has {count} usable "
                f"{'device' if count == 1 else 'devices'} of that kind ({exists}); to fix: pick one of those")
    key = (name, index)
    with _instances_lock:
        backend = _instances.get(key)
        if backend is None:
            backend = _instances[key] = cls(index)
    return backend


def describe(backend: Backend) -> str:
    """``backend.describe()``, and on the CPU why no accelerator was chosen: "numpy (CPU; CuPy not
    installed)", "cupy:0 (NVIDIA H200)"."""
    text = backend.describe()
    if isinstance(backend, NumpyBackend):
        missing = [problem for cls in REGISTRY.values() if (problem := cls.probe(short=True))]
        if missing:
            text = f"{text[:-1]}; {'; '.join(missing)})"
    return text


__all__ = ["BACKEND_NAMES", "ENV_VAR", "REGISTRY", "Backend", "BackendUnavailableError", "CupyBackend", "NumpyBackend",
           "available_backends", "describe", "get_backend", "probe_cupy"]
