"""fit's defaults (1 epoch, batches of 32, lr 0.01), its per-epoch callback, and Ctrl-C: fit ends
at a step boundary with TrainingInterrupted (a KeyboardInterrupt) holding the complete epochs."""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop import training


def data(rows=100, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(rows, 2))
    return X, numpy.sin(X[:, :1]) * numpy.cos(X[:, 1:])


def param_bytes(net):
    return [array.tobytes() for pair in net.get_params() for array in pair]


def test_fit_defaults_are_one_epoch_of_batches_of_32_at_lr_0_01(backend):
    X, Y = data()
    by_default = gb.MLP([2, 8, 1], backend=backend, seed=0)
    explicit = gb.MLP([2, 8, 1], backend=backend, seed=0)
    history = by_default.fit(X, Y, seed=1, progress=False)
    assert len(history) == 1
    explicit.fit(X, Y, epochs=1, batch_size=32, lr=0.01, seed=1, progress=False)
    assert param_bytes(by_default) == param_bytes(explicit)
    other = gb.MLP([2, 8, 1], backend=backend, seed=0)
    other.fit(X, Y, epochs=1, batch_size=16, lr=0.01, seed=1, progress=False)
    assert param_bytes(other) != param_bytes(explicit)  # the batch size does matter
    assert (training.DEFAULT_EPOCHS, training.DEFAULT_BATCH_SIZE, training.DEFAULT_LR) == (1, 32, 0.01)


def test_on_epoch_sees_each_record_as_its_epoch_ends():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    seen = []

    def on_epoch(record):
        seen.append((dict(record), param_bytes(net)))

    history = net.fit(X, Y, epochs=3, lr=0.1, progress=False, validation_data=data(20, 1), on_epoch=on_epoch)
    assert [record for record, _ in seen] == history.records
    assert seen[0][1] != seen[1][1] != seen[2][1]  # called between epochs, not all at the end
    assert seen[2][1] == param_bytes(net)


def test_keyboard_interrupt_mid_epoch_ends_fit_at_a_step_boundary(monkeypatch):
    X, Y = data(rows=320)  # 10 batches of 32 per epoch, in launches of up to STEPS_PER_LAUNCH steps
    reference = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    reference.fit(X, Y, epochs=1, lr=0.1, seed=3, progress=False)  # what one complete epoch gives

    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    steps = []
    original = net.steps.fit_step

    def step_then_maybe_interrupt(*args):
        if len(steps) == 13:  # the 4th step of epoch 2: Ctrl-C arrives between two steps
            raise KeyboardInterrupt
        original(*args)
        steps.append(1)

    monkeypatch.setattr(net.steps, "fit_step", step_then_maybe_interrupt)
    with pytest.raises(gb.TrainingInterrupted) as info:
        net.fit(X, Y, epochs=5, lr=0.1, seed=3, progress=False)
    error = info.value
    assert isinstance(error, KeyboardInterrupt)
    assert error.epoch == 2 and len(error.history) == 1 and "epoch 2" in str(error)
    # the parameters are those after the 13th complete step: replay 13 steps on a fresh net
    replay = gb.MLP([2, 8, 1], backend="numpy", seed=0)
    replay.fit(X, Y, epochs=1, lr=0.1, seed=3, progress=False)
    assert param_bytes(replay) == param_bytes(reference)
    rng = numpy.random.default_rng(3)
    order = numpy.arange(320)
    rng.shuffle(order)  # epoch 1's order
    rng.shuffle(order)  # epoch 2's order
    for k in range(3):
        batch = order[32 * k:32 * (k + 1)]
        replay.train_step(X[batch], Y[batch], 0.1)
    assert param_bytes(net) == param_bytes(replay)
    # and the network is usable afterwards
    monkeypatch.undo()
    assert len(net.fit(X, Y, epochs=1, lr=0.1, progress=False)) == 1


def test_keyboard_interrupt_from_on_epoch_keeps_that_epoch_in_the_history():
    X, Y = data()
    net = gb.MLP([2, 8, 1], backend="numpy", seed=0)

    def on_epoch(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(gb.TrainingInterrupted) as info:
        net.fit(X, Y, epochs=4, progress=False, on_epoch=on_epoch)
    assert info.value.epoch == 2 and len(info.value.history) == 2


def test_ctrl_c_inside_a_step_is_held_until_the_step_is_done(monkeypatch):
    """A real SIGINT arriving inside Adam's update, after the parameters and moments are written
    and before the step count advances: the step still completes, so the parameters, both moments
    and the step count all agree with 5 whole steps."""
    import signal

    from gpubackprop.optimizers.adam import Adam

    rng = numpy.random.default_rng(0)
    X, Y = rng.normal(size=(64, 3)), rng.normal(size=(64, 1))
    make = lambda: gb.MLP([3, 8, 1], optimizer="adam", dtype="float64", backend="numpy", seed=0)  # noqa: E731
    reference = make()
    reference.fit(X[:40], Y[:40], epochs=1, batch_size=8, lr=0.01, shuffle=False, progress=False)  # 5 steps

    net, calls = make(), []
    original = Adam.numpy_step

    def candidate_then_sigint(self, *args):
        original(self, *args)  # the check pass (odd calls) or the update (even calls)
        calls.append(None)
        if len(calls) == 10:  # the 5th step's update: parameters, m, v written, the step count not yet
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Adam, "numpy_step", candidate_then_sigint)
    with pytest.raises(gb.TrainingInterrupted):
        net.fit(X, Y, epochs=1, batch_size=8, lr=0.01, shuffle=False, progress=False)
    assert len(calls) == 10  # nothing ran after the step the signal came in
    for (W, b), (W_ref, b_ref) in zip(net.get_params(), reference.get_params()):
        numpy.testing.assert_array_equal(W, W_ref)
        numpy.testing.assert_array_equal(b, b_ref)
    state, state_ref = net.get_optimizer_state(), reference.get_optimizer_state()
    assert state["step"] == state_ref["step"] == 5
    numpy.testing.assert_array_equal(state["buffers"], state_ref["buffers"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back as it was
