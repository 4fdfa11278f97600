"""What the benchmark times: the network sizes, and per size these cases.

Per training step:
- ``gpubackprop``: ``MLP.train_step`` on the chosen backend;
- ``floor``: only the 3L-1 GEMMs of one step (forward X Wᵀ per layer, δᵀ X per layer, δ W for
  every layer but the first) at the same shapes, issued as cheaply as the backend can, into
  preallocated outputs, through the backend's recorder as the step is (on a GPU: replayed as one
  CUDA graph): what a step would cost if everything but the matrix products were free;
- ``torch``: PyTorch eager on the same device (``F.linear``, sigmoid, autograd,
  ``torch.optim.SGD``), when torch imports;
- ``jax_jit``: the same step (forward, the MSE loss, backward, SGD update) as ONE ``jax.jit``
  function, the parameters donated so that XLA updates them in place; when JAX imports (the
  column is absent otherwise). CPU only, MSE + SGD only (the peers of issue 18);
- ``torch_manual``: the same step written by hand in PyTorch with no autograd: preallocated
  tensors, ``torch.addmm`` / ``torch.mm`` with ``out=``, in-place sigmoid and derivative, the
  parameters and gradients as views of one flat buffer updated by one in-place op. MSE + SGD only;
- ``torch_graphed``: the same PyTorch step captured once in a ``torch.cuda.graph`` (static input,
  target and parameter tensors; plain SGD, which captures as it is) and replayed: PyTorch at its
  best for small networks. CUDA only.

Each of these returns the loss (or one output value) as a Python float each step, as
``train_step`` does, so each pays the same one host synchronisation per step.

Per epoch (``steps_per_call`` steps per call; the report divides, so figures are per step):
- ``fit``: one epoch of ``MLP.fit`` over ``fit_batches`` batches (data on the device, a new
  permutation each epoch, the loss read once per epoch);
- ``torch_fit``: PyTorch's best loop for the same: the graphed step with the batch gathered
  inside the graph (``index_select`` by a static index tensor) and the loss summed on the device,
  a ``randperm`` on the device per epoch, the loss read once per epoch. CUDA only.

``precision="tf32"``: ours with ``MLP(precision="tf32")``, the floor's GEMMs in TF32, torch with
``torch.set_float32_matmul_precision("high")`` while it runs (and captures).

``training`` (a :class:`Training`: loss and optimizer): every case but the floor trains with that
loss and optimizer, ours and torch alike (torch's softmax cross-entropy on integer labels, ours on
one-hot rows already on the device; torch's Adam with ``capturable=True`` where it is captured).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
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
CASES = ("gpubackprop", "fit", "floor", "torch", "torch_manual", "jax_jit", "torch_graphed", "torch_fit")
# The hand-written peers (issue 18) implement one loss and one optimizer: the table.
PEER_TRAINING = ("mse", "sgd")
# Batches per epoch of the fit cases: enough that an epoch's fixed costs (shuffle, one read) are
# small beside its steps, few enough that a CPU run of the large size stays short.
FIT_BATCHES = {"tiny": 256, "small": 256, "medium": 64, "large": 4}
FIT_BATCHES_DEFAULT = 64


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
    params: object = None  # the peers: a function giving their [(W, b) per layer] as NumPy (for the tests)
    steps_per_call: int = 1  # training steps one call runs (an epoch for the fit cases)

    @property
    def seconds(self):
        """Median seconds per training step."""
        return statistics.median(self.samples) / self.steps_per_call if self.samples else None


@dataclasses.dataclass(frozen=True)
class Training:
    """What every case trains with: a loss of ``gpubackprop.losses`` and an optimizer of
    ``gpubackprop.optimizers`` (at their default settings)."""

    loss: str = "mse"
    optimizer: str = "sgd"

    def describe(self) -> str:
        return f"loss {self.loss}, optimizer {self.optimizer}"


MSE_SGD = Training()


def _data(sizes, batch, seed=0, loss="mse"):
    """(X, Y, labels): Y as ours takes it (values; one-hot rows for softmax cross-entropy;
    probabilities for binary cross-entropy), labels the classes behind softmax's rows (else None)."""
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    if loss == "softmax_cross_entropy":
        labels = rng.integers(0, sizes[-1], batch)
        Y = numpy.zeros((batch, sizes[-1]))
        Y[numpy.arange(batch), labels] = 1.0
        return X, Y, labels
    if loss == "sigmoid_binary_cross_entropy":
        return X, rng.uniform(0.0, 1.0, (batch, sizes[-1])), None
    return X, rng.uniform(-1.0, 1.0, (batch, sizes[-1])), None


def jax_status():
    """(jax module or None, why not)."""
    try:
        import jax
    except Exception as exc:
        return None, f"not installed ({type(exc).__name__})"
    return jax, None


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


def make_ours(backend, sizes, batch, dtype, precision="fp32", training=MSE_SGD) -> Case:
    from ..mlp import MLP

    net = MLP(sizes, loss=training.loss, optimizer=training.optimizer, dtype=dtype, precision=precision,
              backend=backend, seed=0)
    X, Y, _ = _data(sizes, batch, loss=training.loss)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    lr = LEARNING_RATE

    def step():
        return net.train_step(X, Y, lr)

    return Case("gpubackprop", step, backend.timer(), net=net)


def make_fit(backend, sizes, batch, dtype, precision="fp32", batches=FIT_BATCHES_DEFAULT, training=MSE_SGD) -> Case:
    """One epoch of ``MLP.fit`` per call over ``batches`` full batches, the data already on the
    device in the network's dtype (as a user who cares would pass it), a new seed each epoch."""
    from ..mlp import MLP

    net = MLP(sizes, loss=training.loss, optimizer=training.optimizer, dtype=dtype, precision=precision,
              backend=backend, seed=0)
    X, Y, _ = _data(sizes, batch * batches, loss=training.loss)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    seeds = itertools.count()
    lr = LEARNING_RATE

    def epoch():
        return net.fit(X, Y, epochs=1, batch_size=batch, lr=lr, seed=next(seeds), progress=False).loss[0]

    return Case("fit", epoch, backend.timer(), net=net, steps_per_call=batches)


def make_floor(backend, sizes, batch, dtype, precision="fp32") -> Case:
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
    run_gemms, recorder, recordings = backend.gemm_sequence(gemms, tf32=precision == "tf32"), backend.recorder(), {}
    last, activate = gemms[-1][2], backend.activate

    if recorder.records:
        def step():
            with activate():
                recorder.run(run_gemms, recordings, arrays=(), scalars=("floor",))
                return float(last[0, 0])  # the one synchronisation a step has, as train_step's loss
    else:  # the bare calls: nothing to replay, nothing to wait for, no device to switch to
        def step():
            run_gemms()
            return 0.0

    return Case("floor", step, backend.timer())


def _torch_device(backend, name, threads=None, needs_cuda=False):
    """(torch, device, timer) for a torch case on ``backend``'s device, or (None, why, None)."""
    torch, why = torch_status()
    if torch is None:
        return None, why, None
    device = torch.device(backend.device)  # "cpu" or "cuda:N": the same words in torch
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} has no CUDA device", None
        return torch, device, torch_event_timer(torch, device)
    if needs_cuda:
        return None, f"skipped: needs CUDA ({name} replays a torch.cuda.graph; this backend computes on the CPU)", None
    torch.set_num_threads(threads or blas_threads())  # the same thread count as NumPy's BLAS
    return torch, device, backend.timer()


def _torch_model(torch, device, sizes, batch, dtype, rows=None, loss="mse"):
    """Parameters as ours start (same initial weights), data on ``device``, and the loss of a
    batch as a function: forward (F.linear, sigmoid), then L = Σ (ŷ − y)² / (2 batch), or
    F.cross_entropy on integer labels, or F.binary_cross_entropy_with_logits summed / batch."""
    import torch.nn.functional as F

    tdtype = {"float32": torch.float32, "float64": torch.float64}[numpy.dtype(dtype).name]
    init = _initial_params(sizes)  # same start as ours
    params = []
    for W, b in init:
        params.append(torch.tensor(W, dtype=tdtype, device=device, requires_grad=True))
        params.append(torch.tensor(b, dtype=tdtype, device=device, requires_grad=True))
    X, Y, labels = _data(sizes, rows or batch, loss=loss)
    X = torch.tensor(X, dtype=tdtype, device=device)
    Y = torch.tensor(Y, dtype=tdtype, device=device) if labels is None else torch.tensor(labels, device=device)
    layers = [(params[2 * i], params[2 * i + 1]) for i in range(len(init))]
    scale = (0.5 if loss == "mse" else 1.0) / batch
    criterion = {"mse": F.mse_loss, "softmax_cross_entropy": None,
                 "sigmoid_binary_cross_entropy": F.binary_cross_entropy_with_logits}[loss]

    def loss_of(X, Y):
        a = X
        for i, (W, b) in enumerate(layers):
            a = F.linear(a, W, b)
            if i < len(layers) - 1:
                a = torch.sigmoid(a)
        if criterion is None:
            return F.cross_entropy(a, Y)
        return criterion(a, Y, reduction="sum") * scale

    return params, X, Y, loss_of


class _TF32Matmuls:
    """torch.set_float32_matmul_precision("high") (TF32 GEMMs) inside the block, the previous
    setting after. Reusable."""

    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        self.previous = self.torch.get_float32_matmul_precision()
        self.torch.set_float32_matmul_precision("high")

    def __exit__(self, *exc):
        self.torch.set_float32_matmul_precision(self.previous)


def _matmul_precision(torch, precision):
    """A context manager for torch's GEMMs in ``precision``; fp32 is torch's default ("highest"):
    nothing to set, so an fp32 step costs what it always did."""
    return _TF32Matmuls(torch) if precision == "tf32" else contextlib.nullcontext()


def _torch_optimizer(torch, params, training, graphed=False):
    """torch.optim's optimizer of ``training`` at its default settings, as ours (momentum 0.9)."""
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=LEARNING_RATE, capturable=graphed)  # capturable: inside a graph
    return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9 if training.optimizer == "momentum" else 0.0)


def make_torch(backend, sizes, batch, dtype, threads=None, precision="fp32", training=MSE_SGD) -> Case:
    torch, device, timer = _torch_device(backend, "torch", threads)
    if torch is None:
        return Case("torch", unavailable=device)
    params, X, Y, loss_of = _torch_model(torch, device, sizes, batch, dtype, loss=training.loss)
    opt = _torch_optimizer(torch, params, training)
    matmul_precision = _matmul_precision(torch, precision)

    def step():
        with matmul_precision:
            opt.zero_grad()
            loss = loss_of(X, Y)
            loss.backward()
            opt.step()
            return loss.item()

    return Case("torch", step, timer)


def _peer_unsupported(name, training):
    """Why the hand-written peer ``name`` cannot train with ``training``, or None."""
    if (training.loss, training.optimizer) != PEER_TRAINING:
        return (f"skipped: {name} is written for loss {PEER_TRAINING[0]} and optimizer {PEER_TRAINING[1]} only "
                f"(got {training.describe()})")
    return None


def _initial_params(sizes):
    """[(W, b)] as ours starts (float64 NumPy): every case begins from the same weights."""
    from ..mlp import MLP

    return MLP(sizes, dtype="float64", backend="numpy", seed=0).get_params()


def make_torch_manual(backend, sizes, batch, dtype, threads=None, precision="fp32", training=MSE_SGD) -> Case:
    """The step written by hand in PyTorch, no autograd, nothing allocated per step: forward
    ``torch.addmm(b, a, Wᵀ, out=z)`` then ``sigmoid_`` in place; the MSE's gradient (ŷ − y)/B and
    its loss Σ (ŷ − y)² / (2B) from one ``torch.dot``; backward ``torch.mm(δᵀ, a, out=∂W)``,
    ``torch.sum(δ, 0, out=∂b)``, ``torch.mm(δ, W, out=∂a)`` and δ = ∂a ⊙ (a − a²); every W and b a
    view of one flat tensor, every ∂W and ∂b of another, so that SGD is one in-place
    ``flat.sub_(grads, alpha=lr)``. The loss read each step (``.item()``), as ``train_step``'s."""
    why = _peer_unsupported("torch_manual", training)
    if why:
        return Case("torch_manual", unavailable=why)
    torch, device, timer = _torch_device(backend, "torch_manual", threads)
    if torch is None:
        return Case("torch_manual", unavailable=device)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[numpy.dtype(dtype).name]
    empty = lambda *shape: torch.empty(shape, dtype=tdtype, device=device)  # noqa: E731
    init = _initial_params(sizes)
    flat, grads = empty(sum(W.size + b.size for W, b in init)), empty(sum(W.size + b.size for W, b in init))
    weights, biases, grad_weights, grad_biases, offset = [], [], [], [], 0
    for W, b in init:  # laid out W₁, b₁, W₂, ... as ours
        for host, views, grad_views in ((W, weights, grad_weights), (b, biases, grad_biases)):
            view = flat[offset:offset + host.size].view(host.shape)
            view.copy_(torch.from_numpy(host))
            views.append(view)
            grad_views.append(grads[offset:offset + host.size].view(host.shape))
            offset += host.size
    X, Y, _ = _data(sizes, batch)
    X, Y = torch.tensor(X, dtype=tdtype, device=device), torch.tensor(Y, dtype=tdtype, device=device)
    acts = [empty(batch, n) for n in sizes[1:]]
    grad_outputs = [empty(batch, n) for n in sizes[1:]]
    derivatives = [empty(batch, n) for n in sizes[1:-1]]
    loss = empty()
    layers, lr, inv_batch, scale = len(init), LEARNING_RATE, 1.0 / batch, 0.5 / batch
    matmul_precision = _matmul_precision(torch, precision)
    addmm, mm, mul, sub, dot, tsum = torch.addmm, torch.mm, torch.mul, torch.sub, torch.dot, torch.sum

    def step():
        with matmul_precision:
            inputs = X
            for i in range(layers):
                addmm(biases[i], inputs, weights[i].t(), out=acts[i])  # z = a Wᵀ + b
                if i < layers - 1:
                    acts[i].sigmoid_()
                inputs = acts[i]
            grad = grad_outputs[-1]
            sub(acts[-1], Y, out=grad)  # ŷ − y
            flat_grad = grad.view(-1)
            dot(flat_grad, flat_grad, out=loss)
            grad.mul_(inv_batch)  # ∂L/∂ŷ = (ŷ − y) / B
            for i in reversed(range(layers)):
                delta = grad_outputs[i]
                mm(delta.t(), acts[i - 1] if i else X, out=grad_weights[i])  # ∂L/∂W = δᵀ a
                tsum(delta, 0, out=grad_biases[i])  # ∂L/∂b = Σ_batch δ
                if i:
                    mm(delta, weights[i], out=grad_outputs[i - 1])  # ∂L/∂a = δ W
                    a, d = acts[i - 1], derivatives[i - 1]
                    mul(a, a, out=d)
                    sub(a, d, out=d)  # σ' = a − a² = a (1 − a)
                    grad_outputs[i - 1].mul_(d)
            flat.sub_(grads, alpha=lr)  # SGD, every W and b at once
            return loss.item() * scale

    def params():
        return [(W.cpu().numpy().copy(), b.cpu().numpy().copy()) for W, b in zip(weights, biases)]

    return Case("torch_manual", step, timer, params=params)


def make_jax_jit(backend, sizes, batch, dtype, precision="fp32", training=MSE_SGD) -> Case:
    """The whole step as one ``jax.jit`` function, ``jax.value_and_grad`` of the same loss
    (forward z = a Wᵀ + b, sigmoid on the hidden layers, L = Σ (ŷ − y)² / (2B)) and the SGD update,
    with the parameters donated (``donate_argnums``) so that XLA writes the new ones over the old.
    The loss read each step (``float``), as ``train_step``'s. On the CPU only (JAX's own CPU
    device, with its own thread pool); float64 turns on ``jax_enable_x64`` for the process."""
    why = _peer_unsupported("jax_jit", training)
    if why:
        return Case("jax_jit", unavailable=why)
    if backend.device != "cpu":
        return Case("jax_jit", unavailable=f"skipped: jax_jit is a CPU peer (this backend computes on {backend.device})")
    jax, why = jax_status()
    if jax is None:
        return Case("jax_jit", unavailable=why)
    import jax.numpy as jnp

    dtype = numpy.dtype(dtype)
    if dtype == numpy.float64:
        jax.config.update("jax_enable_x64", True)  # else JAX silently computes in float32
    params = tuple((jnp.asarray(W, dtype), jnp.asarray(b, dtype)) for W, b in _initial_params(sizes))
    X, Y, _ = _data(sizes, batch)
    X, Y = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)
    lr, scale, last = LEARNING_RATE, 0.5 / batch, len(params) - 1

    def loss_of(params, X, Y):
        a = X
        for i, (W, b) in enumerate(params):
            a = a @ W.T + b
            if i < last:
                a = jax.nn.sigmoid(a)
        d = a - Y
        return jnp.vdot(d, d) * scale

    def train(params, X, Y):
        loss, grads = jax.value_and_grad(loss_of)(params, X, Y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    jitted = jax.jit(train, donate_argnums=(0,))
    state = [params]

    def step():
        state[0], loss = jitted(state[0], X, Y)
        return float(loss)

    def get_params():
        return [(numpy.array(W), numpy.array(b)) for W, b in state[0]]

    return Case("jax_jit", step, backend.timer(), params=get_params)


def _capture(torch, device, work, optimizer, precision):
    """``work()`` (forward, backward, SGD step) captured in a CUDA graph as PyTorch documents
    whole-network capture: warm-up on a side stream, gradients set to None before capture (so the
    captured backward writes them, from the graph's memory pool). Returns (graph, its outputs)."""
    with torch.cuda.device(device), _matmul_precision(torch, precision):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                work()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            outputs = work()
    return graph, outputs


def make_torch_graphed(backend, sizes, batch, dtype, precision="fp32", training=MSE_SGD) -> Case:
    torch, device, timer = _torch_device(backend, "torch_graphed", needs_cuda=True)
    if torch is None:
        return Case("torch_graphed", unavailable=device)
    params, X, Y, loss_of = _torch_model(torch, device, sizes, batch, dtype, loss=training.loss)

    optimizer = _torch_optimizer(torch, params, training, graphed=True)

    def work():
        loss = loss_of(X, Y)
        loss.backward()
        optimizer.step()
        return loss

    graph, loss = _capture(torch, device, work, optimizer, precision)

    def step():
        graph.replay()
        return loss.item()  # the one synchronisation per step, as train_step's

    return Case("torch_graphed", step, timer)


def make_torch_fit(backend, sizes, batch, dtype, precision="fp32", batches=FIT_BATCHES_DEFAULT,
                   training=MSE_SGD) -> Case:
    """PyTorch's best epoch loop: per step one index copy and one graph replay (gather, step,
    loss summed on the device, all captured); per epoch a device randperm and one read."""
    torch, device, timer = _torch_device(backend, "torch_fit", needs_cuda=True)
    if torch is None:
        return Case("torch_fit", unavailable=device)
    n = batch * batches
    params, X, Y, loss_of = _torch_model(torch, device, sizes, batch, dtype, rows=n, loss=training.loss)
    index = torch.arange(batch, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)

    optimizer = _torch_optimizer(torch, params, training, graphed=True)

    def work():
        loss = loss_of(torch.index_select(X, 0, index), torch.index_select(Y, 0, index))
        loss.backward()
        optimizer.step()
        total.add_(loss.detach())  # summed on the device, read once per epoch
        return loss

    graph, _ = _capture(torch, device, work, optimizer, precision)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)

    def epoch():
        order = torch.randperm(n, device=device, generator=generator)
        total.zero_()
        for start in range(0, n, batch):
            index.copy_(order[start:start + batch])
            graph.replay()
        return total.item() / batches

    return Case("torch_fit", epoch, timer, steps_per_call=batches)


def torch_event_timer(torch, device):
    from ..backends.timers import EventTimer

    with torch.cuda.device(device):
        return EventTimer(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                          lambda start, stop: start.elapsed_time(stop))


def make_cases(backend, sizes, batch, dtype, with_torch=True, threads=None, precision="fp32",
               fit_batches=FIT_BATCHES_DEFAULT, training=MSE_SGD, with_jax=True):
    """Every case of CASES for one size, in that order; ``jax_jit`` only where JAX imports and
    ``with_jax`` (its column is absent otherwise)."""
    cases = [make_ours(backend, sizes, batch, dtype, precision, training),
             make_fit(backend, sizes, batch, dtype, precision, fit_batches, training),
             make_floor(backend, sizes, batch, dtype, precision)]
    if with_torch:
        cases.append(make_torch(backend, sizes, batch, dtype, threads, precision, training))
        cases.append(make_torch_manual(backend, sizes, batch, dtype, threads, precision, training))
    else:
        cases.extend(Case(name, unavailable="skipped (--no-torch)") for name in ("torch", "torch_manual"))
    if with_jax and jax_status()[0] is not None:
        cases.append(make_jax_jit(backend, sizes, batch, dtype, precision, training))
    if with_torch:
        cases.append(make_torch_graphed(backend, sizes, batch, dtype, precision, training))
        cases.append(make_torch_fit(backend, sizes, batch, dtype, precision, fit_batches, training))
    else:
        cases.extend(Case(name, unavailable="skipped (--no-torch)") for name in ("torch_graphed", "torch_fit"))
    return cases


def kernel_cases(backend, dtype, n):
    """The fused sigmoid backward δ = g·a·(1−a) (reads g and a, writes δ: 3 arrays of n) and a
    raw device copy of the same bytes (1.5 n read, 1.5 n written); with their bytes moved."""
    g = backend.asarray(numpy.random.default_rng(0).uniform(-1, 1, n), dtype)
    a = backend.asarray(numpy.random.default_rng(1).uniform(0, 1, n), dtype)
    out, scratch = backend.empty((n,), dtype), {}
    return _beside_a_copy(backend, dtype, "sigmoid_backward (fused)", 3 * n,
                          lambda: backend.activation_backward(g, a, "sigmoid", out=out, scratch=scratch))


def adam_kernel_cases(backend, dtype, n):
    """The fused Adam update over n parameters (reads θ, g, m, v; writes θ, m, v: 7 numbers per
    parameter, plus the one-thread step-count kernel) and a raw device copy of the same bytes
    (3.5 n read, 3.5 n written); with their bytes moved."""
    rng = numpy.random.default_rng(2)
    param, grad = backend.asarray(rng.uniform(-1, 1, n), dtype), backend.asarray(rng.uniform(-1e-3, 1e-3, n), dtype)
    m, v = backend.asarray(numpy.zeros(n), dtype), backend.asarray(numpy.zeros(n), dtype)
    step = backend.asarray(numpy.zeros(1, numpy.int64), numpy.int64)
    scratch = {}
    return _beside_a_copy(backend, dtype, "adam_update (fused)", 7 * n,
                          lambda: backend.adam_update(param, grad, m, v, step, 1e-9, 0.9, 0.999, 1e-8, 0.0, None, scratch))


def _beside_a_copy(backend, dtype, name, numbers, run):
    """[(case, bytes moved)] for ``run()``, which moves ``numbers`` elements of ``dtype``, and for a
    raw device copy of the same bytes (half of them read, half written), under the device."""
    half = numbers // 2
    src, dst = backend.empty((half,), dtype), backend.empty((half,), dtype)  # a copy moves bytes, whatever they hold
    activate = backend.activate

    def fused():
        with activate():
            run()

    def copy():
        with activate():
            backend.device_copy(dst, src)

    itemsize = numpy.dtype(dtype).itemsize
    timer = backend.timer()
    return [(Case(name, fused, timer), numbers * itemsize), (Case("device copy, same bytes", copy, timer), 2 * half * itemsize)]
