"""Checks at the API boundary: each error names the argument, what was expected and what came.

Done once per call on shapes and dtypes only (no pass over the data), before anything changes.
"""
from __future__ import annotations

import math
import numbers

import numpy


class NonFiniteLossError(FloatingPointError):
    """The loss of a step was NaN or infinite; no parameter was changed."""

    def __init__(self, loss: float):
        super().__init__(
            f"the loss is {loss!r}, not finite: the inputs or targets hold NaN/Inf values, or "
            f"training diverged (learning rate too high?); no parameter was changed"
        )
        self.loss = loss


def check_layer_sizes(layer_sizes) -> list[int]:
    try:
        sizes = list(layer_sizes)
    except TypeError:
        raise TypeError(f"layer_sizes must be a sequence of positive ints such as [2, 2, 1], got {layer_sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least 2 entries (inputs and outputs), got {sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"layer_sizes must hold ints, got {size!r} ({type(size).__name__}) in {sizes!r}")
        if size < 1:
            raise ValueError(f"layer_sizes must be positive, got {size} in {sizes!r}")
    return [int(s) for s in sizes]


def check_choice(argument: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_dtype(dtype, choices) -> numpy.dtype:
    try:
        name = numpy.dtype(dtype).name
    except TypeError:
        name = None
    if name not in choices:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, choices))}, got {dtype!r}")
    return numpy.dtype(name)


def check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a positive finite number, got {lr!r} ({type(lr).__name__})")
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return lr


def as_batch(backend, array, name: str, features: int, batch: int | None = None):
    """``array`` as a 2-D (batch, features) array of the backend's kind; no copy of the data.

    A 1-D array is one feature per sample when features == 1.
    """
    if not backend.is_native(array):
        if hasattr(array, "__cuda_array_interface__") and backend.name == "numpy":
            raise TypeError(f"{name} is a GPU array but this network runs on the numpy backend; "
                            f"move it to the host first (e.g. {name}.get() for CuPy)")
        array = numpy.asarray(array)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 1 and features == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, {features}), got shape {tuple(array.shape)}")
    if array.shape[1] != features:
        raise ValueError(f"{name} must have {features} columns, got shape {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(array.shape)})")
    if batch is not None and array.shape[0] != batch:
        raise ValueError(f"{name} has {array.shape[0]} rows but X has {batch}: they must match")
    return array


def check_params(params, layer_sizes, backend):
    """The (W, b) pairs of ``params`` checked against ``layer_sizes``; raises before any change."""
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"params must be a list of (W, b) pairs, got {type(params).__name__}") from None
    n_layers = len(layer_sizes) - 1
    if len(params) != n_layers:
        raise ValueError(f"params must hold {n_layers} (W, b) pairs for layer_sizes {layer_sizes}, got {len(params)}")
    checked = []
    for i, pair in enumerate(params):
        try:
            W, b = pair
        except (TypeError, ValueError):
            raise TypeError(f"params[{i}] must be a (W, b) pair, got {type(pair).__name__}") from None
        n_in, n_out = layer_sizes[i], layer_sizes[i + 1]
        for what, value, shape in (("W", W, (n_out, n_in)), ("b", b, (n_out,))):
            arr = value if backend.is_native(value) else numpy.asarray(value)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"params[{i}] {what} must hold real numbers, got dtype {arr.dtype}")
            if tuple(arr.shape) != shape:
                raise ValueError(f"params[{i}] {what} must have shape {shape} (layer {n_in} -> {n_out}), got {tuple(arr.shape)}")
        checked.append((W, b))
    return checked
