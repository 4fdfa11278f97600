"""AdamW, gradient clipping and the learning-rate schedules equal PyTorch's, step for step:
``fit(shuffle=False)`` against a torch loop over the same batches, in float64.

Tolerance 1e-12 (relative and absolute): the GEMMs sum in a different order in torch's kernels than
in NumPy's BLAS, and the clipping norm is ‖(‖g₁‖, ‖g₂‖, ...)‖ in torch but √Σg² here; each such
difference is a few ulps (~1e-16 relative), and the few dozen steps here leave it far below 1e-12.
"""
import math

import numpy
import pytest
from conftest import need

import gpubackprop as gb
from gpubackprop.optimizers import schedules

torch = need("torch")

SIZES = [3, 8, 6, 2]
ROWS, BATCH = 70, 16  # 5 steps an epoch, the last one partial (6 rows)


def data(seed=0):
    rng = numpy.random.default_rng(seed)
    return rng.normal(size=(ROWS, SIZES[0])), rng.normal(size=(ROWS, SIZES[-1]))


def torch_run(net, X, Y, epochs, make_optimizer, make_scheduler=None, clip_norm=None):
    """The same training in torch: the net's initial parameters, the same batches in order,
    L = 1/(2B) Σ (ŷ − y)² (the mse loss here), sigmoid hidden layers and an identity output."""
    params = []
    for W, b in net.get_params():
        params += [torch.tensor(W, dtype=torch.float64, requires_grad=True),
                   torch.tensor(b, dtype=torch.float64, requires_grad=True)]
    opt = make_optimizer(params)
    scheduler = None if make_scheduler is None else make_scheduler(opt)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for _ in range(epochs):
        for start in range(0, ROWS, BATCH):
            a, y = Xt[start:start + BATCH], Yt[start:start + BATCH]
            for i in range(0, len(params), 2):
                a = a @ params[i].T + params[i + 1]
                if i + 2 < len(params):
                    a = torch.sigmoid(a)
            loss = ((a - y) ** 2).sum() / (2 * a.shape[0])
            opt.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            if scheduler is not None:
                scheduler.step()
    return [p.detach().numpy() for p in params]


def assert_same(net, torch_params):
    ours = [array for pair in net.get_params() for array in pair]
    for mine, theirs in zip(ours, torch_params):
        numpy.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def make_net(**kwargs):
    return gb.MLP(SIZES, dtype="float64", backend="numpy", seed=1, **kwargs)


def test_adamw_equals_torch_adamw():
    X, Y = data()
    net = make_net(optimizer="adamw", weight_decay=0.05, beta1=0.8, beta2=0.99)
    expected = torch_run(net, X, Y, 4, lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.8, 0.99), eps=1e-8,
                                                                   weight_decay=0.05))
    net.fit(X, Y, epochs=4, batch_size=BATCH, lr=0.02, shuffle=False, progress=False)
    assert_same(net, expected)
    assert net.get_optimizer_state()["step"] == 20


def test_adamw_default_weight_decay_is_torchs():
    assert gb.Optimizer("adamw").weight_decay == 0.01 == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"]


def test_adamw_decay_is_decoupled_from_adams_l2():
    # Same settings, different rule: AdamW decays θ by lr·λ itself; Adam adds λθ to the gradient.
    X, Y = data()
    a, b = make_net(optimizer="adam", weight_decay=0.1), make_net(optimizer="adamw", weight_decay=0.1)
    for net in (a, b):
        net.fit(X, Y, epochs=1, batch_size=BATCH, lr=0.05, shuffle=False, progress=False)
    assert not numpy.allclose(a.get_params()[0][0], b.get_params()[0][0], rtol=1e-6)


@pytest.mark.parametrize("optimizer, options, make", [
    ("sgd", {}, lambda p: torch.optim.SGD(p, lr=0.5)),
    ("momentum", {"nesterov": True}, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True)),
    ("adamw", {}, lambda p: torch.optim.AdamW(p, lr=0.5)),
])
def test_clip_norm_equals_torch_clip_grad_norm_then_the_step(optimizer, options, make):
    X, Y = data(2)
    net = make_net(optimizer=optimizer, **options)
    expected = torch_run(net, X, Y, 3, make, clip_norm=0.05)
    net.fit(X, Y, epochs=3, batch_size=BATCH, lr=0.5, shuffle=False, progress=False, clip_norm=0.05)
    assert_same(net, expected)


def test_clip_norm_clips_only_norms_above_it():
    # A huge clip_norm changes nothing (the factor is min(1, ...)): the same numbers, bit for bit.
    X, Y = data(3)
    a, b = make_net(), make_net()
    a.fit(X, Y, epochs=1, batch_size=BATCH, lr=0.3, shuffle=False, progress=False)
    b.fit(X, Y, epochs=1, batch_size=BATCH, lr=0.3, shuffle=False, progress=False, clip_norm=1e6)
    for (W0, b0), (W1, b1) in zip(a.get_params(), b.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()
    # train_step clips the same way: the update's size is lr·clip_norm at most.
    net = make_net()
    before = numpy.concatenate([p.ravel() for pair in net.get_params() for p in pair])
    net.train_step(X[:16], Y[:16] * 100, 1.0, clip_norm=0.01)
    after = numpy.concatenate([p.ravel() for pair in net.get_params() for p in pair])
    assert numpy.linalg.norm(after - before) == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1.0, ValueError), (math.inf, ValueError),
                                        (math.nan, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_clip_norm_is_a_clear_error(bad, error):
    net = make_net()
    X, Y = data()
    with pytest.raises(error, match="clip_norm must be a positive finite number"):
        net.fit(X, Y, clip_norm=bad, progress=False)
    with pytest.raises(error, match="clip_norm"):
        net.train_step(X, Y, 0.1, clip_norm=bad)


SCHEDULES = {
    "step": (schedules.StepLR(0.3, step_size=3, gamma=0.5),
             lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)),
    "exponential": (schedules.ExponentialLR(0.3, gamma=0.9),
                    lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)),
    "cosine_warmup": (schedules.CosineWithWarmup(0.3, warmup_steps=4, total_steps=20, eta_min=0.01),
                      lambda opt: torch.optim.lr_scheduler.SequentialLR(opt, [
                          torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 3, total_iters=4),
                          torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=16, eta_min=0.01)], milestones=[4])),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_equal_torch_lr_schedulers(name):
    schedule, make_scheduler = SCHEDULES[name]
    X, Y = data(4)
    net = make_net(optimizer="momentum")
    expected = torch_run(net, X, Y, 4, lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9), make_scheduler)
    net.fit(X, Y, epochs=4, batch_size=BATCH, lr=schedule, shuffle=False, progress=False)
    assert_same(net, expected)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_values_follow_torch(name):
    schedule, make_scheduler = SCHEDULES[name]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    scheduler = make_scheduler(opt)
    for step in range(20):
        assert schedule(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-13), step
        opt.step()
        scheduler.step()


def test_a_schedule_continues_across_fit_calls_and_checkpoints(tmp_path):
    # step counts the network's accepted optimizer steps: two fits of 2 epochs, with a save and
    # load between them, are one run of 4 epochs.
    schedule = schedules.ExponentialLR(0.3, gamma=0.8)
    X, Y = data(5)
    whole, parts = make_net(optimizer="adam"), make_net(optimizer="adam")
    whole.fit(X, Y, epochs=4, batch_size=BATCH, lr=schedule, shuffle=False, progress=False)
    parts.fit(X, Y, epochs=2, batch_size=BATCH, lr=schedule, shuffle=False, progress=False)
    parts.save(tmp_path / "half.npz")
    parts = gb.MLP.load(tmp_path / "half.npz", backend="numpy")
    assert parts.get_optimizer_state()["step"] == 10
    parts.fit(X, Y, epochs=2, batch_size=BATCH, lr=schedule, shuffle=False, progress=False)
    for (W0, b0), (W1, b1) in zip(whole.get_params(), parts.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


def test_a_schedule_that_gives_a_bad_value_is_a_clear_error():
    X, Y = data()
    net = make_net()
    with pytest.raises(ValueError, match="the lr schedule at step 0: a scheduled lr must be a finite number >= 0"):
        net.fit(X, Y, lr=lambda step: -1.0, progress=False)
    with pytest.raises(ValueError, match="the lr schedule at step 5"):
        net.fit(X, Y, epochs=2, batch_size=BATCH, lr=lambda step: 0.1 if step < 5 else math.nan, progress=False)
    assert net.get_optimizer_state()["step"] == 5 and net.epochs_trained == 1  # the first epoch ran
    with pytest.raises(ValueError, match="total_steps"):
        schedules.CosineWithWarmup(0.1, warmup_steps=10, total_steps=10)
