"""How often a start condition can fire: the shortest time between two starts, when known."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from conddsl import ast
from conddsl.lint.clock import REFERENCE
from conddsl.rules.conditions import walk

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
    return _period(node, rules, frozenset())


def _period(node: ast.Node, rules: Mapping[str, ast.Node], seen: frozenset) -> Period | None:
    if isinstance(node, ast.Every):
        return node.duration.value, str(node)
    if isinstance(node, ast.Periodic):
        return _CYCLES[node.period], str(node)
    if isinstance(node, ast.Cron):
        gap = _cron_gap(node.expression)
        return None if gap is None else (gap, str(node))
    if isinstance(node, ast.Zoned):
        return _period(node.item, rules, seen)
    if isinstance(node, ast.Reference):
        target = rules.get(node.name)
        if target is None or node.name in seen:
            return None
        return _period(target, rules, seen | {node.name})
    if isinstance(node, ast.All):
        timed = [item for item in node.items if not _clock_free(item, rules, seen)]
        return _period(timed[0], rules, seen) if len(timed) == 1 else None
    if isinstance(node, ast.Any):
        periods = [_period(item, rules, seen) for item in node.items]
        if any(p is None for p in periods):
            return None
        return min(periods, key=lambda p: p[0])
    return None


def _clock_free(node: ast.Node, rules: Mapping[str, ast.Node], seen: frozenset) -> bool:
    """No clock form inside (named conditions followed): it cannot change the cadence."""
    for item in walk(node):
        if isinstance(item, _CLOCK_FORMS):
            return False
        if isinstance(item, ast.Reference) and item.name not in seen:
            target = rules.get(item.name)
            if target is not None and not _clock_free(target, rules, seen | {item.name}):
                return False
    return True


def _cron_gap(expression: str) -> timedelta | None:
    """The shortest gap among the first fires (the true shortest gap is no longer)."""
    from conddsl.timeline.cron import parse_cron

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
