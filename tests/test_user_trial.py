"""What a new user's trial met (issue 15, round 3 polish), one kind per section: classification
targets that are not labels (real values, text, a (n, 1) column), the wording of a divergence,
the final line against the constant predictor, options checked before any output under their
flags' names, target names kept for predict and its text formats, scikit-learn's names, integer
epoch ticks, one skip reason per kind."""
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from conftest import need

import gpubackprop as gb
from gpubackprop import checkpoint, cli, losses
from gpubackprop.cli import report

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def regression_csv(path, n=40, header="a,b,z", seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    z = numpy.sin(X[:, 0]) * 0.3 + 0.01
    numpy.savetxt(path, numpy.c_[X, z], delimiter=",", header=header or "", comments="")
    return path


# ---------------------------------------------------------------------- 1. real targets for softmax
@pytest.mark.parametrize("header", ["a,b,z", None])
def test_softmax_on_real_valued_targets_names_the_column_and_suggests_regression(tmp_path, capsys, header):
    data = regression_csv(tmp_path / "data.csv", header=header)
    code, out, err = run_cli(capsys, "train", "--data", data, "--loss", "softmax_cross_entropy")
    assert code == 2 and out == "", out
    assert "non-integer values" in err and "leave --loss out" in err, err
    assert "[0, 1)" not in err  # the range of int(Y.max()) + 1 meant nothing
    assert ("the target column 'z'" if header else "the target column") in err
    assert err.count("\n") == 1


def test_softmax_on_real_targets_of_an_npz_and_negative_labels(tmp_path, capsys):
    rng = numpy.random.default_rng(1)
    numpy.savez(tmp_path / "real.npz", X=rng.normal(size=(20, 2)), Y=rng.normal(size=20))
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "real.npz", "--loss", "softmax_cross_entropy")
    assert code == 2 and "non-integer values" in err and "leave --loss out" in err, err
    numpy.savez(tmp_path / "negative.npz", X=rng.normal(size=(20, 2)), Y=numpy.tile([-1, 0, 1, 2], 5))
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "negative.npz", "--loss", "softmax_cross_entropy")
    assert code == 2 and "number the classes from 0" in err and "-1" in err, err


# ---------------------------------------------------------------------- 2. text labels in a CSV
@pytest.mark.parametrize("middle", [False, True])
def test_text_labels_in_the_target_column_say_how_to_encode_them(tmp_path, capsys, middle):
    rows = [(0.1 * i, 0.2 * i, "abc"[i % 3]) for i in range(12)]
    path = tmp_path / "labels.csv"
    if middle:  # the label column in the middle, picked by name
        path.write_text("x1,label,x2\n" + "".join(f"{a},{c},{b}\n" for a, b, c in rows))
        extra = ["--target-columns", "label"]
    else:
        path.write_text("x1,x2,label\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
        extra = []
    code, _, err = run_cli(capsys, "train", "--data", path, "--loss", "softmax_cross_entropy", *extra)
    assert code == 2 and "'a' is not a number" in err, err
    assert "the target column 'label' holds text" in err and "numpy.unique(column, return_inverse=True)" in err
    assert "--loss softmax_cross_entropy" in err and err.count("\n") == 1


def test_text_in_a_feature_column_gets_no_label_hint(tmp_path, capsys):
    path = tmp_path / "feature.csv"
    path.write_text("x1,x2,y\n" + "".join(f"{i},{'abc'[i % 3]},{i % 2}\n" for i in range(9)))
    code, _, err = run_cli(capsys, "train", "--data", path)
    assert code == 2 and "'a' is not a number" in err and "holds text" not in err, err


# ---------------------------------------------------------------------- 3. labels of shape (n, 1)
@pytest.mark.parametrize("how", ["fit", "evaluate", "train_step"])
def test_label_column_of_shape_n_1_says_to_ravel(how):
    net = gb.MLP([2, 8, 3], loss="softmax_cross_entropy", backend="numpy", seed=0)
    X = numpy.zeros((10, 2))
    labels = (numpy.arange(10) % 3).reshape(-1, 1)  # df[["label"]]
    call = {"fit": lambda: net.fit(X, labels, epochs=1), "evaluate": lambda: net.evaluate(X, labels),
            "train_step": lambda: net.train_step(X, labels, 0.1)}[how]
    before = net.get_params()
    with pytest.raises(ValueError, match=r"shape \(batch,\), e\.g\. Y\.ravel\(\)"):
        call()
    assert all((a == b).all() for pa, pb in zip(before, net.get_params()) for a, b in zip(pa, pb))
    net.fit(X, labels.ravel(), epochs=1)  # the hint works


# ---------------------------------------------------------------------- 4. the divergence's wording
@pytest.mark.parametrize("epoch, batch, kept", [
    (1, 1, "the parameters are as at the start of this epoch"),
    (3, 1, "the parameters are as at the start of this epoch"),
    (1, 4, "the parameters are those after the last good step (batch 3)"),
    (None, None, "no parameter was changed"),
])
@pytest.mark.parametrize("where", ["loss", "gradients", "update"])
def test_non_finite_loss_message_reads_right_for_every_batch_and_epoch(epoch, batch, kept, where):
    message = str(gb.NonFiniteLossError(float("nan"), where, epoch=epoch, batch=batch, batches=5))
    assert kept in message, message
    assert "those after the start" not in message


def test_non_finite_validation_loss_message():
    message = str(gb.NonFiniteLossError(float("inf"), "validation", epoch=2))
    assert message.startswith("epoch 2: ") and "the parameters are those at the end of epoch 2" in message


# ---------------------------------------------------------------------- 5. the constant predictor
def _constant_network(loss, outputs, bias):
    """A network whose output ignores the inputs: zero last-layer weights, the given bias."""
    net = gb.MLP([2, 4, outputs], loss=loss, dtype="float64", backend="numpy", seed=0)
    params = net.get_params()
    W, _ = params[-1]
    params[-1] = (numpy.zeros_like(W), numpy.asarray(bias, dtype=numpy.float64))
    net.set_params(params)
    return net


def test_constant_baseline_is_the_loss_of_the_best_constant_prediction():
    rng = numpy.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    Y = rng.normal(2.0, [1.0, 3.0], size=(200, 2))
    net = _constant_network("mse", 2, Y.mean(axis=0))
    # float64 sums of 200 rows computed two ways (evaluate's chunks vs numpy.var): rounding ~1e-15
    assert net.evaluate(X, Y).loss == pytest.approx(losses.constant_baseline("mse", Y), rel=1e-12)
    assert losses.constant_baseline("mse", Y) == pytest.approx(Y.var(axis=0).sum() / 2, rel=1e-14)
    labels = rng.choice(3, size=200, p=[0.5, 0.3, 0.2])
    freq = numpy.bincount(labels, minlength=3) / 200
    net = _constant_network("softmax_cross_entropy", 3, numpy.log(freq))
    assert net.evaluate(X, labels).loss == pytest.approx(
        losses.constant_baseline("softmax_cross_entropy", labels, 3), rel=1e-12)
    targets = (rng.random((200, 2)) < [0.1, 0.6]).astype(float)
    p = targets.mean(axis=0)
    net = _constant_network("sigmoid_binary_cross_entropy", 2, numpy.log(p / (1 - p)))
    assert net.evaluate(X, targets).loss == pytest.approx(
        losses.constant_baseline("sigmoid_binary_cross_entropy", targets), rel=1e-12)


def test_final_line_says_when_training_is_no_better_than_the_mean(tmp_path, capsys):
    rng = numpy.random.default_rng(5)
    X, noise = rng.normal(size=(300, 2)), rng.normal(size=300)  # targets independent of the inputs
    numpy.savetxt(tmp_path / "noise.csv", numpy.c_[X, noise], delimiter=",")
    code, out, _ = run_cli(capsys, "train", "--data", tmp_path / "noise.csv", "--epochs", 1)
    final = out.strip().splitlines()[-1]
    assert code == 0 and "no better than predicting the mean" in final and "the mean predictor's" in final, final
    assert "below the first epoch" not in final and "1.0x" not in final


def test_final_line_says_how_far_below_the_mean_predictor_a_learnt_network_is():
    text = report.versus_baseline(0.01, 0.125)
    assert text == "train loss 0.01 (12.5x below the mean predictor's 0.125)"
    assert "no better than predicting the mean" in report.versus_baseline(0.1235, 0.1228)
    assert "no better than predicting the class frequencies" in \
        report.versus_baseline(1.05, 1.0986, "softmax_cross_entropy")
    assert report.versus_baseline(0.5, None) == "train loss 0.5"


# ---------------------------------------------------------------------- 6. options before any output
@pytest.mark.parametrize("argv, flag", [
    (["train", "--lr", "-1"], "--lr"), (["train", "--lr", "nan"], "--lr"), (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
])
def test_train_options_are_checked_before_any_output_and_named_by_flag(tmp_path, capsys, argv, flag):
    data = regression_csv(tmp_path / "data.csv")
    code, out, err = run_cli(capsys, *argv, "--data", data)
    assert code == 2 and out == "", out  # no data or table line first
    assert err.startswith(f"gpubackprop train: error: {flag} must be"), err


def test_predict_and_bench_options_are_named_by_flag(tmp_path, capsys):
    data = regression_csv(tmp_path / "data.csv")
    gb.MLP([2, 4, 1], backend="numpy").save(tmp_path / "m.npz")
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "m.npz", "--data", data,
                             "--target-columns", "z", "--batch-size", "0")
    assert code == 2 and out == "" and "--batch-size must be a positive int" in err, err
    code, out, err = run_cli(capsys, "bench", "--seconds", "0", "--sizes", "tiny")
    assert code == 2 and out == "" and "--seconds must be a positive number" in err, err


# ---------------------------------------------------------------------- 7. names and formats of predict
def test_predict_names_its_columns_after_the_training_targets(tmp_path, capsys):
    data = regression_csv(tmp_path / "data.csv")
    model = tmp_path / "m.npz"
    assert run_cli(capsys, "train", "--data", data, "--epochs", 1, "--save", model)[0] == 0
    assert checkpoint.read(model)["target_names"] == ["z"]
    code, out, _ = run_cli(capsys, "predict", "--model", model, "--data", data, "--target-columns", "z")
    assert code == 0 and out.splitlines()[0] == "z"
    # --init carries the names on when the new data has no header
    headerless = regression_csv(tmp_path / "plain.csv", header=None)
    assert run_cli(capsys, "train", "--data", headerless, "--epochs", 1, "--init", model, "--save", model)[0] == 0
    assert checkpoint.read(model)["target_names"] == ["z"]


def test_predict_names_classes_and_probabilities_after_the_label_column(tmp_path, capsys):
    rng = numpy.random.default_rng(2)
    X = rng.normal(size=(30, 2))
    path = tmp_path / "c.csv"
    numpy.savetxt(path, numpy.c_[X, numpy.arange(30) % 3], delimiter=",", header="u,v,kind", comments="")
    model = tmp_path / "c.npz"
    assert run_cli(capsys, "train", "--data", path, "--loss", "softmax_cross_entropy", "--epochs", 1,
                   "--save", model)[0] == 0
    for output, header in (("classes", "kind"), ("probabilities", "kind_0,kind_1,kind_2")):
        code, out, _ = run_cli(capsys, "predict", "--model", model, "--data", path, "--target-columns", "kind",
                               "--output", output)
        assert code == 0 and out.splitlines()[0] == header


def test_checkpoints_without_target_names_still_load_and_predict_y0(tmp_path, capsys):
    data = regression_csv(tmp_path / "data.csv")
    net = gb.MLP([2, 4, 1], backend="numpy", seed=0)
    net.save(tmp_path / "old.npz")  # as every release wrote them: no target_names member
    assert checkpoint.read(tmp_path / "old.npz")["target_names"] is None
    assert checkpoint.to_bytes(net) == (tmp_path / "old.npz").read_bytes()  # the bytes unchanged
    code, out, _ = run_cli(capsys, "predict", "--model", tmp_path / "old.npz", "--data", data, "--target-columns", "z")
    assert code == 0 and out.splitlines()[0] == "y0"


def test_target_names_of_the_wrong_count_are_refused_both_ways(tmp_path):
    net = gb.MLP([2, 4, 2], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="target_names must be 2"):
        checkpoint.save(net, tmp_path / "x.npz", target_names=["a", "b", "c"])
    assert not (tmp_path / "x.npz").exists()
    good = tmp_path / "good.npz"
    checkpoint.save(net, good, target_names=["a", "b"])
    assert checkpoint.read(good)["target_names"] == ["a", "b"]
    with numpy.load(good) as archive:
        members = dict(archive)
    members["target_names"] = numpy.array(["only"])
    numpy.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(gb.CheckpointError, match="target_names"):
        checkpoint.read(tmp_path / "bad.npz")


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t"), (".txt", " ")])
def test_predict_out_writes_every_text_format_with_its_delimiter(tmp_path, capsys, suffix, delimiter):
    data = regression_csv(tmp_path / "data.csv", n=8)
    model = tmp_path / "m.npz"
    net = gb.MLP([2, 4, 2], backend="numpy", dtype="float64", seed=0)
    checkpoint.save(net, model, target_names=["p", "q"])
    out = tmp_path / f"pred{suffix}"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--data", data, "--target-columns", "z", "--out", out)
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == delimiter.join(["p", "q"]) and len(lines) == 9
    written = numpy.array([[float(cell) for cell in line.split(delimiter)] for line in lines[1:]])
    X = numpy.loadtxt(data, delimiter=",", skiprows=1)[:, :2]
    assert numpy.array_equal(written, net.predict(X))  # %.17g: every digit of float64


def test_predict_out_refuses_an_unknown_suffix_before_any_work(tmp_path, capsys):
    data = regression_csv(tmp_path / "data.csv", n=8)
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "missing.npz", "--data", data,
                             "--out", tmp_path / "pred.json")
    assert code == 2 and "unknown format '.json'" in err and ".tsv" in err and out == ""


# ---------------------------------------------------------------------- 8. scikit-learn's names
def test_sklearn_learning_rate_constant_power_t_and_max_fun_are_accepted():
    need("sklearn", minversion="1.6")
    from gpubackprop.sklearn import MLPClassifier, MLPRegressor

    X = numpy.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), learning_rate="constant", power_t=0.25, max_fun=100, max_iter=2,
                        random_state=0, backend="numpy")
    with pytest.warns(Warning):  # (ConvergenceWarning: 2 epochs)
        clf.fit(X, y)
    assert clf.get_params()["learning_rate"] == "constant" and clf.get_params()["power_t"] == 0.25
    assert {"learning_rate", "power_t", "max_fun"} <= set(MLPRegressor().get_params())


@pytest.mark.parametrize("params, match", [
    ({"learning_rate": "invscaling"}, "learning_rate='invscaling' is not available"),
    ({"learning_rate": "adaptive"}, "learning_rate='adaptive' is not available"),
    ({"learning_rate": "cosine"}, "learning_rate must be 'constant'"),
    ({"power_t": -0.5}, "power_t must be"), ({"max_fun": 0}, "max_fun must be a positive int"),
])
def test_sklearn_schedules_it_does_not_have_are_refused_with_the_reason(params, match):
    need("sklearn", minversion="1.6")
    from gpubackprop.sklearn import MLPClassifier, MLPRegressor

    X = numpy.random.default_rng(0).normal(size=(20, 3))
    for estimator, y in ((MLPClassifier, (X[:, 0] > 0).astype(int)), (MLPRegressor, X[:, 1])):
        with pytest.raises(ValueError, match=match):
            estimator(backend="numpy", **params).fit(X, y)


# ---------------------------------------------------------------------- 9. whole-number epoch ticks
@pytest.mark.parametrize("epochs", [2, 3, 7])
def test_the_loss_plot_has_whole_number_epoch_ticks(epochs):
    need("matplotlib")
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    net = gb.MLP([2, 4, 3], loss="softmax_cross_entropy", backend="numpy", seed=0)
    history = net.fit(X, numpy.arange(30) % 3, epochs=epochs, validation_data=(X, numpy.arange(30) % 3))
    fig = report.loss_figure(history, "title", "softmax_cross_entropy")
    for ax in fig.axes:  # the loss and the accuracy panels
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


# ---------------------------------------------------------------------- 10. one skip reason per kind
def test_missing_torch_gives_one_short_skip_line_across_files(tmp_path):
    # torch hidden (an import that fails) wherever it is installed: its skips, from several files
    # and from marks, importorskip-style calls and module level alike, fold into one line.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    files = ["tests/test_interop.py", "tests/test_training_vs_torch.py", "tests/test_losses.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-m", "not gpu",
                           *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    torch_lines = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED") and "torch" in line]
    assert len(torch_lines) == 1, torch_lines
    assert "torch not installed" in torch_lines[0] and len(torch_lines[0]) < 120
    assert int(torch_lines[0].split("[")[1].split("]")[0]) > 3  # several tests, from more than one file
    assert done.stdout.count("pip install torch --index-url") == 1  # the install line, once, after the summary


def test_every_skip_of_the_suite_goes_through_the_one_helper():
    offenders = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text()
        for pattern in ("pytest.importorskip(", "pytest.skip(", "mark.skipif("):
            if pattern in text and path.name != "test_user_trial.py":
                offenders.append(f"{path.name}: {pattern}")
    assert not offenders, offenders  # tests/conftest.py: skip, need, missing, @pytest.mark.requires
