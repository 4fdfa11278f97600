"""What the benchmark times: the network sizes, and per size three cases of one training step.

- ``gpubackprop``: ``MLP.train_step`` on the chosen backend;
- ``floor``: only the 3L-1 GEMMs of one step (forward X Wᵀ per layer, δᵀ X per layer, δ W for
  every layer but the first) at the same shapes, issued as cheaply as the backend can, into
  preallocated outputs, through the backend's recorder as the step is (on a GPU: replayed as one
  CUDA graph): what a step would cost if everything but the matrix products were free;
- ``torch``: PyTorch eager on the same device (``F.linear``, sigmoid, autograd,
  ``torch.optim.SGD``), when torch imports.

Every case returns the loss (or one output value) as a Python float each step, as ``train_step``
does, so each pays the same one host synchronisation.
"""
from __future__ import annotations

import dataclasses
import os
import statistics

import numpy

from .timing import blas_threads

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


# ---------------------------------------------------------------------- cases
@dataclasses.dataclass
class Case:
    """One thing to time: ``step()`` runs one training step (or its GEMMs) and returns a float."""

    name: str
    step: object = None
    timer: object = None
    unavailable: str | None = None  # why this case cannot run here
    samples: list = dataclasses.field(default_factory=list)  # seconds per call, one per round
    net: object = None  # the network timed, for the report (ours only)

    @property
    def seconds(self):
        return statistics.median(self.samples) if self.samples else None


def _data(sizes, batch, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    Y = rng.uniform(-1.0, 1.0, (batch, sizes[-1]))
    return X, Y


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


def make_ours(backend, sizes, batch, dtype) -> Case:
    from ..mlp import MLP

    net = MLP(sizes, dtype=dtype, backend=backend, seed=0)
    X, Y = _data(sizes, batch)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    lr = LEARNING_RATE

    def step():
        return net.train_step(X, Y, lr)

    return Case("gpubackprop", step, backend.timer(), net=net)


def make_floor(backend, sizes, batch, dtype) -> Case:
    """The 3L-1 GEMMs of one step at the same shapes, into preallocated outputs; operand values
    are random (GEMM speed does not depend on them). They run through a recorder of their own, as
    ``train_step``'s GEMMs do, so the floor is replayed as one CUDA graph where ours is: both pay
    one launch and one synchronisation per step, and the ratio isolates what the rest costs."""
    rng = numpy.random.default_rng(1)
    rand = lambda *shape: backend.asarray(rng.uniform(-0.5, 0.5, shape), dtype)  # noqa: E731
    gemms = []  # (a, b, out, trans_a, trans_b)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        X, W, D = rand(batch, n_in), rand(n_out, n_in), rand(batch, n_out)
        gemms.append((X, W, backend.empty((batch, n_out), dtype), False, True))  # X Wᵀ
        gemms.append((D, X, backend.empty((n_out, n_in), dtype), True, False))  # δᵀ X
        if i > 0:
            gemms.append((D, W, backend.empty((batch, n_in), dtype), False, False))  # δ W
    run_gemms, recorder, recordings = backend.gemm_sequence(gemms), backend.recorder(), {}
    last, activate = gemms[-1][2], backend.activate

    if recorder.records:
        def step():
            with activate():
                recorder.run(run_gemms, recordings, arrays=(), scalars=("floor",))
                return float(last[0, 0])  # the one synchronisation a step has, as train_step's loss
    else:  # the bare calls: nothing to replay and nothing to wait for
        def step():
            with activate():
                run_gemms()
            return 0.0

    return Case("floor", step, backend.timer())


def make_torch(backend, sizes, batch, dtype, threads=None) -> Case:
    torch, why = torch_status()
    if torch is None:
        return Case("torch", unavailable=why)
    device = torch.device(backend.device)  # "cpu" or "cuda:N": the same words in torch
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return Case("torch", unavailable=f"torch {torch.__version__} has no CUDA device")
        timer = torch_event_timer(torch, device)
    else:
        torch.set_num_threads(threads or blas_threads())  # the same thread count as NumPy's BLAS
        timer = backend.timer()
    import torch.nn.functional as F

    from ..mlp import MLP

    tdtype = {"float32": torch.float32, "float64": torch.float64}[numpy.dtype(dtype).name]
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


def torch_event_timer(torch, device):
    from ..backends.timers import EventTimer

    with torch.cuda.device(device):
        return EventTimer(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                          lambda start, stop: start.elapsed_time(stop))


def make_cases(backend, sizes, batch, dtype, with_torch=True, threads=None):
    cases = [make_ours(backend, sizes, batch, dtype), make_floor(backend, sizes, batch, dtype)]
    if with_torch:
        cases.append(make_torch(backend, sizes, batch, dtype, threads))
    else:
        cases.append(Case("torch", unavailable="skipped (--no-torch)"))
    return cases


def kernel_cases(backend, dtype, n):
    """The fused sigmoid backward δ = g·a·(1−a) (reads g and a, writes δ: 3 arrays of n) and a
    raw device copy of the same bytes (1.5 n read, 1.5 n written); with their bytes moved."""
    g = backend.asarray(numpy.random.default_rng(0).uniform(-1, 1, n), dtype)
    a = backend.asarray(numpy.random.default_rng(1).uniform(0, 1, n), dtype)
    out = backend.empty((n,), dtype)
    m = 3 * n // 2
    src, dst = backend.empty((m,), dtype), backend.empty((m,), dtype)  # a copy moves bytes, whatever they hold
    scratch, activate = {}, backend.activate

    def fused():
        with activate():
            backend.activation_backward(g, a, "sigmoid", out=out, scratch=scratch)

    def copy():
        with activate():
            backend.device_copy(dst, src)

    itemsize = numpy.dtype(dtype).itemsize
    timer = backend.timer()
    return [(Case("sigmoid_backward (fused)", fused, timer), 3 * n * itemsize),
            (Case("device copy, same bytes", copy, timer), 2 * m * itemsize)]
