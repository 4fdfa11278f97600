"""The one table of activation functions: what each is called, where it may stand, how its layer's
weights start, and its derivative as read off the stored output a = act(z).

Everything that lists activations reads this table: ``MLP``, checkpoints, the command line's
choices and the tests' parametrisations. Adding an activation means a row here, its NumPy math
(``NumpyBackend``: ``_<name>_forward`` / ``_<name>_backward``) and its CUDA kernels
(``kernels/activations.cu``: ``bias_<name>_forward`` / ``<name>_backward``), nothing else.
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Activation:
    name: str
    hidden: bool  # allowed in hidden layers
    output: bool  # allowed as the output layer's activation
    init: str  # "glorot" (uniform, ±sqrt(6 / (in + out))) or "he" (uniform, ±sqrt(6 / in))
    derivative: str  # act'(z) written in terms of a = act(z): the backward pass reads only a
    unit_derivative: bool = False  # act' == 1: the backward pass skips the multiplication

    def init_limit(self, n_in: int, n_out: int) -> float:
        """Half-width of the uniform distribution this layer's weights are drawn from."""
        return math.sqrt(6.0 / n_in) if self.init == "he" else math.sqrt(6.0 / (n_in + n_out))


TABLE = {a.name: a for a in (
    Activation("sigmoid", hidden=True, output=True, init="glorot", derivative="a(1 − a)"),
    Activation("tanh", hidden=True, output=False, init="glorot", derivative="1 − a²"),
    Activation("relu", hidden=True, output=False, init="he", derivative="[a > 0]"),
    Activation("identity", hidden=False, output=True, init="glorot", derivative="1", unit_derivative=True),
)}
NAMES = tuple(TABLE)
HIDDEN = tuple(name for name, a in TABLE.items() if a.hidden)
OUTPUT = tuple(name for name, a in TABLE.items() if a.output)
