"""The optimizers a network updates its parameters with, as PyTorch defines them.

With θ the parameters, g = ∂L/∂θ, lr the step's learning rate and λ = ``weight_decay`` (an L2
term added to the gradient, as ``torch.optim.SGD``/``Adam`` do, not AdamW's decoupled decay):

- ``sgd``: d = g + λθ;  θ ← θ − lr·d  (λ = 0: the lesson's update, exactly as before).
- ``momentum`` (``torch.optim.SGD(momentum=μ, nesterov=...)``, dampening 0): d = g + λθ;
  b ← μ·b + d (b starts at 0, so the first b is d, as torch's first step);
  θ ← θ − lr·b, or with ``nesterov`` θ ← θ − lr·(d + μ·b).
- ``adam`` (``torch.optim.Adam``, amsgrad off): d = g + λθ; t ← t + 1;
  m ← β₁·m + (1 − β₁)·d;  v ← β₂·v + (1 − β₂)·d²;
  θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε).

The state (b; or m, v and the step count t) is owned by the network, laid out like its flat
parameter buffer, and saved in checkpoints. A refused step (``train_step``'s finite check) changes
neither the parameters nor the state; t counts accepted steps only. On a GPU each update is one
fused kernel over the flat buffer (``kernels/optimizers.cu``); Adam's t lives on the device, so a
recorded step (CUDA graph) replays correctly, and a one-thread kernel advances it after the update.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers

NAMES = ("sgd", "momentum", "adam")
# Each hyperparameter: (the optimizers it applies to, its default).
_OPTIONS = {
    "momentum": (("momentum",), 0.9),
    "nesterov": (("momentum",), False),
    "beta1": (("adam",), 0.9),
    "beta2": (("adam",), 0.999),
    "eps": (("adam",), 1e-8),
    "weight_decay": (NAMES, 0.0),
}


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One optimizer's settings (see the module's documentation for the definitions)."""

    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    @property
    def rule(self) -> str:
        """Which update runs: "sgd" (plain, no state), "momentum" (also sgd with weight decay,
        as momentum 0) or "adam"."""
        if self.name == "sgd":
            return "momentum" if self.weight_decay else "sgd"
        return self.name

    @property
    def state_buffers(self) -> int:
        """How many buffers the size of the parameters the update keeps."""
        return {"sgd": 0, "momentum": 1, "adam": 2}[self.rule]

    def options(self) -> dict:
        """The settings that apply to this optimizer (what ``configure`` takes back)."""
        return {key: getattr(self, key) for key, (names, _) in _OPTIONS.items() if self.name in names}

    def to_json(self) -> str:
        return json.dumps({"name": self.name, **self.options()}, sort_keys=True)

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v:g}" if not isinstance(v, bool) else f"{k} {v}" for k, v in self.options().items()
                         if not (k == "weight_decay" and v == 0) and not (k == "nesterov" and not v))
        return self.name + (f" ({opts})" if opts else "")


def _real(name, value, low, high, low_open=False, high_open=True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def configure(optimizer="sgd", **options) -> Optimizer:
    """An ``Optimizer`` from a name (or an ``Optimizer``, returned as it is when no options are
    given) and the options that apply to it; None means the default. Settings that do not apply to
    the chosen optimizer are a ValueError (e.g. ``beta1`` with "momentum")."""
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown optimizer option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    if isinstance(optimizer, Optimizer):
        if given:
            raise ValueError("pass either an Optimizer or an optimizer name with options, not both")
        return optimizer
    if not isinstance(optimizer, str) or optimizer not in NAMES:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, NAMES))}, got {optimizer!r}")
    for key in given:
        if optimizer not in _OPTIONS[key][0]:
            applies = " or ".join(repr(n) for n in _OPTIONS[key][0])
            raise ValueError(f"{key} applies to optimizer {applies}, not {optimizer!r}")
    settings = {key: given.get(key, default) for key, (names, default) in _OPTIONS.items() if optimizer in names}
    if "momentum" in settings:
        settings["momentum"] = _real("momentum", settings["momentum"], 0.0, 1.0)
        if not isinstance(settings["nesterov"], (bool,)):
            raise TypeError(f"nesterov must be True or False, got {settings['nesterov']!r}")
        if settings["nesterov"] and settings["momentum"] == 0:
            raise ValueError("nesterov needs a momentum above 0")
    if "beta1" in settings:
        settings["beta1"] = _real("beta1", settings["beta1"], 0.0, 1.0)
        settings["beta2"] = _real("beta2", settings["beta2"], 0.0, 1.0)
        settings["eps"] = _real("eps", settings["eps"], 0.0, math.inf, low_open=True)
    settings["weight_decay"] = _real("weight_decay", settings["weight_decay"], 0.0, math.inf)
    return Optimizer(optimizer, **settings)


def from_json(text: str) -> Optimizer:
    """The ``Optimizer`` that ``Optimizer.to_json`` wrote (ValueError/TypeError when it is not one)."""
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError(f"not an optimizer's settings: {text!r}")
    return configure(settings.pop("name", None), **settings)
