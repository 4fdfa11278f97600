"""Where the NumPy backend's planned ``train_step`` spends its time, per benchmark size.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/profile_step.py [--sizes tiny,small,medium,large]
        [--dtype float32] [--steps-scale 1.0] [--calls]

One network per size (MSE + SGD, the benchmark's layers and batch, lr 1e-3, the guard on), trained
on the benchmark's data. Each bound call of the step's plan (``backends/numpy_plan.py``) is timed
in place, inside real steps (a clock read before and after each call: ~0.1 µs each, included);
the guard (‖g‖², ‖θ‖² and the bound) and the update are timed as the plan's ``check`` and
``apply``; the step itself is timed in uninstrumented steps alternated with those. Reported in
µs per step, medians over the steps:

- ``step``: ``train_step`` (uninstrumented);
- ``GEMMs``: the step's ``numpy.dot`` calls (forward X Wᵀ, ∂W = δᵀ X, ∂X = δ W, the bias gradient
  1ᵀ δ and the MSE's Σ d² as dots);
- ``elementwise``: every other call of the plan (bias add, activation forward and backward, the
  loss's gradient), in total and by ufunc (a cache-blocked run, ``numpy_blocks``, counts as one);
- ``guard`` and ``update``: the plan's check and apply;
- ``rest``: step − the above: the Python around the calls (argument checks, lock, error state,
  the status read back), by difference (the parts' medians include their clock reads, ~0.1 µs
  each: at tiny the rest is understated by ~2 µs, and medians may add up to slightly more than
  the step's).

``--calls`` lists every call. Timing noise: run on a quiet machine; the shares are what matters.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpubackprop.backends.numpy_blocks import BlockedRun  # noqa: E402
from gpubackprop.benchmark.cases import SIZES  # noqa: E402
from gpubackprop.benchmark.data import _data  # noqa: E402
from gpubackprop.model import MLP  # noqa: E402

STEPS = {"tiny": 4000, "small": 1500, "medium": 200, "large": 8}
clock = time.perf_counter_ns


def call_name(f):
    if isinstance(f, BlockedRun):
        return "blocked[" + "+".join(call_name(g) for g, _ in f.calls) + "]"
    return getattr(f, "__name__", None) or getattr(getattr(f, "func", None), "__name__", type(f).__name__)


def profile(size, dtype, scale):
    sizes, batch = SIZES[size]
    X, Y, _ = _data(sizes, batch, loss="mse")
    X, Y = numpy.ascontiguousarray(X, dtype), numpy.ascontiguousarray(Y, dtype)
    net = MLP(sizes, dtype=dtype, backend="numpy", seed=0)
    net.train_step(X, Y, 1e-3)
    plan = net.steps.workspaces[batch].recordings[("plan", True)]
    n = max(3, int(STEPS[size] * scale))
    times = collections.defaultdict(list)

    def timed(key, f):
        def run(*args):
            t = clock()
            f(*args)
            times[key].append(clock() - t)
        return run
    calls, check, apply = plan.calls, plan.check, plan.apply
    instrumented = ([(timed(i, f), args) for i, (f, args) in enumerate(calls)], timed("guard", check),
                    timed("update", apply))
    plain = []
    try:  # plain and instrumented steps alternated: the machine's noise lands alike in both
        for _ in range(n):
            t = clock()
            net.train_step(X, Y, 1e-3)
            plain.append(clock() - t)
            plan.calls, plan.check, plan.apply = instrumented
            net.train_step(X, Y, 1e-3)
            plan.calls, plan.check, plan.apply = calls, check, apply
    finally:
        plan.calls = calls
        plan.__dict__.pop("check", None)  # the class's methods again
        plan.__dict__.pop("apply", None)
    us = {k: statistics.median(v) / 1e3 for k, v in times.items()}
    step = statistics.median(plain) / 1e3
    by = collections.defaultdict(float)
    for i, (f, _) in enumerate(calls):
        by[call_name(f)] += us[i]
    gemms = by.pop("dot", 0.0)
    elementwise = sum(by.values())
    rest = step - gemms - elementwise - us["guard"] - us["update"]
    return step, gemms, elementwise, by, us, rest, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="tiny,small,medium,large")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the steps timed per size")
    parser.add_argument("--calls", action="store_true", help="also list every call of the plan")
    args = parser.parse_args(argv)
    print(f"numpy {numpy.__version__}; {args.dtype}; µs per step, medians; shares of the step in parentheses")
    print("| size | step | GEMMs | elementwise | guard | update | rest (Python) | elementwise by ufunc |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    listings = []
    for size in args.sizes.split(","):
        step, gemms, elementwise, by, us, rest, calls = profile(size, args.dtype, args.steps_scale)

        def cell(v):
            return f"{v:,.1f} ({100 * v / step:.0f} %)"
        top = ", ".join(f"{k} {v:,.1f}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:6])
        print(f"| {size} | {step:,.1f} | {cell(gemms)} | {cell(elementwise)} | {cell(us['guard'])} | "
              f"{cell(us['update'])} | {cell(rest)} | {top} |")
        if args.calls:
            listings.append((size, [(call_name(f), us[i]) for i, (f, _) in enumerate(calls)]))
    for size, rows in listings:
        print(f"\n{size}:")
        for i, (name, v) in enumerate(rows):
            print(f"  {i:3d} {name:60s} {v:10.1f}")


if __name__ == "__main__":
    main()
