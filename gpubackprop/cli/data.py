"""The data of ``gpubackprop train`` and ``gpubackprop predict``: the built-in tasks, ``.npz`` and text
files (``text``) checked and loaded, class targets, the validation split."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy

from ..validation import check_labels
from . import text as cli_text
from .common import UsageError

BUILTIN_SAMPLES = 10240
BUILTIN_NOISE = 0.05
BUILTIN_RANGE = 3.0
# The classification task: three spiral arms of 1.5 turns out to radius 3, noise 0.15: not separable
# by a few lines, so the curves show learning. Adam at its default lr (sigmoid hidden, 32-32, seed 0)
# takes it to 96.7% validation accuracy in the 50 default epochs (numpy backend, about 1.5 s).
SPIRAL_CLASSES = 3
SPIRAL_TURNS = 1.5
SPIRAL_NOISE = 0.15


class DataError(UsageError):
    """A data file that cannot be used; the message says what is wrong with it."""


def builtin_task(samples: int, seed: int):
    """x, y ~ U(-3, 3); z = sin(x)·cos(y) + N(0, 0.05²). Returns X (samples, 2), Y (samples, 1)."""
    if samples < 2:
        raise DataError(f"--samples must be at least 2, got {samples}")
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-BUILTIN_RANGE, BUILTIN_RANGE, size=(samples, 2))
    Y = numpy.sin(X[:, :1]) * numpy.cos(X[:, 1:]) + BUILTIN_NOISE * rng.standard_normal((samples, 1))
    return X, Y


def builtin_spirals(samples: int, seed: int):
    """Three interleaved spirals: class k's arm at angle 2π(k/3 + 1.5 t), radius 3t, t ∈ [0, 1] (√ of
    a uniform draw: even density over the disc), plus N(0, 0.15²) noise. Returns X (samples, 2),
    labels (samples,) int64."""
    if samples < 2:
        raise DataError(f"--samples must be at least 2, got {samples}")
    rng = numpy.random.default_rng(seed)
    labels = rng.integers(0, SPIRAL_CLASSES, samples)
    t = numpy.sqrt(rng.uniform(0.0, 1.0, samples))
    angle = 2 * numpy.pi * (labels / SPIRAL_CLASSES + SPIRAL_TURNS * t)
    X = BUILTIN_RANGE * t[:, None] * numpy.stack([numpy.cos(angle), numpy.sin(angle)], axis=1)
    return X + SPIRAL_NOISE * rng.standard_normal((samples, 2)), labels


def classification_targets(path, Y, loss, classes=None, column="Y"):
    """Y of a data file as the loss takes it: for softmax cross-entropy one column of integer labels
    becomes (labels, classes): max label + 1 classes, or ``classes`` (the outputs of an --init
    network: the labels must be below it); otherwise Y as it is, with its column count. ``column``
    names the target column in messages (e.g. "the target column 'z'")."""
    if loss == "softmax_cross_entropy" and Y.shape[1] == 1:
        _check_label_values(path, Y[:, 0], column)
        given = classes
        try:
            labels = check_labels(Y[:, 0], "Y", classes=int(Y.max()) + 1 if given is None else given)
        except ValueError as exc:
            raise DataError(f"{path}: --loss softmax_cross_entropy reads one target column as class labels"
                            + ("" if given is None else f" of the {given} classes of the --init network") + f": {exc}") from None
        if given is not None:
            return labels, given
        classes = int(labels.max()) + 1
        if classes < 2:
            raise DataError(f"{path}: the labels hold one class only ({classes - 1}); a classifier needs at least 2")
        return labels, classes
    return Y, Y.shape[1]


def _check_label_values(path, values, column):
    """DataError unless ``values`` (finite floats) are whole numbers >= 0: the class labels 0, 1, ...
    that --loss softmax_cross_entropy reads from one target column (else: regression targets?)."""
    whole = numpy.floor(values) == values
    if not whole.all():
        bad = int(numpy.argmin(whole))
        raise DataError(f"{path}: --loss softmax_cross_entropy reads {column} as integer class labels, but it holds "
                        f"non-integer values ({float(values[bad])!r} in data row {bad + 1}); for regression on it "
                        f"leave --loss out (mse, the default)")
    if values.min() < 0:
        bad = int(numpy.argmin(values))
        raise DataError(f"{path}: --loss softmax_cross_entropy reads {column} as class labels 0, 1, 2, ..., but it "
                        f"holds {float(values[bad]):g} (data row {bad + 1}); number the classes from 0")


def target_description(target_names, Y) -> str:
    """How messages name the target column(s): by header name where the file has one."""
    if target_names:
        return f"the target column {target_names[0]!r}" if len(target_names) == 1 else \
            f"the target columns {', '.join(map(repr, target_names))}"
    return "the target column" if Y.shape[1] == 1 else "the target columns"


def _data_file(path):
    """(Path, lower-case suffix) of an existing regular file; DataError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} " + ("is not a regular file" if path.exists() else "does not exist"))
    return path, path.suffix.lower()


def load_data(path, target_columns=None, delimiter=None):
    """(X, Y, dialect, target_names) with X and Y as 2-D float64 arrays from an .npz or delimited
    text file (.csv, .tsv, .txt: see ``cli_text``); dialect: how a text file was read (None for
    .npz); target_names: the header's names of the target columns (None for .npz or a file without
    a header). DataError saying what is wrong."""
    path, suffix = _data_file(path)
    dialect = names = None
    if suffix == ".npz":
        if target_columns is not None or delimiter is not None:
            raise DataError(f"{'--target-columns' if target_columns is not None else '--delimiter'} applies to text "
                            f"files only; an .npz file names its arrays X and Y")
        X, Y = _load_npz(path)
    elif suffix in cli_text.SUFFIXES:
        X, Y, dialect, names = _load_csv(path, target_columns, delimiter)
    else:
        raise DataError(f"data file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; use .npz (arrays X, Y) "
                        f"or delimited text ({', '.join(cli_text.SUFFIXES)})")
    X, Y = _check_shapes(path, X, Y)
    return X, Y, dialect, names


def load_features(path, drop_columns=None, delimiter=None):
    """(X, dialect): X alone, as a 2-D float64 array, from an .npz file (array X; others ignored) or a
    delimited text file (every column but ``drop_columns``: indices or header names); DataError
    saying what is wrong."""
    path, suffix = _data_file(path)
    dialect = None
    if suffix == ".npz":
        if drop_columns is not None or delimiter is not None:
            raise DataError(f"{'--target-columns' if drop_columns is not None else '--delimiter'} applies to text "
                            f"files only; an .npz file names its array X")
        (X,) = _load_npz(path, ("X",), "expected X: (samples, features)")
    elif suffix in cli_text.SUFFIXES:
        table = _read_text(path, delimiter)
        values, dialect = table.values, table.dialect
        dropped = [] if drop_columns is None else _target_indices(path, drop_columns, table.header, values.shape[1])
        X = values[:, [c for c in range(values.shape[1]) if c not in dropped]]
        if X.shape[1] == 0:
            raise DataError(f"{path}: --target-columns leaves no column")
    else:
        raise DataError(f"data file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; use .npz (array X) "
                        f"or delimited text ({', '.join(cli_text.SUFFIXES)})")
    return _check_array(path, "X", X), dialect


# The largest uncompressed/compressed size ratio deflate can reach (~1032:1), with slack.
_DEFLATE_MAX_RATIO = 1100


def _check_npz_sizes(path):
    """DataError when a member's .npy header claims more data than the member holds (a crafted or
    corrupt file), before numpy allocates what the header says: never a huge allocation."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            most = info.compress_size * (_DEFLATE_MAX_RATIO if info.compress_type == zipfile.ZIP_DEFLATED else 1)
            with archive.open(info) as member:
                version = numpy.lib.format.read_magic(member)
                read_header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                               else numpy.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                header = member.tell()
            claimed = math.prod(shape) * dtype.itemsize
            if claimed + header != info.file_size or info.file_size > most:
                raise DataError(f"{path} is corrupt: its array {info.filename[:-4]!r} claims {dtype} {shape} "
                                f"({claimed} bytes) but the file holds {info.file_size - header} bytes for it")


def _load_npz(path, wanted=("X", "Y"), expected="expected X: (samples, features) and Y: (samples, targets)"):
    try:
        _check_npz_sizes(path)
        with numpy.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            missing = [name for name in wanted if name not in names]
            if missing:
                raise DataError(f"{path}: no array named {' or '.join(missing)}; the file holds "
                                f"{', '.join(names) or 'no arrays'} ({expected})")
            return tuple(archive[name] for name in wanted)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _check_array(path, name, array):
    """``array`` as a finite 2-D float64 array (1-D: one column), or a DataError."""
    if array.dtype.kind not in "fiub":
        raise DataError(f"{path}: {name} must hold numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise DataError(f"{path}: {name} must be 1-D or 2-D (samples, columns), got shape {array.shape}")
    if array.shape[0] == 0 or array.size == 0:
        raise DataError(f"{path}: {name} has no samples or no columns (shape {array.shape})")
    array = (array.reshape(-1, 1) if array.ndim == 1 else array).astype(numpy.float64)
    if not numpy.isfinite(array).all():
        bad = numpy.argwhere(~numpy.isfinite(array))[0]
        raise DataError(f"{path}: {name} holds a NaN or infinite value (first at row {bad[0]}, column {bad[1]})")
    return array


def _check_shapes(path, X, Y):
    for name, array in (("X", X), ("Y", Y)):
        if array.dtype.kind not in "fiub":
            raise DataError(f"{path}: {name} must hold numbers, got dtype {array.dtype}")
        if array.ndim not in (1, 2):
            raise DataError(f"{path}: {name} must be 1-D or 2-D (samples, columns), got shape {array.shape}")
        if array.shape[0] == 0:
            raise DataError(f"{path}: {name} has no samples (shape {array.shape})")
    X = X.reshape(-1, 1) if X.ndim == 1 else X
    Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{path}: X has {X.shape[0]} samples but Y has {Y.shape[0]}; they must match (shapes {X.shape} and {Y.shape})")
    if 0 in X.shape or 0 in Y.shape:
        raise DataError(f"{path}: X and Y need at least one column each, got shapes {X.shape} and {Y.shape}")
    X, Y = X.astype(numpy.float64), Y.astype(numpy.float64)
    for name, array in (("X", X), ("Y", Y)):
        if not numpy.isfinite(array).all():
            bad = numpy.argwhere(~numpy.isfinite(array))[0]
            raise DataError(f"{path}: {name} holds a NaN or infinite value (first at row {bad[0]}, column {bad[1]})")
    return X, Y


def _load_csv(path, target_columns, delimiter=None):
    """(X, Y, dialect, target names or None) of a delimited text file (``cli_text.read_table``),
    split by ``target_columns``. Text in a target column gets a hint on encoding class labels."""
    try:
        table = _read_text(path, delimiter, reraise=True)
    except cli_text.TextDataError as exc:
        raise DataError(str(exc) + _label_hint(path, exc, target_columns)) from None
    width = table.values.shape[1]
    if width < 2:
        raise DataError(f"{path} ({table.dialect}): need at least 2 columns (features and targets), got {width}; "
                        f"--delimiter names the delimiter if it was not found")
    targets = _target_indices(path, target_columns, table.header, width)
    features = [c for c in range(width) if c not in targets]
    if not features:
        raise DataError(f"{path}: every column is a target; leave at least one feature column")
    names = None if table.header is None else [table.header[c] for c in targets]
    return table.values[:, features], table.values[:, targets], table.dialect, names


def _label_hint(path, exc, target_columns) -> str:
    """For a cell of text in a target column: how to turn such labels into class numbers."""
    if exc.column is None:
        return ""
    try:
        targets = _target_indices(path, target_columns, exc.header, exc.width)
    except DataError:
        return ""
    if exc.column not in targets:
        return ""
    name = repr(exc.header[exc.column]) if exc.header else str(exc.column)
    return (f"; the target column {name} holds text: for class labels encode them as 0, 1, 2, ... first (in "
            f"Python: classes, codes = numpy.unique(column, return_inverse=True), then write codes in its place) "
            f"and train with --loss softmax_cross_entropy")


def _read_text(path, delimiter=None, reraise=False):
    try:
        return cli_text.read_table(path, cli_text.parse_delimiter(delimiter))
    except cli_text.TextDataError as exc:
        if reraise:
            raise
        raise DataError(str(exc)) from None


def _target_indices(path, spec, header, width):
    if spec is None:
        return [width - 1]
    indices = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            raise DataError(f"--target-columns {spec!r} has an empty entry")
        try:
            index = int(item)
        except ValueError:
            if header is None or item not in header:
                known = f"the header names {', '.join(header)}" if header else "the file has no header, so use 0-based indices"
                raise DataError(f"--target-columns: no column {item!r} in {path} ({known})") from None
            index = header.index(item)
        if not -width <= index < width:
            raise DataError(f"--target-columns: column {index} is out of range for {path}, which has {width} columns")
        index %= width
        if index not in indices:
            indices.append(index)
    return indices


def split(X, Y, val_fraction: float, seed: int):
    """(train, val or None), shuffled by ``seed``; val holds round(val_fraction · samples) rows."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    n = X.shape[0]
    n_val = int(round(val_fraction * n))
    if n_val == 0:
        return (X, Y), None
    if n - n_val < 1:
        raise DataError(f"--val-fraction {val_fraction} leaves no training samples out of {n}")
    order = numpy.random.default_rng([seed, 1]).permutation(n)
    train, val = order[n_val:], order[:n_val]
    return (X[train], Y[train]), (X[val], Y[val])
