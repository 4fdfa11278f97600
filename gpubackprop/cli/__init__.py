"""The ``gpubackprop`` command: demo (the lesson, checked), info (what is installed and usable),
and the commands of their own modules (train, predict, bench), each with ``add_arguments(parser)``
and ``main(args) -> int``.

Exit codes: 0 done, 1 a check failed or training diverged, 2 a usage, data or memory error (one
line on stderr, never a traceback), 130 interrupted (Ctrl-C), 141 the reader of stdout went away
(``gpubackprop demo | head``: quietly, as a program killed by SIGPIPE).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy

from .. import __version__, lesson
from ..backends import ENV_VAR, available_backends, describe, get_backend, probe_cupy
from . import bench as cli_bench, predict as cli_predict, train as cli_train
from .common import add_backend_argument, one_line


# ---------------------------------------------------------------------- demo
def add_demo_arguments(parser):
    add_backend_argument(parser)


def demo(args) -> int:
    backend = get_backend(args.backend)
    print(f"backend: {describe(backend)}")
    print(f"dtype: float64; network {lesson.LAYER_SIZES}, sigmoid hidden layer, lr {lesson.LEARNING_RATE}")
    print(f"{'quantity':<10} {'computed':>12} {'lesson':>9}")
    failures = 0
    for label, computed, printed in lesson.run(backend):
        ok = abs(computed - printed) <= lesson.TOLERANCE
        failures += not ok
        print(f"{label:<10} {computed:>12.6f} {printed:>9.4f}  {'✓' if ok else '✗ differs by %.2g' % abs(computed - printed)}")
    total = len(lesson.PRINTED)
    if failures:
        print(f"FAILED: {failures} of {total} values differ from the lesson by more than {lesson.TOLERANCE}")
        return 1
    print(f"all {total} values match the lesson to within {lesson.TOLERANCE}")
    return 0


# ---------------------------------------------------------------------- info
def info(args) -> int:
    print(f"gpubackprop {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {numpy.__version__}")
    try:
        import cupy

        print(f"cupy {cupy.__version__}")
    except Exception as exc:
        print(f"cupy: not importable ({type(exc).__name__}: {exc})")
    print(f"backends available: {', '.join(available_backends())}")
    problem = probe_cupy()
    if problem:
        print(f"cupy backend unavailable: {problem}")
    print(f"auto selects: {describe(get_backend('auto'))}")
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        print(f"{ENV_VAR}={chosen} selects: {describe(get_backend(None))}")  # a bad value: an error, exit 2
    return 0


# name -> (one-line help, add_arguments, handler)
COMMANDS = {
    "demo": ("run the lesson's 2-2-1 example and check every printed number", add_demo_arguments, demo),
    "info": ("versions, available backends, and why a missing one is missing", lambda parser: None, info),
    "train": ("train an MLP on a data file or the built-in task (or continue a checkpoint: --init); "
              "report, save, plot the loss", cli_train.add_arguments, cli_train.main),
    "predict": ("the outputs of a saved network for the rows of a data file, to a file or stdout",
                cli_predict.add_arguments, cli_predict.main),
    "bench": ("throughput: train_step and fit beside the GEMM floor and PyTorch, per size",
              cli_bench.add_arguments, cli_bench.main),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gpubackprop", description="Multilayer perceptrons trained with the matrix form of backpropagation, "
        "on a CUDA GPU (CuPy) or the CPU (NumPy).",
        epilog="exit codes: 0 done, 1 a check failed or training diverged, 2 a usage, data or memory error, "
               "130 interrupted (Ctrl-C), 141 stdout closed early (a pipe)")
    parser.add_argument("--version", action="version", version=f"gpubackprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                title="commands", description=f"one of {', '.join(COMMANDS)}; "
                                f"'gpubackprop COMMAND --help' tells more")
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(cmd)
        cmd.set_defaults(handler=handler)
    return parser


def _stdout_gone() -> int:
    """The reader of stdout has gone (a closed pipe): end quietly. Point stdout at /dev/null so
    that the interpreter's last flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return 130
    prefix = f"gpubackprop {args.command}: error:"
    try:
        # The library already keeps NumPy quiet where its own checks report (training); the command
        # line never shows a NumPy warning anywhere (e.g. a prediction that overflows to Inf).
        with numpy.errstate(all="ignore"):
            code = args.handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is met now and not at exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        print(f"gpubackprop {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:  # numpy's _ArrayMemoryError says what it could not allocate
        print(one_line(f"{prefix} out of memory: {exc or type(exc).__name__}; use smaller sizes (--layers, "
                       f"--samples, --batch-size, the data)"), file=sys.stderr)
        return 2
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as exc:  # ImportError: mpi4py missing
        print(one_line(f"{prefix} {exc}"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
