"""The peers of issue 18: the same MSE + SGD step written by hand in PyTorch (no autograd) and as one
``jax.jit`` function (see ``cases``)."""
from __future__ import annotations

import numpy

from .data import LEARNING_RATE, Case, MSE_SGD, _data
from .torch_cases import _initial_params, _matmul_precision, _torch_device


# The hand-written peers (issue 18) implement one loss and one optimizer: the table.
PEER_TRAINING = ("mse", "sgd")


def jax_status():
    """(jax module or None, why not)."""
    try:
        import jax
    except Exception as exc:
        return None, f"not installed ({type(exc).__name__})"
    return jax, None


def _peer_unsupported(name, training):
    """Why the hand-written peer ``name`` cannot train with ``training``, or None."""
    if (training.loss, training.optimizer) != PEER_TRAINING:
        return (f"skipped: {name} is written for loss {PEER_TRAINING[0]} and optimizer {PEER_TRAINING[1]} only "
                f"(got {training.describe()})")
    return None


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
