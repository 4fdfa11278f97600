"""No state shared between networks, one lock per network, and every call on the network's own
device whatever device the caller had current: threads and (simulated) devices, on the CPU."""
import itertools
import sys
import threading

import numpy
import pytest
from conftest import skip

import gpubackprop as gb
from gpubackprop import backends
from gpubackprop.backends import NumpyBackend
from gpubackprop.backends.base import Backend


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    """Threads switch every microsecond instead of every 5 ms, so that a race between them (a
    buffer written by one while another reads it) shows up in a short test, not once a week."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def batches(n_batches, batch, sizes, seed):
    rng = numpy.random.default_rng(seed)
    return [(rng.normal(size=(batch, sizes[0])), rng.normal(size=(batch, sizes[-1]))) for _ in range(n_batches)]


def run_in_threads(*targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def params_bytes(net):
    return [(W.tobytes(), b.tobytes()) for W, b in net.get_params()]


# ---------------------------------------------------------------------- separate networks
def assert_two_networks_in_threads_equal_the_sequential_run(backend, sizes, dtype, data, trials):
    """Networks seeded 1 and 2 trained on data[0] and data[1]: one after the other, then ``trials``
    times at once in two threads; losses and weights must agree bit for bit."""
    def train(net, steps, losses):
        for X, Y in steps:
            losses.append(net.train_step(X, Y, 0.05))

    make = lambda seed: gb.MLP(sizes, hidden_activation="tanh", dtype=dtype, backend=backend, seed=seed)  # noqa: E731
    sequential = []
    for seed, steps in zip((1, 2), data):
        net, losses = make(seed), []
        train(net, steps, losses)
        sequential.append((losses, params_bytes(net)))
    for _ in range(trials):  # a race shows up in most trials
        nets, losses = [make(1), make(2)], [[], []]
        run_in_threads(*(lambda i=i: train(nets[i], data[i], losses[i]) for i in range(2)))
        for i in range(2):
            assert nets[i].capture_error is None, nets[i].capture_error
            assert losses[i] == sequential[i][0]
            assert params_bytes(nets[i]) == sequential[i][1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_networks_in_two_threads_equal_the_sequential_run(dtype):
    sizes = [64, 256, 128, 4]  # arrays large enough that NumPy releases the GIL inside its loops
    data = [batches(50, 128, sizes, seed) for seed in (1, 2)]
    assert_two_networks_in_threads_equal_the_sequential_run("numpy", sizes, dtype, data, trials=3)


def test_networks_do_not_share_scratch_buffers():
    a, b = (gb.MLP([4, 6, 1], backend="numpy", seed=s) for s in (0, 1))
    X, Y = numpy.ones((3, 4)), numpy.ones((3, 1))
    a.train_step(X, Y, 0.1)
    b.train_step(X, Y, 0.1)
    scratch_a = {id(v) for ws in a.steps.workspaces.values() for v in ws.scratch.values()}
    scratch_b = {id(v) for ws in b.steps.workspaces.values() for v in ws.scratch.values()}
    assert scratch_a and scratch_b and not scratch_a & scratch_b
    assert not hasattr(a.backend, "_scratch")


# ---------------------------------------------------------------------- one network, many threads
def test_four_threads_predicting_on_one_network_all_get_the_right_answer():
    net = gb.MLP([6, 40, 40, 3], hidden_activation="sigmoid", backend="numpy", dtype="float64", seed=0)
    inputs = [numpy.random.default_rng(s).normal(size=(64 + 7 * s, 6)) for s in range(4)]
    # Like with like: each thread's result is compared bit for bit with the same computation (same
    # chunks, so the same GEMM shapes) done alone first. Chunked and whole differ in their last bits
    # where the BLAS's kernel depends on the number of rows (OpenBLAS SkylakeX: 3.3e-16 apart); that
    # is test_predict_in_chunks_agrees_with_one_chunk_to_rounding's business, not this test's.
    expected_chunked = [net.predict(X, batch_size=16) for X in inputs]
    expected_whole = [net.backend.to_numpy(net.forward(X)) for X in inputs]
    results = [[] for _ in inputs]

    def worker(i):
        for _ in range(30):
            results[i].append(net.predict(inputs[i], batch_size=16))  # several chunks share workspaces
            results[i].append(net.backend.to_numpy(net.forward(inputs[i])))

    run_in_threads(*(lambda i=i: worker(i) for i in range(4)))
    for i, got in enumerate(results):
        assert len(got) == 60
        for k, array in enumerate(got):
            numpy.testing.assert_array_equal(array, (expected_chunked if k % 2 == 0 else expected_whole)[i])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [1, 5, 16, 333])
def test_predict_in_chunks_agrees_with_one_chunk_to_rounding(dtype, batch_size):
    # One layer, identity output: ŷ = X Wᵀ + b, a GEMM row of K = 50 products plus the bias. Summed in
    # any order (the BLAS's blocking may depend on how many rows it gets at once), each result is
    # within γ = (K + 1)·eps/(1 − (K + 1)·eps) · (|X| |W|ᵀ + |b|) of the exact value (Higham, Accuracy and
    # Stability of Numerical Algorithms, 2nd ed., §3.1), so two of them within twice that of each other.
    rng = numpy.random.default_rng(3)
    net = gb.MLP([50, 7], backend="numpy", dtype=dtype, seed=1)
    X = rng.normal(size=(1000, 50)).astype(dtype)
    whole = net.predict(X, batch_size=len(X))
    chunked = net.predict(X, batch_size=batch_size)
    (W, b), = net.get_params()
    eps = float(numpy.finfo(dtype).eps)
    k = X.shape[1] + 1
    gamma = k * eps / (1 - k * eps)
    bound = 2 * gamma * (numpy.abs(X).astype(numpy.float64) @ numpy.abs(W).T.astype(numpy.float64) + numpy.abs(b))
    assert (numpy.abs(chunked.astype(numpy.float64) - whole) <= bound).all()
    # The same chunks again: the same computation, bit for bit.
    numpy.testing.assert_array_equal(net.predict(X, batch_size=batch_size), chunked)


def test_four_threads_training_one_network_end_in_some_sequential_order():
    sizes = [3, 5, 2]
    steps = batches(4, 6, sizes, seed=7)  # one step per thread
    start = gb.MLP(sizes, backend="numpy", dtype="float64", seed=3).get_params()
    outcomes = set()
    for order in itertools.permutations(range(4)):
        net = gb.MLP(sizes, backend="numpy", dtype="float64")
        net.set_params(start)
        for i in order:
            net.train_step(*steps[i], 0.3)
        outcomes.add(tuple(params_bytes(net)))
    assert len(outcomes) == 24  # every order ends elsewhere: the check below can tell them apart
    for _ in range(10):
        net = gb.MLP(sizes, backend="numpy", dtype="float64")
        net.set_params(start)
        barrier = threading.Barrier(4)

        def worker(i):
            barrier.wait()
            net.train_step(*steps[i], 0.3)

        run_in_threads(*(lambda i=i: worker(i) for i in range(4)))
        assert tuple(params_bytes(net)) in outcomes


def test_fit_save_and_set_params_from_threads_never_tear(tmp_path):
    sizes = [2, 16, 1]
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(256, 2)), rng.normal(size=(256, 1))
    net = gb.MLP(sizes, backend="numpy", dtype="float64", seed=0)
    fixed = gb.MLP(sizes, backend="numpy", dtype="float64", seed=1).get_params()

    def fitter():
        for _ in range(3):
            net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=0, progress=False)

    def setter():
        for _ in range(20):
            net.set_params(fixed)

    def saver():
        for k in range(10):
            net.save(tmp_path / f"net{k}.npz")

    run_in_threads(fitter, setter, saver)
    for k in range(10):  # every checkpoint is one consistent network that loads
        loaded = gb.MLP.load(tmp_path / f"net{k}.npz", backend="numpy")
        assert all(numpy.isfinite(W).all() for W, _ in loaded.get_params())


# ---------------------------------------------------------------------- devices
class SimulatedDevice(NumpyBackend):
    """NumPy arithmetic on a pretend device: a thread-local "current device" that ``activate``
    switches, and every allocation and operation records which device was current."""

    current = threading.local()
    calls = []  # (own device, current device, operation)
    DEVICE_LEVEL = {"probe", "device_count", "device_name", "describe", "activate", "versions", "timer", "recorder"}

    def __init__(self, device_id):
        super().__init__()
        self.device_id, self.device, self.spec = device_id, f"sim:{device_id}", f"sim:{device_id}"

    def activate(self, quiet=False):
        backend = self

        class Switch:
            def __enter__(self):
                self.previous = getattr(SimulatedDevice.current, "id", None)
                SimulatedDevice.current.id = backend.device_id

            def __exit__(self, *exc):
                SimulatedDevice.current.id = self.previous

        return Switch()


def _recording(name):
    def method(self, *args, **kwargs):
        SimulatedDevice.calls.append((self.device_id, getattr(SimulatedDevice.current, "id", None), name))
        return getattr(NumpyBackend, name)(self, *args, **kwargs)
    return method


# plan_step too: on NumPy a step is planned once (a list of ufunc calls replayed), so plain SGD's
# update runs inside the plan rather than through optimizer_step.
for _name in (Backend.__abstractmethods__ | {"plan_step"}) - SimulatedDevice.DEVICE_LEVEL:
    setattr(SimulatedDevice, _name, _recording(_name))


def test_networks_on_two_devices_allocate_and_compute_on_their_own(tmp_path):
    devices = [SimulatedDevice(0), SimulatedDevice(1)]
    SimulatedDevice.calls.clear()
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    nets = [gb.MLP([3, 8, 1], backend=d, seed=0) for d in devices]

    def use(net, other):
        with other.activate():  # the caller has the OTHER device current
            net.train_step(X[:8], Y[:8], 0.1)
            net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=0, progress=False, validation_data=(X, Y))
            net.predict(X, batch_size=7)
            net.forward(X[:3])
            net.loss_and_grads(X[:5], Y[:5])
            net.evaluate(X, Y)
            net.set_params(net.get_params())
            net.save(tmp_path / f"{net.backend.device}.npz")
            assert SimulatedDevice.current.id == other.device_id  # given back as it was

    run_in_threads(lambda: use(nets[0], devices[1]), lambda: use(nets[1], devices[0]))
    operations = {name for _, _, name in SimulatedDevice.calls}
    assert {"empty", "matmul", "bias_activation", "activation_backward", "plan_step", "gather_rows_at", "accumulate_step",
            "to_host"} <= operations
    wrong = [call for call in SimulatedDevice.calls if call[0] != call[1]]
    assert not wrong, f"work ran with another device current: {wrong[:5]}"
    assert {own for own, _, _ in SimulatedDevice.calls} == {0, 1}
    numpy.testing.assert_array_equal(nets[0].predict(X), nets[1].predict(X))  # same math on both


def test_device_names_are_checked_against_what_exists(monkeypatch):
    with pytest.raises(ValueError, match=r"bad device index in backend 'cupy:x'.*'cupy:0'"):
        gb.get_backend("cupy:x")
    with pytest.raises(ValueError, match="the numpy backend has one device"):
        gb.get_backend("numpy:1")
    with pytest.raises(ValueError, match="valid names"):
        gb.get_backend("auto:1")
    # A machine with one usable GPU (simulated: the probe passes and one device is counted).
    monkeypatch.setattr(backends.CupyBackend, "probe", classmethod(lambda cls, short=False: None))
    monkeypatch.setattr(backends.CupyBackend, "device_count", classmethod(lambda cls: 1))
    with pytest.raises(gb.BackendUnavailableError, match=r"no device cupy:7: this machine has 1 usable device of that "
                                                          r"kind \(cupy:0\)"):
        gb.get_backend("cupy:7")
    assert gb.available_backends() == ["numpy", "cupy:0"]


@pytest.mark.gpu
def test_two_networks_on_one_gpu_in_two_threads_equal_the_sequential_run():
    sizes = [8, 64, 32, 2]
    data = [batches(60, 32, sizes, seed) for seed in (1, 2)]  # recorded as CUDA graphs from the third step
    assert_two_networks_in_threads_equal_the_sequential_run("cupy", sizes, "float64", data, trials=2)


@pytest.mark.gpu
def test_networks_on_two_gpus_compute_on_their_own_device():
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        skip("fewer than two CUDA devices")
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(64, 4)), rng.normal(size=(64, 1))
    nets = [gb.MLP([4, 16, 1], backend=f"cupy:{i}", dtype="float64", seed=0) for i in (0, 1)]
    with cupy.cuda.Device(1):  # the caller's current device is the other one for net 0
        losses0 = [nets[0].train_step(X, Y, 0.1) for _ in range(5)]
    with cupy.cuda.Device(0):
        losses1 = [nets[1].train_step(X, Y, 0.1) for _ in range(5)]
    assert losses0 == losses1
    for i, net in enumerate(nets):
        assert all(W.device.id == i for W in net.weights)
        assert all(ws.inputs.device.id == i for ws in net.steps.workspaces.values())
