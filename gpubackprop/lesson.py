"""The worked example of ../shared/lesson/backpropagation-step-by-step.txt, in one place.

A 2-2-1 network, sigmoid hidden layer, identity output, L = ½(ŷ − y)², one SGD step with α = 0.5.
``PRINTED`` holds every value the lesson prints, to its 4 decimals, in the lesson's order; the
CLI's ``demo`` and the tests compare the library against it.
"""
from __future__ import annotations

import numpy

from .model import MLP

LAYER_SIZES = [2, 2, 1]
HIDDEN_ACTIVATION = "sigmoid"
OUTPUT_ACTIVATION = "identity"
# Layer 1: rows are the weights into h1 (w11, w12) and h2 (w21, w22); layer 2: into the output (v1, v2).
W1 = [[0.1, 0.3], [0.2, 0.4]]
B1 = [0.1, 0.1]
W2 = [[0.5, 0.6]]
B2 = [0.1]
X = [[1.0, 0.5]]
Y = [[1.0]]
LEARNING_RATE = 0.5
TOLERANCE = 5e-5  # the lesson prints 4 decimals: a correct value is within half a unit of the last

# (label, printed value) in the lesson's order.
PRINTED = [
    ("z1", 0.35), ("z2", 0.50),
    ("a1", 0.5866), ("a2", 0.6225),
    ("ŷ", 0.7668),
    ("L", 0.0272),
    ("∂L/∂ŷ", -0.2332),
    ("∂L/∂v1", -0.1368), ("∂L/∂v2", -0.1452), ("∂L/∂b3", -0.2332),
    ("∂L/∂a1", -0.1166), ("∂L/∂a2", -0.1399),
    ("σ'(z1)", 0.2425), ("σ'(z2)", 0.2350),
    ("∂L/∂z1", -0.0283), ("∂L/∂z2", -0.0329),
    ("∂L/∂w11", -0.0283), ("∂L/∂w12", -0.0141), ("∂L/∂b1", -0.0283),
    ("∂L/∂w21", -0.0329), ("∂L/∂w22", -0.0164), ("∂L/∂b2", -0.0329),
    ("v1'", 0.5684), ("v2'", 0.6726), ("b3'", 0.2166),
    ("w11'", 0.1141), ("w12'", 0.3071), ("b1'", 0.1141),
    ("w21'", 0.2164), ("w22'", 0.4082), ("b2'", 0.1164),
]


def params():
    """The lesson's starting parameters as the (W, b) list of MLP.set_params."""
    return [(numpy.array(W1), numpy.array(B1)), (numpy.array(W2), numpy.array(B2))]


def network(backend=None, dtype="float64"):
    """An MLP holding the lesson's starting parameters."""
    net = MLP(LAYER_SIZES, hidden_activation=HIDDEN_ACTIVATION, output_activation=OUTPUT_ACTIVATION,
              dtype=dtype, backend=backend)
    net.set_params(params())
    return net


def run(backend=None, dtype="float64"):
    """Run the lesson on ``backend``: returns [(label, computed, printed)] in the lesson's order.

    The forward and backward quantities come from MLP.trace, the updated parameters from a real
    MLP.train_step: the library's own code path, not a re-derivation.
    """
    net = network(backend, dtype)
    x, y = numpy.array(X), numpy.array(Y)
    trace = net.trace(x, y)
    hidden, output = trace["layers"]
    net.train_step(x, y, LEARNING_RATE)
    (W1_new, b1_new), (W2_new, b2_new) = net.get_params()
    computed = [
        *hidden["z"][0], *hidden["a"][0],
        output["a"][0, 0],
        trace["loss"],
        output["grad_a"][0, 0],
        *output["grad_weight"][0], output["grad_bias"][0],
        *hidden["grad_a"][0],
        *hidden["act_grad"][0],
        *hidden["delta"][0],
        hidden["grad_weight"][0, 0], hidden["grad_weight"][0, 1], hidden["grad_bias"][0],
        hidden["grad_weight"][1, 0], hidden["grad_weight"][1, 1], hidden["grad_bias"][1],
        *W2_new[0], b2_new[0],
        W1_new[0, 0], W1_new[0, 1], b1_new[0],
        W1_new[1, 0], W1_new[1, 1], b1_new[1],
    ]
    return [(label, float(value), printed) for (label, printed), value in zip(PRINTED, computed, strict=True)]
