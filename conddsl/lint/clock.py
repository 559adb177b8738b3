"""What the clock alone says about a condition: when it may be true, when it surely is.

A condition mixes clock forms (``time of day …``, the windows of ``daily after …``,
cron minutes) with forms about tasks and the session, which the checker cannot know.
For each condition the bounds of :mod:`conddsl.bounds` are built with all of those read
as unknown: ``over`` (true wherever the condition *may* be true) and ``under`` (true
only where it *surely* is), both clock-only, exact when a part is read both ways
(``has succeeded & ~has succeeded`` is never true). "Never true" is then claimed only
when ``over`` has no window, and "always true" only when ``under`` has no gap, over the
condition's whole horizon: the claims are sound whatever the run history holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo

from conddsl import ast
from conddsl.bounds import TRUE, Bounds, BoundsAnalysis, Part
from conddsl.bounds import conjunction as conjunction
from conddsl.bounds import negation as negation
from conddsl.compile import IRREGULAR_HORIZON, Condition
from conddsl.rules.conditions import walk
from conddsl.timeline.clock import cycle_length, point_offset
from conddsl.timeline.cron import parse_cron
from conddsl.windows import clock_window, cycle_point

__all__ = ["Bounds", "ClockAnalysis", "REFERENCE", "whole_cycle_reason"]

# Analysis runs from a fixed Monday, so that results do not depend on today's date.
REFERENCE = datetime(2024, 1, 1)
_MIN_HORIZON = timedelta(days=2)
# The compiler's horizons: two of the longest regular cycle (a week) and a margin, or
# 29 years for patterns tied to months (the calendar repeats within 28 years).
_REGULAR = timedelta(weeks=2, days=2)
_MONTHS = timedelta(days=430)
_ALL_DAYS = (1 << 31) - 1
_ALL_MONTHS = 0x1FFE
_ALL_WEEKDAYS = 0x7F
Window = tuple[datetime, datetime]


class ClockAnalysis(BoundsAnalysis):
    """Clock bounds and windows for the conditions of one file (named conditions memoized).

    The bounds are :class:`~conddsl.bounds.BoundsAnalysis`'s with every form that is not
    the clock's read as unknown: the checker knows no run history and no session.
    """

    def __init__(self, rules: Mapping[str, ast.Node], timezone: str | tzinfo) -> None:
        super().__init__(rules)
        self.rules = rules
        self.timezone = timezone
        # Many tasks share a clock part ("office", "daily after 08:00"): each distinct one
        # (equal nodes, spans aside) is compiled and searched once per file.
        self._compiled: dict[ast.Node, tuple[Condition, timedelta]] = {}
        self._first: dict[ast.Node, Window | None] = {}

    def visit_Periodic(self, node: ast.Periodic) -> Part:
        # Once per window: the window bounds it from above; the history may say no.
        whole = node.window is None or isinstance(node.window, ast.Starting)
        return self.unknown_part(node, TRUE if whole else node)

    def visit_Cron(self, node: ast.Cron) -> Part:
        # In a matching minute, unless the history has a run in it.
        return self.unknown_part(node, node)

    # Task state, pace (every), the scheduler and the session: unknown here.
    visit_Every = BoundsAnalysis.visit_unknown
    visit_TaskHas = visit_AfterTask = visit_TaskRunning = BoundsAnalysis.visit_unknown
    visit_RunningFor = visit_SchedulerCycles = BoundsAnalysis.visit_unknown
    visit_SchedulerUptime = visit_Env = BoundsAnalysis.visit_unknown
    visit_ParamExists = visit_ParamIs = BoundsAnalysis.visit_unknown

    # ------------------------------------------------------------ windows

    def compiled(self, node: ast.Node) -> tuple[Condition, timedelta]:
        """A clock-only node compiled for analysis, and its horizon.

        Without a timezone suffix inside, a condition is examined in wall-clock time
        (UTC, which has no DST): every real instant has a wall time, so a claim about
        all wall times holds for all instants, and it is faster. With a suffix, the
        file's zone matters (it sets the offset between the parts) and is used.
        """
        found = self._compiled.get(node)
        if found is None:
            zoned = any(isinstance(item, ast.Zoned) for item in walk(node))
            condition = Condition(node, timezone=self.timezone if zoned else "UTC")
            found = condition, max(_horizon(node, condition.horizon), _MIN_HORIZON)
            self._compiled[node] = found
        return found

    def first_window(self, node: ast.Node) -> Window | None:
        """The first window of a clock-only node within its horizon from :data:`REFERENCE`."""
        if isinstance(node, ast.Constant):
            return (REFERENCE, REFERENCE + _MIN_HORIZON) if node.value else None
        if node in self._first:
            return self._first[node]
        condition, horizon = self.compiled(node)
        found = self._first[node] = next(
            iter(condition.windows(REFERENCE, REFERENCE + horizon)), None
        )
        return found

    def window_at(self, node: ast.Node, at: datetime) -> Window | None:
        """The window of a clock-only node that holds ``at`` (searched from :data:`REFERENCE`)."""
        if isinstance(node, ast.Constant):
            return (REFERENCE, at + _MIN_HORIZON) if node.value else None
        condition, horizon = self.compiled(node)
        for start, end in condition.windows(REFERENCE, max(REFERENCE + horizon, at)):
            if start <= at < end:
                return start, end
            if start > at:
                break
        return None

    def horizon(self, node: ast.Node) -> timedelta:
        """How far from :data:`REFERENCE` the node is examined."""
        if isinstance(node, ast.Constant):
            return _MIN_HORIZON
        return self.compiled(node)[1]


def _horizon(node: ast.Node, compiled: timedelta) -> timedelta:
    """How long from :data:`REFERENCE` a clock-only node must be examined to see it all.

    The compiler allows 29 years for anything tied to months, and for any cron. Less is
    enough when months and weekdays do not meet: a cron on every day or on some weekdays
    repeats every week, and month days alone repeat with the month lengths, all of which
    (31, 29, 30, 31 and 28 days, and every pair of neighbours) occur from January 2024 to
    March 2025.
    """
    months, weekdays = _calendar_parts(node)
    if months and weekdays:
        return max(compiled, IRREGULAR_HORIZON)
    if months:
        return _MONTHS
    return min(compiled, _REGULAR)


def _calendar_parts(node: ast.Node) -> tuple[bool, bool]:
    """Whether the node depends on month days (or months) and on weekdays."""
    months = weekdays = False
    for item in walk(node):
        if isinstance(item, ast.TimeOf | ast.Periodic):
            unit = item.unit if isinstance(item, ast.TimeOf) else ast.PERIOD_UNIT[item.period]
            months |= unit == "month"
            weekdays |= unit == "week" or _names_weekday(item.window)
        elif isinstance(item, ast.Cron):
            spec = parse_cron(item.expression)
            months |= spec.days != _ALL_DAYS or spec.last_day or spec.months != _ALL_MONTHS
            weekdays |= (
                spec.weekdays != _ALL_WEEKDAYS
                or bool(spec.nth_weekdays)
                or bool(spec.last_weekdays)
            )
    return months, weekdays


def _names_weekday(window: ast.Node | None) -> bool:
    """A month window with a point such as ``2nd Monday`` or ``last Friday``."""
    if window is None:
        return False
    points = [getattr(window, name, None) for name in ("start", "end", "point")]
    return any(isinstance(p, ast.MonthDay) and p.weekday is not None for p in points)


def whole_cycle_reason(node: ast.TimeOf | ast.Periodic) -> str | None:
    """Why the window of ``node`` is its whole cycle, or None when it is not.

    Equal ends make the whole cycle (Rocketry's rule), and an end written as the end
    of the cycle (``24:00``, ``60:00``) equals its start: ``time of day after 24:00``
    and ``daily between 10:00 and 10:00`` are windows in name only. ``starting X`` is
    the whole cycle on purpose and is not reported.
    """
    window = node.window
    if not isinstance(window, ast.Between | ast.After | ast.Before):
        return None
    unit = node.unit if isinstance(node, ast.TimeOf) else ast.PERIOD_UNIT[node.period]
    clock = clock_window(unit, window)
    if unit == "month":
        # Month windows depend on the month: whole in every month length is whole.
        firsts = [datetime(2023, 2, 1)] + [datetime(2024, m, 1) for m in (2, 4, 1)]
        whole = all(clock.pieces(first) == ((0, cycle_length("month", first)),) for first in firsts)
    else:
        whole = clock.whole_cycle
    if not whole:
        return None
    if isinstance(window, ast.Between):
        return f"its ends {window.start} and {window.end} are the same instant of the {unit}"
    # "after 00:00" and "before 24:00" are the whole cycle as they say; only the
    # inverted ones, which read as "never", are surprising.
    after = isinstance(window, ast.After)
    point = window.start if after else window.end
    offset = point_offset(cycle_point(point), is_end=not after, cycle=datetime(2024, 1, 1))
    at_start = offset == 0
    if at_start == after:
        return None
    edge = "end" if after else "start"
    return f"{point} is the {edge} of the {unit}, so the window has equal ends"
