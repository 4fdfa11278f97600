"""Reliability on the cupy backend (marked gpu: skipped with the reason where no device is usable)."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import activations

pytestmark = pytest.mark.gpu


def host_params(net):
    return [p.tobytes() for pair in net.get_params() for p in pair]


def test_batch_too_large_for_device_memory_raises_with_the_sizes_and_the_net_still_trains():
    net = gb.MLP([4096, 1], backend="cupy", seed=0)
    before = host_params(net)
    rows = 2**26
    # 2**26 x 4096 float32 = 1 TiB: more than any device holds, so cudaMalloc fails at once, and
    # the batch itself is a broadcast view: no host memory behind it either.
    X = numpy.broadcast_to(numpy.float32(0.5), (rows, 4096))
    Y = numpy.broadcast_to(numpy.float32(0.0), (rows, 1))
    with pytest.raises(gb.BatchTooLargeError) as info:
        net.train_step(X, Y, 0.1)
    error = info.value
    assert isinstance(error, MemoryError)
    assert error.batch == rows and error.nbytes >= rows * 4096 * 4
    message = str(error)
    assert f"{rows} rows" in message and str(error.nbytes) in message and "cupy" in message
    assert "OutOfMemoryError" in message  # the underlying CuPy error is named
    del info, error  # nothing of the failed allocation is kept alive
    assert host_params(net) == before
    # the same net trains afterwards, and the step changes it
    rng = numpy.random.default_rng(0)
    x, y = rng.normal(size=(64, 4096)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    assert math.isfinite(net.train_step(x, y, 1e-3))
    assert host_params(net) != before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_and_numpy_give_the_same_checkpoint_bytes(tmp_path, dtype):
    sizes = [5, 7, 3]
    on_numpy = gb.MLP(sizes, hidden_activation="tanh", dtype=dtype, backend="numpy", seed=11)
    on_cupy = gb.MLP(sizes, hidden_activation="tanh", dtype=dtype, backend="cupy", seed=99)
    rng = numpy.random.default_rng(1)
    X, Y = rng.normal(size=(16, 5)), rng.normal(size=(16, 3))
    for _ in range(3):
        on_numpy.train_step(X, Y, 0.1)
    on_cupy.set_params(on_numpy.get_params())
    on_numpy.save(tmp_path / "numpy.npz")
    on_cupy.save(tmp_path / "cupy.npz")
    assert (tmp_path / "numpy.npz").read_bytes() == (tmp_path / "cupy.npz").read_bytes()
    # and across backends the round trip is bit-exact both ways
    assert host_params(gb.MLP.load(tmp_path / "cupy.npz", backend="numpy")) == host_params(on_cupy)
    back_on_gpu = gb.MLP.load(tmp_path / "numpy.npz", backend="cupy")
    assert back_on_gpu.backend.name == "cupy" and host_params(back_on_gpu) == host_params(on_numpy)


def test_cupy_array_into_a_numpy_net_is_refused_with_how_to_move_it():
    import cupy

    net = gb.MLP([3, 2], backend="numpy", seed=0)
    with pytest.raises(TypeError) as info:
        net.forward(cupy.zeros((4, 3), dtype=cupy.float32))
    assert "X" in str(info.value) and ".get()" in str(info.value)


def test_numpy_array_into_a_cupy_net_is_moved_to_the_device():
    import cupy

    net = gb.MLP([3, 4, 2], backend="cupy", seed=0)
    X = numpy.random.default_rng(2).normal(size=(6, 3)).astype("float32")
    out = net.forward(X)
    assert isinstance(out, cupy.ndarray)
    assert out.get().tobytes() == net.forward(cupy.asarray(X)).get().tobytes()


@pytest.mark.parametrize("where", ["X", "Y"])
def test_non_finite_batch_on_cupy_raises_and_changes_nothing(where):
    net = gb.MLP([3, 4, 2], backend="cupy", seed=2)
    params = net.get_params()
    params[0] = (numpy.full((4, 3), 50.0), params[0][1])  # saturated sigmoid: an Inf X gives a finite loss
    net.set_params(params)
    before = host_params(net)
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))
    if where == "X":
        X[1, 2] = numpy.inf
    else:
        Y[0, 1] = numpy.nan
    with pytest.raises(gb.NonFiniteLossError) as info:
        net.train_step(X, Y, 0.1)
    assert (info.value.where == "gradients") if where == "X" else math.isnan(info.value.loss)
    assert host_params(net) == before


def test_check_finite_false_gives_the_same_step_on_cupy():
    rng = numpy.random.default_rng(3)
    X, Y = rng.normal(size=(32, 3)), rng.uniform(size=(32, 2))
    checked, unchecked = gb.MLP([3, 4, 2], backend="cupy", seed=4), gb.MLP([3, 4, 2], backend="cupy", seed=4)
    assert checked.train_step(X, Y, 0.3) == unchecked.train_step(X, Y, 0.3, check_finite=False)
    assert host_params(checked) == host_params(unchecked)


@pytest.mark.parametrize("dtype, big", [("float32", 1e4), ("float64", 1e6)])
@pytest.mark.parametrize("hidden", activations.HIDDEN)
def test_kernels_stay_finite_at_extreme_pre_activations(dtype, big, hidden):
    net = gb.MLP([1, 1, 1], hidden_activation=hidden, output_activation="sigmoid", dtype=dtype, backend="cupy")
    net.set_params([(numpy.ones((1, 1)), numpy.zeros(1)), (numpy.ones((1, 1)), numpy.zeros(1))])
    X = numpy.concatenate([numpy.linspace(-big, big, 1001), [0.0, -big, big]]).reshape(-1, 1)
    loss, grads = net.loss_and_grads(X, numpy.full_like(X, 0.5))
    assert math.isfinite(loss) and all(numpy.isfinite(g).all() for pair in grads for g in pair)
    assert bool(numpy.isfinite(net.backend.to_numpy(net.forward(X))).all())
