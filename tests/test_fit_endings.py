"""Nothing fit measured or kept is lost when it ends with an error (issue 15, part 4): every exception
that escapes fit after its first epoch started carries ``history`` (the complete epochs, best_epoch as
far as known), and with patience and restore_best the network holds the best epoch's parameters
however fit ends (return, patience, epochs run out, error, Ctrl-C), with ``history.restored_best``
saying so. CPU (NumPy backend); the bit-for-bit comparisons are of copies of the same buffer."""
import numpy
import pytest

import gpubackprop as gb

N = 64


def diverging_task():
    """A linear model trained full-batch at an lr that suits one input direction and overshoots the
    other (curvature about 9: the error there grows ×1.25 an epoch from 3e-6): the validation loss
    falls for a few epochs, then rises, and the training loss overflows float32 about 230 epochs on."""
    rng = numpy.random.default_rng(0)
    X = numpy.stack([rng.normal(size=N), 3 * rng.normal(size=N)], axis=1)
    Y = 0.5 * X[:, 0] + 0.1 * X[:, 1]
    net = gb.MLP([2, 1], backend="numpy", dtype="float32", seed=0)
    net.set_params([(numpy.array([[0.0, 0.1 + 1e-6]]), numpy.zeros(1))])
    return net, X, Y


def params_bytes(net):
    return [a.tobytes() for pair in net.get_params() for a in pair]


def fit_recording(net, X, Y, **kwargs):
    """fit, with a copy of the parameters taken at the end of every epoch (on_epoch)."""
    snapshots = {}
    callback = kwargs.pop("on_epoch", None)

    def on_epoch(record):
        snapshots[record["epoch"]] = params_bytes(net)
        if callback is not None:
            callback(record)

    try:
        return net.fit(X, Y, on_epoch=on_epoch, progress=False, **kwargs), snapshots, None
    except BaseException as exc:  # noqa: B902 - Ctrl-C too: the test looks at it
        return None, snapshots, exc


def test_an_overflow_after_the_best_epoch_keeps_the_history_and_restores_the_best_parameters():
    """The issue's scenario: the validation loss is lowest early, an overflow ends fit ~230 epochs
    later; the error carries every complete epoch, and the network is at the best epoch bit for bit."""
    net, X, Y = diverging_task()
    _, snapshots, error = fit_recording(net, X, Y, epochs=1000, batch_size=N, shuffle=False, lr=0.25,
                                        validation_data=(X[:32], Y[:32]), patience=1000)
    assert isinstance(error, gb.NonFiniteLossError) and error.where == "loss"
    history = error.history
    assert isinstance(history, gb.training.History)
    assert len(history) == error.epoch - 1 == len(snapshots) > 100  # every complete epoch
    best = history.best_epoch
    assert best == 1 + int(numpy.argmin(history.val_loss)) and 1 < best < len(history) - 100
    assert history.val_loss[-1] > 1e30 * history.val_loss[best - 1]
    assert history.restored_best is True and not history.stopped_early
    assert params_bytes(net) == snapshots[best]
    assert f"set the parameters back to those of epoch {best}" in str(error) and "\n" not in str(error)


def test_without_restore_best_the_error_keeps_the_history_and_the_last_good_step():
    net, X, Y = diverging_task()
    _, snapshots, error = fit_recording(net, X, Y, epochs=1000, batch_size=N, shuffle=False, lr=0.25,
                                        validation_data=(X[:32], Y[:32]), patience=1000, restore_best=False)
    history = error.history
    assert history.best_epoch == 1 + int(numpy.argmin(history.val_loss)) and history.restored_best is False
    assert error.batch == 1 and params_bytes(net) == snapshots[len(history)]  # the epoch's one step was refused
    assert "restore_best" not in str(error)


def test_an_error_without_early_stopping_still_carries_the_history():
    net, X, Y = diverging_task()
    _, snapshots, error = fit_recording(net, X, Y, epochs=1000, batch_size=N, shuffle=False, lr=0.25)
    assert isinstance(error, gb.NonFiniteLossError)
    assert len(error.history) == len(snapshots) == error.epoch - 1
    assert error.history.best_epoch is None and error.history.restored_best is False


def small_task():
    rng = numpy.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(48, 2))
    Y = numpy.sin(X[:, 0]) + 0.1 * X[:, 1]
    return gb.MLP([2, 8, 1], backend="numpy", dtype="float64", seed=0), X, Y


@pytest.mark.parametrize("ending", ["patience", "epochs run out", "error in on_epoch", "Ctrl-C",
                                    "BatchTooLargeError", "overflow"])
def test_every_ending_leaves_the_best_epoch_in_the_network(ending, monkeypatch):
    """After epoch 3 (the best by construction) on_epoch knocks the weights off, so every later
    epoch is worse; then fit ends in each possible way."""
    net, X, Y = small_task()
    epochs = 6 if ending != "patience" else 50

    def on_epoch(record):
        if record["epoch"] == 3:
            for W in net.weights:
                W += 3.0  # in place: the next epochs start far from the best (W and b are views)
        if record["epoch"] == 5:
            if ending == "error in on_epoch":
                raise ValueError("the caller's own callback failed")
            if ending == "Ctrl-C":
                raise KeyboardInterrupt
            if ending == "BatchTooLargeError":  # as an out-of-memory in the next epoch's buffers would
                def refuse(*args, **kwargs):
                    raise gb.BatchTooLargeError("a batch of 48 rows does not fit", 48, 1 << 40)
                monkeypatch.setattr(gb.training.loop, "loss_sums", refuse)
            if ending == "overflow":
                for W in net.weights:
                    W *= 1e200  # the next step overflows float64

    history, snapshots, error = fit_recording(net, X, Y, epochs=epochs, batch_size=8, lr=0.05, seed=0,
                                              validation_data=(X, Y), patience=2 if ending == "patience" else 10,
                                              on_epoch=on_epoch)
    if ending in ("patience", "epochs run out"):
        assert error is None
        assert history.stopped_early == (ending == "patience")
    else:
        expected = {"error in on_epoch": ValueError, "Ctrl-C": gb.TrainingInterrupted,
                    "BatchTooLargeError": gb.BatchTooLargeError, "overflow": gb.NonFiniteLossError}[ending]
        assert type(error) is expected, error
        history = error.history
        assert len(history) == 5  # the complete epochs (an error in on_epoch: after its epoch was recorded)
        if ending == "Ctrl-C":
            assert error.epoch == 5 and error.restored_epoch == 3
            assert "the parameters are those of epoch 3" in str(error)
        elif ending in ("BatchTooLargeError", "overflow"):
            assert "set the parameters back to those of epoch 3" in str(error)
    assert history.best_epoch == 3
    assert history.restored_best is True
    assert params_bytes(net) == snapshots[3]


def test_the_best_epoch_last_is_not_a_restore():
    net, X, Y = small_task()
    history, snapshots, error = fit_recording(net, X, Y, epochs=3, batch_size=8, lr=0.05, seed=0,
                                              validation_data=(X, Y), patience=5)
    assert error is None and history.best_epoch == 3 and history.restored_best is False
    assert params_bytes(net) == snapshots[3]
