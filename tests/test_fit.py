"""MLP.fit and MLP.predict: learning, determinism, batching, chunking, allocation."""
import tracemalloc

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import training
from recorders import CountingRecorder


def sincos(n, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, 2))
    Y = numpy.sin(X[:, 0]) * numpy.cos(X[:, 1]) + 0.05 * rng.standard_normal(n)
    return X, Y


def record_steps(net):
    """Wrap the network's training step (what train_step and fit run per batch) to record
    (X copy, Y copy, loss); NumPy runs it eagerly, so the loss is in the workspace right after."""
    calls = []
    original = net.steps.step

    def step(X, Y, ws, lr, check_finite, totals=None, sync=None, clip=None, **kw):
        X_copy, Y_copy = numpy.array(X), numpy.array(Y)  # the batch buffers are reused
        original(X, Y, ws, lr, check_finite, totals, sync, clip, **kw)
        calls.append((X_copy, Y_copy, float(ws.loss)))

    net.steps.step = step
    return calls


def test_loss_decreases_on_a_learnable_task(backend):
    X, Y = sincos(2048)
    net = gb.MLP([2, 32, 32, 1], backend=backend, seed=1)
    history = net.fit(X, Y, epochs=25, batch_size=32, lr=0.2, seed=1, progress=False)
    assert len(history) == 25
    assert history.loss[-1] < history.loss[0] / 5
    assert all(numpy.isfinite(history.loss))
    for record in history:
        assert set(record) == {"epoch", "loss", "seconds", "samples_per_s"}
        assert record["seconds"] > 0 and record["samples_per_s"] > 0
    assert history["epoch"] == list(range(1, 26))


def test_same_seeds_give_identical_runs_on_cpu():
    X, Y = sincos(300)
    runs = []
    for _ in range(2):
        net = gb.MLP([2, 8, 1], backend="numpy", seed=3)
        history = net.fit(X, Y, epochs=4, batch_size=16, lr=0.3, seed=7, progress=False)
        runs.append((history.loss, net.get_params()))
    assert runs[0][0] == runs[1][0]
    for (W0, b0), (W1, b1) in zip(runs[0][1], runs[1][1]):
        numpy.testing.assert_array_equal(W0, W1)
        numpy.testing.assert_array_equal(b0, b1)
    other = gb.MLP([2, 8, 1], backend="numpy", seed=3)
    assert other.fit(X, Y, epochs=4, batch_size=16, lr=0.3, seed=8, progress=False).loss != runs[0][0]


def test_fit_is_train_step_over_the_seeded_permutation(backend):
    """fit == a hand-written loop of train_step over numpy.random.default_rng(seed) shuffles."""
    X, Y = sincos(50)
    a = gb.MLP([2, 5, 1], backend=backend, seed=2, dtype="float64")
    b = gb.MLP([2, 5, 1], backend=backend, seed=2, dtype="float64")
    history = a.fit(X, Y, epochs=3, batch_size=8, lr=0.1, seed=11, progress=False)
    rng = numpy.random.default_rng(11)
    order = numpy.arange(50)
    expected = []
    for _ in range(3):
        rng.shuffle(order)
        total = 0.0
        for start in range(0, 50, 8):
            idx = order[start:start + 8]
            total += b.train_step(X[idx], Y[idx], 0.1) * len(idx)
        expected.append(total / 50)  # the batch-size-weighted mean of the step losses
    numpy.testing.assert_allclose(history.loss, expected, rtol=1e-12)
    for (Wa, ba), (Wb, bb) in zip(a.get_params(), b.get_params()):
        numpy.testing.assert_allclose(Wa, Wb, rtol=1e-12, atol=1e-15)
        numpy.testing.assert_allclose(ba, bb, rtol=1e-12, atol=1e-15)


def test_partial_last_batch_is_used_and_every_sample_once_per_epoch():
    n = 10
    X = numpy.arange(n, dtype=numpy.float64).reshape(-1, 1)  # each row names its sample
    Y = -X[:, 0]
    net = gb.MLP([1, 3, 1], backend="numpy", dtype="float64", seed=0)
    calls = record_steps(net)
    history = net.fit(X, Y, epochs=2, batch_size=4, lr=0.01, seed=5, progress=False)
    assert [len(x) for x, _, _ in calls] == [4, 4, 2, 4, 4, 2]
    for epoch in range(2):
        rows = numpy.concatenate([x[:, 0] for x, _, _ in calls[3 * epoch:3 * epoch + 3]])
        assert sorted(rows) == list(range(n))
        targets = numpy.concatenate([y[:, 0] for _, y, _ in calls[3 * epoch:3 * epoch + 3]])
        numpy.testing.assert_array_equal(targets, -rows)  # X and Y rows gathered together
        weighted = sum(loss * len(x) for x, _, loss in calls[3 * epoch:3 * epoch + 3]) / n
        assert history.loss[epoch] == pytest.approx(weighted, rel=1e-12)
    first_epoch = numpy.concatenate([x[:, 0] for x, _, _ in calls[:3]])
    assert list(first_epoch) != list(range(n))  # shuffled


def test_no_shuffle_walks_the_data_in_order():
    X = numpy.arange(7, dtype=numpy.float64).reshape(-1, 1)
    net = gb.MLP([1, 2, 1], backend="numpy", dtype="float64", seed=0)
    calls = record_steps(net)
    net.fit(X, X, epochs=2, batch_size=3, lr=0.01, shuffle=False, progress=False)
    assert [list(x[:, 0]) for x, _, _ in calls] == [[0, 1, 2], [3, 4, 5], [6]] * 2


def test_batch_larger_than_data_is_one_batch():
    X, Y = sincos(5)
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    calls = record_steps(net)
    net.fit(X, Y, epochs=1, batch_size=64, lr=0.1, progress=False)
    assert [len(x) for x, _, _ in calls] == [5]


def test_validation_loss_is_the_end_of_epoch_loss(backend):
    X, Y = sincos(200)
    Xv, Yv = sincos(70, seed=9)
    net = gb.MLP([2, 6, 1], backend=backend, dtype="float64", seed=0)
    history = net.fit(X, Y, epochs=2, batch_size=32, lr=0.2, seed=0, progress=False, validation_data=(Xv, Yv))
    assert len(history.val_loss) == 2
    expected = 0.5 * numpy.mean((net.predict(Xv)[:, 0] - Yv) ** 2)
    assert history.val_loss[-1] == pytest.approx(expected, rel=1e-10)
    assert history["val_loss"] == history.val_loss
    assert "val_loss" in repr(history)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"lr": -1.0}, ValueError, "lr"),
    ({"validation_data": numpy.zeros((3, 2))}, TypeError, "validation_data"),
    ({"validation_data": (numpy.zeros((3, 2)), numpy.zeros(4))}, ValueError, "validation_data Y has 4 rows"),
])
def test_bad_arguments_raise_before_training(kwargs, error, match):
    X, Y = sincos(20)
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    before = net.get_params()
    args = dict(epochs=1, batch_size=4, lr=0.1, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        net.fit(X, Y, **args)
    for (W0, _), (W1, _) in zip(before, net.get_params()):
        numpy.testing.assert_array_equal(W0, W1)


def test_mismatched_rows_raise():
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="rows"):
        net.fit(numpy.zeros((10, 2)), numpy.zeros(9), epochs=1, batch_size=4, lr=0.1)


def test_predict_chunks_and_matches_forward(backend):
    X, _ = sincos(103)
    net = gb.MLP([2, 7, 3], backend=backend, dtype="float64", seed=4)
    sizes = []
    forward, forward_pass = net.forward, net.steps.forward

    def spy(batch, ws, trace=None):  # the forward pass of each chunk
        sizes.append(batch.shape[0])
        return forward_pass(batch, ws, trace)

    net.steps.forward = spy
    chunked = net.predict(X, batch_size=25)
    assert sizes == [25, 25, 25, 25, 3]
    assert isinstance(chunked, numpy.ndarray) and chunked.shape == (103, 3) and chunked.dtype == numpy.float64
    sizes.clear()
    whole = backend.to_numpy(forward(X))
    assert sizes == [103]
    numpy.testing.assert_allclose(chunked, whole, rtol=1e-12)
    sizes.clear()
    numpy.testing.assert_allclose(net.predict(X), whole, rtol=1e-12)
    assert sizes == [103]  # the default chunk is far larger than 103 rows for these widths
    with pytest.raises(ValueError, match="columns"):
        net.predict(numpy.zeros((4, 3)))


def test_predict_default_chunk_bounds_the_workspace():
    net = gb.MLP([2, 1 << 14, 1], backend="numpy", seed=0)
    assert training.evaluation.predict_chunk(net) == 256  # 2**22 elements / 16384 wide
    net = gb.MLP([2, 32, 1], backend="numpy", seed=0)
    assert training.evaluation.predict_chunk(net) == (1 << 22) // 32


def test_no_allocation_per_batch():
    """A training epoch allocates nothing per batch: tracemalloc's peak over an epoch of 33
    batches stays far below one gathered batch beyond the per-call buffers."""
    features, batch, n = 256, 256, 8 * 256 + 100  # 8 full batches of 512 KiB and a partial one
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((n, features))
    Y = rng.standard_normal((n, 1))
    net = gb.MLP([features, 4, 1], backend="numpy", dtype="float64", seed=0)
    net.fit(X, Y, epochs=1, batch_size=batch, lr=1e-3, seed=0, progress=False)  # workspaces exist now
    batch_bytes = batch * features * 8
    per_call = (n * 8  # the index permutation
                + (batch + 100) * (features + 1) * 8)  # the gather buffers, full and partial
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        net.fit(X, Y, epochs=3, batch_size=batch, lr=1e-3, seed=0, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < per_call + batch_bytes // 4, (peak - start, per_call)


def test_progress_line(capsys):
    X, Y = sincos(64)
    net = gb.MLP([2, 3, 1], backend="numpy", seed=0)
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2 100%" in err and "samples/s" in err and "loss" in err and err.endswith("\n")
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1)  # default: stderr is not a terminal here
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, progress=False)
    assert capsys.readouterr().err == ""


class FakeStream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_default_needs_a_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert training.progress_wanted(None, FakeStream(True))
    assert not training.progress_wanted(None, FakeStream(False))
    assert not training.progress_wanted(None, object())
    assert training.progress_wanted(True, FakeStream(False))
    assert not training.progress_wanted(False, FakeStream(True))
    monkeypatch.setenv("CI", "true")
    assert not training.progress_wanted(None, FakeStream(True))
    assert training.progress_wanted(True, FakeStream(True))


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_reuses_one_set_of_buffers_so_a_recorded_step_replays_for_every_batch(shuffle, monkeypatch):
    net = gb.MLP([2, 5, 1], backend="numpy", seed=0)
    recorder = net.steps.recorder = CountingRecorder()
    checked = []
    original = gb.validation.as_batch
    monkeypatch.setattr(gb.validation, "as_batch", lambda *a, **k: checked.append(a[2]) or original(*a, **k))
    X, Y = sincos(40 * 16 + 5)  # 41 batches per epoch: more than a recorder keeps keys for
    steps = record_steps(net)
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, shuffle=shuffle, seed=0, progress=False)
    assert len(steps) == 2 * 41
    # Per epoch: 32 full batches in one launch, the other 8 in another, the partial one alone;
    # the same three recordings in every epoch.
    assert training.STEPS_PER_LAUNCH == 32
    assert [key[:2] for key in recorder.keys] == [("fit", 32), ("fit", 8), ("fit", 1)] * 2
    assert len(set(recorder.keys)) == 3
    assert checked == ["X", "Y"]  # the data set is checked once, not each gathered batch again


def per_step_reference(net, X, Y, *, epochs, batch_size, lr, seed, shuffle=True):
    """fit by hand: train_step over the batches of numpy.random.default_rng(seed)'s permutations,
    the epoch loss summed as fit documents it. Returns the per-epoch losses."""
    rng = numpy.random.default_rng(seed)
    order = numpy.arange(len(X))
    losses = []
    for _ in range(epochs):
        if shuffle:
            rng.shuffle(order)
        total = 0.0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            total += net.train_step(X[idx], Y[idx], lr) * len(idx)
        losses.append(total / len(X))
    return losses


@pytest.mark.parametrize("n, batch_size", [(1000, 7), (96, 32), (5, 8), (70, 1)])
def test_fit_is_bit_identical_to_the_per_step_loop_in_float64(n, batch_size):
    """Many steps per launch (STEPS_PER_LAUNCH and its remainder, a partial batch): the same
    weights and epoch losses, bit for bit, as train_step per batch."""
    X, Y = sincos(n, seed=n)
    a = gb.MLP([2, 9, 7, 1], backend="numpy", dtype="float64", seed=4, hidden_activation="tanh")
    b = gb.MLP([2, 9, 7, 1], backend="numpy", dtype="float64", seed=4, hidden_activation="tanh")
    history = a.fit(X, Y, epochs=3, batch_size=batch_size, lr=0.05, seed=13, progress=False)
    expected = per_step_reference(b, X, Y, epochs=3, batch_size=batch_size, lr=0.05, seed=13)
    assert history.loss == expected  # floats compared exactly
    for (Wa, ba), (Wb, bb) in zip(a.get_params(), b.get_params()):
        numpy.testing.assert_array_equal(Wa, Wb)
        numpy.testing.assert_array_equal(ba, bb)


def test_fit_float32_losses_and_weights_match_the_per_step_loop():
    """float32 storage: the device accumulator sums in double, as the host loop's Python floats."""
    X, Y = sincos(300)
    a = gb.MLP([2, 16, 1], backend="numpy", seed=1)
    b = gb.MLP([2, 16, 1], backend="numpy", seed=1)
    history = a.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=2, progress=False)
    assert history.loss == per_step_reference(b, X, Y, epochs=2, batch_size=16, lr=0.1, seed=2)
    for (Wa, _), (Wb, _) in zip(a.get_params(), b.get_params()):
        numpy.testing.assert_array_equal(Wa, Wb)


@pytest.mark.parametrize("bad_batch", [1, 5, 33, 40, 41])  # first, inside a launch, after a launch, last full, partial
@pytest.mark.parametrize("bad_value", [numpy.nan, numpy.inf])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN/Inf through BLAS, on purpose
def test_sticky_guard_keeps_the_weights_of_the_last_good_step(bad_batch, bad_value, monkeypatch):
    """A non-finite value gathered into batch k of epoch 2 refuses that step and every later one
    of the epoch: the weights are those after batch k-1, and the error names epoch 2, batch k."""
    batch_size, n, seed, lr = 16, 40 * 16 + 5, 3, 0.05  # 41 batches: launches of 32 and 8 steps, the partial one
    X, Y = sincos(n)
    net = gb.MLP([2, 8, 1], backend="numpy", dtype="float64", seed=0)
    gathers = []
    gather = net.backend.gather_rows_at

    def poisoned(source, order, cursor, out):  # the data stay clean: the bad value appears in one batch only
        gather(source, order, cursor, out)
        gathers.append(None)
        if len(gathers) == 2 * (41 + bad_batch) - 1:  # X's gather of epoch 2, batch k
            out[0, 1] = bad_value

    monkeypatch.setattr(net.backend, "gather_rows_at", poisoned, raising=False)
    with pytest.raises(gb.NonFiniteLossError) as info:
        net.fit(X, Y, epochs=3, batch_size=batch_size, lr=lr, seed=seed, progress=False)
    assert info.value.epoch == 2 and info.value.batch == bad_batch
    assert f"epoch 2, batch {bad_batch} of 41" in str(info.value)
    assert info.value.where == "loss" if bad_value != bad_value else info.value.where in ("loss", "gradients")
    monkeypatch.undo()
    reference = gb.MLP([2, 8, 1], backend="numpy", dtype="float64", seed=0)
    per_step_reference(reference, X, Y, epochs=1, batch_size=batch_size, lr=lr, seed=seed)
    order_rng, order = numpy.random.default_rng(seed), numpy.arange(n)
    order_rng.shuffle(order)
    order_rng.shuffle(order)  # epoch 2's permutation
    for start in range(0, (bad_batch - 1) * batch_size, batch_size):
        idx = order[start:start + batch_size]
        reference.train_step(X[idx], Y[idx], lr)
    for (Wa, ba), (Wb, bb) in zip(net.get_params(), reference.get_params()):
        numpy.testing.assert_array_equal(Wa, Wb)
        numpy.testing.assert_array_equal(ba, bb)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_sticky_guard_on_a_finite_loss_with_non_finite_gradients():
    """An Inf input behind a saturated sigmoid: the loss stays finite, a gradient is not."""
    X = numpy.full((8, 1), 0.5)
    Y = numpy.zeros(8)
    X[2, 0] = numpy.inf
    net = gb.MLP([1, 2, 1], backend="numpy", dtype="float64", seed=0)
    before = net.get_params()
    with pytest.raises(gb.NonFiniteLossError, match="epoch 1, batch 2 of 4") as info:
        net.fit(X, Y, epochs=1, batch_size=2, lr=0.1, shuffle=False, progress=False)
    assert info.value.batch == 2
    after_one = gb.MLP([1, 2, 1], backend="numpy", dtype="float64", seed=0)
    after_one.train_step(X[:2], Y[:2], 0.1)
    for (Wa, _), (Wb, _), (W0, _) in zip(net.get_params(), after_one.get_params(), before):
        numpy.testing.assert_array_equal(Wa, Wb)
        assert not numpy.array_equal(Wa, W0)  # batch 1 was applied


def test_progress_reads_between_launches(monkeypatch, capsys):
    """The progress line reads the device totals only when it redraws, between launches: each
    read shows the mean loss of the batches done so far."""
    X, Y = sincos(40 * 16)
    net = gb.MLP([2, 4, 1], backend="numpy", dtype="float64", seed=0)
    reads = []
    to_host = net.backend.to_host
    monkeypatch.setattr(net.backend, "to_host", lambda array, out: reads.append(1) or to_host(array, out),
                        raising=False)
    monkeypatch.setattr(training.ProgressLine, "due", lambda self: True)  # redraw after every launch
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=0, progress=True)
    assert len(reads) == 2 * (2 + 1)  # per epoch: after each of its 2 launches, and the epoch's end
    err = capsys.readouterr().err
    assert "epoch 1/2  80%" in err and "epoch 2/2 100%" in err  # 32 of 40 batches after the first launch
    reads.clear()
    monkeypatch.setattr(training.ProgressLine, "due", lambda self: False)
    net.fit(X, Y, epochs=2, batch_size=16, lr=0.1, seed=0, progress=True)
    assert len(reads) == 2  # one read per epoch


def test_fit_called_again_reuses_its_buffers_and_so_its_recordings():
    """fit one epoch at a time (a common loop) replays the same recorded launches: the network
    keeps fit's device buffers, whose addresses are part of the recording keys."""
    net = gb.MLP([2, 5, 1], backend="numpy", seed=0)
    recorder = net.steps.recorder = CountingRecorder()
    X, Y = sincos(100)
    X, Y = X.astype(numpy.float32), Y.astype(numpy.float32).reshape(-1, 1)  # used as they are: no copy per fit
    net.fit(X, Y, epochs=1, batch_size=16, lr=0.1, seed=0, progress=False)
    first = list(recorder.keys)
    recorder.keys.clear()
    net.fit(X, Y, epochs=1, batch_size=16, lr=0.1, seed=1, progress=False)
    assert recorder.keys == first
    net.fit(X[:50], Y[:50], epochs=1, batch_size=16, lr=0.1, seed=1, progress=False)  # another size: new buffers
    assert net.steps.fit_state[0] == 50
