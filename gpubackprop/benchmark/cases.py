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

import itertools

import numpy

from .data import LEARNING_RATE, MSE_SGD, Case, Training, _data  # noqa: F401 (Case, Training: public here too)
from .peer_cases import PEER_TRAINING, jax_status, make_jax_jit, make_torch_manual  # noqa: F401
from .torch_cases import _capture, _matmul_precision, _torch_device, _torch_model, _torch_optimizer, torch_status  # noqa: F401


SIZES = {
    "tiny": ([2, 2, 1], 1),
    "small": ([64, 128, 128, 1], 64),
    "medium": ([784, 256, 256, 10], 256),
    "large": ([1024, 1024, 1024, 1024, 1], 2048),
}


CASES = ("gpubackprop", "fit", "floor", "torch", "torch_manual", "jax_jit", "torch_graphed", "torch_fit")


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


def make_ours(backend, sizes, batch, dtype, precision="fp32", training=MSE_SGD) -> Case:
    from ..model import MLP

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
    from ..model import MLP

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
