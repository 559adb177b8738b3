"""How often a start condition can fire: the shortest time between two starts, when known."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from conddsl import ast
from conddsl.lint.clock import REFERENCE
from conddsl.resolve import Resolver
from conddsl.rules.conditions import walk
from conddsl.timeline.cron import parse_cron
from conddsl.visitor import ConditionVisitor

# The longest of each cycle, so that "longer than the period" is never claimed wrongly.
_CYCLES = {
    "secondly": timedelta(seconds=1),
    "minutely": timedelta(minutes=1),
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=31),
}
_CRON_SAMPLES = 64
_CLOCK_FORMS = (ast.TimeOf, ast.Periodic, ast.Cron, ast.Every)

Period = tuple[timedelta, str]


def start_period(node: ast.Node, rules: Mapping[str, ast.Node]) -> Period | None:
    """``(shortest time between starts, the form that sets it)``, or None when unknown.

    Known for ``every <d>``, ``daily``-like forms, cron, an ``&`` of exactly one of those
    with conditions that are not about the clock, and an ``|`` of known periods.
    """
    return _Periods(rules).period(node)


class _Periods(ConditionVisitor["Period | None"]):
    """The start periods of one file's conditions, named conditions resolved once."""

    def __init__(self, rules: Mapping[str, ast.Node]) -> None:
        self.resolver = Resolver(rules)

    def period(self, node: ast.Node) -> Period | None:
        return self.visit(node)

    def visit_Every(self, node: ast.Every) -> Period | None:
        return node.duration.value, str(node)

    def visit_Periodic(self, node: ast.Periodic) -> Period | None:
        return _CYCLES[node.period], str(node)

    def visit_Cron(self, node: ast.Cron) -> Period | None:
        gap = _cron_gap(node.expression)
        return None if gap is None else (gap, str(node))

    def visit_Zoned(self, node: ast.Zoned) -> Period | None:
        return self.visit(node.item)

    def visit_Reference(self, node: ast.Reference) -> Period | None:
        if self.resolver.target(node) is None:
            return None
        return self.resolver.expand(node, self.visit, on_cycle=_none, key="period")

    def visit_All(self, node: ast.All) -> Period | None:
        timed = [item for item in node.items if not self.clock_free(item)]
        return self.visit(timed[0]) if len(timed) == 1 else None

    def visit_Any(self, node: ast.Any) -> Period | None:
        periods = [self.visit(item) for item in node.items]
        if any(p is None for p in periods):
            return None
        return min(periods, key=lambda p: p[0])

    def visit_unknown(self, node: ast.Node) -> Period | None:
        """No cadence of its own: a clock window, a negation, task state, the session."""
        return None

    visit_Constant = visit_Not = visit_TimeOf = visit_TaskHas = visit_AfterTask = visit_unknown
    visit_TaskRunning = visit_RunningFor = visit_SchedulerCycles = visit_unknown
    visit_SchedulerUptime = visit_Env = visit_ParamExists = visit_ParamIs = visit_unknown

    def clock_free(self, node: ast.Node) -> bool:
        """No clock form inside (named conditions followed): it cannot change the cadence."""
        for item in walk(node):
            if isinstance(item, _CLOCK_FORMS):
                return False
            if isinstance(item, ast.Reference) and self.resolver.target(item) is not None:
                free = self.resolver.expand(item, self.clock_free, on_cycle=_true, key="free")
                if not free:
                    return False
        return True


def _none(chain: list[str]) -> None:
    return None


def _true(chain: list[str]) -> bool:
    return True


def _cron_gap(expression: str) -> timedelta | None:
    """The shortest gap among the first fires (the true shortest gap is no longer)."""
    spec = parse_cron(expression)
    fire = spec.next_fire(REFERENCE)
    gaps = []
    for _ in range(_CRON_SAMPLES):
        if fire is None:
            break
        following = spec.next_fire(fire)
        if following is None:
            break
        gaps.append(following - fire)
        fire = following
    return min(gaps) if gaps else None
