"""The planned step's elementwise passes in blocks that stay in the core's cache.

A sigmoid layer's forward is eight elementwise passes (the bias add, then ``sigmoid_calls``) and
its backward three; on a large layer each pass streams the whole (batch, width) array through
memory. Here a run of consecutive row-local calls of a plan (ufuncs whose every operand is a whole
array of the run's rows, a broadcast row or a scalar) is cut into blocks of rows, and each block
goes through every call of the run before the next block: a block of ``BLOCK_BYTES`` per operand
stays in the core's L2 between the calls. Each element goes through the same ufunc calls as
before, on the same values, with the same loops (contiguous rows): **the same numbers, bit for
bit** (tests/test_step_plan.py compares with the unblocked step).

Measured (bench/RESULTS.md, issue 18; 2-core Zen 3, float32, inside the step): a 2048×1024 sigmoid
forward 7.4 → 5.9 ms, its backward 2.0 → 1.5 ms. A run whose operands are under ``MIN_BYTES``
stays whole (it fits in the cache anyway; blocks would only add calls).

A helper thread running half the blocks was tried and left out: with NumPy's ufuncs taking the
GIL per call and OpenBLAS's idle workers spinning on the second core after each GEMM, it saved
nothing inside the step (steps alternated in one process, quiet machine: large 268.0 ms serial vs
266.8 threaded, then 258.2 vs 288.0; medium, forced into blocks, 3 336 vs 3 636 µs).
"""
from __future__ import annotations

import functools

import numpy

BLOCK_BYTES = 256 << 10  # per operand per block: two operands in a 1 MiB L2 with room to spare
MIN_BYTES = 1 << 20  # a run is cut only when its largest operand is at least this


class BlockedRun:
    """A run of row-local calls, block of rows by block of rows (one call of a plan)."""

    __slots__ = ("calls", "blocked")

    def __init__(self, calls, rows):
        self.calls = calls  # as they were: what each block runs
        self.blocked = [_block_call(f, args, rows, start, stop)
                        for start, stop in _blocks(calls, rows) for f, args in calls]

    def __call__(self):
        for f, args in self.blocked:
            f(*args)


def blocked(calls):
    """``calls`` ([(function, args)]) with every run of consecutive row-local calls on operands of
    at least ``MIN_BYTES`` replaced by one BlockedRun."""
    out, run, run_rows = [], [], None
    for f, args in calls + [(None, ())]:
        rows = _row_local(f, args)
        if rows is not None and rows == run_rows:
            run.append((f, args))
            continue
        _close(out, run, run_rows)
        run, run_rows = ([(f, args)], rows) if rows is not None else ([], None)
        if rows is None and f is not None:
            out.append((f, args))
    return out


def _close(out, run, rows):
    if run and max(_nbytes(args) for _, args in run) >= MIN_BYTES:
        out.append((BlockedRun(run, rows), ()))
    else:
        out.extend(run)


def _row_local(f, args):
    """The row count of a row-local ufunc call writing an output array (see the module's text), else None."""
    inner = getattr(f, "func", f)  # a functools.partial of a ufunc (keywords only) counts as the ufunc
    if not isinstance(inner, numpy.ufunc) or inner.signature is not None or inner.nout != 1 or getattr(f, "args", ()):
        return None  # not an elementwise ufunc (a gufunc such as matmul reads other rows)
    if not all(isinstance(a, (numpy.ndarray, int, float)) for a in args):
        return None  # a placeholder (the batch, bound per run) or another object
    keywords = getattr(f, "keywords", {})
    if len(args) != inner.nin + 1 and "out" not in keywords:
        return None  # no output array: a call that returns its result
    arrays = [a for a in (*args, *keywords.values()) if isinstance(a, numpy.ndarray) and a.ndim >= 1]
    full = [a for a in arrays if a.shape[0] > 1]
    if not full:
        return None
    rows, ndim = full[0].shape[0], full[0].ndim
    # every operand of the output's rank (a lower rank broadcasts along the last axes, not the rows)
    if any(a.ndim != ndim or a.shape[0] not in (1, rows) or not a.flags.c_contiguous for a in arrays):
        return None
    return rows


def _nbytes(args):
    return max((a.nbytes for a in args if isinstance(a, numpy.ndarray)), default=0)


def _blocks(calls, rows):
    """[(start, stop)]: row blocks of about BLOCK_BYTES per operand."""
    per_row = max(max(_nbytes(args) for _, args in calls) // rows, 1)
    count = min(rows, max(1, -(-rows * per_row // BLOCK_BYTES)))
    edges = [rows * i // count for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count)]


def _block_call(f, args, rows, start, stop):
    """(f, args) on rows [start, stop): whole arrays sliced, broadcast rows and scalars as they are;
    a partial's array keywords (``out=``) sliced in a new partial."""
    def cut(a):
        return a[start:stop] if isinstance(a, numpy.ndarray) and a.ndim >= 1 and a.shape[0] == rows else a
    keywords = getattr(f, "keywords", None)
    if keywords:
        f = functools.partial(f.func, **{k: cut(v) for k, v in keywords.items()})
    return f, tuple(cut(a) for a in args)
