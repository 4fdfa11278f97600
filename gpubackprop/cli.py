"""The ``gpubackprop`` command: demo (the lesson, checked), info (what is installed and usable).

Other commands register themselves in COMMANDS: (module, one-line help), each module with
``add_arguments(parser)`` and ``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys

COMMANDS = {
    "demo": ("gpubackprop.cli", "run the lesson's 2-2-1 example and check every printed number"),
    "info": ("gpubackprop.cli", "versions, available backends, and why a missing one is missing"),
    "bench": ("gpubackprop.cli_bench", "throughput: train_step beside its GEMM floor and PyTorch eager, per size"),
    "train": ("gpubackprop.cli_train", "train an MLP on a data file or the built-in task; report, save, plot the loss"),
}


def describe_backend(backend) -> str:
    """'cupy (NVIDIA H200)' or 'numpy (CPU; CuPy not installed ...)' for header lines."""
    from .backends import probe_cupy

    if backend.name == "numpy":
        problem = probe_cupy(short=True)
        return f"numpy (CPU; {problem})" if problem else "numpy (CPU)"
    return f"{backend.name} ({backend.device_name()})"


# ---------------------------------------------------------------------- demo
def add_demo_arguments(parser):
    parser.add_argument("--backend", default="auto", help="auto (default), numpy or cupy")


def demo(args) -> int:
    from . import lesson
    from .backends import get_backend

    backend = get_backend(args.backend)
    print(f"backend: {describe_backend(backend)}")
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
    import numpy

    from . import __version__
    from .backends import available_backends, get_backend, probe_cupy

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
    print(f"auto selects: {describe_backend(get_backend('auto'))}")
    return 0


_HANDLERS = {"demo": (add_demo_arguments, demo), "info": (lambda parser: None, info)}


def build_parser():
    parser = argparse.ArgumentParser(prog="gpubackprop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if module_name == __name__:
            add_arguments, handler = _HANDLERS[name]
        else:
            module = importlib.import_module(module_name)
            add_arguments, handler = module.add_arguments, module.main
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
