"""``gpubackprop train``: fit an MLP to a data file (or the built-in task), report, save, plot.

Data: ``--data FILE.npz`` with arrays ``X`` (samples, features) and ``Y`` (samples, targets) or
(samples,); ``--data`` a delimited text file (.csv, .tsv, .txt; the delimiter detected or
``--delimiter``: see ``cli.text``) with the targets picked by ``--target-columns`` (indices or header
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

import os
import sys
import types

import numpy

from .. import checkpoint, defaults, distributed, extras, losses, optimizers, training, validation
from ..backends import ENV_VAR, describe
from ..errors import DistributedError, NonFiniteLossError, TrainingInterrupted
from ..model import MLP
from ..validation import one_hot
from .common import UsageError, check_not_input, check_outputs, one_line
from .data import (BUILTIN_NOISE, BUILTIN_RANGE, SPIRAL_CLASSES, SPIRAL_NOISE, SPIRAL_TURNS, DataError,
                   builtin_spirals, builtin_task, classification_targets, load_data, split,
                   target_description)
from .options import DEFAULT_LR, add_arguments, init_sizes, network_from, parse_layers, resolve_options  # noqa: F401
from .report import final_line, held_epoch, ordinal, plot_format, plot_history, plural, row, table_step


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


def _run(args) -> int:
    """The command, in the order it happens: arguments, data, network, training, report."""
    run = types.SimpleNamespace(args=args)
    _check_arguments(run)
    _load_data(run)
    _distribute(run)
    _build_network(run)
    _print_header(run)
    _train(run)
    return _report(run)


def _check_arguments(run):
    """Everything checked before any data is read: the outputs, the options (filled from --init's
    checkpoint or the defaults), the optimizer and the learning rate."""
    args = run.args
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
    run.saved = saved = resolve_options(args)
    if args.precision == "tf32" and args.dtype != "float32":
        raise UsageError(f"--precision tf32 needs --dtype float32 (TF32 tensor cores multiply float32 data), "
                         f"got --dtype {args.dtype}")
    run.classify = losses.TABLE[args.loss].classification
    if saved is not None:
        run.optimizer = saved["optimizer"]
    else:
        try:
            run.optimizer = optimizers.configure(args.optimizer, momentum=args.momentum, nesterov=args.nesterov,
                                                 beta1=args.beta1, beta2=args.beta2, eps=args.eps,
                                                 weight_decay=args.weight_decay)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    run.lr = DEFAULT_LR.get(args.optimizer, defaults.LR) if args.lr is None else args.lr
    try:  # the library's rules, under the flags' names, before any output
        validation.positive_int("--epochs", args.epochs)
        validation.positive_int("--batch-size", args.batch_size)
        validation.check_lr(run.lr, numpy.dtype(args.dtype), name="--lr")
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.patience is not None and args.patience < 1:
        raise UsageError(f"--patience must be a positive number of epochs, got {args.patience}")
    if args.patience is not None and args.val_fraction == 0:
        raise UsageError("--patience watches the validation loss: keep a --val-fraction above 0")


def _load_data(run):
    """The data (a file or the built-in task), split into training and validation rows; the sizes."""
    args, saved = run.args, run.saved
    run.data_shapes = run.target_names = None
    if args.data:
        X, Y, dialect, run.target_names = load_data(args.data, args.target_columns, args.delimiter)
        run.source = f"{args.data}" + (f" ({dialect})" if dialect else "")
        run.data_shapes = f"X {X.shape}, Y {Y.shape}"
        # with --init the sizes come from the file: labels must be below its outputs
        Y, n_out = classification_targets(args.data, Y, args.loss,
                                          classes=None if saved is None else saved["layer_sizes"][-1],
                                          column=target_description(run.target_names, Y))
    else:
        for flag, value in (("--target-columns", args.target_columns), ("--delimiter", args.delimiter)):
            if value is not None:
                raise DataError(f"{flag} needs --data FILE (a text file)")
        if run.classify:
            X, Y = builtin_spirals(args.samples, args.seed)
            n_out = SPIRAL_CLASSES
            if args.loss == "sigmoid_binary_cross_entropy":
                Y = one_hot(Y, SPIRAL_CLASSES)  # one yes/no output per arm
            run.source = (f"built-in task: {SPIRAL_CLASSES} interleaved spirals (radius {BUILTIN_RANGE:g}, "
                          f"{SPIRAL_TURNS:g} turns, noise {SPIRAL_NOISE:g}), seed {args.seed}")
        else:
            X, Y = builtin_task(args.samples, args.seed)
            n_out = Y.shape[1]
            run.source = (f"built-in task z = sin(x)·cos(y) + N(0, {BUILTIN_NOISE}²), x, y ~ U(-{BUILTIN_RANGE:g}, "
                          f"{BUILTIN_RANGE:g}), seed {args.seed}")
    (run.X_train, run.Y_train), run.val = split(X, Y, args.val_fraction, args.seed)
    # what predicting without the inputs would score, on all the training rows (before any sharding)
    run.baseline = losses.constant_baseline(args.loss, run.Y_train, n_out)
    run.sizes = parse_layers(args.layers, X.shape[1], n_out) if saved is None else \
        init_sizes(args, saved, X.shape[1], n_out)
    run.n_train, run.n_val = run.X_train.shape[0], 0 if run.val is None else run.val[0].shape[0]


def _distribute(run):
    """Under mpiexec: every rank trains on its shard, on the device of its local rank; rank 0 reports."""
    args = run.args
    run.comm, run.backend_spec = None, args.backend
    if distributed.launched_world_size() > 1:
        run.comm = comm = distributed.init()
        if not comm.is_root:
            sys.stdout = open(os.devnull, "w")  # rank 0 alone reports (main puts stdout back)
        if (run.backend_spec or os.environ.get(ENV_VAR) or "auto") in ("auto", "cupy"):  # each rank on the GPU
            run.backend_spec = comm.device()  # of its local rank, if any
        try:
            run.X_train, run.Y_train = comm.shard(run.X_train, run.Y_train)
            run.val = None if run.val is None else comm.shard(*run.val)
        except ValueError as exc:
            raise DataError(f"{exc} (see --samples, the data file, --val-fraction)") from None
    run.root = run.comm is None or run.comm.is_root


def _build_network(run):
    args = run.args
    if run.classify and args.output_activation != "identity":
        raise UsageError(f"--loss {args.loss} takes logits: leave --output-activation at identity "
                         f"(the {args.loss.split('_')[0]} lives in the loss)")
    if run.saved is not None:
        run.net = network_from(run.saved, run.backend_spec)  # the file was read once, by _resolve_options
    else:
        run.net = MLP(run.sizes, hidden_activation=args.activation, output_activation=args.output_activation,
                      loss=args.loss, optimizer=run.optimizer, dtype=args.dtype, precision=args.precision,
                      backend=run.backend_spec, seed=args.seed)


def _print_header(run):
    args, net = run.args, run.net
    print(f"backend: {describe(net.backend)}")
    if run.comm is not None:
        sync = run.comm.gradient_sync(net.backend)
        print(f"data-parallel: {run.comm.world_size} ranks (MPI), gradients all-reduced by {sync.name}"
              + (f" ({sync.transport.reason})" if getattr(sync.transport, "reason", None) else "")
              + f", batch {args.batch_size} per rank")
    print(f"data: {run.source}{': ' + run.data_shapes if run.data_shapes else ''}; {run.n_train} training, "
          f"{run.n_val} validation samples")
    print(f"network: {'-'.join(map(str, run.sizes))}, {args.activation} hidden, {args.output_activation} output, "
          f"loss {args.loss}, {args.dtype}, precision {net.precision_note}"
          + (f", from {args.init}" if run.saved is not None else "")
          + f"; {run.optimizer.describe()} lr {run.lr:g}, batch {args.batch_size}, {plural(args.epochs, 'epoch')}"
          + (f", early stopping after {plural(args.patience, 'epoch')} without improvement" if args.patience else ""),
          flush=True)
    # The table: the first and last epochs and every `every`-th (said when not every epoch is shown).
    # Under a pipe or in a log each row is printed as its epoch ends; on a terminal the progress
    # line shows the epochs live and the table comes at the end.
    run.every = table_step(args.epochs, args.log_every)
    if run.every > 1:
        print(f"table: epoch 1, every {ordinal(run.every)} epoch and the last (--log-every 1 shows every epoch)")
    run.streaming = not sys.stdout.isatty()


def _shown(run, record) -> bool:
    return record["epoch"] in (1, run.args.epochs) or record["epoch"] % run.every == 0


def _train(run):
    """fit, with each epoch's row streamed as it ends; what fit measured is kept whatever way it ends."""
    args = run.args
    completed = training.History()  # the complete epochs, as they end: kept whatever way fit ends

    def on_epoch(record):
        completed.records.append(record)
        if run.streaming and _shown(run, record):
            print(row(record), flush=True)

    run.interrupted = run.failure = run.history = None
    try:
        run.history = run.net.fit(run.X_train, run.Y_train, epochs=args.epochs, batch_size=args.batch_size,
                                  lr=run.lr, seed=args.seed, progress=args.progress, validation_data=run.val,
                                  patience=args.patience, on_epoch=on_epoch, comm=run.comm)
    except TrainingInterrupted as exc:
        run.history, run.interrupted = exc.history, exc.epoch
    except Exception as exc:  # noqa: BLE001 - what fit measured is reported and plotted, then the error
        run.history, run.failure = getattr(exc, "history", None), exc
        if run.history is None:  # a library whose errors do not carry it: the epochs seen by on_epoch
            run.history = completed
            if args.patience is not None and completed.val_loss:
                completed.best_epoch = 1 + min(range(len(completed)), key=completed.val_loss.__getitem__)
        if not len(run.history) and not isinstance(exc, (NonFiniteLossError, DistributedError)):
            raise  # before any epoch ended: nothing to report (main prints it in one line)


def _report(run) -> int:
    """The table's remaining rows, why training ended, the save, the plot, the final line; the exit code."""
    args, history, interrupted, failure = run.args, run.history, run.interrupted, run.failure
    if history is not None:
        for record in history:
            last = record is history.records[-1] and (interrupted is not None or failure is not None
                                                      or history.stopped_early)
            if (not run.streaming and _shown(run, record)) or (last and not (run.streaming and _shown(run, record))):
                print(row(record))  # (streamed rows are out already)
    clean = interrupted is None and failure is None
    held, restored = held_epoch(history, clean) if history is not None else (None, False)
    why = _why(run)
    # What is saved: on a clean end or Ctrl-C the network as it is; after a failure only a restored
    # best epoch (the parameters of a diverging run are not worth a file, nor a ruined one's).
    save = args.save and run.root and (failure is None or (restored and isinstance(failure, NonFiniteLossError)))
    if save:
        _save(run, held, restored, why)
    if args.plot and run.root and history is not None and len(history):
        title = (f"gpubackprop train: {'-'.join(map(str, run.sizes))} {args.activation}, {args.loss}, {args.dtype}, "
                 f"{run.optimizer.name} lr {run.lr:g}, batch {args.batch_size}" + ("" if clean else f" ({why})")
                 + f"\n{run.source}; backend {run.net.backend.describe()}")
        plot_history(history, args.plot, title, loss=args.loss)
        print(f"saved the {'loss and accuracy curves' if history.accuracy else 'loss curve'} to {args.plot}")
    if len(history):
        print(final_line(history, held, restored, why, run.n_train, run.baseline, args.loss))
    return _exit_code(run, save)


def _why(run) -> str:
    """Why training ended (and, after early stopping, which epoch's parameters are kept)."""
    history, interrupted, failure = run.history, run.interrupted, run.failure
    if interrupted is not None:
        return f"training was interrupted in epoch {interrupted}"
    if failure is not None:
        return (f"training {'diverged' if isinstance(failure, NonFiniteLossError) else 'failed'} in epoch "
                f"{getattr(failure, 'epoch', None) or len(history) + 1}")
    if history.stopped_early:
        print(f"early stopping: no improvement for {plural(run.args.patience, 'epoch')} after epoch "
              f"{history.best_epoch}; kept epoch {history.best_epoch}'s parameters (validation loss "
              f"{history.val_loss[history.best_epoch - 1]:.3e})")
        return f"the patience ran out after epoch {len(history)}"
    return f"the epochs ran out after epoch {len(history)}"


def _save(run, held, restored, why):
    names = run.target_names or (run.saved or {}).get("target_names")
    checkpoint.save(run.net, run.args.save, target_names=names)  # MLP.save's writer, with the target names
    if restored:
        what = f" (epoch {held}'s parameters, the best, restored when {why})"
    elif run.interrupted is not None:
        what = (f" (interrupted in epoch {run.interrupted}, after {plural(len(run.history), 'complete epoch')}: "
                f"the parameters after its last complete step)")
    else:
        what = ""
    print(f"saved the network to {run.args.save}{what}")


def _exit_code(run, save) -> int:
    args, failure = run.args, run.failure
    if run.interrupted is not None:
        where = f"interrupted in epoch {run.interrupted}, after {plural(len(run.history), 'complete epoch')}"
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
