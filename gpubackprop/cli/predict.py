"""``gpubackprop predict``: the outputs of a saved network for every row of a data file.

``--model MODEL.npz`` is a checkpoint (``gpubackprop train --save``, ``MLP.save``); ``--data`` an
.npz file with an array ``X`` or a delimited text file (.csv, .tsv, .txt; see ``cli_text``: the
delimiter detected or ``--delimiter``) whose columns are the inputs (``--target-columns`` leaves
some out, e.g. the targets of a training file). ``--out FILE.csv`` or ``FILE.npz`` (array
``Y``) receives the outputs, written atomically and only once all of them are computed; without
``--out`` they go to stdout as CSV. For a network trained with a classification loss, ``--output
probabilities`` or ``--output classes`` gives those instead of the raw outputs (logits).
"""
from __future__ import annotations

import sys

import numpy

from .. import losses
from ..backends import describe
from ..errors import CheckpointError
from ..model import MLP
from . import text as cli_text
from .common import UsageError, add_backend_argument, check_not_input, check_outputs, replace_atomically
from .data import DataError, load_features


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="MODEL.npz", help="the saved network")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="FILE.npz (array X) or a delimited text file of the inputs (.csv, .tsv, .txt)")
    parser.add_argument("--target-columns", metavar="COLS",
                        help="text files only: comma-separated columns to leave out, 0-based indices or header names")
    parser.add_argument("--delimiter", metavar="CHAR", help=cli_text.DELIMITER_HELP)
    parser.add_argument("--out", metavar="FILE", help="FILE.csv or FILE.npz (array Y); default: CSV on stdout")
    parser.add_argument("--output", choices=("values", "probabilities", "classes"), default="values",
                        help="values (default: the network's outputs; logits for a classification loss), or for a "
                             "classification loss the probabilities or the predicted classes")
    parser.add_argument("--batch-size", type=int, help="rows computed at a time (default: chunks of about 16 MiB)")
    add_backend_argument(parser)


def _writer(path):
    suffix = str(path).lower().rsplit(".", 1)[-1] if "." in str(path) else ""
    if suffix == "npz":
        return lambda Y, handle: numpy.savez(handle, Y=Y)
    if suffix == "csv":
        return lambda Y, handle: _write_csv(Y, handle)
    raise UsageError(f"--out {path}: unknown format; use FILE.csv or FILE.npz")


def _write_csv(Y, handle):
    Y = Y.reshape(len(Y), -1)  # classes of a softmax network: one column
    header = ",".join(f"y{j}" for j in range(Y.shape[1]))
    fmt = "%d" if Y.dtype.kind in "iu" else "%.9g" if Y.dtype == numpy.float32 else "%.17g"  # every digit
    numpy.savetxt(handle, Y, delimiter=",", header=header, comments="", fmt=fmt)


def main(args) -> int:
    write = None
    if args.out:
        check_outputs(("--out", args.out))
        write = _writer(args.out)
        check_not_input("--out", args.out, [("--data", args.data), ("--model", args.model)])
    try:
        net = MLP.load(args.model, backend=args.backend)
    except CheckpointError as exc:
        raise UsageError(f"--model: {exc}") from None
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
    if write is None:
        if dialect is not None and not dialect.startswith("','-separated (detected)"):
            print(f"gpubackprop predict: read {args.data} as {dialect}", file=sys.stderr)  # (stdout holds the outputs)
        _write_csv(Y, sys.stdout)
        return 0
    replace_atomically(args.out, lambda handle: write(Y, handle), what="the predictions")
    print(f"backend: {describe(net.backend)}; {X.shape[0]} rows of {args.data}" + (f" ({dialect})" if dialect else "")
          + f" through {'-'.join(map(str, net.layer_sizes))}; wrote {args.out}")
    return 0
