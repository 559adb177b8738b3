"""The scheduler's timers: when each task is next looked at, and when runs time out.

Both are heaps with lazy deletion, the shape of trio's ``Deadlines``: moving or
dropping an entry costs nothing now; a stale entry is skipped when it reaches the top.
An idle scheduler therefore touches no task whose time has not come.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

from conddsl.runtime.runs import Run

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """One instant per key (when its conditions can next change); the earliest first.

    The keys due at one instant share one heap entry (ties: first set, first due, keys
    need no order); one key alone is kept without a container. A key costs a dict entry
    and its instant, not a heap tuple and a sequence number (~75 bytes less a waiting
    task, issue 21); keys that share an instant share its heap entry.
    """

    def __init__(self) -> None:
        self._heap: list[datetime] = []  # instants, some stale (no keys left, or pushed twice)
        self._at: dict[K, datetime] = {}
        # The keys due at each instant, in the order they were set: one key, or an ordered
        # set of them (a dict: never a key, dicts are not hashable).
        self._due: dict[datetime, K | dict[K, None]] = {}

    def set(self, key: K, at: datetime | None) -> None:
        """``key`` is due at ``at`` (None: never), replacing what it was due at."""
        if at is None:
            self.discard(key)
            return
        was = self._at.get(key)
        if was == at:
            return
        if was is not None:
            self._leave(key, was)
        self._at[key] = at
        due = self._due
        keys = due.get(at)
        if keys is None:
            due[at] = key
            heapq.heappush(self._heap, at)
        elif type(keys) is dict:
            keys[key] = None
        else:
            due[at] = {keys: None, key: None}  # type: ignore[dict-item]

    def _leave(self, key: K, at: datetime) -> None:
        """``key`` is no longer among the keys due at ``at``."""
        keys = self._due.get(at)
        if type(keys) is dict:
            keys.pop(key, None)
            if not keys:
                del self._due[at]
        elif keys is not None and keys == key:
            del self._due[at]

    def at(self, key: K) -> datetime | None:
        """When ``key`` is due (None: at no time)."""
        return self._at.get(key)

    def discard(self, key: K) -> None:
        """``key`` is due at no time."""
        at = self._at.pop(key, None)
        if at is not None:
            self._leave(key, at)

    def peek(self) -> datetime | None:
        """The top entry's instant, stale or not (cheap: for a bound, not a wake-up)."""
        return self._heap[0] if self._heap else None

    def next(self) -> datetime | None:
        """The earliest instant a key is due at (stale entries on top are dropped)."""
        heap, due = self._heap, self._due
        while heap and heap[0] not in due:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def due_first(self) -> list[K]:
        """The keys due at the earliest instant (:meth:`next`), each once; they stay due."""
        top = self.next()
        if top is None:
            return []
        keys = self._due[top]
        return list(keys) if type(keys) is dict else [keys]  # type: ignore[list-item]

    def pop_due(self, now: datetime) -> Iterator[tuple[K, datetime]]:
        """The keys due at ``now`` or before, earliest first, with the instant each was due
        at; they are due no more."""
        heap, at, due = self._heap, self._at, self._due
        while heap and heap[0] <= now:
            instant = heapq.heappop(heap)
            keys = due.pop(instant, None)
            if keys is None:
                continue  # a stale entry (or the second of one instant)
            for key in list(keys) if type(keys) is dict else (keys,):  # type: ignore[union-attr]
                # Set elsewhere or discarded meanwhile (by the caller, between two keys).
                if at.get(key) == instant:
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
