"""SGD with momentum, ``torch.optim.SGD(momentum=μ, nesterov=...)`` with dampening 0:
d = g + λθ;  b ← μ·b + d (b starts at 0, so the first b is d, as torch's first step);
θ ← θ − lr·b, or with ``nesterov`` θ ← θ − lr·(d + μ·b). State: b."""
import numpy

from .base import Rule, flag, real


class Momentum(Rule):
    name = "momentum"
    defaults = {"momentum": 0.9, "nesterov": False, "weight_decay": 0.0}
    state_buffers = 1
    state_names = ("the velocity",)

    def check(self, s):
        checked = {"momentum": real("momentum", s["momentum"], 0.0, 1.0), "nesterov": flag("nesterov", s["nesterov"]),
                   **super().check(s)}
        if checked["nesterov"] and checked["momentum"] == 0:
            raise ValueError("nesterov needs a momentum above 0")
        return checked

    def kernel_scalars(self, s):
        return (s["momentum"], float(s["nesterov"]), s["weight_decay"], 0.0)

    def numpy_step(self, s, t, lr, p, g, state, p_out, state_out, work):
        mu, d, u = s["momentum"], work[0], work[1]
        if s["weight_decay"]:
            numpy.multiply(p, s["weight_decay"], d)
            numpy.add(g, d, d)
        else:
            d = g
        b = state_out[0]
        numpy.multiply(state[0], mu, b)
        numpy.add(b, d, b)
        if s["nesterov"]:
            numpy.multiply(b, mu, u)
            numpy.add(d, u, u)
            numpy.multiply(u, lr, u)
        else:
            numpy.multiply(b, lr, u)
        numpy.subtract(p, u, p_out)


RULE = Momentum()
