"""What an optimizer is here: a :class:`Rule` (its name, options with their defaults and checks,
how many state buffers it keeps, its NumPy reference and the name of its kernel) and the
:class:`Optimizer` value a network is built with (one rule's settings).

As in ``torch.optim``, with θ the parameters, g = ∂L/∂θ and lr the step's learning rate. The state
(rows laid out like the network's flat parameter buffer) and the count of accepted steps t are
owned by the network and saved in checkpoints. A refused step (the guarded update) changes neither
the parameters nor the state, nor t. One backend operation runs any rule
(``Backend.optimizer_step``): NumPy through the rule's ``numpy_step``, a GPU through the rule's
kernel ``<name>_step`` (``kernels/optim_<name>.cu``), which performs the same operations in the
same order.

Adding a rule: one file in this package defining a ``Rule`` subclass as ``RULE``, plus its kernel.
"""
from __future__ import annotations

import json
import math
import numbers

import numpy


def real(name, value, low, high, low_open=False, high_open=True) -> float:
    """``value`` as a float in the interval (``low``, ``high``) with the given open ends, else a
    TypeError/ValueError naming ``name``: every optimizer option's check."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def flag(name, value) -> bool:
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class Rule:
    """One update rule. Subclasses set ``name``, ``defaults`` (option -> default; the options it
    takes), ``state_buffers``, and define ``check``, ``kernel_scalars`` and ``numpy_step``."""

    name: str = ""
    defaults: dict = {}
    state_buffers = 0
    state_names: tuple = ()  # each state row, in error messages: ("the velocity",)

    @property
    def kernel(self) -> str:
        """The CUDA kernel of this rule (see kernels/optim_common.cuh for its arguments)."""
        return f"{self.name}_step"

    def check(self, settings: dict) -> dict:
        """The settings checked and normalised (every option present); raises on a bad one."""
        return {"weight_decay": real("weight_decay", settings["weight_decay"], 0.0, math.inf)}

    def check_state_values(self, buffers) -> str | None:
        """Why finite state ``buffers`` (k, n) cannot come from this rule's training, or None."""
        return None

    def kernel_scalars(self, settings: dict) -> tuple:
        """The four doubles h0..h3 that the kernel reads its settings from."""
        raise NotImplementedError

    def numpy_step(self, settings, t, lr, p, g, state, p_out, state_out, work):
        """The NumPy reference: from parameters ``p``, gradients ``g`` (clipped already) and the
        state rows ``state``, the new parameters into ``p_out`` and state into ``state_out`` (each
        may be its input: in place) for step ``t`` (1 at the first accepted step) at learning rate
        ``lr`` (a float); ``work``: (2, n) scratch rows."""
        raise NotImplementedError


class Optimizer:
    """One optimizer's settings: a rule's name (see ``NAMES``) and its options, None or absent
    meaning the default. Read them as attributes (``Optimizer("adam").beta1 == 0.9``; a setting of
    another rule reads None). Every setting is checked here, at construction, by the same rules
    whichever way it arrives (``Optimizer(...)``, the ``MLP`` keywords through :func:`configure`, a
    checkpoint through :func:`from_json`): an unknown name, a setting of another optimizer, a value
    outside its range or not finite is a ``ValueError`` (a non-number: ``TypeError``), one line
    naming the setting and the valid range."""

    __slots__ = ("name", "rule", "_settings")

    def __init__(self, name="sgd", **options):
        from . import RULES  # the registry: this package's rule files
        given = {key: value for key, value in options.items() if value is not None}
        known = sorted({key for rule in RULES.values() for key in rule.defaults})
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"unknown optimizer option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if not isinstance(name, str) or name not in RULES:
            raise ValueError(f"optimizer must be one of {', '.join(map(repr, RULES))}, got {name!r} "
                             f"(an unknown optimizer)")
        rule = RULES[name]
        for key in given:
            if key not in rule.defaults:
                applies = " or ".join(repr(n) for n, r in RULES.items() if key in r.defaults)
                raise ValueError(f"{key} applies to optimizer {applies}, not {name!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "rule", rule)  # the Rule: its checks, NumPy reference and kernel
        object.__setattr__(self, "_settings", rule.check({**rule.defaults, **given}))

    def __getattr__(self, key):
        settings = object.__getattribute__(self, "_settings")
        if key in settings:
            return settings[key]
        from . import RULES
        if any(key in rule.defaults for rule in RULES.values()):
            return None  # a setting of another optimizer
        raise AttributeError(f"optimizer {self.name!r} has no setting {key!r}")

    def __setattr__(self, key, value):
        raise AttributeError("an Optimizer is immutable: build a new one")

    def __eq__(self, other):
        return isinstance(other, Optimizer) and (self.name, self._settings) == (other.name, other._settings)

    def __hash__(self):
        return hash((self.name, tuple(sorted(self._settings.items()))))

    def __repr__(self):
        return f"Optimizer({self.name!r}" + "".join(f", {k}={v!r}" for k, v in self._settings.items()) + ")"

    @property
    def state_buffers(self) -> int:
        """How many buffers the size of the parameters the update keeps."""
        return self.rule.state_buffers

    @property
    def settings(self) -> dict:
        """The checked settings, every option of the rule present (read-only by convention: what
        the rule's ``numpy_step`` and ``kernel_scalars`` read)."""
        return self._settings

    def options(self) -> dict:
        """The settings (what ``configure`` takes back)."""
        return dict(self._settings)

    def check_dtype(self, dtype) -> None:
        """ValueError unless every setting keeps its meaning once rounded to ``dtype`` (the
        network's: a float32 network computes with float32(eps)): ``eps`` must not round to 0
        (Adam would divide 0 by 0 wherever a gradient has always been 0) and no setting may round
        to Inf (``weight_decay=1e39`` in float32)."""
        dtype = numpy.dtype(dtype)
        for key, value in self._settings.items():
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
        real numbers, as the network will hold it (in its dtype); ``step``: the count of accepted
        steps. What no training produces is refused: another shape, a non-integer or negative step
        count, a NaN/Inf value (a step that would make one is refused, so no state ever holds
        one) and what the rule rules out (Adam's negative second moment)."""
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
                return (f"finite values, got {buffers[row, col].item()!r} in {self.rule.state_names[row]} at "
                        f"parameter {col} (no training makes one: a step that would is refused)")
            return self.rule.check_state_values(buffers)
        return None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, **self._settings}, sort_keys=True)

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v:g}" if not isinstance(v, bool) else f"{k} {v}" for k, v in self._settings.items()
                         if not (k == "weight_decay" and v == 0) and not (k == "nesterov" and not v))
        return self.name + (f" ({opts})" if opts else "")


def configure(optimizer="sgd", **options) -> Optimizer:
    """An ``Optimizer`` from a name (or an ``Optimizer``, returned as it is when no options are
    given) and the options that apply to it; None means the default."""
    if isinstance(optimizer, Optimizer):
        if any(value is not None for value in options.values()):
            raise ValueError("pass either an Optimizer or an optimizer name with options, not both")
        return optimizer
    return Optimizer(optimizer, **options)


def from_json(text: str) -> Optimizer:
    """The ``Optimizer`` that ``Optimizer.to_json`` wrote (ValueError/TypeError when it is not one)."""
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError(f"not an optimizer's settings: {text!r}")
    return configure(settings.pop("name", None), **settings)
