"""train_step on CuPy records its work into a CUDA graph at the second call with the same buffers
and replays it after: these tests check that the replays compute what the NumPy backend does,
step after step, with new data in the same buffers, and that the device-side guard still refuses
a non-finite batch with every parameter left bit-identical.

One body, two devices: each test runs on the
CUDA emulator (tests/cuda_emulator, the real CupyBackend over kernels compiled for the CPU) everywhere,
and on a real CUDA device (that parameter marked ``gpu``) where there is one.
On the emulator a "graph" is the emulator's recording of the stream (launches with their arrays by
address and their scalars by value, replayed in order), which is what a CUDA graph holds. Tolerances as in
test_gpu.py (float64 1e-12, float32 1e-5), relative to the largest entry; a few steps compound.
"""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop import activations

from device_fixtures import cp, gpu  # noqa: F401 (fixtures)

RTOL = {"float32": 3e-5, "float64": 1e-11}
SIZES = [16, 64, 32, 4]


def pair(gpu, dtype, hidden="sigmoid", seed=3):
    make = lambda backend: gb.MLP(SIZES, hidden_activation=hidden, dtype=dtype, backend=backend, seed=seed)  # noqa: E731
    return make("numpy"), make(gpu)


def assert_same_params(net_cpu, net_gpu, rtol, what):
    for layer, ((W_c, b_c), (W_g, b_g)) in enumerate(zip(net_cpu.get_params(), net_gpu.get_params())):
        for name, c, g in (("W", W_c, W_g), ("b", b_c, b_g)):
            scale = max(numpy.abs(c).max(), 1e-30)
            error = numpy.abs(g.astype(numpy.float64) - c).max()
            assert error <= rtol * scale, f"{what}: layer {layer} {name} off by {error:.3g} (scale {scale:.3g})"


def graphs_of(net, cp):
    return [r for ws in net.steps.workspaces.values() for r in ws.recordings.values() if isinstance(r, cp.cuda.graph.Graph)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", activations.HIDDEN)
def test_replayed_steps_match_numpy_with_new_data_in_the_same_buffers(cp, gpu, dtype, hidden):
    cupy = cp
    rng = numpy.random.default_rng(11)
    net_cpu, net_gpu = pair(gpu, dtype, hidden)
    X_dev = cupy.empty((64, SIZES[0]), dtype=dtype)
    Y_dev = cupy.empty((64, SIZES[-1]), dtype=dtype)
    for step in range(6):  # 1: eager, 2: recorded then launched, 3-6: replayed
        X = rng.normal(size=X_dev.shape).astype(dtype)
        Y = rng.uniform(size=Y_dev.shape).astype(dtype)
        X_dev.set(X)  # new content, same address: the replay must read it
        Y_dev.set(Y)
        loss_c = net_cpu.train_step(X, Y, 0.1)
        loss_g = net_gpu.train_step(X_dev, Y_dev, 0.1)
        assert loss_g == pytest.approx(loss_c, rel=RTOL[dtype]), f"step {step}"
        assert_same_params(net_cpu, net_gpu, RTOL[dtype], f"after step {step}")
    assert net_gpu.capture_error is None, net_gpu.capture_error
    assert len(graphs_of(net_gpu, cp)) == 1, "the step was not recorded as a CUDA graph"


def test_host_inputs_replay_through_the_workspace_buffers(cp, gpu):
    rng = numpy.random.default_rng(5)
    net_cpu, net_gpu = pair(gpu, "float64")
    for _ in range(5):
        X = rng.normal(size=(32, SIZES[0]))  # host arrays: copied into the same device buffers
        Y = rng.uniform(size=(32, SIZES[-1]))
        assert net_gpu.train_step(X, Y, 0.05) == pytest.approx(net_cpu.train_step(X, Y, 0.05), rel=RTOL["float64"])
    assert_same_params(net_cpu, net_gpu, RTOL["float64"], "after 5 steps")
    assert graphs_of(net_gpu, cp)


def test_each_check_mode_gets_its_own_recording_and_a_learning_rate_change_none(cp, gpu):
    rng = numpy.random.default_rng(6)
    net_cpu, net_gpu = pair(gpu, "float64")
    X, Y = rng.normal(size=(8, SIZES[0])), rng.uniform(size=(8, SIZES[-1]))
    for lr, check in [(0.1, True)] * 3 + [(0.01, True)] * 3 + [(0.1, False)] * 3:
        loss_c = net_cpu.train_step(X, Y, lr, check_finite=check)
        loss_g = net_gpu.train_step(X, Y, lr, check_finite=check)
        assert loss_g == pytest.approx(loss_c, rel=RTOL["float64"])
    assert_same_params(net_cpu, net_gpu, RTOL["float64"], "after mixed steps")
    assert len(graphs_of(net_gpu, cp)) == 2  # the learning rate is read on the device: not part of the key


@pytest.mark.parametrize("bad", ["nan_in_x", "inf_behind_saturated_sigmoid", "nan_in_y"])
def test_replayed_step_refuses_a_non_finite_batch_and_changes_nothing(cp, gpu, bad):
    cupy = cp
    rng = numpy.random.default_rng(7)
    _, net = pair(gpu, "float32")
    X_dev = cupy.asarray(rng.normal(size=(16, SIZES[0])), dtype=cupy.float32)
    Y_dev = cupy.asarray(rng.uniform(size=(16, SIZES[-1])), dtype=cupy.float32)
    for _ in range(3):  # recorded and replayed on good data
        net.train_step(X_dev, Y_dev, 0.1)
    assert graphs_of(net, cp)
    before = net.get_params()
    if bad == "nan_in_x":
        X_dev[3, 2] = numpy.nan
    elif bad == "nan_in_y":
        Y_dev[0, 0] = numpy.nan
    else:  # finite loss (the sigmoid saturates) but an Inf in ∂L/∂W of the first layer
        X_dev[5, 1] = numpy.inf
    with pytest.raises(gb.NonFiniteLossError):
        net.train_step(X_dev, Y_dev, 0.1)
    for (W0, b0), (W1, b1) in zip(before, net.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()
