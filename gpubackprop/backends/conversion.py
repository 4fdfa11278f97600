"""Arrays from other libraries (PyTorch, JAX, CuPy, ...) through DLPack, without copying; the
shared part of every backend's ``as_array``.

- A CPU tensor into the numpy backend becomes a NumPy view of the same memory
  (``numpy.from_dlpack``); a CUDA tensor into a cupy backend on the same device a CuPy view
  (``cupy.from_dlpack``, which also orders the producer's stream before CuPy's).
- A tensor on another device raises ``TypeError`` saying how to move it; nothing is copied
  behind the user's back across the PCIe bus. (NumPy arrays stay accepted by the cupy backend:
  that upload is the documented way in.)
- Zero-copy all the way into the step needs the network's dtype and C order: otherwise the view
  is still made without a copy, and the network then casts or packs it into its own buffer.
- Tensors that require grad (PyTorch) are read through ``.detach()``: the network only reads its
  inputs, so no autograd graph is affected and no memory is copied.

Nothing here imports PyTorch, JAX or CuPy.
"""
from __future__ import annotations

import numpy

# DLPack device types (dlpack.h, DLDeviceType)
CPU, CUDA, CUDA_HOST, ROCM, CUDA_MANAGED = 1, 2, 3, 10, 13
_DEVICE_NAMES = {CPU: "cpu", CUDA: "cuda", CUDA_HOST: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 9: "vpi", ROCM: "rocm", 11: "rocm_host", 12: "ext_dev", CUDA_MANAGED: "cuda_managed", 14: "oneapi"}


def dlpack_device(array):
    """(device type, device id) of a DLPack object, as ints; None when it is not one."""
    if isinstance(array, numpy.ndarray) or not hasattr(array, "__dlpack__"):
        return None
    device = getattr(array, "__dlpack_device__", None)
    if device is None:
        return None
    try:
        kind, index = device()
        return int(kind), int(index)
    except Exception:  # a broken or unusual producer: let numpy.asarray have a go later
        return None


def describe_device(kind: int, index: int) -> str:
    name = _DEVICE_NAMES.get(kind, f"DLPack device type {kind}")
    return name if kind == CPU else f"{name}:{index}"


def library_of(array) -> str:
    return type(array).__module__.split(".")[0]


def from_dlpack(from_dlpack_fn, array, name, where):
    """A view of the DLPack object ``array`` through ``from_dlpack_fn`` (numpy's or cupy's)."""
    if getattr(array, "requires_grad", False) and callable(getattr(array, "detach", None)):
        array = array.detach()
    try:
        return from_dlpack_fn(array)
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} ({type(array).__name__} on {where}) could not be read through DLPack "
            f"({type(exc).__name__}: {exc}); pass a NumPy array instead"
        ) from exc


def host_hint(kind_of: str, name: str) -> str:
    return {"torch": f"{name}.cpu()", "jax": f"jax.device_put({name}, jax.devices('cpu')[0])",
            "jaxlib": f"jax.device_put({name}, jax.devices('cpu')[0])", "cupy": f"{name}.get()"}.get(
        kind_of, f"copy {name} to the host with its library")


def device_hint(kind_of: str, name: str, device: str) -> str:
    return {"torch": f"{name}.to('{device}')", "jax": f"jax.device_put({name}, jax.devices('gpu')[0])",
            "jaxlib": f"jax.device_put({name}, jax.devices('gpu')[0])",
            "cupy": f"cupy.asarray({name}) inside `with cupy.cuda.Device({device.partition(':')[2] or 0}):`"}.get(
        kind_of, f"copy {name} to {device} with its library")


def host_array(array, name: str):
    """``numpy.asarray(array)`` for what is not a DLPack object, with the argument named in any error."""
    try:
        return numpy.asarray(array)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged lists, objects refusing conversion
        kind = ValueError if isinstance(exc, ValueError) else TypeError
        raise kind(f"{name} must be a regular array of real numbers, got {type(array).__name__} that NumPy "
                   f"cannot convert ({type(exc).__name__}: {exc})") from None
