"""The learning rate lives on the device: changing it never records a new step, and a schedule's
values reach the device in one copy per launch, not a host round trip per step."""
import numpy
import pytest

import gpubackprop as gb
from recorders import CountingRecorder
from gpubackprop.optimizers import schedules


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_recording_serves_100_learning_rates(optimizer):
    net = gb.MLP([3, 5, 2], optimizer=optimizer, dtype="float64", backend="numpy", seed=0)
    recorder = net.steps.recorder = CountingRecorder()
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    lrs = numpy.geomspace(1e-3, 1e-1, 100)
    reference = gb.MLP([3, 5, 2], optimizer=optimizer, dtype="float64", backend="numpy", seed=0)
    for lr in lrs:
        net.train_step(X, Y, lr)
        reference.train_step(X, Y, lr)
    assert len(recorder.keys) == 100 and len(set(recorder.keys)) == 1  # one recording, replayed 99 times
    for (W0, b0), (W1, b1) in zip(net.get_params(), reference.get_params()):  # and each lr was used
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


def test_the_step_reads_the_learning_rate_where_it_runs():
    # sgd: θ ← θ − lr·g with lr read from the device buffer at the step, not baked in before.
    net = gb.MLP([3, 4, 2], dtype="float64", backend="numpy", seed=1)
    rng = numpy.random.default_rng(1)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    for lr in (0.3, 0.05, 1.7):
        _, grads = net.loss_and_grads(X, Y)
        before = net.get_params()
        net.train_step(X, Y, lr)
        for (W0, b0), (gW, gb_), (W1, b1) in zip(before, grads, net.get_params()):
            assert (W1 == W0 - lr * gW).all() and (b1 == b0 - lr * gb_).all()


def test_a_schedule_in_fit_keeps_one_recording_per_launch_shape_and_one_copy_per_launch(monkeypatch):
    net = gb.MLP([2, 5, 1], backend="numpy", seed=0)
    recorder = net.steps.recorder = CountingRecorder()
    copies = []
    original = net.steps.params.write_lrs
    monkeypatch.setattr(net.steps.params, "write_lrs", lambda values: copies.append(len(values)) or original(values))
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(40 * 16 + 5, 2)), rng.normal(size=40 * 16 + 5)
    net.fit(X, Y, epochs=3, batch_size=16, lr=schedules.ExponentialLR(0.1, 0.99), progress=False)
    # Per epoch: a launch of 32 steps, one of 8, the partial batch alone; the same three
    # recordings in every epoch, whatever the 123 learning rates.
    assert len(recorder.keys) == 9 and len(set(recorder.keys)) == 3
    assert copies == [32, 8, 1] * 3  # the next steps' learning rates, one copy per launch
    assert net.get_optimizer_state()["step"] == 123


def test_constant_lr_in_fit_is_written_once_an_epoch():
    net = gb.MLP([2, 5, 1], backend="numpy", seed=0)
    copies = []
    original = net.steps.params.write_lrs
    net.steps.params.write_lrs = lambda values: copies.append(len(values)) or original(values)
    X, Y = numpy.ones((100, 2)), numpy.ones(100)
    # a train_step between epochs (from a callback) writes its own lr: fit's comes back at the next epoch
    X = numpy.random.default_rng(0).normal(size=(100, 2))
    net.fit(X, Y, epochs=3, batch_size=10, lr=0.1, shuffle=False, progress=False,
            on_epoch=lambda r: net.train_step(X[:5], Y[:5], 5.0))
    assert copies == [32] * 3
    reference = gb.MLP([2, 5, 1], backend="numpy", seed=0)
    for _ in range(3):
        reference.fit(X, Y, epochs=1, batch_size=10, lr=0.1, shuffle=False, progress=False)
        reference.train_step(X[:5], Y[:5], 5.0)
    assert all((a == b).all() for pair in zip(net.get_params(), reference.get_params()) for a, b in zip(*pair))


# ---------------------------------------------------------------------- on a device (emulated; CUDA where there is one)
STEP_RTOL = {"float32": 1e-4, "float64": 1e-10}  # as tests/test_emulated_device.py: GEMM sums in other orders


def assert_params_close(a, b, rtol):
    for (Wa, ba), (Wb, bb) in zip(a.get_params(), b.get_params()):
        for x, y in ((Wa, Wb), (ba, bb)):
            assert numpy.abs(x.astype(numpy.float64) - y).max() <= rtol * max(numpy.abs(y).max(), 1e-30)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_on_a_device_one_cuda_graph_replays_100_learning_rates(device, race_check, optimizer, dtype):
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    make = lambda backend: gb.MLP([3, 5, 2], optimizer=optimizer, dtype=dtype, backend=backend, seed=0)  # noqa: E731
    net, reference = make(device.backend), make("numpy")
    for lr in numpy.geomspace(1e-3, 1e-1, 100):
        assert net.train_step(X, Y, lr) == pytest.approx(reference.train_step(X, Y, lr), rel=STEP_RTOL[dtype])
    assert net.recording == "used"
    (ws,) = net.steps.workspaces.values()
    assert len(ws.recordings) == 1  # recorded at the second step, replayed at the 98 after it
    assert_params_close(net, reference, STEP_RTOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_on_a_device_a_schedule_and_clipping_in_fit_match_numpy(device, race_check, dtype):
    rng = numpy.random.default_rng(1)
    X, Y = rng.normal(size=(90, 3)), rng.normal(size=(90, 2))
    make = lambda backend: gb.MLP([3, 5, 2], optimizer="adamw", dtype=dtype, backend=backend, seed=0)  # noqa: E731
    net, reference = make(device.backend), make("numpy")
    schedule = schedules.CosineWithWarmup(0.05, warmup_steps=5, total_steps=40)
    for model in (net, reference):
        model.fit(X, Y, epochs=4, batch_size=8, lr=schedule, clip_norm=0.5, seed=3, progress=False)
    assert net.get_optimizer_state()["step"] == reference.get_optimizer_state()["step"] == 4 * 12
    assert net.recording == "used"
    assert_params_close(net, reference, STEP_RTOL[dtype])
