"""The scheduler's timers: when each task is next looked at, and when runs time out.

Both are heaps with lazy deletion, the shape of trio's ``Deadlines``: moving or
dropping an entry costs nothing now; a stale entry is skipped when it reaches the top.
An idle scheduler therefore touches no task whose time has not come.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

from conddsl.runtime.runs import Run

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """One instant per key (when its conditions can next change); the earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, K]] = []
        self._at: dict[K, datetime] = {}
        self._seq = itertools.count()  # ties: first set, first due (keys need no order)

    def set(self, key: K, at: datetime | None) -> None:
        """``key`` is due at ``at`` (None: never), replacing what it was due at."""
        if at is None:
            self._at.pop(key, None)
        elif self._at.get(key) != at:
            self._at[key] = at
            heapq.heappush(self._heap, (at, next(self._seq), key))

    def at(self, key: K) -> datetime | None:
        """When ``key`` is due (None: at no time)."""
        return self._at.get(key)

    def discard(self, key: K) -> None:
        """``key`` is due at no time."""
        self._at.pop(key, None)

    def peek(self) -> datetime | None:
        """The top entry's instant, stale or not (cheap: for a bound, not a wake-up)."""
        return self._heap[0][0] if self._heap else None

    def next(self) -> datetime | None:
        """The earliest instant a key is due at (stale entries on top are dropped)."""
        heap, at = self._heap, self._at
        while heap and at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_first(self) -> list[K]:
        """The keys due at the earliest instant (:meth:`next`), each once; they stay due."""
        top = self.next()
        heap, at = self._heap, self._at
        found: dict[K, None] = {}
        stack = [0] if top is not None else []
        while stack:  # the entries at that instant form a subtree at the heap's root
            index = stack.pop()
            if index < len(heap) and heap[index][0] == top:
                key = heap[index][2]
                if at.get(key) == top:
                    found[key] = None
                stack += (2 * index + 1, 2 * index + 2)
        return list(found)

    def pop_due(self, now: datetime) -> Iterator[tuple[K, datetime]]:
        """The keys due at ``now`` or before, earliest first, with the instant each was due
        at; they are due no more."""
        heap, at = self._heap, self._at
        while heap and heap[0][0] <= now:
            instant, _, key = heapq.heappop(heap)
            if at.get(key) == instant:  # else a stale entry
                del at[key]
                yield key, instant


class Timeouts:
    """Runs by the instant they time out: runs started in one cycle share one entry."""

    def __init__(self) -> None:
        self.heap: list[datetime] = []  # the instants in ``due``
        self.due: dict[datetime, list[Run]] = {}

    def arm(self, run: Run, start: datetime) -> None:
        """Time ``run`` out at ``start`` + its task's timeout (none: never)."""
        if run.task.timeout is None:
            return
        try:
            deadline = start + run.task.timeout
        except OverflowError:  # past the calendar's end ("999999999 days"): it never comes
            run.deadline = None  # (an earlier arm's instant, before its process began, too)
            return
        run.deadline = deadline
        bucket = self.due.get(deadline)
        if bucket is None:
            self.due[deadline] = [run]
            heapq.heappush(self.heap, deadline)
        else:
            bucket.append(run)

    def peek(self) -> datetime | None:
        """The earliest instant, even if its runs have all ended."""
        return self.heap[0] if self.heap else None

    def next(self) -> datetime | None:
        """The earliest instant a live run times out (ended runs are dropped on the way)."""
        heap, due = self.heap, self.due
        while heap:
            bucket = due[heap[0]]
            if not bucket[0].finished:
                break
            live = [run for run in bucket if not run.finished]  # each run is dropped once
            if live:
                due[heap[0]] = live
                break
            del due[heapq.heappop(heap)]
        return heap[0] if heap else None

    def pop_due(self, now: datetime) -> Iterator[Run]:
        """The live runs whose timeout is ``now`` or before, not asked to stop yet."""
        heap, due = self.heap, self.due
        while heap and heap[0] <= now:
            deadline = heapq.heappop(heap)
            for run in due.pop(deadline):
                if run.finished or run.reason is not None or run.task.timeout is None:
                    continue
                if run.deadline != deadline:
                    continue  # moved later: its process began after its start
                yield run
