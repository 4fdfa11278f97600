"""GPU launches per training step, counted without a GPU ("counted, not timed").

On a small network a GPU step costs about one launch latency per graph node, so the number of
nodes a step records is the figure to cut (issue 18). Here the real ``CupyBackend`` code (its
grids, scratch buffers, guards, fit's gather, cursor and totals, Adam's step count) runs against
``CountingCupyBackend`` (``gpubackprop/backends/counting.py``: a device is a backend's business),
a shim that keeps CuPy's arrays as NumPy arrays and replaces each of the backend's launch points by
a counter:

- ``kernel``: every ``RawKernel`` launch of ``kernels/*.cu`` (the name is checked against the
  sources, so a renamed kernel fails here rather than being counted);
- ``cublas``: every cuBLAS GEMM call of ``matmul`` (a training step's bias gradients are summed in the
  loss and backward kernels: no 1ᵀδ GEMM); one call is at least one kernel node (cuBLAS may add a
  split-K reduction: not counted);
- ``memset``: ``ndarray.fill(0)`` on a contiguous array, which CuPy turns into ``cudaMemsetAsync``;
- ``elementwise``: CuPy's own elementwise kernels (``cupy.add``, ``cupy.copyto``, ``cupy.take``,
  a non-zero ``fill``, ``cupy.full``);
- ``memcpy``: device-to-device copies; ``upload`` / ``download``: host transfers (outside graphs).

The recorder is a counting one: every ``run`` is one recorded unit, what the CUDA graph recorder
would capture and replay (``train_step``: one step; ``fit``: ``STEPS_PER_LAUNCH`` steps), and its
events are the graph's nodes. No arithmetic runs (kernels and GEMMs only count; the arrays start
at zero, so every check passes): these figures say how many launches, not what they compute. The
emulated device of issue 16 can replace the shim: ``count_train_step`` and ``count_fit_step`` take
any backend whose launch points report to a ``LaunchLog`` held as ``backend.log``.

    python -m gpubackprop.benchmark.launches          # the markdown tables of bench/RESULTS.md
"""
from __future__ import annotations

import dataclasses

from ..backends.counting import GRAPH_KINDS, HOST_KINDS, CountingCupyBackend, LaunchLog, kernel_names  # noqa: F401
from .cases import LEARNING_RATE, SIZES, _data

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
    from ..model import MLP

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
    return f"**{r.total:.4g}** ({' + '.join(parts)})"  # fit's per-launch nodes: a fraction per step


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
