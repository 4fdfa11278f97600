"""Targets checked by kind before anything changes (fit, evaluate, validation data; train_step makes
no pass over the data), every cast encoding alike for every loss, and validation data held to the
training data's rules (issue 15, parts 2 and 3). CPU (NumPy backend): the checks are array methods
that run on a CuPy array's device the same way."""
import math

import numpy
import pytest

import gpubackprop as gb
from gpubackprop import validation

N = 12


def data(outputs=1, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    labels = rng.integers(0, max(outputs, 2), N)
    return X, labels


def snapshot(net):
    return [a.tobytes() for pair in net.get_params() for a in pair], net.get_optimizer_state()["buffers"].tobytes()


def bce(outputs=1):
    return gb.MLP([3, 4, outputs], loss="sigmoid_binary_cross_entropy", optimizer="adam", dtype="float64",
                  backend="numpy", seed=0)


def softmax(classes=3):
    return gb.MLP([3, 4, classes], loss="softmax_cross_entropy", optimizer="adam", dtype="float64", backend="numpy",
                  seed=0)


# ---------------------------------------------------------------- binary cross-entropy: targets in [0, 1]
BAD_BINARY = [  # (targets from 0/1 labels, where the first bad one is, its value as written)
    ("svm -1/+1", lambda y: 2.0 * y - 1, None, "-1.0"),
    ("a 2.0", lambda y: numpy.where(numpy.arange(N) == 5, 2.0, y), 5, "2.0"),
    ("a -0.5", lambda y: numpy.where(numpy.arange(N) == 7, -0.5, y.astype(float)), 7, "-0.5"),
    ("int 2", lambda y: numpy.where(numpy.arange(N) == 4, 2, y), 4, "2"),
    ("nan", lambda y: numpy.where(numpy.arange(N) == 3, math.nan, y), 3, "nan"),
]


@pytest.mark.parametrize("case, make, index, value", BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
@pytest.mark.parametrize("entry", ["fit", "evaluate", "validation_data"])
def test_binary_cross_entropy_targets_outside_0_1_are_refused_naming_the_first(case, make, index, value, entry):
    X, y = data()
    Y = make(y)
    index = int(numpy.argmax(y == 0)) if index is None else index  # -1/+1: the first 0 label became -1
    net = bce()
    before = snapshot(net)
    name = "validation_data Y" if entry == "validation_data" else "Y"
    with pytest.raises(ValueError) as info:
        if entry == "fit":
            net.fit(X, Y, epochs=2, batch_size=4, lr=0.1, progress=False)
        elif entry == "evaluate":
            net.evaluate(X, Y)
        else:
            net.fit(X, y, epochs=2, batch_size=4, lr=0.1, progress=False, validation_data=(X, Y))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}[{index}] is {value}"), message
    if entry == "validation_data" and value == "nan":  # validation data: first held to the training data's rules
        assert "must be finite" in message
    else:
        assert "[0, 1]" in message and "sigmoid_binary_cross_entropy" in message
    if case == "svm -1/+1":
        assert "(Y + 1) / 2" in message
    assert snapshot(net) == before


def test_binary_cross_entropy_rows_name_row_and_column():
    X, _ = data()
    Y = numpy.zeros((N, 2))
    Y[6, 1] = 1.5
    with pytest.raises(ValueError, match=r"^Y\[6, 1\] is 1\.5, but loss 'sigmoid_binary_cross_entropy'"):
        bce(2).fit(X, Y, epochs=1, progress=False)


def test_train_step_makes_no_pass_over_the_target_values(monkeypatch):
    """train_step's promise (checks on shapes and dtypes only): the value check is fit's and evaluate's."""
    def refuse(*args, **kwargs):
        raise AssertionError("train_step passed over the targets")

    monkeypatch.setattr(validation, "check_target_values", refuse)
    monkeypatch.setattr(validation, "check_finite", refuse)
    X, y = data()
    net = bce()
    assert math.isfinite(net.train_step(X, y, 0.1))
    with pytest.raises(AssertionError, match="passed over"):  # and fit does call it
        net.fit(X, y, epochs=1, progress=False)


# ---------------------------------------------------------------- softmax: labels or probability rows
@pytest.mark.parametrize("rows, where, match", [
    (numpy.tile([2.0, -1.0, 0.0], (N, 1)), "Y[0, 0] is 2.0", "values in [0, 1]"),
    (numpy.tile([0.5, 0.5, 0.0], (N, 1)) - numpy.eye(3)[[2] * N] * 0.25, "Y[0, 2] is -0.25", "values in [0, 1]"),
    (numpy.eye(3)[[0, 1, 2] * 4] + numpy.eye(3)[[1, 2, 0] * 4], "Y[0] sums to 2.0", "sigmoid_binary_cross_entropy"),
    (numpy.full((N, 3), 0.25), "Y[0] sums to 0.75", "sum to 1"),
    (numpy.where(numpy.arange(N)[:, None] == 9, 0.5, numpy.eye(3)[[0] * N]), "Y[9] sums to 1.5", "sum to 1"),
])
@pytest.mark.parametrize("entry", ["fit", "evaluate"])
def test_softmax_probability_rows_must_be_distributions(rows, where, match, entry):
    """A negative target makes the cross-entropy unbounded below; a row that is not a distribution
    is not what the loss means (several labels per row: the binary loss)."""
    X, _ = data(3)
    net = softmax()
    before = snapshot(net)
    with pytest.raises(ValueError) as info:
        if entry == "fit":
            net.fit(X, rows, epochs=1, batch_size=4, lr=0.1, progress=False)
        else:
            net.evaluate(X, rows)
    assert str(info.value).startswith(where) and match in str(info.value), str(info.value)
    assert snapshot(net) == before


def test_softmax_probability_rows_rounded_in_float32_are_accepted():
    """Rows computed in float32 (a softmax, label smoothing) sum to 1 only to float32's rounding."""
    rng = numpy.random.default_rng(1)
    X, labels = data(10)
    z = rng.normal(size=(N, 10)).astype(numpy.float32) * 3
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    soft = e / e.sum(axis=1, keepdims=True)  # float32 rows
    smooth = (0.9 * numpy.eye(10, dtype=numpy.float32)[labels] + numpy.float32(0.1 / 10)).astype(numpy.float32)
    net = softmax(10)
    for rows in (soft, smooth, soft.astype(numpy.float64), smooth.astype(numpy.float16)):
        assert abs(rows.astype(numpy.float64).sum(axis=1) - 1).max() > 0 or rows.dtype == numpy.float64
        assert math.isfinite(net.evaluate(X, rows))
        net.fit(X, rows, epochs=1, batch_size=4, lr=0.01, progress=False)


# ---------------------------------------------------------------- every cast encoding, every loss
def encodings(loss, outputs):
    """(name, targets) pairs that mean the same targets, as the README says they are cast."""
    rng = numpy.random.default_rng(3)
    labels = rng.integers(0, outputs if loss == "softmax_cross_entropy" else 2, N)
    labels[:2] = [0, 1]
    if loss == "softmax_cross_entropy":
        base = labels.astype(numpy.float64)  # whole floats are labels
        one_d = {"int64": labels, "int32": labels.astype(numpy.int32), "uint8": labels.astype(numpy.uint8),
                 "float32": labels.astype(numpy.float32)}
        if outputs == 2:
            one_d["bool"] = labels.astype(bool)
        rows = numpy.eye(outputs)[labels]
        two_d = {"rows int64": rows.astype(numpy.int64), "rows bool": rows.astype(bool),
                 "rows uint8": rows.astype(numpy.uint8), "rows float16": rows.astype(numpy.float16),
                 "rows float64": rows}
        return base, {**one_d, **two_d}
    base = (labels.astype(numpy.float64) if outputs == 1 else
            numpy.stack([labels, 1 - labels], axis=1).astype(numpy.float64))
    return base, {"int64": base.astype(numpy.int64), "int32": base.astype(numpy.int32),
                  "uint8": base.astype(numpy.uint8), "bool": base.astype(bool), "float16": base.astype(numpy.float16),
                  "float32": base.astype(numpy.float32)}


@pytest.mark.parametrize("loss, outputs", [("mse", 1), ("mse", 2), ("sigmoid_binary_cross_entropy", 1),
                                           ("sigmoid_binary_cross_entropy", 2), ("softmax_cross_entropy", 2),
                                           ("softmax_cross_entropy", 3)])
def test_every_cast_encoding_behaves_the_same_for_every_loss(loss, outputs):
    """0/1 values and labels are exact in every dtype, so each encoding gives the float64 targets'
    loss and the same trained weights, bit for bit (the same arithmetic after the cast)."""
    X, _ = data()
    base, variants = encodings(loss, outputs)

    def run(Y):
        net = gb.MLP([3, 4, outputs], loss=loss, dtype="float64", backend="numpy", seed=0)
        value = float(net.evaluate(X, Y))
        net.fit(X, Y, epochs=2, batch_size=5, lr=0.1, seed=0, progress=False, validation_data=(X, Y))
        net.train_step(X, Y, 0.1)
        return value, [a.tobytes() for pair in net.get_params() for a in pair]

    expected = run(base)
    for name, Y in variants.items():
        assert run(Y) == expected, name


# ---------------------------------------------------------------- what fits, when Y is of the wrong kind
@pytest.mark.parametrize("dtype", ["int64", "uint8", "float64"])
@pytest.mark.parametrize("entry", ["fit", "train_step", "evaluate"])
def test_integer_labels_for_an_mse_network_say_what_fits(dtype, entry):
    X = numpy.random.default_rng(0).normal(size=(1797, 3))
    y = (numpy.arange(1797) % 10).astype(dtype)  # digits-like labels
    net = gb.MLP([3, 8, 10], backend="numpy", seed=0)
    with pytest.raises(ValueError) as info:
        if entry == "fit":
            net.fit(X, y, epochs=1, progress=False)
        elif entry == "train_step":
            net.train_step(X, y, 0.1)
        else:
            net.evaluate(X, y)
    message = str(info.value)
    assert "reshape(1, -1)" not in message  # 1797 samples are not one sample
    assert "loss='softmax_cross_entropy'" in message and "numpy.eye(10)" in message, message
    assert "(1797,)" in message and "\n" not in message


def test_labels_for_a_multi_output_binary_network_say_what_fits():
    X, labels = data(3)
    with pytest.raises(ValueError, match=r"loss='softmax_cross_entropy'.*numpy\.eye\(3\)\[Y\]"):
        bce(3).fit(X, labels, epochs=1, progress=False)


def test_one_value_per_row_that_are_not_labels_and_one_sample_keep_their_messages():
    X, _ = data()
    net = gb.MLP([3, 4, 3], backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"one value per row, but the network has 3 outputs$"):
        net.fit(X, numpy.linspace(0, 1, N), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"for one sample use Y\.reshape\(1, -1\)"):
        net.train_step(X[:1], numpy.ones(3), 0.1)


@pytest.mark.parametrize("loss, outputs", [("mse", 1), ("mse", 3), ("softmax_cross_entropy", 3),
                                           ("sigmoid_binary_cross_entropy", 1)])
@pytest.mark.parametrize("kind", ["str", "bytes", "object"])
def test_string_labels_say_how_to_encode_them(loss, outputs, kind):
    X, _ = data()
    words = numpy.array(["cat", "dog", "bird"] * (N // 3))
    y = {"str": words, "bytes": words.astype(bytes), "object": words.astype(object)}[kind]
    net = gb.MLP([3, 4, outputs], loss=loss, backend="numpy", seed=0)
    for call in (lambda: net.fit(X, y, epochs=1, progress=False), lambda: net.train_step(X, y, 0.1),
                 lambda: net.evaluate(X, y), lambda: net.fit(X, numpy.eye(outputs)[numpy.arange(N) % outputs], validation_data=(X, y))):
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert "holds strings" in message and "numpy.unique" in message and "LabelEncoder" in message, message
        assert "\n" not in message


# ---------------------------------------------------------------- validation data: the training data's rules
@pytest.mark.parametrize("which, index, bad", [("X", (4, 1), math.nan), ("X", (0, 2), math.inf),
                                               ("Y", (7,), math.nan), ("Y", (2,), -math.inf)])
def test_non_finite_validation_data_is_refused_up_front(which, index, bad):
    X, y = data()
    X_val, y_val = X.copy(), y.astype(float)
    (X_val if which == "X" else y_val)[index] = bad
    net = gb.MLP([3, 4, 1], optimizer="adam", dtype="float64", backend="numpy", seed=0)
    before = snapshot(net)
    epochs = []
    with pytest.raises(ValueError) as info:
        net.fit(X, y, epochs=3, batch_size=4, lr=0.1, progress=False, validation_data=(X_val, y_val), patience=2,
                on_epoch=epochs.append)
    where = ", ".join(map(str, index))
    assert str(info.value).startswith(f"validation_data {which}[{where}] is {bad!r}: the data must be finite")
    assert epochs == [] and snapshot(net) == before  # refused before any step


def test_a_non_finite_validation_loss_on_finite_data_ends_fit_naming_it():
    """Finite validation inputs so large that the network's outputs overflow the loss (float32:
    (1e30)² is Inf): the first such epoch ends fit, instead of a NaN/Inf val_loss that early
    stopping cannot compare."""
    X, y = data()
    X_val = numpy.full((4, 3), 1e30)
    net = gb.MLP([3, 1], backend="numpy", seed=0)
    with pytest.raises(gb.NonFiniteLossError) as info:
        net.fit(X, y, epochs=3, progress=False, validation_data=(X_val, numpy.zeros(4)), patience=2)
    error = info.value
    assert error.where == "validation" and error.epoch == 1 and error.batch is None
    assert str(error).startswith("epoch 1: the validation loss is inf")
    assert len(error.history) == 0
