"""The optimizers follow torch.optim step for step (float64, 20 steps, 1e-12); a refused step leaves
parameters and state bit-identical; settings are checked. CPU; the kernels: tests/test_classify_gpu.py."""
import math

import numpy
import pytest
from conftest import missing

import gpubackprop as gb
from gpubackprop import optimizers

try:  # the live parity tests need PyTorch; the stored torch values are checked without it (test_torch_reference.py)
    import torch
except ImportError:
    torch = None
F = None if torch is None else torch.nn.functional
needs_torch = pytest.mark.requires(missing("torch"))  # (live parity; the stored torch values are checked anyway)

CONFIGS = [
    ("sgd", {}, {}),
    ("sgd", {"weight_decay": 0.05}, {"weight_decay": 0.05}),
    ("momentum", {"momentum": 0.9}, {"momentum": 0.9}),
    ("momentum", {"momentum": 0.8, "nesterov": True}, {"momentum": 0.8, "nesterov": True}),
    ("momentum", {"momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.9, "weight_decay": 0.01}),
    ("adam", {}, {}),
    ("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam", {"weight_decay": 0.1}, {"weight_decay": 0.1}),
]


def torch_optimizer(name, params, lr, options):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **options)
    return torch.optim.SGD(params, lr=lr, **options)


@needs_torch
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
@pytest.mark.parametrize("name, ours, theirs", CONFIGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for n, o, _ in CONFIGS])
def test_twenty_steps_follow_torch_optim(rng, name, ours, theirs, loss):
    sizes, batch, lr = [5, 8, 3], 16, 0.05
    net = gb.MLP(sizes, hidden_activation="tanh", loss=loss, optimizer=name, dtype="float64", backend="numpy",
                 seed=4, **ours)
    params = [torch.tensor(a, requires_grad=True) for pair in net.get_params() for a in pair]
    opt = torch_optimizer(name, params, lr, theirs)
    for step in range(20):
        X = rng.normal(size=(batch, 5))
        Y = rng.integers(0, 3, batch) if loss != "mse" else rng.normal(size=(batch, 3))
        ours_loss = net.train_step(X, Y, lr)
        opt.zero_grad()
        z = F.linear(torch.tanh(F.linear(torch.tensor(X), params[0], params[1])), params[2], params[3])
        if loss == "mse":
            ref = 0.5 * ((z - torch.tensor(Y)) ** 2).sum() / batch
        else:
            ref = F.cross_entropy(z, torch.tensor(Y))
        ref.backward()
        opt.step()
        assert ours_loss == pytest.approx(ref.item(), abs=1e-12)
        for ours_array, theirs_array in zip([a for pair in net.get_params() for a in pair], params):
            numpy.testing.assert_allclose(ours_array, theirs_array.detach().numpy(), rtol=0, atol=1e-12,
                                          err_msg=f"step {step + 1}")
    state = net.get_optimizer_state()
    if name == "adam":
        assert state["step"] == 20
        m = numpy.concatenate([opt.state[p]["exp_avg"].numpy().ravel() for p in params])
        v = numpy.concatenate([opt.state[p]["exp_avg_sq"].numpy().ravel() for p in params])
        numpy.testing.assert_allclose(state["buffers"][0], m, rtol=0, atol=1e-12)
        numpy.testing.assert_allclose(state["buffers"][1], v, rtol=0, atol=1e-12)
    elif "momentum" in ours:
        velocity = numpy.concatenate([opt.state[p]["momentum_buffer"].numpy().ravel() for p in params])
        numpy.testing.assert_allclose(state["buffers"][0], velocity, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "adam"])
@pytest.mark.parametrize("bad", ["nan_input", "inf_target"])
def test_a_refused_step_leaves_parameters_and_state_bit_identical(rng, name, bad):
    net = gb.MLP([3, 4, 2], optimizer=name, dtype="float32", backend="numpy", seed=0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    for _ in range(3):
        net.train_step(X, Y, 0.01)
    params, state = net.get_params(), net.get_optimizer_state()
    X_bad, Y_bad = X.copy(), Y.copy()
    if bad == "nan_input":
        X_bad[2, 1] = numpy.nan
    else:
        Y_bad[5, 0] = numpy.inf
    with pytest.raises(gb.NonFiniteLossError):
        net.train_step(X_bad, Y_bad, 0.01)
    for (W0, b0), (W1, b1) in zip(params, net.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()
    after = net.get_optimizer_state()
    assert after["step"] == state["step"] and after["buffers"].tobytes() == state["buffers"].tobytes()
    net.train_step(X, Y, 0.01)  # and training goes on from there
    assert net.get_optimizer_state()["step"] == state["step"] + 1  # every optimizer counts its accepted steps


def test_adam_step_count_counts_accepted_steps_only_and_resets(rng):
    net = gb.MLP([2, 2], optimizer="adam", backend="numpy", seed=0)
    X, Y = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    for _ in range(5):
        net.train_step(X, Y, 1e-3)
    assert net.get_optimizer_state()["step"] == 5
    net.reset_optimizer()
    state = net.get_optimizer_state()
    assert state["step"] == 0 and not state["buffers"].any()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of 'sgd', 'momentum', 'adam'"),
    ({"optimizer": "sgd", "beta1": 0.9}, ValueError, "beta1 applies to optimizer 'adam' or 'adamw', not 'sgd'"),
    ({"optimizer": "adam", "momentum": 0.9}, ValueError, "momentum applies to optimizer 'momentum', not 'adam'"),
    ({"optimizer": "momentum", "momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\)"),
    ({"optimizer": "momentum", "momentum": 0.0, "nesterov": True}, ValueError, "nesterov needs a momentum"),
    ({"optimizer": "adam", "beta2": -0.1}, ValueError, r"beta2 must be in \[0, 1\)"),
    ({"optimizer": "adam", "eps": 0.0}, ValueError, r"eps must be in \(0, inf"),
    ({"optimizer": "adam", "weight_decay": math.nan}, ValueError, "weight_decay must be in"),
    ({"optimizer": "adam", "beta1": "0.9"}, TypeError, "beta1 must be a real number"),
])
def test_bad_settings_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        gb.MLP([2, 1], backend="numpy", **kwargs)


def test_settings_round_trip_and_describe():
    opt = optimizers.configure("adam", beta1=0.8, weight_decay=0.01)
    assert optimizers.from_json(opt.to_json()) == opt
    assert opt.describe() == "adam (beta1 0.8, beta2 0.999, eps 1e-08, weight_decay 0.01)"
    assert optimizers.configure("momentum").momentum == 0.9 and optimizers.configure("sgd").state_buffers == 0
    assert optimizers.configure("sgd", weight_decay=0.1).state_buffers == 0  # its decay needs no state
    assert gb.MLP([2, 1], optimizer=opt, backend="numpy").optimizer is opt


def test_default_training_is_the_lessons_sgd_unchanged(rng):
    # optimizer="sgd" runs exactly θ ← θ − lr·g (the lesson's update), with no state.
    net = gb.MLP([3, 4, 2], dtype="float64", backend="numpy", seed=1)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    _, grads = net.loss_and_grads(X, Y)
    before = net.get_params()
    net.train_step(X, Y, 0.3)
    for (W0, b0), (gW, gb_), (W1, b1) in zip(before, grads, net.get_params()):
        assert (W1 == W0 - 0.3 * gW).all() and (b1 == b0 - 0.3 * gb_).all()
    assert net.get_optimizer_state()["buffers"].shape == (0, 4 * 3 + 4 + 2 * 4 + 2)
