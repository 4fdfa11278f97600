"""Adam, ``torch.optim.Adam`` (amsgrad off): d = g + λθ (L2 on the gradient, not AdamW's decay);
m ← β₁·m + (1 − β₁)·d;  v ← β₂·v + (1 − β₂)·d²;
θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε), t the accepted steps including this one.
State: m, v (the step count t is the network's)."""
import math

import numpy

from .base import Rule, real


class Adam(Rule):
    name = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    state_buffers = 2
    state_names = ("the first moment m", "the second moment v")
    decoupled = False  # AdamW: the decay multiplies θ instead of entering d

    def check(self, s):
        return {"beta1": real("beta1", s["beta1"], 0.0, 1.0), "beta2": real("beta2", s["beta2"], 0.0, 1.0),
                "eps": real("eps", s["eps"], 0.0, math.inf, low_open=True), **super().check(s)}

    def check_state_values(self, buffers):
        negative = buffers[1] < 0
        if negative.any():
            col = int(numpy.argmax(negative))
            return (f"a second moment v >= 0 (a running mean of squared gradients), got {buffers[1, col].item()!r} "
                    f"at parameter {col}")
        return None

    def kernel_scalars(self, s):
        return (s["beta1"], s["beta2"], s["eps"], s["weight_decay"])

    def numpy_step(self, s, t, lr, p, g, state, p_out, state_out, work):
        beta1, beta2, wd = s["beta1"], s["beta2"], s["weight_decay"]
        step_size = lr / (1.0 - beta1 ** t)  # in double, as the kernel and torch
        sqrt_bc2 = math.sqrt(1.0 - beta2 ** t)
        d, u = work[0], work[1]
        if wd and not self.decoupled:
            numpy.multiply(p, wd, d)  # d = g + wd p
            numpy.add(g, d, d)
        else:
            d = g
        m, v = state_out[0], state_out[1]
        numpy.multiply(state[0], beta1, m)  # m = b1 m + (1 - b1) d
        numpy.multiply(d, 1.0 - beta1, u)
        numpy.add(m, u, m)
        numpy.multiply(state[1], beta2, v)  # v = b2 v + ((1 - b2) d) d
        numpy.multiply(d, 1.0 - beta2, u)
        numpy.multiply(u, d, u)
        numpy.add(v, u, v)
        numpy.sqrt(v, u)  # u = step_size (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
        numpy.divide(u, sqrt_bc2, u)
        numpy.add(u, s["eps"], u)
        numpy.divide(m, u, u)
        numpy.multiply(u, step_size, u)
        if wd and self.decoupled:
            numpy.multiply(p, 1.0 - lr * wd, p_out)  # θ ← θ·(1 − lr·λ), then the Adam step
            numpy.subtract(p_out, u, p_out)
        else:
            numpy.subtract(p, u, p_out)


RULE = Adam()
