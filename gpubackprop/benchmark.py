"""Throughput benchmark cases and their timing, shared by ``gpubackprop bench`` and ``bench/``.

For each network size, three cases run in ONE process, interleaved in rounds (A B C A B C ...)
so that drift of the machine (other processes, clocks, heat) hits them alike:

- ``gpubackprop``: ``MLP.train_step`` on the chosen backend;
- ``floor``: only the 3L-1 GEMMs of one step (forward X Wᵀ per layer, δᵀ X per layer, δ W for
  every layer but the first) at the same shapes, in the same array library, into preallocated
  outputs (on a GPU replayed as one CUDA graph, as the step is): what a step would cost if
  everything but the matrix products were free;
- ``torch``: PyTorch eager on the same device (``F.linear``, sigmoid, autograd,
  ``torch.optim.SGD``), when torch imports.

A sample times ``inner`` consecutive calls (``time.perf_counter`` on the CPU; CUDA events on a
GPU, recorded after a warm-up that includes every kernel compilation); the figure reported is
the median over the rounds of time per call. Every case returns the loss as a Python float each
step, as ``train_step`` does, so each pays the same one host synchronisation.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time

import numpy

LEARNING_RATE = 1e-3
SIZES = {
    "tiny": ([2, 2, 1], 1),
    "small": ([64, 128, 128, 1], 64),
    "medium": ([784, 256, 256, 10], 256),
    "large": ([1024, 1024, 1024, 1024, 1], 2048),
}
CASES = ("gpubackprop", "floor", "torch")


# ---------------------------------------------------------------------- sizes
def parse_size(text: str):
    """'tiny' or '784,256,10@128' (layer sizes @ batch) -> (name, layer_sizes, batch)."""
    text = text.strip()
    if text in SIZES:
        sizes, batch = SIZES[text]
        return text, list(sizes), batch
    try:
        layers, _, batch = text.partition("@")
        sizes = [int(v) for v in layers.replace("-", ",").split(",") if v.strip()]
        batch = int(batch) if batch else 64
    except ValueError:
        raise ValueError(f"bad size {text!r}: use one of {', '.join(SIZES)} or 'n0,n1,...,nL@batch' such as 784,256,10@128") from None
    if len(sizes) < 2 or min(sizes) < 1 or batch < 1:
        raise ValueError(f"bad size {text!r}: need at least 2 positive layer sizes and a positive batch")
    return text, sizes, batch


def gemm_shapes(sizes, batch):
    """(m, n, k) of each of the 3L-1 GEMMs of one training step."""
    shapes = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append((batch, n_out, n_in))  # forward: (B, in) @ (in, out)
        shapes.append((n_out, n_in, batch))  # ∂L/∂W = δᵀ X
        if i > 0:
            shapes.append((batch, n_in, n_out))  # ∂L/∂X = δ W
    return shapes


def gemm_flops(sizes, batch) -> int:
    return sum(2 * m * n * k for m, n, k in gemm_shapes(sizes, batch))


# ---------------------------------------------------------------------- environment
def blas_info():
    """[(library, version, threads, kernel architecture)] from threadpoolctl, else numpy's config."""
    try:
        import threadpoolctl

        rows = [(d.get("internal_api"), d.get("version"), d.get("num_threads"), d.get("architecture"))
                for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
        if rows:
            return rows
    except Exception:
        pass
    return [("unknown (threadpoolctl not installed)", None, None, None)]


def blas_threads() -> int:
    threads = [t for _, _, t, _ in blas_info() if t]
    return threads[0] if threads else (os.cpu_count() or 1)


def torch_status():
    """(torch module or None, why not)."""
    # torch's OpenMP threads otherwise spin after each parallel region, stealing the cores from
    # the next case of the round (NumPy's BLAS threads): set before torch first loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except Exception as exc:
        return None, f"not installed ({type(exc).__name__})"
    return torch, None


def environment(backend) -> dict:
    torch, why = torch_status()
    env = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "backend": backend.name,
        "device": backend.device_name(),
        "blas": [dict(zip(("library", "version", "threads", "architecture"), row)) for row in blas_info()],
        "torch": torch.__version__ if torch else why,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                             "OPENBLAS_NUM_THREADS") if k in os.environ},
    }
    if backend.name == "cupy":
        import cupy

        env["cupy"] = cupy.__version__
        env["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
    return env


# ---------------------------------------------------------------------- timers
class CpuTimer:
    """Wall time of ``inner`` calls with time.perf_counter."""

    def measure(self, fn, inner: int) -> float:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        return time.perf_counter() - start


class EventTimer:
    """Device time of ``inner`` calls between two CUDA events recorded on the current stream
    (CuPy's events for our cases, torch's for torch's: each library's own current stream)."""

    def __init__(self, start, stop, elapsed_ms):
        self.start, self.stop, self._elapsed_ms = start, stop, elapsed_ms

    def measure(self, fn, inner: int) -> float:
        self.start.record()
        for _ in range(inner):
            fn()
        self.stop.record()
        self.stop.synchronize()
        return self._elapsed_ms(self.start, self.stop) / 1e3


def cupy_event_timer():
    import cupy

    return EventTimer(cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.get_elapsed_time)


def torch_event_timer(torch):
    return EventTimer(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                      lambda start, stop: start.elapsed_time(stop))


# ---------------------------------------------------------------------- cases
@dataclasses.dataclass
class Case:
    """One thing to time: ``step()`` runs one training step (or its GEMMs) and returns a float."""

    name: str
    step: object = None
    timer: object = None
    unavailable: str | None = None  # why this case cannot run here
    samples: list = dataclasses.field(default_factory=list)  # seconds per call, one per round

    @property
    def seconds(self):
        return statistics.median(self.samples) if self.samples else None


def _data(sizes, batch, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    Y = rng.uniform(-1.0, 1.0, (batch, sizes[-1]))
    return X, Y


def make_ours(backend, sizes, batch, dtype) -> Case:
    from .mlp import MLP

    net = MLP(sizes, dtype=dtype, backend=backend, seed=0)
    X, Y = _data(sizes, batch)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    lr = LEARNING_RATE

    def step():
        return net.train_step(X, Y, lr)

    timer = cupy_event_timer() if backend.name == "cupy" else CpuTimer()
    return Case("gpubackprop", step, timer)


def make_floor(backend, sizes, batch, dtype) -> Case:
    """The 3L-1 GEMMs of one step at the same shapes, into preallocated outputs; operand values
    are random (GEMM speed does not depend on them).

    On the CPU each is the cheapest call NumPy has (``dot`` on transposed views). On a GPU they
    go through the backend's cuBLAS call and ``run_recorded``, exactly as ``train_step``'s GEMMs
    do, so the floor is replayed as one CUDA graph when ours is: both pay one launch and one
    synchronisation per step, and the ratio isolates what the rest of the step costs.
    """
    xp = backend.xp
    rng = numpy.random.default_rng(1)
    rand = lambda *shape: backend.asarray(rng.uniform(-0.5, 0.5, shape), dtype)  # noqa: E731
    gemms = []  # (a, b, out, trans_a, trans_b)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        X, W, D = rand(batch, n_in), rand(n_out, n_in), rand(batch, n_out)
        gemms.append((X, W, backend.empty((batch, n_out), dtype), False, True))  # X Wᵀ
        gemms.append((D, X, backend.empty((n_out, n_in), dtype), True, False))  # δᵀ X
        if i > 0:
            gemms.append((D, W, backend.empty((batch, n_in), dtype), False, False))  # δ W

    if backend.name == "cupy":
        last, recordings = gemms[-1][2], {}

        def gemms_only():
            for a, b, out, trans_a, trans_b in gemms:
                backend.matmul(a, b, out, trans_a, trans_b)

        def step():
            backend.run_recorded(gemms_only, recordings, arrays=(), scalars=("floor",))
            return float(last[0, 0])  # the one synchronisation a step has, as train_step's loss
    else:
        dot = xp.dot
        calls = tuple((a.T if ta else a, b.T if tb else b, out) for a, b, out, ta, tb in gemms)

        def step():
            for a, b, out in calls:
                dot(a, b, out)
            return 0.0

    timer = cupy_event_timer() if backend.name == "cupy" else CpuTimer()
    return Case("floor", step, timer)


def make_torch(backend, sizes, batch, dtype, threads=None) -> Case:
    torch, why = torch_status()
    if torch is None:
        return Case("torch", unavailable=why)
    if backend.name == "cupy":
        if not torch.cuda.is_available():
            return Case("torch", unavailable=f"torch {torch.__version__} has no CUDA device")
        device = torch.device("cuda")
        timer = torch_event_timer(torch)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(threads or blas_threads())
        timer = CpuTimer()
    import torch.nn.functional as F

    tdtype = {"float32": torch.float32, "float64": torch.float64}[numpy.dtype(dtype).name]
    from .mlp import MLP

    init = MLP(sizes, dtype="float64", backend="numpy", seed=0).get_params()  # same start as ours
    params = []
    for W, b in init:
        params.append(torch.tensor(W, dtype=tdtype, device=device, requires_grad=True))
        params.append(torch.tensor(b, dtype=tdtype, device=device, requires_grad=True))
    X, Y = _data(sizes, batch)
    X = torch.tensor(X, dtype=tdtype, device=device)
    Y = torch.tensor(Y, dtype=tdtype, device=device)
    opt = torch.optim.SGD(params, lr=LEARNING_RATE)
    layers = [(params[2 * i], params[2 * i + 1]) for i in range(len(init))]
    scale = 0.5 / batch

    def step():
        opt.zero_grad()
        a = X
        for i, (W, b) in enumerate(layers):
            a = F.linear(a, W, b)
            if i < len(layers) - 1:
                a = torch.sigmoid(a)
        loss = F.mse_loss(a, Y, reduction="sum") * scale
        loss.backward()
        opt.step()
        return loss.item()

    return Case("torch", step, timer)


def make_cases(backend, sizes, batch, dtype, with_torch=True, threads=None):
    cases = [make_ours(backend, sizes, batch, dtype), make_floor(backend, sizes, batch, dtype)]
    if with_torch:
        cases.append(make_torch(backend, sizes, batch, dtype, threads))
    else:
        cases.append(Case("torch", unavailable="skipped (--no-torch)"))
    return cases


# ---------------------------------------------------------------------- running
def run_interleaved(cases, seconds=1.0, min_rounds=5, max_rounds=50, warmup=3):
    """Time ``cases`` in rounds A B C A B C ...; each case gets about ``seconds`` in all.

    Warm-up (compilation, first-touch allocations, caches) first, then one calibration call per
    case sets how many calls one sample holds. Fills ``case.samples`` with seconds per call.
    """
    live = [c for c in cases if c.unavailable is None]
    per_call = {}
    for case in live:
        for _ in range(warmup):
            case.step()
        t = case.timer.measure(case.step, 1)
        t2 = case.timer.measure(case.step, 1)
        per_call[case.name] = max(min(t, t2), 1e-7)
    # Rounds: enough that one sample is at least ~2 ms (timer noise), at most max_rounds.
    slowest = max(per_call.values(), default=0.0)
    rounds = int(min(max_rounds, max(min_rounds, seconds / max(slowest, 2e-3))))
    inner = {name: max(1, int(seconds / rounds / t)) for name, t in per_call.items()}
    for case in live:
        case.samples = []
    for _ in range(rounds):
        for case in live:
            n = inner[case.name]
            case.samples.append(case.timer.measure(case.step, n) / n)
    return rounds, inner


@dataclasses.dataclass
class Row:
    size: str
    layer_sizes: list
    batch: int
    case: str
    us_per_step: float | None
    samples_per_s: float | None
    gemm_gflops: float | None
    x_floor: float | None  # this case's step time / the floor's
    x_torch: float | None  # torch's step time / this case's (throughput relative to torch)
    spread: float | None  # (max - min) / median of the samples: the noise
    rounds: int
    note: str = ""


def bench_size(backend, name, sizes, batch, dtype="float32", seconds=1.0, with_torch=True, threads=None):
    """Rows (ours, floor, torch) for one size, measured side by side."""
    cases = make_cases(backend, sizes, batch, dtype, with_torch, threads)
    rounds, _ = run_interleaved(cases, seconds=seconds, min_rounds=3 if seconds < 0.5 else 5)
    flops = gemm_flops(sizes, batch)
    t = {c.name: c.seconds for c in cases}
    rows = []
    for c in cases:
        s = c.seconds
        if s is None:
            rows.append(Row(name, sizes, batch, c.name, None, None, None, None, None, None, 0, c.unavailable or ""))
            continue
        rows.append(Row(
            name, sizes, batch, c.name,
            us_per_step=s * 1e6,
            samples_per_s=batch / s,
            gemm_gflops=flops / s / 1e9,
            x_floor=s / t["floor"] if t.get("floor") else None,
            x_torch=t["torch"] / s if t.get("torch") else None,
            spread=(max(c.samples) - min(c.samples)) / s,
            rounds=rounds,
        ))
    return rows


def format_rows(rows) -> str:
    head = f"{'size':<8} {'case':<12} {'µs/step':>11} {'samples/s':>12} {'GEMM GFLOP/s':>13} {'×floor':>7} {'×torch':>7} {'spread':>7}"
    lines = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "—"  # noqa: E731
    for r in rows:
        if r.us_per_step is None:
            lines.append(f"{r.size:<8} {r.case:<12} {r.note}")
            continue
        lines.append(f"{r.size:<8} {r.case:<12} {r.us_per_step:>11.1f} {r.samples_per_s:>12.4g} "
                     f"{r.gemm_gflops:>13.3g} {fmt(r.x_floor, '>7.2f')} {fmt(r.x_torch, '>7.2f')} "
                     f"{fmt(r.spread * 100, '>6.0f')}%")
    return "\n".join(lines)


# ---------------------------------------------------------------------- kernel micro-benchmark
def bench_kernels(backend, dtype="float32", n=1 << 26, seconds=1.0):
    """The fused sigmoid backward δ = g·a·(1−a) (reads g and a, writes δ: 3 arrays) against a
    device-to-device copy that moves the same bytes (reads and writes 1.5 arrays each).

    Returns a list of dicts: name, bytes moved per call, seconds per call, GB/s.
    """
    xp = backend.xp
    itemsize = numpy.dtype(dtype).itemsize
    if backend.name == "numpy":
        n = min(n, 1 << 22)  # 16 MB per float32 array: well past the caches, quick on a CPU
    g = backend.asarray(numpy.random.default_rng(0).uniform(-1, 1, n), dtype)
    a = backend.asarray(numpy.random.default_rng(1).uniform(0, 1, n), dtype)
    out = backend.empty((n,), dtype)
    m = 3 * n // 2
    src, dst = backend.empty((m,), dtype), backend.empty((m,), dtype)
    src.fill(1)

    def fused():
        backend.activation_backward(g, a, "sigmoid", out=out)

    if backend.name == "cupy":
        nbytes = m * itemsize

        def copy():
            dst.data.copy_from_device_async(src.data, nbytes)

        timer = cupy_event_timer()
    else:
        def copy():
            xp.copyto(dst, src)

        timer = CpuTimer()
    cases = [Case("sigmoid_backward (fused)", fused, timer), Case("device copy, same bytes", copy, timer)]
    run_interleaved(cases, seconds=seconds, min_rounds=5)
    moved = [3 * n * itemsize, 2 * m * itemsize]
    result = []
    for case, b in zip(cases, moved):
        result.append({"name": case.name, "bytes": b, "seconds": case.seconds, "GB/s": b / case.seconds / 1e9})
    return result
