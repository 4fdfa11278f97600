"""The lesson's worked example (2-2-1 network, sigmoid hidden layer, one SGD step), number by number.

Two references: the values the lesson prints (4 decimals, so within 5e-5), and the exact float64
values, re-derived here with scalar ``math`` from the lesson's parameters alone, so that a bug
shared by gpubackprop.lesson and the library cannot hide.
"""
import math

import numpy
import pytest

from gpubackprop import lesson

# The lesson's parameters, copied from the text (not imported from gpubackprop).
W11, W12, B1 = 0.1, 0.3, 0.1
W21, W22, B2 = 0.2, 0.4, 0.1
V1, V2, B3 = 0.5, 0.6, 0.1
X1, X2, TARGET = 1.0, 0.5, 1.0
ALPHA = 0.5

# Every number the lesson prints, in its order, copied from the text.
LESSON_PRINTED = [
    ("z1", 0.35), ("z2", 0.50), ("a1", 0.5866), ("a2", 0.6225), ("ŷ", 0.7668), ("L", 0.0272),
    ("∂L/∂ŷ", -0.2332), ("∂L/∂v1", -0.1368), ("∂L/∂v2", -0.1452), ("∂L/∂b3", -0.2332),
    ("∂L/∂a1", -0.1166), ("∂L/∂a2", -0.1399), ("σ'(z1)", 0.2425), ("σ'(z2)", 0.2350),
    ("∂L/∂z1", -0.0283), ("∂L/∂z2", -0.0329),
    ("∂L/∂w11", -0.0283), ("∂L/∂w12", -0.0141), ("∂L/∂b1", -0.0283),
    ("∂L/∂w21", -0.0329), ("∂L/∂w22", -0.0164), ("∂L/∂b2", -0.0329),
    ("v1'", 0.5684), ("v2'", 0.6726), ("b3'", 0.2166),
    ("w11'", 0.1141), ("w12'", 0.3071), ("b1'", 0.1141),
    ("w21'", 0.2164), ("w22'", 0.4082), ("b2'", 0.1164),
]
PRINTED_TOLERANCE = 5e-5  # half a unit of the 4th decimal
EXACT_TOLERANCE = 1e-12


def exact_lesson_values():
    """The lesson's quantities in float64, by its own scalar formulas (chain rule written out)."""
    z1 = W11 * X1 + W12 * X2 + B1
    z2 = W21 * X1 + W22 * X2 + B2
    a1 = 1.0 / (1.0 + math.exp(-z1))
    a2 = 1.0 / (1.0 + math.exp(-z2))
    yhat = V1 * a1 + V2 * a2 + B3
    loss = 0.5 * (yhat - TARGET) ** 2
    d_yhat = yhat - TARGET
    d_v1, d_v2, d_b3 = d_yhat * a1, d_yhat * a2, d_yhat
    d_a1, d_a2 = d_yhat * V1, d_yhat * V2
    s1, s2 = a1 * (1 - a1), a2 * (1 - a2)
    d_z1, d_z2 = d_a1 * s1, d_a2 * s2
    d_w11, d_w12, d_b1 = d_z1 * X1, d_z1 * X2, d_z1
    d_w21, d_w22, d_b2 = d_z2 * X1, d_z2 * X2, d_z2
    values = [
        z1, z2, a1, a2, yhat, loss, d_yhat, d_v1, d_v2, d_b3, d_a1, d_a2, s1, s2, d_z1, d_z2,
        d_w11, d_w12, d_b1, d_w21, d_w22, d_b2,
        V1 - ALPHA * d_v1, V2 - ALPHA * d_v2, B3 - ALPHA * d_b3,
        W11 - ALPHA * d_w11, W12 - ALPHA * d_w12, B1 - ALPHA * d_b1,
        W21 - ALPHA * d_w21, W22 - ALPHA * d_w22, B2 - ALPHA * d_b2,
    ]
    assert len(values) == len(LESSON_PRINTED)
    return values


def test_exact_values_round_to_what_the_lesson_prints():
    # Guards the reference itself: the independent formulas reproduce the lesson's text.
    for (label, printed), exact in zip(LESSON_PRINTED, exact_lesson_values()):
        assert abs(exact - printed) <= PRINTED_TOLERANCE, (label, exact, printed)


def test_lesson_module_holds_the_lessons_numbers():
    assert lesson.PRINTED == LESSON_PRINTED
    assert lesson.TOLERANCE == PRINTED_TOLERANCE
    assert lesson.LAYER_SIZES == [2, 2, 1]
    assert lesson.LEARNING_RATE == ALPHA
    (W1, b1), (W2, b2) = lesson.params()
    numpy.testing.assert_array_equal(W1, [[W11, W12], [W21, W22]])
    numpy.testing.assert_array_equal(b1, [B1, B2])
    numpy.testing.assert_array_equal(W2, [[V1, V2]])
    numpy.testing.assert_array_equal(b2, [B3])
    numpy.testing.assert_array_equal(lesson.X, [[X1, X2]])
    numpy.testing.assert_array_equal(lesson.Y, [[TARGET]])


def test_every_printed_number_on_every_backend(backend):
    rows = lesson.run(backend, "float64")
    assert [label for label, _, _ in rows] == [label for label, _ in LESSON_PRINTED]
    for (label, computed, printed), (_, text_value) in zip(rows, LESSON_PRINTED):
        assert printed == text_value
        assert abs(computed - printed) <= PRINTED_TOLERANCE, f"{label}: {computed} vs lesson {printed}"


def test_exact_float64_values_on_every_backend(backend):
    rows = lesson.run(backend, "float64")
    for (label, computed, _), exact in zip(rows, exact_lesson_values()):
        assert computed == pytest.approx(exact, rel=0, abs=EXACT_TOLERANCE), label


def test_printed_numbers_in_float32_on_every_backend(backend):
    # float32 carries ~7 significant digits: far more than the lesson's 4 decimals.
    rows = lesson.run(backend, "float32")
    for label, computed, printed in rows:
        assert abs(computed - printed) <= PRINTED_TOLERANCE, f"{label}: {computed} vs lesson {printed}"


def test_lesson_step_through_the_public_api(backend):
    # The same step through loss_and_grads / train_step / forward, as a user would write it.
    net = lesson.network(backend, "float64")
    exact = dict(zip([label for label, _ in LESSON_PRINTED], exact_lesson_values()))
    x, y = numpy.array([[X1, X2]]), numpy.array([TARGET])  # 1-D target: one output
    yhat = backend.to_numpy(net.forward(x))
    assert yhat.shape == (1, 1)
    assert yhat[0, 0] == pytest.approx(exact["ŷ"], abs=EXACT_TOLERANCE)
    loss, ((dW1, db1), (dW2, db2)) = net.loss_and_grads(x, y)
    assert loss == pytest.approx(exact["L"], abs=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(dW2, [[exact["∂L/∂v1"], exact["∂L/∂v2"]]], rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(db2, [exact["∂L/∂b3"]], rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(
        dW1, [[exact["∂L/∂w11"], exact["∂L/∂w12"]], [exact["∂L/∂w21"], exact["∂L/∂w22"]]],
        rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(db1, [exact["∂L/∂b1"], exact["∂L/∂b2"]], rtol=0, atol=EXACT_TOLERANCE)
    # loss_and_grads changes nothing; train_step returns the loss before its update.
    assert net.train_step(x, y, ALPHA) == pytest.approx(exact["L"], abs=EXACT_TOLERANCE)
    (W1, b1), (W2, b2) = net.get_params()
    numpy.testing.assert_allclose(W2, [[exact["v1'"], exact["v2'"]]], rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(b2, [exact["b3'"]], rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(
        W1, [[exact["w11'"], exact["w12'"]], [exact["w21'"], exact["w22'"]]], rtol=0, atol=EXACT_TOLERANCE)
    numpy.testing.assert_allclose(b1, [exact["b1'"], exact["b2'"]], rtol=0, atol=EXACT_TOLERANCE)
    # The step lowered the loss, as the lesson says.
    assert net.loss_and_grads(x, y)[0] < exact["L"]
