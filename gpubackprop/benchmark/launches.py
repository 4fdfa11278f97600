"""GPU launches per training step, counted without a GPU ("counted, not timed").

On a small network a GPU step costs about one launch latency per graph node, so the number of
nodes a step records is the figure to cut (issue 18). Here the real ``CupyBackend`` code (its
grids, scratch buffers, guards, fit's gather, cursor and totals, Adam's step count) runs against
``CountingCupyBackend``: a shim that keeps CuPy's arrays as NumPy arrays and replaces each of the
backend's launch points by a counter:

- ``kernel``: every ``RawKernel`` launch of ``kernels/*.cu`` (the name is checked against the
  sources, so a renamed kernel fails here rather than being counted);
- ``cublas``: every cuBLAS GEMM call of ``matmul`` (the bias gradient's 1ᵀ δ included); one call
  is at least one kernel node (cuBLAS may add a split-K reduction: not counted);
- ``memset``: ``ndarray.fill(0)`` on a contiguous array, which CuPy turns into ``cudaMemsetAsync``;
- ``elementwise``: CuPy's own elementwise kernels (``cupy.add``, ``cupy.copyto``, ``cupy.take``,
  a non-zero ``fill``, ``cupy.full``);
- ``memcpy``: device-to-device copies; ``upload`` / ``download``: host transfers (outside graphs).

The recorder is a counting one: every ``run`` is one recorded unit, what the CUDA graph recorder
would capture and replay (``train_step``: one step; ``fit``: ``STEPS_PER_LAUNCH`` steps), and its
events are the graph's nodes. No arithmetic runs (kernels and GEMMs only count; the arrays start
at zero, so every check passes): these figures say how many launches, not what they compute. The
emulated device of issue 16 can replace the shim: ``count_train_step`` and ``count_fit_step`` take
any backend whose launch points report to a ``LaunchLog``.

    python -m gpubackprop.benchmark.launches          # the markdown tables of bench/RESULTS.md
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import re
import threading

import numpy

from ..backends.cupy_backend import CupyBackend, kernel_source
from ..backends.timers import WallTimer
from .cases import LEARNING_RATE, SIZES, _data

GRAPH_KINDS = ("kernel", "cublas", "memset", "elementwise", "memcpy")  # what a CUDA graph records as nodes
HOST_KINDS = ("upload", "download")  # host transfers: outside any graph, each a synchronisation point or a copy


class LaunchLog:
    """Events (kind, name) as the shim's launch points report them, each tagged with the recorded
    unit it happened in (None outside ``unit``)."""

    def __init__(self):
        self.events = []  # (unit index or None, kind, name)
        self.units = []  # the scalars of each recorded unit, in order
        self._unit = None

    def add(self, kind, name):
        self.events.append((self._unit, kind, name))

    @contextlib.contextmanager
    def unit(self, scalars):
        """Events inside are one recorded unit (one CUDA graph's nodes)."""
        self.units.append(scalars)
        self._unit, previous = len(self.units) - 1, self._unit
        try:
            yield
        finally:
            self._unit = previous

    def clear(self):
        self.events.clear()
        self.units.clear()

    def counts(self, inside=True):
        """Counter of kinds, of the events inside recorded units (``inside``) or outside them."""
        return collections.Counter(kind for unit, kind, _ in self.events if (unit is not None) == inside)

    def names(self, inside=True):
        """Counter of (kind, name) inside (or outside) recorded units."""
        return collections.Counter((kind, name) for unit, kind, name in self.events if (unit is not None) == inside)


# ---------------------------------------------------------------------- the shim's arrays and module
class _Memory:
    """What CuPy's ``ndarray.data`` offers the backend: the address and a device-to-device copy."""

    def __init__(self, array):
        self._array = array
        self.ptr = array.__array_interface__["data"][0]

    def copy_from_device_async(self, src, nbytes):
        self._array._log.add("memcpy", "device_copy")
        dst = self._array.reshape(-1).view(numpy.uint8)
        dst[:nbytes] = src._array.reshape(-1).view(numpy.uint8)[:nbytes]


class _Device:
    id = 0


class _DeviceArray(numpy.ndarray):
    """A NumPy array standing for a CuPy array: the methods CuPy's ndarray has and NumPy's has not
    (``set``, ``get``, ``data.ptr``, ``device.id``), and ``fill``/``tolist`` counted as CuPy runs them."""

    _log: LaunchLog  # set on the subclass each shim makes

    @property
    def data(self):
        return _Memory(self)

    @property
    def device(self):
        return _Device()

    def fill(self, value):
        contiguous = self.flags.c_contiguous
        self._log.add("memset" if value == 0 and contiguous else "elementwise", "fill")
        super().fill(value)

    def set(self, host):
        self._log.add("upload", "set")
        numpy.copyto(self, host)

    def get(self, out=None):
        self._log.add("download", "get")
        if out is None:
            return numpy.array(self)
        numpy.copyto(out, self)
        return out

    def tolist(self):
        self._log.add("download", "tolist")
        return numpy.asarray(self).tolist()


class _Stream:
    def synchronize(self):
        pass


class _Cuda:
    @staticmethod
    def get_current_stream():
        return _Stream()


class _CountingCupy:
    """The part of the ``cupy`` module the backend calls, on NumPy, each launch counted."""

    cuda = _Cuda()

    def __init__(self, log):
        self._log = log
        self.ndarray = type("DeviceArray", (_DeviceArray,), {"_log": log})
        self.__version__ = "counting shim"

    def _device(self, array):
        return array.view(self.ndarray)

    def empty(self, shape, dtype):
        return self._device(numpy.zeros(shape, dtype=dtype))  # zeros: the shim's checks always pass

    def asarray(self, array, dtype=None):
        if isinstance(array, self.ndarray):
            if dtype is None or array.dtype == dtype:
                return array
            self._log.add("elementwise", "astype")
            return self._device(numpy.array(array, dtype=dtype))
        self._log.add("upload", "asarray")
        return self._device(numpy.array(array, dtype=dtype))

    def ascontiguousarray(self, array):
        if array.flags.c_contiguous:
            return array
        self._log.add("elementwise", "ascontiguousarray")
        return self._device(numpy.ascontiguousarray(array))

    def full(self, shape, value, dtype):
        self._log.add("elementwise", "full")
        return self._device(numpy.full(shape, value, dtype=dtype))

    def copyto(self, dst, src):
        self._log.add("elementwise", "copyto")
        numpy.copyto(dst, src)

    def add(self, a, b, out):
        self._log.add("elementwise", "add")
        numpy.add(a, b, out=out)
        return out

    def take(self, source, index, axis, out):
        self._log.add("elementwise", "take")
        numpy.take(source, index, axis=axis, out=out, mode="clip")
        return out

    def asnumpy(self, array):
        self._log.add("download", "asnumpy")
        return numpy.array(array)


class _CountingKernel:
    def __init__(self, log, name):
        self._log, self.name = log, name

    def __call__(self, grid, block, args):
        self._log.add("kernel", self.name)


class _CountingRecorder:
    """The CUDA graph recorder's interface: each ``run`` is one recorded unit of the log (what a
    graph would capture once and replay)."""

    records = True
    error = None

    def __init__(self, log):
        self._log = log

    def run(self, step, recordings, arrays, scalars):
        with self._log.unit(scalars):
            step()


def kernel_names(dtype="float32") -> frozenset:
    """Every ``__global__`` function of ``kernels/*.cu``, macro-made ones included."""
    source = kernel_source(dtype)
    names = set(re.findall(r'__global__\s+void\s+(\w+)\s*\(', source)) - {"name"}
    for macro in re.findall(r'#define\s+(\w+)\(name\b[^\n]*\n(?:[^\n]*\\\n)*?[^\n]*__global__\s+void\s+name', source):
        names.update(re.findall(rf'^{macro}\((\w+)', source, flags=re.M))
    return frozenset(names)


class CountingCupyBackend(CupyBackend):
    """The CuPy backend's code on a device that only counts (see the module's docstring).

    ``multiprocessors``, ``threads_per_multiprocessor``: the device the grids are sized for (an
    H200 by default: 132 SMs of 2048 threads); grid sizes change no count."""

    name = "cupy"

    def __init__(self, log=None, multiprocessors=132, threads_per_multiprocessor=2048):  # noqa: super() needs a GPU
        self.log = log if log is not None else LaunchLog()
        self.xp = _CountingCupy(self.log)
        self.device_id, self.device, self.spec = 0, "cuda:0", "cupy:0 (counting shim)"
        self._device = contextlib.nullcontext()
        self._max_blocks = multiprocessors * (threads_per_multiprocessor // 256)
        self._lock = threading.Lock()
        self._modules, self._kernels, self._constants = {}, {}, {}
        self._capturing = threading.local()
        self.tf32 = True
        self._tf32_scalars = (numpy.ones((), numpy.float32), numpy.zeros((), numpy.float32))
        self._known = kernel_names()

    @classmethod
    def probe(cls, short=False):
        return None

    @classmethod
    def device_count(cls):
        return 1

    def device_name(self):
        return "no device: launches counted"

    def versions(self):
        return {"numpy": numpy.__version__, "cupy": "counting shim"}

    def timer(self):
        return WallTimer()

    def kernel(self, name, dtype):
        if name not in self._known:
            raise ValueError(f"kernel {name!r} is in none of kernels/*.cu (known: {', '.join(sorted(self._known))})")
        return _CountingKernel(self.log, name)

    def matmul(self, a, b, out, trans_a=False, trans_b=False, tf32=False):
        self.log.add("cublas", "gemmEx (tf32)" if tf32 else "gemm")
        return out

    def recorder(self):
        return _CountingRecorder(self.log)


# ---------------------------------------------------------------------- counting
@dataclasses.dataclass
class StepLaunches:
    """Launches of one step: ``nodes`` (per kind, inside the recorded unit: a CUDA graph's nodes)
    and ``host`` (per kind, outside it: the step's read-back), per step."""

    what: str  # "train_step" or "fit"
    size: str
    layer_sizes: list
    batch: int
    loss: str
    optimizer: str
    nodes: dict
    host: dict
    names: dict  # "kind name" -> count per step, inside the unit
    graphs_per_step: float  # recorded units launched per step (train_step 1, fit 1/steps per launch)

    @property
    def total(self) -> float:
        return sum(self.nodes.values())


def _net(backend, sizes, loss, optimizer, dtype):
    from ..mlp import MLP

    return MLP(sizes, loss=loss, optimizer=optimizer, dtype=dtype, backend=backend, seed=0)


def count_train_step(sizes, batch, loss="mse", optimizer="sgd", dtype="float32", check_finite=True, backend=None,
                     size=None) -> StepLaunches:
    """The launches of one ``train_step`` after a first one (workspace and constants made)."""
    backend = backend if backend is not None else CountingCupyBackend()
    net = _net(backend, sizes, loss, optimizer, dtype)
    X, Y, _ = _data(sizes, batch, loss=loss)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    net.train_step(X, Y, LEARNING_RATE, check_finite=check_finite)
    log = backend.log
    log.clear()
    net.train_step(X, Y, LEARNING_RATE, check_finite=check_finite)
    return _summary("train_step", size, sizes, batch, loss, optimizer, log, steps=1)


def count_fit_step(sizes, batch, loss="mse", optimizer="sgd", dtype="float32", steps=None, backend=None,
                   size=None) -> StepLaunches:
    """The launches of an epoch of ``fit`` over ``steps`` full batches (default: one launch of
    ``STEPS_PER_LAUNCH``), after a first epoch, divided by its steps; ``host`` holds the epoch's
    own transfers (permutation, cursor and totals uploads, the one read) per step."""
    from ..training import STEPS_PER_LAUNCH

    steps = STEPS_PER_LAUNCH if steps is None else steps
    backend = backend if backend is not None else CountingCupyBackend()
    net = _net(backend, sizes, loss, optimizer, dtype)
    X, Y, _ = _data(sizes, batch * steps, loss=loss)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    for seed in range(2):
        if seed:
            backend.log.clear()
        net.fit(X, Y, epochs=1, batch_size=batch, lr=LEARNING_RATE, seed=seed, progress=False)
    return _summary("fit", size, sizes, batch, loss, optimizer, backend.log, steps=steps)


def _summary(what, size, sizes, batch, loss, optimizer, log, steps):
    per = lambda counter: {k: v / steps for k, v in sorted(counter.items())}  # noqa: E731
    return StepLaunches(what, size or "", list(sizes), batch, loss, optimizer, per(log.counts(True)),
                        per(log.counts(False)), {f"{k} {n}": v for (k, n), v in per(log.names(True)).items()},
                        len(log.units) / steps)


def count_all(sizes=None, optimizers=("sgd", "momentum", "adam"), dtype="float32"):
    """[StepLaunches] for train_step and fit at every size of ``sizes`` (default: SIZES) and
    optimizer, loss mse; then the classification losses with sgd where the size allows them."""
    sizes = SIZES if sizes is None else sizes
    results = []
    for name, (layer_sizes, batch) in sizes.items():
        for optimizer in optimizers:
            results.append(count_train_step(layer_sizes, batch, optimizer=optimizer, dtype=dtype, size=name))
            results.append(count_fit_step(layer_sizes, batch, optimizer=optimizer, dtype=dtype, size=name))
        for loss in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
            if loss == "softmax_cross_entropy" and layer_sizes[-1] < 2:
                continue
            results.append(count_train_step(layer_sizes, batch, loss=loss, dtype=dtype, size=name))
            results.append(count_fit_step(layer_sizes, batch, loss=loss, dtype=dtype, size=name))
    return results


def _cell(r) -> str:
    n = r.nodes
    parts = [f"{n.get(k, 0):g}" for k in ("kernel", "cublas", "memset", "elementwise")]
    return f"**{r.total:g}** ({' + '.join(parts)})"


def markdown(results) -> str:
    """The tables of bench/RESULTS.md: nodes per step, total (kernels + cuBLAS calls + memsets +
    CuPy elementwise), per size × optimizer (mse) and per loss (sgd)."""
    out = []
    mse = [r for r in results if r.loss == "mse"]
    optimizers = list(dict.fromkeys(r.optimizer for r in mse))
    sizes = list(dict.fromkeys(r.size for r in results))
    for what in ("train_step", "fit"):
        out.append(f"\n{what} (loss mse), nodes per step: **total** (kernels + cuBLAS calls + memsets + CuPy elementwise)\n")
        out.append("| size | layers | " + " | ".join(optimizers) + " |")
        out.append("|---|---:|" + "---|" * len(optimizers))
        for size in sizes:
            row = {r.optimizer: r for r in mse if r.size == size and r.what == what}
            any_row = next(iter(row.values()))
            out.append(f"| {size} {any_row.layer_sizes} @{any_row.batch} | {len(any_row.layer_sizes) - 1} | "
                       + " | ".join(_cell(row[o]) for o in optimizers) + " |")
    other = [r for r in results if r.loss != "mse"]
    if other:
        out.append("\nother losses (optimizer sgd), nodes per step\n")
        out.append("| size | loss | train_step | fit |")
        out.append("|---|---|---|---|")
        for size in sizes:
            for loss in dict.fromkeys(r.loss for r in other if r.size == size):
                pair = {r.what: r for r in other if r.size == size and r.loss == loss}
                out.append(f"| {size} | {loss} | {_cell(pair['train_step'])} | {_cell(pair['fit'])} |")
    return "\n".join(out)


def main():
    results = count_all()
    print(markdown(results))
    example = next(r for r in results if r.size == "tiny" and r.what == "fit" and r.optimizer == "sgd" and r.loss == "mse")
    print("\ntiny, fit, sgd, mse: per step " + ", ".join(f"{k} ×{v:g}" for k, v in example.names.items())
          + f"; outside the graph, per step: {example.host}; graphs launched per step: {example.graphs_per_step:g}")
    step = next(r for r in results if r.size == "tiny" and r.what == "train_step" and r.optimizer == "sgd" and r.loss == "mse")
    print("tiny, train_step, sgd, mse: " + ", ".join(f"{k} ×{v:g}" for k, v in step.names.items())
          + f"; outside the graph: {step.host}")


if __name__ == "__main__":
    main()
