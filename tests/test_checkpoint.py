"""Checkpoints: bit-exact round trips, deterministic bytes, atomic writes, clear errors."""
import errno
import io
import os
import stat
import struct
import threading
import tracemalloc
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
    copy.set_optimizer_state(net.get_optimizer_state())  # (the count of accepted steps is saved too)
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
    cases["version3.npz"] = rewrite(saved, tmp / "version3.npz", version=numpy.int64(3))
    cases["loss.npz"] = rewrite(saved, tmp / "loss.npz", loss=numpy.array("hinge"))
    cases["optimizer.npz"] = rewrite(saved, tmp / "optimizer.npz", optimizer=numpy.array('{"name": "lbfgs"}'))
    cases["optimizer_json.npz"] = rewrite(saved, tmp / "optimizer_json.npz", optimizer=numpy.array("{adam"))
    cases["state_shape.npz"] = rewrite(saved, tmp / "state_shape.npz", optimizer_state=numpy.zeros((2, 3), "float32"))
    cases["missing_state.npz"] = rewrite(saved, tmp / "missing_state.npz", optimizer_state=None)
    cases["v1_with_v2_member.npz"] = rewrite(saved, tmp / "v1_with_v2_member.npz", version=numpy.int64(1))
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
    "other.npz": "not a gpubackprop checkpoint", "version3.npz": "version 3",
    "loss.npz": "'hinge'", "optimizer.npz": "optimizer settings", "optimizer_json.npz": "optimizer settings",
    "state_shape.npz": "optimizer_state is float32 (2, 3)", "missing_state.npz": "missing optimizer_state",
    "v1_with_v2_member.npz": "unexpected arrays loss, optimizer, optimizer_state, optimizer_step",
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


# ---------------------------------------------------------------------- permissions, names, errors
def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_never_sets_the_umask_while_other_threads_create_files(tmp_path, monkeypatch):
    """Files another thread creates during saves get the umask's mode (save used to zero it)."""
    real_umask = os.umask
    calls = []
    monkeypatch.setattr(os, "umask", lambda *args: calls.append(args) or real_umask(*args))
    (tmp_path / "other").mkdir()
    (tmp_path / "nets").mkdir()
    created, stop = [], threading.Event()

    def create_files():
        while not stop.is_set() and len(created) < 5000:
            path = tmp_path / "other" / str(len(created))
            path.write_bytes(b"")
            created.append(path)

    old = real_umask(0o027)
    try:
        thread = threading.Thread(target=create_files)
        thread.start()
        net = trained_net()
        for k in range(30):
            net.save(tmp_path / "nets" / f"{k}.npz")
        stop.set()
        thread.join()
    finally:
        real_umask(old)
    assert calls == []
    assert created and {mode(path) for path in created} == {0o640}
    assert {mode(path) for path in (tmp_path / "nets").iterdir()} == {0o640}  # what the umask allows


def test_save_keeps_the_mode_of_an_existing_file(tmp_path):
    path = tmp_path / "net.npz"
    trained_net(seed=1).save(path)
    os.chmod(path, 0o666)  # wider than the umask (022 or stricter) would give a new file
    trained_net(seed=2).save(path)
    assert mode(path) == 0o666
    os.chmod(path, 0o600)
    trained_net(seed=3).save(path)
    assert mode(path) == 0o600


def test_names_up_to_the_file_systems_limit(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = "n" * (name_max - len(".npz")) + ".npz"
    net = trained_net()
    net.save(tmp_path / longest)
    assert_same_net(net, gb.MLP.load(tmp_path / longest))
    assert os.listdir(tmp_path) == [longest]

    too_long = "n" + longest
    with pytest.raises(OSError) as info:
        net.save(tmp_path / too_long)
    assert info.value.errno == errno.ENAMETOOLONG
    assert too_long in str(info.value) and "cannot save the checkpoint" in str(info.value)
    assert os.listdir(tmp_path) == [longest]  # no temporary file left


def test_a_failed_save_names_the_target_and_the_reason(tmp_path, monkeypatch):
    missing = tmp_path / "no such folder" / "net.npz"
    with pytest.raises(FileNotFoundError) as info:
        trained_net().save(missing)
    assert str(missing) in str(info.value) and "No such file or directory" in str(info.value)
    assert info.value.filename == str(missing)

    path = tmp_path / "net.npz"
    trained_net(seed=1).save(path)
    good = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src)  # as the OS names the temporary

    monkeypatch.setattr(checkpoint.os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        trained_net(seed=2).save(path)
    monkeypatch.undo()
    message = str(info.value)
    assert str(path) in message and "Permission denied" in message and ".tmp" not in message
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["net.npz"]


# ---------------------------------------------------------------------- lying sizes
def npy_header(shape, descr="<f4"):
    buffer = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def with_member(saved, dst, name, content, compression=zipfile.ZIP_STORED):
    """A copy of checkpoint ``saved`` whose member ``name`` holds ``content`` instead."""
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            data = content if info.filename == name else src.read(info)
            out.writestr(info.filename, data, compress_type=compression if info.filename == name else None)
    return dst


def declare_size(path, name, file_size, compress_size=None):
    """Make the zip's central directory declare other sizes for member ``name``."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory's entries: sizes at 20, name at 46
    while data[entry + 46: entry + 46 + len(name)] != name.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    old_compress_size, = struct.unpack_from("<I", data, entry + 20)
    struct.pack_into("<II", data, entry + 20, compress_size or old_compress_size, file_size)
    path.write_bytes(bytes(data))


def lying_files(saved, tmp):
    files = {}
    huge = (100_000, 1_000_000)  # 4e11 bytes of float32
    files["header"] = with_member(saved, tmp / "header.npz", "W1.npy", npy_header(huge) + bytes(16))
    # Header and zip directory agree on ~4 GiB, stored, in a file of a few KB.
    n = (2**32 - 1024) // 4
    header = npy_header((n,))
    files["directory"] = with_member(saved, tmp / "directory.npz", "W1.npy", header + bytes(16))
    declare_size(files["directory"], "W1.npy", len(header) + 4 * n, len(header) + 4 * n)
    # The same, deflated: more than deflate can expand to from the bytes stored.
    files["deflated"] = with_member(saved, tmp / "deflated.npz", "W1.npy", header + bytes(16), zipfile.ZIP_DEFLATED)
    declare_size(files["deflated"], "W1.npy", len(header) + 4 * n)
    return files


@pytest.mark.parametrize("lie", ["header", "directory", "deflated"])
def test_sizes_that_lie_are_a_checkpoint_error_before_any_allocation(saved, tmp_path, lie):
    path = lying_files(saved, tmp_path)[lie]
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(gb.CheckpointError) as info:
            gb.MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and "W1.npy" in str(info.value), str(info.value)
    assert peak < 1_000_000, f"{peak} bytes allocated while reading a lying {path.stat().st_size}-byte file"


def test_compressed_and_fortran_order_checkpoints_load(saved, tmp_path):
    with numpy.load(saved, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    expected = gb.MLP.load(saved)
    numpy.savez_compressed(tmp_path / "compressed.npz", **arrays)
    assert_same_net(expected, gb.MLP.load(tmp_path / "compressed.npz"))
    arrays["W1"] = numpy.asfortranarray(arrays["W1"])
    numpy.savez(tmp_path / "fortran.npz", **arrays)
    assert_same_net(expected, gb.MLP.load(tmp_path / "fortran.npz"))


@pytest.mark.parametrize("optimizer, options", [("adam", {"weight_decay": 0.01}), ("momentum", {"nesterov": True})])
def test_loss_optimizer_and_state_round_trip_and_training_continues_bit_for_bit(tmp_path, optimizer, options):
    rng = numpy.random.default_rng(0)
    X, labels = rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    net = gb.MLP([4, 5, 3], loss="softmax_cross_entropy", optimizer=optimizer, dtype="float64", backend="numpy",
                 seed=1, **options)
    for _ in range(3):
        net.train_step(X, labels, 0.01)
    net.save(tmp_path / "net.npz")
    back = gb.MLP.load(tmp_path / "net.npz")
    assert (back.loss, back.optimizer) == (net.loss, net.optimizer)
    state, state_back = net.get_optimizer_state(), back.get_optimizer_state()
    assert state_back["step"] == state["step"] == 3  # every optimizer counts its accepted steps
    numpy.testing.assert_array_equal(state_back["buffers"], state["buffers"])
    assert numpy.abs(state["buffers"]).max() > 0  # a state that was really written
    for _ in range(2):  # the next steps are the same steps: the state came back, not a fresh one
        assert back.train_step(X, labels, 0.01) == net.train_step(X, labels, 0.01)
    assert_same_net(net, back)


def test_version_1_files_still_load_as_mse_and_sgd(saved, tmp_path):
    v1 = rewrite(saved, tmp_path / "v1.npz", version=numpy.int64(1), loss=None, optimizer=None,
                 optimizer_state=None, optimizer_step=None)
    net = gb.MLP.load(v1)
    assert (net.loss, net.optimizer) == ("mse", gb.optimizers.Optimizer())
    assert_same_net(net, gb.MLP.load(saved))


def test_sgd_with_weight_decay_saved_with_its_former_unused_velocity_row_loads(tmp_path):
    # Before optimizers had a file each, sgd with weight decay ran as momentum 0 and kept a velocity
    # row (never read: b = 0·b + d). Such files load; the row is dropped.
    net = gb.MLP([3, 4, 2], optimizer="sgd", weight_decay=0.01, backend="numpy", seed=0)
    net.train_step(numpy.ones((2, 3)), numpy.ones((2, 2)), 0.1)
    net.save(tmp_path / "new.npz")
    with numpy.load(tmp_path / "new.npz") as saved:
        members = dict(saved)
    assert members["optimizer_state"].shape == (0, 26)
    members["optimizer_state"] = numpy.zeros((1, 26), members["optimizer_state"].dtype)
    numpy.savez(tmp_path / "old.npz", **members)
    loaded = gb.MLP.load(tmp_path / "old.npz", backend="numpy")
    assert loaded.optimizer == net.optimizer and loaded.get_optimizer_state()["buffers"].shape == (0, 26)
    assert_same_net(loaded, net)
