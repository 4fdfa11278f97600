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

import numpy

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
    """One optimizer's settings (see the module's documentation for the definitions).

    ``name``: "sgd", "momentum" or "adam". Each setting left out (None) takes its default for
    that optimizer: ``momentum`` 0.9 (momentum), ``nesterov`` False, ``beta1`` 0.9, ``beta2``
    0.999, ``eps`` 1e-8 (adam), ``weight_decay`` 0.0 (all). Every setting is checked here, at
    construction, by the same rules whichever way it arrives (``Optimizer(...)``, the ``MLP``
    keywords through :func:`configure`, a checkpoint through :func:`from_json`): an unknown name,
    a setting for another optimizer (``beta1`` with "momentum"), ``momentum``, ``beta1`` or
    ``beta2`` outside [0, 1), ``eps`` not > 0, ``weight_decay`` negative, anything not finite
    raises ``ValueError`` (a non-number: ``TypeError``), one line naming the setting and the
    valid range. A setting that does not apply to the optimizer holds None.
    """

    name: str = "sgd"
    momentum: float | None = None
    nesterov: bool | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    weight_decay: float | None = None

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or name not in NAMES:
            raise ValueError(f"optimizer must be one of {', '.join(map(repr, NAMES))}, got {name!r} "
                             f"(an unknown optimizer)")
        settings = {}
        for key, (names, default) in _OPTIONS.items():
            value = getattr(self, key)
            if name in names:
                settings[key] = default if value is None else value
            elif value is not None:  # a setting of another optimizer
                applies = " or ".join(repr(n) for n in names)
                raise ValueError(f"{key} applies to optimizer {applies}, not {name!r}")
        if name == "momentum":
            settings["momentum"] = _real("momentum", settings["momentum"], 0.0, 1.0)
            if not isinstance(settings["nesterov"], (bool, numpy.bool_)):
                raise TypeError(f"nesterov must be True or False, got {settings['nesterov']!r}")
            settings["nesterov"] = bool(settings["nesterov"])
            if settings["nesterov"] and settings["momentum"] == 0:
                raise ValueError("nesterov needs a momentum above 0")
        if name == "adam":
            # beta1 = 1 would divide by 1 - beta1^t = 0 (the bias correction); beta2 = 1 by 0 too.
            settings["beta1"] = _real("beta1", settings["beta1"], 0.0, 1.0)
            settings["beta2"] = _real("beta2", settings["beta2"], 0.0, 1.0)
            settings["eps"] = _real("eps", settings["eps"], 0.0, math.inf, low_open=True)
        settings["weight_decay"] = _real("weight_decay", settings["weight_decay"], 0.0, math.inf)
        for key, value in settings.items():
            object.__setattr__(self, key, value)

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

    def check_dtype(self, dtype) -> None:
        """ValueError unless every setting keeps its meaning once rounded to ``dtype`` (the
        network's: a float32 network computes with float32(eps)): ``eps`` must not round to 0
        (Adam would divide 0 by 0 wherever a gradient has always been 0) and no setting may round
        to Inf (``weight_decay=1e39`` in float32)."""
        dtype = numpy.dtype(dtype)
        for key, value in self.options().items():
            if isinstance(value, bool):
                continue
            with numpy.errstate(over="ignore", under="ignore"):
                rounded = float(dtype.type(value))
            if not math.isfinite(rounded):
                raise ValueError(f"{key} {value!r} overflows to {rounded} in {dtype} (the network's dtype, at most "
                                 f"{float(numpy.finfo(dtype).max):.4g}); expected a number that {dtype} can hold")
            if key == "eps" and rounded == 0:
                raise ValueError(f"eps {value!r} rounds to 0 in {dtype} (the network's dtype, whose smallest positive "
                                 f"number is {float(numpy.finfo(dtype).smallest_subnormal):.4g}); expected an eps "
                                 f"that {dtype} can hold, e.g. the default 1e-08")

    def check_state(self, buffers, step, n_params: int) -> str | None:
        """Why (``buffers``, ``step``) cannot be this optimizer's state for a network of
        ``n_params`` parameters, or None when it can. ``buffers``: a NumPy array (k, n_params) of
        real numbers, as the network will hold it (in its dtype); ``step``: Adam's count of accepted
        steps. What no training produces is refused: another shape, a non-integer or negative step
        count, a NaN/Inf value (a step that would make one is refused, so no state ever holds
        one) and a negative second moment (Adam's v is a running mean of squares)."""
        shape = (self.state_buffers, n_params)
        if tuple(buffers.shape) != shape:
            return f"buffers of shape {shape} for {self.describe()}, got shape {tuple(buffers.shape)}"
        if buffers.dtype.kind not in "fiub":
            return f"buffers of real numbers, got dtype {buffers.dtype}"
        if isinstance(step, (bool, numpy.bool_)) or not isinstance(step, (numbers.Integral, numpy.integer)) or step < 0:
            return f"a step count that is a non-negative int, got {step!r}"
        if buffers.size:
            finite = numpy.isfinite(buffers)
            if not finite.all():
                row, col = numpy.unravel_index(int(numpy.argmin(finite)), buffers.shape)
                return (f"finite values, got {buffers[row, col].item()!r} in {self._buffer_name(row)} at "
                        f"parameter {col} (no training makes one: a step that would is refused)")
            if self.rule == "adam":
                negative = buffers[1] < 0
                if negative.any():
                    col = int(numpy.argmax(negative))
                    return (f"a second moment v >= 0 (a running mean of squared gradients), got {buffers[1, col].item()!r} "
                            f"at parameter {col}")
        return None

    def _buffer_name(self, row) -> str:
        if self.rule == "adam":
            return "the first moment m" if row == 0 else "the second moment v"
        return "the velocity"


def _real(name, value, low, high, low_open=False, high_open=True) -> float:
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def configure(optimizer="sgd", **options) -> Optimizer:
    """An ``Optimizer`` from a name (or an ``Optimizer``, returned as it is when no options are
    given) and the options that apply to it; None means the default. The rules are
    ``Optimizer``'s own (see there), so a name with options and an ``Optimizer`` object are
    checked alike."""
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown optimizer option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    if isinstance(optimizer, Optimizer):
        if given:
            raise ValueError("pass either an Optimizer or an optimizer name with options, not both")
        return optimizer
    return Optimizer(optimizer, **given)


def from_json(text: str) -> Optimizer:
    """The ``Optimizer`` that ``Optimizer.to_json`` wrote (ValueError/TypeError when it is not one)."""
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError(f"not an optimizer's settings: {text!r}")
    return configure(settings.pop("name", None), **settings)
