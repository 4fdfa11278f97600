"""The command line's outputs and endings (issue 15, parts 4 and 7): every output target checked
completely before any work; every file written by one atomic writer that keeps an existing file's
permissions; --init's sizes from the file, read once; install hints that work without PyPI; the
final line naming the network that was saved; --plot also on Ctrl-C and on an error; the table's
thinning stated, --log-every."""
import os
import re
import signal
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy
import pytest
from conftest import need

import gpubackprop as gb
from gpubackprop import checkpoint, cli, extras, training
from gpubackprop.cli import data as cli_train
from gpubackprop.backends import ENV_VAR

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def environment():
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def command(*args):
    return [sys.executable, "-m", "gpubackprop", *map(str, args)]


def run(cwd, *args):
    return subprocess.run(command(*args), cwd=cwd, env=environment(), capture_output=True, text=True,
                          encoding="utf-8", timeout=120)


def listing(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir())


def one_line_error(done, code, fragment):
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert fragment in done.stderr, done.stderr


# ---------------------------------------------------------------------- outputs checked first
TRAIN = ["train", "--backend", "numpy", "--samples", 64, "--epochs", 1]


@pytest.mark.parametrize("args, fragment", [
    (["--save", "adir"], "--save adir: adir is a directory; name a file in it"),  # the case
    (["--save", "new/"], "(the path ends in a separator)"),
    (["--save", "missing/m.npz"], "--save missing/m.npz: the directory"),
    (["--save", "x" * 300 + ".npz"], "bytes long; the file system takes at most"),
    (["--plot", "adir"], "--plot adir: adir is a directory"),
    (["--plot", "loss.xyz"], "--plot loss.xyz: matplotlib cannot write '.xyz'; use one of"),
    (["--save", "out.npz", "--plot", "out.npz"], "--save and --plot name the same file (out.npz)"),
    (["--data", "d.npz", "--save", "d.npz"], "--save d.npz is the --data file"),
])
def test_every_train_output_is_checked_before_training(tmp_path, args, fragment):
    if "--plot" in args:
        need("matplotlib")
    (tmp_path / "adir").mkdir()
    numpy.savez(tmp_path / "d.npz", X=numpy.zeros((8, 2)), Y=numpy.zeros(8))
    before = listing(tmp_path)
    done = run(tmp_path, *TRAIN, *args)
    one_line_error(done, 2, fragment)
    assert "epoch" not in done.stdout and listing(tmp_path) == before  # nothing trained, nothing written


def test_predict_and_bench_outputs_are_checked_before_any_work(tmp_path):
    assert run(tmp_path, *TRAIN, "--save", "m.npz").returncode == 0
    numpy.savez(tmp_path / "x.npz", X=numpy.zeros((4, 2)))
    (tmp_path / "adir").mkdir()
    before = listing(tmp_path)
    for args, fragment in ((["predict", "--model", "m.npz", "--data", "x.npz", "--out", "adir.csv/"], "is a directory"),
                           (["predict", "--model", "m.npz", "--data", "x.npz", "--out", "x.npz"], "is the --data file"),
                           (["bench", "--backend", "numpy", "--sizes", "tiny", "--quick", "--no-torch", "--json", "adir"],
                            "--json adir: adir is a directory")):
        done = run(tmp_path, *args)
        one_line_error(done, 2, fragment)
        assert "µs/step" not in done.stdout
    assert listing(tmp_path) == before


# ---------------------------------------------------------------------- one atomic writer
@pytest.mark.parametrize("what", ["checkpoint", "predictions", "plot"])
def test_every_file_written_keeps_an_existing_files_permissions(tmp_path, what):
    if what == "plot":
        need("matplotlib")
    if what == "predictions":
        assert run(tmp_path, *TRAIN, "--save", "m.npz").returncode == 0
        numpy.savez(tmp_path / "x.npz", X=numpy.zeros((4, 2)))
    target, args = {
        "checkpoint": ("again.npz", [*TRAIN, "--save", "again.npz"]),
        "predictions": ("y.csv", ["predict", "--backend", "numpy", "--model", "m.npz", "--data", "x.npz", "--out", "y.csv"]),
        "plot": ("loss.png", [*TRAIN, "--plot", "loss.png"]),
    }[what]
    (tmp_path / target).write_text("old")
    os.chmod(tmp_path / target, 0o640)
    done = run(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / target).stat().st_mode) == 0o640
    assert (tmp_path / target).read_bytes() != b"old"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".gpubackprop-")]  # no temporary left


def test_checkpoints_predictions_and_plots_share_one_writer(tmp_path, monkeypatch, capsys):
    """A failure while writing leaves the old file whole: checked for each kind through the one writer."""
    need("matplotlib")
    from gpubackprop import files

    calls = []
    real = files.write_atomically
    monkeypatch.setattr(files, "write_atomically", lambda path, write, what="the file": calls.append(what) or
                        real(path, write, what))
    assert cli.main(["train", "--backend", "numpy", "--samples", "64", "--epochs", "1", "--save",
                     str(tmp_path / "m.npz"), "--plot", str(tmp_path / "p.png")]) == 0
    numpy.savez(tmp_path / "x.npz", X=numpy.zeros((4, 2)))
    assert cli.main(["predict", "--backend", "numpy", "--model", str(tmp_path / "m.npz"), "--data",
                     str(tmp_path / "x.npz"), "--out", str(tmp_path / "y.npz")]) == 0
    assert calls == ["the checkpoint", "the plot", "the predictions"]
    capsys.readouterr()


# ---------------------------------------------------------------------- --init
def classifier(tmp_path, classes=4):
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    numpy.savez(tmp_path / "c4.npz", X=X, Y=rng.integers(0, classes, 60))
    numpy.savez(tmp_path / "c3.npz", X=X, Y=numpy.arange(60) % 3)  # labels 0..2 only
    numpy.savez(tmp_path / "c9.npz", X=X, Y=numpy.where(numpy.arange(60) == 7, 9, 0))  # label 9 at row 7
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "c4.npz", "--loss", "softmax_cross_entropy",
               "--epochs", 1, "--save", "clf.npz")
    assert done.returncode == 0, done.stderr
    return X


def test_init_takes_the_output_count_from_the_file(tmp_path):
    classifier(tmp_path)
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "c3.npz", "--init", "clf.npz", "--epochs", 1,
               "--save", "more.npz")
    assert done.returncode == 0, done.stderr  # was: "needs 3 outputs"
    assert "3-32-32-4" in done.stdout and gb.MLP.load(tmp_path / "more.npz", backend="numpy").layer_sizes[-1] == 4
    done = run(tmp_path, "train", "--backend", "numpy", "--data", "c9.npz", "--init", "clf.npz", "--epochs", 1)
    one_line_error(done, 2, "class labels of the 4 classes of the --init network")
    assert "the label 9.0 at position 7" in done.stderr


def test_init_reads_the_checkpoint_once(tmp_path, monkeypatch, capsys):
    classifier(tmp_path)
    reads = []
    real = checkpoint.read
    monkeypatch.setattr(checkpoint, "read", lambda path: reads.append(path) or real(path))
    assert cli.main(["train", "--backend", "numpy", "--data", str(tmp_path / "c3.npz"), "--init",
                     str(tmp_path / "clf.npz"), "--epochs", "1"]) == 0
    assert reads == [str(tmp_path / "clf.npz")]
    capsys.readouterr()


# ---------------------------------------------------------------------- install hints
def test_install_hints_name_packages_that_exist():
    """gpubackprop is not on PyPI: no hint may tell pip to install it by name with an extra; the
    table of the extras' requirements that the hints use matches pyproject.toml."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        declared = tomllib.load(handle)["project"]["optional-dependencies"]
    for extra, requirements in extras.REQUIREMENTS.items():
        assert list(requirements) == declared[extra], extra
    for folder in ("gpubackprop", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search("pip install '?" + "gpubackprop" + r"\[", text), path
    assert extras.install_hint("plot") == "pip install 'matplotlib>=3.5' (in a gpubackprop source checkout: pip install '.[plot]')"


# ---------------------------------------------------------------------- the end of a run
def rows(out):
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^epoch +(\d+) .*  val ([\d.e+-]+)", out, re.M)}


def test_the_final_line_reports_the_restored_best_epoch_when_the_epochs_run_out(tmp_path):
    # A linear model at an lr on the edge of stability: the validation loss is lowest before the end.
    done = run(tmp_path, "train", "--backend", "numpy", "--samples", 300, "--layers", "2,1", "--lr", 0.5,
               "--epochs", 60, "--patience", 100, "--log-every", 1, "--save", "m.npz", "--dtype", "float64")
    assert done.returncode == 0, done.stderr
    val = rows(done.stdout)
    best = min(val, key=val.get)
    assert len(val) == 60 and best < 60
    final = done.stdout.strip().splitlines()[-1]
    assert final.startswith(f"final: epoch {best}'s network (the best: lowest validation loss), restored when "
                            f"the epochs ran out after epoch 60: "), final
    assert f"val loss {val[best]:.3e}" in final
    assert f"saved the network to m.npz (epoch {best}'s parameters, the best" in done.stdout
    # the saved network is the one the final line describes
    X, Y = cli_train.builtin_task(300, 0)
    _, (X_val, Y_val) = cli_train.split(X, Y, 0.2, 0)
    saved = gb.MLP.load(tmp_path / "m.npz", backend="numpy").evaluate(X_val, Y_val)
    assert f"{float(saved):.3e}" == f"{val[best]:.3e}"


def test_an_error_still_plots_what_was_measured_and_says_what_was_saved(tmp_path):
    need("matplotlib")
    # lr 0.8 on a linear model: the loss grows every epoch and overflows in epoch 14
    done = run(tmp_path, "train", "--backend", "numpy", "--samples", 300, "--layers", "2,1", "--lr", 0.8,
               "--epochs", 100, "--patience", 100, "--save", "m.npz", "--plot", "loss.png")
    one_line_error(done, 1, "training diverged")
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG  # was: no plot at all
    assert "saved the loss curve to loss.png" in done.stdout
    final = done.stdout.strip().splitlines()[-1]
    if getattr(training.History(), "restored_best", None) is not None:  # fit restores the best epoch on errors
        assert re.match(r"final: epoch 1's network \(the best: lowest validation loss\), restored when training "
                        r"diverged in epoch \d+", final), final
        assert gb.MLP.load(tmp_path / "m.npz", backend="numpy").layer_sizes == [2, 1]
    else:  # the network holds a diverging run's parameters: not saved, and said so
        assert final.startswith("final: the network after its last complete step (training diverged in epoch")
        assert "nothing saved to m.npz" in done.stderr and not (tmp_path / "m.npz").exists()


def test_ctrl_c_still_plots(tmp_path):
    need("matplotlib")
    process = subprocess.Popen(command("train", "--backend", "numpy", "--epochs", 10 ** 6, "--samples", 2000,
                                       "--plot", "loss.png"), cwd=tmp_path, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        for line in process.stdout:
            if line.startswith("epoch"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (out, err)
    assert err.count("\n") == 1 and "interrupted in epoch" in err
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG
    assert re.search(r"^final: the network after its last complete step \(training was interrupted in epoch \d+\)",
                     out, re.M), out


def test_the_table_says_how_it_is_thinned_and_log_every_shows_every_epoch(tmp_path, capsys):
    base = ["train", "--backend", "numpy", "--samples", "64", "--epochs", "30"]
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert "table: epoch 1, every 3rd epoch and the last (--log-every 1 shows every epoch)" in out
    assert sorted(rows_ := [int(n) for n in re.findall(r"^epoch +(\d+)", out, re.M)]) == [1, *range(3, 31, 3)], rows_
    assert cli.main([*base, "--log-every", "1"]) == 0
    out = capsys.readouterr().out
    assert "table:" not in out and [int(n) for n in re.findall(r"^epoch +(\d+)", out, re.M)] == list(range(1, 31))
    assert cli.main([*base, "--log-every", "7"]) == 0
    out = capsys.readouterr().out
    assert "every 7th epoch" in out and [int(n) for n in re.findall(r"^epoch +(\d+)", out, re.M)] == [1, 7, 14, 21, 28, 30]
    assert cli.main([*base, "--log-every", "0"]) == 2
    assert "--log-every must be a positive number of epochs" in capsys.readouterr().err


def test_the_one_writer_checks_targets_and_leaves_the_old_file_on_failure(tmp_path):
    from gpubackprop import files

    (tmp_path / "d").mkdir()
    (tmp_path / "old.bin").write_bytes(b"old")
    for target, fragment in ((tmp_path / "d", "is a directory"), (f"{tmp_path}/new{os.sep}", "ends in a separator"),
                             (tmp_path / "missing" / "f", "does not exist"),
                             (tmp_path / ("n" * 400), "the file system takes at most")):
        with pytest.raises(files.TargetError, match=re.escape(fragment)):
            files.check_target(target)
    files.check_target(tmp_path / "old.bin")  # an existing file may be replaced

    def failing(handle):
        handle.write(b"half")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        files.write_atomically(tmp_path / "old.bin", failing)
    assert (tmp_path / "old.bin").read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["d", "old.bin"]
    files.write_atomically(tmp_path / "old.bin", lambda handle: handle.write(b"new"))
    assert (tmp_path / "old.bin").read_bytes() == b"new"
