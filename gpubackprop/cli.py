"""The ``gpubackprop`` command: demo (the lesson, checked), info (what is installed and usable),
and the commands of their own modules (train, bench), each with ``add_arguments(parser)`` and
``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import platform
import sys

import numpy

from . import __version__, cli_bench, cli_train, lesson
from .backends import available_backends, describe, get_backend, probe_cupy

BACKEND_HELP = "auto (default), numpy, cupy (the first GPU) or cupy:N"


# ---------------------------------------------------------------------- demo
def add_demo_arguments(parser):
    parser.add_argument("--backend", default="auto", help=BACKEND_HELP)


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
    return 0


# name -> (one-line help, add_arguments, handler)
COMMANDS = {
    "demo": ("run the lesson's 2-2-1 example and check every printed number", add_demo_arguments, demo),
    "info": ("versions, available backends, and why a missing one is missing", lambda parser: None, info),
    "bench": ("throughput: train_step beside its GEMM floor and PyTorch eager, per size",
              cli_bench.add_arguments, cli_bench.main),
    "train": ("train an MLP on a data file or the built-in task; report, save, plot the loss",
              cli_train.add_arguments, cli_train.main),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="gpubackprop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(cmd)
        cmd.set_defaults(handler=handler)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"gpubackprop {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
