"""conddsl: say when a job may run and when it must stop.

Importing the package is cheap: the parser and the heavier modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conddsl.errors import ConddslError, ConditionError, ConditionSyntaxError, Span

if TYPE_CHECKING:
    from conddsl.compile import Condition, compile_condition
    from conddsl.custom import ConditionRegistry, condition
    from conddsl.history import PostgresHistory
    from conddsl.runtime import Scheduler, TaskTerminationException, TerminationFlag

__all__ = [
    "Condition",
    "ConditionError",
    "ConditionRegistry",
    "ConditionSyntaxError",
    "ConddslError",
    "PostgresHistory",
    "Scheduler",
    "TaskTerminationException",
    "TerminationFlag",
    "Span",
    "compile_condition",
    "condition",
    "conds",
]
__version__ = "0.1.0"

_LAZY = {
    "Condition": "conddsl.compile",
    "compile_condition": "conddsl.compile",
    "ConditionRegistry": "conddsl.custom",
    "condition": "conddsl.custom",
    "PostgresHistory": "conddsl.history",
    "Scheduler": "conddsl.runtime",
    "TerminationFlag": "conddsl.runtime",
    "TaskTerminationException": "conddsl.runtime",
}


def __getattr__(name: str):
    import importlib

    if name == "conds":
        return importlib.import_module("conddsl.conds")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conddsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
