"""Checks at the API boundary: each error names the argument, what was expected and what came.

Done once per call on shapes and dtypes only (no pass over the data), before anything changes;
``fit`` and ``evaluate`` add one pass over the targets' values (``check_target_values``) and, for
validation data, over its values (``check_finite``): once per call, never per step.
``as_batch`` is the single place where user arrays become backend arrays (through the backend's
``as_array``, which knows its device).

What each kind of bad input gets:

- a non-array that NumPy cannot read as a regular numeric array (None, a string, a dict, ragged
  lists), object/str/bytes/complex/datetime dtypes: ``TypeError`` (ragged lists: ``ValueError``);
- wrong number of dimensions, features or outputs, mismatched or empty batches: ``ValueError``;
- int and bool arrays: accepted, cast to the network's dtype (as are other float widths), for
  every loss (bool class labels are the classes 0 and 1);
- targets of the wrong kind for the loss (``as_targets``): class labels (batch,) for a network
  with several outputs and a loss that does not take labels, or strings: an error saying what fits
  (``loss="softmax_cross_entropy"``, one-hot rows, how to encode strings); with ``check_values``
  (``fit``, ``evaluate``, validation data: one pass, never in ``train_step``) values the loss does
  not take (``check_target_values``): ``ValueError`` naming the first bad target;
- a GPU array (``__cuda_array_interface__``, e.g. CuPy) given to a numpy-backend network:
  ``TypeError`` saying how to move it to the host; it is never copied silently. A NumPy array
  given to a cupy-backend network is uploaded to the device (one host-to-device copy);
- ``lr`` not a real number: ``TypeError``; not finite and positive, or rounding to 0 or Inf in
  the network's dtype (float32: ``1e-50``, ``1e39``): ``ValueError``.
"""
from __future__ import annotations

import math
import numbers

import numpy


DTYPES = ("float32", "float64")  # the dtypes a network computes in
# The GEMMs' arithmetic: "fp32" the full precision of the dtype (IEEE float32 or float64
# products); "tf32" TF32 tensor cores on float32 storage (where the device has them).
PRECISIONS = ("fp32", "tf32")
_REAL_KINDS = "fiub"  # float, signed int, unsigned int, bool: castable to the network's dtype
_DTYPE_MAX = {numpy.dtype("float32"): float(numpy.finfo(numpy.float32).max),
              numpy.dtype("float64"): float(numpy.finfo(numpy.float64).max)}
# Below or at half the smallest denormal, a positive number rounds to 0 in the dtype (ties go to
# the even 0); a Python float is a float64, so none of them rounds to 0 there.
_ROUNDS_TO_ZERO = {numpy.dtype("float32"): float(numpy.finfo(numpy.float32).smallest_subnormal) / 2,
                   numpy.dtype("float64"): 0.0}


def check_layer_sizes(layer_sizes) -> list[int]:
    if isinstance(layer_sizes, (str, bytes)):
        raise TypeError(f"layer_sizes must be a sequence of positive ints such as [2, 2, 1], got {layer_sizes!r}")
    try:
        sizes = list(layer_sizes)
    except TypeError:
        raise TypeError(f"layer_sizes must be a sequence of positive ints such as [2, 2, 1], got {layer_sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least 2 entries (inputs and outputs), got {sizes!r}")
    for size in sizes:
        if isinstance(size, (bool, numpy.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"layer_sizes must hold ints, got {size!r} ({type(size).__name__}) in {sizes!r}")
        if size < 1:
            raise ValueError(f"layer_sizes must be positive, got {size} in {sizes!r}")
    return [int(s) for s in sizes]


def check_choice(argument: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_dtype(dtype, choices=DTYPES) -> numpy.dtype:
    try:
        name = numpy.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in choices:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, choices))}, got {dtype!r}")
    return numpy.dtype(name)


def check_precision(precision, dtype: numpy.dtype) -> str:
    precision = check_choice("precision", precision, PRECISIONS)
    if precision == "tf32" and dtype != numpy.float32:
        raise ValueError(f"precision='tf32' needs dtype='float32' (TF32 tensor cores multiply float32 data), got "
                         f"dtype={dtype.name!r}; use dtype='float32' with precision='tf32', or precision='fp32'")
    return precision


def check_lr(lr, dtype=None, name: str = "lr") -> float:
    """``lr`` as a Python float: a real number, finite and > 0; with ``dtype``, also neither 0 nor
    Inf once rounded to it (a float32 network computes with float32(lr)). ``name``: what messages
    call it (the command line's "--lr")."""
    if type(lr) is not float:  # the common case skips the ABC check
        if isinstance(lr, (bool, numpy.bool_)) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{name} must be a positive finite number, got {lr!r} ({type(lr).__name__})")
        lr = float(lr)
    if not (_ROUNDS_TO_ZERO.get(dtype, 0.0) < lr <= _DTYPE_MAX.get(dtype, math.inf)):  # False for NaN too
        if dtype is not None and 0.0 < lr <= _ROUNDS_TO_ZERO[dtype]:
            raise ValueError(f"{name} {lr!r} rounds to 0 in {dtype} (whose smallest positive number is "
                             f"{2 * _ROUNDS_TO_ZERO[dtype]:.4g}), so training would change nothing; "
                             f"expected a positive number that {dtype} can hold")
        limit = "" if dtype is None else f" (and at most {_DTYPE_MAX[dtype]:.4g} for {dtype})"
        raise ValueError(f"{name} must be a positive finite number{limit}, got {lr!r}")
    return lr


def check_loss_fits(spec, output_activation: str, layer_sizes) -> object:
    """``spec`` (a row of ``losses.TABLE``) when the network's output activation and size suit it:
    a loss on logits needs the identity output, a classification loss one output per class."""
    if spec.output_activation is not None and output_activation != spec.output_activation:
        raise ValueError(f"loss {spec.name!r} takes logits: its output_activation must be "
                         f"{spec.output_activation!r} (the {spec.name.split('_')[0]} lives in the loss), "
                         f"got {output_activation!r}")
    if layer_sizes[-1] < spec.min_outputs:
        raise ValueError(f"loss {spec.name!r} needs at least {spec.min_outputs} outputs (one per class), "
                         f"got layer_sizes {layer_sizes}")
    return spec


def check_scheduled_lr(lr, dtype=None) -> float:
    """A learning-rate schedule's value as a Python float: a real number, finite and >= 0 (0, or a
    value that rounds to 0 in ``dtype``, is a step that changes nothing: a cosine's end), and with
    ``dtype`` not beyond what it holds."""
    if isinstance(lr, (bool, numpy.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"a scheduled lr must be a finite number >= 0, got {lr!r} ({type(lr).__name__})")
    lr = float(lr)
    if not (0.0 <= lr <= _DTYPE_MAX.get(dtype, math.inf)):  # False for NaN too
        limit = "" if dtype is None else f" (and at most {_DTYPE_MAX[dtype]:.4g} for {dtype})"
        raise ValueError(f"a scheduled lr must be a finite number >= 0{limit}, got {lr!r}")
    return lr


def check_clip_norm(clip_norm) -> float | None:
    """``clip_norm`` (gradient clipping by global norm) as a float > 0, or None (no clipping)."""
    if clip_norm is None:
        return None
    if isinstance(clip_norm, (bool, numpy.bool_)) or not isinstance(clip_norm, numbers.Real):
        raise TypeError(f"clip_norm must be a positive finite number or None, got {clip_norm!r} "
                        f"({type(clip_norm).__name__})")
    value = float(clip_norm)
    if not (0.0 < value < math.inf):
        raise ValueError(f"clip_norm must be a positive finite number or None, got {clip_norm!r}")
    return value


def positive_int(name, value) -> int:
    """``value`` as an int >= 1, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_kind(array, name: str):
    if array.dtype.kind not in _REAL_KINDS:
        what = "complex numbers" if array.dtype.kind == "c" else f"dtype {array.dtype}"
        raise TypeError(f"{name} must hold real numbers (float, int or bool), got {what}"
                        + (f" from {type(array).__name__} input" if array.dtype.kind == "O" else ""))


def _as_array(backend, array, name: str, targets_of=None):
    """A backend array (DLPack objects as zero-copy views) or a NumPy array, of real numbers.
    ``targets_of``: the loss (``losses.Loss``) whose targets ``array`` is: strings get a hint on
    how to encode them."""
    array = backend.as_array(array, name)
    if targets_of is not None and _holds_strings(array):
        classes = "integer class labels (batch,) for loss='softmax_cross_entropy'" if targets_of.labels else \
            "numbers (for class labels: loss='softmax_cross_entropy', which takes integer labels (batch,))"
        raise TypeError(f"{name} holds strings (dtype {array.dtype}), but targets must be {classes}; encode them "
                        f"first, e.g. classes, {name} = numpy.unique({name}, return_inverse=True) "
                        f"(or sklearn.preprocessing.LabelEncoder)")
    _check_kind(array, name)
    return array


def _holds_strings(array) -> bool:
    kind = array.dtype.kind
    if kind in "US":
        return True
    return kind == "O" and array.size > 0 and isinstance(array.flat[0], (str, bytes))


def as_batch(backend, array, name: str, features: int, batch: int | None = None):
    """``array`` as a 2-D (batch, features) array of the backend's kind, or a NumPy array for the
    backend to upload; no copy of the data, and no pass over it.

    A 1-D array is one feature per sample when features == 1.
    """
    array = _as_array(backend, array, name)
    shape = tuple(array.shape)
    if len(shape) == 1 and features == 1:
        array = array.reshape(-1, 1)
    elif len(shape) != 2:
        hint = f"; for one sample use {name}.reshape(1, -1)" if len(shape) == 1 else ""
        raise ValueError(f"{name} must be 2-D (batch, {features}), got shape {shape}{hint}")
    elif shape[1] != features:
        raise ValueError(f"{name} must have {features} columns (batch, {features}), got shape {shape}")
    rows = array.shape[0]
    if rows == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape}); it needs at least one row")
    if batch is not None and rows != batch:
        raise ValueError(f"{name} has {rows} rows but X has {batch}: they must match")
    return array


def check_params(params, layer_sizes, backend):
    """The (W, b) pairs of ``params`` checked against ``layer_sizes``, as backend or NumPy arrays;
    raises before any change."""
    if isinstance(params, (str, bytes)) or not hasattr(params, "__iter__"):
        raise TypeError(f"params must be a list of (W, b) pairs, got {type(params).__name__}")
    params = list(params)
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
        arrays = []
        for what, value, shape in (("W", W, (n_out, n_in)), ("b", b, (n_out,))):
            name = f"params[{i}] {what}"
            arr = _as_array(backend, value, name)
            if tuple(arr.shape) != shape:
                raise ValueError(f"{name} must have shape {shape} (layer {n_in} -> {n_out}), got {tuple(arr.shape)}")
            arrays.append(arr)
        checked.append(tuple(arrays))
    return checked


def as_targets(backend, array, name: str, outputs: int, batch: int, loss, check_values: bool = False,
               finite: bool = False):
    """``array`` as ``as_batch`` does, for the targets of ``loss`` (a ``losses.Loss``): with
    ``loss.labels`` (a loss that takes class labels) a 1-D array is integer class labels: checked
    (whole numbers in [0, outputs), one per row of X) and returned as one-hot rows (a NumPy float64
    array (batch, outputs) for the backend to upload). Int, unsigned and bool arrays are cast, as
    everywhere, for every loss: bool labels are the classes 0 and 1.

    This is a pass over the labels on the host (one device-to-host copy for device arrays):
    one-hot or probability rows skip it. ``check_values`` (``fit``, ``evaluate``: once per call,
    never per step) adds one pass over the targets: ``check_target_values``; ``finite`` (validation
    data) one more before it: ``check_finite``.

    A 1-D Y for a network with several outputs (class labels for an "mse" network), and string
    labels, are errors that say what fits.
    """
    checked = _as_array(backend, array, name, targets_of=loss)
    if len(checked.shape) == 1 and outputs > 1:
        if loss.labels:
            host = backend.to_numpy(checked) if backend.is_native(checked) else numpy.asarray(checked)
            return one_hot(check_labels(host, name, outputs, batch), outputs)
        raise ValueError(_one_column_message(backend, checked, name, outputs, batch, loss))
    if loss.labels and outputs > 1 and len(checked.shape) == 2 and checked.shape[1] == 1:
        raise ValueError(f"{name} must be class labels of shape (batch,) or rows (batch, {outputs}), got shape "
                         f"{tuple(checked.shape)}: class labels go as shape (batch,), e.g. {name}.ravel()")
    one_dimensional = len(checked.shape) == 1
    checked = as_batch(backend, checked, name, outputs, batch=batch)
    if finite:
        check_finite(checked, name, one_dimensional=one_dimensional)
    if check_values:
        check_target_values(checked, name, loss, one_dimensional=one_dimensional)
    return checked


def _one_column_message(backend, Y, name, outputs, batch, loss) -> str:
    """What to say when a 1-D Y (one value per row) meets a network with several outputs: one
    sample's row (reshape it), or class labels (a loss that takes them, or one-hot rows)."""
    shape = tuple(Y.shape)
    expected = f"{name} must be 2-D (batch, {outputs}) for loss {loss.name!r}, got shape {shape}"
    if batch == 1 and shape[0] == outputs:
        return f"{expected}; for one sample use {name}.reshape(1, -1)"
    host = backend.to_numpy(Y) if backend.is_native(Y) else numpy.asarray(Y)
    if host.dtype.kind in "iub":
        labels = True
    else:  # floats that are all whole numbers (labels read from a CSV file); an error path: the pass is free
        with numpy.errstate(invalid="ignore"):
            labels = bool(numpy.all(numpy.isfinite(host) & (numpy.floor(host) == host)))
    if not labels:
        return f"{expected}: one value per row, but the network has {outputs} outputs"
    index = name if host.dtype.kind in "iu" else f"{name}.astype(int)"
    one_hot_rows = f"one-hot rows numpy.eye({outputs})[{index}]"
    use = (f"for class labels use loss='softmax_cross_entropy' (it takes labels (batch,) as they are), or pass "
           f"{one_hot_rows}")
    if loss.name == "mse":
        use += " to an mse network"
    else:
        use += " (one yes/no output per class)"
    return f"{expected}: one label per row (class labels?) but the network has {outputs} outputs; {use}"


def check_labels(labels, name: str, classes: int, batch: int | None = None):
    """``labels`` (a 1-D NumPy array) as int64 class labels in [0, classes); ValueError otherwise."""
    if labels.ndim != 1:
        raise ValueError(f"{name} must be class labels of shape (batch,) or rows (batch, {classes}), "
                         f"got shape {labels.shape}")
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(f"{name} has {labels.shape[0]} labels but X has {batch} rows: they must match")
    if labels.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {labels.shape}); it needs at least one label")
    kind = labels.dtype.kind
    if kind == "f":
        whole = numpy.isfinite(labels) & (numpy.floor(labels) == labels)
        if not whole.all():
            bad = int(numpy.argmin(whole))
            raise ValueError(f"{name} must be integer class labels in [0, {classes}), got {labels[bad].item()!r} at "
                             f"position {bad} (for probabilities pass rows of shape (batch, {classes}))")
    elif kind not in "iub":  # bool labels are the classes 0 and 1, as bools are cast everywhere
        raise ValueError(f"{name} must be integer class labels in [0, {classes}), got dtype {labels.dtype}")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= classes:
        bad = int(numpy.argmax((labels < 0) | (labels >= classes)))
        raise ValueError(f"{name} holds the label {labels[bad].item()!r} at position {bad}, out of range: the network "
                         f"has {classes} outputs, so labels must be in [0, {classes})")
    return labels.astype(numpy.int64)


def one_hot(labels, classes: int):
    """Rows of zeros with a 1 at each label: (len(labels), classes) float64."""
    rows = numpy.zeros((labels.shape[0], classes))
    rows[numpy.arange(labels.shape[0]), labels] = 1.0
    return rows


def _float_eps(dtype) -> float:
    """The spacing of the coarser of ``dtype`` (a float) and float32 near 1: the rounding that a row
    of probabilities has seen if it was computed in either."""
    eps = float(numpy.finfo(numpy.float32).eps)
    return max(eps, float(numpy.finfo(dtype).eps)) if numpy.dtype(dtype).kind == "f" else eps


def check_target_values(Y, name: str, loss, one_dimensional: bool = False) -> None:
    """The targets' values checked by what ``loss`` (a ``losses.Loss``) takes; ValueError naming the
    first bad target (its index and value) otherwise. One pass over ``Y`` (a 2-D NumPy or backend
    array (batch, outputs)) on its device, and one small read back; nothing for "mse".

    - "sigmoid_binary_cross_entropy": every target a probability in [0, 1] (NaN is not one).
      Outside it the loss has no minimum (-1/+1 labels drive it to -Inf).
    - "softmax_cross_entropy", probability rows: every value in [0, 1] and every row summing to 1
      within 4·classes·eps (eps: float32's, or the row dtype's if coarser; the rounding of a row
      computed in float32). A negative value makes the loss unbounded below; a row summing to
      another total is not a distribution (several labels per row: use
      "sigmoid_binary_cross_entropy"). Integer labels become one-hot rows, which pass.
    """
    if loss.name == "mse":
        return
    ok = (Y >= 0) & (Y <= 1)  # False for NaN
    if not bool(ok.all()):
        row, col = divmod(_first_false(ok), Y.shape[1])
        where = f"{name}[{row}]" if one_dimensional else f"{name}[{row}, {col}]"
        value = Y[row, col].item()
        if loss.name == "sigmoid_binary_cross_entropy":
            hint = "; for -1/+1 labels use (Y + 1) / 2" if value == -1 else ""
            raise ValueError(f"{where} is {value!r}, but loss {loss.name!r} takes targets in [0, 1] (probabilities, "
                             f"or 0/1 labels){hint}")
        raise ValueError(f"{where} is {value!r}, but loss {loss.name!r} takes probability rows (values in [0, 1], "
                         f"each row summing to 1) or integer class labels (batch,)")
    if loss.labels:
        classes = Y.shape[1]
        tolerance = 4 * classes * _float_eps(Y.dtype)
        sums = Y.sum(axis=1, dtype=numpy.float64)
        off = abs(sums - 1) > tolerance
        if bool(off.any()):
            row = _first_false(~off)
            raise ValueError(f"{name}[{row}] sums to {sums[row].item()!r}, but loss {loss.name!r} takes probability "
                             f"rows that sum to 1 (within {tolerance:.2g}) or integer class labels (batch,); for "
                             f"several labels per row use loss='sigmoid_binary_cross_entropy'")


def check_finite(array, name: str, one_dimensional: bool = False) -> None:
    """ValueError naming the first NaN/Inf in ``array`` (2-D, NumPy or backend; ``one_dimensional``:
    it was given as (batch,), so the index is the row) by its index and value: one pass on the
    array's device and a small read back."""
    finite = numpy.isfinite(array)  # a backend array's own isfinite (CuPy: __array_ufunc__), on its device
    if not bool(finite.all()):
        row, col = divmod(_first_false(finite), array.shape[1])
        where = f"{name}[{row}]" if one_dimensional else f"{name}[{row}, {col}]"
        raise ValueError(f"{where} is {array[row, col].item()!r}: the data must be finite (no NaN or Inf)")


def _first_false(mask) -> int:
    """The flat index of the first False in a boolean NumPy or backend array (an error path: as int8,
    so that every array library's argmin takes it)."""
    return int(mask.ravel().astype(numpy.int8).argmin())
