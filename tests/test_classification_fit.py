"""fit and evaluate with classification losses: accuracy in the history, evaluate's result, early
stopping, the guarded optimizers inside fit, and the digits target (scikit-learn's bundled data)."""
import math

import numpy
import pytest
from conftest import need

import gpubackprop as gb


def blobs(n, classes=3, seed=0, spread=0.6):
    rng = numpy.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = numpy.stack([numpy.cos(2 * numpy.pi * numpy.arange(classes) / classes),
                           numpy.sin(2 * numpy.pi * numpy.arange(classes) / classes)], 1) * 2
    return centers[labels] + spread * rng.standard_normal((n, 2)), labels


def param_bytes(net):
    return b"".join(W.tobytes() + b.tobytes() for W, b in net.get_params())


def test_accuracy_in_the_history_is_the_share_of_right_predictions(backend):
    X, labels = blobs(300)
    Xv, lv = blobs(100, seed=1)
    net = gb.MLP([2, 16, 3], hidden_activation="tanh", loss="softmax_cross_entropy", optimizer="adam",
                 backend=backend, dtype="float64", seed=0)
    before = net.evaluate(X, labels)
    assert before.accuracy == numpy.mean(net.predict_classes(X) == labels)
    # One step per epoch: the epoch's training accuracy is that of the parameters before the step.
    history = net.fit(X, labels, epochs=1, batch_size=300, lr=1e-2, progress=False, validation_data=(Xv, lv))
    assert history.accuracy == [before.accuracy] and history.loss == [pytest.approx(before.loss, rel=1e-13)]
    history = net.fit(X, labels, epochs=15, batch_size=32, lr=1e-2, seed=0, progress=False, validation_data=(Xv, lv))
    assert set(history.records[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.accuracy[-1] > 0.9 and history.val_accuracy[-1] > 0.9
    result = net.evaluate(Xv, lv)
    assert history.val_accuracy[-1] == result.accuracy == numpy.mean(net.predict_classes(Xv) == lv)
    assert history.val_loss[-1] == pytest.approx(result.loss, rel=1e-13) and result.loss == float(result)


def test_evaluate_on_mse_is_the_float_it_always_was():
    X, labels = blobs(50)
    net = gb.MLP([2, 4, 3], backend="numpy", dtype="float64", seed=0)
    Y = gb.validation.one_hot(labels, 3)
    result = net.evaluate(X, Y)
    assert isinstance(result, float) and result.accuracy is None
    assert float(result) == pytest.approx(0.5 * numpy.sum((net.predict(X) - Y) ** 2) / 50, rel=1e-14)
    assert "accuracy" not in net.fit(X, Y, epochs=1, batch_size=10, lr=0.1, progress=False).records[0]


def test_binary_cross_entropy_accuracy_counts_every_output():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = (X[:, :2] > 0).astype(float)  # two independent labels per row
    net = gb.MLP([3, 8, 2], loss="sigmoid_binary_cross_entropy", optimizer="adam", backend="numpy", seed=0)
    history = net.fit(X, Y, epochs=30, batch_size=20, lr=1e-2, progress=False, validation_data=(X, Y))
    assert history.val_accuracy[-1] == numpy.mean(net.predict_classes(X) == Y) > 0.9


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_stops_and_restores_the_best_parameters(restore_best):
    rng = numpy.random.default_rng(3)
    X, Xv = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    labels, lv = rng.integers(0, 3, 40), rng.integers(0, 3, 40)  # nothing to learn: validation loss soon rises
    net = gb.MLP([5, 64, 3], hidden_activation="relu", loss="softmax_cross_entropy", optimizer="adam",
                 dtype="float64", backend="numpy", seed=0)
    history = net.fit(X, labels, epochs=200, batch_size=8, lr=1e-2, seed=0, progress=False,
                      validation_data=(Xv, lv), patience=3, restore_best=restore_best)
    assert history.stopped_early and len(history) < 200
    best = int(numpy.argmin(history.val_loss))
    assert history.best_epoch == best + 1 and len(history) == history.best_epoch + 3
    expected = history.val_loss[best] if restore_best else history.val_loss[-1]
    assert net.evaluate(Xv, lv).loss == pytest.approx(expected, rel=1e-13)  # the loss of those parameters


def test_early_stopping_needs_validation_data_and_a_positive_patience():
    net = gb.MLP([2, 3], loss="softmax_cross_entropy", backend="numpy")
    X, labels = blobs(10)
    with pytest.raises(ValueError, match="validation_data"):
        net.fit(X, labels, epochs=2, batch_size=5, lr=0.1, patience=2)
    with pytest.raises(ValueError, match="patience must be a positive int"):
        net.fit(X, labels, epochs=2, batch_size=5, lr=0.1, patience=0, validation_data=(X, labels))
    history = net.fit(X, labels, epochs=2, batch_size=5, lr=0.1, progress=False)
    assert history.best_epoch is None and not history.stopped_early


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_an_update_that_would_overflow_is_refused_in_train_step_and_fit(optimizer):
    # float64, one linear layer: residual -1e154 at inputs 100 gives gradients -1e156 and a finite
    # loss (5e307); Adam's v = (1 - b2) d² and momentum's lr·b overflow: the update check refuses.
    def start():
        net = gb.MLP([2, 1], optimizer=optimizer, dtype="float64", backend="numpy", seed=0)
        net.train_step(numpy.ones((1, 2)), numpy.zeros((1, 1)), 1e-3)  # some state to keep
        return net

    X, Y = numpy.full((1, 2), 100.0), numpy.full((1, 1), 1e154)
    lr = 1e160 if optimizer == "momentum" else 1e-3
    for call in ("train_step", "fit"):
        net = start()
        params, state = param_bytes(net), net.get_optimizer_state()
        with numpy.errstate(all="ignore"), pytest.raises(gb.NonFiniteLossError) as info:
            if call == "train_step":
                net.train_step(X, Y, lr)
            else:
                net.fit(X, Y, epochs=1, batch_size=1, lr=lr, progress=False)
        assert info.value.where == "update" and math.isfinite(info.value.loss)
        after = net.get_optimizer_state()
        assert param_bytes(net) == params
        assert after["step"] == state["step"] and after["buffers"].tobytes() == state["buffers"].tobytes()


# ---------------------------------------------------------------------- the digits target
def digits():
    datasets = need("sklearn.datasets")
    selection = need("sklearn.model_selection")
    data = datasets.load_digits()  # bundled with scikit-learn: no download
    return selection.train_test_split(data.data / 16.0, data.target, test_size=0.25, random_state=0,
                                      stratify=data.target)


def test_digits_softmax_adam_reaches_97_percent_before_mse_sgd_reaches_93():
    X_train, X_test, y_train, y_test = digits()
    net = gb.MLP([64, 64, 10], hidden_activation="relu", loss="softmax_cross_entropy", optimizer="adam",
                 backend="numpy", seed=0)
    history = net.fit(X_train, y_train, epochs=30, batch_size=32, lr=1e-2, seed=0, progress=False,
                      validation_data=(X_test, y_test))
    adam_epochs = next(i + 1 for i, acc in enumerate(history.val_accuracy) if acc >= 0.97)
    assert max(history.val_accuracy) >= 0.97 and (net.predict_classes(X_test) == y_test).mean() >= 0.97

    # One-hot MSE with SGD, at its best over learning rates and hidden activations.
    Y_train = gb.validation.one_hot(y_train, 10)
    mse_epochs = []
    for hidden, lr in [("relu", 0.1), ("relu", 0.2), ("relu", 0.3), ("sigmoid", 0.2), ("tanh", 0.1)]:
        mse = gb.MLP([64, 64, 10], hidden_activation=hidden, backend="numpy", seed=0)
        for epoch in range(1, adam_epochs + 1):  # only needs to show it is not there by then
            mse.fit(X_train, Y_train, epochs=1, batch_size=32, lr=lr, seed=epoch, progress=False)
            if (mse.predict(X_test).argmax(1) == y_test).mean() >= 0.93:
                break
        else:
            epoch = math.inf
        mse_epochs.append(epoch)
    assert adam_epochs < min(mse_epochs), (adam_epochs, mse_epochs)
