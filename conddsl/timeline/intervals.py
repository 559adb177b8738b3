"""Lazy algebra on streams of half-open intervals.

An *interval stream* is an iterable of ``(start, end)`` pairs with ``start < end``,
sorted by start, pairwise disjoint and non-adjacent (so every pair is maximal), each
pair meaning the half-open set ``[start, end)``. Values only need to be mutually
comparable: conddsl uses naive wall-clock datetimes, the tests use ints.

Streams may be infinite, so every operation is a generator that pulls from its inputs
only as far as it must to decide the next output pair. Operations that take streams
trust them to be well formed (checking would cost a look-ahead); ``normalize`` turns
any start-sorted sequence of pairs into a well-formed stream.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any, Protocol, TypeVar

__all__ = [
    "clip",
    "complement",
    "contains",
    "first_boundary_after",
    "intersect",
    "normalize",
    "union",
]


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...

    def __le__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)

# Marks an exhausted iterator without mistaking a falsy value for the end.
_DONE: Any = object()


def normalize(pairs: Iterable[tuple[T, T]]) -> Iterator[tuple[T, T]]:
    """Merge start-sorted pairs into a well-formed stream: drop empty, join touching ones."""
    have = False
    cur_start: Any = None
    cur_end: Any = None
    for start, end in pairs:
        if end <= start:
            continue
        if not have:
            cur_start, cur_end, have = start, end, True
            continue
        if start < cur_start:
            # Sorting would need the whole input, which may be infinite: refuse instead.
            raise ValueError(
                f"normalize: pairs not sorted by start ({start!r} after {cur_start!r})"
            )
        if start <= cur_end:
            # Overlapping or adjacent ([1, 3) then [3, 5)): one maximal interval.
            if cur_end < end:
                cur_end = end
        else:
            yield (cur_start, cur_end)
            cur_start, cur_end = start, end
    if have:
        yield (cur_start, cur_end)


def union(*streams: Iterable[tuple[T, T]]) -> Iterator[tuple[T, T]]:
    """The union of any number of streams (empty stream for none)."""
    # heapq.merge is lazy and holds one pending pair per input; ties on start are broken
    # by input order, so the values themselves never need more than ordering.
    return normalize(heapq.merge(*streams, key=itemgetter(0)))


def intersect(*streams: Iterable[tuple[T, T]]) -> Iterator[tuple[T, T]]:
    """The intersection of one or more streams; stops as soon as any input ends."""
    if not streams:
        # The intersection of nothing is everything, which a stream cannot express.
        raise ValueError("intersect needs at least one stream")
    return _intersect([iter(s) for s in streams])


def _intersect(its: list[Iterator[tuple[T, T]]]) -> Iterator[tuple[T, T]]:
    cur: list[tuple[T, T]] = []
    for it in its:
        pair = next(it, _DONE)
        if pair is _DONE:
            return
        cur.append(pair)
    while True:
        lo = max(start for start, _ in cur)
        # Skip every current interval that ends at or before the latest start: it cannot
        # meet the others. Returning on the first exhausted input keeps
        # intersect(infinite, finite) from spinning on the infinite side.
        skipped = False
        for i, it in enumerate(its):
            while cur[i][1] <= lo:
                pair = next(it, _DONE)
                if pair is _DONE:
                    return
                cur[i] = pair
                skipped = True
        if skipped:
            continue  # starts moved, so the latest start may have too
        hi = min(end for _, end in cur)
        yield (lo, hi)
        # Only the intervals ending at hi are used up; the others may meet the next ones.
        # Valid inputs make the next output start strictly after hi, so outputs are
        # non-adjacent without a look-ahead.
        for i, it in enumerate(its):
            if not hi < cur[i][1]:
                pair = next(it, _DONE)
                if pair is _DONE:
                    return
                cur[i] = pair


def complement(stream: Iterable[tuple[T, T]], start: T, end: T) -> Iterator[tuple[T, T]]:
    """The gaps of ``stream`` within ``[start, end)``."""
    if not start < end:
        return
    cursor = start
    for s, e in stream:
        if e <= cursor:
            continue
        if not s < end:
            break
        if cursor < s:
            yield (cursor, s)
        cursor = e
        if not cursor < end:
            # Covered up to the bound: do not pull another pair from a possibly
            # infinite stream.
            return
    yield (cursor, end)


def clip(stream: Iterable[tuple[T, T]], start: T, end: T) -> Iterator[tuple[T, T]]:
    """The part of ``stream`` inside ``[start, end)``."""
    if not start < end:
        return
    for s, e in stream:
        if e <= start:
            continue
        if not s < end:
            return
        yield (start if s < start else s, e if e < end else end)
        if not e < end:
            return  # reached the bound: pull nothing more


def contains(stream: Iterable[tuple[T, T]], point: T) -> bool:
    """Whether ``point`` lies in the stream (reads it only up to ``point``)."""
    for s, e in stream:
        if point < s:
            return False
        if point < e:
            return True
    return False


def first_boundary_after(stream: Iterable[tuple[T, T]], point: T) -> T | None:
    """The first interval start or end strictly greater than ``point``, or None."""
    for s, e in stream:
        if point < s:
            return s
        if point < e:
            return e
    return None
