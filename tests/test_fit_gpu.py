"""fit on CuPy: many steps per launch, recorded as CUDA graphs (STEPS_PER_LAUNCH steps each) and
replayed across epochs, each epoch with a new permutation in the same device buffer.

One body, two devices: each test runs on the
CUDA emulator (tests/cuda_emulator, the real CupyBackend over kernels compiled for the CPU) everywhere,
and on a real CUDA device (that parameter marked ``gpu``) where there is one. float64 against the
per-step loop on CuPy bit for bit; against NumPy at the tolerances of test_graphs_gpu.py.
"""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop import training

from device_fixtures import cp, gpu  # noqa: F401 (fixtures)

RTOL = {"float32": 3e-5, "float64": 1e-11}
SIZES = [3, 32, 16, 2]


def data(n, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, SIZES[0]))
    return X, numpy.stack([numpy.sin(X[:, 0]) * X[:, 1], numpy.cos(X[:, 2])], axis=1)


def per_step(net, X, Y, epochs, batch_size, lr, seed, first_steps=None):
    """train_step over fit's batches; ``first_steps``: stop after that many steps of the last epoch."""
    rng, order, losses = numpy.random.default_rng(seed), numpy.arange(len(X)), []
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for step, start in enumerate(range(0, len(X), batch_size)):
            if first_steps is not None and epoch == epochs - 1 and step == first_steps:
                return losses
            idx = order[start:start + batch_size]
            total += net.train_step(X[idx], Y[idx], lr) * len(idx)
        losses.append(total / len(X))
    return losses


def graphs_of(net, cp):
    return [r for ws in net.steps.workspaces.values() for r in ws.recordings.values() if isinstance(r, cp.cuda.graph.Graph)]


def assert_params(a, b, rtol=0.0):
    for (Wa, ba), (Wb, bb) in zip(a.get_params(), b.get_params()):
        for x, y in ((Wa, Wb), (ba, bb)):
            if rtol == 0.0:
                numpy.testing.assert_array_equal(x, y)
            else:
                assert numpy.abs(x - y).max() <= rtol * max(numpy.abs(y).max(), 1e-30)


def test_fit_float64_is_the_per_step_loop_bit_for_bit_on_cupy_and_matches_numpy(cp, gpu):
    n, batch, epochs = 40 * 16 + 5, 16, 5  # launches of 32, 8 and 1 steps; recorded in epoch 2, replayed after
    X, Y = data(n)
    fitted = gb.MLP(SIZES, dtype="float64", backend=gpu, seed=1)
    stepped = gb.MLP(SIZES, dtype="float64", backend=gpu, seed=1)
    on_cpu = gb.MLP(SIZES, dtype="float64", backend="numpy", seed=1)
    history = fitted.fit(X, Y, epochs=epochs, batch_size=batch, lr=0.05, seed=9, progress=False)
    assert history.loss == per_step(stepped, X, Y, epochs, batch, 0.05, seed=9)
    assert_params(fitted, stepped)
    cpu = on_cpu.fit(X, Y, epochs=epochs, batch_size=batch, lr=0.05, seed=9, progress=False)
    numpy.testing.assert_allclose(history.loss, cpu.loss, rtol=RTOL["float64"])
    assert_params(fitted, on_cpu, RTOL["float64"])
    assert fitted.recording == "used", fitted.recording
    assert len(graphs_of(fitted, cp)) >= 3  # (32 steps), (8 steps) on the full-batch workspace, (1) on the partial one


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_graph_of_many_steps_replayed_across_epochs_with_a_new_permutation_each(cp, gpu, dtype):
    """Every epoch after the second replays the same graphs; each must gather that epoch's batches."""
    n, batch = 2 * training.STEPS_PER_LAUNCH * 8, 8  # exactly two launches of STEPS_PER_LAUNCH per epoch
    X, Y = data(n, seed=2)
    gpu_net = gb.MLP(SIZES, dtype=dtype, backend=gpu, seed=3)
    cpu = gb.MLP(SIZES, dtype=dtype, backend="numpy", seed=3)
    for epoch in range(4):  # one fit per epoch: the same permutation buffer, new content each time
        loss_g = gpu_net.fit(X, Y, epochs=1, batch_size=batch, lr=0.1, seed=epoch, progress=False).loss
        loss_c = cpu.fit(X, Y, epochs=1, batch_size=batch, lr=0.1, seed=epoch, progress=False).loss
        assert loss_g == pytest.approx(loss_c, rel=RTOL[dtype]), epoch
        assert_params(gpu_net, cpu, RTOL[dtype])
    graphs = graphs_of(gpu_net, cp)
    assert graphs and gpu_net.recording == "used"


@pytest.mark.parametrize("bad_batch", [1, 20, 33])
def test_sticky_guard_in_a_replayed_graph_keeps_the_last_good_step(cp, gpu, bad_batch):
    cupy = cp
    n, batch, lr = 40 * 16, 16, 0.05
    X, Y = data(n, seed=4)
    X_dev, Y_dev = cupy.asarray(X), cupy.asarray(Y)
    net = gb.MLP(SIZES, dtype="float64", backend=gpu, seed=5)
    reference = gb.MLP(SIZES, dtype="float64", backend=gpu, seed=5)
    net.fit(X_dev, Y_dev, epochs=3, batch_size=batch, lr=lr, seed=1, progress=False)  # recorded and replayed
    per_step(reference, X, Y, 3, batch, lr, seed=1)
    order = numpy.arange(n)
    numpy.random.default_rng(7).shuffle(order)
    X_dev[int(order[(bad_batch - 1) * batch + 3]), 0] = numpy.nan  # in place: the graphs read it
    with pytest.raises(gb.NonFiniteLossError, match=f"epoch 4, batch {bad_batch} of 40"):  # numbered on from fit's 3
        net.fit(X_dev, Y_dev, epochs=2, batch_size=batch, lr=lr, seed=7, progress=False)
    per_step(reference, X, Y, 1, batch, lr, seed=7, first_steps=bad_batch - 1)
    assert_params(net, reference)
