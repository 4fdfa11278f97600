"""DLPack interop: torch (CPU in CI, CUDA on a GPU machine) arrays in, without copies where possible."""
import numpy
import pytest
from conftest import missing, skip

import gpubackprop as gb
from gpubackprop import validation
from gpubackprop.backends import CupyBackend, conversion

try:
    import torch
except ImportError:  # the tests that need no torch still run
    torch = None
needs_torch = pytest.mark.requires(missing("torch"))  # one short reason (tests/conftest.py: the install line once)


def pointer(array):
    """The address of the first element of a NumPy or CuPy array."""
    if isinstance(array, numpy.ndarray):
        return array.__array_interface__["data"][0]
    return array.data.ptr


def data(n=12, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((n, 2)).astype(numpy.float32)
    Y = rng.standard_normal((n, 1)).astype(numpy.float32)
    return X, Y


# ---------------------------------------------------------------------- CPU tensors, numpy backend
@needs_torch
def test_cpu_tensor_is_read_without_a_copy():
    backend = gb.get_backend("numpy")
    X = torch.randn(8, 2, dtype=torch.float32)
    view = validation.as_batch(backend, X, "X", 2)
    assert isinstance(view, numpy.ndarray)
    assert pointer(view) == X.data_ptr()
    net = gb.MLP([2, 3, 1], backend=backend, seed=0)
    assert pointer(net.batch_inputs(X)) == X.data_ptr()  # used by the step as it is
    Xs, Ys = net.batch_inputs(X, torch.zeros(8, dtype=torch.float32))  # 1-D Y: a (8, 1) view
    assert pointer(Xs) == X.data_ptr() and Ys.shape == (8, 1)


def test_numpy_and_non_dlpack_inputs_pass_through():
    backend = gb.get_backend("numpy")
    array = numpy.zeros((3, 2))
    assert backend.as_array(array, "X") is array
    rows = [[1.0, 2.0]]
    numpy.testing.assert_array_equal(backend.as_array(rows, "X"), numpy.array(rows))
    assert conversion.dlpack_device(rows) is None


@needs_torch
def test_other_dtype_is_viewed_then_cast_into_the_workspace():
    """float64 tensor, float32 network: DLPack gives a float64 view; the network copies it, cast."""
    X = torch.randn(8, 2, dtype=torch.float64)
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    assert pointer(validation.as_batch(net.backend, X, "X", 2)) == X.data_ptr()
    used = net.batch_inputs(X)
    assert used.dtype == numpy.float32 and pointer(used) != X.data_ptr()
    numpy.testing.assert_array_equal(used, X.numpy().astype(numpy.float32))


@needs_torch
def test_api_accepts_tensors_and_agrees_with_numpy():
    X, Y = data()
    tX, tY = torch.from_numpy(X.copy()), torch.from_numpy(Y.copy())
    a = gb.MLP([2, 4, 1], backend="numpy", seed=1)
    b = gb.MLP([2, 4, 1], backend="numpy", seed=1)
    numpy.testing.assert_array_equal(a.forward(tX), b.forward(X))
    loss_a, grads_a = a.loss_and_grads(tX, tY)
    loss_b, grads_b = b.loss_and_grads(X, Y)
    assert loss_a == loss_b
    assert a.train_step(tX, tY[:, 0], 0.1) == b.train_step(X, Y, 0.1)  # 1-D Y tensor too
    history_a = a.fit(tX, tY, epochs=2, batch_size=5, lr=0.1, seed=0, progress=False,
                      validation_data=(tX, tY))
    history_b = b.fit(X, Y, epochs=2, batch_size=5, lr=0.1, seed=0, progress=False, validation_data=(X, Y))
    assert history_a.loss == history_b.loss and history_a.val_loss == history_b.val_loss
    numpy.testing.assert_array_equal(a.predict(tX), b.predict(X))
    assert (tX.numpy() == X).all()  # inputs are only read


@needs_torch
def test_requires_grad_tensors_are_read_detached():
    X = torch.randn(6, 2, dtype=torch.float32, requires_grad=True)
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    assert pointer(validation.as_batch(net.backend, X, "X", 2)) == X.data_ptr()
    numpy.testing.assert_array_equal(net.forward(X), net.forward(X.detach().numpy()))
    assert X.requires_grad and X.grad is None


@needs_torch
def test_non_contiguous_tensor_is_packed():
    base = torch.randn(2, 9, dtype=torch.float32)
    X = base.T  # (9, 2), not C-contiguous
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    numpy.testing.assert_array_equal(net.forward(X), net.forward(numpy.ascontiguousarray(X.numpy())))


class FakeDevice:
    """A DLPack producer that says it lives on a device (export is never reached)."""

    def __init__(self, kind, index=0):
        self.kind, self.index = kind, index

    def __dlpack_device__(self):
        return self.kind, self.index

    def __dlpack__(self, **kwargs):
        raise AssertionError("must not be exported")


def test_gpu_tensor_into_the_numpy_backend_is_a_type_error():
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    with pytest.raises(TypeError, match=r"X lives on cuda:1 .* numpy backend \(CPU\); move it to the host first"):
        net.forward(FakeDevice(2, 1))
    with pytest.raises(TypeError, match=r"Y lives on rocm:0"):
        net.train_step(numpy.zeros((2, 2)), FakeDevice(10), 0.1)


def fake_cupy_backend(device_id=0):
    """A CupyBackend without CuPy or a device: enough for its as_array's decisions."""
    class FakeCupyArray:
        pass

    backend = object.__new__(CupyBackend)
    backend.xp = type("fake_cupy", (), {"ndarray": FakeCupyArray})
    backend.device_id, backend.device = device_id, f"cuda:{device_id}"
    return backend


@needs_torch
def test_cpu_tensor_into_the_cupy_backend_is_a_type_error():
    with pytest.raises(TypeError, match=r"X lives on cpu \(Tensor from torch\) .* cupy backend.*X\.to\('cuda'\)"):
        fake_cupy_backend().as_array(torch.zeros(2, 2), "X")


def test_a_tensor_on_another_gpu_is_a_type_error_naming_both_devices():
    with pytest.raises(TypeError, match=r"X lives on cuda:0 but this network computes on cuda:1; move it there "
                                        r"first \(X\.to\('cuda:1'\)\)"):
        fake_cupy_backend(1).as_array(type("Tensor", (FakeDevice,), {"__module__": "torch"})(2, 0), "X")


def test_torch_hints_name_the_torch_calls():
    class FakeTorchTensor(FakeDevice):
        pass

    FakeTorchTensor.__module__ = "torch"
    with pytest.raises(TypeError, match=r"X\.cpu\(\)"):
        gb.get_backend("numpy").as_array(FakeTorchTensor(2, 0), "X")


# ---------------------------------------------------------------------- CUDA (marked gpu)
def cuda_torch():
    if torch is None:
        skip(missing("torch"))
    if not torch.cuda.is_available():
        skip("torch has no CUDA device")
    return torch.device("cuda", 0)


@pytest.mark.gpu
def test_cuda_tensor_into_cupy_is_zero_copy_and_agrees():
    device = cuda_torch()
    X, Y = data(40)
    tX, tY = torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)
    net = gb.MLP([2, 4, 1], backend="cupy", seed=1)
    ref = gb.MLP([2, 4, 1], backend="cupy", seed=1)
    view = validation.as_batch(net.backend, tX, "X", 2)
    assert isinstance(view, net.backend.xp.ndarray) and pointer(view) == tX.data_ptr()
    assert pointer(net.batch_inputs(tX)) == tX.data_ptr()
    numpy.testing.assert_array_equal(net.backend.to_numpy(net.forward(tX)), ref.backend.to_numpy(ref.forward(X)))
    assert net.train_step(tX, tY, 0.1) == ref.train_step(X, Y, 0.1)
    h_net = net.fit(tX, tY[:, 0], epochs=2, batch_size=16, lr=0.1, seed=0, progress=False, validation_data=(tX, tY))
    h_ref = ref.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=0, progress=False, validation_data=(X, Y))
    assert h_net.loss == h_ref.loss and h_net.val_loss == h_ref.val_loss
    numpy.testing.assert_array_equal(net.predict(tX), ref.predict(X))


@pytest.mark.gpu
def test_requires_grad_cuda_tensor_is_read_detached():
    device = cuda_torch()
    tX = torch.randn(5, 2, device=device, requires_grad=True)
    net = gb.MLP([2, 3, 1], backend="cupy", seed=0)
    assert pointer(validation.as_batch(net.backend, tX, "X", 2)) == tX.data_ptr()
    numpy.testing.assert_array_equal(net.predict(tX), net.predict(tX.detach().cpu().numpy()))


@pytest.mark.gpu
def test_cuda_tensor_into_numpy_backend_is_a_type_error():
    device = cuda_torch()
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    with pytest.raises(TypeError, match=r"cuda:0 .* numpy backend.*X\.cpu\(\)"):
        net.forward(torch.zeros(3, 2, device=device))


@needs_torch
@pytest.mark.gpu
def test_cpu_tensor_into_cupy_backend_is_a_type_error():
    net = gb.MLP([2, 3, 1], backend="cupy", seed=0)
    with pytest.raises(TypeError, match=r"lives on cpu .* cupy backend.*X\.to\('cuda'\)"):
        net.forward(torch.zeros(3, 2))
    net.forward(numpy.zeros((3, 2), dtype=numpy.float32))  # NumPy stays the documented host input


@pytest.mark.gpu
def test_cupy_array_into_numpy_backend_is_a_type_error():
    import cupy

    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    with pytest.raises(TypeError, match=r"cuda:0.*X\.get\(\)"):
        net.forward(cupy.zeros((3, 2)))
