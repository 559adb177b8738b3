"""Evaluators for what tasks did and what the session is: the history-based forms.

Each form's value at an instant is read from the run history with records up to
that instant ("held as given"): later records do not exist yet. The value can
only change at a record's time, a duration after a record, or a boundary of its
clock window, so windows() evaluates at exactly those candidate instants.

Semantics (see docs/language.md, "What tasks did"):
- periodic ``daily [window]``: inside the window and no finish of the task in the
  current occurrence [start, now]; a cycle starts at its first instant;
- ``every D``: no ``run`` of the task in [now - D, now];
- ``cron …``: inside a matching minute and no ``run`` in it (in wall-clock terms, so
  a repeated hour does not fire twice);
- ``has <action> [scope]``: such a record in the scope (ever, the latest occurrence
  of a window, or [now - D, now]);
- ``after task 'a' [outcome]``: a's latest outcome is later than this task's last run;
- ``task 'x' is running``, ``running for more|less than D``: open runs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo

from conddsl import ast
from conddsl.errors import MissingTaskError, SessionRequiredError
from conddsl.timeline.clock import (
    ClockWindow,
    cron_runs,
    cycle_start,
    earlier,
    later,
    next_cycle,
)
from conddsl.timeline.cron import CronSpec
from conddsl.timeline.zones import to_wall, wall_edges, wall_span, wall_to_real
from conddsl.windows import clock_window

UTC = timezone.utc
CHUNK = 64  # candidate points per piece of a long true stretch
MICROSECOND = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
# How far before an instant a record can still matter to a wall-clock minute or window:
# the second pass of a repeated hour comes up to a DST shift after the first.
_LOOKBACK = timedelta(hours=3)
# No zone's UTC offset is this large (the largest ever are about 15 hours, LMT
# included): a wall time w is the real instant w - offset >= w - _MAX_OFFSET.
_MAX_OFFSET = timedelta(hours=16)
# Every instant of the calendar is within this of every other: a horizon that long
# reaches past its end from anywhere, so longer durations need no longer horizon.
_CALENDAR = datetime.max - datetime.min
_HORIZON_MARGIN = timedelta(days=2)

# Which records end a cycle for once-per-cycle forms: any way a run can end.
PERIOD_FINISH = ("success", "fail", "terminate", "inaction", "crash")
# Which records each "has …" action counts (Rocketry: finished = success, fail, terminate).
HAS_ACTIONS = {
    "succeeded": ("success",),
    "failed": ("fail",),
    "finished": ("success", "fail", "terminate", "crash"),
    "terminated": ("terminate",),
    "inacted": ("inaction",),
    "started": ("run",),
}
# What "after task 'a' <outcome>" waits for (Rocketry: finished = success or fail).
DEPENDENCY_ACTIONS = {
    None: ("success",),
    "succeeded": ("success",),
    "failed": ("fail",),
    "finished": ("success", "fail"),
    "terminated": ("terminate",),
}


def duration_horizon(duration: timedelta) -> timedelta:
    """How far to look for a change due ``duration`` after a record: the duration and a
    margin, no longer than the whole calendar (which any longer duration reaches past)."""
    return min(duration, _CALENDAR) + _HORIZON_MARGIN


def own_task(node: ast.Node, ctx) -> str:
    """The task the condition belongs to, or a clear error."""
    if ctx.task is None:
        raise MissingTaskError(f"{node} is about the task it belongs to: pass task=")
    return ctx.task


def real_pieces(wall_start: datetime, wall_end: datetime, zone: tzinfo) -> list[tuple]:
    """The real (UTC) intervals whose wall time in ``zone`` lies in [wall_start, wall_end)."""
    return list(wall_to_real([(wall_start, wall_end)], zone, tz=UTC))


def any_record_in(history, task: str, actions, pieces, now: datetime) -> bool:
    """Whether the task has such a record inside the pieces, up to and including ``now``."""
    limit = now + MICROSECOND
    for start, end in pieces:
        if start >= limit:
            break
        if history.first_in(task, actions, start, min(end, limit)) is not None:
            return True
    return False


class HistoryForm:
    """Base of history-based evaluators: value at an instant and candidate change points."""

    __slots__ = ("node", "zone", "horizon")

    def __init__(self, node: ast.Node, zone: tzinfo, horizon: timedelta) -> None:
        self.node = node
        self.zone = zone
        self.horizon = horizon

    # -- to implement
    def empty_value(self, wall: datetime, ctx) -> bool:
        """The value with an empty history."""
        raise NotImplementedError  # pragma: no cover

    def history_value(self, wall: datetime, ctx) -> bool:
        """The value with ``ctx.history`` as given, records after ``ctx.real`` ignored."""
        raise NotImplementedError  # pragma: no cover

    def record_points(self, ctx, start: datetime, end: datetime) -> list[datetime]:
        """Instants in [start, end) where a record makes the value change."""
        return []

    def clock_points(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Instants in [start, end) where the clock part may change, in order."""
        return iter(())

    # -- shared
    def value(self, wall: datetime, ctx) -> bool:
        if ctx.history is None:
            return self.empty_value(wall, ctx)
        if ctx.real.tzinfo is not UTC:
            # Same instant, but in UTC: arithmetic on zone-aware datetimes is wall-clock
            # arithmetic, which would be an hour off across a DST change.
            ctx.real = ctx.real.astimezone(UTC)
        return self.history_value(wall, ctx)

    def real_intervals(self, start: datetime, end: datetime, ctx):
        """Intervals in [start, end) where true, from values at candidate points.

        A long true stretch is handed out in pieces of at most ``CHUNK`` candidate
        points, so an ``&`` with a rare window does not make this walk its whole
        horizon before answering; Condition merges adjacent pieces at the end.
        """
        points = heapq.merge(
            sorted(p for p in self.record_points(ctx, start, end) if start < p < end),
            (p for p in self.clock_points(start, end) if start < p < end),
        )
        current_start = None
        last = None
        evaluated = 0
        for point in _dedupe(_chain_first(start, points)):
            if point >= end:
                break
            if last is not None and point <= last:
                continue
            last = point
            holds = self._value_at(point, ctx)
            evaluated += 1
            if holds and current_start is None:
                current_start, evaluated = point, 0
            elif not holds and current_start is not None:
                yield current_start, point
                current_start = None
            elif holds and evaluated >= CHUNK:
                yield current_start, point
                current_start, evaluated = point, 0
        if current_start is not None:
            yield current_start, end

    def _value_at(self, real: datetime, ctx) -> bool:
        return self.value(to_wall(real, self.zone), ctx.at(real))

    def _wall_points(self, walls: Iterator[datetime]) -> Iterator[datetime]:
        """Real instants (and one microsecond later) for wall-clock boundaries, in order.

        ``walls`` must come in wall-clock order. In a repeated hour that is not real
        order (the second pass of 02:10 comes after the first pass of 02:20), and the
        candidate walk in ``real_intervals`` skips a point that comes late, so points
        wait in a heap until no later wall time can map to an earlier instant.
        """
        pending: list[datetime] = []
        zone = self.zone
        # A later wall time w maps to w - offset >= wall - (the largest offset): in a
        # fixed-offset zone that is wall - its offset, so each point goes out as soon as
        # its wall time is passed, instead of after 16 more hours of boundaries (the
        # first change of "cron */5 9-17 * * 1-5" with a history: 4 ms -> 0.1 ms).
        shift = largest_offset(zone)
        for wall in walls:
            # Both passes of a repeated wall time, or the jump over a skipped one.
            for real in wall_edges(wall, zone):
                heapq.heappush(pending, real)
                heapq.heappush(pending, later(real, MICROSECOND))
            watermark = earlier(wall, shift).replace(tzinfo=UTC)
            while pending and pending[0] <= watermark:
                yield heapq.heappop(pending)
        while pending:
            yield heapq.heappop(pending)


def _chain_first(first, rest):
    yield first
    yield from rest


def _dedupe(points):
    previous = None
    for point in points:
        if point != previous:
            yield point
        previous = point


def _window_walls(clock: ClockWindow, start: datetime, end: datetime) -> Iterator[datetime]:
    """Wall boundaries of a clock window and its cycles, in order, around [start, end)."""
    unit = clock.unit
    cycle = cycle_start(unit, start)
    cycle = cycle_start(unit, cycle - MICROSECOND)
    while cycle < end:
        points = {cycle}
        for a, b in clock.pieces(cycle):
            points.add(cycle + timedelta(microseconds=a))
            points.add(cycle + timedelta(microseconds=b))
        anchor = clock.anchor(cycle + timedelta(microseconds=1))
        points.add(anchor)
        yield from sorted(points)
        cycle = next_cycle(unit, cycle)


class PeriodicForm(HistoryForm):
    """``daily``, ``daily between 22:00 and 04:00``, ``weekly on Mon``, ``daily starting 10:00``."""

    __slots__ = ("clock", "whole")

    def __init__(self, node: ast.Periodic, clock: ClockWindow, zone: tzinfo, horizon) -> None:
        super().__init__(node, zone, horizon)
        self.clock = clock
        # A window that is the whole cycle (`daily`, `daily starting 10:00`): the value
        # changes only at a finish and at the start of the next cycle after it.
        self.whole = clock.window is None or clock.anchor_point() is not None

    def empty_value(self, wall, ctx):
        return self.clock.contains(wall)

    def history_value(self, wall, ctx):
        if not self.clock.contains(wall):
            return False
        occurrence = self.clock.occurrence(wall)
        if occurrence is None:  # pragma: no cover - contains() said it is inside
            return False
        pieces = real_pieces(occurrence[0], occurrence[1], self.zone)
        task = own_task(self.node, ctx)
        return not any_record_in(ctx.history, task, PERIOD_FINISH, pieces, ctx.real)

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        task = own_task(self.node, ctx)
        finishes = [
            r.at for r in ctx.history.records(task, since=start, until=end, actions=PERIOD_FINISH)
        ]
        if not self.whole:
            return finishes
        points = list(finishes)
        for at in finishes:
            points.extend(self._next_cycle_points(at))
        return points

    def _next_cycle_points(self, real: datetime) -> Iterator[datetime]:
        occurrence = self.clock.occurrence(to_wall(real, self.zone))
        return self._wall_points(iter(()) if occurrence is None else iter((occurrence[1],)))

    def clock_points(self, start, end):
        if self.whole:
            # Only a finish before `start` can keep it false; it turns true next cycle.
            return iter(sorted(self._next_cycle_points(start)))
        if not start < end:
            return iter(())
        low, high = wall_span(start, end, self.zone)
        return self._wall_points(
            _window_walls(self.clock, earlier(low, clock_lookback(self.zone)), high)
        )


class EveryForm(HistoryForm):
    """``every D``: no start of the task within [now - D, now]."""

    __slots__ = ("duration",)

    def __init__(self, node: ast.Every, zone: tzinfo) -> None:
        super().__init__(node, zone, duration_horizon(node.duration.value))
        self.duration = node.duration.value

    def empty_value(self, wall, ctx):
        return True

    def history_value(self, wall, ctx):
        task = own_task(self.node, ctx)
        since = earlier(ctx.real, self.duration)
        return ctx.history.first_in(task, "run", since, ctx.real + MICROSECOND) is None

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        task = own_task(self.node, ctx)
        since = earlier(start, self.duration)
        runs = ctx.history.records(task, since=since, until=end, actions=("run",))
        points = []
        for record in runs:
            points.extend((record.at, later(later(record.at, self.duration), MICROSECOND)))
        return points


class CronForm(HistoryForm):
    """``cron …``: inside a matching minute and no start of the task in that minute."""

    __slots__ = ("spec",)

    def __init__(self, node: ast.Cron, spec: CronSpec, zone: tzinfo, horizon) -> None:
        super().__init__(node, zone, horizon)
        self.spec = spec

    def empty_value(self, wall, ctx):
        return self.spec.matches(wall)

    def history_value(self, wall, ctx):
        if not self.spec.matches(wall):
            return False
        minute = wall.replace(second=0, microsecond=0, fold=0)
        # The wall-clock minute, in real time: twice in a repeated hour, and a start in
        # either pass counts, so the minute fires once per wall-clock occurrence.
        pieces = real_pieces(minute, minute + timedelta(minutes=1), self.zone)
        task = own_task(self.node, ctx)
        return not any_record_in(ctx.history, task, ("run",), pieces, ctx.real)

    def record_points(self, ctx, start, end):
        # A start turns the value off for the rest of its wall-clock minute (both passes
        # of a repeated hour); the minute after it, if matching, turns it on again.
        # Starts up to a DST shift before `start` still reach into [start, end).
        if ctx.history is None:
            return []
        task = own_task(self.node, ctx)
        since = earlier(start, _LOOKBACK)
        runs = ctx.history.records(task, since=since, until=end, actions=("run",))
        points = []
        for record in runs:
            points.append(record.at)
            minute = to_wall(record.at, self.zone).replace(second=0, microsecond=0, fold=0)
            points.extend(self._wall_points(iter((minute, later(minute, _MINUTE)))))
        return points

    def clock_points(self, start, end):
        # Only the edges of runs of matching minutes: inside a run, the value changes
        # at a start (see record_points), not at every fire (2,880 of them in two
        # days for ``* * * * *``).
        if not start < end:
            return iter(())
        low, high = wall_span(start, end, self.zone)
        return self._wall_points(
            _cron_edges(self.spec, earlier(low, clock_lookback(self.zone)), later(high, _MINUTE))
        )


def largest_offset(zone: tzinfo) -> timedelta:
    """The largest UTC offset ``zone`` may have: its own if fixed, else any zone's."""
    return zone.utcoffset(None) if isinstance(zone, timezone) else _MAX_OFFSET


def clock_lookback(zone: tzinfo) -> timedelta:
    """How far before a span's first wall time its clock boundaries must be looked for.

    A DST shift can bring a wall time from before the span into it; a fixed offset
    cannot, so there is nothing to look back for (``cron */5 …`` has 72 edges in 3 h).
    """
    return timedelta(0) if isinstance(zone, timezone) else _LOOKBACK


def _cron_edges(spec: CronSpec, start: datetime, end: datetime) -> Iterator[datetime]:
    """The starts and ends of the runs of consecutive matching minutes, lazily."""
    for run_start, run_end in cron_runs(spec, start, end):
        yield run_start
        yield run_end


class TaskHasForm(HistoryForm):
    """``[task 'x'] has <action> [today | this week between … | in past D]``."""

    __slots__ = ("actions", "clock", "past")

    def __init__(self, node: ast.TaskHas, zone: tzinfo, horizon) -> None:
        super().__init__(node, zone, horizon)
        self.actions = HAS_ACTIONS[node.action]
        self.clock: ClockWindow | None = None
        self.past: timedelta | None = None
        scope = node.scope
        if isinstance(scope, ast.PastScope):
            self.past = scope.duration.value
            self.horizon = max(horizon, duration_horizon(self.past))
        elif isinstance(scope, ast.CycleScope):
            window = scope.window
            if isinstance(window, ast.Starting):
                # Rocketry reads "this week starting Tue" as "between Tue and Tue".
                window = ast.Between(window.point, window.point)
            self.clock = clock_window(ast.CYCLE_UNIT[scope.cycle], window)

    def empty_value(self, wall, ctx):
        return False

    def _task(self, ctx) -> str:
        return self.node.task if self.node.task is not None else own_task(self.node, ctx)

    def history_value(self, wall, ctx):
        task = self._task(ctx)
        now = ctx.real
        if self.past is not None:
            pieces = [(earlier(now, self.past), now + MICROSECOND)]
        elif self.clock is not None:
            pieces = self._latest_occurrence(wall)
            if not pieces:
                return False
        else:
            pieces = [(EPOCH, now + MICROSECOND)]
        return any_record_in(ctx.history, task, self.actions, pieces, now)

    def _latest_occurrence(self, wall: datetime) -> list[tuple]:
        """The occurrence of the scope window holding ``wall``, or the latest before it.

        Rocketry counts the latest occurrence closed at both ends, so a record at the
        exact end of the window still counts.
        """
        clock = self.clock
        assert clock is not None
        occurrence = clock.occurrence(wall)
        if occurrence is None:
            cycle = cycle_start(clock.unit, wall)
            back = cycle_start(clock.unit, cycle - MICROSECOND)
            before = [w for w in clock.intervals(back, wall) if w[1] <= wall]
            if not before:
                back = cycle_start(clock.unit, back - MICROSECOND)
                before = [w for w in clock.intervals(back, wall) if w[1] <= wall]
            if not before:
                return []
            occurrence = before[-1]
            pieces = real_pieces(occurrence[0], occurrence[1], self.zone)
            if pieces:  # closed at the end
                last_start, last_end = pieces[-1]
                pieces[-1] = (last_start, last_end + MICROSECOND)
            return pieces
        return real_pieces(occurrence[0], occurrence[1], self.zone)

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        task = self._task(ctx)
        back = self.past or timedelta(0)
        points = []
        for record in ctx.history.records(
            task, since=earlier(start, back), until=end, actions=self.actions
        ):
            points.append(record.at)
            if self.past is not None:
                points.append(later(later(record.at, self.past), MICROSECOND))
        return points

    def clock_points(self, start, end):
        if self.clock is None:
            return iter(())
        if not start < end:
            return iter(())
        low, high = wall_span(start, end, self.zone)
        return self._wall_points(
            _window_walls(self.clock, earlier(low, clock_lookback(self.zone)), high)
        )


class AfterTaskForm(HistoryForm):
    """``after task 'a' [outcome]``, ``after tasks …`` (all), ``after any tasks …``."""

    __slots__ = ("actions",)

    def __init__(self, node: ast.AfterTask, zone: tzinfo, horizon) -> None:
        super().__init__(node, zone, horizon)
        self.actions = DEPENDENCY_ACTIONS[node.dependency]

    def empty_value(self, wall, ctx):
        return False

    def history_value(self, wall, ctx):
        node: ast.AfterTask = self.node  # type: ignore[assignment]
        task = own_task(node, ctx)
        limit = ctx.real + MICROSECOND
        own_start = ctx.history.last_in(task, "run", EPOCH, limit)
        results = []
        for dependency in node.tasks:
            finished = ctx.history.last_in(dependency, self.actions, EPOCH, limit)
            results.append(finished is not None and (own_start is None or finished > own_start))
        return any(results) if node.mode == "any" else all(results)

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        node: ast.AfterTask = self.node  # type: ignore[assignment]
        points = [
            r.at for r in ctx.history.records(ctx.task, since=start, until=end, actions=("run",))
        ]
        for dependency in node.tasks:
            found = ctx.history.records(dependency, since=start, until=end, actions=self.actions)
            points.extend(r.at for r in found)
        return points


class TaskRunningForm(HistoryForm):
    """``task 'x' is running``: a run of x started and has not finished."""

    __slots__ = ()

    def empty_value(self, wall, ctx):
        return False

    def history_value(self, wall, ctx):
        task = self.node.task  # type: ignore[attr-defined]
        return _open_run_start(ctx.history, task, ctx.real) is not None

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        return [r.at for r in ctx.history.records(self.node.task, since=start, until=end)]  # type: ignore[attr-defined]


class RunningForForm(HistoryForm):
    """``running for more|less than D``: about the current run of the task itself."""

    __slots__ = ("duration",)

    def __init__(self, node: ast.RunningFor, zone: tzinfo) -> None:
        super().__init__(node, zone, duration_horizon(node.duration.value))
        self.duration = node.duration.value

    def empty_value(self, wall, ctx):
        return False

    def history_value(self, wall, ctx):
        task = own_task(self.node, ctx)
        started = _open_run_start(ctx.history, task, ctx.real)
        if started is None:
            return False
        elapsed = ctx.real - started
        if self.node.comparison == "more":  # type: ignore[attr-defined]
            return elapsed > self.duration
        return elapsed < self.duration

    def record_points(self, ctx, start, end):
        if ctx.history is None:
            return []
        task = own_task(self.node, ctx)
        points = []
        since = earlier(start, self.duration)
        for record in ctx.history.records(task, since=since, until=end):
            due = later(record.at, self.duration)
            points.extend((record.at, due, later(due, MICROSECOND)))
        return points


def _open_run_start(history, task: str, now: datetime) -> datetime | None:
    """Start of the oldest run of ``task`` open at ``now`` (records after now ignored)."""
    open_runs = [run for run in history.running(task) if run.at <= now]
    if open_runs:
        return open_runs[0].at
    # A run that finished after `now` was still open at `now`: look at the records.
    last_run = history.last_in(task, "run", EPOCH, now + MICROSECOND)
    if last_run is None:
        return None
    finished = history.first_in(task, PERIOD_FINISH, last_run, now + MICROSECOND)
    return None if finished is not None else last_run


class SessionForm:
    """``scheduler has N cycles``, ``scheduler started D ago``, ``env``, ``param``."""

    __slots__ = ("node", "zone", "horizon")
    fast = None  # needs the session, not only the wall clock

    def __init__(self, node: ast.Node, zone: tzinfo) -> None:
        self.node = node
        self.zone = zone
        self.horizon = _HORIZON_MARGIN
        if isinstance(node, ast.SchedulerUptime):
            self.horizon = duration_horizon(node.duration.value)

    def value(self, wall, ctx) -> bool:
        session = ctx.session
        node = self.node
        if session is None:
            raise SessionRequiredError(f"{node} is answered by a running scheduler: pass session=")
        if isinstance(node, ast.SchedulerCycles):
            cycles = session.cycles
            if node.comparison == "more":
                return cycles > node.count
            if node.comparison == "less":
                return cycles < node.count
            return cycles == node.count
        if isinstance(node, ast.SchedulerUptime):
            uptime = ctx.real - session.started_at
            if node.comparison == "less":
                return uptime <= node.duration.value
            return uptime > node.duration.value
        if isinstance(node, ast.Env):
            return session.env == node.name
        if isinstance(node, ast.ParamExists):
            return all(name in session.params for name in node.names)
        if isinstance(node, ast.ParamIs):
            return node.name in session.params and str(session.params[node.name]) == node.value
        raise TypeError(f"not a session form: {node!r}")  # pragma: no cover

    def real_intervals(self, start, end, ctx):
        points = [start]
        if isinstance(self.node, ast.SchedulerUptime) and ctx.session is not None:
            due = later(ctx.session.started_at, self.node.duration.value)
            change = later(due, MICROSECOND)
            if start < change < end:
                points.append(change)
        points.append(end)
        current = None
        for left, right in zip(points, points[1:], strict=False):
            if self.value(to_wall(left, self.zone), ctx.at(left)):
                current = (current[0] if current else left, right)
            elif current is not None:
                yield current
                current = None
        if current is not None:
            yield current
