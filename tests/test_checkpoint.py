"""Checkpoints: bit-exact round trips, deterministic bytes, atomic writes, clear errors."""
import io
import os
import zipfile

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import checkpoint


def trained_net(dtype="float32", hidden="tanh", output="sigmoid", backend="numpy", seed=3):
    net = gb.MLP([4, 6, 5, 2], hidden_activation=hidden, output_activation=output, dtype=dtype,
                 backend=backend, seed=seed)
    rng = numpy.random.default_rng(seed)
    X, Y = rng.normal(size=(8, 4)), rng.uniform(size=(8, 2))
    for _ in range(3):  # biases non-zero, weights off their initial values
        net.train_step(X, Y, 0.5)
    return net


def assert_same_net(a, b):
    assert (a.layer_sizes, a.hidden_activation, a.output_activation, a.dtype) == \
           (b.layer_sizes, b.hidden_activation, b.output_activation, b.dtype)
    for (W0, b0), (W1, b1) in zip(a.get_params(), b.get_params()):
        assert W0.dtype == W1.dtype and W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden, output", [("sigmoid", "identity"), ("tanh", "sigmoid"), ("relu", "identity")])
def test_round_trip_is_bit_exact(tmp_path, backend, dtype, hidden, output):
    net = trained_net(dtype, hidden, output, backend=backend)
    net.save(tmp_path / "net.npz")
    loaded = gb.MLP.load(tmp_path / "net.npz", backend=backend)
    assert loaded.backend is net.backend
    assert_same_net(net, loaded)
    X = numpy.random.default_rng(9).normal(size=(3, 4))
    assert numpy.asarray(net.backend.to_numpy(net.forward(X))).tobytes() == \
        numpy.asarray(loaded.backend.to_numpy(loaded.forward(X))).tobytes()


def test_load_on_the_numpy_backend_by_name(tmp_path):
    trained_net().save(str(tmp_path / "net.npz"))  # str paths too
    assert gb.MLP.load(str(tmp_path / "net.npz"), backend="numpy").backend.name == "numpy"


def test_same_weights_give_the_same_bytes(tmp_path):
    net = trained_net()
    net.save(tmp_path / "a.npz")
    copy = gb.MLP(net.layer_sizes, hidden_activation="tanh", output_activation="sigmoid", backend="numpy", seed=99)
    copy.set_params(net.get_params())
    copy.save(tmp_path / "b.npz")
    gb.MLP.load(tmp_path / "a.npz").save(tmp_path / "c.npz")
    data = (tmp_path / "a.npz").read_bytes()
    assert data == (tmp_path / "b.npz").read_bytes() == (tmp_path / "c.npz").read_bytes()
    assert data == checkpoint.to_bytes(net)


def test_different_weights_give_different_bytes():
    assert checkpoint.to_bytes(trained_net(seed=1)) != checkpoint.to_bytes(trained_net(seed=2))


def test_file_holds_no_timestamp_and_is_a_plain_npz(tmp_path):
    net = trained_net()
    net.save(tmp_path / "net.npz")
    with zipfile.ZipFile(tmp_path / "net.npz") as zf:
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with numpy.load(tmp_path / "net.npz", allow_pickle=False) as npz:  # readable without gpubackprop
        assert npz["layer_sizes"].tolist() == net.layer_sizes
        assert str(npz["dtype"]) == "float32" and str(npz["hidden_activation"]) == "tanh"
        assert int(npz["version"]) == checkpoint.VERSION
        numpy.testing.assert_array_equal(npz["W1"], net.get_params()[1][0])


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "net.npz"
    trained_net(seed=1).save(path)
    second = trained_net(seed=2)
    second.save(path)
    assert_same_net(second, gb.MLP.load(path))
    assert os.listdir(tmp_path) == ["net.npz"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_crash_mid_save_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "net.npz"
    old = trained_net(seed=1)
    old.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(checkpoint.os, failing, crash)
    with pytest.raises(OSError, match="simulated crash"):
        trained_net(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["net.npz"]  # the temporary file was removed


def rewrite(src, dst, **changes):
    """A copy of checkpoint ``src`` with some members replaced (None: removed)."""
    with numpy.load(src, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = numpy.asarray(value)
    numpy.savez(dst, **arrays)
    return dst


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.npz"
    trained_net().save(path)
    return path


def corrupt_cases(saved, tmp):
    data = saved.read_bytes()
    cases = {}

    def put(name, content):
        p = tmp / name
        p.write_bytes(content)
        cases[name] = p

    put("truncated.npz", data[: len(data) // 2])
    put("truncated_end.npz", data[:-10])
    flipped = bytearray(data)
    middle = data.index(b"\x93NUMPY", data.index(b"W1.npy")) + 200  # inside W1's values
    flipped[middle] ^= 0xFF
    put("flipped.npz", bytes(flipped))
    put("empty.npz", b"")
    put("text.npz", b"layer_sizes: [4, 6, 5, 2]\n")
    buffer = io.BytesIO()
    numpy.save(buffer, numpy.arange(3))
    put("plain.npy", buffer.getvalue())
    numpy.savez(tmp / "other.npz", a=numpy.arange(3))
    cases["other.npz"] = tmp / "other.npz"
    cases["version2.npz"] = rewrite(saved, tmp / "version2.npz", version=numpy.int64(2))
    cases["noversion.npz"] = rewrite(saved, tmp / "noversion.npz", version=None)
    cases["missing_W1.npz"] = rewrite(saved, tmp / "missing_W1.npz", W1=None)
    cases["W1_shape.npz"] = rewrite(saved, tmp / "W1_shape.npz", W1=numpy.zeros((6, 5), "float32"))
    cases["W1_dtype.npz"] = rewrite(saved, tmp / "W1_dtype.npz", W1=numpy.zeros((5, 6), "float64"))
    cases["activation.npz"] = rewrite(saved, tmp / "activation.npz", hidden_activation=numpy.array("swish"))
    cases["sizes.npz"] = rewrite(saved, tmp / "sizes.npz", layer_sizes=numpy.array([4, 0, 5, 2]))
    cases["extra.npz"] = rewrite(saved, tmp / "extra.npz", W9=numpy.zeros(1, "float32"))
    with zipfile.ZipFile(tmp / "pickled.npz", "w") as zf:  # an object array needs a pickle
        inner = io.BytesIO()
        numpy.save(inner, numpy.array([{"evil": 1}], dtype=object), allow_pickle=True)
        zf.writestr("format.npy", inner.getvalue())
    cases["pickled.npz"] = tmp / "pickled.npz"
    return cases


EXPECTED = {
    "truncated.npz": "not a zip", "truncated_end.npz": "not a zip", "flipped.npz": "corrupt",
    "empty.npz": "not a zip", "text.npz": "not a zip", "plain.npy": "not a zip",
    "other.npz": "not a gpubackprop checkpoint", "version2.npz": "version 2",
    "noversion.npz": "no format version", "missing_W1.npz": "missing W1", "W1_shape.npz": "W1",
    "W1_dtype.npz": "W1 is float64", "activation.npz": "'swish'", "sizes.npz": "layer_sizes",
    "extra.npz": "W9", "pickled.npz": "corrupt",
}


def test_every_bad_file_raises_checkpoint_error_naming_file_and_problem(saved, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = corrupt_cases(saved, bad)
    assert set(cases) == set(EXPECTED)
    for name, path in cases.items():
        with pytest.raises(gb.CheckpointError) as info:
            gb.MLP.load(path)
        assert isinstance(info.value, ValueError)
        assert str(path) in str(info.value), name
        assert EXPECTED[name] in str(info.value), (name, str(info.value))


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        gb.MLP.load(tmp_path / "nothing.npz")
