"""Conditions as the scheduler sees them: compiled from settings, evaluated, and what they read."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from conddsl.errors import ConditionFailed as ConditionFailed
from conddsl.reads import OWN_TASK_HINT as OWN_TASK_HINT
from conddsl.reads import UNKNOWN
from conddsl.reads import Reads as Reads
from conddsl.reads import own_task_problem as own_task_problem


@runtime_checkable
class ConditionLike(Protocol):
    """What the scheduler needs of a condition (a compiled :class:`conddsl.Condition` has it)."""

    def is_true(self, at: datetime, **context: Any) -> bool: ...

    def next_change(self, after: datetime, **context: Any) -> datetime | None: ...


def compile_setting(value: object, what: str, timezone: str | tzinfo | None) -> ConditionLike:
    """A condition from text (compiled in ``timezone``) or an object that already is one."""
    if isinstance(value, str):
        from conddsl.compile import compile_condition

        return compile_condition(value, timezone=timezone)
    if isinstance(value, ConditionLike):
        return value
    raise TypeError(f"{what} must be condition text or a Condition, not {type(value).__name__}")


def reads(condition: object) -> Reads:
    """What the condition reads besides the clock (everything, for an object without an AST)."""
    found = getattr(condition, "reads", None)
    return found if isinstance(found, Reads) else UNKNOWN


def is_true(condition: ConditionLike, where: str, at: datetime, **context: Any) -> bool:
    """The condition's value at ``at``; an exception becomes :class:`ConditionFailed`."""
    try:
        return bool(condition.is_true(at, **context))
    except Exception as exc:
        raise ConditionFailed(where, condition, exc) from exc


def next_change(
    condition: ConditionLike, where: str, after: datetime, **context: Any
) -> datetime | None:
    """When the condition's value can next change by time alone; an exception is ConditionFailed."""
    try:
        return condition.next_change(after, **context)
    except Exception as exc:
        raise ConditionFailed(where, condition, exc) from exc
