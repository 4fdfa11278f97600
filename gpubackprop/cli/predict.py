"""``gpubackprop predict``: the outputs of a saved network for every row of a data file.

``--model MODEL.npz`` is a checkpoint (``gpubackprop train --save``, ``MLP.save``); ``--data`` an
.npz file with an array ``X`` or a delimited text file (.csv, .tsv, .txt; see ``cli_text``: the
delimiter detected or ``--delimiter``) whose columns are the inputs (``--target-columns`` leaves
some out, e.g. the targets of a training file). ``--out`` FILE.npz (array ``Y``) or a text file
(.csv comma-, .tsv tab-, .txt space-separated, with a header) receives the outputs, written
atomically (``files.write_atomically``) and only once all of them are computed; without ``--out``
they go to stdout as CSV. The header names the columns after the training targets when the
checkpoint keeps their names (``gpubackprop train`` on a text file with a header), else y0, y1, .... For a network trained with a classification loss, ``--output
probabilities`` or ``--output classes`` gives those instead of the raw outputs (logits).
"""
from __future__ import annotations

import io
import sys

import numpy

from .. import checkpoint, losses, validation
from ..backends import describe
from ..errors import CheckpointError
from . import text as cli_text
from .common import UsageError, add_backend_argument, check_not_input, check_outputs, replace_atomically
from .data import DataError, load_features
from .options import network_from


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="MODEL.npz", help="the saved network")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="FILE.npz (array X) or a delimited text file of the inputs (.csv, .tsv, .txt)")
    parser.add_argument("--target-columns", metavar="COLS",
                        help="text files only: comma-separated columns to leave out, 0-based indices or header names")
    parser.add_argument("--delimiter", metavar="CHAR", help=cli_text.DELIMITER_HELP)
    parser.add_argument("--out", metavar="FILE", help="FILE.npz (array Y) or a text file (.csv, .tsv, .txt: comma, tab, "
                                                      "space); default: CSV on stdout")
    parser.add_argument("--output", choices=("values", "probabilities", "classes"), default="values",
                        help="values (default: the network's outputs; logits for a classification loss), or for a "
                             "classification loss the probabilities or the predicted classes")
    parser.add_argument("--batch-size", type=int, help="rows computed at a time (default: chunks of about 16 MiB)")
    add_backend_argument(parser)


# --out's formats: .npz (array Y) and the text formats --data reads, each with its delimiter
OUT_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": " "}


def _writer(path, names=None):
    """``write(Y, handle)`` for ``--out path`` by its suffix; UsageError for one it cannot write."""
    suffix = ("." + str(path).lower().rsplit(".", 1)[-1]) if "." in str(path) else ""
    if suffix == ".npz":
        return lambda Y, handle: numpy.savez(handle, Y=Y)
    if suffix in OUT_DELIMITERS:
        return lambda Y, handle: _write_text(Y, handle, OUT_DELIMITERS[suffix], names)
    raise UsageError(f"--out {path}: unknown format {suffix or '(no suffix)'!r}; use FILE.npz (array Y) or a text "
                     f"file ({', '.join(OUT_DELIMITERS)}: comma-, tab- or space-separated)")


def column_names(count: int, names=None) -> list:
    """The header of ``count`` output columns: the training targets' names kept in the checkpoint
    (one per column; one label column's name numbered per class), else y0, y1, ..."""
    if names and len(names) == count:
        return list(names)
    if names and len(names) == 1:
        return [f"{names[0]}_{j}" for j in range(count)]
    return [f"y{j}" for j in range(count)]


def _write_text(Y, handle, delimiter=",", names=None):
    Y = Y.reshape(len(Y), -1)  # classes of a softmax network: one column
    header = delimiter.join(column_names(Y.shape[1], names))
    fmt = "%d" if Y.dtype.kind in "iu" else "%.9g" if Y.dtype == numpy.float32 else "%.17g"  # every digit
    if isinstance(handle, io.TextIOBase):
        numpy.savetxt(handle, Y, delimiter=delimiter, header=header, comments="", fmt=fmt)
    else:  # the binary file of files.write_atomically
        numpy.savetxt(handle, Y, delimiter=delimiter, header=header, comments="", fmt=fmt, encoding="utf-8")


def main(args) -> int:
    if args.batch_size is not None:
        try:
            validation.positive_int("--batch-size", args.batch_size)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.out:
        check_outputs(("--out", args.out))
        _writer(args.out)  # its format checked before any work
        check_not_input("--out", args.out, [("--data", args.data), ("--model", args.model)])
    try:
        saved = checkpoint.read(args.model)  # as MLP.load reads it, keeping the optional target names
    except CheckpointError as exc:
        raise UsageError(f"--model: {exc}") from None
    net, names = network_from(saved, args.backend), saved["target_names"]
    if args.output != "values" and net.loss not in losses.CLASSIFICATION:
        raise UsageError(f"--output {args.output} needs a network trained with a classification loss "
                         f"({', '.join(losses.CLASSIFICATION)}); {args.model} was trained with {net.loss}")
    X, dialect = load_features(args.data, args.target_columns, args.delimiter)
    if X.shape[1] != net.layer_sizes[0]:
        raise DataError(f"{args.data} has {X.shape[1]} input column(s) but the network {args.model} takes "
                        f"{net.layer_sizes[0]} ({'-'.join(map(str, net.layer_sizes))})"
                        + ("; leave the target columns out with --target-columns" if X.shape[1] > net.layer_sizes[0] else ""))
    Y = net.predict(X, batch_size=args.batch_size)
    if args.output == "probabilities":
        Y = losses.probabilities(net.loss, Y)
    elif args.output == "classes":
        Y = losses.classes(net.loss, Y)
    if Y.dtype.kind == "f" and not numpy.isfinite(Y).all():
        print(f"gpubackprop predict: warning: {int((~numpy.isfinite(Y)).sum())} output(s) are NaN/Inf "
              f"(inputs far outside what the network was trained on?)", file=sys.stderr)
    if not args.out:
        if dialect is not None and not dialect.startswith("','-separated (detected)"):
            print(f"gpubackprop predict: read {args.data} as {dialect}", file=sys.stderr)  # (stdout holds the outputs)
        _write_text(Y, sys.stdout, ",", names)
        return 0
    write = _writer(args.out, names)
    replace_atomically(args.out, lambda handle: write(Y, handle), what="the predictions")
    print(f"backend: {describe(net.backend)}; {X.shape[0]} rows of {args.data}" + (f" ({dialect})" if dialect else "")
          + f" through {'-'.join(map(str, net.layer_sizes))}; wrote {args.out}")
    return 0
