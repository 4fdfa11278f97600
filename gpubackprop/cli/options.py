"""The options of ``gpubackprop train``: declared (``add_arguments``), and filled from the defaults
(``gpubackprop.defaults``) or from ``--init``'s checkpoint, which is read once."""
from __future__ import annotations

import argparse

from .. import activations, checkpoint, defaults, extras, losses, optimizers
from ..errors import CheckpointError
from ..model import MLP
from ..validation import DTYPES, PRECISIONS
from . import text as cli_text
from .common import UsageError, add_backend_argument
from .data import BUILTIN_SAMPLES, DataError

# Defaults chosen so that the built-in task trains robustly: over 10 seeds, 50 epochs take the
# training loss 25-35x below the first epoch's (numpy backend, about 0.5 s on one CPU core).
DEFAULT_HIDDEN = defaults.CLI_HIDDEN  # the command line's defaults: gpubackprop.defaults
DEFAULT_LR = defaults.CLI_LR
DEFAULT_BATCH = defaults.CLI_BATCH_SIZE
DEFAULT_EPOCHS = defaults.CLI_EPOCHS
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
                        help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
                        + f", else {defaults.LR:g})")
    parser.add_argument("--loss", choices=losses.NAMES,
                        help="mse (default), softmax_cross_entropy (class labels) or sigmoid_binary_cross_entropy; "
                             "the classification losses use the built-in spirals when no --data is given")
    parser.add_argument("--optimizer", choices=optimizers.NAMES, help=f"{defaults.OPTIMIZER} (default), or " + ", ".join(n for n in optimizers.NAMES if n != defaults.OPTIMIZER))
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
# What the options default to without --init; with it, what they leave out comes from the checkpoint.
_DEFAULTS = {"activation": defaults.ACTIVATION, "output_activation": defaults.OUTPUT_ACTIVATION, "loss": defaults.LOSS,
             "optimizer": defaults.OPTIMIZER, "dtype": defaults.DTYPE, "precision": defaults.PRECISION}
_OPTIMIZER_SETTINGS = ("momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def resolve_options(args):
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


def init_sizes(args, saved, n_in, n_out):
    """The checkpoint's layer sizes, checked against --layers and the data."""
    sizes = saved["layer_sizes"]
    if args.layers is not None and parse_sizes(args.layers) != sizes:
        raise UsageError(f"--layers {args.layers} contradicts --init {args.init}, which holds "
                         f"{','.join(map(str, sizes))}; leave --layers out to continue that network")
    if (sizes[0], sizes[-1]) != (n_in, n_out):
        raise DataError(f"--init {args.init} takes {sizes[0]} input(s) and gives {sizes[-1]} output(s), but the data "
                        f"has {n_in} feature column(s) and needs {n_out} output(s)")
    return sizes


def network_from(saved, backend):
    """The network of --init's checkpoint, from its content read once by ``checkpoint.read`` (as
    ``MLP.load`` builds it from the same content): parameters and optimizer state as saved."""
    net = MLP(saved["layer_sizes"], hidden_activation=saved["hidden_activation"],
              output_activation=saved["output_activation"], loss=saved["loss"], optimizer=saved["optimizer"],
              dtype=saved["dtype"], precision=saved["precision"], backend=backend, seed=0)
    net.set_params(saved["params"])
    if saved["optimizer_state"] is not None:
        net.set_optimizer_state(saved["optimizer_state"])
    return net
