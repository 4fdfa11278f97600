"""The classification losses: parity with PyTorch (float64, 1e-12), numerics at extreme logits,
label checking, probabilities/classes, and the accuracy count. CPU; the kernels: tests/test_classify_gpu.py."""
import numpy
import pytest
from conftest import missing

import gpubackprop as gb
from gpubackprop.backends import get_backend

try:  # the live parity tests need PyTorch; the stored torch values are checked without it (test_torch_reference.py)
    import torch
except ImportError:
    torch = None
F = None if torch is None else torch.nn.functional
needs_torch = pytest.mark.requires(missing("torch"))  # (live parity; the stored torch values are checked anyway)
CPU = get_backend("numpy")
TOL = 1e-12


def run_loss(name, z, y):
    """(loss, grad, correct) from the NumPy backend's fused loss."""
    grad, loss, correct = numpy.empty_like(z), numpy.empty((), z.dtype), numpy.empty((), z.dtype)
    CPU.loss_grad(name, z, y, grad, loss, correct, {})
    return float(loss), grad, float(correct)


def torch_reference(fn, z, y):
    zt = torch.tensor(z, requires_grad=True)
    loss = fn(zt, y)
    loss.backward()
    return loss.item(), zt.grad.numpy()


@needs_torch
@pytest.mark.parametrize("rows, classes", [(1, 2), (7, 5), (64, 10), (3, 300)])
def test_softmax_cross_entropy_equals_torch_with_labels_and_probabilities(rng, rows, classes):
    z = rng.normal(0, 3, (rows, classes))
    labels = rng.integers(0, classes, rows)
    probs = rng.dirichlet(numpy.ones(classes), rows)
    for targets, torch_targets in ((gb.validation.one_hot(labels, classes), torch.tensor(labels)),
                                   (probs, torch.tensor(probs))):
        loss, grad, _ = run_loss("softmax_cross_entropy", z, targets)
        ref_loss, ref_grad = torch_reference(lambda zt, _: F.cross_entropy(zt, torch_targets), z, targets)
        assert loss == pytest.approx(ref_loss, abs=TOL, rel=TOL)
        numpy.testing.assert_allclose(grad, ref_grad, rtol=0, atol=TOL)


@needs_torch
def test_softmax_cross_entropy_gradient_is_exact_for_rows_that_do_not_sum_to_one(rng):
    z, y = rng.normal(size=(6, 4)), rng.uniform(0, 1, (6, 4))  # Σ y ≠ 1: still the loss's gradient
    loss, grad, _ = run_loss("softmax_cross_entropy", z, y)
    ref_loss, ref_grad = torch_reference(lambda zt, _: F.cross_entropy(zt, torch.tensor(y)), z, y)
    assert loss == pytest.approx(ref_loss, abs=TOL)
    numpy.testing.assert_allclose(grad, ref_grad, rtol=0, atol=TOL)


@needs_torch
@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (16, 5)])
def test_sigmoid_binary_cross_entropy_equals_torch(rng, shape):
    z, y = rng.normal(0, 4, shape), rng.uniform(0, 1, shape)
    y[0] = numpy.round(y[0])  # hard 0/1 targets too
    loss, grad, _ = run_loss("sigmoid_binary_cross_entropy", z, y)
    ref_loss, ref_grad = torch_reference(
        lambda zt, _: F.binary_cross_entropy_with_logits(zt, torch.tensor(y), reduction="sum") / shape[0], z, y)
    assert loss == pytest.approx(ref_loss, abs=TOL, rel=TOL)
    numpy.testing.assert_allclose(grad, ref_grad, rtol=0, atol=TOL)


@needs_torch
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_network_gradients_equal_torch_autograd(rng, loss):
    sizes = [5, 7, 4]
    net = gb.MLP(sizes, hidden_activation="tanh", loss=loss, dtype="float64", backend="numpy", seed=2)
    X = rng.normal(size=(11, 5))
    Y = rng.integers(0, 4, 11) if loss == "softmax_cross_entropy" else rng.uniform(0, 1, (11, 4))
    value, grads = net.loss_and_grads(X, Y)
    params = [torch.tensor(a, requires_grad=True) for pair in net.get_params() for a in pair]
    h = torch.tanh(F.linear(torch.tensor(X), params[0], params[1]))
    z = F.linear(h, params[2], params[3])
    if loss == "softmax_cross_entropy":
        ref = F.cross_entropy(z, torch.tensor(Y))
    else:
        ref = F.binary_cross_entropy_with_logits(z, torch.tensor(Y), reduction="sum") / 11
    ref.backward()
    assert value == pytest.approx(ref.item(), abs=TOL)
    for ours, theirs in zip([g for pair in grads for g in pair], params):
        numpy.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype, big", [("float32", 1e4), ("float64", 1e300)])
def test_extreme_logits_give_finite_exact_losses_and_only_the_documented_underflow(dtype, big):
    z = numpy.array([[big, -big, 0.0], [-big, big, big], [0.0, 0.0, 0.0]], dtype)
    labels = numpy.array([0, 0, 2])
    y = gb.validation.one_hot(labels, 3).astype(dtype)
    with numpy.errstate(all="raise", under="ignore"):  # underflow of e^(z - max) to 0 is documented
        loss, grad, correct = run_loss("softmax_cross_entropy", z, y)
        bce_loss, bce_grad, _ = run_loss("sigmoid_binary_cross_entropy", z, y)
    assert numpy.isfinite(grad).all() and numpy.isfinite(bce_grad).all()
    # Row 0: right with margin big: 0. Row 1: label 0 sits 2·big below two tied maxima: 2·big + log 2.
    # Row 2: uniform over 3 classes: log 3.
    expected = (0.0 + (2 * big + numpy.log(2.0)) + numpy.log(3.0)) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    assert numpy.isfinite(bce_loss) and bce_loss == pytest.approx((3 * big + 4 * numpy.log(2.0)) / 3, rel=1e-6)
    assert correct == 1.0  # row 0 right; row 1 (argmax 1) wrong; row 2 ties at class 0, label 2: wrong
    with numpy.errstate(all="raise"):  # without the exemption it is exactly underflow that is signalled
        with pytest.raises(FloatingPointError, match="underflow"):
            run_loss("softmax_cross_entropy", z, y)


def test_accuracy_counts(rng):
    z, labels = rng.normal(size=(50, 4)), rng.integers(0, 4, 50)
    _, _, correct = run_loss("softmax_cross_entropy", z, gb.validation.one_hot(labels, 4))
    assert correct == numpy.sum(z.argmax(1) == labels) > 0
    z, y = rng.normal(size=(50, 3)), rng.uniform(0, 1, (50, 3))
    _, _, correct = run_loss("sigmoid_binary_cross_entropy", z, y)
    assert correct == numpy.sum((z > 0) == (y >= 0.5)) > 0


@pytest.mark.parametrize("labels, match", [
    (numpy.array([0, 1, 3, 1]), r"label 3 at position 2, out of range.*\[0, 3\)"),
    (numpy.array([0, -1, 2, 1]), r"label -1 at position 1, out of range"),
    (numpy.array([0, 1.5, 2, 1]), r"integer class labels.*1\.5 at position 1"),
    (numpy.array([0, numpy.nan, 2, 1]), r"integer class labels.*nan"),
    (numpy.array([0, 1, 2]), r"3 labels but X has 4 rows"),
    (numpy.zeros((4, 2)), r"must have 3 columns"),
    (numpy.zeros((4, 3, 1)), r"2-D"),
])
def test_bad_labels_are_a_clear_value_error_and_nothing_changes(labels, match):
    net = gb.MLP([2, 4, 3], loss="softmax_cross_entropy", optimizer="adam", dtype="float64", backend="numpy", seed=0)
    X = numpy.ones((4, 2))
    net.train_step(X, numpy.array([0, 1, 2, 1]), 0.1)
    before, state = net.get_params(), net.get_optimizer_state()
    with pytest.raises(ValueError, match=match):
        net.train_step(X, labels, 0.1)
    with pytest.raises(ValueError, match=match):
        net.fit(X, labels, epochs=1, batch_size=2, lr=0.1)
    for (W0, b0), (W1, b1) in zip(before, net.get_params()):
        assert W0.tobytes() == W1.tobytes() and b0.tobytes() == b1.tobytes()
    after = net.get_optimizer_state()
    assert after["step"] == state["step"] and after["buffers"].tobytes() == state["buffers"].tobytes()


def test_float_labels_that_are_whole_numbers_are_labels():
    net = gb.MLP([2, 3], loss="softmax_cross_entropy", dtype="float64", backend="numpy", seed=0)
    X = numpy.arange(8.0).reshape(4, 2)
    assert net.loss_and_grads(X, numpy.array([0.0, 2.0, 1.0, 1.0]))[0] == net.loss_and_grads(X, [0, 2, 1, 1])[0]


def test_classification_losses_take_logits_and_enough_outputs():
    with pytest.raises(ValueError, match="output_activation must be 'identity'"):
        gb.MLP([2, 3], loss="softmax_cross_entropy", output_activation="sigmoid")
    with pytest.raises(ValueError, match="at least 2 outputs"):
        gb.MLP([2, 1], loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="loss must be one of"):
        gb.MLP([2, 1], loss="hinge")
    assert gb.MLP([2, 1], loss="sigmoid_binary_cross_entropy").output_activation == "identity"


@needs_torch
def test_predict_proba_and_classes(rng):
    X = rng.normal(size=(9, 3))
    net = gb.MLP([3, 4, 5], loss="softmax_cross_entropy", dtype="float64", backend="numpy", seed=0)
    logits = net.predict(X)
    proba = net.predict_proba(X)
    numpy.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    numpy.testing.assert_allclose(proba, torch.softmax(torch.tensor(logits), 1).numpy(), rtol=0, atol=1e-15)
    assert (net.predict_classes(X) == logits.argmax(1)).all() and net.predict_classes(X).shape == (9,)
    bce = gb.MLP([3, 4, 2], loss="sigmoid_binary_cross_entropy", dtype="float64", backend="numpy", seed=0)
    numpy.testing.assert_allclose(bce.predict_proba(X), torch.sigmoid(torch.tensor(bce.predict(X))).numpy(), atol=1e-15)
    assert bce.predict_classes(X).shape == (9, 2)
    with pytest.raises(ValueError, match="not a classification loss"):
        gb.MLP([3, 1], backend="numpy").predict_proba(X)


@pytest.mark.parametrize("dtype, big", [("float32", 1e4), ("float64", 1e300)])
def test_the_network_at_extreme_logits_is_finite_and_silent_under_errstate_raise(dtype, big):
    # Through the network the library's own errstate applies: the documented underflow of e^(z - max)
    # to 0 does not signal, and nothing else does either.
    net = gb.MLP([2, 3], loss="softmax_cross_entropy", optimizer="adam", dtype=dtype, backend="numpy")
    net.set_params([(numpy.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]) * big, numpy.zeros(3))])
    X = numpy.array([[1.0, 0.0], [-1.0, 0.0]])
    with numpy.errstate(all="raise"):
        result = net.evaluate(X, [0, 0])
        loss, grads = net.loss_and_grads(X, [1, 0])
        step_loss = net.train_step(X, [0, 2], 1e-3)
        proba = net.predict_proba(X)
        history = net.fit(X, [0, 1], epochs=2, batch_size=2, lr=1e-3, progress=False)
    assert (result.loss, result.accuracy) == (pytest.approx(big), 0.5)  # row 1: label 0 sits 2·big below the max
    assert loss == pytest.approx(2 * big) and step_loss == pytest.approx(big / 2)
    assert all(numpy.isfinite(g).all() for pair in grads for g in pair)
    assert numpy.isfinite(proba).all() and numpy.isfinite(history.loss).all()
