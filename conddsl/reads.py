"""What a condition reads besides the clock: whose records, and the scheduler's cycles.

The scheduler wakes a task when a record arrives only if its conditions read that
task's records (:class:`Reads`). The answer is a :class:`~conddsl.visitor.ConditionVisitor`,
so a new condition form cannot be added without saying what it reads: a form
forgotten here would be a task that never wakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conddsl import ast
from conddsl.resolve import Resolver
from conddsl.visitor import ConditionVisitor

__all__ = [
    "NOTHING",
    "OWN",
    "OWN_TASK_HINT",
    "UNKNOWN",
    "Reads",
    "ReadsAnalysis",
    "own_task_problem",
    "reads_of",
]


@dataclass(frozen=True, slots=True)
class Reads:
    """What besides the clock can change a condition's value."""

    tasks: frozenset[str] = frozenset()  # records of these tasks
    own: bool = False  # records of the task the condition belongs to
    any_task: bool = False  # records of any task (unknown names, foreign objects)
    cycles: bool = False  # the scheduler's cycle counter

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.tasks | other.tasks,
            self.own or other.own,
            self.any_task or other.any_task,
            self.cycles or other.cycles,
        )


NOTHING = Reads()
OWN = Reads(own=True)
#: What an unknown condition may read: everything (so it is looked at on every record).
UNKNOWN = Reads(any_task=True, cycles=True)


class ReadsAnalysis(ConditionVisitor[Reads]):
    """What a condition reads, named conditions followed through ``rules`` (memoised).

    A name that is neither a rule nor a custom condition of ``registry`` reads
    :data:`UNKNOWN`: a lenient condition may name what is defined later.
    """

    def __init__(self, rules: Mapping[str, ast.Node] | None, registry: Any = None) -> None:
        self.resolver = Resolver(rules)
        self.registry = registry

    def visit_nothing(self, node: ast.Node) -> Reads:
        """Clock and session forms: no record changes them."""
        return NOTHING

    visit_Constant = visit_TimeOf = visit_nothing
    visit_SchedulerUptime = visit_Env = visit_ParamExists = visit_ParamIs = visit_nothing

    def visit_union(self, node: ast.Node) -> Reads:
        """``&``, ``|``, ``~`` and a zone: what their parts read."""
        found = NOTHING
        for item in ast.children(node):
            found |= self.visit(item)
        return found

    visit_All = visit_Any = visit_Not = visit_Zoned = visit_union

    def visit_own(self, node: ast.Node) -> Reads:
        """Forms about the runs of the task the condition belongs to."""
        return OWN

    visit_Periodic = visit_Every = visit_Cron = visit_RunningFor = visit_own

    def visit_TaskHas(self, node: ast.TaskHas) -> Reads:
        return OWN if node.task is None else Reads(tasks=frozenset({node.task}))

    def visit_AfterTask(self, node: ast.AfterTask) -> Reads:
        # The other tasks' outcomes are compared with this task's own last start.
        return Reads(tasks=frozenset(node.tasks), own=True)

    def visit_TaskRunning(self, node: ast.TaskRunning) -> Reads:
        return Reads(tasks=frozenset({node.task}))

    def visit_SchedulerCycles(self, node: ast.SchedulerCycles) -> Reads:
        return Reads(cycles=True)

    def visit_Reference(self, node: ast.Reference) -> Reads:
        if self.resolver.target(node) is not None:
            # A cycle cannot be compiled (E121); answering "everything" keeps this total.
            return self.resolver.expand(node, self.visit, on_cycle=lambda chain: UNKNOWN)
        if self.registry is not None and self.registry.get(node.name) is not None:
            return NOTHING  # a custom condition: its next_change says when to look again
        return UNKNOWN


def reads_of(node: ast.Node, rules: Mapping[str, ast.Node] | None, registry: Any = None) -> Reads:
    """What ``node`` reads with the named conditions of ``rules`` and customs of ``registry``."""
    return ReadsAnalysis(rules, registry).visit(node)


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
