"""AdamW, ``torch.optim.AdamW`` (amsgrad off): Adam with decoupled weight decay. First
θ ← θ·(1 − lr·λ), then Adam's step on the gradient itself (d = g):
m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g²;  θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε).
λ defaults to 0.01 as in torch. State: m, v. Kernel: kernels/optim_adamw.cu."""
from .adam import Adam


class AdamW(Adam):
    name = "adamw"
    defaults = {**Adam.defaults, "weight_decay": 0.01}
    decoupled = True


RULE = AdamW()
