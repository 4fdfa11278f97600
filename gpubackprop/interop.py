"""Arrays from other libraries (PyTorch, JAX, CuPy, ...) through DLPack, without copying.

Any object with ``__dlpack__`` is accepted wherever the API takes an array (``forward``,
``train_step``, ``loss_and_grads``, ``fit``, ``predict``): ``validation.as_batch``, the single
conversion point, calls :func:`as_native` first.

- A CPU tensor into the numpy backend becomes a NumPy view of the same memory
  (``numpy.from_dlpack``); a CUDA tensor into the cupy backend a CuPy view
  (``cupy.from_dlpack``, which also orders the producer's stream before CuPy's).
- A tensor on the other device raises ``TypeError`` saying how to move it; nothing is copied
  behind the user's back across the PCIe bus. (NumPy arrays stay accepted by the cupy backend,
  as before: that upload is the documented way in.)
- Zero-copy all the way into the step needs the tensor to have the network's dtype and to be
  C-contiguous: otherwise the view is still made without a copy, but the network then casts or
  packs it into its own buffer (e.g. a float64 tensor into a float32 network is copied, cast).
- Tensors that require grad (PyTorch) are read through ``.detach()``: the network only reads its
  inputs and never hands gradients back to the producer, so no autograd graph is affected and no
  memory is copied.

Nothing here imports PyTorch, JAX or CuPy.
"""
from __future__ import annotations

import numpy

# DLPack device types (dlpack.h, DLDeviceType)
_CPU, _CUDA, _CUDA_HOST, _ROCM, _CUDA_MANAGED = 1, 2, 3, 10, 13
_DEVICE_NAMES = {_CPU: "cpu", _CUDA: "cuda", _CUDA_HOST: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 9: "vpi", _ROCM: "rocm", 11: "rocm_host", 12: "ext_dev", _CUDA_MANAGED: "cuda_managed", 14: "oneapi"}


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


def _describe(kind: int, index: int) -> str:
    name = _DEVICE_NAMES.get(kind, f"DLPack device type {kind}")
    return name if kind == _CPU else f"{name}:{index}"


def _detached(array):
    if getattr(array, "requires_grad", False) and callable(getattr(array, "detach", None)):
        return array.detach()
    return array


def as_native(backend, array, name: str):
    """``array`` as an array of ``backend``'s own kind, sharing memory, when it is a DLPack
    object on the backend's device; unchanged when it is not a DLPack object (or is native).

    Raises TypeError for a DLPack object on another device, with how to move it.
    """
    if backend.is_native(array):
        return array
    device = dlpack_device(array)
    if device is None:
        return array
    kind, index = device
    kind_of = type(array).__module__.split(".")[0]
    where = _describe(kind, index)
    if backend.name == "numpy":
        if kind != _CPU:
            raise TypeError(
                f"{name} lives on {where} ({type(array).__name__} from {kind_of}) but this network runs "
                f"on the numpy backend (CPU); move it to the host first ({_host_hint(kind_of, name)}), "
                f"or build the network with backend='cupy' to train on the GPU"
            )
        return _from_dlpack(numpy.from_dlpack, array, name, where)
    if backend.name == "cupy":
        if kind != _CUDA:
            raise TypeError(
                f"{name} lives on {where} ({type(array).__name__} from {kind_of}) but this network runs "
                f"on the cupy backend (GPU); move it to the GPU first ({_device_hint(kind_of, name, 'cuda')}), "
                f"or pass a NumPy array, which the network uploads itself"
            )
        device_id = backend.xp.cuda.Device().id
        if index != device_id:
            raise TypeError(
                f"{name} lives on {where} but this network computes on cuda:{device_id}; move it there "
                f"first ({_device_hint(kind_of, name, f'cuda:{device_id}')})"
            )
        return _from_dlpack(backend.xp.from_dlpack, array, name, where)
    return array


def _from_dlpack(from_dlpack, array, name, where):
    try:
        return from_dlpack(_detached(array))
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} ({type(array).__name__} on {where}) could not be read through DLPack "
            f"({type(exc).__name__}: {exc}); pass a NumPy array instead"
        ) from exc


def _host_hint(kind_of: str, name: str) -> str:
    return {"torch": f"{name}.cpu()", "jax": f"jax.device_put({name}, jax.devices('cpu')[0])",
            "jaxlib": f"jax.device_put({name}, jax.devices('cpu')[0])", "cupy": f"{name}.get()"}.get(
        kind_of, f"copy {name} to the host with its library")


def _device_hint(kind_of: str, name: str, device: str) -> str:
    return {"torch": f"{name}.to('{device}')", "jax": f"jax.device_put({name}, jax.devices('gpu')[0])",
            "jaxlib": f"jax.device_put({name}, jax.devices('gpu')[0])"}.get(
        kind_of, f"copy {name} to {device} with its library")
