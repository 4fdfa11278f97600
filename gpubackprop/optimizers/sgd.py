"""Plain SGD, ``torch.optim.SGD`` without momentum: d = g + λθ;  θ ← θ − lr·d (λ = ``weight_decay``,
an L2 term on the gradient; λ = 0: the lesson's update)."""
import numpy

from .base import Rule


class SGD(Rule):
    name = "sgd"
    defaults = {"weight_decay": 0.0}
    state_buffers = 0

    def kernel_scalars(self, s):
        return (s["weight_decay"], 0.0, 0.0, 0.0)

    def numpy_step(self, s, t, lr, p, g, state, p_out, state_out, work):
        d = g
        if s["weight_decay"]:
            d = work[0]
            numpy.multiply(p, s["weight_decay"], d)
            numpy.add(g, d, d)
        u = work[1]
        numpy.multiply(d, lr, u)
        numpy.subtract(p, u, p_out)


RULE = SGD()
