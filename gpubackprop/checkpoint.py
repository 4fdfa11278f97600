"""Checkpoints: a network's sizes, activations, dtype and every W and b in one ``.npz`` file.

- The file is a zip of ``.npy`` members (``numpy.load`` reads it), written with fixed zip
  metadata (no timestamps, fixed order, stored uncompressed), so the same weights always give
  the same bytes, whatever the backend they were trained on.
- Writing is atomic: the bytes go to a temporary file in the same folder, which is flushed,
  fsync'ed and then renamed over ``path``; a crash mid-save leaves the old file (or none), never
  a broken one.
- Loading reads only plain arrays (no pickles), checks the format marker, the version and every
  shape and dtype, and raises ``CheckpointError`` (a ``ValueError``) naming the file and the
  problem for anything else: truncated or corrupt files, other ``.npz`` files, other versions.
- The round trip is bit-exact, also across backends (save on cupy, load on numpy).
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy

from . import activations
from .errors import CheckpointError
from .validation import DTYPES

FORMAT = "gpubackprop-checkpoint"
VERSION = 1
_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no clock in the bytes
_META = ("format", "version", "layer_sizes", "hidden_activation", "output_activation", "dtype")


def _members(net):
    yield "format", numpy.array(FORMAT)
    yield "version", numpy.array(VERSION, dtype=numpy.int64)
    yield "layer_sizes", numpy.array(net.layer_sizes, dtype=numpy.int64)
    yield "hidden_activation", numpy.array(net.hidden_activation)
    yield "output_activation", numpy.array(net.output_activation)
    yield "dtype", numpy.array(net.dtype.name)
    for i, (W, b) in enumerate(net.get_params()):
        yield f"W{i}", numpy.ascontiguousarray(W, dtype=net.dtype)
        yield f"b{i}", numpy.ascontiguousarray(b, dtype=net.dtype)


def to_bytes(net) -> bytes:
    """The checkpoint file's content for ``net``: the same weights always give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in _members(net):
            info = zipfile.ZipInfo(name + ".npy", date_time=_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # as written on Unix, wherever it is written
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            numpy.lib.format.write_array(member, array, allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def save(net, path) -> None:
    """Write ``net`` to ``path`` atomically (temporary file in the same folder, flush, fsync, rename)."""
    path = os.fspath(path)
    data = to_bytes(net)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)  # make the rename itself durable


def _mode_for(path) -> int:
    """The permissions an ordinary new file would get (mkstemp makes it 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_arrays(path) -> dict:
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a gpubackprop checkpoint (not a zip/.npz file; truncated or another format?)")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise CheckpointError(f"{path}: not a gpubackprop checkpoint (unexpected member {info.filename!r})")
                with zf.open(info) as member:
                    arrays[info.filename[:-4]] = numpy.lib.format.read_array(member, allow_pickle=False)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # Bad CRC-32 (corrupt bytes), truncated members, pickled/unknown .npy content, ...
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from exc
    return arrays


def _text(arrays, key, path) -> str:
    value = arrays[key]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"{path}: corrupt checkpoint ({key!r} should be a string, got {value.dtype} {value.shape})")
    return str(value[()])


def read(path) -> dict:
    """The checkpoint at ``path`` as {"layer_sizes", "hidden_activation", "output_activation",
    "dtype", "params"}, fully checked; raises CheckpointError naming the file and the problem."""
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
    if int(version) != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {int(version)}, but this gpubackprop reads "
                              f"version {VERSION} (written by a {'newer' if int(version) > VERSION else 'older'} release)")
    missing = [key for key in _META if key not in arrays]
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
    expected = set(_META)
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
    return dict(layer_sizes=sizes, params=params, **meta)
