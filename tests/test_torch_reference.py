"""Parity with PyTorch in every run, torch installed or not: the values PyTorch computed on small fixed
inputs are stored in tests/reference/torch_values.npz (float64; tests/reference/make_torch_reference.py
regenerates it where torch is installed). The live comparisons with torch (tests/test_losses.py,
tests/test_optimizers.py) still run where torch is.

Tolerance 1e-12 (absolute, float64), as the live tests: the same formulas, evaluated in a different
order (BLAS sums, torch's fused kernels), differ by a few units of 1e-16 per operation on values of
order 1, and 5 optimizer steps keep that far below 1e-12; a wrong formula is off by far more."""
import importlib.util
import pathlib

import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends import get_backend

HERE = pathlib.Path(__file__).parent / "reference"
_spec = importlib.util.spec_from_file_location("make_torch_reference", HERE / "make_torch_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)  # the script's tables (no torch needed to import it)

STORED = dict(numpy.load(ref.PATH))
CPU = get_backend("numpy")
TOL = 1e-12


def test_the_stored_file_holds_every_case():
    assert STORED["sigmoid/z"].dtype == numpy.float64
    for case, _ in ref.LOSS_CASES:
        assert f"loss/{case}/grad" in STORED
    for config, *_ in ref.OPTIMIZER_CONFIGS:
        for loss in ref.OPTIM_LOSSES:
            assert STORED[f"optim/{config}/{loss}/loss"].shape == (ref.STEPS,)


@pytest.mark.parametrize("case", [case for case, _ in ref.LOSS_CASES])
def test_losses_equal_stored_torch_values(case):
    name = "softmax_cross_entropy" if case.startswith("softmax") else "sigmoid_binary_cross_entropy"
    z, y = STORED[f"loss/{case}/z"], STORED[f"loss/{case}/y"]
    if case == "softmax_labels":
        y = gb.validation.one_hot(y, z.shape[1])
    grad, loss, correct = numpy.empty_like(z), numpy.empty((), z.dtype), numpy.empty((), z.dtype)
    CPU.loss_grad(name, z, y, grad, loss, correct, {})
    assert float(loss) == pytest.approx(float(STORED[f"loss/{case}/loss"]), abs=TOL, rel=TOL)
    numpy.testing.assert_allclose(grad, STORED[f"loss/{case}/grad"], rtol=0, atol=TOL)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_network_gradients_equal_stored_torch_autograd(loss):
    key = f"net/{loss}"
    net = gb.MLP([5, 7, 4], hidden_activation="tanh", loss=loss, dtype="float64", backend="numpy")
    net.set_params([(STORED[f"{key}/param_0"], STORED[f"{key}/param_1"]),
                    (STORED[f"{key}/param_2"], STORED[f"{key}/param_3"])])
    value, grads = net.loss_and_grads(STORED[f"{key}/X"], STORED[f"{key}/Y"])
    assert value == pytest.approx(float(STORED[f"{key}/loss"]), abs=TOL)
    for i, ours in enumerate(g for pair in grads for g in pair):
        numpy.testing.assert_allclose(ours, STORED[f"{key}/grad_{i}"], rtol=0, atol=TOL, err_msg=f"grad_{i}")


@pytest.mark.parametrize("loss", ref.OPTIM_LOSSES)
@pytest.mark.parametrize("config, name, ours", [c[:3] for c in ref.OPTIMIZER_CONFIGS],
                         ids=[c[0] for c in ref.OPTIMIZER_CONFIGS])
def test_optimizer_steps_equal_stored_torch_optim(config, name, ours, loss):
    key = f"optim/{config}/{loss}"
    net = gb.MLP(list(ref.SIZES), hidden_activation="tanh", loss=loss, optimizer=name, dtype="float64",
                 backend="numpy", **ours)
    net.set_params([(STORED[f"{key}/param0_0"], STORED[f"{key}/param0_1"]),
                    (STORED[f"{key}/param0_2"], STORED[f"{key}/param0_3"])])
    losses = [net.train_step(X, Y, ref.LR) for X, Y in zip(STORED[f"{key}/X"], STORED[f"{key}/Y"])]
    numpy.testing.assert_allclose(losses, STORED[f"{key}/loss"], rtol=0, atol=TOL)
    for i, ours_array in enumerate(a for pair in net.get_params() for a in pair):
        numpy.testing.assert_allclose(ours_array, STORED[f"{key}/param_{i}"], rtol=0, atol=TOL, err_msg=f"param_{i}")
    state = net.get_optimizer_state()
    j = 0
    while f"{key}/state_{j}" in STORED:
        numpy.testing.assert_allclose(state["buffers"][j], STORED[f"{key}/state_{j}"], rtol=0, atol=TOL)
        j += 1
    assert j == {"adam": 2, "momentum": 1, "sgd": 0}[name]


def test_sigmoid_equals_stored_torch_sigmoid():
    # Relative: σ spans 1e-304 .. 1; each side within a couple of ulp of the truth (tests/test_sigmoid_precision.py).
    z = STORED["sigmoid/z"]
    expected = STORED["sigmoid/value"]
    net = gb.MLP([1, 1], output_activation="sigmoid", dtype="float64", backend="numpy")
    net.set_params([(numpy.ones((1, 1)), numpy.zeros(1))])
    with numpy.errstate(all="raise"):
        out = net.forward(z.reshape(-1, 1)).ravel()
    normal = expected >= numpy.finfo(numpy.float64).tiny  # torch gives 0 where σ is subnormal; we do not
    numpy.testing.assert_allclose(out[normal], expected[normal], rtol=8 * numpy.finfo(numpy.float64).eps, atol=0)
    assert (out[~normal] < numpy.finfo(numpy.float64).tiny).all()


def test_the_script_still_produces_the_stored_file():
    pytest.importorskip("torch", reason="regenerating the torch reference needs PyTorch")
    fresh = ref.compute()
    assert sorted(fresh) == sorted(STORED)
    for key, value in fresh.items():
        if key == "torch_version":
            continue
        assert value.dtype == STORED[key].dtype and value.shape == STORED[key].shape, key
        numpy.testing.assert_allclose(value, STORED[key], rtol=TOL, atol=TOL, err_msg=key)
