"""Learning-rate schedules: callables ``schedule(step) -> lr`` for ``fit(lr=schedule)``, where
``step`` counts the network's accepted optimizer steps before this one (0 at its first), so a
schedule continues across ``fit`` calls and checkpoints. Each follows the closed form of its
``torch.optim.lr_scheduler`` counterpart with the scheduler stepped once per optimizer step.
"""
from __future__ import annotations

import math

from ..validation import positive_int as _count
from .base import real


class StepLR:
    """lr·γ^⌊step / step_size⌋: ``torch.optim.lr_scheduler.StepLR(step_size, gamma)``."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self.lr = real("lr", lr, 0.0, math.inf, low_open=True)
        self.step_size = _count("step_size", step_size)
        self.gamma = real("gamma", gamma, 0.0, math.inf, low_open=True)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self):
        return f"StepLR(lr={self.lr!r}, step_size={self.step_size}, gamma={self.gamma!r})"


class ExponentialLR:
    """lr·γ^step: ``torch.optim.lr_scheduler.ExponentialLR(gamma)``."""

    def __init__(self, lr: float, gamma: float):
        self.lr = real("lr", lr, 0.0, math.inf, low_open=True)
        self.gamma = real("gamma", gamma, 0.0, math.inf, low_open=True)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** step

    def __repr__(self):
        return f"ExponentialLR(lr={self.lr!r}, gamma={self.gamma!r})"


class CosineWithWarmup:
    """A linear warm-up over ``warmup_steps`` from lr·``start_factor`` to lr
    (``torch.optim.lr_scheduler.LinearLR(start_factor, total_iters=warmup_steps)``), then a cosine
    from lr down to ``eta_min`` over the remaining ``total_steps − warmup_steps``
    (``CosineAnnealingLR(T_max=total_steps − warmup_steps, eta_min)``), the two joined as
    ``SequentialLR(milestones=[warmup_steps])``:
    step < w: lr·(f + (1 − f)·step / w);  else eta_min + (lr − eta_min)·(1 + cos(π·(step − w) / T))/2.
    """

    def __init__(self, lr: float, warmup_steps: int, total_steps: int, eta_min: float = 0.0,
                 start_factor: float = 1.0 / 3.0):
        self.lr = real("lr", lr, 0.0, math.inf, low_open=True)
        self.warmup_steps = 0 if warmup_steps == 0 else _count("warmup_steps", warmup_steps)
        self.total_steps = _count("total_steps", total_steps)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
        self.eta_min = real("eta_min", eta_min, 0.0, self.lr)
        self.start_factor = real("start_factor", start_factor, 0.0, 1.0, low_open=True, high_open=False)

    def __call__(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.lr * (self.start_factor + (1.0 - self.start_factor) * step / w)
        t_max = self.total_steps - w
        return self.eta_min + (self.lr - self.eta_min) * (1.0 + math.cos(math.pi * (step - w) / t_max)) / 2.0

    def __repr__(self):
        return (f"CosineWithWarmup(lr={self.lr!r}, warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
                f"eta_min={self.eta_min!r}, start_factor={self.start_factor!r})")
