"""Clock windows in wall-clock time: cycles (minute … month), windows in a cycle, cron runs.

Everything here works on NAIVE wall-clock datetimes; zones.py maps the results to
real instants. A window is computed per cycle as pieces of microsecond offsets
from the cycle start, so checking an instant is a few integer comparisons.

Windows and points are this module's own values (:class:`Window`, :class:`CyclePoint`):
the time engine knows nothing of the condition language; :mod:`conddsl.windows`
translates the AST's windows into them.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from conddsl.timeline.cron import CronSpec

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE
MICROS_PER_DAY = 24 * MICROS_PER_HOUR

Pieces = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class CyclePoint:
    """A point in a cycle: an offset (``time``) alone, or a day with an optional time.

    ``time`` is microseconds into the day (or hour, minute, second) when set. A day is
    a weekday (``weekday`` 0 = Monday, no ``day``) or a day of the month (``day``
    1..31 or -1 for the last; with ``weekday``, the ``day``-th such weekday).
    """

    time: int | None = None
    weekday: int | None = None
    day: int | None = None

    @property
    def is_day(self) -> bool:
        """Whether the point names a day (a weekday or a day of the month)."""
        return self.weekday is not None or self.day is not None


@dataclass(frozen=True, slots=True)
class Window:
    """A window of a cycle: ``between`` start and end, ``after`` start, ``before`` end,
    ``on`` start (one sub-unit long), or ``starting`` start (the whole cycle, shifted)."""

    kind: str
    start: CyclePoint | None = None
    end: CyclePoint | None = None


FIXED_LENGTH = {
    "second": MICROS_PER_SECOND,
    "minute": MICROS_PER_MINUTE,
    "hour": MICROS_PER_HOUR,
    "day": MICROS_PER_DAY,
    "week": 7 * MICROS_PER_DAY,
}
# "on X" covers one sub-unit of the cycle starting at X.
_SUB_UNIT = {
    "second": 1_000,  # Rocketry: "secondly on 500" is one millisecond
    "minute": MICROS_PER_SECOND,
    "hour": MICROS_PER_MINUTE,
    "day": MICROS_PER_HOUR,
    "week": MICROS_PER_DAY,
    "month": MICROS_PER_DAY,
}


def cycle_start(unit: str, at: datetime) -> datetime:
    """The first instant of the ``unit`` cycle holding ``at`` (weeks start on Monday)."""
    if unit == "second":
        return at.replace(microsecond=0)
    if unit == "minute":
        return at.replace(second=0, microsecond=0)
    if unit == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=at.weekday())
    return day.replace(day=1)


def next_cycle(unit: str, start: datetime) -> datetime:
    """The start of the cycle after the one starting at ``start``."""
    if unit == "month":
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return start + timedelta(microseconds=FIXED_LENGTH[unit])


def cycle_length(unit: str, start: datetime) -> int:
    """Length in microseconds of the cycle starting at ``start``."""
    if unit == "month":
        return calendar.monthrange(start.year, start.month)[1] * MICROS_PER_DAY
    return FIXED_LENGTH[unit]


def offset_in_cycle(unit: str, at: datetime) -> int:
    """Microseconds from the start of ``at``'s cycle to ``at``."""
    micros = at.microsecond
    if unit == "second":
        return micros
    micros += at.second * MICROS_PER_SECOND
    if unit == "minute":
        return micros
    micros += at.minute * MICROS_PER_MINUTE
    if unit == "hour":
        return micros
    micros += at.hour * MICROS_PER_HOUR
    if unit == "day":
        return micros
    if unit == "week":
        return micros + at.weekday() * MICROS_PER_DAY
    return micros + (at.day - 1) * MICROS_PER_DAY


# Offset of a wall time in its cycle, one small function per unit (no dispatch per call).
_OFFSET_OF = {
    "second": lambda w: w.microsecond,
    "minute": lambda w: w.second * 1_000_000 + w.microsecond,
    "hour": lambda w: (w.minute * 60 + w.second) * 1_000_000 + w.microsecond,
    "day": lambda w: ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond,
    "week": lambda w: (
        (((w.weekday() * 24 + w.hour) * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond
    ),
    "month": lambda w: (
        (((w.day - 1) * 24 + w.hour) * 60 + w.minute) * 60_000_000
        + w.second * 1_000_000
        + w.microsecond
    ),
}


# The hot path of is_true: one closure per unit and shape, the offset written out in
# place, because a function call per evaluation costs as much as the arithmetic.
def _inside(unit: str, a: int, b: int):
    """A predicate for ``a <= offset < b`` in a fixed-length cycle."""
    if unit == "day":
        return lambda w: (
            a <= ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond < b
        )
    if unit == "hour":
        return lambda w: a <= (w.minute * 60 + w.second) * 1_000_000 + w.microsecond < b
    if unit == "minute":
        return lambda w: a <= w.second * 1_000_000 + w.microsecond < b
    offset = _OFFSET_OF[unit]
    return lambda w: a <= offset(w) < b


def _outside(unit: str, end: int, start: int):
    """A predicate for ``offset < end or offset >= start`` (a window that wraps around)."""
    if unit == "day":

        def wrapped_day(w):
            value = ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond
            return value < end or value >= start

        return wrapped_day
    offset = _OFFSET_OF[unit]

    def wrapped(w):
        value = offset(w)
        return value < end or value >= start

    return wrapped


def _month_day_index(point: CyclePoint, year: int, month: int) -> int:
    """0-based day of the month the point names (may be past the month's end)."""
    first_weekday, days = calendar.monthrange(year, month)
    if point.weekday is None:
        return days - 1 if point.day == -1 else point.day - 1
    first = (point.weekday - first_weekday) % 7
    if point.day == -1:
        return first + 7 * ((days - 1 - first) // 7)
    return first + 7 * (point.day - 1)


def point_offset(point: CyclePoint, *, is_end: bool, cycle: datetime | None = None) -> int:
    """Offset of a point within its cycle; a day named without a time ends at its end."""
    if not point.is_day:
        assert point.time is not None
        return point.time
    if point.day is None:
        day = point.weekday
    else:
        assert cycle is not None
        day = _month_day_index(point, cycle.year, cycle.month)
    offset = day * MICROS_PER_DAY
    if point.time is not None:
        return offset + point.time
    return offset + (MICROS_PER_DAY if is_end else 0)


# A ClockWindow's ``_window`` when its pieces say it all (see ClockWindow.__init__).
_FROM_PIECES = object()


class ClockWindow:
    """The set of wall-clock instants inside a window of a cycle (``time of day between …``)."""

    __slots__ = ("unit", "_window", "_fixed_pieces", "_month_cache")

    def __init__(self, unit: str, window: Window | None) -> None:
        self.unit = unit
        self._window: Window | None | object = window
        # Only a month's pieces vary by cycle: other units keep no cache (64 bytes a window).
        self._month_cache: dict[int, Pieces] | None = {} if unit == "month" else None
        self._fixed_pieces = None if unit == "month" else self._compute(None)
        if self._fixed_pieces is not None and _plain_between(window, self._fixed_pieces):
            # "between 08:00 and 18:00" in a fixed cycle is its one piece: the Window and
            # its two points (168 bytes, most of a waiting task's window) are made again
            # when asked, equal to these.
            self._window = _FROM_PIECES

    @property
    def window(self) -> Window | None:
        """The window of the cycle (None: all of it)."""
        found = self._window
        if found is _FROM_PIECES:
            ((start, end),) = self._fixed_pieces
            return Window("between", CyclePoint(start), CyclePoint(end))
        return found

    @property
    def whole_cycle(self) -> bool:
        """True when the window is the whole cycle (no window, ``starting X``, equal ends)."""
        return self._fixed_pieces is not None and self._fixed_pieces == (
            (0, FIXED_LENGTH[self.unit]),
        )

    def pieces(self, cycle: datetime) -> Pieces:
        """The window's pieces (offset pairs) in the cycle starting at ``cycle``."""
        if self._fixed_pieces is not None:
            return self._fixed_pieces
        key = cycle.year * 12 + cycle.month
        found = self._month_cache.get(key)
        if found is None:
            if len(self._month_cache) > 1024:
                self._month_cache.clear()
            found = self._month_cache[key] = self._compute(cycle)
        return found

    def _compute(self, cycle: datetime | None) -> Pieces:
        length = cycle_length(self.unit, cycle) if cycle is not None else FIXED_LENGTH[self.unit]
        window = self.window

        def clamp(value: int) -> int:
            return min(max(value, 0), length)

        def between(start: int, end: int) -> list[tuple[int, int]]:
            # Equal ends are the whole cycle; a start after the end wraps around.
            if start == end:
                return [(0, length)]
            if start < end:
                return [(clamp(start), clamp(end))]
            return [(0, clamp(end)), (clamp(start), length)]

        kind = None if window is None else window.kind
        if kind is None or kind == "starting":
            raw = [(0, length)]
        elif kind == "between":
            raw = between(
                point_offset(window.start, is_end=False, cycle=cycle),
                point_offset(window.end, is_end=True, cycle=cycle),
            )
        elif kind == "after":
            start = point_offset(window.start, is_end=False, cycle=cycle)
            # A day the month does not have (the 31st in April) never comes; at the
            # end of a fixed cycle ("after 4 quarter") the ends are equal: whole cycle.
            month_too_short = self.unit == "month" and start >= length
            raw = [] if month_too_short else between(start, length)
        elif kind == "before":
            raw = between(0, point_offset(window.end, is_end=True, cycle=cycle))
        elif kind == "on":
            start = point_offset(window.start, is_end=False, cycle=cycle)
            raw = [(clamp(start), clamp(start + _SUB_UNIT[self.unit]))]
            # One sub-unit from the point may run into the next cycle ("on Sun 10:00"
            # lasts until Monday 10:00): the overflow of the previous cycle opens this one.
            if cycle is None:
                overflow = start + _SUB_UNIT[self.unit] - length
            elif cycle == datetime.min:  # the calendar's first month has none before it
                overflow = 0
            else:
                previous = cycle_start(self.unit, cycle - timedelta(microseconds=1))
                previous_start = point_offset(window.start, is_end=False, cycle=previous)
                previous_length = cycle_length(self.unit, previous)
                overflow = previous_start + _SUB_UNIT[self.unit] - previous_length
                if previous_start >= previous_length:  # that month had no such day
                    overflow = 0
            if overflow > 0:
                raw.insert(0, (0, clamp(overflow)))
        else:  # pragma: no cover
            raise TypeError(f"not a window: {window!r}")
        return tuple((a, b) for a, b in raw if a < b)

    def predicate(self):
        """A fast ``contains`` specialised to this window (the hot path of is_true)."""
        pieces = self._fixed_pieces
        if pieces is None:  # month: pieces depend on the month, cached per month
            cache = self._month_cache
            compute = self._compute

            def in_month(w):
                key = w.year * 12 + w.month  # an int hashes faster than a tuple
                found = cache.get(key)
                if found is None:
                    if len(cache) > 1024:
                        cache.clear()
                    found = cache[key] = compute(datetime(w.year, w.month, 1))
                value = (((w.day - 1) * 24 + w.hour) * 60 + w.minute) * 60_000_000 + (
                    w.second * 1_000_000 + w.microsecond
                )
                for a, b in found:
                    if a <= value < b:
                        return True
                return False

            return in_month
        if not pieces:
            return lambda w: False
        if len(pieces) == 1:
            ((a, b),) = pieces
            return _inside(self.unit, a, b)
        if len(pieces) == 2 and pieces[0][0] == 0 and pieces[1][1] == FIXED_LENGTH[self.unit]:
            # A wrap-around window: [0, end) and [start, cycle end).
            return _outside(self.unit, pieces[0][1], pieces[1][0])
        return self.contains

    def granularity(self) -> int:
        """Microseconds that every edge of the window, in every cycle, is a multiple of."""
        # Edges are sums of the points' offsets, the sub-unit of "on", and cycle and
        # day lengths (clamping, overflow into the next cycle), so their gcd divides all.
        parts = [FIXED_LENGTH.get(self.unit, MICROS_PER_DAY)]
        window = self._window
        if window is _FROM_PIECES:
            return math.gcd(*parts, *self._fixed_pieces[0])
        if window is None:
            return math.gcd(*parts)
        if window.kind == "on":
            parts.append(_SUB_UNIT[self.unit])
        for point in (window.start, window.end):
            if point is None:
                continue
            if point.is_day:
                parts.append(MICROS_PER_DAY)
            if point.time is not None:
                parts.append(point.time)
        return math.gcd(*parts)

    def contains(self, at: datetime) -> bool:
        """Whether the wall-clock instant ``at`` is inside the window."""
        pieces = self._fixed_pieces
        if pieces is None:
            pieces = self.pieces(cycle_start("month", at))
        offset = offset_in_cycle(self.unit, at)
        for a, b in pieces:
            if a <= offset < b:
                return True
        return False

    def anchor_point(self) -> CyclePoint | None:
        """The point a whole-cycle window is anchored at (``starting X``, equal ends)."""
        window = self._window
        if window is None or window is _FROM_PIECES:  # a piece has ends apart: no anchor
            return None
        if window.kind == "starting":
            return window.start
        # A bare weekday or month day as the end covers that day, so those ends are
        # not equal: "between Mon and Mon" is Monday only.
        if (
            window.kind == "between"
            and window.start == window.end
            and (not window.start.is_day or window.start.time is not None)
        ):
            return window.start
        return None

    def _anchor_in(self, cycle: datetime, point: CyclePoint) -> datetime:
        offset = point_offset(point, is_end=False, cycle=cycle)
        return cycle + timedelta(microseconds=min(offset, cycle_length(self.unit, cycle)))

    def anchor(self, at: datetime) -> datetime:
        """Start of the cycle as the window counts it (``starting 10:00`` shifts it)."""
        point = self.anchor_point()
        start = cycle_start(self.unit, at)
        if point is None:
            return start
        shifted = self._anchor_in(start, point)
        if shifted > at:
            shifted = self._anchor_in(
                cycle_start(self.unit, start - timedelta(microseconds=1)), point
            )
        return shifted

    def intervals(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Maximal wall intervals of the window inside [start, end), lazily."""
        cycle = cycle_start(self.unit, start)
        current: tuple[datetime, datetime] | None = None
        while cycle < end:
            for a, b in self.pieces(cycle):
                piece_start = max(_plus(cycle, a, end), start)
                piece_end = _plus(cycle, b, end)
                if piece_start >= piece_end:
                    continue
                if current is not None and current[1] == piece_start:
                    current = (current[0], piece_end)
                    continue
                if current is not None:
                    yield current
                current = (piece_start, piece_end)
            try:
                cycle = next_cycle(self.unit, cycle)
            except (OverflowError, ValueError):
                break
        if current is not None:
            yield current

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence of the window holding ``at`` (for once-per-window task forms)."""
        point = self.anchor_point()
        if point is not None or self._window is None:
            start = self.anchor(at)
            following = next_cycle(self.unit, cycle_start(self.unit, start))
            end = following if point is None else self._anchor_in(following, point)
            return start, end
        if not self.contains(at):
            return None
        # The occurrence is the maximal interval around `at`: look back one cycle and
        # forward two, enough for any wrap-around window.
        cycle = cycle_start(self.unit, at)
        back = cycle_start(self.unit, cycle - timedelta(microseconds=1))
        forward = next_cycle(self.unit, next_cycle(self.unit, cycle))
        for s, e in self.intervals(back, forward):
            if s <= at < e:
                return s, e
        return None  # pragma: no cover - contains() said it is inside


def _plain_between(window: Window | None, pieces: Pieces) -> bool:
    """Whether ``window`` is ``between`` two times (no days) that are its one piece as
    they are, so that the piece gives the window back."""
    if window is None or window.kind != "between" or len(pieces) != 1:
        return False
    start, end = window.start, window.end
    return (
        start == CyclePoint(start.time)
        and end == CyclePoint(end.time)
        and pieces[0] == (start.time, end.time)
    )


def later(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, or the calendar's last instant when that is past year 9999."""
    try:
        return at + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=at.tzinfo)


def earlier(at: datetime, delta: timedelta) -> datetime:
    """``at - delta``, or the calendar's first instant when that is before year 1."""
    try:
        return at - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=at.tzinfo)


def _plus(at: datetime, micros: int, cap: datetime) -> datetime:
    """``at`` plus ``micros``, but at most ``cap``."""
    return min(later(at, timedelta(microseconds=micros)), cap)


def cron_runs(
    spec: CronSpec, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Maximal wall intervals of matching cron minutes inside [start, end), lazily."""
    minute = timedelta(minutes=1)
    probe = start.replace(second=0, microsecond=0)
    if not spec.matches(probe):
        found = spec.next_fire(probe)
        if found is None:
            return
        probe = found
    while probe < end:
        run_end = _run_end(spec, probe, end)
        yield max(probe, start), min(run_end, end)
        if run_end >= end:
            return
        found = spec.next_fire(run_end - minute)
        if found is None:
            return
        probe = found


_ALL_MINUTES = (1 << 60) - 1
_ALL_HOURS = (1 << 24) - 1


def _run_end(spec: CronSpec, fire: datetime, limit: datetime) -> datetime:
    """The first non-matching minute at or after ``fire`` (or ``limit`` if none before it)."""
    minute = timedelta(minutes=1)
    t = fire
    while t < limit:
        if spec.minutes == _ALL_MINUTES:
            if spec.hours == _ALL_HOURS:
                # Whole matching days: step a day at a time.
                day = t.replace(hour=0, minute=0)
                if spec.matches(day):
                    t = later(day, timedelta(days=1))
                    continue
                return t
            if spec.matches(t):
                t = later(t.replace(minute=0), timedelta(hours=1))
                continue
            return t
        if spec.matches(t):
            t = later(t, minute)
            continue
        return t
    return limit
