"""Conditions as the scheduler sees them: compiled from settings, evaluated, and what they read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from conddsl import ast
from conddsl.errors import ConditionFailed as ConditionFailed
from conddsl.reads import UNKNOWN, reads_of
from conddsl.reads import Reads as Reads


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


OWN_TASK_HINT = (
    "the shut condition belongs to no task: name one (\"task 'backup' has succeeded today\")"
    " or say when by the clock ('time of day after 23:00', 'scheduler has run over 8 hours')"
)


def own_task_problem(node: ast.Node, rules: Mapping[str, ast.Node]) -> str | None:
    """Why ``node`` cannot be a shut condition (None if it can): it reads the runs of the
    task it belongs to (``daily``, ``every``, ``cron``, ``after task``…)."""
    if not reads_of(node, rules).own:
        return None
    return f"{str(node)!r} is about the runs of the task it belongs to"


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
