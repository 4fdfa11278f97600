"""The command line as users meet it, end to end in a temporary directory (most in a fresh
interpreter, as a user starts it): the backend variable, rows streamed under a pipe, Ctrl-C,
predict and --init round trips, broken pipes, memory and data-file errors, BOM CSVs, --version.
Every error is one line on stderr, never a traceback, and leaves the files as they were."""
import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import cli
from gpubackprop.backends import ENV_VAR, probe_cupy

REPO = Path(__file__).resolve().parent.parent


def environment(**variables):
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(variables)
    return env


def command(*args):
    return [sys.executable, "-m", "gpubackprop", *map(str, args)]


def run(cwd, *args, env=None, timeout=120):
    return subprocess.run(command(*args), cwd=cwd, env=env or environment(), capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


def assert_one_line_error(done, code=2, *fragments):
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def listing(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir())


# ---------------------------------------------------------------------- the backend variable
def test_backend_variable_is_honoured(tmp_path):
    done = run(tmp_path, "demo", env=environment(**{ENV_VAR: "numpy"}))
    assert done.returncode == 0 and done.stdout.startswith("backend: numpy")
    if probe_cupy():  # cupy asked for by the variable, and unusable here: an error, not NumPy
        done = run(tmp_path, "demo", env=environment(**{ENV_VAR: "cupy"}))
        assert_one_line_error(done, 2, "cupy backend is unavailable")
        assert done.stdout == ""
    # --backend wins over the variable
    done = run(tmp_path, "demo", "--backend", "numpy", env=environment(**{ENV_VAR: "cupy:7"}))
    assert done.returncode == 0 and done.stdout.startswith("backend: numpy")


@pytest.mark.parametrize("args", [["demo"], ["info"], ["train", "--samples", 64, "--epochs", 1],
                                  ["bench", "--quick", "--sizes", "tiny", "--no-torch"]])
def test_a_bad_backend_variable_is_an_error(tmp_path, args):
    done = run(tmp_path, *args, env=environment(**{ENV_VAR: "foo"}))
    assert_one_line_error(done, 2, "unknown backend 'foo'", f"environment variable {ENV_VAR}")
    assert "epoch" not in done.stdout and listing(tmp_path) == []


# ---------------------------------------------------------------------- train: rows, Ctrl-C
def start_long_training(tmp_path, *extra):
    return subprocess.Popen(command("train", "--backend", "numpy", "--epochs", 10 ** 6, "--samples", 2000, *extra),
                            cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8")


def read_until_first_row(process):
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch"):
            return lines
    raise AssertionError(f"no epoch row; stdout {lines}, stderr {process.stderr.read()}")


def test_rows_are_streamed_under_a_pipe(tmp_path):
    process = start_long_training(tmp_path)
    try:
        lines = read_until_first_row(process)
        assert process.poll() is None  # the row came while training goes on, not at the end
        assert lines[-1].startswith("epoch    1  loss ")
    finally:
        process.kill()
        process.communicate()


def test_sigint_saves_what_was_trained_and_exits_130(tmp_path):
    process = start_long_training(tmp_path, "--save", "model.npz")
    try:
        lines = read_until_first_row(process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err and "interrupted in epoch" in err
    saved = [line for line in out.splitlines() if line.startswith("saved the network to model.npz")]
    assert saved and "interrupted in epoch" in saved[0]
    net = gb.MLP.load(tmp_path / "model.npz", backend="numpy")
    assert net.layer_sizes == [2, 32, 32, 1]
    assert all(numpy.isfinite(array).all() for pair in net.get_params() for array in pair)
    assert not [p for p in tmp_path.iterdir() if p.name != "model.npz"]  # no temporary file left


def test_diverging_training_shows_its_error_and_no_numpy_warning(tmp_path):
    done = run(tmp_path, "train", "--backend", "numpy", "--samples", 2000, "--epochs", 5, "--lr", 50)
    assert_one_line_error(done, 1, "training diverged", "smaller --lr")
    assert "Warning" not in done.stderr and "numpy" not in done.stderr


def test_one_epoch_is_singular(tmp_path):
    done = run(tmp_path, "train", "--backend", "numpy", "--samples", 200, "--epochs", 1)
    assert done.returncode == 0, done.stderr
    assert "batch 32, 1 epoch\n" in done.stdout and "(1 epoch in " in done.stdout
    assert "1 epochs" not in done.stdout


# ---------------------------------------------------------------------- predict and --init
def make_data(folder, rows=60, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    numpy.savez(folder / "d.npz", X=X, Y=numpy.sin(X).sum(axis=1))
    numpy.savetxt(folder / "x.csv", X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    return X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_round_trip(tmp_path, dtype):
    X = make_data(tmp_path)
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "d.npz", "--epochs", 3, "--dtype", dtype,
               "--save", "m.npz")
    assert done.returncode == 0, done.stderr
    expected = gb.MLP.load(tmp_path / "m.npz", backend="numpy").predict(X)
    for data, out in (("d.npz", "y.npz"), ("x.csv", "y.csv")):
        done = run(tmp_path, "predict", "--model", "m.npz", "--data", data, "--out", out, "--backend", "numpy")
        assert done.returncode == 0 and done.stderr == "", done.stderr
        if out.endswith(".npz"):
            with numpy.load(tmp_path / out) as archive:
                got = archive["Y"]
        else:
            got = numpy.loadtxt(tmp_path / out, delimiter=",", skiprows=1, ndmin=2)
        numpy.testing.assert_array_equal(got.astype(dtype), expected)  # printed with every digit
    done = run(tmp_path, "predict", "--model", "m.npz", "--data", "x.csv", "--backend", "numpy")
    assert done.returncode == 0
    numpy.testing.assert_array_equal(numpy.loadtxt(io.StringIO(done.stdout), delimiter=",", skiprows=1,
                                                   ndmin=2).astype(dtype), expected)


def test_predict_errors_are_one_line_and_leave_the_output_as_it_was(tmp_path):
    make_data(tmp_path)
    assert run(tmp_path, "train", "--backend", "numpy", "--data", "d.npz", "--epochs", 1, "--save", "m.npz").returncode == 0
    (tmp_path / "y.csv").write_text("precious\n")
    (tmp_path / "two.csv").write_text("1,2\n3,4\n")
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    before = listing(tmp_path)
    for args, fragment in ((["--model", "m.npz", "--data", "two.csv"], "has 2 input column(s) but the network"),
                           (["--model", "bad.npz", "--data", "x.csv"], "bad.npz"),
                           (["--model", "m.npz", "--data", "missing.csv"], "does not exist"),
                           (["--model", "m.npz", "--data", "x.csv", "--target-columns", "z"], "no column 'z'")):
        done = run(tmp_path, "predict", *args, "--out", "y.csv", "--backend", "numpy")
        assert_one_line_error(done, 2, fragment)
    assert listing(tmp_path) == before and (tmp_path / "y.csv").read_text() == "precious\n"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_init_continues_training_from_the_checkpoint(tmp_path, optimizer):
    X = make_data(tmp_path)
    common = ["--backend", "numpy", "--data", "d.npz", "--val-fraction", 0, "--dtype", "float64"]
    assert run(tmp_path, "train", *common, "--epochs", 2, "--optimizer", optimizer, "--save", "first.npz").returncode == 0
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "d.npz", "--val-fraction", 0, "--init", "first.npz",
               "--epochs", 1, "--lr", 0.05, "--seed", 3, "--save", "second.npz")
    assert done.returncode == 0, done.stderr
    assert "3-32-32-1, sigmoid hidden, identity output, loss mse, float64" in done.stdout
    assert "from first.npz" in done.stdout and optimizer in done.stdout.lower()
    # the same as the library continuing the saved network
    with numpy.load(tmp_path / "d.npz") as archive:
        Y = archive["Y"]
    net = gb.MLP.load(tmp_path / "first.npz", backend="numpy")
    net.fit(X, Y, epochs=1, batch_size=32, lr=0.05, seed=3, progress=False)
    second = gb.MLP.load(tmp_path / "second.npz", backend="numpy")
    for (W0, b0), (W1, b1) in zip(net.get_params(), second.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()


@pytest.mark.parametrize("args, fragment", [
    (["--layers", "3,8,1"], "--layers 3,8,1 contradicts --init first.npz, which holds 3,32,32,1"),
    (["--dtype", "float32"], "--dtype float32 contradicts --init first.npz, which holds float64"),
    (["--activation", "relu"], "--activation relu contradicts"),
    (["--optimizer", "adam"], "--optimizer adam contradicts --init first.npz, which holds sgd"),
    (["--momentum", "0.5"], "--momentum: with --init the optimizer and its settings come from first.npz"),
    (["--data", "two.csv"], "takes 3 input(s) and gives 1 output(s), but the data has 1 feature"),
])
def test_init_conflicts_are_errors(tmp_path, args, fragment):
    make_data(tmp_path)
    (tmp_path / "two.csv").write_text("1,2\n3,4\n")
    assert run(tmp_path, "train", "--backend", "numpy", "--data", "d.npz", "--epochs", 1, "--dtype", "float64",
               "--save", "first.npz").returncode == 0
    before = listing(tmp_path)
    args = args if "--data" in args else ["--data", "d.npz", *args]
    done = run(tmp_path, "train", "--backend", "numpy", "--init", "first.npz", *args, "--save", "out.npz")
    assert_one_line_error(done, 2, fragment)
    assert listing(tmp_path) == before


# ---------------------------------------------------------------------- pipes, memory, files
def test_broken_pipe_ends_quietly(tmp_path):
    rng = numpy.random.default_rng(0)
    numpy.savez(tmp_path / "big.npz", X=rng.normal(size=(200_000, 3)), Y=numpy.zeros(200_000))
    assert run(tmp_path, "train", "--backend", "numpy", "--data", "big.npz", "--epochs", 1, "--samples", 2,
               "--layers", "3,4,1", "--save", "m.npz").returncode == 0
    # predict writes megabytes to stdout; the reader stops after one line
    process = subprocess.Popen(command("predict", "--model", "m.npz", "--data", "big.npz", "--backend", "numpy"),
                               cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"y0\n"
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and err == b""
    # the README's example: demo | head
    done = subprocess.run(["bash", "-c", f"{' '.join(command('demo', '--backend', 'numpy'))} | head -1"],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("backend: numpy") and done.stderr == ""


@pytest.mark.parametrize("args", [["--layers", "2,10000000000,1"], ["--samples", "1000000000000"]])
def test_sizes_beyond_memory_are_one_line_errors(tmp_path, args):
    done = run(tmp_path, "train", "--backend", "numpy", "--epochs", 1, *args, "--save", "m.npz")
    assert_one_line_error(done, 2, "out of memory")
    assert listing(tmp_path) == []


def crafted_npz(path, shape=(10 ** 11,)):
    """A small .npz whose X header claims ``shape`` float64 values (it holds 8 bytes of data)."""
    header = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", header.getvalue() + b"\0" * 8)
        archive.writestr("Y.npy", header.getvalue() + b"\0" * 8)
    return path


def test_a_crafted_data_file_is_a_one_line_error_without_a_huge_allocation(tmp_path):
    crafted_npz(tmp_path / "evil.npz")
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "evil.npz", "--epochs", 1)
    assert_one_line_error(done, 2, "evil.npz is corrupt", "claims float64 (100000000000,)")


def written(path, content: bytes):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda d: (d / "dir.csv").mkdir() or d / "dir.csv", "is not a regular file"),
    (lambda d: written(d / "bin.csv", b"\xff\xfe\x00garbage\x80\x81"), "not a readable text file"),
    (lambda d: written(d / "ragged.csv", b"1,2,3\n4,5\n"), "data row 2: 2 column(s), expected 3"),
])
def test_more_data_file_errors_are_one_line(tmp_path, make, fragment):
    path = make(tmp_path)
    done = run(tmp_path, "train", "--backend", "numpy", "--data", path.name, "--epochs", 1)
    assert_one_line_error(done, 2, fragment)


def test_save_into_a_folder_that_cannot_be_written_fails_before_training(tmp_path):
    target = "/proc/model.npz" if Path("/proc").is_dir() else str(tmp_path / "missing" / "model.npz")
    done = run(tmp_path, "train", "--backend", "numpy", "--epochs", 1, "--samples", 64, "--save", target)
    assert_one_line_error(done, 2, f"--save {target}")
    assert "epoch" not in done.stdout and not Path(target).exists()


@pytest.mark.requires("running as root (root writes into read-only folders)"  # the /proc case covers root
                      if (os.geteuid() == 0 if hasattr(os, "geteuid") else True) else None)
def test_save_into_a_read_only_folder_fails_before_training(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        done = run(tmp_path, "train", "--backend", "numpy", "--epochs", 1, "--samples", 64, "--save", folder / "m.npz")
    finally:
        folder.chmod(0o700)
    assert_one_line_error(done, 2, "cannot write in the directory")
    assert "epoch" not in done.stdout and list(folder.iterdir()) == []


# ---------------------------------------------------------------------- CSV reading (in process)
def test_a_csv_with_a_utf8_byte_order_mark_loads(tmp_path, capsys):
    rows = "a,b,t\n" + "".join(f"{i},{i % 3},{i / 10}\n" for i in range(40))
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    code = cli.main(["train", "--backend", "numpy", "--data", str(tmp_path / "excel.csv"), "--target-columns", "a",
                     "--epochs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "X (40, 2), Y (40, 1)" in out  # 'a' found: the mark is not part of the first name


@pytest.mark.parametrize("text", [
    'x,"y",t\n\n1.5, 2 ,"3"\n\n-4e-3,5,6\n7,8,9\n',  # quotes, spaces, empty lines
    'x,"y",t\n1.5, 2 ,"3"\n  \n-4e-3,5,6\n7,8,9\n',  # a line of blanks
    '1.5,2,3\n-4e-3,5,6\n7,8,9',  # no header, no final newline
    '# made by hand\nx;y;t\n1.5;2;3\n-4e-3;5;6 # a note\n7;8;9;\n',  # comments, ';', one trailing ';'
])
def test_the_fast_csv_path_reads_what_the_cell_loop_reads(tmp_path, monkeypatch, text):
    from gpubackprop.cli import text as cli_text

    (tmp_path / "d.csv").write_text(text)
    if text.endswith(";\n"):  # a trailing delimiter on one line only: loadtxt refuses, the cells say where
        with pytest.raises(cli_text.TextDataError, match=r"data row 3: 4 column\(s\), expected 3"):
            cli_text.read_table(tmp_path / "d.csv")
        (tmp_path / "d.csv").write_text(text.replace(";\n", "\n"))
    fast = cli_text.read_table(tmp_path / "d.csv")
    monkeypatch.setattr(cli_text, "_fast", lambda *args: None)  # the cell loop alone
    cells = cli_text.read_table(tmp_path / "d.csv")
    assert fast.header == cells.header == (None if text.startswith("1") else ["x", "y", "t"])
    numpy.testing.assert_array_equal(fast.values, cells.values)
    numpy.testing.assert_array_equal(fast.values, [[1.5, 2, 3], [-4e-3, 5, 6], [7, 8, 9]])


# ---------------------------------------------------------------------- --version, --help
def test_version_and_help_list_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"gpubackprop {gb.__version__}\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"    {name} " in out
    assert {"demo", "info", "train", "predict", "bench"} <= set(cli.COMMANDS)


def test_predict_classes_and_probabilities_of_a_classifier(tmp_path):
    done = run(tmp_path, "train", "--backend", "numpy", "--loss", "softmax_cross_entropy", "--samples", 300,
               "--epochs", 2, "--save", "spirals.npz")
    assert done.returncode == 0, done.stderr
    net = gb.MLP.load(tmp_path / "spirals.npz", backend="numpy")
    X = numpy.random.default_rng(2).uniform(-3, 3, size=(50, 2))
    numpy.savez(tmp_path / "x.npz", X=X)
    for output, expected in (("classes", net.predict_classes(X)), ("probabilities", net.predict_proba(X))):
        done = run(tmp_path, "predict", "--model", "spirals.npz", "--data", "x.npz", "--output", output,
                   "--out", f"{output}.npz", "--backend", "numpy")
        assert done.returncode == 0, done.stderr
        with numpy.load(tmp_path / f"{output}.npz") as archive:
            numpy.testing.assert_array_equal(archive["Y"], expected)
    done = run(tmp_path, "predict", "--model", "spirals.npz", "--data", "x.npz", "--output", "classes",
               "--backend", "numpy")
    assert done.stdout.splitlines()[1:] == [str(c) for c in net.predict_classes(X)]
    # a regression network has no classes
    assert run(tmp_path, "train", "--backend", "numpy", "--samples", 100, "--epochs", 1, "--save", "reg.npz").returncode == 0
    done = run(tmp_path, "predict", "--model", "reg.npz", "--data", "x.npz", "--output", "classes")
    assert_one_line_error(done, 2, "--output classes needs a network trained with a classification loss")
