"""Callbacks that act: on_epoch can stop training, EarlyStopping watches any metric with min_delta,
and the history's epoch numbers continue across fit calls."""
import numpy
import pytest

import gpubackprop as gb


def data(rows=64, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(rows, 2))
    return X, numpy.sin(X[:, :1]) * numpy.cos(X[:, 1:])


def test_on_epoch_returning_true_stops_training():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    history = net.fit(X, Y, epochs=10, lr=0.1, progress=False, on_epoch=lambda record: record["epoch"] == 3)
    assert len(history) == 3 and history.stopped_early and net.epochs_trained == 3
    # only True stops: a callback returning something else (e.g. print's None, a list's append) does not
    history = net.fit(X, Y, epochs=2, lr=0.1, progress=False, on_epoch=lambda record: "yes")
    assert len(history) == 2 and not history.stopped_early


def test_epoch_numbers_continue_across_fit_calls():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    assert net.fit(X, Y, epochs=2, progress=False)["epoch"] == [1, 2]
    assert net.fit(X, Y, epochs=3, progress=False)["epoch"] == [3, 4, 5]


def test_early_stopping_watches_any_metric_with_min_delta():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    # The training loss falls each epoch, but by less than min_delta = 1: no epoch after the
    # first counts as better, so patience 2 stops at epoch 3 and the best stays epoch 1.
    stop = gb.EarlyStopping("loss", patience=2, min_delta=1.0, restore_best=False)
    history = net.fit(X, Y, epochs=20, lr=0.05, progress=False, callbacks=[stop])
    assert len(history) == 3 and history.best_epoch == 1 and history.stopped_early
    assert history.loss[2] < history.loss[0]
    # min_delta 0: every falling epoch is an improvement, training runs to the end.
    history = net.fit(X, Y, epochs=5, lr=0.05, progress=False, callbacks=[gb.EarlyStopping("loss", patience=1)])
    assert len(history) == 5 and not history.stopped_early and history.best_epoch == 8


def test_early_stopping_on_accuracy_maximises_and_restores_the_best_parameters():
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    labels = (X[:, 0] > 0).astype(numpy.int64)
    net = gb.MLP([2, 8, 2], loss="softmax_cross_entropy", backend="numpy", seed=0, optimizer="adam")
    best = {}
    record_params = gb.Callback()
    record_params.on_epoch = lambda record, history: best.__setitem__(record["epoch"], net.get_params()[0][0].copy())
    stop = gb.EarlyStopping("val_accuracy", patience=2)
    history = net.fit(X, labels, epochs=40, lr=0.5, progress=False, validation_data=(X[:50], labels[:50]),
                      callbacks=[record_params, stop])
    column = history.val_accuracy
    assert history.best_epoch == 1 + column.index(max(column))  # "auto": accuracy is maximised
    assert (net.get_params()[0][0] == best[history.best_epoch]).all()


def test_early_stopping_checks_its_metric_before_training():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="pass validation_data"):
        net.fit(X, Y, progress=False, callbacks=[gb.EarlyStopping("val_loss")])
    with pytest.raises(ValueError, match="'accuracy', which the history will not hold"):
        net.fit(X, Y, progress=False, callbacks=[gb.EarlyStopping("accuracy")])
    with pytest.raises(ValueError, match="min_delta"):
        gb.EarlyStopping("loss", min_delta=-1)
    with pytest.raises(TypeError, match="callbacks must be"):
        net.fit(X, Y, progress=False, callbacks=[print])
    assert net.epochs_trained == 0
