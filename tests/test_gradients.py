"""Backpropagation's gradients against central finite differences, in float64.

The finite differences are taken on a plain NumPy reference of the forward pass and the loss,
written here, so the check does not lean on the library's own forward code.
"""
import numpy
import pytest

import gpubackprop as gb
from gpubackprop import activations

EPS = 1e-6
# Central differences in float64 with EPS = 1e-6: truncation ~EPS² and rounding ~1e-16·L/EPS,
# both far below these tolerances; a wrong gradient term is off by O(|gradient|).
RTOL, ATOL = 1e-6, 1e-8
# relu is not differentiable at 0: a perturbation of EPS moves a pre-activation by well under
# this margin, so drawing data with every |z| above it keeps the finite difference off the kink.
RELU_MARGIN = 1e-3

ACTIVATION_FNS = {
    "sigmoid": lambda z: 1.0 / (1.0 + numpy.exp(-z)),
    "tanh": numpy.tanh,
    "relu": lambda z: numpy.maximum(z, 0.0),
    "identity": lambda z: z,
}


def reference_forward(params, X, activations):
    """(ŷ, pre-activations of every layer), by the textbook formulas."""
    a, zs = X, []
    for (W, b), act in zip(params, activations):
        z = a @ W.T + b
        zs.append(z)
        a = ACTIVATION_FNS[act](z)
    return a, zs


def reference_loss(params, X, Y, activations):
    yhat, _ = reference_forward(params, X, activations)
    return 0.5 * numpy.sum((yhat - Y) ** 2) / X.shape[0]


def finite_difference_grads(params, X, Y, activations):
    grads = []
    for W, b in params:
        layer = []
        for p in (W, b):
            g = numpy.empty_like(p)
            flat, gflat = p.reshape(-1), g.reshape(-1)  # views: perturb in place
            for j in range(flat.size):
                keep = flat[j]
                flat[j] = keep + EPS
                up = reference_loss(params, X, Y, activations)
                flat[j] = keep - EPS
                down = reference_loss(params, X, Y, activations)
                flat[j] = keep
                gflat[j] = (up - down) / (2 * EPS)
            layer.append(g)
        grads.append(tuple(layer))
    return grads


def draw_problem(seed, sizes, batch, hidden, output):
    """Random params and data; with relu, redrawn until no pre-activation is near the kink."""
    activations = [hidden] * (len(sizes) - 2) + [output]
    rng = numpy.random.default_rng(seed)
    for _ in range(200):
        params = [(rng.normal(0, 1 / numpy.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.5, n_out))
                  for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        X = rng.normal(0, 1, (batch, sizes[0]))
        Y = rng.normal(0, 1, (batch, sizes[-1]))
        _, zs = reference_forward(params, X, activations)
        if hidden != "relu" or all(numpy.abs(z).min() > RELU_MARGIN for z in zs[:-1]):
            return params, X, Y, activations
    pytest.fail(f"could not draw relu data away from the kink for {sizes} batch {batch}")


def random_architecture(seed):
    rng = numpy.random.default_rng(seed)
    depth = int(rng.integers(1, 5))  # 1 to 4 weight layers
    sizes = [int(n) for n in rng.integers(1, 33, depth + 1)]  # widths 1 to 32
    batch = int(rng.integers(1, 17))  # batch 1 to 16
    return sizes, batch


# Fixed corners of the range, then random draws; each runs for every activation pair.
ARCHITECTURES = [([1, 1], 1), ([32, 32, 32, 32, 32], 16), ([3, 1, 2], 5)]
ARCHITECTURES += [random_architecture(seed) for seed in range(4)]


@pytest.mark.parametrize("output", activations.OUTPUT)
@pytest.mark.parametrize("hidden", activations.HIDDEN)
@pytest.mark.parametrize("case", range(len(ARCHITECTURES)))
def test_gradients_match_central_differences(backend, case, hidden, output):
    sizes, batch = ARCHITECTURES[case]
    params, X, Y, activations = draw_problem(1000 + case, sizes, batch, hidden, output)
    net = gb.MLP(sizes, hidden_activation=hidden, output_activation=output, dtype="float64", backend=backend)
    net.set_params(params)

    loss, grads = net.loss_and_grads(X, Y)
    assert loss == pytest.approx(reference_loss(params, X, Y, activations), rel=1e-12, abs=1e-15)
    expected = finite_difference_grads(params, X, Y, activations)
    assert len(grads) == len(expected) == len(sizes) - 1
    for layer, ((dW, db), (fdW, fdb)) in enumerate(zip(grads, expected)):
        assert dW.shape == fdW.shape and db.shape == fdb.shape
        numpy.testing.assert_allclose(dW, fdW, rtol=RTOL, atol=ATOL, err_msg=f"∂L/∂W of layer {layer}")
        numpy.testing.assert_allclose(db, fdb, rtol=RTOL, atol=ATOL, err_msg=f"∂L/∂b of layer {layer}")


def test_forward_matches_reference(backend):
    params, X, Y, activations = draw_problem(7, [5, 8, 3], 4, "tanh", "sigmoid")
    net = gb.MLP([5, 8, 3], hidden_activation="tanh", output_activation="sigmoid", dtype="float64", backend=backend)
    net.set_params(params)
    yhat, _ = reference_forward(params, X, activations)
    numpy.testing.assert_allclose(backend.to_numpy(net.forward(X)), yhat, rtol=1e-12, atol=1e-15)


def test_train_step_is_sgd_on_these_gradients(backend):
    params, X, Y, _ = draw_problem(11, [4, 6, 1], 8, "sigmoid", "identity")
    net = gb.MLP([4, 6, 1], dtype="float64", backend=backend)
    net.set_params(params)
    loss, grads = net.loss_and_grads(X, Y[:, 0])  # 1-D targets are accepted when out == 1
    assert net.train_step(X, Y, 0.1) == loss
    for (W, b), (W0, b0), (dW, db) in zip(net.get_params(), params, grads):
        numpy.testing.assert_allclose(W, W0 - 0.1 * dW, rtol=1e-14, atol=1e-15)
        numpy.testing.assert_allclose(b, b0 - 0.1 * db, rtol=1e-14, atol=1e-15)
