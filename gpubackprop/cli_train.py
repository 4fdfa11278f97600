"""``gpubackprop train``: fit an MLP to a data file (or the built-in task), report, save, plot.

Data: ``--data FILE.npz`` with arrays ``X`` (samples, features) and ``Y`` (samples, targets) or
(samples,); ``--data`` a delimited text file (.csv, .tsv, .txt; the delimiter detected or
``--delimiter``: see ``cli_text``) with the targets picked by ``--target-columns`` (indices or header
names; default: the last column) and the other columns as features; or, without ``--data``, the
built-in task z = sin(x)·cos(y) + noise on x, y ~ U(-3, 3), drawn from ``--seed``; with a
classification ``--loss``, the built-in task is three interleaved spirals (3 classes), drawn from
``--seed``. For ``--loss softmax_cross_entropy`` one target column holds integer class labels
(the network gets max label + 1 outputs); several columns are probability rows.
A share ``--val-fraction`` of the samples is held out for validation. ``--init MODEL.npz`` continues
training a saved network (its sizes, activations, loss, optimizer with its state, dtype and precision
come from the file).

Each epoch's row is printed as soon as the epoch ends when stdout is not a terminal (a pipe, a log
file), so that a log follows the training; on a terminal the live progress line shows it and the
table comes at the end. Beyond 20 epochs the table is thinned (said on a line before it;
``--log-every N`` sets the step). Every output is checked before the training (``cli_common.
check_outputs``) and written by ``files.write_atomically``. The final line gives the metrics of the
network that is saved (a restored best epoch's, said so). Ctrl-C stops after the current step: the
table so far, the network saved if ``--save`` was given, the ``--plot`` drawn, exit code 130; an
error in training (divergence: exit 1) also draws the ``--plot`` of the complete epochs and saves
only a restored best epoch.

Launched by ``mpiexec -n N`` (N > 1), it trains data-parallel (``gpubackprop.distributed``): every rank
reads the same data and trains on its shard of the training and validation rows, each on the device
of its local rank (``--backend`` auto or cupy; numpy or cupy:N are taken as given); rank 0 alone
prints, saves and plots, and the figures are those of all ranks together.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import zipfile
from pathlib import Path

import numpy

from . import activations, checkpoint, cli_text, distributed, extras, files, losses, optimizers, training
from .backends import ENV_VAR, describe
from .cli_common import UsageError, add_backend_argument, check_not_input, check_outputs, one_line
from .errors import CheckpointError, DistributedError, NonFiniteLossError, TrainingInterrupted
from .mlp import MLP
from .validation import DTYPES, PRECISIONS, check_labels, one_hot

# Defaults chosen so that the built-in task trains robustly: over 10 seeds, 50 epochs take the
# training loss 25-35x below the first epoch's (numpy backend, about 0.5 s on one CPU core).
DEFAULT_HIDDEN = (32, 32)
DEFAULT_LR = {"sgd": 0.2, "momentum": 0.02, "adam": 0.01}  # per optimizer; 0.2: the built-in task's SGD
DEFAULT_BATCH = 32
DEFAULT_EPOCHS = 50
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


def add_arguments(parser):
    parser.add_argument("--data", metavar="FILE", help="FILE.npz (arrays X and Y) or a delimited text file "
                                                       "(.csv, .tsv, .txt); default: the built-in task")
    parser.add_argument("--target-columns", metavar="COLS",
                        help="text files only: comma-separated target columns, 0-based indices or header names "
                             "(default: the last)")
    parser.add_argument("--delimiter", metavar="CHAR", help=cli_text.DELIMITER_HELP)
    parser.add_argument("--samples", type=int, default=BUILTIN_SAMPLES,
                        help=f"built-in task only: samples drawn, validation share included (default {BUILTIN_SAMPLES})")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of the samples held out for validation (default 0.2; 0 for none)")
    parser.add_argument("--layers", metavar="SIZES",
                        help="layer sizes, e.g. 2,32,32,1 (default: inputs,32,32,outputs of the data)")
    parser.add_argument("--init", metavar="MODEL.npz",
                        help="continue training this saved network (its sizes, activations, loss, optimizer and "
                             "its state, dtype and precision; options that contradict the file are errors)")
    parser.add_argument("--activation", choices=activations.HIDDEN, help="hidden activation (default sigmoid)")
    parser.add_argument("--output-activation", choices=activations.OUTPUT, help="output activation (default identity)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"passes over the training data (default {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"mini-batch size (default {DEFAULT_BATCH})")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    parser.add_argument("--loss", choices=losses.NAMES,
                        help="mse (default), softmax_cross_entropy (class labels) or sigmoid_binary_cross_entropy; "
                             "the classification losses use the built-in spirals when no --data is given")
    parser.add_argument("--optimizer", choices=optimizers.NAMES, help="sgd (default), momentum or adam")
    parser.add_argument("--momentum", type=float, help="momentum optimizer: μ (default 0.9)")
    parser.add_argument("--nesterov", action="store_true", default=None, help="momentum optimizer: Nesterov's variant")
    parser.add_argument("--beta1", type=float, help="adam: β₁ (default 0.9)")
    parser.add_argument("--beta2", type=float, help="adam: β₂ (default 0.999)")
    parser.add_argument("--eps", type=float, help="adam: ε (default 1e-8)")
    parser.add_argument("--weight-decay", type=float, help="L2 term added to the gradient, as torch.optim (default 0)")
    parser.add_argument("--patience", type=int,
                        help="early stopping: stop when the validation loss has not improved for this many epochs, "
                             "and keep the best epoch's parameters (needs a validation share)")
    add_backend_argument(parser)
    parser.add_argument("--dtype", choices=DTYPES, help="default float32")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="GEMM arithmetic: fp32 (default) or tf32 (TF32 tensor cores; needs --dtype float32; "
                             "float32 where the device has none)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the built-in data, the split, the initial weights and the shuffling (default 0)")
    parser.add_argument("--save", metavar="MODEL.npz", help="save the trained network (gpubackprop.MLP.load reads it back)")
    parser.add_argument("--plot", metavar="LOSS.png", help="draw the loss (and accuracy) per epoch, also when "
                                                           "training is interrupted or fails (needs matplotlib: "
                                                           + extras.install_hint("plot").replace("%", "%%") + ")")
    parser.add_argument("--log-every", type=int, metavar="N",
                        help="print every N-th epoch's row in the table, with the first and the last (1: every "
                             "epoch; default: every epoch up to 20 epochs, else about ten rows)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress line (default: only when stderr is a terminal)")


# ---------------------------------------------------------------------- data
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


def classification_targets(path, Y, loss, classes=None):
    """Y of a data file as the loss takes it: for softmax cross-entropy one column of integer labels
    becomes (labels, classes): max label + 1 classes, or ``classes`` (the outputs of an --init
    network: the labels must be below it); otherwise Y as it is, with its column count."""
    if loss == "softmax_cross_entropy" and Y.shape[1] == 1:
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


def _data_file(path):
    """(Path, lower-case suffix) of an existing regular file; DataError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} " + ("is not a regular file" if path.exists() else "does not exist"))
    return path, path.suffix.lower()


def load_data(path, target_columns=None, delimiter=None):
    """(X, Y, dialect) with X and Y as 2-D float64 arrays from an .npz or delimited text file
    (.csv, .tsv, .txt: see ``cli_text``); dialect: how a text file was read (None for .npz);
    DataError saying what is wrong."""
    path, suffix = _data_file(path)
    dialect = None
    if suffix == ".npz":
        if target_columns is not None or delimiter is not None:
            raise DataError(f"{'--target-columns' if target_columns is not None else '--delimiter'} applies to text "
                            f"files only; an .npz file names its arrays X and Y")
        X, Y = _load_npz(path)
    elif suffix in cli_text.SUFFIXES:
        X, Y, dialect = _load_csv(path, target_columns, delimiter)
    else:
        raise DataError(f"data file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; use .npz (arrays X, Y) "
                        f"or delimited text ({', '.join(cli_text.SUFFIXES)})")
    X, Y = _check_shapes(path, X, Y)
    return X, Y, dialect


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
    """(X, Y, dialect) of a delimited text file (``cli_text.read_table``), split by ``target_columns``."""
    table = _read_text(path, delimiter)
    width = table.values.shape[1]
    if width < 2:
        raise DataError(f"{path} ({table.dialect}): need at least 2 columns (features and targets), got {width}; "
                        f"--delimiter names the delimiter if it was not found")
    targets = _target_indices(path, target_columns, table.header, width)
    features = [c for c in range(width) if c not in targets]
    if not features:
        raise DataError(f"{path}: every column is a target; leave at least one feature column")
    return table.values[:, features], table.values[:, targets], table.dialect


def _read_text(path, delimiter=None):
    try:
        return cli_text.read_table(path, cli_text.parse_delimiter(delimiter))
    except cli_text.TextDataError as exc:
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


def parse_sizes(spec):
    try:
        return [int(part) for part in spec.split(",")]
    except ValueError:
        raise DataError(f"--layers must be comma-separated ints such as 2,32,32,1, got {spec!r}") from None


def parse_layers(spec, n_in, n_out):
    if spec is None:
        return [n_in, *DEFAULT_HIDDEN, n_out]
    sizes = parse_sizes(spec)
    if len(sizes) < 2 or sizes[0] != n_in or sizes[-1] != n_out:
        raise DataError(f"--layers {spec} does not fit the data: it has {n_in} input and {n_out} output "
                        f"columns, so the layers must read {n_in},...,{n_out}")
    return sizes


# ---------------------------------------------------------------------- plot
LOSS_LABELS = {"mse": "loss  L = 1/(2B) Σ (ŷ − y)²", "softmax_cross_entropy": "loss  −1/B Σ y log softmax(z)",
               "sigmoid_binary_cross_entropy": "loss  binary cross-entropy"}


def plot_history(history, path, title, loss="mse"):
    """Training (and validation) loss per epoch, log scale, and beside it the accuracy when the
    history has one (classification losses); written to ``path`` (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with_accuracy = bool(history.accuracy)
    fig = Figure(figsize=(11.0 if with_accuracy else 6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    epochs = history["epoch"]
    ax = axes[0]
    ax.plot(epochs, history["loss"], marker="o", markersize=2.5, label="training loss (mean over the epoch's steps)")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, marker="s", markersize=2.5, label="validation loss (end of epoch)")
    if history.best_epoch is not None:
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch ({history.best_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(LOSS_LABELS[loss])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if with_accuracy:
        ax = axes[1]
        ax.plot(epochs, [100 * a for a in history.accuracy], marker="o", markersize=2.5,
                label="training accuracy (over the epoch's steps)")
        if history.val_accuracy:
            ax.plot(epochs, [100 * a for a in history.val_accuracy], marker="s", markersize=2.5,
                    label="validation accuracy (end of epoch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    files.write_atomically(path, lambda handle: fig.savefig(handle, format=plot_format(path)), what="the plot")


def plot_format(path) -> str:
    """The image format matplotlib writes for the suffix of ``path``; UsageError for one it cannot."""
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower()[1:]
    if suffix not in supported:
        raise UsageError(f"--plot {path}: matplotlib cannot write {'.' + suffix if suffix else 'a file without a suffix'!r}"
                         f"; use one of {', '.join('.' + name for name in sorted(supported))}")
    return suffix


# ---------------------------------------------------------------------- main
def main(args) -> int:
    stdout = sys.stdout  # silenced on the ranks other than 0 of a data-parallel run (see _run)
    try:
        return _run(args)
    except UsageError as exc:
        print(one_line(f"gpubackprop train: error: {exc}"), file=sys.stderr)
        return 2
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout


# What the options default to without --init; with it, what they leave out comes from the checkpoint.
_DEFAULTS = {"activation": "sigmoid", "output_activation": "identity", "loss": "mse", "optimizer": "sgd",
             "dtype": "float32", "precision": "fp32"}
_OPTIMIZER_SETTINGS = ("momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _resolve_options(args):
    """Fill the options left out: from --init's checkpoint (returned, read and checked; an option
    that contradicts it is a UsageError), else from ``_DEFAULTS`` (None returned)."""
    if args.init is None:
        for key, value in _DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        return None
    try:
        saved = checkpoint.read(args.init)
    except CheckpointError as exc:
        raise UsageError(f"--init: {exc}") from None
    kept = {"activation": saved["hidden_activation"], "output_activation": saved["output_activation"],
            "loss": saved["loss"], "optimizer": saved["optimizer"].name, "dtype": saved["dtype"],
            "precision": saved["precision"]}
    for key, value in kept.items():
        given = getattr(args, key)
        if given is not None and given != value:
            raise UsageError(f"{_flag(key)} {given} contradicts --init {args.init}, which holds {value}; "
                             f"leave {_flag(key)} out to continue that network")
        setattr(args, key, value)
    for key in _OPTIMIZER_SETTINGS:
        if getattr(args, key) is not None:
            raise UsageError(f"{_flag(key)}: with --init the optimizer and its settings come from {args.init} "
                             f"({saved['optimizer'].describe()}); leave {_flag(key)} out")
    return saved


def _init_sizes(args, saved, n_in, n_out):
    """The checkpoint's layer sizes, checked against --layers and the data."""
    sizes = saved["layer_sizes"]
    if args.layers is not None and parse_sizes(args.layers) != sizes:
        raise UsageError(f"--layers {args.layers} contradicts --init {args.init}, which holds "
                         f"{','.join(map(str, sizes))}; leave --layers out to continue that network")
    if (sizes[0], sizes[-1]) != (n_in, n_out):
        raise DataError(f"--init {args.init} takes {sizes[0]} input(s) and gives {sizes[-1]} output(s), but the data "
                        f"has {n_in} feature column(s) and needs {n_out} output(s)")
    return sizes


def _row(record) -> str:
    val_text = f"  val {record['val_loss']:.3e}" if "val_loss" in record else ""
    acc_text = "".join(f"  {name} {100 * record[key]:.2f}%" for key, name in
                       (("accuracy", "acc"), ("val_accuracy", "val acc")) if key in record)
    return (f"epoch {record['epoch']:4d}  loss {record['loss']:.3e}{val_text}{acc_text}  "
            f"{record['seconds']:.3f} s  {record['samples_per_s']:,.0f} samples/s")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _network_from(saved, backend):
    """The network of --init's checkpoint, from its content read once by ``checkpoint.read`` (as
    ``MLP.load`` builds it from the same content): parameters and optimizer state as saved."""
    net = MLP(saved["layer_sizes"], hidden_activation=saved["hidden_activation"],
              output_activation=saved["output_activation"], loss=saved["loss"], optimizer=saved["optimizer"],
              dtype=saved["dtype"], precision=saved["precision"], backend=backend, seed=0)
    net.set_params(saved["params"])
    if saved["optimizer_state"] is not None:
        net.set_optimizer_state(saved["optimizer_state"])
    return net


def table_step(epochs: int, log_every=None) -> int:
    """Every how many epochs the table shows a row (with the first and the last): ``--log-every``,
    else 1 up to 20 epochs, else epochs // 10 (about ten rows)."""
    if log_every is not None:
        return log_every
    return 1 if epochs <= 20 else max(1, epochs // 10)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _held_epoch(history, clean: bool):
    """(the epoch whose parameters the network holds, or None when it holds those after the last
    complete step of an unfinished epoch; whether they were restored as the best epoch's)."""
    restored = getattr(history, "restored_best", None)
    if restored is None:  # a library without History.restored_best: it restored only on a clean end
        restored = clean and history.best_epoch is not None and history.best_epoch != len(history)
    if restored:
        return history.best_epoch, True
    return (len(history) if clean and len(history) else None), False


def _final_line(history, held, restored, why, n_train) -> str:
    """The metrics of the network that is saved: those of the epoch whose parameters it holds."""
    record = history.records[(held or len(history)) - 1]
    first, loss = history.loss[0], record["loss"]
    if 0 < loss <= first:
        metrics = f"train loss {loss:.3e} ({first / loss:.1f}x below the first epoch's {first:.3e})"
    elif loss > first:
        metrics = f"train loss {loss:.3e} ({loss / first:.3g}x above the first epoch's {first:.3e})"
    else:
        metrics = f"train loss {loss:.3e}"
    if "val_loss" in record:
        metrics += f", val loss {record['val_loss']:.3e}"
    if "val_accuracy" in record:
        metrics += f", val accuracy {100 * record['val_accuracy']:.2f}%"
    seconds = sum(history["seconds"])
    speed = (f"; {n_train * len(history) / seconds:,.0f} samples/s " if seconds > 0 else "; ") + \
        f"({_plural(len(history), 'epoch')} in {seconds:.2f} s)"
    if restored:
        return f"final: epoch {held}'s network (the best: lowest validation loss), restored when {why}: {metrics}{speed}"
    if held is None:
        return (f"final: the network after its last complete step ({why}); the last complete epoch, {len(history)}, "
                f"had {metrics}{speed}")
    return f"final: {metrics}{speed}"


def _run(args) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(f"--plot needs matplotlib: {extras.install_hint('plot')}") from None
    if args.log_every is not None and args.log_every < 1:
        raise UsageError(f"--log-every must be a positive number of epochs, got {args.log_every}")
    # Every output checked completely before the training, not after it
    check_outputs(("--save", args.save), ("--plot", args.plot))
    if args.plot:
        plot_format(args.plot)
    for flag, path in (("--save", args.save), ("--plot", args.plot)):
        check_not_input(flag, path, [("--data", args.data)])
    saved = _resolve_options(args)

    if args.precision == "tf32" and args.dtype != "float32":
        raise UsageError(f"--precision tf32 needs --dtype float32 (TF32 tensor cores multiply float32 data), "
                         f"got --dtype {args.dtype}")

    classify = losses.TABLE[args.loss].classification
    if saved is not None:
        optimizer = saved["optimizer"]
    else:
        try:
            optimizer = optimizers.configure(args.optimizer, momentum=args.momentum, nesterov=args.nesterov,
                                             beta1=args.beta1, beta2=args.beta2, eps=args.eps,
                                             weight_decay=args.weight_decay)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    if args.patience is not None and args.patience < 1:
        raise UsageError(f"--patience must be a positive number of epochs, got {args.patience}")
    if args.patience is not None and args.val_fraction == 0:
        raise UsageError("--patience watches the validation loss: keep a --val-fraction above 0")

    if args.data:
        X, Y, dialect = load_data(args.data, args.target_columns, args.delimiter)
        source = f"{args.data}" + (f" ({dialect})" if dialect else "")
        data_shapes = f"X {X.shape}, Y {Y.shape}"
        # with --init the sizes come from the file: labels must be below its outputs
        Y, n_out = classification_targets(args.data, Y, args.loss,
                                          classes=None if saved is None else saved["layer_sizes"][-1])
    else:
        for flag, value in (("--target-columns", args.target_columns), ("--delimiter", args.delimiter)):
            if value is not None:
                raise DataError(f"{flag} needs --data FILE (a text file)")
        if classify:
            X, Y = builtin_spirals(args.samples, args.seed)
            n_out = SPIRAL_CLASSES
            if args.loss == "sigmoid_binary_cross_entropy":
                Y = one_hot(Y, SPIRAL_CLASSES)  # one yes/no output per arm
            source = (f"built-in task: {SPIRAL_CLASSES} interleaved spirals (radius {BUILTIN_RANGE:g}, "
                      f"{SPIRAL_TURNS:g} turns, noise {SPIRAL_NOISE:g}), seed {args.seed}")
        else:
            X, Y = builtin_task(args.samples, args.seed)
            n_out = Y.shape[1]
            source = (f"built-in task z = sin(x)·cos(y) + N(0, {BUILTIN_NOISE}²), x, y ~ U(-{BUILTIN_RANGE:g}, "
                      f"{BUILTIN_RANGE:g}), seed {args.seed}")
        data_shapes = None
    (X_train, Y_train), val = split(X, Y, args.val_fraction, args.seed)
    sizes = parse_layers(args.layers, X.shape[1], n_out) if saved is None else _init_sizes(args, saved, X.shape[1], n_out)
    n_train, n_val = X_train.shape[0], 0 if val is None else val[0].shape[0]

    comm, backend_spec = None, args.backend
    if distributed.launched_world_size() > 1:  # under mpiexec: every rank trains on its shard
        comm = distributed.init()
        if not comm.is_root:
            sys.stdout = open(os.devnull, "w")  # rank 0 alone reports (main puts stdout back)
        if (backend_spec or os.environ.get(ENV_VAR) or "auto") in ("auto", "cupy"):  # each rank on the GPU
            backend_spec = comm.device()  # of its local rank, if any
        try:
            X_train, Y_train = comm.shard(X_train, Y_train)
            val = None if val is None else comm.shard(*val)
        except ValueError as exc:
            raise DataError(f"{exc} (see --samples, the data file, --val-fraction)") from None
    root = comm is None or comm.is_root

    output_activation = args.output_activation
    if classify and output_activation != "identity":
        raise UsageError(f"--loss {args.loss} takes logits: leave --output-activation at identity "
                         f"(the {args.loss.split('_')[0]} lives in the loss)")
    if saved is not None:
        net = _network_from(saved, backend_spec)  # the file was read once, by _resolve_options
    else:
        net = MLP(sizes, hidden_activation=args.activation, output_activation=output_activation, loss=args.loss,
                  optimizer=optimizer, dtype=args.dtype, precision=args.precision, backend=backend_spec,
                  seed=args.seed)
    backend = net.backend
    print(f"backend: {describe(backend)}")
    if comm is not None:
        sync = comm.gradient_sync(backend)
        print(f"data-parallel: {comm.world_size} ranks (MPI), gradients all-reduced by {sync.name}"
              + (f" ({sync.transport.reason})" if getattr(sync.transport, "reason", None) else "")
              + f", batch {args.batch_size} per rank")
    print(f"data: {source}{': ' + data_shapes if data_shapes else ''}; {n_train} training, {n_val} validation samples")
    print(f"network: {'-'.join(map(str, sizes))}, {args.activation} hidden, {output_activation} output, loss {args.loss}, "
          f"{args.dtype}, precision {net.precision_note}" + (f", from {args.init}" if saved is not None else "")
          + f"; {optimizer.describe()} lr {lr:g}, batch {args.batch_size}, {_plural(args.epochs, 'epoch')}"
          + (f", early stopping after {_plural(args.patience, 'epoch')} without improvement" if args.patience else ""),
          flush=True)

    # The table: the first and last epochs and every `every`-th (said when not every epoch is shown).
    # Under a pipe or in a log each row is printed as its epoch ends; on a terminal the progress
    # line shows the epochs live and the table comes at the end.
    every = table_step(args.epochs, args.log_every)
    if every > 1:
        print(f"table: epoch 1, every {_ordinal(every)} epoch and the last (--log-every 1 shows every epoch)")
    shown = lambda record: record["epoch"] in (1, args.epochs) or record["epoch"] % every == 0
    streaming = not sys.stdout.isatty()
    completed = training.History()  # the complete epochs, as they end: kept whatever way fit ends

    def on_epoch(record):
        completed.records.append(record)
        if streaming and shown(record):
            print(_row(record), flush=True)

    interrupted = failure = None
    history = None
    try:
        history = net.fit(X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                          seed=args.seed, progress=args.progress, validation_data=val, patience=args.patience,
                          on_epoch=on_epoch, comm=comm)
    except TrainingInterrupted as exc:
        history, interrupted = exc.history, exc.epoch
    except Exception as exc:  # noqa: BLE001 - what fit measured is reported and plotted, then the error
        history, failure = getattr(exc, "history", None), exc
        if history is None:  # a library whose errors do not carry it: the epochs seen by on_epoch
            history = completed
            if args.patience is not None and completed.val_loss:
                history.best_epoch = 1 + min(range(len(completed)), key=completed.val_loss.__getitem__)
        if not len(history) and not isinstance(exc, (NonFiniteLossError, DistributedError)):
            raise  # before any epoch ended: nothing to report (main prints it in one line)

    if history is not None:
        for record in history:
            last = record is history.records[-1] and (interrupted is not None or failure is not None
                                                      or history.stopped_early)
            if (not streaming and shown(record)) or (last and not (streaming and shown(record))):
                print(_row(record))  # (streamed rows are out already)
    clean = interrupted is None and failure is None
    held, restored = _held_epoch(history, clean) if history is not None else (None, False)
    if interrupted is not None:
        why = f"training was interrupted in epoch {interrupted}"
    elif failure is not None:
        why = f"training {'diverged' if isinstance(failure, NonFiniteLossError) else 'failed'} in epoch " \
              f"{getattr(failure, 'epoch', None) or len(history) + 1}"
    elif history.stopped_early:
        why = f"the patience ran out after epoch {len(history)}"
        print(f"early stopping: no improvement for {_plural(args.patience, 'epoch')} after epoch {history.best_epoch}; "
              f"kept epoch {history.best_epoch}'s parameters (validation loss {history.val_loss[history.best_epoch - 1]:.3e})")
    else:
        why = f"the epochs ran out after epoch {len(history)}"

    # What is saved: on a clean end or Ctrl-C the network as it is; after a failure only a restored
    # best epoch (the parameters of a diverging run are not worth a file, nor a ruined one's).
    save = args.save and root and (failure is None or (restored and isinstance(failure, NonFiniteLossError)))
    if save:
        net.save(args.save)
        if restored:
            what = f" (epoch {held}'s parameters, the best, restored when {why})"
        elif interrupted is not None:
            what = (f" (interrupted in epoch {interrupted}, after {_plural(len(history), 'complete epoch')}: "
                    f"the parameters after its last complete step)")
        else:
            what = ""
        print(f"saved the network to {args.save}{what}")
    if args.plot and root and history is not None and len(history):
        title = (f"gpubackprop train: {'-'.join(map(str, sizes))} {args.activation}, {args.loss}, {args.dtype}, "
                 f"{optimizer.name} lr {lr:g}, batch {args.batch_size}" + ("" if clean else f" ({why})")
                 + f"\n{source}; backend {backend.describe()}")
        plot_history(history, args.plot, title, loss=args.loss)
        print(f"saved the {'loss and accuracy curves' if history.accuracy else 'loss curve'} to {args.plot}")
    if len(history):
        print(_final_line(history, held, restored, why, n_train))

    if interrupted is not None:
        where = f"interrupted in epoch {interrupted}, after {_plural(len(history), 'complete epoch')}"
        print(f"gpubackprop train: {where}" + ("" if args.save else "; nothing saved (no --save)"), file=sys.stderr)
        return 130
    if failure is not None:
        unsaved = "" if save or not args.save else f"; nothing saved to {args.save}"
        if isinstance(failure, NonFiniteLossError):
            print(one_line(f"gpubackprop train: error: training diverged: {failure}; try a smaller --lr{unsaved}"),
                  file=sys.stderr)
            return 1
        if isinstance(failure, DistributedError):  # the ranks disagree, or one of them failed
            print(one_line(f"gpubackprop train: error: {failure}{unsaved}"), file=sys.stderr)
            return 1
        raise failure
    return 0
