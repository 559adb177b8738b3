"""The AST's windows and points as the time engine reads them (:mod:`conddsl.timeline`).

The one place where the condition language meets the clock: ``time of day between
08:00 and 18:00`` becomes a :class:`~conddsl.timeline.clock.ClockWindow` of unit
``day``; the engine itself never sees an AST node.
"""

from __future__ import annotations

from conddsl import ast
from conddsl.timeline.clock import ClockWindow, CyclePoint, Window

__all__ = ["clock_window", "cycle_point", "plain_ends", "plain_window", "window"]

_KINDS = {
    ast.Between: "between",
    ast.After: "after",
    ast.Before: "before",
    ast.On: "on",
    ast.Starting: "starting",
}


# Windows equal in value (spans aside) share one ClockWindow: many conditions repeat
# a window ("between 08:00 and 18:00"), and a ClockWindow never changes once made
# (its per-month pieces are a cache, shared the better).
_SHARED: dict[tuple[str, ast.Node | None], ClockWindow] = {}
_SHARED_MAX = 4096


def clock_window(unit: str, node: ast.Node | None) -> ClockWindow:
    """The instants of the ``unit`` cycle inside the window ``node`` (None: all of them)."""
    key = (unit, node)
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        found = _SHARED[key] = ClockWindow(unit, window(node))
    return found


# Plain windows ("time of day between 08:00 and 18:00") by their two ends: a waiting
# task keeps the ends, not its window, and finds the window here when it is looked at
# (10,000 waiting tasks, issue 21); a few recent ones are enough for that.
_PLAIN: dict[tuple[str, int], ClockWindow] = {}
_PLAIN_MAX = 256
# The ends are one int, the start shifted by this many bits (36 bytes, not two ints of 32):
# an offset in a cycle of fixed length (a week at most, 6.05e11 µs) fits in 40 bits.
_END_BITS = 40
_END_MASK = (1 << _END_BITS) - 1


def plain_ends(unit: str, node: ast.Node | None) -> int | None:
    """The ends of ``node`` as one int when it is a plain ``between`` of two times in a
    cycle of fixed length (``plain_window`` gives it back); None for every other window."""
    if unit == "month" or node.__class__ is not ast.Between:
        return None
    start, end = node.start, node.end
    if start.__class__ in _PLAIN_POINTS and end.__class__ in _PLAIN_POINTS:
        return start.micros << _END_BITS | end.micros
    return None


def plain_window(unit: str, ends: int) -> ClockWindow:
    """The window ``between`` the two offsets of ``ends`` (``plain_ends``) in the ``unit`` cycle."""
    key = (unit, ends)
    found = _PLAIN.get(key)
    if found is None:
        if len(_PLAIN) >= _PLAIN_MAX:
            _PLAIN.clear()
        start, end = CyclePoint(ends >> _END_BITS), CyclePoint(ends & _END_MASK)
        found = _PLAIN[key] = ClockWindow(unit, Window("between", start, end))
    return found


def window(node: ast.Node | None) -> Window | None:
    """A window node (``between``, ``after``, ``before``, ``on``, ``starting``) as a Window."""
    if node is None:
        return None
    kind = _KINDS[type(node)]
    if kind == "between":
        return Window(kind, cycle_point(node.start), cycle_point(node.end))
    if kind == "before":
        return Window(kind, end=cycle_point(node.end))
    if kind == "after":
        return Window(kind, start=cycle_point(node.start))
    return Window(kind, start=cycle_point(node.point))


_PLAIN_POINTS = (ast.TimeOfDay, ast.MinuteOfHour, ast.SecondOfMinute, ast.MillisecondOfSecond)


def cycle_point(node: ast.Node) -> CyclePoint:
    """A point node (a time, a weekday, a day of the month, …) as a CyclePoint."""
    if isinstance(node, ast.Weekday):
        return CyclePoint(_micros(node.time), weekday=node.weekday)
    if isinstance(node, ast.MonthDay):
        return CyclePoint(_micros(node.time), weekday=node.weekday, day=node.day)
    if isinstance(node, _PLAIN_POINTS):
        return CyclePoint(node.micros)
    raise TypeError(f"not a point: {node!r}")  # pragma: no cover - the parser makes no other


def _micros(time: ast.TimeOfDay | None) -> int | None:
    return None if time is None else time.micros
