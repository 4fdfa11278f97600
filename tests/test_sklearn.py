"""gpubackprop.sklearn: scikit-learn's own estimator checks, its model-selection tools, pickling
(also without CuPy), and the parameters' meaning."""
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap
import warnings

import numpy
import pytest
from conftest import need

sklearn = need("sklearn", minversion="1.6")  # gpubackprop.sklearn needs scikit-learn >= 1.6
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits, make_classification, make_multilabel_classification, \
    make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpubackprop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """One BLAS thread in this process (GridSearchCV's workers get one from joblib already): on a
    busy shared CPU, OpenBLAS's threads waiting on each other made a 200x64 GEMM 100 times slower.
    Changes no result that these tests compare: each test runs with the same setting throughout."""
    threadpoolctl = need("threadpoolctl")  # a scikit-learn dependency
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


# scikit-learn's own checks, with the default parameters; none is expected to fail.
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=200 on the checks' tiny data sets
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    labels = numpy.array([f"digit-{d}" for d in y])  # string labels
    return train_test_split(X, labels, test_size=0.25, random_state=0, stratify=labels)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_over_pipeline_with_string_labels_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)]}, cv=3, n_jobs=2)
    search.fit(X_train, y_train)
    assert search.best_estimator_[-1].classes_.tolist() == sorted(set(y_train))
    assert search.score(X_test, y_test) > 0.9
    predicted = search.predict(X_test)
    assert set(predicted) <= set(y_train)
    restored = pickle.loads(pickle.dumps(search))
    numpy.testing.assert_array_equal(restored.predict(X_test), predicted)
    numpy.testing.assert_array_equal(restored.predict_proba(X_test), search.predict_proba(X_test))


def test_cross_val_score_and_clone():
    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01,
                                                         max_iter=300, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y / y.std(), cv=3)
    assert scores.shape == (3,) and numpy.all(scores > 0.3)  # scikit-learn's MLPRegressor: about 0.45 here
    est = MLPClassifier(hidden_layer_sizes=(7, 5), solver="sgd", momentum=0.5, backend="numpy", dtype="float32")
    copy = clone(est)
    assert copy.get_params() == est.get_params() and copy is not est
    assert not hasattr(copy, "classes_")


def test_pickle_predicts_identically():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=1)
    for est in (MLPClassifier(hidden_layer_sizes=(10,), max_iter=20, random_state=0, dtype="float32"),
                MLPClassifier(hidden_layer_sizes=(10,), max_iter=20, random_state=0, solver="sgd")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        restored = pickle.loads(pickle.dumps(est))
        numpy.testing.assert_array_equal(restored.predict(X), est.predict(X))
        numpy.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
        assert restored.loss_curve_ == est.loss_curve_ and restored.n_iter_ == est.n_iter_
        # The optimizer's state travels too: one more epoch continues identically.
        est.partial_fit(X, y)
        restored.partial_fit(X, y)
        numpy.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))


def _pickled_globals(data: bytes):
    """The module names that a pickle's GLOBAL / STACK_GLOBAL opcodes import."""
    modules, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            modules.add(strings[-2])
        elif opcode.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
    return modules


def test_unpickles_without_cupy_onto_numpy(tmp_path):
    """An estimator whose backend is CuPy unpickles where CuPy cannot be imported: the pickle
    holds only NumPy arrays and settings, and the network is rebuilt on NumPy with a warning.
    (Trained here on NumPy with backend="cupy" set afterwards: the state is written the same way
    for either backend, through MLP.get_params; the gpu test below trains on CuPy itself.)"""
    X, y = make_classification(n_samples=80, n_features=5, random_state=3)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    est.set_params(backend="cupy")
    data = pickle.dumps(est)
    assert not any(m.split(".")[0] == "cupy" for m in _pickled_globals(data))
    (tmp_path / "model.pkl").write_bytes(data)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "expected.npy", est.predict_proba(X))
    script = textwrap.dedent("""
        import pickle, sys, warnings
        import numpy
        sys.modules["cupy"] = None  # no CuPy on this machine: importing it raises ImportError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = pickle.loads(open(sys.argv[1] + "/model.pkl", "rb").read())
        assert est.network_.backend.name == "numpy", est.network_.backend
        assert any("unpickled onto the numpy backend" in str(w.message) for w in caught), [str(w.message) for w in caught]
        X = numpy.load(sys.argv[1] + "/X.npy")
        numpy.testing.assert_array_equal(est.predict_proba(X), numpy.load(sys.argv[1] + "/expected.npy"))
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GPUBACKPROP_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.gpu
def test_cupy_trained_estimator_unpickles_on_numpy(tmp_path):
    X, y = make_classification(n_samples=200, n_features=5, random_state=3)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, backend="cupy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert est.network_.backend.name == "cupy"
    data = pickle.dumps(est)
    assert not any(m.split(".")[0] == "cupy" for m in _pickled_globals(data))
    (tmp_path / "model.pkl").write_bytes(data)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "expected.npy", est.predict_proba(X))
    script = textwrap.dedent("""
        import pickle, sys, warnings
        import numpy
        sys.modules["cupy"] = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = pickle.loads(open(sys.argv[1] + "/model.pkl", "rb").read())
        assert est.network_.backend.name == "numpy"
        X = numpy.load(sys.argv[1] + "/X.npy")
        # Same parameters, other GEMM kernels (cuBLAS vs the CPU's BLAS): float64 rounding apart.
        numpy.testing.assert_allclose(est.predict_proba(X), numpy.load(sys.argv[1] + "/expected.npy"), rtol=0, atol=1e-12)
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_fitted_attributes_as_scikit_learn_sets_them():
    X, y = make_classification(n_samples=150, n_features=4, random_state=0)
    est = MLPClassifier(hidden_layer_sizes=(6, 5), max_iter=500, tol=1e-3, n_iter_no_change=5, random_state=0).fit(X, y)
    assert est.n_features_in_ == 4 and est.n_layers_ == 4 and est.n_outputs_ == 1
    assert est.out_activation_ == "logistic" and est.classes_.tolist() == [0, 1]
    assert est.n_iter_ == len(est.loss_curve_) < 500  # stopped by tol / n_iter_no_change
    assert est.best_loss_ == min(est.loss_curve_) and est.validation_scores_ is None
    assert est.t_ == est.n_iter_ * 150
    assert [c.shape for c in est.coefs_] == [(4, 6), (6, 5), (5, 1)]
    assert [b.shape for b in est.intercepts_] == [(6,), (5,), (1,)]
    assert est.network_.layer_sizes == [4, 6, 5, 1] and est.network_.dtype == numpy.float64
    stopped = MLPClassifier(hidden_layer_sizes=(6,), early_stopping=True, max_iter=300, random_state=0).fit(X, y)
    assert stopped.best_loss_ is None and len(stopped.validation_scores_) == stopped.n_iter_
    assert stopped.best_validation_score_ == max(stopped.validation_scores_)
    assert stopped.score(X, y) > 0.8


def test_feature_names_in():
    pandas = need("pandas")  # feature names come from pandas DataFrames
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    frame = pandas.DataFrame(X, columns=["a", "b", "c"])
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3).fit(frame, y)
    assert est.feature_names_in_.tolist() == ["a", "b", "c"]
    assert not hasattr(MLPRegressor(max_iter=3).fit(X, y), "feature_names_in_")


def test_hyperparameters_mean_the_network_settings():
    X, y = make_classification(n_samples=60, n_features=4, n_classes=3, n_informative=3, n_redundant=0, random_state=0)
    fit = lambda **kw: MLPClassifier(hidden_layer_sizes=(5,), max_iter=1, **kw).fit(X, y).network_  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = fit(solver="sgd", momentum=0.8, nesterovs_momentum=False, alpha=0.3, batch_size=20, activation="tanh")
        assert (net.optimizer.name, net.optimizer.momentum, net.optimizer.nesterov) == ("momentum", 0.8, False)
        assert net.optimizer.weight_decay == pytest.approx(0.3 / 20)  # scikit-learn's α/n per batch of n rows
        assert net.hidden_activation == "tanh" and net.loss == "softmax_cross_entropy" and net.layer_sizes == [4, 5, 3]
        net = fit(solver="adam", beta_1=0.8, beta_2=0.99, epsilon=1e-6, activation="logistic", dtype="float32")
        assert (net.optimizer.name, net.optimizer.beta1, net.optimizer.beta2, net.optimizer.eps) == ("adam", 0.8, 0.99, 1e-6)
        assert net.hidden_activation == "sigmoid" and net.dtype == numpy.float32
        assert fit(solver="sgd", momentum=0.0).optimizer.name == "sgd"


@pytest.mark.parametrize("params, message", [
    ({"solver": "lbfgs"}, "not a mini-batch method"),
    ({"activation": "identity"}, "activation='identity' is not available"),
    ({"hidden_layer_sizes": (3, 0)}, "hidden_layer_sizes must hold positive ints"),
    ({"batch_size": 0}, "batch_size must be 'auto' or a positive int"),
    ({"momentum": 1.5}, "momentum must be in"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"precision": "tf32", "dtype": "float64"}, "precision='tf32' needs dtype='float32'"),
    ({"backend": "tpu"}, "unknown backend"),
])
def test_bad_hyperparameters_are_refused_before_anything_changes(params, message):
    X, y = make_classification(n_samples=30, n_features=4, random_state=0)
    est = MLPClassifier(**params)
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)
    assert not [name for name in vars(est) if name.endswith("_") or name.startswith("_")]  # nothing fitted


def test_partial_fit_warm_start_and_labels():
    X, y = make_classification(n_samples=200, n_features=5, n_classes=3, n_informative=3, random_state=2)
    labels = numpy.array(["b", "a", "c"], dtype=object)[y]  # object-dtype strings
    est = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, labels)
    for start in range(0, 200, 50):
        est.partial_fit(X[start:start + 50], labels[start:start + 50], classes=["a", "b", "c"])
    # n_iter_ counts the epochs of the last call, as scikit-learn's; loss_curve_ and t_ go on.
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 4 and est.t_ == 200 and est.classes_.tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X[:5], numpy.array(["d"] * 5, dtype=object))
    proba = est.predict_proba(X)
    assert proba.shape == (200, 3)
    numpy.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)  # float64 softmax rows
    numpy.testing.assert_allclose(est.predict_log_proba(X), numpy.log(proba))
    numpy.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
    warm = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, labels)
        first = warm.coefs_[0]
        warm.fit(X, labels)
    assert warm.n_iter_ == 5 and len(warm.loss_curve_) == 10 and warm.t_ == 2000
    assert not numpy.array_equal(first, warm.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used"):
        warm.fit(X, numpy.where(labels == "c", "a", labels))
    # Settings changed between calls: a new network with the same parameters (and a fresh optimizer).
    before = est.coefs_
    est.set_params(solver="sgd", momentum=0.0)
    same = est.network_
    est.partial_fit(X[:1], labels[:1])
    assert est.network_ is not same and est.network_.optimizer.name == "sgd"
    assert len(est.loss_curve_) == 5 and not numpy.array_equal(before[0], est.coefs_[0])


def test_verbose_prints_the_loss_per_epoch(capsys):
    X, y = make_regression(n_samples=30, n_features=3, random_state=0)
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, verbose=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i}, loss = {loss:.8f}" for i, loss in enumerate(est.loss_curve_, 1)]


def test_regressor_loss_is_squared_error():
    X, y = make_regression(n_samples=20, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="loss must be 'squared_error'"):
        MLPRegressor(loss="poisson").fit(X, y)


def test_multilabel_classification_and_multi_output_regression():
    X, Y = make_multilabel_classification(n_samples=150, n_features=6, n_classes=4, random_state=0)
    X = StandardScaler().fit_transform(X)
    est = MLPClassifier(hidden_layer_sizes=(20,), max_iter=300, random_state=0).fit(X, Y)
    assert est.network_.loss == "sigmoid_binary_cross_entropy" and est.out_activation_ == "logistic"
    predicted, proba = est.predict(X), est.predict_proba(X)
    assert predicted.shape == proba.shape == (150, 4)
    numpy.testing.assert_array_equal(predicted, (proba > 0.5).astype(predicted.dtype))
    assert est.score(X, Y) > 0.35  # subset accuracy on its training data; scikit-learn's MLPClassifier: 0.45
    X, Y = make_regression(n_samples=120, n_features=5, n_targets=3, noise=1.0, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y / Y.std())
    assert reg.predict(X).shape == (120, 3) and reg.score(X, Y / Y.std()) > 0.9


@pytest.mark.parametrize("make", [
    lambda: (make_classification(n_samples=90, n_features=5, random_state=0), MLPClassifier, {}),
    lambda: (make_classification(n_samples=90, n_features=5, n_classes=3, n_informative=3, random_state=0),
             MLPClassifier, {}),
    lambda: (make_multilabel_classification(n_samples=90, n_features=5, n_classes=3, random_state=0), MLPClassifier, {}),
    lambda: (make_regression(n_samples=90, n_features=5, n_targets=2, random_state=0), MLPRegressor, {}),
], ids=["binary", "multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_estimator_onnx_export_reproduces_predictions(make, dtype, tmp_path):
    ort = need("onnxruntime")
    (X, y), cls, kwargs = make()
    est = cls(hidden_layer_sizes=(7,), max_iter=10, random_state=0, dtype=dtype, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    path = tmp_path / "model.onnx"
    est.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"X": X.astype(dtype)})
    # ONNX Runtime's GEMM and sigmoid round differently from NumPy's: the tolerances.
    atol = 1e-5 if dtype == "float32" else 1e-12
    if cls is MLPRegressor:
        numpy.testing.assert_allclose(outputs[0], est.predict(X), rtol=0, atol=atol)
    else:
        numpy.testing.assert_allclose(outputs[1], est.predict_proba(X), rtol=0, atol=atol)
        numpy.testing.assert_array_equal(outputs[2], est.predict(X))  # (no near-ties in these data)


def test_classifier_onnx_labels_are_strings_too(digits):
    ort = need("onnxruntime")
    X_train, X_test, y_train, _ = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_train / 16, y_train)
    session = ort.InferenceSession(est.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    _, proba, label = session.run(None, {"X": X_test / 16})
    numpy.testing.assert_allclose(proba, est.predict_proba(X_test / 16), rtol=0, atol=1e-12)
    assert label.tolist() == est.predict(X_test / 16).tolist()
    assert [o.name for o in session.get_outputs()] == ["Y", "probabilities", "label"]


def test_ctrl_c_stops_training_and_keeps_the_model(monkeypatch):
    from gpubackprop import MLP
    real_fit, calls = MLP.fit, []

    def fit(net, *args, **kwargs):  # Ctrl-C during the third epoch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(net, *args, **kwargs)

    monkeypatch.setattr(MLP, "fit", fit)
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=10).fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2 and est.predict(X).shape == (40,)
