"""Conditions as the scheduler sees them: compiled from settings, evaluated, and what they read."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from conddsl import ast
from conddsl.errors import ConditionFailed as ConditionFailed


@runtime_checkable
class ConditionLike(Protocol):
    """What the scheduler needs of a condition (a compiled :class:`conddsl.Condition` has it)."""

    def is_true(self, at: datetime, **context: Any) -> bool: ...

    def next_change(self, after: datetime, **context: Any) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Reads:
    """What besides the clock can change a condition's value."""

    tasks: frozenset[str] = frozenset()  # records of these tasks
    own: bool = False  # records of the task the condition belongs to
    any_task: bool = False  # records of any task (named conditions, foreign objects)
    cycles: bool = False  # the scheduler's cycle counter

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.tasks | other.tasks,
            self.own or other.own,
            self.any_task or other.any_task,
            self.cycles or other.cycles,
        )


_OWN = Reads(own=True)
_UNKNOWN = Reads(any_task=True, cycles=True)


def compile_setting(value: object, what: str, timezone: str | tzinfo | None) -> ConditionLike:
    """A condition from text (compiled in ``timezone``) or an object that already is one."""
    if isinstance(value, str):
        from conddsl.compile import compile_condition

        return compile_condition(value, timezone=timezone)
    if isinstance(value, ConditionLike):
        return value
    raise TypeError(f"{what} must be condition text or a Condition, not {type(value).__name__}")


def reads(condition: object) -> Reads:
    """What the condition reads besides the clock, from its AST (everything if it has none)."""
    node = getattr(condition, "ast", None)
    if not isinstance(node, ast.Node):
        return _UNKNOWN
    rules = getattr(condition, "rules", None) or {}
    registry = getattr(condition, "registry", None)
    return _reads(node, rules, registry, ())


def _reads(node: ast.Node, rules: Mapping[str, ast.Node], registry: Any, seen: tuple) -> Reads:
    if isinstance(node, ast.Periodic | ast.Every | ast.Cron | ast.RunningFor):
        return _OWN
    if isinstance(node, ast.TaskHas):
        return _OWN if node.task is None else Reads(tasks=frozenset({node.task}))
    if isinstance(node, ast.AfterTask):
        return Reads(tasks=frozenset(node.tasks), own=True)  # compared with the own last start
    if isinstance(node, ast.TaskRunning):
        return Reads(tasks=frozenset({node.task}))
    if isinstance(node, ast.SchedulerCycles):
        return Reads(cycles=True)
    if isinstance(node, ast.Reference):
        target = None if node.args else rules.get(node.name)
        if target is not None and node.name not in seen:
            return _reads(target, rules, registry, (*seen, node.name))
        if registry is not None and registry.get(node.name) is not None:
            return Reads()  # a custom condition: its next_change says when to look again
        return _UNKNOWN
    found = Reads()
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        for child in value if isinstance(value, tuple) else (value,):
            if isinstance(child, ast.Node):
                found |= _reads(child, rules, registry, seen)
    return found


OWN_TASK_HINT = (
    "the shut condition belongs to no task: name one (\"task 'backup' has succeeded today\")"
    " or say when by the clock ('time of day after 23:00', 'scheduler has run over 8 hours')"
)


def own_task_problem(node: ast.Node, rules: Mapping[str, ast.Node]) -> str | None:
    """Why ``node`` cannot be a shut condition (None if it can): it reads the runs of the
    task it belongs to (``daily``, ``every``, ``cron``, ``after task``…)."""
    if not _reads(node, rules, None, ()).own:
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
