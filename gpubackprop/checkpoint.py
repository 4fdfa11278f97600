"""Checkpoints: a network's sizes, activations, loss, dtype, precision, every W and b, and its
optimizer (settings and state) in one ``.npz`` file.

The precision is an optional member, written only when it is not the default "fp32"; absent
means "fp32". ``target_names`` is another: the names of the target columns the network was trained
on (1-D text, one per output, or one for the class-label column of a softmax network), written only
when given (``gpubackprop train`` gives a text file's header names, and ``predict`` names its output
columns after them); absent means unnamed (y0, y1, ...). A file without either is byte for byte
what it was; a file with either is refused by releases that predate the member.

- The file is a zip of ``.npy`` members (``numpy.load`` reads it), written with fixed zip
  metadata (no timestamps, fixed order, stored uncompressed), so the same weights always give
  the same bytes, whatever the backend they were trained on.
- Writing is atomic: the bytes go to a temporary file in the same folder, which is flushed,
  fsync'ed and then renamed over ``path``; a crash mid-save leaves the old file (or none), never
  a broken one.
- Loading reads only plain arrays (no pickles), checks every member's sizes before reading any
  data (a header that lies is an error, not a huge allocation), the format marker, the version,
  every shape and dtype, the optimizer's settings (by the rules of ``optimizers.Optimizer``) and
  its state (no NaN/Inf, no negative second moment: what no training produces, see
  ``Optimizer.check_state``), and raises ``CheckpointError`` (a ``ValueError``) naming the file and the
  problem for anything else: truncated or corrupt files, other ``.npz`` files, other versions.
- The round trip is bit-exact, also across backends (save on cupy, load on numpy).

Versions: 2 (written now) adds ``loss``, ``optimizer`` (its settings as JSON text),
``optimizer_state`` ((k, parameters): momentum's velocity or Adam's m and v, laid out like the flat
parameters W₁, b₁, W₂, ...) and ``optimizer_step`` (the accepted optimizer steps: Adam's t, what
learning-rate schedules count; files written before every optimizer counted hold 0 for sgd and momentum). Version 1 files (no
such members) still load, as what they were: loss "mse", optimizer "sgd".
"""
from __future__ import annotations

import io
import math
import os
import zipfile

import numpy

from . import activations, files, losses, optimizers
from .errors import CheckpointError
from .validation import DTYPES, PRECISIONS

FORMAT = "gpubackprop-checkpoint"
VERSION = 2
READABLE = (1, 2)
_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no clock in the bytes
_META = ("format", "version", "layer_sizes", "hidden_activation", "output_activation", "dtype")
_META_V2 = ("loss", "optimizer", "optimizer_state", "optimizer_step")


def _members(net, target_names=None):
    yield "format", numpy.array(FORMAT)
    yield "version", numpy.array(VERSION, dtype=numpy.int64)
    yield "layer_sizes", numpy.array(net.layer_sizes, dtype=numpy.int64)
    yield "hidden_activation", numpy.array(net.hidden_activation)
    yield "output_activation", numpy.array(net.output_activation)
    yield "dtype", numpy.array(net.dtype.name)
    if net.precision != "fp32":  # optional: fp32 checkpoints keep the bytes they always had
        yield "precision", numpy.array(net.precision)
    if target_names is not None:  # optional, as precision
        yield "target_names", _checked_names(target_names, net.layer_sizes[-1], net.loss, ValueError)
    for i, (W, b) in enumerate(net.get_params()):
        yield f"W{i}", numpy.ascontiguousarray(W, dtype=net.dtype)
        yield f"b{i}", numpy.ascontiguousarray(b, dtype=net.dtype)
    state = net.get_optimizer_state()
    yield "loss", numpy.array(net.loss)
    yield "optimizer", numpy.array(net.optimizer.to_json())
    yield "optimizer_state", numpy.ascontiguousarray(state["buffers"], dtype=net.dtype)
    yield "optimizer_step", numpy.array(state["step"], dtype=numpy.int64)


def _checked_names(names, outputs, loss, error, path=None):
    """``names`` as a 1-D unicode array of one name per output (or one: a softmax network's label
    column); ``error`` (ValueError or CheckpointError) otherwise."""
    array = numpy.array(list(names) if not isinstance(names, numpy.ndarray) else names)
    counts = (outputs, 1) if loss == "softmax_cross_entropy" else (outputs,)
    if array.ndim != 1 or array.dtype.kind != "U" or len(array) not in counts:
        where = f"{path}: corrupt checkpoint (" if path else ""
        raise error(f"{where}target_names must be {' or '.join(map(str, counts))} string(s), one per output"
                    + (" or the label column" if len(counts) > 1 else "")
                    + f", got {array.dtype} {array.shape}" + (")" if path else ""))
    return array


def to_bytes(net, target_names=None) -> bytes:
    """The checkpoint file's content for ``net``: the same weights always give the same bytes.
    ``target_names``: the optional member of that name (see the module's documentation)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in _members(net, target_names):
            info = zipfile.ZipInfo(name + ".npy", date_time=_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # as written on Unix, wherever it is written
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            numpy.lib.format.write_array(member, array, allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def save(net, path, target_names=None) -> None:
    """Write ``net`` (and the optional ``target_names``) to ``path`` atomically (temporary file in the same folder, flush, fsync, rename:
    ``gpubackprop.files.write_atomically``, the one writer of every file gpubackprop writes).

    A new file gets the permissions the umask allows (as ``open(path, "w")`` would give), an
    existing one keeps its own; the process umask is never touched (other threads may be creating
    files). Errors are the ``OSError`` of the failed step, naming ``path`` and the reason."""
    data = to_bytes(net, target_names)
    files.write_atomically(path, lambda handle: handle.write(data), what="the checkpoint")


# The largest uncompressed/compressed size ratio deflate can reach (~1032:1), with slack for headers.
_DEFLATE_MAX_RATIO = 1100


def _read_arrays(path) -> dict:
    """Every member of the .npz at ``path`` as an array, without pickles.

    Every member's sizes are checked before any data is read: the zip's declared sizes against the
    file's real size, then each .npy header's shape and dtype against its member's declared size.
    So a lying header or directory is a CheckpointError, never a huge allocation."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a gpubackprop checkpoint (not a zip/.npz file; truncated or another format?)")
    try:
        with zipfile.ZipFile(path) as zf:
            layout = [(info, _member_layout(zf, info, path, os.path.getsize(path))) for info in zf.infolist()]
            return {info.filename[:-4]: _read_member(zf, info, *member) for info, member in layout}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # Bad CRC-32 (corrupt bytes), truncated members, unreadable .npy headers, ...
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from exc


def _member_layout(zf, info, path, file_size):
    """(header length, shape, fortran order, dtype) of member ``info``, checked against its sizes."""
    name = info.filename
    if not name.endswith(".npy"):
        raise CheckpointError(f"{path}: not a gpubackprop checkpoint (unexpected member {name!r})")
    if info.compress_type == zipfile.ZIP_STORED:
        most = info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:  # numpy.savez_compressed
        most = info.compress_size * _DEFLATE_MAX_RATIO
    else:
        raise CheckpointError(f"{path}: corrupt checkpoint (member {name!r} uses zip compression "
                              f"{info.compress_type}; only stored and deflated members are read)")
    if info.header_offset + info.compress_size > file_size or info.file_size > most:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (member {name!r} declares "
                              f"{info.file_size} bytes, {info.compress_size} stored, in a file of {file_size})")
    with zf.open(info) as member:
        version = numpy.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = numpy.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = numpy.lib.format.read_array_header_2_0(member)
        else:
            raise CheckpointError(f"{path}: corrupt checkpoint (member {name!r} is .npy format {version}; "
                                  f"1.0 and 2.0 are read)")
        header_length = member.tell()
    if dtype.hasobject:
        raise CheckpointError(f"{path}: corrupt checkpoint (member {name!r} holds Python objects, "
                              f"which only a pickle could read; pickles are never loaded)")
    nbytes = math.prod(shape) * dtype.itemsize
    if any(n < 0 for n in shape) or header_length + nbytes != info.file_size:
        raise CheckpointError(f"{path}: corrupt checkpoint (member {name!r}: its header says {dtype} "
                              f"{shape}, {nbytes} bytes, but the member holds {info.file_size - header_length})")
    return header_length, shape, fortran_order, dtype


def _read_member(zf, info, header_length, shape, fortran_order, dtype):
    array = numpy.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
    with zf.open(info) as member:
        member.seek(header_length)
        if array.nbytes and member.readinto(memoryview(array).cast("B")) != array.nbytes:
            raise EOFError(f"member {info.filename!r} ends early")
        if member.read(1):  # also where the zip checks the member's CRC-32
            raise ValueError(f"member {info.filename!r} holds more bytes than its header says")
    return array.T if fortran_order else array


def _text(arrays, key, path) -> str:
    value = arrays[key]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"{path}: corrupt checkpoint ({key!r} should be a string, got {value.dtype} {value.shape})")
    return str(value[()])


def read(path) -> dict:
    """The checkpoint at ``path`` as {"layer_sizes", "hidden_activation", "output_activation",
    "dtype", "precision", "params", "loss", "optimizer" (an ``optimizers.Optimizer``),
    "optimizer_state" (None for version 1 files: a fresh state), "target_names" (a list of str, or
    None when the file has none)}, fully checked.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: anything but a valid checkpoint (truncated, corrupt, another version, another
            ``.npz``, sizes that lie); the message names the file and the problem. Every member's size
            is checked before any data is read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    arrays = _read_arrays(path)
    if "format" not in arrays or arrays["format"].dtype.kind != "U" or arrays["format"].shape != () \
            or str(arrays["format"][()]) != FORMAT:
        raise CheckpointError(f"{path}: not a gpubackprop checkpoint (no {FORMAT!r} marker; "
                              f"holds {sorted(arrays)})")
    version = arrays.get("version")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise CheckpointError(f"{path}: corrupt checkpoint (no format version)")
    version = int(version)
    if version not in READABLE:
        raise CheckpointError(f"{path}: checkpoint format version {version}, but this gpubackprop reads "
                              f"versions {', '.join(map(str, READABLE))} "
                              f"(written by a {'newer' if version > VERSION else 'older'} release)")
    required = _META + (_META_V2 if version >= 2 else ())
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CheckpointError(f"{path}: corrupt checkpoint (missing {', '.join(missing)})")
    sizes = arrays["layer_sizes"]
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or len(sizes) < 2 or (sizes < 1).any():
        raise CheckpointError(f"{path}: corrupt checkpoint (layer_sizes {sizes.tolist()!r})")
    sizes = [int(n) for n in sizes]
    meta = {key: _text(arrays, key, path) for key in ("hidden_activation", "output_activation", "dtype")}
    for key, valid in (("hidden_activation", activations.HIDDEN), ("output_activation", activations.OUTPUT),
                       ("dtype", DTYPES)):
        if meta[key] not in valid:
            raise CheckpointError(f"{path}: corrupt checkpoint ({key} {meta[key]!r}; valid: {', '.join(valid)})")
    meta["precision"] = _text(arrays, "precision", path) if "precision" in arrays else "fp32"  # optional member
    if meta["precision"] not in PRECISIONS or (meta["precision"] == "tf32" and meta["dtype"] != "float32"):
        raise CheckpointError(f"{path}: corrupt checkpoint (precision {meta['precision']!r} with dtype "
                              f"{meta['dtype']!r}; valid: {', '.join(PRECISIONS)}, tf32 with float32 only)")
    expected = set(required) | {"precision", "target_names"}
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        pair = []
        for key, shape in ((f"W{i}", (n_out, n_in)), (f"b{i}", (n_out,))):
            expected.add(key)
            array = arrays.get(key)
            if array is None:
                raise CheckpointError(f"{path}: corrupt checkpoint (missing {key} for layer_sizes {sizes})")
            if array.shape != shape or array.dtype != numpy.dtype(meta["dtype"]):
                raise CheckpointError(f"{path}: corrupt checkpoint ({key} is {array.dtype} {array.shape}, "
                                      f"expected {meta['dtype']} {shape})")
            pair.append(array)
        params.append(tuple(pair))
    extra = sorted(set(arrays) - expected)
    if extra:
        raise CheckpointError(f"{path}: corrupt checkpoint (unexpected arrays {', '.join(extra)})")
    if version == 1:
        content = dict(layer_sizes=sizes, params=params, loss="mse", optimizer=optimizers.Optimizer(),
                       optimizer_state=None, **meta)
    else:
        content = dict(layer_sizes=sizes, params=params, **_training_members(arrays, sizes, meta["dtype"], path),
                       **meta)
    names = arrays.get("target_names")  # optional member
    content["target_names"] = None if names is None else \
        [str(n) for n in _checked_names(names, sizes[-1], content["loss"], CheckpointError, path)]
    return content


def _training_members(arrays, sizes, dtype, path) -> dict:
    """Version 2's loss, optimizer settings and optimizer state, checked."""
    loss = _text(arrays, "loss", path)
    if loss not in losses.NAMES:
        raise CheckpointError(f"{path}: corrupt checkpoint (loss {loss!r}; valid: {', '.join(losses.NAMES)})")
    try:  # the settings by the rules every optimizer is built with (optimizers.Optimizer)
        optimizer = optimizers.from_json(_text(arrays, "optimizer", path))
        optimizer.check_dtype(dtype)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: corrupt checkpoint (optimizer settings: {exc})") from None
    n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    buffers, step = arrays["optimizer_state"], arrays["optimizer_step"]
    shape = (optimizer.state_buffers, n_params)
    if optimizer.name == "sgd" and buffers.shape == (1, n_params):  # sgd with weight decay kept an unused
        buffers = buffers[:0]  # velocity row before optimizers had a file each: dropped, nothing depends on it
    if buffers.shape != shape or buffers.dtype != numpy.dtype(dtype):
        raise CheckpointError(f"{path}: corrupt checkpoint (optimizer_state is {buffers.dtype} {buffers.shape}, "
                              f"expected {dtype} {shape} for {optimizer.describe()})")
    if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
        raise CheckpointError(f"{path}: corrupt checkpoint (optimizer_step {step!r})")
    problem = optimizer.check_state(buffers, int(step), n_params)  # values no training can produce
    if problem is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (optimizer_state: expected {problem})")
    return dict(loss=loss, optimizer=optimizer, optimizer_state={"buffers": buffers, "step": int(step)})
