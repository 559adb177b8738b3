"""Tests for conddsl.timeline.intervals: tables, a brute-force model, and laziness."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.timeline.intervals import (
    clip,
    complement,
    contains,
    first_boundary_after,
    intersect,
    normalize,
    union,
)

Pairs = list[tuple[int, int]]


def assert_well_formed(pairs: Pairs) -> None:
    """Non-empty, sorted, disjoint and non-adjacent."""
    for s, e in pairs:
        assert s < e, pairs
    for (_, e1), (s2, _) in itertools.pairwise(pairs):
        assert e1 < s2, pairs


# --- tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], []),
        ([(1, 3)], [(1, 3)]),
        ([(1, 3), (3, 5)], [(1, 5)]),  # adjacent
        ([(1, 3), (2, 5)], [(1, 5)]),  # overlapping
        ([(1, 5), (2, 3)], [(1, 5)]),  # contained
        ([(1, 3), (1, 3)], [(1, 3)]),  # identical
        ([(1, 1), (2, 2)], []),  # empty pairs dropped
        ([(5, 2), (6, 7)], [(6, 7)]),  # backwards pair is empty
        ([(1, 2), (2, 2), (2, 4)], [(1, 4)]),
        ([(1, 2), (4, 5)], [(1, 2), (4, 5)]),
        ([(1, 4), (2, 3), (3, 6), (8, 9)], [(1, 6), (8, 9)]),
    ],
)
def test_normalize_table(pairs: Pairs, expected: Pairs) -> None:
    assert list(normalize(pairs)) == expected


def test_normalize_rejects_unsorted() -> None:
    with pytest.raises(ValueError, match="sorted"):
        list(normalize([(5, 6), (1, 2)]))


def test_normalize_ignores_unsorted_empty_pairs() -> None:
    assert list(normalize([(5, 6), (1, 1), (7, 8)])) == [(5, 6), (7, 8)]


@pytest.mark.parametrize(
    ("streams", "expected"),
    [
        ([], []),
        ([[]], []),
        ([[], []], []),
        ([[(1, 3)], []], [(1, 3)]),
        ([[(1, 3)], [(3, 5)]], [(1, 5)]),  # adjacency across streams
        ([[(1, 3)], [(1, 3)]], [(1, 3)]),  # identical
        ([[(1, 3), (7, 9)], [(3, 7)]], [(1, 9)]),  # bridging
        ([[(1, 2)], [(4, 5)], [(2, 4)]], [(1, 5)]),
        ([[(1, 2), (5, 6)], [(3, 4)]], [(1, 2), (3, 4), (5, 6)]),
        ([[(0, 10)], [(2, 3), (4, 5)]], [(0, 10)]),
    ],
)
def test_union_table(streams: list[Pairs], expected: Pairs) -> None:
    assert list(union(*streams)) == expected


@pytest.mark.parametrize(
    ("streams", "expected"),
    [
        ([[]], []),
        ([[(1, 3)]], [(1, 3)]),
        ([[(1, 3)], []], []),
        ([[], [(1, 3)]], []),
        ([[(1, 3)], [(3, 5)]], []),  # adjacent: no common point
        ([[(1, 3)], [(1, 3)]], [(1, 3)]),
        ([[(1, 5)], [(2, 3)]], [(2, 3)]),
        ([[(0, 10)], [(2, 3), (5, 6)]], [(2, 3), (5, 6)]),
        ([[(0, 4), (6, 10)], [(3, 7)]], [(3, 4), (6, 7)]),
        ([[(0, 10)], [(2, 8)], [(5, 12)]], [(5, 8)]),
        ([[(0, 2), (4, 6)], [(1, 5)], [(0, 1), (1, 6)]], [(1, 2), (4, 5)]),
    ],
)
def test_intersect_table(streams: list[Pairs], expected: Pairs) -> None:
    assert list(intersect(*streams)) == expected


def test_intersect_needs_a_stream() -> None:
    with pytest.raises(ValueError):
        intersect()


@pytest.mark.parametrize(
    ("pairs", "start", "end", "expected"),
    [
        ([], 0, 10, [(0, 10)]),
        ([], 5, 5, []),
        ([], 6, 5, []),
        ([(0, 10)], 0, 10, []),
        ([(0, 3)], 0, 10, [(3, 10)]),  # covered at the lower bound
        ([(7, 10)], 0, 10, [(0, 7)]),  # covered at the upper bound
        ([(-5, 3), (8, 20)], 0, 10, [(3, 8)]),  # intervals sticking out of both bounds
        ([(2, 3), (5, 6)], 0, 10, [(0, 2), (3, 5), (6, 10)]),
        ([(10, 12)], 0, 10, [(0, 10)]),  # starts exactly at end
        ([(-3, 0)], 0, 10, [(0, 10)]),  # ends exactly at start
        ([(-3, 0), (10, 12)], 0, 10, [(0, 10)]),
    ],
)
def test_complement_table(pairs: Pairs, start: int, end: int, expected: Pairs) -> None:
    assert list(complement(pairs, start, end)) == expected


@pytest.mark.parametrize(
    ("pairs", "start", "end", "expected"),
    [
        ([], 0, 10, []),
        ([(0, 10)], 3, 3, []),
        ([(0, 10)], 3, 5, [(3, 5)]),
        ([(-5, 3), (8, 20)], 0, 10, [(0, 3), (8, 10)]),
        ([(-3, 0), (10, 12)], 0, 10, []),
        ([(2, 3)], 0, 10, [(2, 3)]),
    ],
)
def test_clip_table(pairs: Pairs, start: int, end: int, expected: Pairs) -> None:
    assert list(clip(pairs, start, end)) == expected


@pytest.mark.parametrize(
    ("point", "inside", "boundary"),
    [(0, False, 1), (1, True, 3), (2, True, 3), (3, False, 5), (5, True, 7), (7, False, None)],
)
def test_contains_and_boundary_table(point: int, inside: bool, boundary: int | None) -> None:
    pairs = [(1, 3), (5, 7)]
    assert contains(pairs, point) is inside
    assert first_boundary_after(pairs, point) == boundary


def test_empty_stream_helpers() -> None:
    assert contains([], 3) is False
    assert first_boundary_after([], 3) is None


def test_works_on_any_ordered_values() -> None:
    assert list(union([("a", "c")], [("c", "e")])) == [("a", "e")]
    assert list(intersect([(0.5, 2.5)], [(1.0, 3.0)])) == [(1.0, 2.5)]


# --- brute-force model --------------------------------------------------------------

LIMIT = 60
points = st.frozensets(st.integers(0, LIMIT - 1), max_size=LIMIT)
bounds = st.integers(-3, LIMIT + 3)


def to_pairs(members: Iterable[int]) -> Pairs:
    """The maximal intervals of a set of integers."""
    out: Pairs = []
    for p in sorted(members):
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def to_set(pairs: Iterable[tuple[int, int]]) -> set[int]:
    return {p for s, e in pairs for p in range(s, e)}


def check(result: Iterable[tuple[int, int]], expected: set[int]) -> None:
    got = list(result)
    assert_well_formed(got)
    assert to_set(got) == expected
    assert got == to_pairs(expected)


@given(st.lists(points, max_size=4))
def test_union_model(sets: list[frozenset[int]]) -> None:
    check(union(*map(to_pairs, sets)), set().union(*sets))


@given(st.lists(points, min_size=1, max_size=4))
def test_intersect_model(sets: list[frozenset[int]]) -> None:
    check(intersect(*map(to_pairs, sets)), set.intersection(*map(set, sets)))


@given(points, bounds, bounds)
def test_complement_model(members: frozenset[int], start: int, end: int) -> None:
    check(complement(to_pairs(members), start, end), set(range(start, end)) - members)


@given(points, bounds, bounds)
def test_clip_model(members: frozenset[int], start: int, end: int) -> None:
    check(clip(to_pairs(members), start, end), set(range(start, end)) & members)


@given(st.lists(st.tuples(st.integers(0, LIMIT), st.integers(0, 8))))
def test_normalize_model(raw: list[tuple[int, int]]) -> None:
    # Sorted by start only; overlapping, adjacent, duplicate and empty pairs allowed.
    pairs = sorted(((s, s + length) for s, length in raw), key=lambda p: p[0])
    check(normalize(pairs), to_set(pairs))


@given(points, st.integers(-2, LIMIT + 2))
def test_contains_model(members: frozenset[int], point: int) -> None:
    assert contains(to_pairs(members), point) is (point in members)


@given(points, st.integers(-2, LIMIT + 2))
def test_first_boundary_after_model(members: frozenset[int], point: int) -> None:
    # A boundary is a point where membership changes from the point before.
    changes = [p for p in range(-1, LIMIT + 2) if (p in members) != (p - 1 in members)]
    expected = next((p for p in changes if p > point), None)
    assert first_boundary_after(to_pairs(members), point) == expected


@settings(max_examples=50)
@given(points, points, points)
def test_algebra_laws(a: frozenset[int], b: frozenset[int], c: frozenset[int]) -> None:
    pa, pb, pc = to_pairs(a), to_pairs(b), to_pairs(c)
    # De Morgan within a window, composed entirely of lazy operations.
    lhs = complement(union(pa, pb), 0, LIMIT)
    rhs = intersect(complement(pa, 0, LIMIT), complement(pb, 0, LIMIT))
    assert list(lhs) == list(rhs)
    # Distributivity.
    assert list(intersect(pa, union(pb, pc))) == list(union(intersect(pa, pb), intersect(pa, pc)))


# --- laziness -----------------------------------------------------------------------


class Counted:
    """An iterator that counts how many items were pulled from it."""

    def __init__(self, items: Iterable[tuple[int, int]]) -> None:
        self._it = iter(items)
        self.pulled = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self

    def __next__(self) -> tuple[int, int]:
        item = next(self._it)
        self.pulled += 1
        return item


def every(step: int, length: int, offset: int = 0) -> Iterator[tuple[int, int]]:
    """An infinite stream: [offset + k*step, offset + k*step + length) for k = 0, 1, ..."""
    return ((offset + k * step, offset + k * step + length) for k in itertools.count())


def test_functions_are_lazy_generators() -> None:
    # Building a pipeline on infinite inputs must not pull anything.
    a, b = Counted(every(10, 2)), Counted(every(10, 2, 5))
    union(a, b)
    intersect(a, b)
    complement(a, 0, 100)
    clip(b, 0, 100)
    normalize(a)
    assert a.pulled == b.pulled == 0


def test_union_of_infinite_streams() -> None:
    got = list(itertools.islice(union(every(10, 2), every(10, 2, 5)), 5))
    assert got == [(0, 2), (5, 7), (10, 12), (15, 17), (20, 22)]


def test_union_merges_adjacent_infinite_streams() -> None:
    # [0,2) [2,4) [10,12) [12,14) ...: each pair touches its neighbour from the other stream.
    got = list(itertools.islice(union(every(10, 2), every(10, 2, 2)), 3))
    assert got == [(0, 4), (10, 14), (20, 24)]


def test_union_pulls_only_what_it_needs() -> None:
    a, b = Counted(every(10, 2)), Counted(every(10, 2, 5))
    out = union(a, b)
    assert next(out) == (0, 2)
    # One pending pair from each input, plus the one after (0, 2) that proves it is maximal.
    assert a.pulled + b.pulled <= 3


def test_intersect_infinite_with_empty_stops() -> None:
    assert list(intersect(every(10, 2), [])) == []
    assert list(intersect([], every(10, 2))) == []
    assert list(intersect(every(3, 1), every(10, 2), [])) == []


def test_intersect_infinite_with_finite_stops() -> None:
    inf = Counted(every(10, 5))
    assert list(intersect(inf, [(3, 12), (40, 42)])) == [(3, 5), (10, 12), (40, 42)]
    assert inf.pulled <= 6


def test_intersect_of_infinite_streams_is_lazy() -> None:
    got = list(itertools.islice(intersect(every(10, 6), every(10, 6, 3)), 3))
    assert got == [(3, 6), (13, 16), (23, 26)]


def test_complement_and_clip_of_infinite_stream() -> None:
    inf = Counted(every(10, 2))
    assert list(complement(inf, 5, 25)) == [(5, 10), (12, 20), (22, 25)]
    assert inf.pulled == 4  # [20, 22) ends before 25, so [30, 32) had to be seen
    inf = Counted(every(10, 2))
    assert list(complement(inf, 5, 21)) == [(5, 10), (12, 20)]
    assert inf.pulled == 3  # [20, 22) covers the end: nothing more pulled
    inf = Counted(every(10, 2))
    assert list(clip(inf, 5, 21)) == [(10, 12), (20, 21)]
    assert inf.pulled == 3
    inf = Counted(every(10, 2))
    assert list(clip(inf, 5, 15)) == [(10, 12)]
    assert inf.pulled == 3


def test_complement_over_unbounded_gaps_of_infinite_stream() -> None:
    got = list(itertools.islice(complement(every(10, 2), 0, 10**12), 3))
    assert got == [(2, 10), (12, 20), (22, 30)]


def test_helpers_on_infinite_streams() -> None:
    inf = Counted(every(10, 2))
    assert contains(inf, 1001) is True
    assert inf.pulled == 101
    assert contains(every(10, 2), 1005) is False
    assert first_boundary_after(every(10, 2), 1001) == 1002
    assert first_boundary_after(every(10, 2), 1002) == 1010


def test_normalize_of_infinite_pairs() -> None:
    # Pairs overlapping in threes: [0,3) [1,4) [2,5) [10,13) ...
    raw = ((10 * (k // 3) + k % 3, 10 * (k // 3) + k % 3 + 3) for k in itertools.count())
    assert list(itertools.islice(normalize(raw), 3)) == [(0, 5), (10, 15), (20, 25)]
