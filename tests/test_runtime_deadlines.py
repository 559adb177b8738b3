"""The scheduler's check timers on their own: the earliest instant first, ties in the
order they were set, a key moved or dropped leaves nothing due behind, and a waiting key
costs little memory (issue 21)."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import datetime, timedelta, timezone

from conddsl.runtime.deadlines import Deadlines

NOON = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)


def _at(seconds: float) -> datetime:
    return NOON + timedelta(seconds=seconds)


def test_keys_come_due_earliest_first_and_ties_in_the_order_they_were_set():
    checks: Deadlines[str] = Deadlines()
    for key, seconds in (("c", 2), ("a", 1), ("b", 1), ("d", 1), ("e", 3)):
        checks.set(key, _at(seconds))
    assert checks.next() == _at(1)
    assert checks.due_first() == ["a", "b", "d"]
    checks.set("b", _at(2))  # moved: now after "c" at its new instant
    checks.set("a", _at(1))  # set again to the same instant: keeps its place
    assert list(checks.pop_due(_at(2))) == [
        ("a", _at(1)),
        ("d", _at(1)),
        ("c", _at(2)),
        ("b", _at(2)),
    ]
    assert checks.next() == _at(3) and checks.due_first() == ["e"]


def test_a_key_dropped_or_moved_leaves_no_instant_due():
    checks: Deadlines[str] = Deadlines()
    checks.set("a", _at(1))
    checks.set("b", _at(2))
    checks.set("b", _at(5))
    checks.discard("a")
    checks.set("c", _at(3))
    checks.set("c", None)
    assert checks.next() == _at(5)
    assert checks.due_first() == ["b"]
    assert list(checks.pop_due(_at(4))) == []
    assert list(checks.pop_due(_at(5))) == [("b", _at(5))]
    assert checks.next() is None and checks.due_first() == []


def test_keys_changed_while_the_due_ones_are_taken_are_taken_as_they_are_now():
    checks: Deadlines[str] = Deadlines()
    for key in ("a", "b", "c", "d"):
        checks.set(key, _at(1))
    taken = []
    for key, _ in checks.pop_due(_at(10)):
        taken.append(key)
        if len(taken) == 1:
            checks.set("b", _at(20))  # moved past now: not taken
            checks.discard("c")  # dropped: not taken
            checks.set("e", _at(1))  # due now too: taken
            checks.set("a", _at(2))  # its next check, still before now: taken again
    assert taken == ["a", "d", "e", "a"]
    assert checks.next() == _at(20) and checks.due_first() == ["b"]


def test_a_waiting_key_costs_a_dict_entry_not_a_heap_tuple():
    keys = [f"t{i}" for i in range(5000)]  # made first: keys and instants not measured
    instants = [_at(i) for i in range(5000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        checks: Deadlines[str] = Deadlines()
        for key, instant in zip(keys, instants, strict=True):
            checks.set(key, instant)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # ~59 bytes a key (two dict entries and a heap slot); a heap tuple and a sequence
    # number each made it ~120.
    assert kept / len(keys) < 80, kept / len(keys)
