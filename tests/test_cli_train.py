"""`gpubackprop train` end to end in a temporary directory, and its errors on bad data files."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from conftest import need

import gpubackprop as gb
from gpubackprop import cli

REPO = Path(__file__).resolve().parent.parent


def train(capsys, *args):
    rc = cli.main(["train", "--backend", "numpy", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_builtin_task_end_to_end(tmp_path, capsys):
    need("matplotlib")
    png, model = tmp_path / "loss.png", tmp_path / "model.npz"
    # (adam: sgd at the CLI's lr takes more than 8 epochs of 1024 samples to beat the mean predictor)
    rc, out, err = train(capsys, "--epochs", 8, "--samples", 1024, "--optimizer", "adam", "--plot", png, "--save", model)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("backend: numpy (CPU")
    assert "built-in task" in lines[1] and "819 training, 205 validation samples" in lines[1]
    assert "2-32-32-1, sigmoid hidden" in lines[2]
    final = lines[-1]
    assert final.startswith("final: train loss ") and "val loss" in final and "samples/s" in final and "8 epochs" in final
    # the training loss beside the mean predictor's (Var(Y)/2 on the training targets): it learnt
    mean_predictor = float(final.split("the mean predictor's ")[1].split(")")[0])
    last = float(final.split("train loss ")[1].split(" ")[0])
    assert last < mean_predictor and "no better" not in final
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    net = gb.MLP.load(model, backend="numpy")
    assert net.layer_sizes == [2, 32, 32, 1]
    assert err == ""  # no progress line: stderr is not a terminal here


def test_same_seed_same_output(capsys):
    runs = [train(capsys, "--epochs", 2, "--samples", 200, "--seed", 4)[1] for _ in range(2)]
    strip = lambda out: [line.split(" loss ")[1].split()[0] for line in out.splitlines() if line.startswith("epoch")]
    assert strip(runs[0]) == strip(runs[1]) and strip(runs[0])


def test_npz_data_sets_the_layer_sizes(tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    numpy.savez(tmp_path / "d.npz", X=X, Y=X.sum(axis=1))
    rc, out, err = train(capsys, "--data", tmp_path / "d.npz", "--epochs", 3, "--val-fraction", 0, "--dtype", "float64")
    assert rc == 0, err
    assert "X (120, 3), Y (120, 1); 120 training, 0 validation samples" in out
    assert "3-32-32-1" in out and "val loss" not in out.splitlines()[-1]


def test_csv_with_header_and_named_targets(tmp_path, capsys):
    rows = ["a,b,t1,t2"] + [f"{i},{i % 3},{i / 10},{-i / 10}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    rc, out, err = train(capsys, "--data", tmp_path / "d.csv", "--target-columns", "t1,3", "--epochs", 2,
                         "--layers", "2,4,2", "--activation", "tanh")
    assert rc == 0, err
    assert "X (40, 2), Y (40, 2)" in out and "2-4-2, tanh hidden" in out


def test_csv_without_header_takes_the_last_column(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("\n".join(f"{i},{i * 2},{i * 3}" for i in range(30)))
    rc, out, err = train(capsys, "--data", tmp_path / "d.csv", "--epochs", 1, "--lr", 0.001)
    assert rc == 0, err
    assert "X (30, 2), Y (30, 1)" in out


def npz(path, **arrays):
    numpy.savez(path, **arrays)
    return path


def text(path, content):
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: npz(d / "x.npz", X=numpy.zeros((5, 2))), r"no array named Y; the file holds X"),
    (lambda d: npz(d / "x.npz", inputs=numpy.zeros((5, 2))), r"no array named X or Y; the file holds inputs"),
    (lambda d: npz(d / "x.npz", X=numpy.zeros((5, 2)), Y=numpy.zeros(4)), r"X has 5 samples but Y has 4"),
    (lambda d: npz(d / "x.npz", X=numpy.zeros((5, 2, 2)), Y=numpy.zeros(5)), r"X must be 1-D or 2-D .* got shape \(5, 2, 2\)"),
    (lambda d: npz(d / "x.npz", X=numpy.array([["a", "b"]]), Y=numpy.zeros(1)), r"X must hold numbers, got dtype <U1"),
    (lambda d: npz(d / "x.npz", X=numpy.zeros((0, 2)), Y=numpy.zeros(0)), r"X has no samples"),
    (lambda d: npz(d / "x.npz", X=numpy.array([[1.0, numpy.nan]]), Y=numpy.zeros(1)), r"X holds a NaN or infinite value \(first at row 0, column 1\)"),
    (lambda d: text(d / "x.npz", b"not a zip file"), r"x\.npz is not a readable \.npz file"),
    (lambda d: text(d / "x.csv", "a,b\n1,2\n3,abc\n"), r"data row 2, column 1 \('b'\): 'abc' is not a number"),
    (lambda d: text(d / "x.csv", "1,2\n3\n"), r"data row 2: 1 column\(s\), expected 2"),
    (lambda d: text(d / "x.csv", "a,b\n"), r"has a header but no data rows"),
    (lambda d: text(d / "x.csv", ""), r"x\.csv: the file is empty"),
    (lambda d: text(d / "x.json", "[[1, 2]]\n"), r"unknown format '\.json'; use \.npz \(arrays X, Y\) or delimited text \(\.csv, \.tsv, \.txt\)"),
    (lambda d: d / "missing.npz", r"missing\.npz' does not exist"),
])
def test_bad_data_files_are_clear_errors(tmp_path, capsys, make, message):
    path = make(tmp_path)
    rc, out, err = train(capsys, "--data", path, "--epochs", 1)
    assert rc == 2
    assert err.startswith("gpubackprop train: error: ")
    assert re.search(message, err), err
    assert "Traceback" not in err and "final:" not in out


@pytest.mark.parametrize("args, message", [
    (["--layers", "3,8,1"], r"--layers 3,8,1 does not fit the data: it has 2 input and 1 output"),
    (["--layers", "2,x,1"], r"--layers must be comma-separated ints"),
    (["--target-columns", "0"], r"--target-columns needs --data FILE"),
    (["--val-fraction", "1.5"], r"--val-fraction must be in \[0, 1\)"),
    (["--epochs", "0"], r"epochs must be a positive int"),
    (["--save", "no/such/dir/m.npz"], r"--save no/such/dir/m.npz: the directory .* does not exist"),
])
def test_bad_arguments_are_clear_errors(capsys, args, message):
    rc, out, err = train(capsys, "--samples", 50, *args)
    assert rc == 2
    assert re.search(message, err), err


def test_csv_target_column_errors(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    rc, _, err = train(capsys, "--data", tmp_path / "d.csv", "--target-columns", "c")
    assert rc == 2 and "no column 'c'" in err and "the header names a, b" in err
    rc, _, err = train(capsys, "--data", tmp_path / "d.csv", "--target-columns", "a,b")
    assert rc == 2 and "every column is a target" in err
    rc, _, err = train(capsys, "--data", tmp_path / "d.csv", "--target-columns", "5")
    assert rc == 2 and "column 5 is out of range" in err


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    rc, out, err = train(capsys, "--samples", 50, "--plot", tmp_path / "l.png")
    # gpubackprop is not on PyPI: the hint names matplotlib itself, and the source checkout's extra
    assert rc == 2 and "pip install 'matplotlib>=3.5'" in err and "pip install '.[plot]'" in err and out == ""
    assert "gpubackprop[" not in err


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_is_reported_without_traceback(capsys):
    rc, out, err = train(capsys, "--samples", 200, "--epochs", 5, "--lr", 1e6, "--activation", "relu")
    assert rc == 1 and "training diverged" in err and "smaller --lr" in err and "Traceback" not in err


def test_module_entry_point(tmp_path):
    """python -m gpubackprop train, as a user runs it: exit 0, last line the final summary."""
    done = subprocess.run([sys.executable, "-m", "gpubackprop", "train", "--backend", "numpy", "--epochs", "2",
                           "--samples", "256"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("final: train loss")


# ---------------------------------------------------------------------- classification, optimizers
def test_classification_builtin_spirals_with_adam_early_stopping_and_plot(tmp_path, capsys):
    need("matplotlib")
    png, model = tmp_path / "spirals.png", tmp_path / "model.npz"
    rc, out, err = train(capsys, "--loss", "softmax_cross_entropy", "--optimizer", "adam", "--samples", 4000,
                         "--epochs", 25, "--patience", 30, "--plot", png, "--save", model)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert "3 interleaved spirals" in lines[1] and "3200 training, 800 validation samples" in lines[1]
    assert "2-32-32-3" in lines[2] and "loss softmax_cross_entropy" in lines[2] and "adam (beta1 0.9" in lines[2]
    assert "lr 0.01" in lines[2] and "early stopping after 30 epochs" in lines[2]
    epochs = [line for line in lines if line.startswith("epoch")]
    accuracies = [float(re.search(r"val acc ([\d.]+)%", line).group(1)) for line in epochs]
    assert accuracies[-1] > accuracies[0] and accuracies[-1] > 80
    assert "val accuracy" in lines[-1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "loss and accuracy curves" in out
    net = gb.MLP.load(model, backend="numpy")
    assert (net.loss, net.optimizer.name, net.get_optimizer_state()["step"]) == ("softmax_cross_entropy", "adam", 25 * 100)


def test_integer_label_column_of_a_data_file_gives_one_output_per_class(tmp_path, capsys):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((90, 2))
    numpy.savez(tmp_path / "d.npz", X=X, Y=(X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int))  # labels 0, 1, 2
    rc, out, err = train(capsys, "--data", tmp_path / "d.npz", "--loss", "softmax_cross_entropy", "--epochs", 2,
                         "--optimizer", "momentum", "--nesterov")
    assert rc == 0, err
    assert "2-32-32-3" in out and "momentum (momentum 0.9, nesterov True) lr 0.02" in out


def test_early_stopping_reports_the_kept_epoch(capsys):
    rc, out, err = train(capsys, "--loss", "softmax_cross_entropy", "--optimizer", "adam", "--lr", 0.5,
                         "--samples", 300, "--epochs", 200, "--patience", 2)
    assert rc == 0, err
    assert re.search(r"early stopping: no improvement for 2 epochs after epoch (\d+); kept epoch \1's parameters", out)


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "sgd", "--beta1", "0.8"], r"beta1 applies to optimizer 'adam' or 'adamw', not 'sgd'"),
    (["--optimizer", "momentum", "--momentum", "1.5"], r"momentum must be in \[0, 1\)"),
    (["--patience", "0"], r"--patience must be a positive number of epochs"),
    (["--patience", "3", "--val-fraction", "0"], r"--patience watches the validation loss"),
    (["--loss", "softmax_cross_entropy", "--output-activation", "sigmoid"], r"takes logits"),
])
def test_bad_classification_arguments_are_clear_errors(capsys, args, message):
    rc, out, err = train(capsys, "--samples", 50, *args)
    assert rc == 2 and re.search(message, err), err


def test_non_integer_labels_in_a_data_file_are_a_data_error(tmp_path, capsys):
    numpy.savez(tmp_path / "d.npz", X=numpy.zeros((4, 2)), Y=numpy.array([0, 1.5, 2, 1]))
    rc, out, err = train(capsys, "--data", tmp_path / "d.npz", "--loss", "softmax_cross_entropy")
    assert rc == 2 and "reads the target column as integer class labels" in err and "1.5" in err
