"""The optimizers, one file per rule (``sgd``, ``momentum``, ``adam``, ``adamw``), the settings
value a network is built with (:class:`Optimizer`), and learning-rate schedules (``schedules``).
See ``base`` for what a rule is and how to add one."""
from __future__ import annotations

import importlib
import pkgutil

from .base import Optimizer, Rule, configure, from_json


def _discover() -> dict:
    """Every module of this package that defines ``RULE``, in the order of ``_FIRST`` then by name."""
    rules = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name not in _FIRST, _FIRST.index(m.name)
                                                                       if m.name in _FIRST else 0, m.name)):
        rule = getattr(importlib.import_module(f"{__name__}.{info.name}"), "RULE", None)
        if rule is not None:
            rules[rule.name] = rule
    return rules


_FIRST = ["sgd", "momentum", "adam"]  # the order the CLI and errors list them in
RULES = _discover()
NAMES = tuple(RULES)

__all__ = ["NAMES", "RULES", "Optimizer", "Rule", "configure", "from_json"]
