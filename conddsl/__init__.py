"""conddsl: say when a job may run and when it must stop.

Importing the package is cheap: the parser and the heavier modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conddsl.errors import ConddslError, ConditionError, ConditionSyntaxError, Span

if TYPE_CHECKING:
    from conddsl.compile import Condition, compile_condition
    from conddsl.parse import parse

__all__ = [
    "Condition",
    "ConditionError",
    "ConditionSyntaxError",
    "ConddslError",
    "Span",
    "compile_condition",
    "parse",
]
__version__ = "0.1.0"

_LAZY = {
    "Condition": "conddsl.compile",
    "compile_condition": "conddsl.compile",
    "parse": "conddsl.parse",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conddsl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
