"""conddsl: say when a job may run and when it must stop.

Importing the package is cheap: the parser and the heavier modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conddsl.errors import ConddslError, ConditionError, ConditionSyntaxError, Span
from conddsl.lazy import lazy_names

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


__getattr__ = lazy_names(globals(), {**_LAZY, "conds": "conddsl.conds"})
