"""precision="tf32" on the CPU: validation, what NumPy computes (float32, and says so), repr,
checkpoints and the CLI flags. TF32 arithmetic itself is checked in test_tf32_gpu.py."""
import zipfile

import numpy
import pytest

import gpubackprop as gb
from gpubackprop.backends.numpy_backend import NumpyBackend
from gpubackprop import cli
from test_checkpoint import rewrite


def test_default_is_fp32_and_repr_is_unchanged():
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    assert net.precision == "fp32" and net.precision_note == "fp32"
    assert repr(net) == ("MLP([2, 3, 1], hidden_activation='sigmoid', output_activation='identity', "
                         "dtype='float32', backend='numpy')")


@pytest.mark.parametrize("precision, dtype, message", [
    ("tf32", "float64", r"precision='tf32' needs dtype='float32'.*got dtype='float64'"),
    ("bf16", "float32", r"precision must be one of 'fp32', 'tf32', got 'bf16'"),
    ("TF32", "float32", r"precision must be one of"),
    (None, "float32", r"precision must be one of"),
])
def test_bad_precision_is_a_clear_value_error(precision, dtype, message):
    with pytest.raises(ValueError, match=message):
        gb.MLP([2, 3, 1], dtype=dtype, precision=precision, backend="numpy")


def test_fp32_with_float64_is_the_full_precision_of_the_dtype():
    assert gb.MLP([2, 3, 1], dtype="float64", precision="fp32", backend="numpy").precision == "fp32"


def test_tf32_on_numpy_computes_float32_and_says_so():
    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(64, 5)), rng.normal(size=(64, 2))
    fp32 = gb.MLP([5, 16, 2], backend="numpy", seed=1)
    tf32 = gb.MLP([5, 16, 2], backend="numpy", seed=1, precision="tf32")
    assert "computed in float32" in repr(tf32) and "precision='tf32" in repr(tf32)
    assert tf32.precision == "tf32" and not tf32.backend.tf32
    assert fp32.fit(X, Y, epochs=3, batch_size=8, lr=0.1, seed=0, progress=False).loss == \
        tf32.fit(X, Y, epochs=3, batch_size=8, lr=0.1, seed=0, progress=False).loss
    for (W0, b0), (W1, b1) in zip(fp32.get_params(), tf32.get_params()):
        numpy.testing.assert_array_equal(W0, W1)
        numpy.testing.assert_array_equal(b0, b1)


class CallByCall(NumpyBackend):
    """NumPy with the step made call by call (Steps.step through the backend's matmul): the NumPy
    backend's own planned step calls BLAS directly (no TF32 on the CPU anyway)."""
    plans = False


def test_every_gemm_of_a_step_asks_for_tf32(monkeypatch):
    net = gb.MLP([4, 6, 5, 3], backend=CallByCall(), seed=0, precision="tf32")
    flags = []
    matmul = net.backend.matmul
    monkeypatch.setattr(net.backend, "matmul", lambda *a, tf32=False, **k: flags.append(tf32) or matmul(*a, **k),
                        raising=False)
    net.train_step(numpy.ones((2, 4)), numpy.ones((2, 3)), 0.1)
    assert flags == [True] * (3 * 3 - 1)  # the step's 3L-1 GEMMs (the bias gradients are sums, not these)
    flags.clear()
    gb.MLP([4, 6, 5, 3], backend=net.backend, seed=0).train_step(numpy.ones((2, 4)), numpy.ones((2, 3)), 0.1)
    assert not any(flags)


def test_checkpoint_keeps_the_precision(tmp_path):
    net = gb.MLP([3, 4, 2], backend="numpy", seed=0, precision="tf32")
    net.save(tmp_path / "tf32.npz")
    loaded = gb.MLP.load(tmp_path / "tf32.npz", backend="numpy")
    assert loaded.precision == "tf32"
    gb.MLP([3, 4, 2], backend="numpy", seed=0).save(tmp_path / "fp32.npz")
    assert gb.MLP.load(tmp_path / "fp32.npz", backend="numpy").precision == "fp32"
    with zipfile.ZipFile(tmp_path / "fp32.npz") as zf:  # fp32 files: the members they always had
        assert "precision.npy" not in zf.namelist()
    with zipfile.ZipFile(tmp_path / "tf32.npz") as zf:
        assert "precision.npy" in zf.namelist()


@pytest.mark.parametrize("changes, message", [
    ({"precision": numpy.array("fp16")}, "precision 'fp16'"),
    ({"precision": numpy.array("tf32"), "dtype": numpy.array("float64")}, "tf32 with float32 only"),
    ({"precision": numpy.arange(2)}, "'precision' should be a string"),
])
def test_bad_precision_in_a_checkpoint_is_a_checkpoint_error(tmp_path, changes, message):
    net = gb.MLP([3, 4, 2], backend="numpy", seed=0, dtype="float64" if "dtype" in changes else "float32")
    net.save(tmp_path / "net.npz")
    bad = rewrite(tmp_path / "net.npz", tmp_path / "bad.npz", **changes)
    with pytest.raises(gb.CheckpointError, match=message):
        gb.MLP.load(bad, backend="numpy")


def test_cli_train_precision_flag(capsys):
    rc = cli.main(["train", "--backend", "numpy", "--samples", "100", "--epochs", "1", "--precision", "tf32"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "float32, precision tf32 (computed in float32: no TF32 tensor cores on numpy" in out
    rc = cli.main(["train", "--backend", "numpy", "--samples", "100", "--epochs", "1"])
    assert rc == 0 and "float32, precision fp32;" in capsys.readouterr().out
    rc = cli.main(["train", "--backend", "numpy", "--samples", "100", "--precision", "tf32", "--dtype", "float64"])
    out, err = capsys.readouterr()
    assert rc == 2 and "--precision tf32 needs --dtype float32" in err and out == ""
