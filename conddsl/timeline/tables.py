"""A combined clock condition as one lookup table: its value is piecewise constant.

A tree of clock windows joined by ``&``, ``|`` and ``~`` can only change value at
the edges of its windows. Over one cycle of its largest unit (a day, a week, a
month, …) those edges are a sorted list of offsets, so checking an instant is one
offset computation and one binary search, however many nodes the tree has, instead
of one Python call per node. Week and month tables keep one short list per day,
so the search stays short too.

A table is built from the windows' own pieces: each window becomes a bit set over
the segments between consecutive edges, and the tree combines those bit sets with
integer ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import datetime, timedelta

from conddsl.timeline.clock import (
    FIXED_LENGTH,
    MICROS_PER_DAY,
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    MICROS_PER_SECOND,
    ClockWindow,
    cycle_length,
)

Predicate = Callable[[datetime], bool]
# A clock tree: a window, a constant, or ("all" | "any", children) / ("not", (child,)).
Tree = ClockWindow | bool | tuple[str, tuple["Tree", ...]]

_ORDER = ("second", "minute", "hour", "day", "week", "month")
# Above this many edges per cycle a table costs more memory than it saves time.
MAX_EDGES = 8192
# A Monday: the first instant of a week and of a day, where fixed cycles are laid out.
_REFERENCE = datetime(2024, 1, 1)
# Month tables differ per month; a scheduler needs the current one, a scan a few.
_MONTHS_KEPT = 48


def table_predicate(tree: Tree) -> Predicate | None:
    """``tree`` as a predicate on wall times that looks its value up; None when too large."""
    windows = _windows(tree)
    if not windows:
        return None
    domain = max((window.unit for window in windows), key=_ORDER.index)
    length = 31 * MICROS_PER_DAY if domain == "month" else FIXED_LENGTH[domain]
    if _edge_count(windows, length) > MAX_EDGES:
        return None
    step_name, step = _resolution(domain, windows)
    lookup = _LOOKUPS[domain, step_name]
    if domain == "month":
        return lookup(*_month_tables(tree, windows, step))
    edges = edges_of(tree, windows, _REFERENCE, length)
    if domain == "week":
        return lookup(_per_day(edges, 7, step))
    if not edges:
        return lambda w: False
    if edges == [0]:
        return lambda w: True
    return lookup(_searchable(False, [edge // step for edge in edges]))


def _windows(tree: Tree) -> list[ClockWindow]:
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ClockWindow):
            found.append(node)
        elif isinstance(node, tuple):
            pending.extend(node[1])
    return found


def _edge_count(windows: list[ClockWindow], length: int) -> int:
    """An upper bound of the edges of a table ``length`` long."""
    total = 0
    for window in windows:
        period = FIXED_LENGTH.get(window.unit, 28 * MICROS_PER_DAY)
        pieces = 3 if window.unit == "month" else len(window.pieces(_REFERENCE))
        total += 2 * pieces * (length // period + 2)
    return total


def _resolution(domain: str, windows: list[ClockWindow]) -> tuple[str, int]:
    """The coarsest step of the domain's offsets that every edge is a multiple of."""
    common = math.gcd(*(window.granularity() for window in windows))
    for name, step in _STEPS[domain]:
        if common % step == 0:
            return name, step
    return "microsecond", 1  # pragma: no cover - every domain has microseconds


def edges_of(tree: Tree, windows: list[ClockWindow], start: datetime, length: int) -> list[int]:
    """The offsets in [0, length) from ``start`` where the value turns (false before 0)."""
    spans = {id(window): list(_spans(window, start, length)) for window in windows}
    points = sorted({0, *(p for found in spans.values() for span in found for p in span)})
    points = [p for p in points if p < length]
    everything = (1 << len(points)) - 1

    def bits(node: Tree) -> int:
        # Bit i is the value on the segment starting at points[i].
        if node is True or node is False:
            return everything if node else 0
        if isinstance(node, ClockWindow):
            mask = 0
            for a, b in spans[id(node)]:
                low, high = bisect_left(points, a), bisect_left(points, b)
                mask |= ((1 << (high - low)) - 1) << low
            return mask
        kind, children = node
        if kind == "not":
            return everything & ~bits(children[0])
        values = [bits(child) for child in children]
        combined = values[0]
        for value in values[1:]:
            combined = combined & value if kind == "all" else combined | value
        return combined

    value = bits(tree)
    turns = value ^ (value << 1)  # a bit where a segment differs from the one before
    lowest_first = bin(turns)[:1:-1]
    return [points[i] for i, bit in enumerate(lowest_first[: len(points)]) if bit == "1"]


def _spans(window: ClockWindow, start: datetime, length: int):
    """The window's true pieces as offsets from ``start``, clipped to [0, length)."""
    if window.unit == "month":  # only in a month-long table, which starts a month
        cycles = [0]
    else:
        period = FIXED_LENGTH[window.unit]
        # Weeks inside a month table start on the Monday on or before the 1st.
        first = -start.weekday() * MICROS_PER_DAY if window.unit == "week" else 0
        cycles = range(first, length, period)
    for cycle in cycles:
        for a, b in window.pieces(start + timedelta(microseconds=cycle)):
            a, b = max(cycle + a, 0), min(cycle + b, length)
            if a < b:
                yield a, b


def _searchable(true_at_start: bool, edges: list[int]) -> list[int]:
    """Edges (offsets >= 0) led by one or two negative entries, so that the value at an
    offset is ``bisect_right(list, offset) & 1 == 0`` and the list is never empty."""
    return [-2, -1, *edges] if true_at_start else [-1, *edges]


def _per_day(edges: list[int], days: int, step: int) -> list[list[int]]:
    """One searchable list per day, its edges counted in ``step`` from the day's start."""
    found = []
    for day in range(days):
        low, high = day * MICROS_PER_DAY, (day + 1) * MICROS_PER_DAY
        first = bisect_right(edges, low)  # edges at or before the day's start
        inside = [(edge - low) // step for edge in edges[first : bisect_left(edges, high)]]
        found.append(_searchable(first % 2 == 1, inside))
    return found


def _month_tables(tree: Tree, windows: list[ClockWindow], step: int):
    """The month tables' ``get`` and the ``build`` that makes one for a wall time."""
    tables: dict[int, list[list[int]]] = {}

    def build(w: datetime) -> list[list[int]]:
        if len(tables) >= _MONTHS_KEPT:
            tables.clear()
        start = datetime(w.year, w.month, 1)
        length = cycle_length("month", start)
        days = _per_day(edges_of(tree, windows, start, length), length // MICROS_PER_DAY, step)
        tables[w.year * 12 + w.month] = days
        return days

    return tables.get, build


# Per (domain, step): the lookup, with the offset written out, because a function
# call per evaluation costs as much as the arithmetic. Day-long and shorter tables
# take one list; week tables a list per weekday; month tables the ``get`` and
# ``build`` of their per-month lists of per-day lists (never empty, so never falsy).
# fmt: off
_LOOKUPS: dict[tuple[str, str], Callable[..., Predicate]] = {
    ("second", "microsecond"): lambda e: lambda w: bisect_right(e, w.microsecond) & 1 == 0,
    ("minute", "microsecond"): lambda e: lambda w: bisect_right(
        e, w.second * 1_000_000 + w.microsecond) & 1 == 0,
    ("minute", "second"): lambda e: lambda w: bisect_right(e, w.second) & 1 == 0,
    ("hour", "microsecond"): lambda e: lambda w: bisect_right(
        e, (w.minute * 60 + w.second) * 1_000_000 + w.microsecond) & 1 == 0,
    ("hour", "second"): lambda e: lambda w: bisect_right(e, w.minute * 60 + w.second) & 1 == 0,
    ("hour", "minute"): lambda e: lambda w: bisect_right(e, w.minute) & 1 == 0,
    ("day", "microsecond"): lambda e: lambda w: bisect_right(
        e, ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond) & 1 == 0,
    ("day", "second"): lambda e: lambda w: bisect_right(
        e, (w.hour * 60 + w.minute) * 60 + w.second) & 1 == 0,
    ("day", "minute"): lambda e: lambda w: bisect_right(e, w.hour * 60 + w.minute) & 1 == 0,
    ("day", "hour"): lambda e: lambda w: bisect_right(e, w.hour) & 1 == 0,
    ("week", "microsecond"): lambda d: lambda w: bisect_right(
        d[w.weekday()],
        ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond) & 1 == 0,
    ("week", "second"): lambda d: lambda w: bisect_right(
        d[w.weekday()], (w.hour * 60 + w.minute) * 60 + w.second) & 1 == 0,
    ("week", "minute"): lambda d: lambda w: bisect_right(
        d[w.weekday()], w.hour * 60 + w.minute) & 1 == 0,
    ("week", "hour"): lambda d: lambda w: bisect_right(d[w.weekday()], w.hour) & 1 == 0,
    ("week", "day"): lambda d: lambda w: len(d[w.weekday()]) == 2,
    ("month", "microsecond"): lambda get, build: lambda w: bisect_right(
        (get(w.year * 12 + w.month) or build(w))[w.day - 1],
        ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond) & 1 == 0,
    ("month", "second"): lambda get, build: lambda w: bisect_right(
        (get(w.year * 12 + w.month) or build(w))[w.day - 1],
        (w.hour * 60 + w.minute) * 60 + w.second) & 1 == 0,
    ("month", "minute"): lambda get, build: lambda w: bisect_right(
        (get(w.year * 12 + w.month) or build(w))[w.day - 1], w.hour * 60 + w.minute) & 1 == 0,
    ("month", "hour"): lambda get, build: lambda w: bisect_right(
        (get(w.year * 12 + w.month) or build(w))[w.day - 1], w.hour) & 1 == 0,
    # A whole day has one value: its list is [-2, -1] (true) or [-1] (false).
    ("month", "day"): lambda get, build: lambda w: len(
        (get(w.year * 12 + w.month) or build(w))[w.day - 1]) == 2,
}
# fmt: on

_SMALL_STEPS = (
    ("hour", MICROS_PER_HOUR),
    ("minute", MICROS_PER_MINUTE),
    ("second", MICROS_PER_SECOND),
    ("microsecond", 1),
)
# The steps each domain's offset can be counted in, coarsest first.
_STEPS = {
    "second": _SMALL_STEPS[3:],
    "minute": _SMALL_STEPS[2:],
    "hour": _SMALL_STEPS[1:],
    "day": _SMALL_STEPS,
    "week": (("day", MICROS_PER_DAY), *_SMALL_STEPS),
    "month": (("day", MICROS_PER_DAY), *_SMALL_STEPS),
}
